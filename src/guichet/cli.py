"""The ``guichet`` command: serve, database, plugins, config, outbox, audit, requests, and the
commands plugins add (``guichet_commands``: the built-in registry brings ``guichet registry``).

Built on click with rich-click's help. Every command takes ``--config FILE`` (default:
``$GUICHET_CONFIG``, then ``config/demo.toml``); every listing prints a table with headers, or JSON
with ``--json``. Colour only on a terminal, never with ``NO_COLOR``. Exit status: 0 done, 1 refused
(the operation could not be done: nothing to retry, a request already decided, a config that
cannot serve), 2 bad usage or a config file that cannot be used, 3 a worker that cannot start.

Plugin commands use the helpers in ``__all__`` (docs/plugins/api.md).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import rich_click as click
from rich.console import Console
from rich.table import Table

import guichet
from guichet.core.config import CaisseConfig, load_config, missing_extras, missing_secrets
from guichet.core.context import DemoEndpoints
from guichet.core.database import Database
from guichet.core.errors import ConfigError, GuichetError

__all__ = [
    "DEFAULT_CONFIG",
    "Refused",
    "config_option",
    "json_option",
    "load_config_option",
    "run_with_database",
    "show_listing",
]

DEFAULT_CONFIG = "config/demo.toml"

# Restarts lose nothing behind nginx (docs/deploy.md, tests/ops/test_restart.py): a request in flight
# may run this long after SIGTERM or SIGHUP, longer than nginx's proxy_read_timeout (30 s), so nginx
# gives up first and never retries a request that may still be running.
GRACEFUL_SHUTDOWN_SECONDS = 35
# how long a new worker may take to start before a SIGHUP restart is abandoned (the old one stays)
WORKER_START_SECONDS = 30

click.rich_click.SHOW_ARGUMENTS = True
click.rich_click.GROUP_ARGUMENTS_OPTIONS = True
click.rich_click.MAX_WIDTH = 100

F = TypeVar("F", bound=Callable[..., Any])


class Refused(click.ClickException):
    """The operation was refused (exit status 1): the message says why."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(f"guichet: {self.format_message()}", err=True)


# --- helpers shared with plugin commands -------------------------------------------------------------


def config_option(function: F) -> F:
    """``--config FILE``: the caisse config the command works on (the one argument style of guichet)."""
    return click.option(
        "--config",
        "config_path",
        metavar="FILE",
        envvar="GUICHET_CONFIG",
        default=DEFAULT_CONFIG,
        show_default=True,
        show_envvar=True,
        help="The caisse config file (TOML).",
    )(function)


def json_option(function: F) -> F:
    """``--json``: a listing as JSON (an array of objects) for scripts, instead of a table."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print JSON (an array of objects, one per row) for scripts, instead of a table.",
    )(function)


def load_config_option(config_path: str) -> CaisseConfig:
    """The config named by ``--config``; a ConfigError exits 2 with the file and the key."""
    return load_config(config_path)


def run_with_database(config: CaisseConfig, work: Callable[[Database], Awaitable[int]]) -> int:
    """Connect to the caisse's database, run ``work(database)``, close it; return what work returned."""

    async def connected() -> int:
        database = Database.from_config(config)
        await database.connect()
        try:
            return await work(database)
        finally:
            await database.close()

    return asyncio.run(connected())


def _print_table(table: Table) -> None:
    console = Console(highlight=False)
    if console.is_terminal:  # colour unless NO_COLOR (rich reads it), wrapped to the terminal
        console.print(table)
        return
    # a file or a pipe: no colour, no wrapping at 80 columns, no trailing blanks
    plain = Console(file=io.StringIO(), highlight=False, width=4000, no_color=True, color_system=None)
    plain.print(table)
    click.echo("\n".join(line.rstrip() for line in plain.file.getvalue().splitlines()))  # type: ignore[attr-defined]


def show_listing(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[tuple[str, str]],
    *,
    as_json: bool,
    empty: str,
    title: str | None = None,
) -> None:
    """Rows as a table with headers (``columns``: key, header), or as JSON; ``empty`` when there are none."""
    if as_json:
        click.echo(
            json.dumps(
                [{key: row[key] for key, _ in columns} for row in rows], default=str, ensure_ascii=False, indent=2
            )
        )
        return
    if not rows:
        click.echo(empty)
        return
    table = Table(title=title, title_justify="left", box=None, header_style="bold", pad_edge=False)
    for _key, header in columns:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*("" if row[key] is None else str(row[key]) for key, _ in columns))
    _print_table(table)


