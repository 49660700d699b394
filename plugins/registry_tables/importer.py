"""The built-in registry's data: import from CSV files, and a fictitious registry for demos and tests.

``guichet registry import persons.csv payments.csv [--companies companies.csv] [--partial]`` calls
:func:`import_registry`; ``guichet registry demo --count N --seed S`` calls
:func:`generate_demo_registry`. docs/registry.md documents the columns and the rules.

Every value is parsed with the parsers of :mod:`core.identifiers`, the same ones the registration
pages use, so a NIR the import accepts is a NIR a person can type, and the reverse.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import json
import os
import random
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import msgspec
from stdnum import luhn

from guichet.core import Clock, Database, StepError
from guichet.core.identifiers import (
    nir_key,
    parse_amount,
    parse_birth_date,
    parse_email,
    parse_mobile,
    parse_name,
    parse_nir,
    parse_siret,
)
from guichet.plugins.registry_tables.tables import RegistryCompany, RegistryPayment, RegistryPerson, create_tables

PAYMENT_KINDS = ("benefit", "contributions_invoice", "salary_contributions")
ADDRESS_COLUMNS = tuple(f"address_line{i}" for i in range(1, 7))
ADDRESS_LINE_LENGTH = 38  # a window envelope's line (La Poste, NF Z10-011)
MIN_ADDRESS_LINES = 2

PERSON_REQUIRED = ("nir", "last_name", "first_name", "birth_date", "address_line1", "address_line2")
PERSON_OPTIONAL = (*ADDRESS_COLUMNS[2:], "email", "mobile", "vitale_serial", "health_affiliated")
COMPANY_REQUIRED = ("siret", "name", "address_line1", "address_line2")
COMPANY_OPTIONAL = (*ADDRESS_COLUMNS[2:], "email", "mobile")
PAYMENT_REQUIRED = ("identifier", "kind", "date", "amount")
PAYMENT_OPTIONAL: tuple[str, ...] = ()

TRUE_WORDS = frozenset({"yes", "true", "1", "oui", "o", "y"})
FALSE_WORDS = frozenset({"no", "false", "0", "non", "n", ""})
IMPORT_BATCH = 2000  # rows read, checked and written at a time: a few MiB, and few statements per row


# --- what an import produces -------------------------------------------------------------------------


class RowError(msgspec.Struct, frozen=True, kw_only=True):
    """A bad row (``line`` > 0) or a bad file (``line`` == 0), with the reason in plain words."""

    file: str
    line: int
    reason: str

    def describe(self) -> str:
        if not self.file:
            return self.reason
        return f"{self.file} line {self.line}: {self.reason}" if self.line else f"{self.file}: {self.reason}"


class ImportReport(msgspec.Struct, frozen=True, kw_only=True):
    """What ``guichet registry import`` did: rows written per file, and the bad rows.

    ``ok`` is true only when every row of every file was imported: a ``--partial`` import that
    skipped bad rows is not ok (the command exits 1), so a scheduled import still reports them.
    ``errors`` holds the first bad rows (all of them for a file of ordinary size); ``error_count``
    counts them all, ``causes`` by cause, and ``report_file`` lists every one.
    """

    imported: dict[str, int]
    errors: tuple[RowError, ...] = ()
    partial: bool = False
    committed: bool = False
    dry_run: bool = False
    error_count: int = 0
    causes: dict[str, int] = {}
    samples: dict[str, tuple[RowError, ...]] = {}
    bad_rows: dict[str, int] = {}  # per file
    report_file: str = ""

    @property
    def ok(self) -> bool:
        return (self.committed or self.dry_run) and not self.error_count

    def describe(self) -> str:
        lines: list[str] = []
        if self.committed or (self.dry_run and (self.partial or not self.error_count)):
            verb = "would be imported (dry run: nothing written)" if self.dry_run else "imported"
            for name, count in self.imported.items():
                skipped = self.bad_rows.get(name, 0)
                lines.append(f"{name}: {count} row(s) {verb}" + (f", {skipped} bad row(s) skipped" if skipped else ""))
        if not self.committed and (not self.dry_run or not self.partial) and self.error_count:
            lines.append(
                f"Nothing {'would be ' if self.dry_run else ''}imported: {self.error_count} problem(s) found. "
                "Fix them and import again, or use --partial to import the good rows."
            )
        if self.error_count > SHOWN_ERRORS:
            lines.append("")
            lines.append(f"{self.error_count} bad row(s), by cause:")
            for cause, count in sorted(self.causes.items(), key=lambda item: -item[1]):
                lines.append(f"  {count:>9}  {cause}")
                lines.extend(f"             e.g. {error.describe()}" for error in self.samples.get(cause, ()))
        elif self.errors:
            lines.append("")
            lines.extend(error.describe() for error in self.errors)
        if self.report_file:
            lines.append("")
            lines.append(f"Every bad row: {self.report_file}")
        return "\n".join(lines)


SHOWN_ERRORS = 50  # up to this many bad rows are listed one by one; beyond, by cause


# --- parsed rows, shared by the import and the demo generator ---------------------------------------


class PersonRow(msgspec.Struct, frozen=True, kw_only=True):
    nir: str
    last_name: str
    first_name: str
    birth_date: dt.date
    address: tuple[str, ...]
    email: str | None = None
    mobile: str | None = None
    vitale_serial: str | None = None
    health_affiliated: bool = False


class CompanyRow(msgspec.Struct, frozen=True, kw_only=True):
    siret: str
    name: str
    address: tuple[str, ...]
    email: str | None = None
    mobile: str | None = None


class PaymentRow(msgspec.Struct, frozen=True, kw_only=True):
    identifier_kind: str  # "nir" or "siret"
    identifier: str
    kind: str
    paid_on: dt.date
    amount: Decimal


class _Bad(Exception):
    """One bad value; the message is the reason shown in the report."""


# --- reading CSV, one row at a time ----------------------------------------------------------------


def _non_ascii_digit(text: str) -> bool:
    # isascii() first: it is one pass in C, and nearly every value of a registry is ASCII
    return not text.isascii() and any(unicodedata.category(c) == "Nd" and not c.isascii() for c in text)


class _CountingReader(io.RawIOBase):
    """Counts the bytes read, so progress is the share of the file read (rows/s, time left)."""

    def __init__(self, raw: io.BufferedReader) -> None:
        self.raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        read = self.raw.readinto(buffer)
        self.count += read or 0
        return read or 0


Progress = Callable[[str, int, int, int], None]  # (file name, rows read, bytes read, file size)
PROGRESS_EVERY = 2000  # rows between two progress calls


def _stream_csv(
    path: Path, required: Sequence[str], optional: Sequence[str], errors: "_Errors", progress: Progress | None
) -> Iterator[tuple[int, dict[str, str]]]:
    """The rows of one file with their line numbers, read as they come (memory does not grow with
    the file); file-level problems go to ``errors`` and end the file."""
    name = path.name
    try:
        raw = path.open("rb")
        size = os.fstat(raw.fileno()).st_size
    except OSError as exc:
        errors.add(RowError(file=name, line=0, reason=f"cannot read the file: {exc.strerror}"))
        return
    counting = _CountingReader(raw)
    text = io.TextIOWrapper(io.BufferedReader(counting, 1 << 16), encoding="utf-8-sig", newline="")
    line = 1
    try:
        first_line = text.readline()
        if not first_line.strip():
            errors.add(RowError(file=name, line=0, reason="no header row: the first line must name the columns"))
            return
        delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
        reader = csv.reader(itertools.chain([first_line], text), delimiter=delimiter, strict=True)
        header = [cell.strip().lower() for cell in next(reader)]
        known = (*required, *optional)
        problems = []
        unknown = [h for h in header if h not in known]
        if unknown:
            problems.append(f"unknown column(s): {', '.join(unknown) or '(empty name)'}")
        duplicated = sorted({h for h in header if header.count(h) > 1})
        if duplicated:
            problems.append(f"column(s) given twice: {', '.join(duplicated)}")
        missing = [c for c in required if c not in header]
        if missing:
            problems.append(f"missing required column(s): {', '.join(missing)}")
        if problems:
            errors.add(
                RowError(file=name, line=0, reason="; ".join(problems) + f" (expected columns: {', '.join(known)})")
            )
            return
        end_of_previous = reader.line_num
        rows = 0
        for cells in reader:
            line = end_of_previous + 1  # a quoted value may span lines: report where the row starts
            end_of_previous = reader.line_num
            rows += 1
            if progress is not None and rows % PROGRESS_EVERY == 0:
                progress(name, rows, counting.count, size)
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(header):
                errors.add(
                    RowError(
                        file=name, line=line, reason=f"{len(cells)} field(s), expected {len(header)} like the header"
                    )
                )
                continue
            yield line, dict(zip(header, cells, strict=True))
        if progress is not None:
            progress(name, rows, size, size)
    except UnicodeDecodeError:
        errors.add(
            RowError(
                file=name,
                line=0,
                reason=f"not UTF-8 text (a bad byte on line {line + 1} or near it); save the file as UTF-8",
            )
        )
    except csv.Error as exc:
        errors.add(RowError(file=name, line=line, reason=f"not valid CSV: {exc}"))
    finally:
        text.close()


# --- one value at a time ---------------------------------------------------------------------------

_SEPARATORS = re.compile(r"[\s\u00a0\u202f.\-]")  # what people type between a NIR's or a SIRET's digits
_VITALE_SEPARATORS = re.compile(r"[\s\u00a0.\-]")
_VITALE = re.compile(r"[0-9A-Z]{6,20}", re.ASCII)
_SIRET_SHAPE = re.compile(r"[0-9]{14}", re.ASCII)


def _check_ascii(column: str, value: str) -> None:
    if _non_ascii_digit(value):
        raise _Bad(f"{column}: non-ASCII digits (type the digits 0-9)")


def _nir(value: str, column: str = "nir") -> str:
    _check_ascii(column, value)
    compact = _SEPARATORS.sub("", value)
    if not compact:
        raise _Bad(f"{column}: missing")
    try:
        return parse_nir(value, column)
    except StepError as exc:
        if len(compact) not in (13, 15):
            raise _Bad(f"{column}: {len(compact)} characters, expected 13 (or 15 with the key)") from None
        if len(compact) == 15:
            try:
                parse_nir(compact[:13], column)
            except StepError:
                pass
            else:
                raise _Bad(f"{column}: bad NIR key") from None
        raise _Bad(f"{column}: not a valid NIR ({exc.message_fr})") from None


def _siret(value: str, column: str = "siret") -> str:
    _check_ascii(column, value)
    if not value.strip():
        raise _Bad(f"{column}: missing")
    try:
        return parse_siret(value, column)
    except StepError:
        raise _Bad(f"{column}: not a valid SIRET (14 digits with a valid check digit)") from None


def _name(value: str, column: str) -> str:
    if not value.strip():
        raise _Bad(f"{column}: missing")
    try:
        return parse_name(value, column, column)
    except StepError:
        raise _Bad(f"{column}: over 100 characters or control characters") from None


def _date(value: str, column: str, today: dt.date) -> dt.date:
    _check_ascii(column, value)
    if not value.strip():
        raise _Bad(f"{column}: missing")
    try:
        return parse_birth_date(value, today, column)
    except StepError:
        for pattern in ("%Y-%m-%d", "%d/%m/%Y"):
            try:
                if dt.datetime.strptime(value.strip(), pattern).date() > today:
                    raise _Bad(f"{column}: {value.strip()!r} is in the future") from None
            except ValueError:
                continue
        raise _Bad(f"{column}: bad date {value.strip()!r} (expected YYYY-MM-DD or DD/MM/YYYY)") from None


def _amount(value: str, column: str = "amount") -> Decimal:
    _check_ascii(column, value)
    text = value.strip()
    if not text:
        raise _Bad(f"{column}: missing")
    if text.startswith("-"):
        raise _Bad(f"{column}: negative amount {text!r}")
    try:
        amount = parse_amount(text, column)
    except StepError:
        raise _Bad(f"{column}: bad amount {text!r} (expected euros like 1234.50 or 1 234,50)") from None
    if amount <= 0:
        raise _Bad(f"{column}: the amount must be positive")
    return amount


def _address(row: dict[str, str]) -> tuple[str, ...]:
    lines = []
    for column in ADDRESS_COLUMNS:
        text = " ".join(row.get(column, "").split())
        if not text:
            continue
        # isprintable() is False for every control (C*) character, and is one pass in C
        if not text.isprintable() and any(unicodedata.category(c)[0] == "C" for c in text):
            raise _Bad(f"{column}: control characters")
        if len(text) > ADDRESS_LINE_LENGTH:
            raise _Bad(f"{column}: {len(text)} characters, at most {ADDRESS_LINE_LENGTH} per address line")
        lines.append(text)
    if len(lines) < MIN_ADDRESS_LINES:
        raise _Bad("address: at least 2 lines are needed (street, then postcode and town)")
    return tuple(lines)


def _email(value: str) -> str | None:
    try:
        return parse_email(value, "email", required=False)
    except StepError:
        raise _Bad("email: not a valid email address") from None


def _mobile(value: str) -> str | None:
    _check_ascii("mobile", value)
    try:
        return parse_mobile(value, "mobile", required=False)
    except StepError:
        raise _Bad("mobile: not a French mobile number (06, 07, or an overseas mobile)") from None


def _vitale(value: str) -> str | None:
    _check_ascii("vitale_serial", value)
    text = _VITALE_SEPARATORS.sub("", value).upper()
    if not text:
        return None
    if not _VITALE.fullmatch(text):
        raise _Bad("vitale_serial: 6 to 20 letters or digits expected")
    return text


def _flag(value: str, column: str) -> bool:
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise _Bad(f"{column}: {value.strip()!r} is not yes/no (yes, no, true, false, 1, 0, oui, non)")


def _collect(fields: Iterable[tuple[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """Run every field's parser; gather all reasons so one pass shows every problem of a row."""
    values: dict[str, Any] = {}
    reasons: list[str] = []
    for key, parse in fields:
        try:
            values[key] = parse()
        except _Bad as bad:
            reasons.append(str(bad))
    return values, reasons


