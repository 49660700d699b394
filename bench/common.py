"""What every bench shares: machine facts, a config per run, the database made ready, the server
started and stopped as a subprocess, a local SMTP sink that reads the codes, figures appended to
docs/benchmarks.md.

Benches drive ``guichet serve`` from their own process over loopback; nothing here imports the
web app into the load generator.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import os
import platform
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BIN = Path(sys.executable).parent
GUICHET = str(BIN / "guichet") if (BIN / "guichet").exists() else "guichet"
RESULTS = ROOT / "docs" / "benchmarks.md"
BENCH_SECRET = "bench-secret-key-0123456789abcdef0123456789"
BENCH_PASSWORD = "Banc-Essai-Mesure-2026!"
POSTGRES_ADMIN = os.environ.get("GUICHET_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("GUICHET_BENCH_REDIS", "redis://127.0.0.1:6379/7")

OWASP = (19456, 2, 1)  # guichet's default: OWASP's minimum (m KiB, t, p)
KEYCLOAK = (7168, 5, 1)  # Keycloak's default argon2id parameters
# not a setting for production: a hash that costs next to nothing, so that a run measures the overhead alone
NEGLIGIBLE = (1024, 1, 1)
ARGON2_PROFILES = {"owasp": OWASP, "keycloak": KEYCLOAK, "negligible": NEGLIGIBLE}


def add_login_options(parser: Any) -> None:
    """The options every login bench shares: the argon2id profile and where the state lives."""
    parser.add_argument(
        "--params",
        choices=list(ARGON2_PROFILES),
        default="owasp",
        help="negligible: m=1 MiB, t=1 (never a production setting): what a login costs besides its hash",
    )
    parser.add_argument("--engine", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--redis", action="store_true", help="sessions and rate limits in Redis")


# --- machine facts ---------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def machine_facts() -> dict[str, str]:
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load average (1/5/15 min) at start": loadavg(),
    }


def command_line() -> str:
    """The command that ran this bench, as typed from the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        script_text = str(script.relative_to(ROOT))
    except ValueError:
        script_text = str(script)
    return " ".join([".venv/bin/python", script_text, *map(shlex.quote, sys.argv[1:])])


# --- CPU accounting: what the bench's processes used, and what everything else did -----------------


