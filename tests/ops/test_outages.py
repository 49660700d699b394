"""Outages answer 503 and readiness tells the truth, with real failures: a PostgreSQL cluster of the
test's own stopped and started again, a redis-server killed, SQLite made full (``max_page_count``).

During each outage every page a person can reach answers either normally or 503 with Retry-After
and the French "Service momentanément indisponible" page (htmx: its section, aimed at the main
area); never a 500. ``/sante/pret`` is 503 while a store the app needs fails, 200 again after.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from guichet.core.config import CaisseConfig
from guichet.testing import SmtpSink
from tests.conftest import Portal, portal_config_text
from tests.ops.invariants import check_invariants, email_keys
from tests.ops.servers import HashingHeld, PostgresServer, RedisServer, running_portal
from tests.security.support import login, make_account, person

pytestmark = pytest.mark.faults

UNAVAILABLE = "Service momentanément indisponible"
STEP_UNAVAILABLE = "Le service est momentanément indisponible."
STRANGERS = iter(range(1, 250))


def assert_unavailable(r: httpx.Response, *, htmx: bool) -> None:
    assert r.status_code == 503, (r.request.method, r.request.url.path, r.status_code, r.text[:200])
    assert r.headers["retry-after"].isdigit()
    page = html.unescape(r.text)
    # the whole "Service momentanément indisponible" page, or the step itself saying so (a counter
    # store down refuses the try in the form: core/flows/common.py UNAVAILABLE)
    assert UNAVAILABLE in page or STEP_UNAVAILABLE in page or "Déconnexion impossible" in page, (
        r.request.method,
        r.request.url.path,
        " ".join(re.sub(r"<[^>]+>", " ", page).split())[-600:],
    )
    if htmx and UNAVAILABLE not in page and STEP_UNAVAILABLE in page:
        assert "<html" not in r.text  # the step's own fragment, swapped where the form is
    elif htmx:
        assert r.headers["hx-retarget"] == "#contenu" and "<html" not in r.text and '<section id="step"' in r.text
    else:
        assert "<html" in r.text


@contextlib.asynccontextmanager
async def stranger(portal: Portal) -> AsyncIterator[Portal]:
    """A browser of its own, from an address of its own (so per-address limits stay out of the way)."""
    address = f"198.51.100.{next(STRANGERS)}"
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=portal.app, client=(address, 40000)),
        base_url="http://127.0.0.1:8000",
        follow_redirects=False,
    )
    async with client:
        yield Portal(portal.app, client)


async def tour(portal: Portal, *, logged_in: bool) -> list[tuple[str, bool, httpx.Response]]:
    """Every kind of page once without htmx and once with: reads, writes, the session's pages, the logout."""
    answers = []
    for htmx in (False, True):
        paths = [
            ("GET", "/", {}),
            ("GET", "/connexion", {}),
            ("POST", "/connexion", {"identifier": person().identifier, "password": "Pas-Le-Bon-1!"}),
            ("POST", "/inscription/statut", {"status": "particulier"}),
            ("POST", "/mot-de-passe-oublie/identifiant", {"identifier": person().identifier}),
        ]
        if logged_in:
            paths += [("GET", "/espace-prive", {}), ("GET", "/mon-compte", {})]
        for method, path, data in paths:
            if method == "GET":
                r = await portal.get(path, htmx=htmx)
            else:
                r = await portal.post(path, data, htmx=htmx)
            answers.append((f"{method} {path}", htmx, r))
    return answers


def no_500(answers: list[tuple[str, bool, httpx.Response]]) -> None:
    bad = [(what, htmx, r.status_code) for what, htmx, r in answers if r.status_code >= 500 and r.status_code != 503]
    assert not bad, f"5xx other than 503: {bad}"
    for _what, htmx, r in answers:
        if r.status_code == 503:
            assert_unavailable(r, htmx=htmx)


async def ready(portal: Portal) -> httpx.Response:
    return await portal.client.get("/sante/pret")


@pytest.fixture
def smtp() -> Any:
    """The SMTP server the portal's email channel sends to (the outbox is drained into it at the end)."""
    with SmtpSink() as sink:
        yield sink


def with_smtp(text: str, sink: SmtpSink) -> str:
    return text.replace("port = 2525", f"port = {sink.port}", 1)