def _parse_person(row: dict[str, str], today: dt.date, nir: str | None = None) -> PersonRow:
    """The row's person; ``nir`` is the row's NIR when it was parsed already."""
    values, reasons = _collect(
        [
            ("nir", lambda: nir or _nir(row["nir"])),
            ("last_name", lambda: _name(row["last_name"], "last_name")),
            ("first_name", lambda: _name(row["first_name"], "first_name")),
            ("birth_date", lambda: _date(row["birth_date"], "birth_date", today)),
            ("address", lambda: _address(row)),
            ("email", lambda: _email(row.get("email", ""))),
            ("mobile", lambda: _mobile(row.get("mobile", ""))),
            ("vitale_serial", lambda: _vitale(row.get("vitale_serial", ""))),
            ("health_affiliated", lambda: _flag(row.get("health_affiliated", ""), "health_affiliated")),
        ]
    )
    if reasons:
        raise _Bad("; ".join(reasons))
    return PersonRow(**values)


def _parse_company(row: dict[str, str], siret: str | None = None) -> CompanyRow:
    """The row's company; ``siret`` is the row's SIRET when it was parsed already."""
    values, reasons = _collect(
        [
            ("siret", lambda: siret or _siret(row["siret"])),
            ("name", lambda: _name(row["name"], "name")),
            ("address", lambda: _address(row)),
            ("email", lambda: _email(row.get("email", ""))),
            ("mobile", lambda: _mobile(row.get("mobile", ""))),
        ]
    )
    if reasons:
        raise _Bad("; ".join(reasons))
    return CompanyRow(**values)


