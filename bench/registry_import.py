"""Registry import: time and peak memory for large files, the streaming import next to the one
that read whole files (the commit before it), in the same run on the same files.

    .venv/bin/python bench/registry_import.py                          # 200,000 persons and payments
    .venv/bin/python bench/registry_import.py --rows 2000000 --no-before

Each import runs in a process of its own on a new SQLite database; its peak RSS is the kernel's
(``wait4``). The files are made by the demo registry's generator (valid NIRs, addresses, payments).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, append_results, machine_facts  # noqa: E402

BEFORE = "0ba1c0e"  # the last commit whose import read each file whole
RUN = """
import asyncio, datetime as dt, importlib.util, sys
from pathlib import Path
from guichet.core.database import Database
spec = importlib.util.spec_from_file_location("variant", sys.argv[1])
variant = importlib.util.module_from_spec(spec); spec.loader.exec_module(variant)
async def main():
    database = Database(sys.argv[2]); await database.upgrade()
    report = await variant.import_registry(database, persons=Path(sys.argv[3]), payments=Path(sys.argv[4]),
                                           companies=None, partial=False, today=dt.date(2026, 3, 15))
    await database.close()
    assert report.ok, report.describe()[:2000]
asyncio.run(main())
"""


def write_files(folder: Path, rows: int) -> tuple[Path, Path]:
    from guichet.plugins.registry_tables.importer import demo_rows

    people, _companies, _payments = demo_rows(count=rows, seed=11, today=dt.date(2026, 3, 15))
    persons, payments = folder / "persons.csv", folder / "payments.csv"
    with persons.open("w", encoding="utf-8") as p, payments.open("w", encoding="utf-8") as m:
        p.write("nir,last_name,first_name,birth_date,address_line1,address_line2,email,vitale_serial\n")
        m.write("identifier,kind,date,amount\n")
        for n, person in enumerate(people[:rows]):
            p.write(
                f"{person.nir},{person.last_name},{person.first_name},{person.birth_date.isoformat()},"
                f"{person.address[0]},{person.address[1]},p{n}@exemple.fr,{person.vitale_serial or ''}\n"
            )
            m.write(f"{person.nir},benefit,2026-02-{1 + n % 28:02d},{10 + n % 900}.{n % 100:02d}\n")
    return persons, payments


def measure(module: Path, folder: Path, persons: Path, payments: Path, name: str) -> tuple[float, float]:
    database = f"sqlite:///{folder / (name + '.sqlite')}"
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", RUN, str(module), database, str(persons), str(payments)], cwd=ROOT
    )
    _pid, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{name}: the import failed")
    return seconds, usage.ru_maxrss / 1024  # KiB -> MiB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000, help="persons, and as many payments")
    parser.add_argument("--no-before", action="store_true", help="measure only the streaming import")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="guichet-import-") as tmp:
        folder = Path(tmp)
        persons, payments = write_files(folder, args.rows)
        size = (persons.stat().st_size + payments.stat().st_size) / 1024 / 1024
        variants = [("streaming", ROOT / "plugins" / "registry_tables" / "importer.py")]
        if not args.no_before:
            old = folder / "importer_before.py"
            old.write_text(
                subprocess.run(
                    ["git", "show", f"{BEFORE}:plugins/registry_tables/importer.py"],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
            variants.insert(0, (f"whole files ({BEFORE})", old))
        table = ["| import | rows (persons + payments) | CSV | time | rows/s | peak RSS |", "|---|---|---|---|---|---|"]
        for name, module in variants:
            seconds, peak = measure(module, folder, persons, payments, name.split()[0])
            table.append(
                f"| {name} | {args.rows:,} + {args.rows:,} | {size:.0f} MiB | {seconds:.1f} s | "
                f"{2 * args.rows / seconds:,.0f} | {peak:.0f} MiB |"
            )
    append_results(
        f"Registry import, {args.rows:,} rows", "\n".join(table), facts=machine_facts(), write=not args.no_write
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
