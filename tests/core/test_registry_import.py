"""CSV import of the registry and the demo registry, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from guichet.core.clock import FrozenClock
from guichet.core.context import PluginContext
from guichet.core.database import Database
from guichet.core.identifiers import nir_key, parse_mobile, parse_nir, parse_siret
from guichet.core.plugins import PluginHost
from guichet.core.structs import Verdict
from guichet.plugins.registry_tables.importer import DEMO_PERSONS, demo_rows, generate_demo_registry, import_registry
from guichet.plugins.registry_tables.tables import create_tables as create_registry_tables
from guichet.plugins.registry_tables.tables import tables_of as registry_tables_of

TODAY = dt.date(2026, 3, 15)
NIR_A = "1850578006084"
NIR_B = "2920633123045"
SIRET = "84216730600021"

PERSONS = f"""nir,last_name,first_name,birth_date,address_line1,address_line2,address_line3,email,mobile,vitale_serial,health_affiliated
{NIR_A},LEFEBVRE,Julien,1985-05-14,12 RUE DES TILLEULS,78000 VERSAILLES,,julien@exemple.fr,06 12 34 56 78,2345678901,oui
{NIR_B}{nir_key(NIR_B)},MOREAU,Sophie,21/06/1992,APPARTEMENT 12,"4 COURS DE L INTENDANCE",33000 BORDEAUX,,,,no
"""
COMPANIES = f"""\ufeffsiret;name;address_line1;address_line2;email
{SIRET};SCEA DU DOMAINE DES PINS;ROUTE DE CAZAUX;40160 PARENTIS EN BORN;contact@pins.example
"""
PAYMENTS = f"""identifier;kind;date;amount
{NIR_A};benefit;2026-02-01;98.40
{NIR_B};benefit;01/03/2026;1 234,50
{SIRET};salary_contributions;2025-12-31;3412.15
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(dt.datetime(2026, 3, 15, 10, 0, tzinfo=dt.UTC))


@pytest.fixture
def host(make_config, database: Database, clock: FrozenClock) -> PluginHost:
    config = make_config()
    return PluginHost(config, PluginContext(config=config, database=database, clock=clock))


async def counts(database: Database) -> tuple[int, int, int]:
    await create_registry_tables(database)
    t = registry_tables_of(database)
    return (await t.RegistryPerson.count(), await t.RegistryCompany.count(), await t.RegistryPayment.count())


async def test_good_files_import_and_the_registry_plugin_finds_them(
    tmp_path: Path, database: Database, host: PluginHost
) -> None:
    report = await import_registry(
        database,
        persons=write(tmp_path, "persons.csv", PERSONS),
        payments=write(tmp_path, "payments.csv", PAYMENTS),
        companies=write(tmp_path, "companies.csv", COMPANIES),
        partial=False,
        today=TODAY,
    )
    assert report.ok, report.describe()
    assert report.imported == {"persons.csv": 2, "companies.csv": 1, "payments.csv": 3}
    assert "persons.csv: 2 row(s) imported" in report.describe()
    assert await counts(database) == (2, 1, 3)

    julien = await host.registry_lookup("nir", NIR_A)
    assert julien is not None
    assert (julien.last_name, julien.first_name, julien.birth_date) == ("LEFEBVRE", "Julien", dt.date(1985, 5, 14))
    assert julien.address is not None and julien.address.lines == ("12 RUE DES TILLEULS", "78000 VERSAILLES")
    assert (julien.email, julien.mobile) == ("julien@exemple.fr", "+33612345678")
    assert (julien.vitale_serial, julien.health_affiliated) == ("2345678901", True)
    assert [(p.kind, p.date, p.amount) for p in julien.payments] == [("benefit", dt.date(2026, 2, 1), Decimal("98.40"))]

    sophie = await host.registry_lookup("nir", NIR_B)  # imported from the 15-character NIR
    assert sophie is not None and sophie.birth_date == dt.date(1992, 6, 21)
    assert sophie.address is not None and len(sophie.address.lines) == 3
    assert (sophie.vitale_serial, sophie.health_affiliated, sophie.email) == (None, False, None)
    assert [p.amount for p in sophie.payments] == [Decimal("1234.50")]

    company = await host.registry_lookup("siret", SIRET)
    assert company is not None and company.last_name == "SCEA DU DOMAINE DES PINS"
    assert [(p.kind, p.amount) for p in company.payments] == [("salary_contributions", Decimal("3412.15"))]
    assert await host.registry_lookup("nir", "1010101010101") is None