def _identifier(value: str) -> tuple[str, str]:
    compact = _SEPARATORS.sub("", value)
    if _SIRET_SHAPE.fullmatch(compact):
        return "siret", _siret(value, "identifier")
    return "nir", _nir(value, "identifier")


def _parse_payment(row: dict[str, str], today: dt.date) -> PaymentRow:
    def kind() -> str:
        word = row["kind"].strip().lower()
        if word not in PAYMENT_KINDS:
            raise _Bad(f"kind: unknown kind {row['kind'].strip()!r} (expected {', '.join(PAYMENT_KINDS)})")
        return word

    values, reasons = _collect(
        [
            ("identifier", lambda: _identifier(row["identifier"])),
            ("kind", kind),
            ("paid_on", lambda: _date(row["date"], "date", today)),
            ("amount", lambda: _amount(row["amount"])),
        ]
    )
    if reasons:
        raise _Bad("; ".join(reasons))
    identifier_kind, identifier = values.pop("identifier")
    return PaymentRow(identifier_kind=identifier_kind, identifier=identifier, **values)


SEEN, PAID = "guichet_import_seen", "guichet_import_paid"  # the import's temporary tables


# --- writing: parameterised SQL on the import's own connection --------------------------------------


class _Sql:
    """The connection of the transaction that the import (or the demo generator) holds, driven directly.

    This is the hot path: piccolo builds a Table object per row and renders every value into its
    query through several layers, which took most of the import's time (docs/benchmarks.md). Here
    each statement is written once with bound parameters. A batch of rows goes to SQLite through
    ``executemany`` (one prepared statement, one hop to its thread) and to PostgreSQL as one array
    per column, unnested in one statement (one round trip). A list of identifiers is bound as one
    parameter: a JSON array read by ``json_each`` on SQLite, a ``text[]`` on PostgreSQL. Values have
    the types piccolo's columns take (str, date, Decimal, bool); its sqlite3 adapters are
    process-wide, so SQLite stores them as piccolo would. Only this module's constants are
    formatted into the SQL.
    """

    def __init__(self, database: Database) -> None:
        transaction = database.engine.current_transaction.get()
        if transaction is None:
            raise RuntimeError("the registry is written inside database.transaction()")
        self.connection: Any = transaction.connection  # an aiosqlite or an asyncpg connection
        self.sqlite = database.is_sqlite
        # "column {any_of}": the column's value is in a bound list (no join for a planner to choose)
        self.any_of = "IN (SELECT value FROM json_each(?))" if self.sqlite else "= ANY(?::text[])"

    async def look_up_by_index(self) -> None:
        """For the rest of the transaction, have PostgreSQL look the keys of a batch up in an index,
        never read a whole table for them.

        Every lookup of the import is by key, but the planner has no statistics for the rows of the
        import's own transaction: with thousands of keys per batch it costed a full read of a
        growing table as cheaper, so each batch took longer than the one before. ``SET LOCAL`` ends
        with the transaction. SQLite plans these lookups with the indexes already.
        """
        if not self.sqlite:
            await self.execute("SET LOCAL enable_seqscan = off")

    async def analyze(self, table: str) -> None:
        """Statistics for ``table`` (PostgreSQL), so the planner knows how many rows it holds now."""
        if not self.sqlite:
            await self.execute(f"ANALYZE {table}")

    def _text(self, sql: str) -> str:
        if self.sqlite:
            return sql
        parts = sql.split("?")  # asyncpg numbers its parameters: $1, $2...
        return parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], 1))

    def values(self, identifiers: Iterable[str]) -> Any:
        """A list of identifiers as the one parameter of ``any_of``."""
        return json.dumps(list(identifiers)) if self.sqlite else list(identifiers)

    async def insert(self, statement: _Insert, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        if self.sqlite:
            await self.connection.executemany(statement.sqlite, rows)
        else:
            await self.connection.execute(statement.postgres, *[list(column) for column in zip(*rows, strict=True)])

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        """The rows as mappings (the pool's dicts on SQLite, asyncpg's Records)."""
        if self.sqlite:
            return list(await self.connection.execute_fetchall(sql, args))
        return list(await self.connection.fetch(self._text(sql), *args))

    async def execute(self, sql: str, *args: Any) -> None:
        if self.sqlite:
            await self.connection.execute(sql, args)
        else:
            await self.connection.execute(self._text(sql), *args)


class _Insert:
    """One INSERT for a batch of rows, in each engine's form: values per row for SQLite's
    ``executemany``, one array per column (of the given PostgreSQL types) for ``unnest``."""

    def __init__(self, table: str, columns: dict[str, str], tail: str = "") -> None:
        head = f"INSERT INTO {table} ({', '.join(columns)})"
        self.sqlite = f"{head} VALUES ({', '.join('?' for _ in columns)}) {tail}".strip()
        arrays = ", ".join(f"${n}::{kind}[]" for n, kind in enumerate(columns.values(), 1))
        self.postgres = f"{head} SELECT * FROM unnest({arrays}) {tail}".strip()

    @classmethod
    def upsert(cls, table: str, key: str, columns: dict[str, str]) -> _Insert:
        """Insert each row, or update the row with the same ``key`` (unique in a batch)."""
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != key)
        return cls(table, columns, f"ON CONFLICT ({key}) DO UPDATE SET {updates}")


