"""``guichet registry``: the commands this plugin adds to the ``guichet`` command (guichet_commands)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import rich_click as click
from rich.console import Console

from guichet.cli import Refused, config_option, load_config_option, run_with_database
from guichet.core import Database


def _refuse_unless_enabled(config_path: str) -> None:
    config = load_config_option(config_path)
    if "registry_tables" not in config.plugins.enabled:
        raise Refused(
            f"{config_path} does not enable the registry_tables plugin: its registry is read elsewhere, "
            "and these tables would be read by no one"
        )


@click.group()
def registry() -> None:
    """What the caisse knows of persons and companies (the built-in registry, plugin registry_tables)."""


class _Progress:
    """A progress bar with rows/s and time left on a terminal; a plain line every few seconds
    otherwise (a scheduled import's log), and one when each file ends."""

    PLAIN_EVERY = 10.0  # seconds between two plain lines

    def __init__(self) -> None:
        import sys
        import time

        self.clock = time.monotonic
        self.terminal = sys.stderr.isatty()
        self.started: dict[str, float] = {}
        self.last_line = 0.0
        self.bar: Any = None
        self.tasks: dict[str, Any] = {}

    def __call__(self, name: str, rows: int, done: int, size: int) -> None:
        now = self.clock()
        start = self.started.setdefault(name, now)
        if self.terminal:
            from rich.progress import (
                BarColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            if self.bar is None:
                self.bar = Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    TaskProgressColumn(),
                    TextColumn("{task.fields[rows]:,} rows, {task.fields[rate]:,.0f} rows/s"),
                    TimeElapsedColumn(),
                    TextColumn("left"),
                    TimeRemainingColumn(),
                    console=Console(stderr=True),
                )
                self.bar.start()
            if name not in self.tasks:
                self.tasks[name] = self.bar.add_task(name, total=size or 1, rows=0, rate=0.0)
            rate = rows / max(now - start, 1e-6)
            self.bar.update(self.tasks[name], completed=done, rows=rows, rate=rate)
            return
        finished = done >= size
        if not finished and now - self.last_line < self.PLAIN_EVERY:
            return
        self.last_line = now
        elapsed = max(now - start, 1e-6)
        rate = rows / elapsed
        left = (size - done) / (done / elapsed) if done and not finished else 0.0
        share = 100 * done / size if size else 100.0
        click.echo(
            f"{name}: {rows:,} rows read, {share:.0f} %, {rate:,.0f} rows/s"
            + ("" if finished else f", about {left:,.0f} s left"),
            err=True,
        )

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _default_report(first: Path | None, stamp: str) -> Path:
    import os
    import tempfile

    folder = first.resolve().parent if first is not None else Path.cwd()
    if not os.access(folder, os.W_OK):
        folder = Path(tempfile.gettempdir())
    return folder / f"registry-import-{stamp}.txt"


@registry.command("import")
@config_option
@click.argument("persons", required=False, type=click.Path(path_type=Path, dir_okay=False), metavar="[PERSONS]")
@click.argument("payments", required=False, type=click.Path(path_type=Path, dir_okay=False), metavar="[PAYMENTS]")
@click.option("--companies", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE", help="companies.csv")
@click.option("--partial", is_flag=True, help="Import the good rows even when some are bad (still exits 1).")
@click.option("--dry-run", is_flag=True, help="Check every row and say what would be imported; write nothing.")
@click.option(
    "--report",
    "report_file",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="Where every bad row is listed [default: registry-import-<date>-<time>.txt beside the first file, "
    "or in the temporary folder if that one cannot be written; only when a row is bad].",
)
def import_command(
    config_path: str,
    persons: Path | None,
    payments: Path | None,
    companies: Path | None,
    partial: bool,
    dry_run: bool,
    report_file: Path | None,
) -> int:
    """Import persons.csv, payments.csv and companies.csv (docs/registry.md) in one transaction.

    All or nothing unless --partial. The files are read a batch at a time: memory stays the same
    whatever their size. Progress goes to stderr (a bar on a terminal, a line every few seconds
    otherwise); the summary gives the bad rows by cause with a few of each, and the report file
    lists them all. Exit 0 when every row was imported (or would be, with --dry-run), 1 otherwise.

    \b
    Examples:
      guichet registry import persons.csv payments.csv --config /etc/guichet/caisse.toml
      guichet registry import persons.csv payments.csv --dry-run
      guichet registry import --companies companies.csv --partial --report /var/log/guichet/import.txt
    """
    import datetime as dt

    from guichet.plugins.registry_tables.importer import import_registry

    _refuse_unless_enabled(config_path)
    report_to = report_file or _default_report(
        persons or payments or companies, dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    )

    async def work(database: Database) -> int:
        await database.upgrade()
        progress = _Progress()
        try:
            report = await import_registry(
                database,
                persons=persons,
                payments=payments,
                companies=companies,
                partial=partial,
                dry_run=dry_run,
                report_file=report_to,
                progress=progress,
            )
        finally:
            progress.stop()
        click.echo(report.describe())
        return 0 if report.ok else 1

    return run_with_database(load_config_option(config_path), work)


@registry.command()
@config_option
@click.option(
    "--count",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="Random persons to write (and a tenth as many companies), besides the fixed demo holders.",
)
@click.option("--seed", type=int, default=1, show_default=True, help="The same seed writes the same people.")
def demo(config_path: str, count: int, seed: int) -> int:
    """Write fictitious persons, companies and payments, and the fixed demo holders (docs/registry.md).

    \b
    Examples:
      guichet registry demo --count 200
      guichet registry demo --config config/demo.toml --count 5 --seed 2
    """
    from guichet.plugins.registry_tables.importer import generate_demo_registry

    _refuse_unless_enabled(config_path)

    async def work(database: Database) -> int:
        await database.upgrade()
        summary = await generate_demo_registry(database, count=count, seed=seed)
        click.echo(summary.describe())
        return 0

    return run_with_database(load_config_option(config_path), work)
