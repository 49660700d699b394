"""Shared fixtures: configs, databases (SQLite, and PostgreSQL when GUICHET_TEST_POSTGRES is set), clock."""
from __future__ import annotations

import asyncio
import os
import secrets
import socket
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.clock import FrozenClock
from core.config import CaisseConfig, decode_config
from core.database import Database

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "config"
POSTGRES_URL = os.environ.get("GUICHET_TEST_POSTGRES", "")
REDIS_URL = os.environ.get("GUICHET_TEST_REDIS", "")
REQUIRE_SERVICES = os.environ.get("GUICHET_REQUIRE_SERVICES") == "1"
TEST_SECRET = "test-secret-key-0123456789abcdef0123456789"

BASE_CONFIG = f"""
[caisse]
id = "test"
name = "MSA Test"
postal_address = ["MSA Test", "1 rue de la Paix", "75002 PARIS"]
assistance = {{ phone = "01 23 45 67 89", hours = "du lundi au vendredi", email = "aide@test.invalid" }}

[plugins]
enabled = ["statuses_msa", "registry_tables", "identity_vitale", "identity_payment", "password_msa"]

[security]
secret_key = {{ value = "{TEST_SECRET}" }}

[sessions]
secure_cookies = false

[server]
mode = "demo"
"""


def service_missing(what: str) -> None:
    """Skip with a clear line on a developer's machine; fail on CI, where the service is required."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required here (GUICHET_REQUIRE_SERVICES=1) but is not available")
    pytest.skip(f"{what} not available: set it up to run this test")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., CaisseConfig]:
    """A config from BASE_CONFIG plus extra TOML, with the database URL given."""

    def factory(extra: str = "", *, database_url: str | None = None, base: str = BASE_CONFIG) -> CaisseConfig:
        url = database_url or f"sqlite:///{tmp_path / 'guichet.sqlite'}"
        text = base + "\n" + textwrap.dedent(extra) + f'\n[database]\nurl = "{url}"\n'
        return decode_config(text, source="test.toml", base_dir=str(tmp_path))

    return factory


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


# --- PostgreSQL: one throwaway database per test session ------------------------------------------

_pg_database_url: str | None = None


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def postgres_url() -> str:
    """A database of its own for this test session (created once, dropped at exit)."""
    global _pg_database_url
    if not POSTGRES_URL:
        service_missing("PostgreSQL (GUICHET_TEST_POSTGRES)")
    if _pg_database_url is None:
        name = f"guichet_test_{os.getpid()}_{secrets.token_hex(3)}"
        try:
            asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
        except Exception as exc:  # unreachable server
            service_missing(f"PostgreSQL at GUICHET_TEST_POSTGRES ({type(exc).__name__})")
        base, _, _db = POSTGRES_URL.rpartition("/")
        _pg_database_url = f"{base}/{name}"

        import atexit

        atexit.register(lambda: asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')))
    return _pg_database_url


async def _reset_postgres(database: Database) -> None:
    await database.upgrade()
    names = ", ".join(t._meta.tablename for t in database.t.all if t._meta.tablename != "guichet_schema_version")
    await database.engine.run_ddl(f"TRUNCATE {names} RESTART IDENTITY")


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Both engines: SQLite always, PostgreSQL when GUICHET_TEST_POSTGRES is set."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'guichet.sqlite'}"
    return postgres_url()


@pytest.fixture
async def database(db_url: str) -> AsyncIterator[Database]:
    db = Database(db_url)
    await db.connect()
    if db.is_sqlite:
        await db.upgrade()
    else:
        await _reset_postgres(db)
    try:
        yield db
    finally:
        await db.close()


def redis_url() -> str:
    if not REDIS_URL:
        service_missing("Redis (GUICHET_TEST_REDIS)")
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=2).close()
    except OSError:
        service_missing("Redis at GUICHET_TEST_REDIS")
    return REDIS_URL


def pytest_report_header(config: Any) -> list[str]:
    return [f"guichet services: postgres={'yes' if POSTGRES_URL else 'no'} redis={'yes' if REDIS_URL else 'no'} "
            f"required={'yes' if REQUIRE_SERVICES else 'no'}"]


@pytest.fixture
def root() -> Iterator[Path]:
    yield ROOT