_PERSONS = RegistryPerson._meta.tablename
_COMPANIES = RegistryCompany._meta.tablename
_PAYMENTS = RegistryPayment._meta.tablename
UPSERT_PERSON = _Insert.upsert(
    _PERSONS,
    "nir",
    {
        "nir": "text",
        "last_name": "text",
        "first_name": "text",
        "birth_date": "date",
        "address": "text",
        "email": "text",
        "mobile": "text",
        "vitale_serial": "text",
        "health_affiliated": "boolean",
    },
)
UPSERT_COMPANY = _Insert.upsert(
    _COMPANIES, "siret", {"siret": "text", "name": "text", "address": "text", "email": "text", "mobile": "text"}
)
INSERT_PAYMENT = _Insert(
    _PAYMENTS,
    {"identifier_kind": "text", "identifier": "text", "kind": "text", "paid_on": "date", "amount": "numeric"},
)
HOLDERS = {"nir": (_PERSONS, "nir"), "siret": (_COMPANIES, "siret")}


async def _upsert_persons(sql: _Sql, persons: Iterable[PersonRow]) -> None:
    rows = [
        (
            p.nir,
            p.last_name,
            p.first_name,
            p.birth_date,
            "\n".join(p.address),
            p.email,
            p.mobile,
            p.vitale_serial,
            p.health_affiliated,
        )
        for p in persons
    ]
    await sql.insert(UPSERT_PERSON, rows)


async def _upsert_companies(sql: _Sql, companies: Iterable[CompanyRow]) -> None:
    await sql.insert(UPSERT_COMPANY, [(c.siret, c.name, "\n".join(c.address), c.email, c.mobile) for c in companies])


async def _drop_payments(sql: _Sql, keys: Iterable[tuple[str, str]]) -> None:
    """Delete the payments of these (kind, identifier): their new set is written next."""
    for kind in ("nir", "siret"):
        identifiers = sorted({identifier for k, identifier in keys if k == kind})
        if identifiers:
            # "identifier_kind || ''" keeps that condition away from its index: with two values, the
            # index of identifier_kind leads to every payment of the kind, and both engines took it
            await sql.execute(
                f"DELETE FROM {_PAYMENTS} WHERE identifier {sql.any_of} AND identifier_kind || '' = ?",
                sql.values(identifiers),
                kind,
            )


async def _insert_payments(sql: _Sql, payments: Iterable[PaymentRow]) -> None:
    await sql.insert(INSERT_PAYMENT, [(p.identifier_kind, p.identifier, p.kind, p.paid_on, p.amount) for p in payments])


async def _existing(sql: _Sql, kind: str, identifiers: Iterable[str]) -> set[str]:
    """Of ``identifiers``, those of a person (``kind`` "nir") or company ("siret") in the registry."""
    identifiers = sorted(identifiers)
    if not identifiers:
        return set()
    table, column = HOLDERS[kind]
    rows = await sql.fetch(f"SELECT {column} FROM {table} WHERE {column} {sql.any_of}", sql.values(identifiers))
    return {row[column] for row in rows}


class _Seen:
    """The identifiers this import has met, in temporary tables of the import's own transaction:
    duplicates and the payments of bad rows are found without holding every identifier in memory.
    The transaction's end removes them if the import fails half-way; ``drop`` does it otherwise."""

    ADD = _Insert(SEEN, {"kind": "text", "identifier": "text", "file": "text", "line": "integer", "bad": "integer"})
    PAY = _Insert(PAID, {"kind": "text", "identifier": "text"}, "ON CONFLICT DO NOTHING")

    def __init__(self, sql: _Sql) -> None:
        self.sql = sql

    async def create(self) -> None:
        # the identifier leads the keys: every lookup is by identifier
        for statement in (
            f"CREATE TEMP TABLE {SEEN} (kind VARCHAR(5) NOT NULL, identifier VARCHAR(15) NOT NULL, "
            "file TEXT NOT NULL, line INTEGER NOT NULL, bad INTEGER NOT NULL, "
            "PRIMARY KEY (identifier, kind))",
            f"CREATE TEMP TABLE {PAID} (kind VARCHAR(5) NOT NULL, identifier VARCHAR(15) NOT NULL, "
            "PRIMARY KEY (identifier, kind))",
        ):
            await self.sql.execute(statement)

    async def drop(self) -> None:
        for table in (SEEN, PAID):
            await self.sql.execute(f"DROP TABLE IF EXISTS {table}")

    async def find(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], tuple[str, int, bool]]:
        """Where each of ``keys`` was met first: (file, line, was the row bad)."""
        found: dict[tuple[str, str], tuple[str, int, bool]] = {}
        by_kind: dict[str, list[str]] = {}
        for kind, identifier in keys:
            by_kind.setdefault(kind, []).append(identifier)
        for kind, identifiers in by_kind.items():
            rows = await self.sql.fetch(
                f"SELECT identifier, file, line, bad FROM {SEEN} WHERE identifier {self.sql.any_of} AND kind = ?",
                self.sql.values(identifiers),
                kind,
            )
            found.update({(kind, r["identifier"]): (r["file"], int(r["line"]), bool(r["bad"])) for r in rows})
        return found

    async def add(self, entries: Sequence[tuple[str, str, str, int, bool]]) -> None:
        await self.sql.insert(
            self.ADD, [(kind, identifier, file, line, int(bad)) for kind, identifier, file, line, bad in entries]
        )

    async def mark_paid(self, keys: Iterable[tuple[str, str]]) -> None:
        """Note that the file gives the payments of these (kind, identifier)."""
        await self.sql.insert(self.PAY, sorted(set(keys)))

    async def drop_replaced_payments(self, last_before: int) -> None:
        """Delete the payments older than the import (ids up to ``last_before``) of every identifier
        whose payments the file gives: one pass at the end, instead of a lookup of the payments
        table for each batch (which grew with the table, and read all of it when an index of the
        kind was chosen)."""
        await self.sql.analyze(PAID)  # one join of two big tables: hashed, once the planner knows their size
        await self.sql.execute(
            f"DELETE FROM {_PAYMENTS} WHERE id <= ? AND EXISTS (SELECT 1 FROM {PAID} AS paid "
            f"WHERE paid.identifier = {_PAYMENTS}.identifier AND paid.kind = {_PAYMENTS}.identifier_kind)",
            last_before,
        )


