"""The database (schema, transactions, integrity errors) on both engines, and the `guichet` command."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from guichet.cli import main
from guichet.core.database import INTEGRITY_ERRORS, MIGRATIONS, Database
from guichet.core.tables import ALL_TABLES
from guichet.plugins.registry_tables.importer import DEMO_PERSONS
from guichet.plugins.registry_tables.tables import create_tables as create_registry_tables
from guichet.plugins.registry_tables.tables import tables_of as registry_tables_of

ROOT = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 3, 15, 9, 0, tzinfo=dt.UTC)
SECRET_ENV = ("GUICHET_SECRET_KEY", "GUICHET_SMTP_PASSWORD", "GUICHET_SMS_TOKEN", "GUICHET_DB_PASSWORD")


# --- schema and transactions -----------------------------------------------------------------------------


async def test_upgrade_creates_every_table_once_and_records_the_version(database: Database) -> None:
    for table in database.t.all:
        assert await table.table_exists().run(), table._meta.tablename
    assert {t._meta.tablename for t in database.t.all} == {t._meta.tablename for t in ALL_TABLES}
    latest = MIGRATIONS[-1][0]
    assert await database.schema_version() == latest
    assert await database.upgrade() == []  # idempotent: nothing left to apply
    rows = await database.t.SchemaVersion.select().run()
    assert sorted(row["version"] for row in rows) == [number for number, _ in MIGRATIONS]


async def test_upgrade_of_an_empty_sqlite_file(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'sub' / 'fresh.sqlite'}")  # the folder is created too
    try:
        assert await db.schema_version() == 0
        assert await db.upgrade() == [number for number, _ in MIGRATIONS]
        assert await db.upgrade() == []
        assert await db.ping()
    finally:
        await db.close()


def person(nir: str = "1850578006084", name: str = "LEFEBVRE") -> dict[str, object]:
    return dict(nir=nir, last_name=name, first_name="Julien", birth_date=dt.date(1985, 5, 14), address="A\nB")


async def test_transaction_rolls_back_on_an_exception(database: Database) -> None:
    await create_registry_tables(database)
    t = registry_tables_of(database).RegistryPerson
    with pytest.raises(RuntimeError, match="stop"):
        async with database.transaction():
            await t.insert(t(**person())).run()
            assert await t.count() == 1  # visible inside the transaction
            raise RuntimeError("stop")
    assert await t.count() == 0
    async with database.transaction():
        await t.insert(t(**person())).run()
    assert await t.count() == 1


async def test_a_connection_given_back_costs_no_reset_round_trip_and_keeps_no_open_transaction(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: a statement outside a transaction is one round trip, not two (asyncpg's default
    reset query after each); a transaction left open on a connection is still rolled back."""
    if database.is_sqlite:
        pytest.skip("PostgreSQL's connection pool only")
    from asyncpg.connection import Connection

    sent: list[str] = []
    original = Connection.execute

    async def execute(self: Connection, query: str, *args: object, **kwargs: object) -> str:
        sent.append(query)
        return await original(self, query, *args, **kwargs)

    monkeypatch.setattr(Connection, "execute", execute)
    t = database.t.Session
    await t.count().run()
    await t.count().run()
    assert not [q for q in sent if "RESET ALL" in q], sent
    pool = database.engine.pool  # type: ignore[attr-defined]
    async with pool.acquire() as connection:  # a caller that forgot its transaction open
        await original(connection, "BEGIN")
        await original(
            connection, "INSERT INTO guichet_session (key, data, expires_at) VALUES ('left-open', '', now())"
        )
    assert await t.count().where(t.key == "left-open").run() == 0
    async with pool.acquire() as connection:
        assert not connection.is_in_transaction()


async def test_unique_violation_is_caught_through_integrity_errors(database: Database) -> None:
    await create_registry_tables(database)
    t = registry_tables_of(database).RegistryPerson
    await t.insert(t(**person())).run()
    with pytest.raises(INTEGRITY_ERRORS):
        await t.insert(t(**person(name="OTHER"))).run()
    with pytest.raises(INTEGRITY_ERRORS):  # inside a transaction too, which then rolls back as a whole
        async with database.transaction():
            await t.insert(t(**person("2920633123045"))).run()
            await t.insert(t(**person())).run()
    rows = await t.select(t.nir, t.last_name).run()
    assert rows == [{"nir": "1850578006084", "last_name": "LEFEBVRE"}]