async def test_reimport_updates_persons_and_replaces_payments_per_identifier(
    tmp_path: Path, database: Database, host: PluginHost
) -> None:
    first = await import_registry(
        database,
        persons=write(tmp_path, "persons.csv", PERSONS),
        payments=write(tmp_path, "payments.csv", PAYMENTS),
        companies=None,
        partial=False,
        today=TODAY,
    )
    assert not first.ok  # the SIRET payment has no company: nothing imported
    assert "payments.csv line 4: identifier: no person or company" in first.describe()
    assert await counts(database) == (0, 0, 0)

    payments = "\n".join(PAYMENTS.splitlines()[:3]) + "\n"
    assert (
        await import_registry(
            database,
            persons=write(tmp_path, "persons.csv", PERSONS),
            payments=write(tmp_path, "payments.csv", payments),
            companies=None,
            partial=False,
            today=TODAY,
        )
    ).ok
    moved = PERSONS.replace("12 RUE DES TILLEULS", "3 PLACE DU MARCHE").replace("Julien", "Julien-Marie")
    new_payments = f"identifier,kind,date,amount\n{NIR_A},benefit,2026-03-01,10\n{NIR_A},benefit,2026-03-02,11\n"
    report = await import_registry(
        database,
        persons=write(tmp_path, "persons.csv", moved),
        payments=write(tmp_path, "payments.csv", new_payments),
        companies=None,
        partial=False,
        today=TODAY,
    )
    assert report.ok, report.describe()
    assert await counts(database) == (2, 0, 3)  # upserted, not duplicated
    julien = await host.registry_lookup("nir", NIR_A)
    assert julien is not None and julien.first_name == "Julien-Marie"
    assert julien.address is not None and julien.address.lines[0] == "3 PLACE DU MARCHE"
    assert sorted(p.amount for p in julien.payments) == [Decimal("10"), Decimal("11")]
    sophie = await host.registry_lookup("nir", NIR_B)  # not in the new payments file: untouched
    assert sophie is not None and [p.amount for p in sophie.payments] == [Decimal("1234.50")]


BAD_PERSONS = f"""nir,last_name,first_name,birth_date,address_line1,address_line2,email,mobile,health_affiliated
{NIR_A},LEFEBVRE,Julien,1985-05-14,12 RUE DES TILLEULS,78000 VERSAILLES,,,
{NIR_A[:13]}00,BAD,Key,1985-05-14,1 RUE A,75001 PARIS,,,
18505780060841,FOURTEEN,Digits,1985-05-14,1 RUE A,75001 PARIS,,,
１850578006084,FULL,Width,1985-05-14,1 RUE A,75001 PARIS,,,
3850578006084,SEX,Three,1985-05-14,1 RUE A,75001 PARIS,,,
1851378006084,MONTH,Thirteen,1985-05-14,1 RUE A,75001 PARIS,,,
2750413055078,BAD,Date,31/02/1975,1 RUE A,75001 PARIS,,,
1680764445012,FUTURE,Birth,2030-01-01,1 RUE A,75001 PARIS,,,
2920633123045,ONE,Line,1992-06-21,75001 PARIS,,,,
1010101010101,LONG,Line,1990-01-01,{"X" * 39},75001 PARIS,,,
1020202020202,BAD,Contacts,1990-02-01,1 RUE A,75001 PARIS,not-an-email,01 23 45 67 89,maybe
{NIR_A},AGAIN,Julien,1985-05-14,1 RUE A,75001 PARIS,,,
"""
BAD_PAYMENTS = f"""identifier,kind,date,amount
{NIR_A},benefit,2026-01-01,12.5
{NIR_A},benefit,2026-01-01,12.505
{NIR_A},benefit,2026-01-01,-12.50
{NIR_A},refund,2026-01-01,12.50
{NIR_A},benefit,2026-01-01,１２
{NIR_A},benefit,2026-01-01,1e3
{NIR_A},benefit,2026-01-01,NaN
{NIR_A},benefit,2026-01-01,{"9" * 40}
{NIR_A},benefit,2026-13-01,12
{NIR_A},benefit,2027-01-01,12
{NIR_A},benefit,2026-01-01,0
2750413055078,benefit,2026-01-01,12
1030303030303,benefit,2026-01-01,12
"""