# --- what went wrong, kept small -----------------------------------------------------------------------


KEPT_ERRORS = 1000  # the report keeps this many rows in memory; the report file has them all
SAMPLES_PER_CAUSE = 3


def cause_of(reason: str) -> str:
    """A reason without its row's values: "birth_date: bad date '31/02/1975' (expected ...)" is
    counted with every other bad birth date."""
    text = re.sub(r"'[^']*'", "'…'", reason.split(" (")[0])
    return re.sub(r"\d+", "N", text)


class _Errors:
    """Every bad row: counted by cause, the first few of each cause kept, all of them written to the
    report file as they come."""

    def __init__(self, report_file: Path | None) -> None:
        self.count = 0
        self.kept: list[RowError] = []
        self.causes: dict[str, int] = {}
        self.bad_rows: dict[str, int] = {}
        self.samples: dict[str, list[RowError]] = {}
        self.report_file = report_file
        self._out: TextIO | None = None

    def add(self, error: RowError) -> None:
        self.count += 1
        self.bad_rows[error.file] = self.bad_rows.get(error.file, 0) + 1
        if len(self.kept) < KEPT_ERRORS:
            self.kept.append(error)
        for part in error.reason.split("; "):
            cause = f"{error.file}: {cause_of(part)}" if error.file else cause_of(part)
            self.causes[cause] = self.causes.get(cause, 0) + 1
            samples = self.samples.setdefault(cause, [])
            if len(samples) < SAMPLES_PER_CAUSE:
                samples.append(error)
        if self.report_file is not None:
            if self._out is None:
                self._out = self.report_file.open("w", encoding="utf-8")
            self._out.write(error.describe() + "\n")

    def close(self) -> None:
        if self._out is not None:
            self._out.close()


class _Rollback(Exception):
    """Leaves the import's transaction without committing (a bad row, or a dry run)."""


# --- the import ---------------------------------------------------------------------------------------


