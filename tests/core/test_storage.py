"""The database (schema, transactions, integrity errors) on both engines, and the `guichet` command."""
from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from guichet.core.cli import main
from guichet.core.database import INTEGRITY_ERRORS, MIGRATIONS, Database
from guichet.core.registry_import import DEMO_PERSONS
from guichet.core.tables import ALL_TABLES

ROOT = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 3, 15, 9, 0, tzinfo=dt.timezone.utc)
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
    t = database.t.RegistryPerson
    with pytest.raises(RuntimeError, match="stop"):
        async with database.transaction():
            await t.insert(t(**person())).run()
            assert await t.count() == 1  # visible inside the transaction
            raise RuntimeError("stop")
    assert await t.count() == 0
    async with database.transaction():
        await t.insert(t(**person())).run()
    assert await t.count() == 1


async def test_unique_violation_is_caught_through_integrity_errors(database: Database) -> None:
    t = database.t.RegistryPerson
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
    path.write_text(f"""
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
""", encoding="utf-8")
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
    done = subprocess.run([str(script), "db", "upgrade", "--config", str(config)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "schema at version" in done.stdout
    assert (tmp_path / "script.sqlite").exists()


def test_cli_registry_import_and_demo(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(write_config(tmp_path, db_url))
    persons = tmp_path / "persons.csv"
    persons.write_text("nir,last_name,first_name,birth_date,address_line1,address_line2\n"
                       "1010101010101,DURAND,Anne,1990-01-01,1 RUE A,75001 PARIS\n"
                       "185057800608400,BAD,Key,1985-05-14,1 RUE A,75001 PARIS\n", encoding="utf-8")
    payments = tmp_path / "payments.csv"
    payments.write_text("identifier,kind,date,amount\n1010101010101,benefit,2025-01-02,12\n", encoding="utf-8")
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


def test_cli_requests(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    from guichet.core.third_party import create_request

    config = str(write_config(tmp_path, db_url))
    assert main(["db", "upgrade", "--config", config]) == 0

    async def add() -> int:
        db = Database(db_url)
        await db.connect()
        try:
            if not db.is_sqlite:  # the session's PostgreSQL database is shared: start from an empty table
                await db.engine.run_ddl("TRUNCATE guichet_third_party_request RESTART IDENTITY")
            return await create_request(db, structure_kind="tiers_paiement", structure_name="Pharmacie du Port",
                                        siret="84216730600021", contact_name="Anne Durand",
                                        email="anne@pharmacie.example", phone="", now=NOW)
        finally:
            await db.close()

    number = asyncio.run(add())
    capsys.readouterr()
    assert main(["requests", "list", "--state", "pending", "--config", config]) == 0
    out = capsys.readouterr().out
    assert f"#{number} pending" in out and "Pharmacie du Port (SIRET 84216730600021)" in out
    assert main(["requests", "approve", "--config", config]) == 2  # no number
    assert main(["requests", "approve", str(number), "--note", "RIB reçu", "--config", config]) == 0
    assert f"request {number} approved" in capsys.readouterr().out
    assert main(["requests", "reject", str(number), "--config", config]) == 1
    assert "is not pending" in capsys.readouterr().out
    assert main(["requests", "list", "--state", "pending", "--config", config]) == 0
    assert capsys.readouterr().out.strip() == "no request"


def test_cli_plugins_lists_every_enabled_plugin_with_its_hooks(capsys: pytest.CaptureFixture[str]) -> None:
    from guichet.core.config import load_config
    from guichet.core.hookspecs import HOOK_API_VERSION
    from guichet.core.plugins import load_plugins

    assert main(["plugins", "--config", str(ROOT / "config/demo.toml")]) == 0
    out = capsys.readouterr().out
    config = load_config(ROOT / "config/demo.toml")
    _pm, infos = load_plugins(config)
    blocks = out.split("\n")
    assert blocks[0] == f"guichet hook API {HOOK_API_VERSION}"
    for info in infos:
        header = f"{info.name}  (builtin: {info.module})"
        assert header in blocks, header
        start = blocks.index(header)
        listed = []
        for line in blocks[start + 1:]:
            if not line.startswith("    "):
                break
            listed.append(line.strip())
        assert tuple(listed) == info.hooks and listed, info.name
    assert [info.name for info in infos] == config.plugins.enabled
    # what each built-in plugin of the demo is for, checked against the listing itself
    assert "    guichet_statuses" in out and "    guichet_registry_lookup" in out
    assert "    guichet_identity_check" in out and "    guichet_password_rules" in out


def test_cli_config_check_flags_the_sud_aquitaine_recovery_code(monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    for name in SECRET_ENV:
        monkeypatch.delenv(name, raising=False)
    assert main(["config", "check", str(ROOT / "config/sud-aquitaine.toml")]) == 1  # the secrets are not here
    out = capsys.readouterr().out
    assert "codes.recovery.length = 4 digits" in out and "codes.recovery.lifetime_minutes = 30" in out
    assert "- codes.recovery.length: 4 digits (about 13 bits) — at least 6 digits" in out
    assert "- codes.recovery.lifetime_minutes: 30 minutes — at most 10 minutes" in out
    assert "compensating controls: At most 3 tries per code and 10 failures per account per 24 h" in out


@pytest.mark.parametrize("argv", [
    [], ["nonsense"], ["db"], ["registry"], ["registry", "demo", "--count", "many"], ["requests", "burn"],
    ["config", "check"], ["outbox", "retry", "x"],
])
def test_bad_usage_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert "usage: guichet" in capsys.readouterr().err


def test_a_bad_config_exits_2_with_the_file_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[caisse]\nid = "xx"\nname = "MSA X"\ncolour = "red"\n[security]\nsecret_key = { value = "s" }\n',
                   encoding="utf-8")
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
        await t.insert(t(purpose="login", binding=binding, code_hmac="x" * 64, channel="email", created_at=NOW,
                         expires_at=NOW, used_at=used)).run()
    await database.t.RateCounter.raw(f"INSERT INTO {counters} (key, hits, window_start_ms, last_at_ms, window_ms) "
                                     "VALUES ('k', 4, 0, 1000, 86400000)").run()
    assert await database.upgrade() == [3, 4]
    live = await t.select(t.id, t.binding).where(t.used_at.is_null() & t.superseded_at.is_null()).order_by(t.id).run()
    assert [(row["id"], row["binding"]) for row in live] == [(4, "b1"), (5, "b2")], "the newest live code stays"
    with pytest.raises(INTEGRITY_ERRORS):
        await t.insert(t(purpose="login", binding="b2", code_hmac="y" * 64, channel="email", created_at=NOW,
                         expires_at=NOW)).run()
    count = (await DatabaseCounters(database).update({"k": 86_400_000}, 2000))["k"]
    assert (count.count, count.previous_at_ms) == (5, 1000)
    assert await database.upgrade() == []