# --- the command group ----------------------------------------------------------------------------------


@click.group("guichet", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(guichet.__version__, "--version", prog_name="guichet", message="%(prog)s %(version)s")
def cli() -> None:
    """Account and login framework for public-service portals.

    \b
    Examples:
      guichet config check --config config/sud-aquitaine.toml
      guichet db upgrade --config caisse.toml
      guichet serve --config caisse.toml --workers 4
      guichet outbox status --json --config caisse.toml
    """


# --- serve --------------------------------------------------------------------------------------------


@cli.command()
@config_option
@click.option("--host", help="Address to listen on.  [default: [server] host]")
@click.option("--port", type=int, help="Port to listen on.  [default: [server] port]")
@click.option("--workers", type=click.IntRange(min=1), help="Worker processes.  [default: [server] workers]")
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    help="Log level.  [default: [logging] level]",
)
def serve(config_path: str, host: str | None, port: int | None, workers: int | None, log_level: str | None) -> int:
    """Serve the web pages (and deliver the outbox unless [server] outbox_worker = false).

    Refuses to start (exit 2) when a secret is missing or a purpose has no channel able to serve it.

    \b
    Examples:
      guichet serve
      guichet serve --config /etc/guichet/caisse.toml --workers 4 --log-level warning
    """
    import shutil
    import tempfile

    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    from guichet.core.logs import configure_logging, uvicorn_log_config
    from guichet.web.metrics import MULTIPROCESS_ENV

    config = load_config(config_path)
    for blocker in (
        missing_extras(config) or missing_secrets(config) or _delivery_blockers(config)
    ):  # refuse before any worker starts
        raise ConfigError(blocker)
    host = host or config.server.host
    port = port or config.server.port
    workers = workers or config.server.workers
    level = log_level or config.logging.level
    os.environ["GUICHET_CONFIG"] = str(Path(config_path).resolve())
    os.environ["GUICHET_LOG_LEVEL"] = level
    configure_logging(config.logging.format, level)
    if workers > 1 and config.database.url.startswith("sqlite") and config.server.mode != "demo":
        click.echo(
            "guichet: several workers share state only through PostgreSQL and Redis; SQLite is for one worker", err=True
        )
    metrics_dir = None
    if workers > 1 and config.metrics.enabled and not os.environ.get(MULTIPROCESS_ENV):
        # every worker writes its series there; /metrics sums them, whichever worker answers
        metrics_dir = tempfile.mkdtemp(prefix="guichet-metrics-")
        os.environ[MULTIPROCESS_ENV] = metrics_dir
    # Always uvicorn's supervisor, even for one worker: it holds the listening socket, so SIGHUP
    # replaces each worker by a new one (started first) without refusing a connection, and
    # SIGTERM lets every worker finish its requests, then stop its app (the outbox worker gives
    # back what it had not started).
    server = uvicorn.Config(
        "guichet.web.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=level,
        log_config=uvicorn_log_config(config.logging.format, level),
        access_log=False,
        proxy_headers=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        timeout_worker_healthcheck=WORKER_START_SECONDS,
    )
    supervisor = Multiprocess(server, sockets=[server.bind_socket()])
    try:
        supervisor.run()
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        return 3  # a worker could not start (its error is in the log above): so would the next one
    return 0


# --- db -----------------------------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """The database schema."""


@db.command()
@config_option
def upgrade(config_path: str) -> int:
    """Create or migrate core's schema.

    The only command that changes core's schema: run it before starting a new version. A plugin
    that keeps tables of its own creates them itself (the registry's: ``guichet registry import``).

    \b
    Examples:
      guichet db upgrade --config /etc/guichet/caisse.toml
    """
    config = load_config(config_path)

    async def work(database: Database) -> int:
        applied = await database.upgrade()
        version = await database.schema_version()
        click.echo(
            f"schema at version {version}"
            + (f" (applied {', '.join(map(str, applied))})" if applied else " (up to date)")
        )
        return 0

    return run_with_database(config, work)


# --- plugins and config -----------------------------------------------------------------------------