async def delivered_and_sound(portal: Portal, sink: SmtpSink, account_id: int, expect: dict[str, int]) -> None:
    """After the outage: the outbox drained into the SMTP server, then the shared invariants (every
    message sent once, no code used twice, no duplicate account, the expected audit rows)."""
    await portal.services.outbox_worker("after-outage").drain()
    await check_invariants(
        portal.services.database,
        portal.services.config.caisse.id,
        received=email_keys(sink.messages),
        seeded_accounts=[account_id],
        expect_audit=expect,
    )


# --- PostgreSQL stopped, then started again ----------------------------------------------------------


@pytest.fixture
def postgres_server() -> Any:
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.close()


async def test_a_postgresql_restart_answers_503_and_readiness_follows(
    postgres_server: PostgresServer, make_config: Callable[..., CaisseConfig], clock: Any, smtp: SmtpSink
) -> None:
    config = make_config(database_url=postgres_server.url, base=with_smtp(portal_config_text(), smtp))
    async with running_portal(config, clock) as portal:
        who = await make_account(portal)
        await login(portal, person().identifier)
        assert (await portal.get("/espace-prive")).status_code == 200
        assert (await ready(portal)).status_code == 200

        postgres_server.stop()
        answers = await tour(portal, logged_in=True)
        no_500(answers)
        session_pages = [(what, htmx, r) for what, htmx, r in answers if what.startswith(("GET /espace", "GET /mon"))]
        for _what, htmx, r in session_pages:
            assert_unavailable(r, htmx=htmx)
        writes = [(what, htmx, r) for what, htmx, r in answers if what == "POST /inscription/statut"]
        for _what, htmx, r in writes:
            assert_unavailable(r, htmx=htmx)
        r = await portal.post("/deconnexion", {})
        assert_unavailable(r, htmx=False)
        assert "Déconnexion impossible" in html.unescape(r.text)
        r = await ready(portal)
        assert r.status_code == 503 and r.json() == {"status": "unavailable", "database": "unavailable"}
        assert r.headers["retry-after"].isdigit()
        assert (await portal.client.get("/sante")).status_code == 200, "alive, only not ready"

        postgres_server.start()
        # the pool replaces its dead connections as they are asked for: a 503 until then, never a 500
        for _ in range(20):
            r = await ready(portal)
            if r.status_code == 200:
                break
            assert r.status_code == 503
        assert r.status_code == 200 and r.json() == {"status": "ok", "database": "ok"}
        r = await portal.get("/espace-prive")
        assert r.status_code == 200, "the session stored in PostgreSQL came back with it"
        no_500(await tour(portal, logged_in=True))
        await login(portal, person().identifier)  # a whole login again once it is back
        await delivered_and_sound(
            portal, smtp, who["id"], {"login.succeeded": 2, "code.succeeded": 2, "login.failed": 2}
        )


# --- Redis killed (sessions and counters there) ------------------------------------------------------


@pytest.fixture
def redis_server() -> Any:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.close()


async def test_redis_down_answers_503_and_readiness_follows(
    redis_server: RedisServer, make_config: Callable[..., CaisseConfig], db_url: str, clock: Any, smtp: SmtpSink
) -> None:
    config = make_config(
        database_url=db_url,
        base=with_smtp(
            portal_config_text(f'\n[rate_limits]\nstore = "redis"\n\n[redis]\nurl = "{redis_server.url}"\n').replace(
                "[sessions]\n", '[sessions]\nstore = "redis"\n', 1
            ),
            smtp,
        ),
    )
    async with running_portal(config, clock) as portal:
        if not portal.services.database.is_sqlite:
            from tests.conftest import _reset_postgres

            await _reset_postgres(portal.services.database)
        who = await make_account(portal)
        await login(portal, person().identifier)
        assert (await portal.get("/espace-prive")).status_code == 200
        assert (await ready(portal)).json() == {
            "status": "ok",
            "database": "ok",
            "redis_sessions": "ok",
            "redis_counters": "ok",
        }

        redis_server.kill()
        answers = await tour(portal, logged_in=True)
        no_500(answers)
        for what, htmx, r in answers:
            if what.startswith(("GET /espace", "GET /mon")):
                assert_unavailable(r, htmx=htmx)
        r = await portal.post("/deconnexion", {})
        assert r.status_code == 503 and "Déconnexion impossible" in html.unescape(r.text)
        r = await ready(portal)
        assert r.status_code == 503 and r.json() == {
            "status": "unavailable",
            "database": "ok",
            "redis_sessions": "unavailable",
            "redis_counters": "unavailable",
        }

        redis_server.start()  # same port, empty: sessions and counters start again from nothing
        for _ in range(20):
            r = await ready(portal)
            if r.status_code == 200:
                break
        assert r.status_code == 200
        assert (await portal.get("/espace-prive")).headers.get("location") == "/connexion"
        no_500(await tour(portal, logged_in=False))
        await login(portal, person().identifier)
        # the logout refused while Redis was down is audited (the database was there)
        await delivered_and_sound(
            portal, smtp, who["id"], {"login.succeeded": 2, "code.succeeded": 2, "logout.failed": 1}
        )