# --- the command line ----------------------------------------------------------------------------------


def write_config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "caisse.toml"
    path.write_text(
        f"""
[caisse]
id = "cli-test"
name = "MSA Test"

[plugins]
enabled = ["statuses_msa", "registry_tables"]

[security]
secret_key = {{ value = "cli-test-secret-0123456789abcdef0123" }}

[sessions]
secure_cookies = false

[server]
mode = "demo"

[database]
url = "{url}"
""",
        encoding="utf-8",
    )
    return path


def test_cli_db_upgrade(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, db_url)
    assert main(["db", "upgrade", "--config", str(config)]) == 0
    first = capsys.readouterr().out
    assert f"schema at version {MIGRATIONS[-1][0]}" in first
    assert main(["db", "upgrade", "--config", str(config)]) == 0
    assert "(up to date)" in capsys.readouterr().out


def test_installed_guichet_script_upgrades_a_database(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("guichet")
    if not script.exists():
        pytest.skip("the guichet script is not installed in this environment (pip install -e .)")
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'script.sqlite'}")
    done = subprocess.run(
        [str(script), "db", "upgrade", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "schema at version" in done.stdout
    assert (tmp_path / "script.sqlite").exists()


def test_cli_registry_import_and_demo(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(write_config(tmp_path, db_url))
    persons = tmp_path / "persons.csv"
    persons.write_text(
        "nir,last_name,first_name,birth_date,address_line1,address_line2\n"
        "1010101010101,DURAND,Anne,1990-01-01,1 RUE A,75001 PARIS\n"
        "185057800608400,BAD,Key,1985-05-14,1 RUE A,75001 PARIS\n",
        encoding="utf-8",
    )
    payments = tmp_path / "payments.csv"
    payments.write_text("identifier,kind,date,amount\n1010101010101,benefit,2025-01-02,12\n", encoding="utf-8")
    assert main(["registry", "import", str(persons), str(payments), "--dry-run", "--config", config]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("Nothing would be imported") and "persons.csv line 3: nir:" in captured.out
    # not a terminal: plain progress lines on stderr, one when each file ends
    assert "persons.csv: 2 rows read, 100 %" in captured.err and "payments.csv: 1 rows read, 100 %" in captured.err
    [report] = tmp_path.glob("registry-import-*.txt")  # beside the files, listing every bad row
    assert report.read_text().startswith("persons.csv line 3: nir:")
    report.unlink()
    assert main(["registry", "import", str(persons), str(payments), "--config", config]) == 1
    out = capsys.readouterr().out
    assert out.startswith("Nothing imported") and "persons.csv line 3: nir:" in out
    assert main(["registry", "import", str(persons), str(payments), "--partial", "--config", config]) == 1
    assert "persons.csv: 1 row(s) imported, 1 bad row(s) skipped" in capsys.readouterr().out
    persons.write_text("\n".join(persons.read_text().splitlines()[:2]) + "\n", encoding="utf-8")
    assert main(["registry", "import", str(persons), str(payments), "--config", config]) == 0
    assert "payments.csv: 1 row(s) imported" in capsys.readouterr().out
    assert main(["registry", "demo", "--count", "5", "--seed", "2", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "9 persons, 1 companies" in out  # 5 random persons and the 4 fixed ones, the fixed company
    assert all(holder.identifier in out for holder in DEMO_PERSONS.values())


async def test_migration_4_adds_the_third_party_request_columns(database: Database) -> None:
    table = database.t.ThirdPartyRequest._meta.tablename
    for column in ("address", "account_id"):
        await database.engine.run_ddl(f"ALTER TABLE {table} DROP COLUMN {column}")
    v = database.t.SchemaVersion
    await v.delete().where(v.version >= 4).run()
    assert await database.upgrade() == [n for n, _ in MIGRATIONS if n >= 4]  # and what came after it
    t = database.t.ThirdPartyRequest
    await t.insert(
        t(
            structure_kind="tiers_paiement",
            structure_name="P",
            siret="84216730600021",
            contact_name="A",
            email="a@b.fr",
            created_at=NOW,
        )
    ).run()
    [row] = await t.select(t.address, t.account_id).run()
    assert row == {"address": "", "account_id": None}
    assert await database.upgrade() == []


def test_cli_requests(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    from guichet.core.third_party import create_request

    path = write_config(tmp_path, db_url)
    # deciding queues a letter and an email: the caisse needs its postal and email channels
    path.write_text(
        path.read_text().replace(
            'enabled = ["statuses_msa", "registry_tables"]',
            'enabled = ["statuses_msa", "registry_tables", "delivery_email", '
            '"delivery_postal", "delivery_sms", "identity_vitale", "identity_payment"]',
        )
        + '\n[plugins.settings.delivery_email]\nhost = "127.0.0.1"\nport = 2525\nsecurity = "none"\n'
        'sender = "MSA Test <ne-pas-repondre@test.invalid>"\n'
        '[plugins.settings.delivery_sms]\nurl = "http://127.0.0.1:9/sms"\n'
        f'[plugins.settings.delivery_postal]\nspool_dir = "{tmp_path / "spool"}"\n'
    )
    config = str(path)
    assert main(["db", "upgrade", "--config", config]) == 0

    async def add() -> int:
        db = Database(db_url)
        await db.connect()
        try:
            if not db.is_sqlite:  # the session's PostgreSQL database is shared: start from an empty table
                await db.engine.run_ddl("TRUNCATE guichet_third_party_request RESTART IDENTITY")
            return await create_request(
                db,
                structure_kind="tiers_paiement",
                structure_name="Pharmacie du Port",
                siret="84216730600021",
                contact_name="Anne Durand",
                email="anne@pharmacie.example",
                phone="",
                now=NOW,
                address=("2 quai du Port", "64100 BAYONNE"),
            )
        finally:
            await db.close()

    number = asyncio.run(add())
    capsys.readouterr()
    assert main(["requests", "list", "--state", "pending", "--config", config]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["#", "State", "Created"]
    assert f"{number}  pending" in out and "Pharmacie du Port" in out and "84216730600021" in out
    assert "2 quai du Port / 64100 BAYONNE" in out
    assert main(["requests", "list", "--json", "--config", config]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["id"] == number and row["state"] == "pending" and row["siret"] == "84216730600021"
    assert main(["requests", "approve", "--config", config]) == 2  # no number
    assert main(["requests", "approve", str(number), "--note", "RIB reçu", "--config", config]) == 0
    out = capsys.readouterr().out
    assert f"request {number} approved" in out and "identifier 84216730600021" in out
    assert main(["requests", "reject", str(number), "--config", config]) == 2  # the reason is required
    assert main(["requests", "reject", str(number), "--note", "non", "--config", config]) == 1
    assert "is not pending" in capsys.readouterr().err
    assert main(["requests", "list", "--state", "pending", "--config", config]) == 0
    assert capsys.readouterr().out.strip() == "no request"


def test_cli_plugins_lists_every_enabled_plugin_with_its_hooks(capsys: pytest.CaptureFixture[str]) -> None:
    from guichet.core.config import load_config
    from guichet.core.hookspecs import HOOK_API_VERSION
    from guichet.core.plugins import load_plugins

    assert main(["plugins", "--config", str(ROOT / "config/demo.toml")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == f"guichet hook API {HOOK_API_VERSION}"
    assert table[1].split() == ["Plugin", "Source", "Module", "Hooks"]
    assert main(["plugins", "--json", "--config", str(ROOT / "config/demo.toml")]) == 0
    listed = json.loads(capsys.readouterr().out)
    config = load_config(ROOT / "config/demo.toml")
    _pm, infos = load_plugins(config)
    # the enabled plugins in config order, then the web layer's own (metrics)
    assert [row["name"] for row in listed] == [*config.plugins.enabled, "metrics"]
    assert [info.name for info in infos] == config.plugins.enabled
    for row, info in zip(listed, infos):
        assert row == {"name": info.name, "source": "builtin", "module": info.module, "hooks": ", ".join(info.hooks)}
        assert info.hooks and any(line.split()[:3] == [info.name, "builtin", info.module] for line in table)
    # what each built-in plugin of the demo is for, checked against the listing itself
    hooks = {row["name"]: row["hooks"].split(", ") for row in listed}
    assert "guichet_statuses" in hooks["statuses_msa"] and "guichet_registry_lookup" in hooks["registry_tables"]
    assert "guichet_commands" in hooks["registry_tables"]
    assert "guichet_identity_check" in hooks["identity_vitale"] and "guichet_password_rules" in hooks["password_msa"]


def test_cli_config_check_flags_the_sud_aquitaine_recovery_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in SECRET_ENV:
        monkeypatch.delenv(name, raising=False)
    assert main(["config", "check", str(ROOT / "config/sud-aquitaine.toml")]) == 1  # the secrets are not here
    out = capsys.readouterr().out
    assert "codes.recovery.length = 4 digits" in out and "codes.recovery.lifetime_minutes = 30" in out
    assert "- codes.recovery.length: 4 digits (about 13 bits) — at least 6 digits" in out
    assert "- codes.recovery.lifetime_minutes: 30 minutes — at most 10 minutes" in out
    assert "compensating controls: At most 3 tries per code and 10 failures per account per 24 h" in out


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nonsense"],
        ["db"],
        ["registry"],
        ["registry", "demo", "--count", "many"],
        ["requests", "burn"],
        ["outbox", "retry", "x"],
        ["audit", "tail", "-n", "0"],
        ["plugins", "--nonsense"],
    ],
)
def test_bad_usage_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    said = capsys.readouterr()
    assert "Usage: guichet" in said.err + said.out  # a command group named alone shows its help


def test_a_bad_config_exits_2_with_the_file_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[caisse]\nid = "xx"\nname = "MSA X"\ncolour = "red"\n[security]\nsecret_key = { value = "s" }\n',
        encoding="utf-8",
    )
    assert main(["plugins", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"guichet: configuration error: {bad}: $.caisse.colour: Expected `str` matching regex" in err
    assert main(["config", "check", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read the file" in capsys.readouterr().err


async def test_migration_3_brings_a_database_made_before_it_up_to_date(database: Database) -> None:
    """A version-2 database: no prev_at_ms column, no one-live-code index, and several live codes
    left on one binding by parallel resends. Migration 3 keeps the newest and adds both."""
    from guichet.core.ratelimit import DatabaseCounters

    counters, codes = database.t.RateCounter._meta.tablename, database.t.OneTimeCode._meta.tablename
    await database.engine.run_ddl(f"DROP INDEX {codes}_one_live")
    await database.engine.run_ddl(f"ALTER TABLE {counters} DROP COLUMN prev_at_ms")
    v = database.t.SchemaVersion
    await v.delete().where(v.version >= 3).run()  # and what came after it, which runs again as it must
    t = database.t.OneTimeCode
    for binding, used in (("b1", None), ("b1", None), ("b1", NOW), ("b1", None), ("b2", None)):
        await t.insert(
            t(
                purpose="login",
                binding=binding,
                code_hmac="x" * 64,
                channel="email",
                created_at=NOW,
                expires_at=NOW,
                used_at=used,
            )
        ).run()
    await database.t.RateCounter.raw(
        f"INSERT INTO {counters} (key, hits, window_start_ms, last_at_ms, window_ms) VALUES ('k', 4, 0, 1000, 86400000)"
    ).run()
    assert await database.upgrade() == [n for n, _ in MIGRATIONS if n >= 3]
    live = await t.select(t.id, t.binding).where(t.used_at.is_null() & t.superseded_at.is_null()).order_by(t.id).run()
    assert [(row["id"], row["binding"]) for row in live] == [(4, "b1"), (5, "b2")], "the newest live code stays"
    with pytest.raises(INTEGRITY_ERRORS):
        await t.insert(
            t(purpose="login", binding="b2", code_hmac="y" * 64, channel="email", created_at=NOW, expires_at=NOW)
        ).run()
    count = (await DatabaseCounters(database).update({"k": 86_400_000}, 2000))["k"]
    assert (count.count, count.previous_at_ms) == (5, 1000)
    assert await database.upgrade() == []


def test_closing_never_waits_forever_for_a_connection_left_held() -> None:
    """A connection taken from the PostgreSQL pool and never given back (a task caught by a
    database restart) does not hang the close: it is cut after ``close_timeout``."""
    import asyncio
    import time

    from tests.conftest import postgres_url

    url = postgres_url()

    async def run() -> None:
        database = Database(url)
        await database.connect()
        database.close_timeout = 0.5
        held = await database.engine.pool.acquire()  # type: ignore[attr-defined]
        started = time.monotonic()
        await asyncio.wait_for(database.close(), timeout=10)
        waited = time.monotonic() - started
        assert 0.4 < waited < 5, waited  # the held connection was waited for, then cut
        assert database.engine.pool is None  # type: ignore[attr-defined]
        assert held._con is None  # terminated: no longer a live connection

    asyncio.run(run())
