"""Outbox throughput and duplicate window: enqueue N login codes, deliver them by email to a local aiosmtpd sink.

Prints messages/s, and the duplicate window: for each email, the time from the SMTP server taking
it in (its 250 about to be sent) to the worker's ``sent`` being committed. A worker killed within
that window has delivered a message it never recorded: it is sent again after its lease.

    .venv/bin/python bench/outbox.py --count 2000 [--batch 20] [--concurrency 8] [--database-url URL] [--no-record]

With a PostgreSQL URL the bench creates a database of its own on that server and drops it after.

The figure (with the command and the machine) is appended to docs/benchmarks.md under "## Outbox".
Not a timed test: run it by hand, on a quiet machine, and compare ratios rather than absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import re
import shlex
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiosmtpd.controller import Controller  # noqa: E402

from guichet.core.clock import Clock  # noqa: E402
from guichet.core.config import decode_config  # noqa: E402
from guichet.core.context import PluginContext  # noqa: E402
from guichet.core.database import Database, redact_url  # noqa: E402
from guichet.core.keys import Keys  # noqa: E402
from guichet.core.outbox import enqueue  # noqa: E402
from guichet.core.outbox_worker import OutboxWorker, outbox_status  # noqa: E402
from guichet.core.plugins import PluginHost  # noqa: E402
from guichet.core.structs import Recipient  # noqa: E402

CONFIG = """
[caisse]
id = "bench"
name = "MSA Banc d'essai"
assistance = {{ phone = "01 23 45 67 89", hours = "du lundi au vendredi", email = "aide@bench.invalid" }}

[plugins]
enabled = ["delivery_email"]

[plugins.settings.delivery_email]
host = "127.0.0.1"
port = {port}
security = "none"
timeout_seconds = 10
sender = "MSA Banc d'essai <ne-pas-repondre@bench.invalid>"

[security]
secret_key = {{ value = "bench-secret-key-0123456789abcdef0123456789" }}

[sessions]
secure_cookies = false

[server]
mode = "demo"

[database]
url = "{url}"
"""


class Counter:
    """An SMTP sink that only counts (the bench measures guichet, not disk writes) and notes when
    it took each message in, by outbox id (read from the Message-ID, ``<bench-ID-...@...>``)."""

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()
        self.taken_in: dict[int, float] = {}

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        at = time.perf_counter()
        head = envelope.content.partition(b"\r\n\r\n")[0]
        found = re.search(rb"^Message-ID: <bench-(\d+)-", head, re.M | re.I)
        with self.lock:
            self.count += 1
            if found:
                self.taken_in[int(found.group(1))] = at
        return "250 OK"


class Recording(OutboxWorker):
    """The worker, noting when each message's ``sent`` is committed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recorded: dict[int, float] = {}

    async def _record_sent(self, message: Any) -> None:
        await super()._record_sent(message)
        self.recorded[message.id] = time.perf_counter()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def run(count: int, batch: int, concurrency: int, url: str, base: Path) -> dict[str, float]:
    port = free_port()
    sink = Counter()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    config = decode_config(CONFIG.format(port=port, url=url), source="bench", base_dir=str(base))
    database = Database.from_config(config)
    await database.connect()
    try:
        await database.upgrade()
        clock = Clock()
        keys = Keys.from_config(config)
        host = PluginHost(config, PluginContext(config=config, database=database, clock=clock))
        started = time.perf_counter()
        for n in range(count):
            async with database.transaction():
                await enqueue(
                    database,
                    keys,
                    channel="email",
                    template="login_code",
                    recipient=Recipient(name="Marie DUPONT", email=f"personne{n}@bench.invalid"),
                    payload={"code": f"{n:06d}", "lifetime_minutes": 15},
                    now=clock.now(),
                    expires_at=clock.now() + dt.timedelta(minutes=15),
                )
        enqueued = time.perf_counter()
        worker = Recording(database, keys, host, clock, worker_id="bench", batch=batch, concurrency=concurrency)
        handled = await worker.drain()
        delivered = time.perf_counter()
        status = await outbox_status(database)
    finally:
        await database.close()
        controller.stop()
    if handled != count or sink.count != count or status != {("email", "sent"): count}:
        raise SystemExit(f"bench: expected {count} sent, got handled={handled} received={sink.count} {status}")
    windows = sorted((worker.recorded[id] - sink.taken_in[id]) * 1000 for id in worker.recorded if id in sink.taken_in)
    if len(windows) != count:
        raise SystemExit(f"bench: {len(windows)} duplicate windows measured for {count} messages")

    def centile(q: float) -> float:
        return windows[min(len(windows) - 1, int(q * len(windows)))]

    return {
        "enqueue_per_s": count / (enqueued - started),
        "deliver_per_s": count / (delivered - enqueued),
        "deliver_s": delivered - enqueued,
        "window_p50_ms": centile(0.5),
        "window_p99_ms": centile(0.99),
        "window_max_ms": windows[-1],
    }


