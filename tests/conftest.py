"""Shared fixtures: configs, databases (SQLite, and PostgreSQL when GUICHET_TEST_POSTGRES is set), clock."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from guichet.core.clock import FrozenClock
from guichet.core.config import CaisseConfig
from guichet.core.database import Database
from guichet.testing import BASE_CONFIG
from guichet.testing import TEST_SECRET as TEST_SECRET  # re-exported: tests import it from here
from guichet.testing import free_port as free_port  # re-exported: tests import it from here

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "config"
POSTGRES_URL = os.environ.get("GUICHET_TEST_POSTGRES", "")
REDIS_URL = os.environ.get("GUICHET_TEST_REDIS", "")
REQUIRE_SERVICES = os.environ.get("GUICHET_REQUIRE_SERVICES") == "1"


def service_missing(what: str) -> None:
    """Skip with a clear line on a developer's machine; fail on CI, where the service is required."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required here (GUICHET_REQUIRE_SERVICES=1) but is not available")
    pytest.skip(f"{what} not available: set it up to run this test")


# The caisse config factory and the clock are the test kit's (guichet.testing, the `guichet` pytest plugin),
# under the names these tests have always used.
@pytest.fixture
def make_config(guichet_config: Callable[..., CaisseConfig]) -> Callable[..., CaisseConfig]:
    """A config from BASE_CONFIG plus extra TOML, with the database URL given."""
    return guichet_config


@pytest.fixture
def clock(guichet_clock: FrozenClock) -> FrozenClock:
    return guichet_clock


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
    from guichet.plugins.registry_tables.tables import create_tables, tables_of

    await database.upgrade()
    await create_tables(database)  # the built-in registry's own tables (its import creates them)
    tables = [*database.t.all, *tables_of(database).all]
    names = ", ".join(t._meta.tablename for t in tables if t._meta.tablename != "guichet_schema_version")
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
    return [
        f"guichet services: postgres={'yes' if POSTGRES_URL else 'no'} redis={'yes' if REDIS_URL else 'no'} "
        f"required={'yes' if REQUIRE_SERVICES else 'no'}"
    ]


@pytest.fixture
def root() -> Iterator[Path]:
    yield ROOT


# --- the web app, driven over HTTP in the test's own event loop ------------------------------------

import re as _re  # noqa: E402

import httpx  # noqa: E402
import msgspec  # noqa: E402

_TOKEN_RE = _re.compile(r'name="csrf_token" value="([^"]+)"')
_HEADER_TOKEN_RE = _re.compile(r'"X-CSRF-Token": "([^"]+)"')


