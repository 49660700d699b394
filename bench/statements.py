"""CPU per statement: piccolo's query builder against the cached SQL of core/statements.py, run through
piccolo's ``raw()`` and through ``fetch`` (what guichet runs), for the one-row reads and inserts every
login runs, on SQLite and on PostgreSQL.

    .venv/bin/python bench/statements.py                    # SQLite and PostgreSQL
    .venv/bin/python bench/statements.py --engine sqlite

Process CPU time (user + system) of this process only, which runs the statements; on SQLite that
includes the database's own work (it runs in the process), on PostgreSQL the server's share is not
counted (it is the same for both ways of writing the statement).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


async def cpu_per_call(fn: Any, calls: int) -> float:
    for _ in range(50):  # warm-up
        await fn()
    start = time.process_time()
    for _ in range(calls):
        await fn()
    return (time.process_time() - start) / calls * 1e6


async def measure(engine: str, calls: int) -> list[tuple[str, float, float, float]]:
    from guichet.core.config import load_config
    from guichet.core.database import Database
    from guichet.core.statements import fetch, insert_one, select_latest, select_one

    folder = common.run_folder("statements")
    database = common.BenchDatabase(engine, folder)
    await database.create()
    config_path = folder / "bench.toml"
    config_path.write_text(
        common.config_text(caisse_id="bench-sql", database_url=database.url, smtp_port=9, argon2=common.OWASP)
    )
    try:
        accounts = await common.prepare_database(config_path, registry_count=100, accounts=100)
        db = Database.from_config(load_config(config_path))
        await db.connect()
        try:
            a = db.t.Account
            audit = db.t.AuditLog
            outbox = db.t.OutboxMessage
            [row] = await a.select(a.id).where(a.identifier == accounts[50]["identifier"]).run()
            account_id = row["id"]
            built = await a.select().where(a.id == account_id).limit(1).run()
            cached = await a.raw(select_one(a, "id"), account_id).run()
            assert built == cached, "the cached read must return what piccolo's select() returns"
            now = dt.datetime.now(dt.UTC)
            columns = ("at", "kind", "account_id", "subject", "client", "details")
            rows = []
            assert cached == await fetch(a, select_one(a, "id"), account_id), "fetch must return what raw() returns"
            for name, built_fn, cached_fn, fetch_fn in (
                (
                    "account read by id (4 per login)",
                    lambda: a.select().where(a.id == account_id).limit(1).run(),
                    lambda: a.raw(select_one(a, "id"), account_id).run(),
                    lambda: fetch(a, select_one(a, "id"), account_id),
                ),
                (
                    "audit insert (4 per login)",
                    lambda: audit.insert(
                        audit(at=now, kind="login.succeeded", account_id=None, subject="", client="c", details="{}")
                    ).run(),
                    lambda: audit.raw(insert_one(audit, columns), now, "login.succeeded", None, "", "c", "{}").run(),
                    lambda: fetch(audit, insert_one(audit, columns), now, "login.succeeded", None, "", "c", "{}"),
                ),
                (
                    "newest row read: the code checked, the delivery shown (2 per login)",
                    lambda: (
                        outbox.select(outbox.id, outbox.channel, outbox.state)
                        .where(outbox.sent_for == "x")
                        .order_by(outbox.id, ascending=False)
                        .limit(1)
                        .run()
                    ),
                    lambda: outbox.raw(select_latest(outbox, ("id", "channel", "state"), ("sent_for",)), "x").run(),
                    lambda: fetch(outbox, select_latest(outbox, ("id", "channel", "state"), ("sent_for",)), "x"),
                ),
            ):
                rows.append(
                    (
                        name,
                        await cpu_per_call(built_fn, calls),
                        await cpu_per_call(cached_fn, calls),
                        await cpu_per_call(fetch_fn, calls),
                    )
                )
            return rows
        finally:
            await db.close()
    finally:
        await database.drop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    facts = common.machine_facts()
    lines = [
        "| engine | statement | piccolo builder, µs CPU | cached SQL through raw(), µs CPU | cached SQL through fetch, µs CPU |",
        "|---|---|---|---|---|",
    ]
    for engine in ("sqlite", "postgres") if args.engine == "both" else (args.engine,):
        for name, built, cached, fetched in await measure(engine, args.calls):
            lines.append(f"| {engine} | {name} | {built:.0f} | {cached:.0f} | {fetched:.0f} |")
    common.append_results(
        "Statements: piccolo's builder vs cached SQL, through raw() and fetch (bench/statements.py)",
        "\n".join(lines),
        facts=facts,
        write=not args.no_write,
    )


if __name__ == "__main__":
    asyncio.run(main())