async def _pg_admin(url: str, sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(url, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def throwaway_postgres(url: str) -> tuple[str, str]:
    """A database of the bench's own on that server (never the given one's tables): (its URL, its name)."""
    name = f"guichet_bench_{os.getpid()}"
    asyncio.run(_pg_admin(url, f'CREATE DATABASE "{name}"'))
    return f"{url.rpartition('/')[0]}/{name}", name


def record(line_block: str) -> Path:
    """Append under '## Outbox' in docs/benchmarks.md, leaving every other section as it is."""
    path = ROOT / "docs" / "benchmarks.md"
    text = (
        path.read_text(encoding="utf-8")
        if path.exists()
        else "# Benchmarks\n\nFigures printed by bench/; one machine, noisy: compare ratios.\n"
    )
    if "\n## Outbox\n" not in "\n" + text:
        text = (
            text.rstrip("\n")
            + "\n\n## Outbox\n\nEmail deliveries through the outbox worker to a local aiosmtpd sink (bench/outbox.py).\n"
        )
    head, _, rest = text.partition("## Outbox\n")
    following = rest.find("\n## ")
    section, tail = (rest, "") if following < 0 else (rest[: following + 1], rest[following + 1 :])
    section = section.rstrip("\n") + "\n\n" + line_block.rstrip("\n") + "\n"
    path.write_text(head + "## Outbox\n" + section + ("\n" + tail if tail else ""), encoding="utf-8")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--database-url", help="default: a SQLite file in a temporary folder")
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to docs/benchmarks.md")
    args = parser.parse_args()
    load = os.getloadavg()[0]  # a shared machine: say how busy it was
    with tempfile.TemporaryDirectory() as folder:
        url = args.database_url or f"sqlite:///{Path(folder) / 'bench.sqlite'}"
        if url.startswith("sqlite"):
            figures = asyncio.run(run(args.count, args.batch, args.concurrency, url, Path(folder)))
        else:
            own_url, name = throwaway_postgres(url)
            try:
                figures = asyncio.run(run(args.count, args.batch, args.concurrency, own_url, Path(folder)))
            finally:
                asyncio.run(_pg_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine = "SQLite" if url.startswith("sqlite") else "PostgreSQL"
    print(f"outbox: {args.count} emails, {engine}, batch {args.batch}, concurrency {args.concurrency}")
    print(f"  enqueue  {figures['enqueue_per_s']:8.0f} messages/s (one transaction each)")
    print(f"  delivery {figures['deliver_per_s']:8.0f} messages/s through email ({figures['deliver_s']:.1f} s)")
    print(
        f"  duplicate window (server took it in -> 'sent' committed): p50 {figures['window_p50_ms']:.1f} ms, "
        f"p99 {figures['window_p99_ms']:.1f} ms, max {figures['window_max_ms']:.1f} ms"
    )
    if not args.no_record:
        command = " ".join(["bench/outbox.py", *(shlex.quote(redact_url(a)) for a in sys.argv[1:])])
        block = (
            f"- {dt.date.today().isoformat()}, `.venv/bin/python {command.strip()}`: {args.count} emails, {engine}, "
            f"batch {args.batch}, concurrency {args.concurrency}: **{figures['deliver_per_s']:.0f} messages/s** "
            f"delivered ({figures['deliver_s']:.1f} s), enqueue {figures['enqueue_per_s']:.0f}/s; duplicate "
            f"window p50 {figures['window_p50_ms']:.1f} ms, p99 {figures['window_p99_ms']:.1f} ms, "
            f"max {figures['window_max_ms']:.1f} ms. "
            f"Machine: nproc {os.cpu_count()}, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}, load average {load:.2f} at start."
        )
        print(f"recorded in {record(block).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