# --- SQLite full ---------------------------------------------------------------------------------------


async def _limit_pages(portal: Portal, pages: int | None) -> None:
    """PRAGMA max_page_count on every pooled connection (it is a per-connection setting)."""
    engine = portal.services.database.engine
    held = [await engine._acquire() for _ in range(engine.pool_size)]
    try:
        for connection, _pooled in held:
            if pages is None:
                await connection.execute_fetchall("PRAGMA max_page_count = 1073741823")
            else:
                await connection.execute_fetchall(f"PRAGMA max_page_count = {pages}")
    finally:
        for connection, pooled in held:
            await engine._release(connection, pooled)


async def test_a_full_sqlite_database_answers_503_and_readiness_follows(
    make_config: Callable[..., CaisseConfig], clock: Any, smtp: SmtpSink
) -> None:
    config = make_config(base=with_smtp(portal_config_text(), smtp))
    async with running_portal(config, clock) as portal:
        who = await make_account(portal)
        await login(portal, person().identifier)
        assert (await ready(portal)).status_code == 200
        rows = await portal.services.database.engine.run_ddl("PRAGMA page_count")
        await _limit_pages(portal, int(rows[0]["page_count"]))

        # registrations from ever new browsers until the file cannot grow: each is stored, or a 503
        full = None
        for _ in range(400):
            async with stranger(portal) as browser:
                await browser.get("/inscription/statut")
                r = await browser.post("/inscription/statut", {"status": "particulier"})
            assert r.status_code in (303, 503), (r.status_code, r.text[:200])
            if r.status_code == 503:
                full = r
                break
        assert full is not None, "the database never filled up"
        assert_unavailable(full, htmx=False)
        r = await ready(portal)
        assert r.status_code == 503 and r.json() == {"status": "unavailable", "database": "unavailable"}
        no_500(await tour(portal, logged_in=True))
        assert (await portal.get("/")).status_code == 200, "what needs no write still works"

        await _limit_pages(portal, None)  # space again
        assert (await ready(portal)).status_code == 200
        async with stranger(portal) as browser:
            await browser.get("/inscription/statut")
            r = await browser.post("/inscription/statut", {"status": "particulier"})
            assert r.status_code == 303
        await delivered_and_sound(portal, smtp, who["id"], {"login.succeeded": 1, "code.succeeded": 1})


# --- the session's save fails after the page was made ---------------------------------------------------


async def test_a_session_save_that_fails_turns_the_answer_into_a_503(
    redis_server: RedisServer, make_config: Callable[..., CaisseConfig], clock: Any
) -> None:
    """Redis dies while a request runs: its page is not sent with a cookie for a session never saved."""
    config = make_config(
        base=portal_config_text(f'\n[redis]\nurl = "{redis_server.url}"\n').replace(
            "[sessions]\n", '[sessions]\nstore = "redis"\n', 1
        )
    )
    async with running_portal(config, clock) as portal:
        await make_account(portal)
        for htmx in (False, True):
            if htmx:
                redis_server.start()  # back, empty: log in again
            await login(portal, person().identifier)
            await portal.get("/mon-compte/mot-de-passe")
            clock.advance(seconds=61)  # the request will refresh the session's idle clock: a save
            held = HashingHeld(portal)
            try:
                request = asyncio.create_task(
                    portal.post(
                        "/mon-compte/mot-de-passe",
                        {"current_password": "Pas-Le-Bon-1!", "new_password": "x", "confirm_password": "x"},
                        htmx=htmx,
                    )
                )
                await held.until_a_request_waits()  # its session is loaded: now Redis goes
                redis_server.kill()
            finally:
                held.let_go()
            r = await request
            assert_unavailable(r, htmx=htmx)
            assert not any("guichet_session" in c for c in r.headers.get_list("set-cookie"))
