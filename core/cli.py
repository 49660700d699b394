"""The ``guichet`` command: serve, database, registry, plugins, config, outbox, audit, requests."""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from guichet.core.config import CaisseConfig, load_config, missing_secrets
from guichet.core.errors import ConfigError, GuichetError

DEFAULT_CONFIG = "config/demo.toml"


def _config(args: argparse.Namespace) -> CaisseConfig:
    return load_config(args.config)


def _run(coro: Awaitable[int]) -> int:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def _with_database(config: CaisseConfig, work: Callable[[Any], Awaitable[int]]) -> int:
    from guichet.core.database import Database

    database = Database.from_config(config)
    await database.connect()
    try:
        return await work(database)
    finally:
        await database.close()


# --- serve ---------------------------------------------------------------------------------------


# Restarts lose nothing behind nginx (docs/deploy.md, tests/ops/test_restart.py): a request in flight
# may run this long after SIGTERM or SIGHUP, longer than nginx's proxy_read_timeout (30 s), so nginx
# gives up first and never retries a request that may still be running.
GRACEFUL_SHUTDOWN_SECONDS = 35
# how long a new worker may take to start before a SIGHUP restart is abandoned (the old one stays)
WORKER_START_SECONDS = 30


def cmd_serve(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    from guichet.core.logs import configure_logging, uvicorn_log_config
    from guichet.core.metrics import MULTIPROCESS_ENV

    config = _config(args)
    for blocker in missing_secrets(config) or _delivery_blockers(config):  # refuse before any worker starts
        raise ConfigError(blocker)
    host = args.host or config.server.host
    port = args.port or config.server.port
    workers = args.workers or config.server.workers
    level = args.log_level or config.logging.level
    os.environ["GUICHET_CONFIG"] = str(Path(args.config).resolve())
    os.environ["GUICHET_LOG_LEVEL"] = level
    configure_logging(config.logging.format, level)
    if workers > 1 and config.database.url.startswith("sqlite") and config.server.mode != "demo":
        print("guichet: several workers share state only through PostgreSQL and Redis; "
              "SQLite is for one worker", file=sys.stderr)
    metrics_dir = None
    if workers > 1 and config.metrics.enabled and not os.environ.get(MULTIPROCESS_ENV):
        # every worker writes its series there; /metrics sums them, whichever worker answers
        metrics_dir = tempfile.mkdtemp(prefix="guichet-metrics-")
        os.environ[MULTIPROCESS_ENV] = metrics_dir
    # Always uvicorn's supervisor, even for one worker: it holds the listening socket, so SIGHUP
    # replaces each worker by a new one (started first) without refusing a connection, and
    # SIGTERM lets every worker finish its requests, then stop its app (the outbox worker gives
    # back what it had not started).
    server = uvicorn.Config("guichet.web.app:app_from_environment", factory=True, host=host, port=port, workers=workers,
                            log_level=level, log_config=uvicorn_log_config(config.logging.format, level),
                            access_log=False, proxy_headers=False, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
                            timeout_worker_healthcheck=WORKER_START_SECONDS)
    supervisor = Multiprocess(server, sockets=[server.bind_socket()])
    try:
        supervisor.run()
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        return 3  # a worker could not start (its error is in the log above): so would the next one
    return 0


# --- db --------------------------------------------------------------------------------------------


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    config = _config(args)

    async def work(database: Any) -> int:
        applied = await database.upgrade()
        version = await database.schema_version()
        print(f"schema at version {version}" + (f" (applied {', '.join(map(str, applied))})" if applied else " (up to date)"))
        return 0

    return _run(_with_database(config, work))


# --- registry --------------------------------------------------------------------------------------


def cmd_registry_import(args: argparse.Namespace) -> int:
    from guichet.core.registry_import import import_registry

    config = _config(args)

    async def work(database: Any) -> int:
        await database.upgrade()
        report = await import_registry(database, persons=args.persons, payments=args.payments,
                                       companies=args.companies, partial=args.partial)
        print(report.describe())
        return 0 if report.ok else 1

    return _run(_with_database(config, work))


def cmd_registry_demo(args: argparse.Namespace) -> int:
    from guichet.core.registry_import import generate_demo_registry

    config = _config(args)

    async def work(database: Any) -> int:
        await database.upgrade()
        summary = await generate_demo_registry(database, count=args.count, seed=args.seed)
        print(summary.describe())
        return 0

    return _run(_with_database(config, work))


# --- plugins and config ----------------------------------------------------------------------------


def cmd_plugins(args: argparse.Namespace) -> int:
    from guichet.core.hookspecs import HOOK_API_VERSION
    from guichet.core.plugins import load_plugins

    config = _config(args)
    _pm, infos = load_plugins(config)
    print(f"guichet hook API {HOOK_API_VERSION}")
    for info in infos:
        print(f"{info.name}  ({info.source}: {info.module})")
        for hook in info.hooks:
            print(f"    {hook}")
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    from guichet.core.baseline import effective_values, settings_notes, weaker_than_baseline
    from guichet.core.departures import DOC_PATH, citizen_values

    config = load_config(args.file)
    notes = settings_notes(config)
    refused = [note for note in notes if note.refused]
    for note in refused:
        print(f"guichet: configuration error: {args.file}: {note.key}: {note.message}", file=sys.stderr)
    if refused:
        return 2
    print(f"{args.file}: valid")
    for note in notes:
        print(f"  note: {note.key}: {note.message}")
    print()
    print("Effective values:")
    for key, value in effective_values(config):
        print(f"  {key} = {value}")
    print()
    print(f"Departures from the seeds ({DOC_PATH}):")
    for key, value in citizen_values(config):
        print(f"  {key} = {value}")
    findings = weaker_than_baseline(config)
    print()
    if not findings:
        print("No value weaker than the security baseline (ASVS 5.0 L2 / NIST SP 800-63B).")
    else:
        print(f"{len(findings)} value(s) weaker than the security baseline (ASVS 5.0 L2 / NIST SP 800-63B):")
        for finding in findings:
            print(f"  - {finding.key}: {finding.value} — {finding.standard}")
            print(f"    compensating controls: {finding.compensation}")
    blockers = missing_secrets(config) or _delivery_blockers(config)
    print()
    if blockers:
        print("Ready to serve: no")
        for blocker in blockers:
            print(f"  - {blocker}")
        return 1
    print("Ready to serve: yes (secrets resolved; every purpose has a channel)")
    return 0


def _delivery_blockers(config: CaisseConfig) -> list[str]:
    """What `guichet serve` would refuse before it starts: plugins, channels, every purpose served."""
    from guichet.core.clock import Clock
    from guichet.core.context import PluginContext
    from guichet.core.database import Database
    from guichet.core.plugins import PluginHost

    from guichet.core.context import DemoEndpoints

    # demo mode: the channels send to the demo mailbox's local sinks, which only `guichet serve` starts
    demo = DemoEndpoints(smtp_host="127.0.0.1", smtp_port=1, sms_url="http://127.0.0.1:1/sms",
                         mailbox_dir=config.demo.mailbox_dir) if config.demo.mailbox else None
    try:
        host = PluginHost(config, PluginContext(config=config, database=Database.from_config(config), clock=Clock(),
                                                demo=demo))
        host.check_can_serve()
    except ConfigError as exc:
        return [str(exc)]
    return []


# --- outbox ----------------------------------------------------------------------------------------


def cmd_outbox_work(args: argparse.Namespace) -> int:
    from guichet.core.logs import configure_logging
    from guichet.core.outbox_worker import run_worker_process

    config = _config(args)
    configure_logging(config.logging.format, config.logging.level)
    return _run(run_worker_process(config, once=args.once))


def cmd_outbox_status(args: argparse.Namespace) -> int:
    from guichet.core.outbox_worker import outbox_status

    config = _config(args)

    async def work(database: Any) -> int:
        counts = await outbox_status(database)
        if not counts:
            print("the outbox is empty")
        for (channel, state), count in sorted(counts.items()):
            print(f"{channel:<12} {state:<10} {count}")
        return 0

    return _run(_with_database(config, work))


def cmd_outbox_retry(args: argparse.Namespace) -> int:
    from guichet.core.outbox_worker import retry_message

    config = _config(args)

    async def work(database: Any) -> int:
        if await retry_message(database, args.id):
            print(f"message {args.id} will be delivered again")
            return 0
        print(f"message {args.id} is not a failed message", file=sys.stderr)
        return 1

    return _run(_with_database(config, work))


# --- audit and third-party requests ----------------------------------------------------------------


def cmd_audit_tail(args: argparse.Namespace) -> int:
    from guichet.core.events import Auditor

    config = _config(args)

    async def work(database: Any) -> int:
        for row in await Auditor(database).tail(args.lines):
            print(f"{row['at']:%Y-%m-%d %H:%M:%S} {row['kind']:<24} account={row['account_id'] or '-'} "
                  f"subject={row['subject'] or '-'} client={row['client'] or '-'} {row['details']}")
        return 0

    return _run(_with_database(config, work))


def cmd_requests(args: argparse.Namespace) -> int:
    from guichet.core.third_party import decide_request, list_requests

    config = _config(args)

    async def work(database: Any) -> int:
        if args.action == "list":
            rows = await list_requests(database, state=args.state)
            if not rows:
                print("no request")
            for row in rows:
                print(f"#{row.id} {row.state:<9} {row.created_at:%Y-%m-%d} {row.structure_kind:<28} "
                      f"{row.structure_name} (SIRET {row.siret}) — {row.contact_name} <{row.email}>")
            return 0
        if args.id is None:
            print("guichet requests: approve and reject need a request number", file=sys.stderr)
            return 2
        from guichet.core.clock import Clock
        from guichet.core.context import PluginContext
        from guichet.core.events import Auditor
        from guichet.core.plugins import PluginHost

        host = PluginHost(config, PluginContext(config=config, database=database, clock=Clock()), channels=False)
        done = await decide_request(database, args.id, approve=args.action == "approve", note=args.note or "",
                                    auditor=Auditor(database, host))
        print(f"request {args.id} {'approved' if args.action == 'approve' else 'rejected'}" if done
              else f"request {args.id} is not pending")
        return 0 if done else 1

    return _run(_with_database(config, work))


# --- parser ----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="guichet", description="Account and login framework for public-service portals.")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", default=os.environ.get("GUICHET_CONFIG", DEFAULT_CONFIG),
                       help=f"the caisse config file (default: $GUICHET_CONFIG or {DEFAULT_CONFIG})")
        return p

    serve = with_config(sub.add_parser("serve", help="serve the web pages (and deliver the outbox)"))
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"],
                       help="default: [logging] level in the config")
    serve.set_defaults(func=cmd_serve)

    db = sub.add_parser("db", help="the database schema").add_subparsers(dest="db_command", required=True)
    with_config(db.add_parser("upgrade", help="create or migrate the schema")).set_defaults(func=cmd_db_upgrade)

    registry = sub.add_parser("registry", help="what the caisse knows of persons and companies")
    reg = registry.add_subparsers(dest="registry_command", required=True)
    imp = with_config(reg.add_parser("import", help="import CSV files (docs/registry.md)"))
    imp.add_argument("persons", nargs="?", type=Path, help="persons.csv")
    imp.add_argument("payments", nargs="?", type=Path, help="payments.csv")
    imp.add_argument("--companies", type=Path, help="companies.csv")
    imp.add_argument("--partial", action="store_true", help="import the good rows even when some are bad")
    imp.set_defaults(func=cmd_registry_import)
    demo = with_config(reg.add_parser("demo", help="generate fictitious persons and companies"))
    demo.add_argument("--count", type=int, default=100)
    demo.add_argument("--seed", type=int, default=1)
    demo.set_defaults(func=cmd_registry_demo)

    with_config(sub.add_parser("plugins", help="the enabled plugins and their hooks")).set_defaults(func=cmd_plugins)

    config = sub.add_parser("config", help="caisse config files").add_subparsers(dest="config_command", required=True)
    check = config.add_parser("check", help="validate a config and list what is weaker than the baseline")
    check.add_argument("file")
    check.set_defaults(func=cmd_config_check)

    outbox = sub.add_parser("outbox", help="messages waiting for delivery").add_subparsers(dest="outbox_command",
                                                                                            required=True)
    work = with_config(outbox.add_parser("work", help="deliver messages (a separate worker process)"))
    work.add_argument("--once", action="store_true", help="deliver what is due, then stop")
    work.set_defaults(func=cmd_outbox_work)
    with_config(outbox.add_parser("status", help="counts per channel and state")).set_defaults(func=cmd_outbox_status)
    retry = with_config(outbox.add_parser("retry", help="deliver a failed message again"))
    retry.add_argument("id", type=int)
    retry.set_defaults(func=cmd_outbox_retry)

    audit = sub.add_parser("audit", help="security events").add_subparsers(dest="audit_command", required=True)
    tail = with_config(audit.add_parser("tail", help="the latest security events"))
    tail.add_argument("-n", "--lines", type=int, default=50)
    tail.set_defaults(func=cmd_audit_tail)

    requests = with_config(sub.add_parser("requests", help="third parties' requests (\"Autre\")"))
    requests.add_argument("action", choices=["list", "approve", "reject"])
    requests.add_argument("id", nargs="?", type=int)
    requests.add_argument("--state", choices=["pending", "approved", "rejected"])
    requests.add_argument("--note")
    requests.set_defaults(func=cmd_requests)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"guichet: configuration error: {exc}", file=sys.stderr)
        return 2
    except GuichetError as exc:
        print(f"guichet: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