async def test_bad_rows_import_nothing_and_every_bad_row_is_listed(tmp_path: Path, database: Database) -> None:
    report = await import_registry(
        database,
        persons=write(tmp_path, "persons.csv", BAD_PERSONS),
        payments=write(tmp_path, "payments.csv", BAD_PAYMENTS),
        companies=None,
        partial=False,
        today=TODAY,
    )
    assert not report.ok and not report.committed
    assert await counts(database) == (0, 0, 0)  # the good rows were not imported either
    text = report.describe()
    assert text.startswith("Nothing imported")
    expected = [
        "persons.csv line 3: nir: bad NIR key",
        "persons.csv line 4: nir: 14 characters, expected 13 (or 15 with the key)",
        "persons.csv line 5: nir: non-ASCII digits",
        "persons.csv line 6: nir: not a valid NIR (Le numéro de Sécurité Sociale doit commencer par 1 ou 2.)",
        "persons.csv line 7: nir: not a valid NIR (Le mois de naissance",
        "persons.csv line 8: birth_date: bad date '31/02/1975'",
        "persons.csv line 9: birth_date: '2030-01-01' is in the future",
        "persons.csv line 10: address: at least 2 lines",
        "persons.csv line 11: address_line1: 39 characters, at most 38",
        "persons.csv line 12: email: not a valid email address; mobile: not a French mobile number",
        "health_affiliated: 'maybe' is not yes/no",
        "persons.csv line 13: nir: already given on persons.csv line 2",
        "payments.csv line 3: amount: bad amount '12.505'",
        "payments.csv line 4: amount: negative amount '-12.50'",
        "payments.csv line 5: kind: unknown kind 'refund' (expected benefit, contributions_invoice, salary_contrib",
        "payments.csv line 6: amount: non-ASCII digits",
        "payments.csv line 7: amount: bad amount '1e3'",
        "payments.csv line 8: amount: bad amount 'NaN'",
        f"payments.csv line 9: amount: bad amount '{'9' * 40}'",
        "payments.csv line 10: date: bad date '2026-13-01'",
        "payments.csv line 11: date: '2027-01-01' is in the future",
        "payments.csv line 12: amount: the amount must be positive",
        "payments.csv line 13: identifier: its row (persons.csv line 8) is bad",
        "payments.csv line 14: identifier: no person or company with this identifier",
    ]
    for line in expected:
        assert line in text, f"{line!r} missing from:\n{text}"
    assert len(report.errors) == 11 + 12  # every bad row, once
    assert all(error.line != 2 for error in report.errors)  # the good first rows are not listed


async def test_partial_imports_the_good_rows(tmp_path: Path, database: Database, host: PluginHost) -> None:
    report = await import_registry(
        database,
        persons=write(tmp_path, "persons.csv", BAD_PERSONS),
        payments=write(tmp_path, "payments.csv", BAD_PAYMENTS),
        companies=None,
        partial=True,
        today=TODAY,
    )
    assert report.committed and not report.ok  # skipped rows still make the command exit 1
    assert report.imported == {"persons.csv": 1, "payments.csv": 1}
    assert "persons.csv: 1 row(s) imported, 11 bad row(s) skipped" in report.describe()
    assert await counts(database) == (1, 0, 1)
    julien = await host.registry_lookup("nir", NIR_A)
    assert julien is not None and julien.last_name == "LEFEBVRE"  # the duplicate row did not win
    assert [p.amount for p in julien.payments] == [Decimal("12.5")]


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (
            "nir,last_name,first_name,birth_date,address_line1,address_line2,colour",
            "persons.csv: unknown column(s): colour",
        ),
        (
            "nir,last_name,birth_date,address_line1",
            "persons.csv: missing required column(s): first_name, address_line2",
        ),
        ("nir,nir,last_name,first_name,birth_date,address_line1,address_line2", "column(s) given twice: nir"),
    ],
)
async def test_bad_header_names_the_columns(tmp_path: Path, database: Database, header: str, reason: str) -> None:
    persons = write(tmp_path, "persons.csv", header + "\n" + f"{NIR_A},A,B,1985-05-14,X,Y,Z\n")
    payments = write(tmp_path, "payments.csv", f"identifier,kind,date,amount\n{NIR_A},benefit,2026-01-01,1\n")
    report = await import_registry(
        database, persons=persons, payments=payments, companies=None, partial=False, today=TODAY
    )
    assert not report.ok
    assert reason in report.describe()
    assert await counts(database) == (0, 0, 0)