async def import_registry(
    database: Database,
    *,
    persons: Path | None,
    payments: Path | None,
    companies: Path | None,
    partial: bool,
    today: dt.date | None = None,
    dry_run: bool = False,
    report_file: Path | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Import persons, companies and payments from CSV files (docs/registry.md), in one transaction.

    Persons are upserted by NIR and companies by SIRET: a re-import updates them. The payments of
    an identifier that appears in the payments file are replaced by the imported set; identifiers
    absent from it keep theirs. All or nothing by default: any bad row, in any file, imports
    nothing and the report lists every bad row; with ``partial`` the good rows are imported.

    The files are read and written a batch of rows at a time, so memory stays the same whatever
    their size: the identifiers met are kept in a temporary table of the transaction, the bad rows
    are counted by cause (the first few of each kept) and written to ``report_file``.

    :param today: the day dates are checked against (no date in the future); the caisse's today by default.
    :param dry_run: check everything, write nothing (the transaction is rolled back).
    :param progress: called every few thousand rows with (file name, rows, bytes read, file size).
    """
    today = today or Clock().today()
    errors = _Errors(report_file)
    if not (persons or payments or companies):
        errors.add(
            RowError(file="", line=0, reason="nothing to import: give persons.csv, payments.csv and/or --companies")
        )
        return _report(errors, {}, persons, companies, payments, partial=partial, committed=False, dry_run=dry_run)

    counts: dict[str, int] = {}
    await create_tables(database)
    committed = False
    try:
        async with database.transaction():
            sql = _Sql(database)
            await sql.look_up_by_index()
            seen = _Seen(sql)
            await seen.create()
            for path, kind in ((persons, "nir"), (companies, "siret")):
                if path is not None:
                    counts[path.name] = await _import_holders(sql, seen, path, kind, today, errors, progress)
            if payments is not None:
                counts[payments.name] = await _import_payments(sql, seen, payments, today, errors, progress)
            await seen.drop()
            if dry_run or (errors.count and not partial):
                raise _Rollback()
        committed = True
    except _Rollback:
        pass
    finally:
        errors.close()
    return _report(
        errors,
        counts if committed or dry_run else {},
        persons,
        companies,
        payments,
        partial=partial,
        committed=committed,
        dry_run=dry_run,
    )


def _report(
    errors: _Errors, counts: dict[str, int], *paths: Path | None, partial: bool, committed: bool, dry_run: bool
) -> ImportReport:
    return ImportReport(
        imported=counts,
        errors=tuple(_sorted(errors.kept, *paths)),
        partial=partial,
        committed=committed,
        dry_run=dry_run,
        error_count=errors.count,
        causes=errors.causes,
        samples={cause: tuple(rows) for cause, rows in errors.samples.items()},
        bad_rows=errors.bad_rows,
        report_file=str(errors.report_file) if errors.report_file and errors.count else "",
    )


async def _import_holders(
    sql: _Sql, seen: _Seen, path: Path, kind: str, today: dt.date, errors: _Errors, progress: Progress | None
) -> int:
    required, optional = (PERSON_REQUIRED, PERSON_OPTIONAL) if kind == "nir" else (COMPANY_REQUIRED, COMPANY_OPTIONAL)
    column = kind
    written = 0
    rows = _stream_csv(path, required, optional, errors, progress)
    while batch := list(itertools.islice(rows, IMPORT_BATCH)):
        keyed: list[tuple[int, dict[str, str], tuple[str, str] | None]] = []
        for line, row in batch:
            try:
                keyed.append((line, row, (kind, _nir(row[column]) if kind == "nir" else _siret(row[column]))))
            except _Bad:
                keyed.append((line, row, None))
        earlier = await seen.find(key for _line, _row, key in keyed if key is not None)
        met: list[tuple[str, str, str, int, bool]] = []
        good: dict[str, Any] = {}
        for line, row, key in keyed:
            if key is not None and key in earlier:
                where = earlier[key]
                errors.add(
                    RowError(file=path.name, line=line, reason=f"{column}: already given on {where[0]} line {where[1]}")
                )
                continue
            try:
                identifier = key[1] if key is not None else None
                parsed: PersonRow | CompanyRow = (
                    _parse_person(row, today, identifier) if kind == "nir" else _parse_company(row, identifier)
                )
            except _Bad as bad:
                errors.add(RowError(file=path.name, line=line, reason=str(bad)))
                if key is not None:
                    earlier[key] = (path.name, line, True)
                    met.append((*key, path.name, line, True))
                continue
            assert key is not None  # a row that parsed has a valid identifier
            earlier[key] = (path.name, line, False)
            met.append((*key, path.name, line, False))
            good[key[1]] = parsed
        await seen.add(met)
        if kind == "nir":
            await _upsert_persons(sql, [p for p in good.values() if isinstance(p, PersonRow)])
        else:
            await _upsert_companies(sql, [c for c in good.values() if isinstance(c, CompanyRow)])
        written += len(good)
    return written


async def _import_payments(
    sql: _Sql, seen: _Seen, path: Path, today: dt.date, errors: _Errors, progress: Progress | None
) -> int:
    written = 0
    rows_before = await sql.fetch(f"SELECT max(id) AS last FROM {_PAYMENTS}")
    last_before = rows_before[0]["last"] or 0  # the payments this import adds come after it
    rows = _stream_csv(path, PAYMENT_REQUIRED, PAYMENT_OPTIONAL, errors, progress)
    while batch := list(itertools.islice(rows, IMPORT_BATCH)):
        parsed: list[tuple[int, PaymentRow]] = []
        for line, row in batch:
            try:
                parsed.append((line, _parse_payment(row, today)))
            except _Bad as bad:
                errors.add(RowError(file=path.name, line=line, reason=str(bad)))
        keys = {(p.identifier_kind, p.identifier) for _line, p in parsed}
        met = await seen.find(keys)
        # a payment must belong to a person or company: in these files, or already in the registry
        known = {key for key, (_file, _line, bad) in met.items() if not bad}
        for kind in ("nir", "siret"):
            known |= {(kind, i) for i in await _existing(sql, kind, {i for k, i in keys - met.keys() if k == kind})}
        good: list[PaymentRow] = []
        for line, payment in parsed:
            key = (payment.identifier_kind, payment.identifier)
            if key in met and met[key][2]:
                errors.add(
                    RowError(
                        file=path.name,
                        line=line,
                        reason=f"identifier: its row ({met[key][0]} line {met[key][1]}) is bad, "
                        "so its payments cannot be imported",
                    )
                )
            elif key not in known:
                errors.add(
                    RowError(
                        file=path.name,
                        line=line,
                        reason="identifier: no person or company with this identifier, in the files or in the registry",
                    )
                )
            else:
                good.append(payment)
        # each identifier in the file keeps exactly the file's payments: the older ones go at the end
        await seen.mark_paid((p.identifier_kind, p.identifier) for p in good)
        await _insert_payments(sql, good)
        written += len(good)
    await seen.drop_replaced_payments(last_before)
    return written


def _sorted(errors: list[RowError], *paths: Path | None) -> list[RowError]:
    order = {p.name: i for i, p in enumerate(paths) if p is not None}
    return sorted(errors, key=lambda e: (order.get(e.file, -1), e.line))


# --- the demo registry ------------------------------------------------------------------------------


class DemoPayment(msgspec.Struct, frozen=True, kw_only=True):
    """A payment dated relative to today, so it stays inside the question's window."""

    kind: str
    days_ago: int
    amount: Decimal

    def date(self, today: dt.date) -> dt.date:
        return today - dt.timedelta(days=self.days_ago)


class DemoPerson(msgspec.Struct, frozen=True, kw_only=True):
    """A fixed demo account holder, with every answer the registration pages ask for.

    ``answer`` is the identity answer as a person types it; ``question`` its kind.
    """

    role: str
    status: str  # the status code chosen on "Vous êtes..."
    identifier_kind: str  # "nir" or "siret"
    identifier: str  # the NIR's 13 characters, or the SIRET
    last_name: str
    first_name: str
    birth_date: dt.date | None
    email: str
    mobile: str  # as typed, national format
    address: tuple[str, ...]
    question: str  # "vitale" or "payment"
    answer: str
    vitale_serial: str | None = None
    health_affiliated: bool = False
    payments: tuple[DemoPayment, ...] = ()

    @property
    def nir_with_key(self) -> str:
        """The 15-character NIR, as printed on the carte Vitale."""
        return self.identifier + nir_key(self.identifier) if self.identifier_kind == "nir" else self.identifier


# Documented in docs/registry.md and README.md; the browser tests log in as these people.
DEMO_PERSONS: dict[str, DemoPerson] = {
    "particulier_vitale": DemoPerson(
        role="particulier_vitale",
        status="particulier",
        identifier_kind="nir",
        identifier="1850578006084",
        last_name="LEFEBVRE",
        first_name="Julien",
        birth_date=dt.date(1985, 5, 14),
        email="julien.lefebvre@demo.invalid",
        mobile="06 00 00 01 01",
        address=("12 RUE DES TILLEULS", "78000 VERSAILLES"),
        question="vitale",
        answer="2345678901",
        vitale_serial="2345678901",
        health_affiliated=True,
        payments=(DemoPayment(kind="benefit", days_ago=20, amount=Decimal("98.40")),),
    ),
    "particulier_paiement": DemoPerson(
        role="particulier_paiement",
        status="particulier",
        identifier_kind="nir",
        identifier="2920633123045",
        last_name="MOREAU",
        first_name="Sophie",
        birth_date=dt.date(1992, 6, 21),
        email="sophie.moreau@demo.invalid",
        mobile="06 00 00 01 02",
        address=("APPARTEMENT 12", "4 COURS DE L INTENDANCE", "33000 BORDEAUX"),
        question="payment",
        answer="412,37",
        payments=(
            DemoPayment(kind="benefit", days_ago=45, amount=Decimal("412.37")),
            DemoPayment(kind="benefit", days_ago=400, amount=Decimal("380.00")),
        ),
    ),
    "exploitant": DemoPerson(
        role="exploitant",
        status="exploitant",
        identifier_kind="nir",
        identifier="1680764445012",
        last_name="LABORDE",
        first_name="Pierre",
        birth_date=dt.date(1968, 7, 3),
        email="pierre.laborde@demo.invalid",
        mobile="06 00 00 01 03",
        address=("FERME DE BIDEGAIN", "CHEMIN DE LA SAUGUE", "64400 OLORON STE MARIE"),
        question="payment",
        answer="1 875,40",
        payments=(DemoPayment(kind="contributions_invoice", days_ago=120, amount=Decimal("1875.40")),),
    ),
    "employeur_jardinier": DemoPerson(
        role="employeur_jardinier",
        status="employeur_jardinier",
        identifier_kind="nir",
        identifier="2750413055078",
        last_name="ROUX",
        first_name="Isabelle",
        birth_date=dt.date(1975, 4, 9),
        email="isabelle.roux@demo.invalid",
        mobile="06 00 00 01 04",
        address=("27 AVENUE DU PRADO", "13008 MARSEILLE"),
        question="payment",
        answer="236,80",
        payments=(DemoPayment(kind="salary_contributions", days_ago=60, amount=Decimal("236.80")),),
    ),
    "entreprise": DemoPerson(
        role="entreprise",
        status="entreprise",
        identifier_kind="siret",
        identifier="84216730600021",
        last_name="SCEA DU DOMAINE DES PINS",
        first_name="",
        birth_date=None,
        email="contact.domainedespins@demo.invalid",
        mobile="06 00 00 01 05",
        address=("DOMAINE DES PINS", "ROUTE DE CAZAUX", "40160 PARENTIS EN BORN"),
        question="payment",
        answer="3 412,15",
        payments=(
            DemoPayment(kind="salary_contributions", days_ago=30, amount=Decimal("3412.15")),
            DemoPayment(kind="salary_contributions", days_ago=120, amount=Decimal("3290.00")),
        ),
    ),
}

_FIRST_NAMES = {
    1: (
        "Jean",
        "Pierre",
        "Louis",
        "Michel",
        "Philippe",
        "Alain",
        "Nicolas",
        "Julien",
        "Thomas",
        "Antoine",
        "Mathieu",
        "Sébastien",
        "François",
        "Olivier",
        "Hugo",
        "Lucas",
        "Étienne",
        "Joël",
        "Benoît",
        "Rémi",
    ),
    2: (
        "Marie",
        "Nathalie",
        "Isabelle",
        "Sophie",
        "Catherine",
        "Sandrine",
        "Camille",
        "Julie",
        "Émilie",
        "Chloé",
        "Léa",
        "Manon",
        "Anne",
        "Christine",
        "Véronique",
        "Hélène",
        "Céline",
        "Agnès",
        "Inès",
        "Zoé",
    ),
}
_LAST_NAMES = (
    "MARTIN",
    "BERNARD",
    "DUBOIS",
    "THOMAS",
    "ROBERT",
    "RICHARD",
    "PETIT",
    "DURAND",
    "LEROY",
    "MOREAU",
    "SIMON",
    "LAURENT",
    "LEFEBVRE",
    "MICHEL",
    "GARCIA",
    "DAVID",
    "BERTRAND",
    "ROUX",
    "VINCENT",
    "FOURNIER",
    "MOREL",
    "GIRARD",
    "ANDRE",
    "MERCIER",
    "DUPONT",
    "LAMBERT",
    "BONNET",
    "FRANCOIS",
    "MARTINEZ",
    "LEGRAND",
    "GARNIER",
    "FAURE",
    "ROUSSEAU",
    "BLANC",
    "GUERIN",
    "MULLER",
    "HENRY",
    "ROUSSEL",
    "NICOLAS",
    "PERRIN",
    "ETCHEVERRY",
    "LABORDE",
    "HARISPE",
    "CASTAGNÉ",
    "DARRIGRAND",
    "LE GALL",
    "D'ARTAGNAN",
    "SAINT-MARTIN",
)
# (department in the NIR, postcode, town): the department is the birth place, the town the home
_PLACES = (
    ("01", "01000", "BOURG EN BRESSE"),
    ("06", "06000", "NICE"),
    ("13", "13001", "MARSEILLE"),
    ("24", "24000", "PERIGUEUX"),
    ("2A", "20000", "AJACCIO"),
    ("2B", "20200", "BASTIA"),
    ("31", "31000", "TOULOUSE"),
    ("33", "33000", "BORDEAUX"),
    ("35", "35000", "RENNES"),
    ("40", "40000", "MONT DE MARSAN"),
    ("47", "47000", "AGEN"),
    ("59", "59000", "LILLE"),
    ("64", "64000", "PAU"),
    ("64", "64100", "BAYONNE"),
    ("69", "69003", "LYON"),
    ("75", "75011", "PARIS"),
    ("78", "78000", "VERSAILLES"),
    ("83", "83000", "TOULON"),
    ("84", "84000", "AVIGNON"),
    ("971", "97110", "POINTE A PITRE"),
    ("974", "97400", "SAINT DENIS"),
)
_STREETS = (
    "RUE DES LILAS",
    "AVENUE JEAN JAURES",
    "CHEMIN DES VIGNES",
    "PLACE DE LA MAIRIE",
    "RUE DU MOULIN",
    "ROUTE DE BAYONNE",
    "IMPASSE DES PEUPLIERS",
    "BOULEVARD GAMBETTA",
    "RUE VICTOR HUGO",
    "ALLEE DES CHENES",
    "RUE DE LA REPUBLIQUE",
    "LIEU DIT LE BOURG",
)
_COMPANY_FORMS = ("EARL", "GAEC", "SCEA", "SARL", "SAS")
_COMPANY_NAMES = (
    "DU MOULIN",
    "DES TROIS CHENES",
    "DE LA VALLEE",
    "DU COTEAU",
    "DES GRANDS CHAMPS",
    "DU PIGNADA",
    "DE L ADOUR",
    "DES VIGNES HAUTES",
    "DU BOIS JOLI",
    "DE LA FONTAINE",
)
_PROFILES = ("particulier_vitale", "particulier_paiement", "exploitant", "employeur_jardinier")


class DemoSummary(msgspec.Struct, frozen=True, kw_only=True):
    """What ``guichet registry demo`` wrote."""

    seed: int
    persons: int
    companies: int
    payments: int
    fixed: tuple[DemoPerson, ...]

    def describe(self) -> str:
        lines = [
            f"Demo registry (seed {self.seed}): {self.persons} persons, {self.companies} companies, "
            f"{self.payments} payments, including these fixed demo holders (docs/registry.md):"
        ]
        for person in self.fixed:
            who = f"{person.first_name} {person.last_name}".strip()
            what = "carte Vitale" if person.question == "vitale" else "payment amount"
            lines.append(
                f"  {person.status:<20} {person.identifier_kind.upper()} {person.identifier}  "
                f"{who} — {what}: {person.answer}"
            )
        return "\n".join(lines)


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text)
    return "".join(c for c in folded if c.isascii() and (c.isalnum() or c in " -'")).upper()