@cli.command()
@config_option
@json_option
def plugins(config_path: str, as_json: bool) -> int:
    """The plugins a caisse enables, where each comes from, and the hooks it implements.

    \b
    Examples:
      guichet plugins --config config/demo.toml
      guichet plugins --json | jq '.[].name'
    """
    from guichet.core.hookspecs import HOOK_API_VERSION
    from guichet.core.plugins import load_plugins
    from guichet.web.metrics import app_plugins

    config = load_config(config_path)
    _pm, infos = load_plugins(config, app_plugins())
    rows = [
        {"name": info.name, "source": info.source, "module": info.module, "hooks": ", ".join(info.hooks)}
        for info in infos
    ]
    show_listing(
        rows,
        [("name", "Plugin"), ("source", "Source"), ("module", "Module"), ("hooks", "Hooks")],
        as_json=as_json,
        empty="no plugin enabled",
        title=None if as_json else f"guichet hook API {HOOK_API_VERSION}",
    )
    return 0


@cli.group("config")
def config_group() -> None:
    """Caisse config files."""


@config_group.command("check")
@config_option
@click.argument("file", required=False, metavar="[FILE]")
@click.option(
    "--connect",
    is_flag=True,
    help="Also reach the database, Redis, and each channel's server (SMTP, SMS gateway): nothing is sent.",
)
def config_check(config_path: str, file: str | None, connect: bool) -> int:
    """Validate a config, list what is weaker than the security baseline, and say whether it can serve.

    FILE is the same as --config (kept for scripts that name the file alone). Exit 0 ready to
    serve, 1 valid but not ready (a missing secret, a purpose without a channel), 2 invalid.

    \b
    Examples:
      guichet config check --config /etc/guichet/caisse.toml
      guichet config check config/sud-aquitaine.toml
      guichet config check --config /etc/guichet/caisse.toml --connect
    """
    from guichet.core.baseline import effective_values, settings_notes, weaker_than_baseline

    path = file or config_path
    config = load_config(path)
    notes = settings_notes(config)
    refused = [note for note in notes if note.refused]
    for note in refused:
        click.echo(f"guichet: configuration error: {path}: {note.key}: {note.message}", err=True)
    if refused:
        return 2
    click.echo(f"{path}: valid")
    for note in notes:
        click.echo(f"  note: {note.key}: {note.message}")
    click.echo()
    click.echo("Effective values:")
    for key, value in effective_values(config):
        click.echo(f"  {key} = {value}")
    from guichet.core.departures import DOC_PATH, citizen_values

    click.echo()
    click.echo(f"Departures from the seeds ({DOC_PATH}):")
    for key, value in citizen_values(config):
        click.echo(f"  {key} = {value}")
    findings = weaker_than_baseline(config)
    click.echo()
    if not findings:
        click.echo("No value weaker than the security baseline (ASVS 5.0 L2 / NIST SP 800-63B).")
    else:
        click.echo(f"{len(findings)} value(s) weaker than the security baseline (ASVS 5.0 L2 / NIST SP 800-63B):")
        for finding in findings:
            click.echo(f"  - {finding.key}: {finding.value} — {finding.standard}")
            click.echo(f"    compensating controls: {finding.compensation}")
    from guichet.oidc_commands import oidc_blockers, oidc_lines

    click.echo()
    for line in oidc_lines(config):
        click.echo(line)
    blockers = missing_extras(config) or missing_secrets(config) or _delivery_blockers(config) or oidc_blockers(config)
    if connect and not blockers:
        click.echo()
        click.echo("Connections:")
        for reached, line in asyncio.run(_reach_everything(config)):
            click.echo(f"  {'ok' if reached else 'FAILED'}: {line}")
            if not reached:
                blockers.append(line)
    click.echo()
    if blockers:
        click.echo("Ready to serve: no")
        for blocker in blockers:
            click.echo(f"  - {blocker}")
        return 1
    click.echo("Ready to serve: yes (secrets resolved; every purpose has a channel)")
    return 0


