"""What one outbox claim costs while messages wait: a postal outage's letters, not due, and a
backlog of due emails being drained after an SMTP outage.

    .venv/bin/python bench/outbox_claim.py                       # SQLite and PostgreSQL
    .venv/bin/python bench/outbox_claim.py --engine sqlite --backlog 0 10000 100000

For each backlog size, in a database of the bench's own: N letters queued and not due for an hour
(a printer down), then claims of a batch of 32 (they find nothing); then N emails due, claimed 32 at a
time (each claim takes its batch, as a worker draining the backlog does). Prints the time and the
bench's own CPU per claim: on SQLite the statement runs in this process; on PostgreSQL its backend
does the work, so the time is the figure (one client, nothing else running). Appends the table to
docs/benchmarks.md. Not a timed test: compare the rows of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

from guichet.core.clock import FrozenClock  # noqa: E402
from guichet.core.database import Database  # noqa: E402
from guichet.core.keys import Keys  # noqa: E402
from guichet.core.outbox import PENDING  # noqa: E402
from guichet.core.outbox_worker import OutboxWorker  # noqa: E402

BATCH = 32


async def queue(database: Database, count: int, channel: str, due_at: dt.datetime, now: dt.datetime) -> None:
    table = database.t.OutboxMessage
    rows = [
        table(channel=channel, template="t", sealed="x", state=PENDING, next_attempt_at=due_at, created_at=now)
        for _ in range(count)
    ]
    for start in range(0, count, 1000):  # PostgreSQL takes at most 32,767 parameters a statement
        await table.insert(*rows[start : start + 1000]).run()


async def per_claim(worker: OutboxWorker, claims: int) -> tuple[float, float, int]:
    """(ms of time, ms of this process's CPU) per claim, and the messages claimed."""
    taken = 0
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(claims):
        taken += len(await worker.claim(BATCH))
    return (time.perf_counter() - wall) / claims * 1000, (time.process_time() - cpu) / claims * 1000, taken


async def measure(engine: str, backlog: int, claims: int) -> tuple[tuple[float, float], tuple[float, float]]:
    with tempfile.TemporaryDirectory() as folder:
        place = common.BenchDatabase(engine, Path(folder))
        await place.create()
        database = Database(place.url)
        try:
            await database.connect()
            await database.upgrade()
            clock = FrozenClock(dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC))
            now = clock.now()
            worker = OutboxWorker(database, Keys("b" * 64), None, clock, worker_id="bench", batch=BATCH)  # type: ignore[arg-type]
            await queue(database, backlog, "postal", now + dt.timedelta(hours=1), now)
            if engine == "postgres":
                await database.t.OutboxMessage.raw("ANALYZE guichet_outbox").run()  # as autovacuum would
            await per_claim(worker, 5)  # warm: prepared statements, caches
            letters_wait = await per_claim(worker, claims)
            await queue(database, backlog, "email", now - dt.timedelta(minutes=1), now)
            if engine == "postgres":
                await database.t.OutboxMessage.raw("ANALYZE guichet_outbox").run()
            draining = await per_claim(worker, min(claims, max(1, backlog // BATCH)))
            return letters_wait[:2], draining[:2]
        finally:
            await database.close()
            await place.drop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--backlog", type=int, nargs="+", default=[0, 10_000, 100_000])
    parser.add_argument("--claims", type=int, default=200)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    engines = ["sqlite", "postgres"] if args.engine == "both" else [args.engine]
    lines = [
        "| engine | messages waiting | a claim while letters wait (not due): time, bench CPU | "
        "a claim draining due emails: time, bench CPU |",
        "|---|---|---|---|",
    ]
    for engine in engines:
        for backlog in args.backlog:
            (wait_ms, wait_cpu), (drain_ms, drain_cpu) = await measure(engine, backlog, args.claims)
            lines.append(
                f"| {engine} | {backlog:,} | {wait_ms:.2f} ms, {wait_cpu:.2f} ms | {drain_ms:.2f} ms, {drain_cpu:.2f} ms |"
            )
            print(lines[-1], flush=True)
    common.append_results(
        "Outbox claims under a backlog", "\n".join(lines), facts=common.machine_facts(), write=not args.no_write
    )


if __name__ == "__main__":
    asyncio.run(main())