class Portal:
    """A browser-like HTTP client: keeps cookies and the latest CSRF token, reads the outbox."""

    def __init__(self, app: Any, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client
        self.csrf = ""

    @property
    def services(self) -> Any:
        return self.app.state.services

    def _remember(self, response: httpx.Response) -> httpx.Response:
        found = _TOKEN_RE.search(response.text) or _HEADER_TOKEN_RE.search(response.text)
        if found:
            self.csrf = found.group(1)
        return response

    async def get(self, path: str, *, htmx: bool = False, **kwargs: Any) -> httpx.Response:
        headers = {"HX-Request": "true"} if htmx else {}
        return self._remember(await self.client.get(path, headers=headers, **kwargs))

    async def post(
        self,
        path: str,
        data: dict[str, str] | None = None,
        *,
        htmx: bool = False,
        csrf: bool = True,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        body = dict(data or {})
        if csrf and "csrf_token" not in body:
            if not self.csrf:
                await self.get("/")
            body["csrf_token"] = self.csrf
        all_headers = {"HX-Request": "true"} if htmx else {}
        all_headers.update(headers or {})
        return self._remember(await self.client.post(path, data=body, headers=all_headers))

    async def outbox(self, template: str | None = None) -> list[dict[str, Any]]:
        """Every queued message, decrypted, oldest first (what the channels would receive)."""
        from guichet.core.outbox import open_sealed

        t = self.services.database.t.OutboxMessage
        rows = await t.select().order_by(t.id).run()
        found = []
        for row in rows:
            if template and row["template"] != template:
                continue
            content = open_sealed(self.services.keys, row["sealed"]) if row["sealed"] else None
            found.append(
                {
                    "id": row["id"],
                    "channel": row["channel"],
                    "template": row["template"],
                    "state": row["state"],
                    "recipient": msgspec.to_builtins(content.recipient) if content else None,
                    "payload": content.payload if content else None,
                }
            )
        return found

    async def last_code(self, template: str) -> str:
        messages = await self.outbox(template)
        assert messages, f"no {template} message was queued"
        return str(messages[-1]["payload"]["code"])


def error_messages(response: httpx.Response) -> list[str]:
    """The French messages tied to fields on a page."""
    # one message a <p>; several rules of one field are a list in a <div>, one a line here
    return [
        _re.sub(r"<[^>]+>", "", m.replace("</li><li>", "\n")).replace("Erreur : ", "").strip()
        for _tag, m in _re.findall(r'<(p|div) class="error" id="f-[^"]+-error">(.*?)</\1>', response.text, _re.S)
    ]


DELIVERY_CONFIG = """
[plugins.settings.delivery_email]
host = "127.0.0.1"
port = 2525
security = "none"
sender = "MSA Test <ne-pas-repondre@test.invalid>"

[plugins.settings.delivery_sms]
url = "http://127.0.0.1:9/sms"

[plugins.settings.delivery_postal]
spool_dir = "spool"
"""
ALL_PLUGINS = (
    'enabled = ["statuses_msa", "registry_tables", "identity_vitale", "identity_payment", '
    '"delivery_email", "delivery_sms", "delivery_postal", "password_msa"]'
)


def portal_config_text(extra: str = "") -> str:
    """BASE_CONFIG with every built-in plugin enabled and channels pointing at loopback."""
    base = BASE_CONFIG.replace(BASE_CONFIG.split("[plugins]\n")[1].split("\n")[0], ALL_PLUGINS)
    return base + DELIVERY_CONFIG + extra


@pytest.fixture
def app_config(make_config: Callable[..., CaisseConfig], db_url: str) -> CaisseConfig:
    return make_config(database_url=db_url, base=portal_config_text())


@pytest.fixture
async def portal_factory(db_url: str, clock: FrozenClock) -> AsyncIterator[Callable[..., Any]]:
    """Build apps on a config (with the test's database and clock) and open Portals on them."""
    from guichet.web.app import create_app

    stack: list[Any] = []
    apps: dict[int, Any] = {}

    async def factory(config: CaisseConfig, *, new_app: bool = False) -> Portal:
        key = id(config)
        if key not in apps or new_app:
            app = create_app(config, clock=clock, run_outbox_worker=False)
            started, stop = asyncio.Event(), asyncio.Event()

            async def run_lifespan() -> None:
                # entered and left in one task, as anyio's cancel scopes require
                async with app.lifespan():
                    started.set()
                    await stop.wait()

            task = asyncio.create_task(run_lifespan())
            await asyncio.wait([task, asyncio.create_task(started.wait())], return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()
            stack.append((stop, task))
            database = app.state.services.database
            if database.is_sqlite:
                await database.upgrade()
            elif not apps:
                await _reset_postgres(database)
            apps[key] = app
        app = apps[key]
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("203.0.113.7", 40000)),
            base_url="http://127.0.0.1:8000",
            follow_redirects=False,
        )
        stack.append(client)
        return Portal(app, client)

    try:
        yield factory
    finally:
        for item in reversed(stack):
            if isinstance(item, httpx.AsyncClient):
                await item.aclose()
            else:
                stop, task = item
                stop.set()
                await task


@pytest.fixture
async def portal(portal_factory: Callable[..., Any], app_config: CaisseConfig) -> Portal:
    return await portal_factory(app_config)


@pytest.fixture
async def demo_people(portal: Portal) -> Any:
    """The registry's fixed demo persons, loaded into the portal's database."""
    from guichet.plugins.registry_tables import importer as registry_import

    await registry_import.generate_demo_registry(portal.services.database, count=0, seed=1)
    return registry_import