async def test_unreadable_files_are_reported(tmp_path: Path, database: Database) -> None:
    latin1 = tmp_path / "persons.csv"
    latin1.write_bytes(
        "nir,last_name,first_name,birth_date,address_line1,address_line2\n"
        f"{NIR_A},LEFÈVRE,Jean,1985-05-14,A,B\n".encode("latin-1")
    )
    report = await import_registry(
        database, persons=latin1, payments=tmp_path / "missing.csv", companies=None, partial=True, today=TODAY
    )
    text = report.describe()
    assert "persons.csv: not UTF-8 text" in text
    assert "missing.csv: cannot read the file" in text
    assert (
        (await import_registry(database, persons=None, payments=None, companies=None, partial=False))
        .describe()
        .startswith("Nothing imported")
    )


def test_demo_rows_are_valid_and_reproducible() -> None:
    persons, companies, payments = demo_rows(count=200, seed=7, today=TODAY)
    assert len(persons) == 200 + 4 and len(companies) == 20 + 1
    for person in persons:
        assert parse_nir(person.nir) == person.nir
        assert person.nir[0] in "12" and 1 <= int(person.nir[3:5]) <= 12
        assert person.nir[1:3] == f"{person.birth_date.year % 100:02d}"
        assert 2 <= len(person.address) <= 6 and all(len(line) <= 38 for line in person.address)
        assert person.mobile is None or parse_mobile(person.mobile) == person.mobile
        assert person.email is None or person.email.endswith("@demo.invalid")
    for company in companies:
        assert parse_siret(company.siret) == company.siret
    assert {p.kind for p in payments} == {"benefit", "contributions_invoice", "salary_contributions"}
    assert all(p.paid_on <= TODAY and p.amount > 0 for p in payments)
    assert any(p.vitale_serial and p.health_affiliated for p in persons)
    assert any(not p.vitale_serial for p in persons)
    assert demo_rows(count=200, seed=7, today=TODAY) == (persons, companies, payments)
    assert demo_rows(count=200, seed=8, today=TODAY)[0] != persons


async def test_demo_registry_is_idempotent_and_the_fixed_holders_can_answer(
    database: Database, host: PluginHost, clock: FrozenClock
) -> None:
    today = clock.today()
    first = await generate_demo_registry(database, count=30, seed=3, today=today)
    before = await counts(database)
    assert before == (first.persons, first.companies, first.payments) == (34, 4, first.payments)
    second = await generate_demo_registry(database, count=30, seed=3, today=today)
    assert await counts(database) == before and second.payments == first.payments
    assert "NIR 1850578006084" in second.describe()

    statuses = {s.code: s for s in host.statuses()}
    for holder in DEMO_PERSONS.values():
        record = await host.registry_lookup(holder.identifier_kind, holder.identifier)
        assert record is not None, holder.role
        assert record.last_name == holder.last_name and record.mobile == parse_mobile(holder.mobile)
        questions = {q.kind: q for q in host.identity_questions(statuses[holder.status], record)}
        assert holder.question in questions, holder.role
        question = questions[holder.question]
        assert host.identity_check(question, holder.answer, record) is Verdict.RIGHT, holder.role
        assert host.identity_check(question, "1,00", record) is Verdict.WRONG, holder.role
    sophie = DEMO_PERSONS["particulier_paiement"]
    record = await host.registry_lookup("nir", sophie.identifier)
    assert record is not None and "vitale" not in {
        q.kind for q in host.identity_questions(statuses["particulier"], record)
    }
    payment_question = host.identity_questions(statuses["particulier"], record)[0]
    assert host.identity_check(payment_question, "380,00", record) is Verdict.WRONG  # outside the 6 months
    assert DEMO_PERSONS["particulier_vitale"].nir_with_key == "185057800608491"


