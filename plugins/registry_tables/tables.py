"""The registry's own piccolo Tables, unbound, and ``tables_of(database)``: a copy of each bound to
that database's engine. They are created by the import (``create_tables``), not by core's migrations:
a caisse that reads its registry elsewhere has none of them."""

from __future__ import annotations

import weakref
from typing import Any

from piccolo.columns import Boolean, Date, Numeric, Serial, Text, Varchar
from piccolo.table import Table, create_db_tables

from guichet.core import Database


class RegistryPerson(Table, tablename="guichet_registry_person"):
    id = Serial(primary_key=True)
    nir = Varchar(length=13, unique=True)
    last_name = Varchar(length=120)
    first_name = Varchar(length=120)
    birth_date = Date()
    address = Text(default="")  # up to 6 lines joined by newlines
    email = Varchar(length=254, null=True, default=None)
    mobile = Varchar(length=20, null=True, default=None)
    vitale_serial = Varchar(length=20, null=True, default=None)
    health_affiliated = Boolean(default=False)


class RegistryCompany(Table, tablename="guichet_registry_company"):
    id = Serial(primary_key=True)
    siret = Varchar(length=14, unique=True)
    name = Varchar(length=120)
    address = Text(default="")
    email = Varchar(length=254, null=True, default=None)
    mobile = Varchar(length=20, null=True, default=None)


class RegistryPayment(Table, tablename="guichet_registry_payment"):
    id = Serial(primary_key=True)
    identifier_kind = Varchar(length=8, index=True)
    identifier = Varchar(length=14, index=True)
    kind = Varchar(length=32)
    paid_on = Date()
    amount = Numeric(digits=(12, 2))


TABLES: tuple[type[Table], ...] = (RegistryPerson, RegistryCompany, RegistryPayment)


class RegistryTables:
    """The registry tables bound to one engine; attribute names are the table class names."""

    RegistryPerson: type[RegistryPerson]
    RegistryCompany: type[RegistryCompany]
    RegistryPayment: type[RegistryPayment]

    def __init__(self, engine: Any) -> None:
        self.all: list[type[Table]] = []
        for base in TABLES:
            bound = type(base.__name__, (base,), {}, tablename=base._meta.tablename, db=engine)
            setattr(self, base.__name__, bound)
            self.all.append(bound)


# one binding per Database object, dropped with it (a test process makes many)
_BOUND: "weakref.WeakKeyDictionary[Database, RegistryTables]" = weakref.WeakKeyDictionary()


def tables_of(database: Database) -> RegistryTables:
    """The registry tables bound to ``database``'s engine."""
    bound = _BOUND.get(database)
    if bound is None:
        bound = _BOUND[database] = RegistryTables(database.engine)
    return bound


async def create_tables(database: Database) -> None:
    """Create the registry tables and their indexes where they are missing (an existing database made
    before they left core has them already, with the same names)."""
    await create_db_tables(*tables_of(database).all, if_not_exists=True)
