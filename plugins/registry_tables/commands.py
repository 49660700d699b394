"""``guichet registry``: the commands this plugin adds to the ``guichet`` command (guichet_commands)."""
from __future__ import annotations

from pathlib import Path

import rich_click as click

from guichet.cli import Refused, config_option, load_config_option, run_with_database
from guichet.core import Database


def _refuse_unless_enabled(config_path: str) -> None:
    config = load_config_option(config_path)
    if "registry_tables" not in config.plugins.enabled:
        raise Refused(f"{config_path} does not enable the registry_tables plugin: its registry is read elsewhere, "
                      "and these tables would be read by no one")


@click.group()
def registry() -> None:
    """What the caisse knows of persons and companies (the built-in registry, plugin registry_tables)."""


@registry.command("import")
@config_option
@click.argument("persons", required=False, type=click.Path(path_type=Path, dir_okay=False), metavar="[PERSONS]")
@click.argument("payments", required=False, type=click.Path(path_type=Path, dir_okay=False), metavar="[PAYMENTS]")
@click.option("--companies", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE", help="companies.csv")
@click.option("--partial", is_flag=True, help="Import the good rows even when some are bad (still exits 1).")
def import_command(config_path: str, persons: Path | None, payments: Path | None, companies: Path | None,
                   partial: bool) -> int:
    """Import persons.csv, payments.csv and companies.csv (docs/registry.md) in one transaction.

    All or nothing unless --partial. Exit 0 when every row was imported, 1 otherwise (the report
    lists every bad row by file and line).

    \b
    Examples:
      guichet registry import persons.csv payments.csv --config /etc/guichet/caisse.toml
      guichet registry import --companies companies.csv --partial
    """
    from guichet.plugins.registry_tables.importer import import_registry

    _refuse_unless_enabled(config_path)

    async def work(database: Database) -> int:
        await database.upgrade()
        report = await import_registry(database, persons=persons, payments=payments, companies=companies,
                                       partial=partial)
        click.echo(report.describe())
        return 0 if report.ok else 1

    return run_with_database(load_config_option(config_path), work)


@registry.command()
@config_option
@click.option("--count", type=click.IntRange(min=0), default=100, show_default=True,
              help="Random persons to write (and a tenth as many companies), besides the fixed demo holders.")
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