def many_persons(count: int, *, bad_every: int = 0) -> str:
    """``count`` valid persons (NIRs of the demo generator's shape); every ``bad_every``-th row gets
    a bad birth date, every other bad one a bad email too."""
    people, _companies, _payments = demo_rows(count=count, seed=7, today=TODAY)
    lines = ["nir,last_name,first_name,birth_date,address_line1,address_line2,email"]
    for n, p in enumerate(people[:count], start=1):
        birth, email = p.birth_date.isoformat(), f"p{n}@exemple.fr"
        if bad_every and n % bad_every == 0:
            birth = "31/02/1975"
            if n % (2 * bad_every) == 0:
                email = "pas-une-adresse"
        lines.append(f"{p.nir},{p.last_name},{p.first_name},{birth},{p.address[0]},{p.address[1]},{email}")
    return "\n".join(lines) + "\n"


async def test_a_dry_run_checks_everything_and_writes_nothing(tmp_path: Path, database: Database) -> None:
    persons = write(tmp_path, "persons.csv", PERSONS)
    payments = write(tmp_path, "payments.csv", PAYMENTS)
    report = await import_registry(
        database,
        persons=persons,
        payments=payments,
        companies=write(tmp_path, "companies.csv", COMPANIES),
        partial=False,
        today=TODAY,
        dry_run=True,
    )
    assert report.ok and not report.committed
    assert report.imported == {"persons.csv": 2, "companies.csv": 1, "payments.csv": 3}
    assert "persons.csv: 2 row(s) would be imported (dry run: nothing written)" in report.describe()
    assert await counts(database) == (0, 0, 0)
    bad = await import_registry(
        database,
        persons=write(tmp_path, "bad.csv", BAD_PERSONS),
        payments=None,
        companies=None,
        partial=False,
        today=TODAY,
        dry_run=True,
    )
    assert not bad.ok and bad.error_count == 11
    assert "Nothing would be imported: 11 problem(s) found" in bad.describe()
    assert await counts(database) == (0, 0, 0)


async def test_many_bad_rows_are_summed_up_by_cause_and_listed_in_full_in_the_report_file(
    tmp_path: Path, database: Database
) -> None:
    """A file of 3,000 rows with 300 bad ones: the summary counts them by cause with a few of each;
    the report file has every one; the partial import writes the 2,700 good rows."""
    persons = write(tmp_path, "persons.csv", many_persons(3000, bad_every=10))
    report_file = tmp_path / "report.txt"
    report = await import_registry(
        database, persons=persons, payments=None, companies=None, partial=True, today=TODAY, report_file=report_file
    )
    assert report.committed and report.error_count == 300 and report.imported == {"persons.csv": 2700}
    assert report.causes == {
        "persons.csv: birth_date: bad date '…'": 300,
        "persons.csv: email: not a valid email address": 150,
    }
    text = report.describe()
    assert "300 bad row(s), by cause:" in text and "      300  persons.csv: birth_date: bad date '…'" in text
    assert text.count("e.g. persons.csv line") == 6  # three of each cause, not 300 lines
    assert f"Every bad row: {report_file}" in text
    listed = report_file.read_text(encoding="utf-8").splitlines()
    assert len(listed) == 300 and listed[0].startswith("persons.csv line 11: birth_date: bad date '31/02/1975'")
    assert await counts(database) == (2700, 0, 0)