def _email_local(first: str, last: str) -> str:
    return re.sub(r"[^a-z0-9]+", ".", f"{_ascii(first)}.{_ascii(last)}".lower()).strip(".")


def _random_nir(rng: random.Random, sex: int, birth: dt.date, department: str) -> str:
    place = (
        f"{department}{rng.randrange(1, 100):02d}"
        if len(department) == 3
        else f"{department}{rng.randrange(1, 1000):03d}"
    )
    return f"{sex}{birth.year % 100:02d}{birth.month:02d}{place}{rng.randrange(1, 1000):03d}"


def _random_siret(rng: random.Random) -> str:
    siren = str(rng.randrange(30_000_000, 99_999_999))
    siren += luhn.calc_check_digit(siren)
    body = siren + f"{rng.randrange(1, 100):04d}"
    return body + luhn.calc_check_digit(body)


def _money(rng: random.Random, low: int, high: int) -> Decimal:
    return Decimal(rng.randrange(low * 100, high * 100)) / 100


def _random_payments(rng: random.Random, profile: str) -> list[tuple[str, int, Decimal]]:
    """(kind, days ago, amount): some inside the question's window, some older."""
    if profile == "particulier_paiement":
        monthly = _money(rng, 80, 1400)
        return [("benefit", 15 + 30 * i, monthly) for i in range(rng.randrange(1, 9))]
    if profile == "particulier_vitale":
        return [("benefit", rng.randrange(10, 500), _money(rng, 20, 300)) for _ in range(rng.randrange(0, 3))]
    if profile == "exploitant":
        return [("contributions_invoice", 40 + 91 * i, _money(rng, 300, 6000)) for i in range(rng.randrange(1, 6))]
    return [("salary_contributions", 25 + 91 * i, _money(rng, 40, 900)) for i in range(rng.randrange(1, 6))]