def _jiffies_of(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0


def _machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


class CpuMeter:
    """CPU seconds per named group of processes over a window, and the machine's other CPU use."""

    HZ = os.sysconf("SC_CLK_TCK")

    def __init__(self) -> None:
        self.start_ours: dict[str, int] = {}
        self.start_machine = (0, 0)
        self.groups: dict[str, list[int]] = {}

    def begin(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.start_pids = {pid: _jiffies_of(pid) for pids in groups.values() for pid in pids}
        self.start_machine = _machine_jiffies()

    def end(self) -> dict[str, float]:
        # per process, and only processes alive at both ends (a PostgreSQL backend may come and go)
        ours = {
            name: sum(
                max(0, _jiffies_of(p) - self.start_pids[p])
                for p in pids
                if p in self.start_pids and Path(f"/proc/{p}").exists()
            )
            / self.HZ
            for name, pids in self.groups.items()
        }
        busy, total = _machine_jiffies()
        busy_s = (busy - self.start_machine[0]) / self.HZ
        wall_cores = (total - self.start_machine[1]) / self.HZ
        ours["machine busy"] = busy_s
        ours["others"] = max(0.0, busy_s - sum(v for k, v in ours.items() if k != "machine busy"))
        ours["machine capacity"] = wall_cores
        return ours


def describe_cpu(cpu: dict[str, float], seconds: float) -> str:
    parts = [
        f"{name} {value / seconds:.2f}"
        for name, value in cpu.items()
        if name not in ("machine busy", "machine capacity")
    ]
    return (
        f"CPU in cores over the window: {', '.join(parts)}; machine busy "
        f"{cpu['machine busy'] / max(cpu['machine capacity'], 1e-9) * 100:.0f} %"
    )


# --- server-side CPU per component, with psutil -----------------------------------------------------


def _redis_port() -> int:
    from urllib.parse import urlsplit

    return urlsplit(REDIS_URL).port or 6379


def postgres_processes(database_name: str) -> dict[str, list[int]]:
    """PostgreSQL's processes on this machine: the backends serving ``database_name`` and the
    cluster's shared processes (postmaster, WAL writer, checkpointer, background writer, autovacuum
    launcher). Backends of other databases (other people's tests) are left out."""
    import psutil

    ours: list[int] = []
    shared: list[int] = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        if not (proc.info["name"] or "").startswith("postgres"):
            continue
        text = " ".join(proc.info["cmdline"] or [])
        if database_name and database_name in text:
            ours.append(proc.pid)
        elif not text.startswith("postgres:") or any(
            word in text
            for word in (
                "checkpointer",
                "background writer",
                "walwriter",
                "autovacuum launcher",
                "replication launcher",
            )
        ):
            shared.append(proc.pid)
    return {"PostgreSQL backends (this database)": ours, "PostgreSQL shared processes": shared}


def redis_processes() -> list[int]:
    """The redis-server listening on the port of ``REDIS_URL`` (shared with whoever else uses it)."""
    import psutil

    port = f":{_redis_port()}"
    return [
        proc.pid
        for proc in psutil.process_iter(["name", "cmdline"])
        if (proc.info["name"] or "").startswith("redis-server") and port in " ".join(proc.info["cmdline"] or [])
    ]


class ServerMeter:
    """CPU seconds (user + system, psutil ``cpu_times``) of each group of server-side processes over a
    window. The groups are functions re-evaluated at every ``sample()``: a process that starts
    during the window (a new PostgreSQL backend) counts from its start, one that ends keeps what it
    had used at the last sample."""

    def __init__(self, groups: dict[str, Any]) -> None:
        self.groups = groups  # name -> callable returning pids
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.group_of: dict[int, str] = {}
        self.procs: dict[int, Any] = {}
        self.started = 0.0
        self.machine = CpuMeter()

    def _cpu(self, pid: int) -> float | None:
        import psutil

        try:
            proc = self.procs.get(pid) or self.procs.setdefault(pid, psutil.Process(pid))
            times = proc.cpu_times()
            return float(times.user + times.system)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None

    def sample(self) -> None:
        import psutil

        for name, find in self.groups.items():
            for pid in find():
                value = self._cpu(pid)
                if value is None:
                    continue
                if pid not in self.first:
                    try:
                        born_inside = self.started and psutil.Process(pid).create_time() >= self.started
                    except psutil.Error:
                        born_inside = False
                    self.first[pid] = 0.0 if born_inside else value
                    self.group_of[pid] = name
                self.last[pid] = value

    def begin(self) -> None:
        self.sample()
        self.started = time.time()
        self.machine.begin({})

    def end(self) -> dict[str, float]:
        self.sample()
        used = {name: 0.0 for name in self.groups}
        for pid, name in self.group_of.items():
            used[name] += max(0.0, self.last[pid] - self.first[pid])
        machine = self.machine.end()
        used["machine busy"] = machine["machine busy"]
        used["machine capacity"] = machine["machine capacity"]
        return used


def server_total(cpu: dict[str, float], names: Iterable[str]) -> float:
    return sum(cpu.get(name, 0.0) for name in names)


# --- where the non-hash CPU goes: a py-spy profile sorted into components ----------------------------

HASH_COMPONENT = "argon2id (the hash)"

# site-packages name -> component; the frames of the standard library (re, functools, ...) are
# charged to the nearest caller that is not generic, except email and asyncio, which are components
_PACKAGE_COMPONENT = {
    "piccolo": "SQL (piccolo, drivers, pool)",
    "aiosqlite": "SQL (piccolo, drivers, pool)",
    "asyncpg": "SQL (piccolo, drivers, pool)",
    "sqlite3": "SQL (piccolo, drivers, pool)",
    "redis": "Redis client",
    "litestar": "Litestar",
    "litestar_htmx": "Litestar",
    "multipart": "Litestar",
    "uvicorn": "event loop, sockets (uvicorn, asyncio)",
    "httptools": "event loop, sockets (uvicorn, asyncio)",
    "uvloop": "event loop, sockets (uvicorn, asyncio)",
    "h11": "event loop, sockets (uvicorn, asyncio)",
    "asyncio": "event loop, sockets (uvicorn, asyncio)",
    "selectors": "event loop, sockets (uvicorn, asyncio)",
    "jinja2": "templates (Jinja)",
    "markupsafe": "templates (Jinja)",
    "aiosmtplib": "SMTP client (aiosmtplib)",
    "email": "email composition (stdlib email)",
    "argon2": HASH_COMPONENT,
    "_cffi_backend": HASH_COMPONENT,
    "cryptography": "crypto (cookies, sealed outbox)",
    "joserfc": "crypto (cookies, sealed outbox)",
    "hmac": "crypto (cookies, sealed outbox)",
    "hashlib": "crypto (cookies, sealed outbox)",
    "pluggy": "plugin calls (pluggy)",
    "msgspec": "guichet code",
    "prometheus_client": "metrics",
    "logging": "logging",
}
_GUICHET_SQL_FILES = ("core/sqlite_pool.py", "core/database.py")


def _component(path: str) -> str | None:
    """A frame's component, or None for generic standard-library code."""
    path = path.replace("\\", "/")
    if "site-packages/" in path:
        package = path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py").split(".")[0]
        return _PACKAGE_COMPONENT.get(package, f"other libraries ({package})")
    root = str(ROOT) + "/"
    if path.startswith(root) or "/guichet/" in path:
        if path.endswith(_GUICHET_SQL_FILES):
            return "SQL (piccolo, drivers, pool)"
        if "plugins/delivery_email/" in path:
            return "email composition (stdlib email)"
        return "guichet code"
    for marker in ("/python3.11/", "/python3.12/", "/python3.13/"):
        if marker in path:
            module = path.split(marker, 1)[1].split("/", 1)[0].removesuffix(".py")
            return _PACKAGE_COMPONENT.get(module)
    return None


# a thread blocked in one of these statements is waiting, not working: py-spy's own idle test does
# not see it (the wait is in C: a queue, a lock, epoll, uvloop's run loop, a pipe)
_WAITING = re.compile(
    r"(\.get\((block=True)?\)|\.wait\(|\bselect\(|\.poll\(|run_until_complete\(|run_forever\(|"
    r"_recv(_bytes)?\(|\.acquire\(|\bsleep\()"
)


def _waiting(frame: str) -> bool:
    import linecache

    try:
        location = frame.rsplit(" (", 1)[1].rstrip(")")
        filename, _, line = location.rpartition(":")
        return bool(_WAITING.search(linecache.getline(filename, int(line))))
    except (IndexError, ValueError):
        return False


def profile_components(path: Path) -> tuple[dict[str, int], int]:
    """Busy samples per component in a py-spy raw (collapsed) file, and their total. A sample whose
    innermost frame is a wait is dropped; the others go to their innermost frame that belongs to a
    component (generic standard-library frames go to their caller)."""
    counts: dict[str, int] = {}
    total = 0
    if not path.exists():
        return counts, 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        try:
            count = int(count_text)
        except ValueError:
            continue
        frames = stack.split(";")
        if frames and _waiting(frames[-1]):
            continue
        total += count
        found = "other (standard library)"
        for frame in reversed(frames):
            if " (" not in frame:
                continue
            component = _component(frame.rsplit(" (", 1)[1].rsplit(":", 1)[0])
            if component is not None:
                found = component
                break
        counts[found] = counts.get(found, 0) + count
    return counts, total


# --- the servers' own argon2id figures --------------------------------------------------------------


_ARGON2_SERIES = re.compile(
    r'^guichet_argon2_(cpu_seconds_total|seconds_count)\{operation="verify"\} ([0-9.e+-]+)$', re.M
)


def argon2_verify_totals(urls: list[str]) -> tuple[float, float]:
    """(CPU seconds, verifies) the servers' hashing threads have spent and made so far, read from
    their /metrics (``guichet_argon2_cpu_seconds_total``: each hashing thread's own CPU time)."""
    import httpx

    cpu = count = 0.0
    for url in urls:
        answer = httpx.get(f"{url}/metrics", timeout=5)
        answer.raise_for_status()  # a refused scrape must not read as no hashing at all
        text = answer.text
        for series, value in _ARGON2_SERIES.findall(text):
            if series == "cpu_seconds_total":
                cpu += float(value)
            else:
                count += float(value)
    return cpu, count


# --- memory -----------------------------------------------------------------------------------------


def rss_kib(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) in KiB from /proc/<pid>/status."""
    rss = hwm = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


def children_of(pid: int) -> list[int]:
    found = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            found += [int(c) for c in text]
    except OSError:
        pass
    return found


# --- ports, configs, database -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config_text(
    *,
    caisse_id: str,
    database_url: str,
    smtp_port: int,
    argon2: tuple[int, int, int],
    redis_url: str | None = None,
    inline_outbox: bool = False,
    workers: int = 1,
    max_concurrent_hashes: int = 2,
    pool_size: int = 10,
    extra: str = "",
) -> str:
    m, t, p = argon2
    redis = f'\n[redis]\nurl = "{redis_url}"\n\n[rate_limits]\nstore = "redis"\n' if redis_url else ""
    sessions_store = 'store = "redis"' if redis_url else 'store = "database"'
    return f"""
# written by bench/common.py for one bench run
[caisse]
id = "{caisse_id}"
name = "MSA Banc d'essai"
postal_address = ["MSA Banc d'essai", "1 rue de la Mesure", "75002 PARIS"]

[plugins]
enabled = ["statuses_msa", "registry_tables", "identity_vitale", "identity_payment",
           "delivery_email", "delivery_sms", "delivery_postal", "password_msa"]

[plugins.settings.delivery_email]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
timeout_seconds = 10
sender = "MSA Banc d'essai <ne-pas-repondre@bench.invalid>"

[plugins.settings.delivery_sms]
url = "http://127.0.0.1:9/sms"

[plugins.settings.delivery_postal]
spool_dir = "spool/letters"

[security]
secret_key = {{ value = "{BENCH_SECRET}" }}
# the load generator plays the reverse proxy: X-Forwarded-For gives each simulated person an address
trusted_proxies = ["127.0.0.1"]

[passwords]
max_concurrent_hashes = {max_concurrent_hashes}

[passwords.argon2]
memory_kib = {m}
time_cost = {t}
parallelism = {p}

[sessions]
secure_cookies = false
{sessions_store}

[database]
url = "{database_url}"
pool_size = {pool_size}
{redis}
[server]
# "demo" only for the literal secret and plain-HTTP cookies on loopback; the demo mailbox is off
mode = "demo"
workers = {workers}
outbox_worker = {"true" if inline_outbox else "false"}
{extra}
"""


class BenchDatabase:
    """A database of the bench's own: a SQLite file in the run folder, or a PostgreSQL database."""

    def __init__(self, engine: str, folder: Path) -> None:
        self.engine = engine
        self.folder = folder
        self.pg_name = ""
        if engine == "sqlite":
            self.url = f"sqlite:///{folder / 'bench.sqlite'}"
        else:
            self.pg_name = f"guichet_bench_{os.getpid()}_{secrets.token_hex(3)}"
            base = POSTGRES_ADMIN.rpartition("/")[0]
            self.url = f"{base}/{self.pg_name}"

    async def _admin(self, sql: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(POSTGRES_ADMIN, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def create(self) -> None:
        if self.pg_name:
            await self._admin(f'CREATE DATABASE "{self.pg_name}"')

    async def drop(self) -> None:
        if self.pg_name:
            await self._admin(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')


class BenchRun(NamedTuple):
    """What every bench run starts with: its folder, its own database, the SMTP sink, the config."""

    folder: Path
    database: "BenchDatabase"
    sink: "CodeSink"
    caisse_id: str
    config_path: Path


async def start_run(
    name: str, *, engine: str, redis: bool, edit: Callable[[str], str] = lambda text: text, **config: Any
) -> BenchRun:
    """A run folder, a database of the run's own, a started code sink and the config written
    (``config_text`` with ``config``; ``edit`` may change the text, to enable a plugin say)."""
    folder = run_folder(name)
    database = BenchDatabase(engine, folder)
    await database.create()
    sink = CodeSink().start(asyncio.get_running_loop())
    caisse_id = f"bench-{os.getpid()}"
    config_path = folder / "bench.toml"
    text = config_text(
        caisse_id=caisse_id,
        database_url=database.url,
        smtp_port=sink.port,
        redis_url=REDIS_URL if redis else None,
        **config,
    )
    config_path.write_text(edit(text))
    return BenchRun(folder, database, sink, caisse_id, config_path)


async def prepare_database(
    config_path: Path, *, registry_count: int, accounts: int, password: str = BENCH_PASSWORD
) -> list[dict[str, Any]]:
    """Schema, a demo registry (``guichet registry demo``), and ``accounts`` accounts with a known
    password hashed at the config's argon2 parameters; returns [{identifier, email}] of the accounts."""
    from argon2 import PasswordHasher

    from guichet.core.config import load_config
    from guichet.core.database import Database
    from guichet.core.passwords import normalise
    from guichet.plugins.registry_tables.tables import tables_of as registry_tables_of

    config = load_config(config_path)
    done = subprocess.run(
        [GUICHET, "registry", "demo", "--config", str(config_path), "--count", str(registry_count)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise SystemExit(f"guichet registry demo failed:\n{done.stdout}\n{done.stderr}")
    database = Database.from_config(config)
    await database.connect()
    try:
        params = config.passwords.argon2
        hasher = PasswordHasher(
            time_cost=params.time_cost, memory_cost=params.memory_kib, parallelism=params.parallelism
        )
        password_hash = hasher.hash(normalise(password))  # one hash for all: the bench measures login, not set-up
        person = registry_tables_of(database).RegistryPerson
        account = database.t.Account
        rows = await (
            person.select(person.nir, person.last_name, person.first_name, person.birth_date)
            .order_by(person.id)
            .limit(accounts)
            .run()
        )
        if len(rows) < accounts:
            raise SystemExit(f"the registry holds {len(rows)} persons, fewer than the {accounts} accounts wanted")
        await account.delete(force=True).run()
        now = dt.datetime.now(dt.UTC)
        made = []
        batch = []
        for i, row in enumerate(rows):
            address = f"bench{i}@bench.invalid"
            batch.append(
                account(
                    identifier_kind="nir",
                    identifier=row["nir"],
                    status="particulier",
                    last_name=row["last_name"],
                    first_name=row["first_name"],
                    birth_date=row["birth_date"],
                    email=address,
                    email_verified=True,
                    password_hash=password_hash,
                    password_is_temporary=False,
                    password_changed_at=now,
                    contacts_confirmed_at=now,
                    credentials_version=1,
                    created_at=now,
                )
            )
            made.append({"identifier": row["nir"], "email": address})
            if len(batch) == 500:
                await account.insert(*batch).run()
                batch = []
        if batch:
            await account.insert(*batch).run()
        return made
    finally:
        await database.close()


async def registrable_persons(config_path: Path, limit: int) -> list[dict[str, Any]]:
    """Registry persons who can register through the Vitale question and have no account yet."""
    from guichet.core.config import load_config
    from guichet.core.database import Database
    from guichet.plugins.registry_tables.tables import tables_of as registry_tables_of

    database = Database.from_config(load_config(config_path))
    await database.connect()
    try:
        person = registry_tables_of(database).RegistryPerson
        account = database.t.Account
        taken = {r["identifier"] for r in await account.select(account.identifier).run()}
        rows = await (
            person.select(person.nir, person.last_name, person.first_name, person.birth_date, person.vitale_serial)
            .where(person.vitale_serial.is_not_null() & (person.health_affiliated == True))  # noqa: E712
            .order_by(person.id)
            .run()
        )
        return [r for r in rows if r["nir"] not in taken][:limit]
    finally:
        await database.close()


async def clear_redis(namespace_prefix: str) -> None:
    import redis.asyncio as redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match=f"guichet:{namespace_prefix}*", count=1000)]
        for start in range(0, len(keys), 500):
            await client.delete(*keys[start : start + 500])
    finally:
        await client.aclose()


# --- processes --------------------------------------------------------------------------------------


async def tear_down(
    servers: list["Server"],
    outbox: "OutboxProcess | None",
    sink: "CodeSink",
    database: "BenchDatabase",
    redis_namespace: str | None = None,
) -> None:
    """Stop what a flow bench started and drop what it made, whatever state it stopped in."""
    for server in servers:
        server.stop()
    if outbox is not None:
        outbox.stop()
    sink.stop()
    await database.drop()
    if redis_namespace is not None:
        await clear_redis(redis_namespace)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 20) -> int | None:
    """SIGTERM, wait, then SIGKILL: a server that hangs on exit never hangs the bench."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


class Server:
    """``guichet serve`` on a free loopback port, as a subprocess."""

    def __init__(
        self,
        config_path: Path,
        *,
        workers: int = 1,
        port: int | None = None,
        log: Path | None = None,
        env: dict[str, str] | None = None,
        asgi_server: str = "uvicorn",
    ) -> None:
        self.config_path = config_path
        self.asgi_server = asgi_server
        self.workers = workers
        self.port = port or free_port()
        self.log_path = log or config_path.parent / f"serve-{self.port}.log"
        self.env = env or {}
        self.proc: subprocess.Popen[Any] | None = None
        self.peak_rss: dict[int, int] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> "Server":
        import httpx

        log = self.log_path.open("ab")
        env = {**os.environ, **self.env}
        if self.asgi_server == "granian":  # tried against uvicorn (issue 18): the same app, another server
            command = [str(BIN / "granian"), "--interface", "asgi", "--factory", "--loop", "uvloop"]
            command += ["--no-access-log", "guichet.web.app:app_from_environment"]
            env.update(GUICHET_CONFIG=str(self.config_path), GUICHET_LOG_LEVEL="warning")
        else:
            command = [GUICHET, "serve", "--config", str(self.config_path)]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers)]
        command += ["--log-level", "warning"]
        self.proc = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"guichet serve exited with {self.proc.returncode}; see {self.log_path}")
            try:
                if (
                    httpx.get(f"{self.url}/sante/pret", timeout=2).status_code == 200
                    and len(self.worker_pids()) >= self.workers
                ):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"guichet serve did not become ready in {timeout} s; see {self.log_path}")

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: the server's worker children (``guichet serve`` starts
        its worker in a child process even with one worker), or the server itself if it has none."""
        assert self.proc is not None

        def is_worker(pid: int) -> bool:  # not multiprocessing's resource tracker
            try:
                return b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                return False

        return [pid for pid in children_of(self.proc.pid) if is_worker(pid)] or [self.proc.pid]

    def all_pids(self) -> list[int]:
        assert self.proc is not None
        return [self.proc.pid, *children_of(self.proc.pid)]

    def sample_memory(self) -> None:
        for pid in self.worker_pids():
            self.peak_rss[pid] = max(self.peak_rss.get(pid, 0), rss_kib(pid)[1])

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        self.sample_memory()
        return stop_process(self.proc)


class OutboxProcess:
    """``guichet outbox work``: the outbox worker as a process of its own (the production layout)."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.proc: subprocess.Popen[Any] | None = None

    def start(self) -> "OutboxProcess":
        log = (self.config_path.parent / "outbox.log").open("ab")
        self.proc = subprocess.Popen(
            [GUICHET, "outbox", "work", "--config", str(self.config_path)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc else []

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


def start_profiler(
    pid: int, seconds: float, out: Path, *, native: bool = False, gil_only: bool = False, rate: int = 200
) -> subprocess.Popen[Any] | None:
    """py-spy record on one process (collapsed stacks); None when py-spy is not installed.

    ``gil_only`` samples only the thread holding the GIL: the Python work of the event loop,
    without the argon2id threads (which release it) or idle waits."""
    spy = BIN / "py-spy"
    if not spy.exists():
        print("py-spy is not installed: pip install -e '.[test]'", file=sys.stderr)
        return None
    command = [
        str(spy),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(seconds)),
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--output",
        str(out),
        "--nonblocking",
        "--full-filenames",
    ]
    if native:
        command.append("--native")
    if gil_only:
        command.append("--gil")
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarise_profile(path: Path, top: int = 25) -> str:
    """Self and inclusive sample shares of the busiest functions in a py-spy raw (collapsed) file."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        try:
            count = int(count_text)
        except ValueError:
            continue
        frames = [
            f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 2)[-1] + ")" if " (" in f else f
            for f in stack.split(";")
        ]
        total += count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
        if frames:
            own[frames[-1]] = own.get(frames[-1], 0) + count
    lines = [f"{total} samples"]
    lines.append("inclusive:")
    for frame, count in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {count / total * 100:5.1f} %  {frame}")
    lines.append("self:")
    for frame, count in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {count / total * 100:5.1f} %  {frame}")
    return "\n".join(lines)


def start_argon2_ceiling(
    params: tuple[int, int, int], seconds: float, processes: int = 1
) -> list[subprocess.Popen[str]]:
    m, t, p = params
    return [
        subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "bench" / "argon2_ceiling.py"),
                "--memory-kib",
                str(m),
                "--time-cost",
                str(t),
                "--parallelism",
                str(p),
                "--seconds",
                str(seconds),
                "--json",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]


def argon2_ceiling(params: tuple[int, int, int], seconds: float = 5.0, processes: int = 1) -> float:
    """Verifications per second: one process per core, each a tight loop of PasswordHasher.verify."""
    return argon2_verify_cost(params, seconds, processes)["per_second"]


def argon2_verify_cost(params: tuple[int, int, int], seconds: float = 5.0, processes: int = 1) -> dict[str, float]:
    """A tight loop of PasswordHasher.verify: verifications per second (all processes together) and
    the process CPU of one verification in ms (``cpu_ms``), which does not move with the machine's load."""
    import json

    procs = start_argon2_ceiling(params, seconds, processes)
    total = 0.0
    cpu = 0.0
    count = 0
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds * 10 + 60)
        result = json.loads(out)
        total += result["per_second"]
        cpu += result["cpu_seconds"]
        count += result["count"]
    return {"per_second": total, "cpu_ms": cpu / max(count, 1) * 1000, "count": float(count)}


# --- the codes: a local SMTP server that reads them out of the delivered emails ---------------------

_CODE_LINE = re.compile(r"^ {4}([0-9A-Za-z]{4,12})\s*$", re.M)


class CodeSink:
    """An aiosmtpd server in its own thread; ``await sink.code_for(address)`` gives the next code sent there."""

    def __init__(self) -> None:
        self.port = free_port()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.queues: dict[str, asyncio.Queue[str]] = {}
        self.received = 0
        self.unparsed = 0
        self._lock = threading.Lock()
        self.controller: Any = None

    def start(self, loop: asyncio.AbstractEventLoop) -> "CodeSink":
        from aiosmtpd.controller import Controller

        self.loop = loop
        # a fixed greeting name: aiosmtpd would otherwise look up the host's FQDN for every connection
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, server_hostname="bench.invalid")
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        # compat32 parsing: the modern email policy's header objects cost more CPU than the rest of
        # receiving, on cores the server shares
        message = email.message_from_bytes(envelope.original_content or envelope.content)
        text = ""
        for part in message.walk():
            if part.get_content_type() == "text/plain":
                payload = part.get_payload(decode=True)
                text = payload.decode(part.get_content_charset() or "utf-8") if isinstance(payload, bytes) else ""
                break
        found = _CODE_LINE.search(text)
        with self._lock:
            self.received += 1
        if found is None:
            with self._lock:
                self.unparsed += 1
            return "250 OK"
        assert self.loop is not None
        for rcpt in envelope.rcpt_tos:
            self.loop.call_soon_threadsafe(self._put, rcpt.lower(), found.group(1))
        return "250 OK"

    def _put(self, address: str, code: str) -> None:
        self.queues.setdefault(address, asyncio.Queue()).put_nowait(code)

    def forget(self, address: str) -> None:
        """Drop codes waiting for an address (a stale code from an earlier attempt)."""
        queue = self.queues.get(address.lower())
        while queue is not None and not queue.empty():
            queue.get_nowait()

    async def code_for(self, address: str, timeout: float = 30) -> str:
        queue = self.queues.setdefault(address.lower(), asyncio.Queue())
        return await asyncio.wait_for(queue.get(), timeout)