async def _reach_everything(config: CaisseConfig) -> list[tuple[bool, str]]:
    """(reached, what) for the database, Redis and every channel that can be probed; nothing is sent."""
    from guichet.core.clock import Clock
    from guichet.core.context import PluginContext
    from guichet.core.database import redact_url
    from guichet.core.errors import DeliveryError
    from guichet.core.plugins import PluginHost

    results: list[tuple[bool, str]] = []
    database = Database.from_config(config)
    where = redact_url(config.database.url)
    try:
        await database.connect()
        version = await database.schema_version()
        results.append(
            (True, f"database {where}: schema at version {version}" + ("" if version else " (run guichet db upgrade)"))
        )
    except Exception as exc:  # whatever the driver raises: say which database, never the password
        results.append((False, f"database {where}: cannot connect ({type(exc).__name__})"))
    finally:
        await database.close()
    if config.redis is not None:
        from redis.exceptions import RedisError

        from guichet.core.redis_store import redis_client

        client = redis_client(
            config.redis.url,
            password=config.redis.password.resolve() if config.redis.password else None,
            timeout_seconds=config.redis.timeout_seconds,
        )
        try:
            await client.ping()
            results.append((True, f"Redis {config.redis.url}: answered"))
        except (RedisError, OSError) as exc:
            results.append((False, f"Redis {config.redis.url}: cannot connect ({type(exc).__name__})"))
        finally:
            await client.aclose()
    if config.demo.mailbox:
        results.append((True, "channels: the demo mailbox, started by guichet serve"))
        return results
    host = PluginHost(config, PluginContext(config=config, database=database, clock=Clock()))
    for name, channel in sorted(host.channels().items()):
        probe = getattr(channel, "probe", None)
        if probe is None:
            results.append((True, f"channel {name}: nothing to reach"))
            continue
        try:
            results.append((True, f"channel {name}: {await probe()}"))
        except DeliveryError as exc:
            results.append((False, f"channel {name}: {exc}"))
    return results


def _unstarted_demo(config: CaisseConfig) -> DemoEndpoints | None:
    """In demo mode, where the demo mailbox's sinks will listen, without starting them: only
    `guichet serve` runs them, a command only builds the channels or queues messages."""
    from guichet.core.plugins import demo_mailbox

    sinks = demo_mailbox(config)
    return sinks.endpoints() if sinks is not None else None


def _delivery_blockers(config: CaisseConfig) -> list[str]:
    """What `guichet serve` would refuse before it starts: plugins, channels, every purpose served."""
    from guichet.core.clock import Clock
    from guichet.core.context import PluginContext
    from guichet.core.plugins import PluginHost

    demo = _unstarted_demo(config)
    try:
        host = PluginHost(
            config, PluginContext(config=config, database=Database.from_config(config), clock=Clock(), demo=demo)
        )
        host.check_can_serve()
    except ConfigError as exc:
        return [str(exc)]
    return []


# --- outbox -------------------------------------------------------------------------------------------


@cli.group()
def outbox() -> None:
    """Messages waiting for delivery (emails, SMS, letters)."""


@outbox.command()
@config_option
@click.option("--once", is_flag=True, help="Deliver what is due, then stop.")
def work(config_path: str, once: bool) -> int:
    """Deliver messages, in a worker process of its own (with [server] outbox_worker = false).

    \b
    Examples:
      guichet outbox work --config /etc/guichet/caisse.toml
      guichet outbox work --once
    """
    from guichet.core.logs import configure_logging
    from guichet.core.outbox_worker import run_worker_process
    from guichet.web.metrics import app_plugins

    config = load_config(config_path)
    configure_logging(config.logging.format, config.logging.level)
    return asyncio.run(run_worker_process(config, once=once, extra_plugins=app_plugins()))


@outbox.command()
@config_option
@json_option
def status(config_path: str, as_json: bool) -> int:
    """Message counts per channel and state (pending, sending, sent, failed, expired).

    \b
    Examples:
      guichet outbox status --config /etc/guichet/caisse.toml
      guichet outbox status --json
    """
    from guichet.core.outbox_worker import outbox_status

    config = load_config(config_path)

    async def count(database: Database) -> int:
        counts = await outbox_status(database)
        rows = [{"channel": channel, "state": state, "count": n} for (channel, state), n in sorted(counts.items())]
        show_listing(
            rows,
            [("channel", "Channel"), ("state", "State"), ("count", "Messages")],
            as_json=as_json,
            empty="the outbox is empty",
        )
        return 0

    return run_with_database(config, count)


@outbox.command()
@config_option
@click.argument("message_id", metavar="ID", type=int)
def retry(config_path: str, message_id: int) -> int:
    """Deliver a failed message again (exit 1 when ID is not a failed message).

    \b
    Examples:
      guichet outbox retry 42 --config /etc/guichet/caisse.toml
    """
    from guichet.core.outbox_worker import retry_message

    config = load_config(config_path)

    async def again(database: Database) -> int:
        if await retry_message(database, message_id):
            click.echo(f"message {message_id} will be delivered again")
            return 0
        raise Refused(f"message {message_id} is not a failed message")

    return run_with_database(config, again)


# --- audit and third-party requests -------------------------------------------------------------------


@cli.group()
def audit() -> None:
    """Security events (the audit log)."""