def demo_rows(*, count: int, seed: int, today: dt.date) -> tuple[list[PersonRow], list[CompanyRow], list[PaymentRow]]:
    """The demo registry's rows: the fixed holders, then ``count`` random persons and count/10 companies."""
    rng = random.Random(seed)
    persons: dict[str, PersonRow] = {}
    companies: dict[str, CompanyRow] = {}
    payments: list[PaymentRow] = []
    for fixed in DEMO_PERSONS.values():
        mobile = parse_mobile(fixed.mobile)
        if fixed.identifier_kind == "nir":
            assert fixed.birth_date is not None
            persons[fixed.identifier] = PersonRow(
                nir=fixed.identifier,
                last_name=fixed.last_name,
                first_name=fixed.first_name,
                birth_date=fixed.birth_date,
                address=fixed.address,
                email=fixed.email,
                mobile=mobile,
                vitale_serial=fixed.vitale_serial,
                health_affiliated=fixed.health_affiliated,
            )
        else:
            companies[fixed.identifier] = CompanyRow(
                siret=fixed.identifier, name=fixed.last_name, address=fixed.address, email=fixed.email, mobile=mobile
            )
        payments += [
            PaymentRow(
                identifier_kind=fixed.identifier_kind,
                identifier=fixed.identifier,
                kind=p.kind,
                paid_on=p.date(today),
                amount=p.amount,
            )
            for p in fixed.payments
        ]

    wanted_persons = len(persons) + count
    wanted_companies = len(companies) + count // 10
    while len(persons) < wanted_persons:
        profile = rng.choice(_PROFILES)
        sex = rng.choice((1, 2))
        first, last = rng.choice(_FIRST_NAMES[sex]), rng.choice(_LAST_NAMES)
        birth = dt.date(1940, 1, 1) + dt.timedelta(days=rng.randrange(0, 65 * 365))
        department, postcode, town = rng.choice(_PLACES)
        nir = _random_nir(rng, sex, birth, department)
        number = rng.randrange(1, 120)
        address = [f"{number} {rng.choice(_STREETS)}", f"{postcode} {town}"]
        if rng.random() < 0.2:
            address.insert(0, f"RESIDENCE LES PINS BAT {rng.choice('ABCD')}")
        if nir in persons:
            continue
        has_vitale = profile == "particulier_vitale"
        persons[nir] = PersonRow(
            nir=nir,
            last_name=last,
            first_name=first,
            birth_date=birth,
            address=tuple(address),
            email=f"{_email_local(first, last)}.{len(persons)}@demo.invalid" if rng.random() < 0.9 else None,
            mobile=f"+33600{rng.randrange(0, 10**6):06d}" if rng.random() < 0.8 else None,
            vitale_serial=str(rng.randrange(10**9, 10**10)) if has_vitale else None,
            # some are affiliated for health without a card on file: they get the payment question
            health_affiliated=has_vitale or rng.random() < 0.3,
        )
        payments += [
            PaymentRow(
                identifier_kind="nir", identifier=nir, kind=kind, paid_on=today - dt.timedelta(days=days), amount=amount
            )
            for kind, days, amount in _random_payments(rng, profile)
        ]

    while len(companies) < wanted_companies:
        siret = _random_siret(rng)
        if siret in companies:
            continue
        name = f"{rng.choice(_COMPANY_FORMS)} {rng.choice(_COMPANY_NAMES)}"
        _department, postcode, town = rng.choice(_PLACES)
        companies[siret] = CompanyRow(
            siret=siret,
            name=name,
            address=(f"{rng.randrange(1, 90)} {rng.choice(_STREETS)}", f"{postcode} {town}"),
            email=f"{_email_local(name, str(len(companies)))}@demo.invalid",
            mobile=f"+33600{rng.randrange(0, 10**6):06d}" if rng.random() < 0.5 else None,
        )
        monthly = _money(rng, 400, 20000)
        payments += [
            PaymentRow(
                identifier_kind="siret",
                identifier=siret,
                kind="salary_contributions",
                paid_on=today - dt.timedelta(days=20 + 30 * i),
                amount=monthly + i,
            )
            for i in range(rng.randrange(2, 14))
        ]
    return list(persons.values()), list(companies.values()), payments


async def generate_demo_registry(
    database: Database, *, count: int, seed: int, today: dt.date | None = None
) -> DemoSummary:
    """Write fictitious persons, companies and payments, plus :data:`DEMO_PERSONS`.

    The same seed gives the same people: running it again updates them (upsert) and replaces their
    payments, whose dates are relative to ``today`` (the caisse's today by default).
    """
    if count < 0:
        raise ValueError("count must be 0 or more")
    persons, companies, payments = demo_rows(count=count, seed=seed, today=today or Clock().today())
    await create_tables(database)
    async with database.transaction():
        sql = _Sql(database)
        await _upsert_persons(sql, persons)
        await _upsert_companies(sql, companies)
        await _drop_payments(sql, {(p.identifier_kind, p.identifier) for p in payments})
        await _insert_payments(sql, payments)
    return DemoSummary(
        seed=seed,
        persons=len(persons),
        companies=len(companies),
        payments=len(payments),
        fixed=tuple(DEMO_PERSONS.values()),
    )