async def test_the_import_reports_its_progress_through_the_file(tmp_path: Path, database: Database) -> None:
    persons = write(tmp_path, "persons.csv", many_persons(5000))
    calls: list[tuple[str, int, int, int]] = []
    report = await import_registry(
        database,
        persons=persons,
        payments=None,
        companies=None,
        partial=False,
        today=TODAY,
        progress=lambda *call: calls.append(call),
    )
    assert report.ok
    size = persons.stat().st_size
    assert [c[1] for c in calls] == [2000, 4000, 5000]
    assert all(c[0] == "persons.csv" and c[3] == size for c in calls)
    assert calls[-1][2] == size and 0 < calls[0][2] < calls[1][2] < size


async def test_an_import_stopped_half_way_writes_nothing_and_the_next_one_runs(
    tmp_path: Path, database: Database
) -> None:
    """The temporary tables go with the rolled-back transaction: the same connection imports again."""
    persons = write(tmp_path, "persons.csv", many_persons(5000))

    def stop(*_call: object) -> None:
        raise RuntimeError("stopped by the operator")

    with pytest.raises(RuntimeError, match="stopped"):
        await import_registry(
            database, persons=persons, payments=None, companies=None, partial=False, today=TODAY, progress=stop
        )
    assert await counts(database) == (0, 0, 0)
    report = await import_registry(database, persons=persons, payments=None, companies=None, partial=False, today=TODAY)
    assert report.ok and report.imported == {"persons.csv": 5000}
    assert await counts(database) == (5000, 0, 0)


async def test_batches_see_each_other_duplicates_bad_rows_and_payments(
    tmp_path: Path, database: Database, host: PluginHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With two rows per batch, everything the import learns crosses batches: a duplicate of a row
    two batches back, the payments of a bad row, and the payments of one identifier spread over
    batches, which replace the older ones and keep each other."""
    from guichet.plugins.registry_tables import importer

    first = await import_registry(
        database,
        persons=write(tmp_path, "persons.csv", PERSONS),
        payments=write(tmp_path, "payments.csv", f"identifier,kind,date,amount\n{NIR_A},benefit,2025-01-01,1\n"),
        companies=None,
        partial=False,
        today=TODAY,
    )
    assert first.ok, first.describe()
    monkeypatch.setattr(importer, "IMPORT_BATCH", 2)
    persons = (
        "nir,last_name,first_name,birth_date,address_line1,address_line2\n"
        f"{NIR_A},LEFEBVRE,Julien,1985-05-14,12 RUE DES TILLEULS,78000 VERSAILLES\n"
        f"{NIR_B},MOREAU,Sophie,1992-06-21,4 COURS DE L INTENDANCE,33000 BORDEAUX\n"
        "2750413055078,ROUX,Isabelle,31/02/1975,27 AVENUE DU PRADO,13008 MARSEILLE\n"
        "1680764445012,LABORDE,Pierre,1968-07-03,CHEMIN DE LA SAUGUE,64400 OLORON\n"
        f"{NIR_A},LEFEBVRE,Julien,1985-05-14,12 RUE DES TILLEULS,78000 VERSAILLES\n"
    )
    payments = "identifier,kind,date,amount\n" + "".join(
        f"{nir},benefit,2026-02-{day:02d},{day}\n"
        for day, nir in enumerate([NIR_A, NIR_B, NIR_A, "2750413055078", NIR_A, "1680764445012"], 1)
    )
    report = await import_registry(
        database,
        persons=write(tmp_path, "persons.csv", persons),
        payments=write(tmp_path, "payments.csv", payments),
        companies=None,
        partial=True,
        today=TODAY,
    )
    assert report.imported == {"persons.csv": 3, "payments.csv": 5}
    assert [e.describe() for e in report.errors] == [
        "persons.csv line 4: birth_date: bad date '31/02/1975' (expected YYYY-MM-DD or DD/MM/YYYY)",
        "persons.csv line 6: nir: already given on persons.csv line 2",
        "payments.csv line 5: identifier: its row (persons.csv line 4) is bad, so its payments cannot be imported",
    ]
    julien = await host.registry_lookup("nir", NIR_A)
    assert julien is not None and sorted(p.amount for p in julien.payments) == [1, 3, 5]  # 2025's one replaced
    assert await counts(database) == (3, 0, 5)  # Julien and Sophie updated, Pierre added
