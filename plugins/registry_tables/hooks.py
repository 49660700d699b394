"""Registry lookups in the imported tables."""

from __future__ import annotations

from collections.abc import Awaitable
from decimal import Decimal
from typing import Any

from guichet.core import Payment, PluginContext, PostalAddress, Record, hookimpl
from guichet.plugins.registry_tables.tables import tables_of


async def _lookup(context: PluginContext, identifier_kind: str, identifier: str) -> Record | None:
    t = tables_of(context.database)
    if identifier_kind == "nir":
        rows = await t.RegistryPerson.select().where(t.RegistryPerson.nir == identifier).limit(1).run()
        if not rows:
            return None
        row = rows[0]
        record_fields = dict(
            last_name=row["last_name"],
            first_name=row["first_name"],
            birth_date=row["birth_date"],
            vitale_serial=row["vitale_serial"],
            health_affiliated=bool(row["health_affiliated"]),
        )
    elif identifier_kind == "siret":
        rows = await t.RegistryCompany.select().where(t.RegistryCompany.siret == identifier).limit(1).run()
        if not rows:
            return None
        row = rows[0]
        record_fields = dict(last_name=row["name"])
    else:
        return None
    payments = await (
        t.RegistryPayment.select(t.RegistryPayment.kind, t.RegistryPayment.paid_on, t.RegistryPayment.amount)
        .where((t.RegistryPayment.identifier_kind == identifier_kind) & (t.RegistryPayment.identifier == identifier))
        .run()
    )
    lines = tuple(line for line in (row["address"] or "").split("\n") if line.strip())
    return Record(
        identifier_kind=identifier_kind,
        identifier=identifier,
        address=PostalAddress(lines=lines) if lines else None,
        email=row["email"],
        mobile=row["mobile"],
        payments=tuple(Payment(kind=p["kind"], date=p["paid_on"], amount=Decimal(str(p["amount"]))) for p in payments),
        **record_fields,
    )


@hookimpl
def guichet_registry_lookup(
    identifier_kind: str, identifier: str, context: PluginContext
) -> Awaitable[Record | None] | None:
    if identifier_kind not in ("nir", "siret"):
        return None
    return _lookup(context, identifier_kind, identifier)


@hookimpl
def guichet_commands(cli: Any) -> None:
    from guichet.plugins.registry_tables.commands import registry

    cli.add_command(registry)