@audit.command()
@config_option
@click.option(
    "-n", "--lines", type=click.IntRange(min=1), default=50, show_default=True, help="How many events, the latest last."
)
@json_option
def tail(config_path: str, lines: int, as_json: bool) -> int:
    """The latest security events.

    \b
    Examples:
      guichet audit tail -n 20 --config /etc/guichet/caisse.toml
      guichet audit tail --json | jq 'map(select(.kind == "login.failed"))'
    """
    from guichet.core.events import Auditor

    config = load_config(config_path)

    async def show(database: Database) -> int:
        rows = [
            {
                "at": f"{row['at']:%Y-%m-%d %H:%M:%S}",
                "kind": row["kind"],
                "account": row["account_id"],
                "subject": row["subject"] or None,
                "client": row["client"] or None,
                "details": row["details"],
            }
            for row in await Auditor(database).tail(lines)
        ]
        show_listing(
            rows,
            [
                ("at", "At (UTC)"),
                ("kind", "Event"),
                ("account", "Account"),
                ("subject", "Subject"),
                ("client", "Client"),
                ("details", "Details"),
            ],
            as_json=as_json,
            empty="no event",
        )
        return 0

    return run_with_database(config, show)


@cli.group()
def requests() -> None:
    """Third parties' requests for an account ("Autre" on the first registration step)."""


@requests.command("list")
@config_option
@click.option("--state", type=click.Choice(["pending", "approved", "rejected"]), help="Only requests in this state.")
@json_option
def requests_list(config_path: str, state: str | None, as_json: bool) -> int:
    """Third parties' requests, newest first.

    \b
    Examples:
      guichet requests list --state pending --config /etc/guichet/caisse.toml
      guichet requests list --json
    """
    from guichet.core.third_party import list_requests

    config = load_config(config_path)

    async def show(database: Database) -> int:
        rows = [
            {
                "id": row.id,
                "state": row.state,
                "created": f"{row.created_at:%Y-%m-%d}",
                "kind": row.structure_kind,
                "structure": row.structure_name,
                "siret": row.siret,
                "contact": row.contact_name,
                "email": row.email,
                "address": " / ".join(row.address),
            }
            for row in await list_requests(database, state=state)
        ]
        show_listing(
            rows,
            [
                ("id", "#"),
                ("state", "State"),
                ("created", "Created"),
                ("kind", "Kind"),
                ("structure", "Structure"),
                ("siret", "SIRET"),
                ("contact", "Contact"),
                ("email", "Email"),
                ("address", "Address"),
            ],
            as_json=as_json,
            empty="no request",
        )
        return 0

    return run_with_database(config, show)


def _decide(config_path: str, request_id: int, note: str | None, *, approve: bool) -> int:
    from guichet.core.services import build_services
    from guichet.core.third_party import approve_request, reject_request

    config = load_config(config_path)

    async def decide() -> int:
        # the decision only queues its letter and email: the server's outbox worker delivers them
        demo = _unstarted_demo(config)
        services = build_services(config, demo=demo)
        await services.database.connect()
        try:
            if approve:
                decision = await approve_request(services, request_id, note=note or "")
            else:
                decision = await reject_request(services, request_id, reason=note or "")
        finally:
            await services.close()
        if not decision.done:
            raise Refused(f"request {request_id} {decision.refused}")
        if approve:
            click.echo(
                f"request {request_id} approved: account {decision.account_id}, identifier "
                f"{decision.identifier}; the temporary password goes by post"
            )
        else:
            click.echo(f"request {request_id} rejected: the letter with the reason goes by post")
        return 0

    return asyncio.run(decide())


@requests.command()
@config_option
@click.argument("request_id", metavar="ID", type=int)
@click.option("--note", help="A note kept with the decision in the audit log.")
def approve(config_path: str, request_id: int, note: str | None) -> int:
    """Approve a pending request: its account is created, the temporary password goes by post to the
    structure's address and the contact is told by email (exit 1 when it is not pending).

    \b
    Examples:
      guichet requests approve 12 --note "RIB reçu" --config /etc/guichet/caisse.toml
    """
    return _decide(config_path, request_id, note, approve=True)


@requests.command()
@config_option
@click.argument("request_id", metavar="ID", type=int)
@click.option("--note", required=True, help="The reason, which the letter to the structure gives (required).")
def reject(config_path: str, request_id: int, note: str | None) -> int:
    """Reject a pending request: a letter with the reason goes to the structure (exit 1 when it is
    not pending).

    \b
    Examples:
      guichet requests reject 12 --note "SIRET inconnu"
    """
    return _decide(config_path, request_id, note, approve=False)