# --- load-generation helpers ------------------------------------------------------------------------


class Page:
    """What a virtual user needs of a response."""

    __slots__ = ("status_code", "headers", "text")

    def __init__(self, status_code: int, headers: Any, text: str) -> None:
        self.status_code = status_code
        self.headers = headers
        self.text = text


class Browser:
    """One virtual user: aiohttp (its C HTTP parser keeps the load generator's CPU low, since it
    shares the machine with the server), its own cookies, no redirect following, gzip accepted.

    Use as ``async with Browser(url) as client``; ``get``/``post`` return a :class:`Page`.
    """

    def __init__(self, base_url: str, *, connections: int = 4, timeout: float = 60) -> None:
        self.base_url = base_url.rstrip("/")
        self.connections = connections
        self.timeout = timeout
        self.headers: dict[str, str] = {}  # sent with every request (X-Forwarded-For, say)
        self.session: Any = None

    async def __aenter__(self) -> "Browser":
        import aiohttp

        self.session = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),  # the server is 127.0.0.1: an IP address
            connector=aiohttp.TCPConnector(limit=self.connections),
            timeout=aiohttp.ClientTimeout(total=self.timeout),
        )
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.session.close()

    def clear_cookies(self) -> None:
        self.session.cookie_jar.clear()

    async def _send(
        self, method: str, path: str, data: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> Page:
        async with self.session.request(
            method, self.base_url + path, data=data, headers={**self.headers, **(headers or {})}, allow_redirects=False
        ) as r:
            return Page(r.status, r.headers, await r.text())

    async def get(self, path: str) -> Page:
        return await self._send("GET", path)

    async def post(self, path: str, data: dict[str, str], *, htmx: bool = False) -> Page:
        """``htmx``: as htmx sends a form (``hx-post`` on the step's form): the answer is a fragment,
        or an ``HX-Redirect`` to a page of its own."""
        headers = {"HX-Request": "true", "HX-Target": "step", "HX-Current-URL": self.base_url + path} if htmx else None
        return await self._send("POST", path, data, headers)


CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
CSRF_HEADER_RE = re.compile(r'"X-CSRF-Token": "([^"]+)"')


def csrf_of(text: str) -> str:
    found = CSRF_RE.search(text) or CSRF_HEADER_RE.search(text)
    if not found:
        raise RuntimeError("no CSRF token on the page")
    return found.group(1)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def latency_line(values_s: Iterable[float]) -> str:
    values = [v * 1000 for v in values_s]
    return (
        f"p50 {percentile(values, 50):.1f} ms, p95 {percentile(values, 95):.1f} ms, p99 {percentile(values, 99):.1f} ms"
    )


def run_folder(name: str) -> Path:
    base = ROOT / "var" / "bench"
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base))


# --- results ----------------------------------------------------------------------------------------


def facts_block(facts: dict[str, str], extra: dict[str, str] | None = None) -> str:
    items = {**facts, "load average (1/5/15 min) at end": loadavg(), **(extra or {})}
    return "\n".join(f"* {key}: {value}" for key, value in items.items())


def append_results(
    title: str, body: str, *, facts: dict[str, str], extra: dict[str, str] | None = None, write: bool = True
) -> None:
    """Print a section and append it to docs/benchmarks.md (re-read first: others append too)."""
    section = f"\n### {title}\n\n`{command_line()}`\n\n{facts_block(facts, extra)}\n\n{body.strip()}\n"
    print(section)
    if not write:
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    existing = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
    marker = "<!-- bench results: appended by bench/*.py below this line -->"
    if marker not in existing:
        existing = (
            existing.rstrip()
            + ("\n\n" if existing else "")
            + "## Bench results (appended by the benches)\n\n"
            + marker
            + "\n"
        )
    RESULTS.write_text(existing.rstrip("\n") + "\n" + section, encoding="utf-8")
