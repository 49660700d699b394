"""Registry import: time and peak memory for large files, the current import next to earlier ones
(by default the one that read whole files), in the same run on the same files.

    .venv/bin/python bench/registry_import.py                          # 200,000 persons and payments
    .venv/bin/python bench/registry_import.py --rows 2000000 --no-before
    .venv/bin/python bench/registry_import.py --also 5a41ad8            # and the import of that commit
    .venv/bin/python bench/registry_import.py --database-url postgresql://postgres@127.0.0.1:5432/test

Each import runs in a process of its own on a new database (a new SQLite file, or a new PostgreSQL
database made through the given URL and dropped after). Its peak RSS is the high-water mark the
import's process reads from /proc/self/status (VmHWM) when it ends, not ``wait4``'s ``ru_maxrss``:
Linux carries the parent's peak into a child's ``ru_maxrss`` across fork and exec, so that figure
was the bench's own peak whenever the bench was bigger than the import. For the same reason the
files are written by a process of their own. The files are made by the demo registry's generator
(valid NIRs, addresses, payments), a slice at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, _machine_jiffies, append_results, machine_facts  # noqa: E402

BEFORE = "0ba1c0e"  # the last commit whose import read each file whole
RUN = """
import asyncio, datetime as dt, importlib.util, sys
from pathlib import Path
from guichet.core.database import Database
spec = importlib.util.spec_from_file_location("variant", sys.argv[1])
variant = importlib.util.module_from_spec(spec); spec.loader.exec_module(variant)
async def main():
    database = Database(sys.argv[2]); await database.connect(); await database.upgrade()
    report = await variant.import_registry(database, persons=Path(sys.argv[3]), payments=Path(sys.argv[4]),
                                           companies=None, partial=False, today=dt.date(2026, 3, 15))
    await database.close()
    assert report.ok, report.describe()[:2000]
asyncio.run(main())
peak = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
print("peak_kib", peak)
"""
SLICE = 50_000  # persons generated at a time


def write_files(folder: Path, rows: int) -> tuple[Path, Path]:
    """persons.csv and payments.csv: ``rows`` persons and one payment each."""
    from guichet.plugins.registry_tables.importer import demo_rows

    persons, payments = folder / "persons.csv", folder / "payments.csv"
    nirs: set[str] = set()  # the generator's slices may meet the same NIR: each is written once
    n = 0
    with persons.open("w", encoding="utf-8") as p, payments.open("w", encoding="utf-8") as m:
        p.write("nir,last_name,first_name,birth_date,address_line1,address_line2,email,vitale_serial\n")
        m.write("identifier,kind,date,amount\n")
        for seed in range(11, 11 + rows):
            people, _companies, _payments = demo_rows(count=min(SLICE, rows), seed=seed, today=dt.date(2026, 3, 15))
            for person in people:
                if person.nir in nirs:
                    continue
                nirs.add(person.nir)
                p.write(
                    f"{person.nir},{person.last_name},{person.first_name},{person.birth_date.isoformat()},"
                    f"{person.address[0]},{person.address[1]},p{n}@exemple.fr,{person.vitale_serial or ''}\n"
                )
                m.write(f"{person.nir},benefit,2026-02-{1 + n % 28:02d},{10 + n % 900}.{n % 100:02d}\n")
                n += 1
                if n == rows:
                    return persons, payments
    raise AssertionError("unreachable: every slice brings new persons")


async def _postgres_admin(url: str, sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def measure(
    module: Path, folder: Path, persons: Path, payments: Path, name: str, postgres: str
) -> tuple[float, float, float, float]:
    """(seconds, peak RSS in MiB, the import's CPU seconds, the machine's other CPU in cores)."""
    if postgres:
        database_name = f"guichet_bench_import_{os.getpid()}_{secrets.token_hex(3)}"
        asyncio.run(_postgres_admin(postgres, f'CREATE DATABASE "{database_name}"'))
        database = f"{postgres.rpartition('/')[0]}/{database_name}"
    else:
        database = f"sqlite:///{folder / (name + '.sqlite')}"
    busy_before, total_before = _machine_jiffies()
    start = time.perf_counter()
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", RUN, str(module), database, str(persons), str(payments)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        output = process.stdout.read()
        _pid, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        busy_after, total_after = _machine_jiffies()
    finally:
        if postgres:
            asyncio.run(_postgres_admin(postgres, f'DROP DATABASE IF EXISTS "{database_name}" WITH (FORCE)'))
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{name}: the import failed")
    peak_kib = int(output.split("peak_kib", 1)[1].split()[0])
    own = usage.ru_utime + usage.ru_stime
    hz = os.sysconf("SC_CLK_TCK")
    others = max(0.0, (busy_after - busy_before) / hz - own) / seconds
    return seconds, peak_kib / 1024, own, others


def _variant(folder: Path, revision: str) -> Path:
    path = folder / f"importer_{revision}.py"
    path.write_text(
        subprocess.run(
            ["git", "show", f"{revision}:plugins/registry_tables/importer.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000, help="persons, and as many payments")
    parser.add_argument("--no-before", action="store_true", help=f"leave out the whole-file import ({BEFORE})")
    parser.add_argument(
        "--also", action="append", default=[], metavar="REV", help="measure the import of this commit too"
    )
    parser.add_argument(
        "--database-url",
        default="",
        metavar="URL",
        help="a PostgreSQL database through which a new database is made per import (default: SQLite files)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    parser.add_argument("--write-files", metavar="DIR", help=argparse.SUPPRESS)  # the files' own process
    args = parser.parse_args()
    if args.write_files:
        write_files(Path(args.write_files), args.rows)
        return 0
    facts = machine_facts()  # the load average before the files and the imports
    with tempfile.TemporaryDirectory(prefix="guichet-import-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--rows", str(args.rows), "--write-files", tmp], cwd=ROOT, check=True)
        print(f"files written in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        persons, payments = folder / "persons.csv", folder / "payments.csv"
        size = (persons.stat().st_size + payments.stat().st_size) / 1024 / 1024
        variants = [(f"{revision} (streaming)", _variant(folder, revision)) for revision in args.also]
        current = folder / "importer_this_tree.py"  # a copy: the tree may change during a long run
        current.write_bytes((ROOT / "plugins" / "registry_tables" / "importer.py").read_bytes())
        variants.append(("this tree", current))
        if not args.no_before:
            variants.insert(0, (f"{BEFORE} (whole files)", _variant(folder, BEFORE)))
        engine = "PostgreSQL" if args.database_url else "SQLite"
        table = [
            f"| import ({engine}) | rows (persons + payments) | CSV | time | rows/s | peak RSS | import CPU | "
            "other processes' CPU |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, module in variants:
            seconds, peak, own, others = measure(module, folder, persons, payments, name.split()[0], args.database_url)
            row = (
                f"| {name} | {args.rows:,} + {args.rows:,} | {size:.0f} MiB | {seconds:.1f} s | "
                f"{2 * args.rows / seconds:,.0f} | {peak:.0f} MiB | {own:.1f} s | {others:.2f} cores |"
            )
            print(row, file=sys.stderr)
            table.append(row)
    append_results(
        f"Registry import, {args.rows:,} rows, {engine}", "\n".join(table), facts=facts, write=not args.no_write
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