# --- init --------------------------------------------------------------------------------------------


def _write_new(path: Path, text: str, *, force: bool, mode: int = 0o644) -> None:
    if path.exists() and not force:
        raise Refused(f"{path} exists already: nothing was written (--force replaces it)")
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace the files if they exist (a new secret key logs everyone out).")
@click.option(
    "--no-database", is_flag=True, help="Write the files only; create the databases later with `guichet db upgrade`."
)
def init(directory: Path, force: bool, no_database: bool) -> int:
    """Start a caisse in DIRECTORY: a starter config, the demo config, a secret key, their databases.

    Writes DIRECTORY/caisse.toml (a production config to fill in: the caisse's name, SMTP relay,
    database), DIRECTORY/secret_key (random, readable by this account only), and DIRECTORY/demo.toml
    (the demo caisse: every email and SMS in a demo mailbox page, 200 fictitious people in its
    registry). Relative paths in both configs are relative to DIRECTORY.

    \b
    Examples:
      guichet init /srv/guichet
      guichet serve --config /srv/guichet/demo.toml      # the demo, on http://127.0.0.1:8000
      guichet config check --config /srv/guichet/caisse.toml
    """
    import secrets
    from importlib import resources

    directory.mkdir(parents=True, exist_ok=True)
    directory = directory.resolve()
    starter = resources.files("guichet").joinpath("starter/caisse.toml").read_text(encoding="utf-8")
    demo = resources.files("guichet.configs").joinpath("demo.toml").read_text(encoding="utf-8")
    key_file = directory / "secret_key"
    # an absolute path: a secret file is read from where the server runs, not from the config's folder
    starter = starter.replace(
        'secret_key = { file = "secret_key" }', f"secret_key = {{ file = {json.dumps(str(key_file))} }}"
    )
    targets = [directory / "caisse.toml", directory / "demo.toml", key_file]
    existing = [str(path) for path in targets if path.exists()]
    if existing and not force:
        raise Refused(f"{', '.join(existing)} exist(s) already: nothing was written (--force replaces them)")
    _write_new(key_file, secrets.token_urlsafe(48) + "\n", force=force, mode=0o600)
    _write_new(directory / "caisse.toml", starter, force=force)
    _write_new(directory / "demo.toml", demo, force=force)
    click.echo(f"wrote {directory / 'caisse.toml'}, {directory / 'demo.toml'} and {key_file}")
    if not no_database:
        context = click.get_current_context()
        assert context is not None  # always, inside a command
        for name in ("caisse.toml", "demo.toml"):
            context.invoke(upgrade, config_path=str(directory / name))
        registry = context.find_root().command
        demo_people = getattr(registry, "commands", {}).get("registry")
        if demo_people is not None and "demo" in getattr(demo_people, "commands", {}):
            context.invoke(demo_people.commands["demo"], config_path=str(directory / "demo.toml"), count=200, seed=1)
    click.echo(
        "\nnext:\n"
        f"  guichet serve --config {directory / 'demo.toml'}          # the demo caisse\n"
        f"  guichet config check --config {directory / 'caisse.toml'}  # what your caisse still needs"
    )
    return 0


# --- running it -----------------------------------------------------------------------------------------


def build_cli() -> click.Group:
    """The command group with the commands of every installed plugin added (``guichet_commands``)."""
    from guichet.core.plugins import add_plugin_commands
    from guichet.oidc_commands import clients, keys  # the OpenID Connect provider's (web/oidc)

    for group in (keys, clients):
        cli.add_command(group)
    add_plugin_commands(cli)
    return cli


def main(argv: list[str] | None = None) -> int:
    """Run the command; return its exit status (0 done, 1 refused, 2 bad usage or bad config)."""
    group = build_cli()
    try:
        result = group.main(args=argv, prog_name="guichet", standalone_mode=False)
    except click.ClickException as exc:  # UsageError (2), Refused (1)
        exc.show()
        return exc.exit_code
    except click.Abort:
        return 130
    except SystemExit as exc:  # rich-click exits by itself on a group called without a command (help, 2)
        return exc.code if isinstance(exc.code, int) else 1
    except ConfigError as exc:
        click.echo(f"guichet: configuration error: {exc}", err=True)
        return 2
    except GuichetError as exc:
        click.echo(f"guichet: {exc}", err=True)
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
