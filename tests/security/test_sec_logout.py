"""Logout wins every race and fails loudly.

A request that loaded the session before a logout (another tab, a slow page) must not bring the
session back when it saves it (an idle-clock refresh) or rotates it (a password change): on the
database store (SQLite, PostgreSQL) and on Redis. The requests run for real, in parallel, over
HTTP: the slow one waits for an argon2id thread while the logout completes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from guichet.core.config import CaisseConfig
from tests.conftest import Portal, portal_config_text, redis_url
from tests.ops.servers import HashingHeld
from tests.security.support import (
    OTHER_PASSWORD,
    PASSWORD,
    audit_rows,
    cookie,
    expect_event,
    login,
    make_account,
    person,
    remember,
    set_cookie,
    text,
    where,
)


@pytest.fixture(params=["database", "redis"])
async def store_portal(
    request: pytest.FixtureRequest,
    portal: Portal,
    portal_factory: Callable[..., Any],
    make_config: Callable[..., CaisseConfig],
    db_url: str,
) -> AsyncIterator[Portal]:
    """The portal with its sessions in the database, or in Redis."""
    if request.param == "database":
        yield portal
        return
    url = redis_url()
    import redis.asyncio as redis

    client = redis.Redis.from_url(url)
    for key in await client.keys("guichet:test:session:*"):
        await client.delete(key)
    config = make_config(
        database_url=db_url,
        base=portal_config_text(f'\n[redis]\nurl = "{url}"\n').replace(
            "[sessions]\n", '[sessions]\nstore = "redis"\n', 1
        ),
    )
    try:
        yield await portal_factory(config)
    finally:
        for key in await client.keys("guichet:test:session:*"):
            await client.delete(key)
        await client.aclose()


async def stored_sessions(portal: Portal) -> int:
    backend = portal.services.session_backend
    if hasattr(backend, "client"):  # Redis
        return len(await backend.client.keys(f"{backend.namespace}:session:*"))
    return int(await portal.services.database.t.Session.count().run())


async def logout_during(portal: Portal, slow: dict[str, str], *, clock: Any = None) -> httpx.Response:
    """Start ``slow`` (a Mon compte password change), log out from another tab while it waits, then let it end."""
    await portal.get("/mon-compte/mot-de-passe")
    if clock is not None:
        clock.advance(seconds=61)  # the slow request will refresh the session's idle clock: a save
    held = HashingHeld(portal)
    try:
        request = asyncio.create_task(portal.post("/mon-compte/mot-de-passe", slow))
        await held.until_a_request_waits()
        tab = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=portal.app, client=("203.0.113.7", 40001)),
            base_url=portal.client.base_url,
            cookies=dict(portal.client.cookies),
            follow_redirects=False,
        )
        async with tab:
            logout = await tab.post("/deconnexion", data={"csrf_token": portal.csrf})
        assert logout.status_code == 303 and where(logout) == "/?deconnexion=faite"
    finally:
        held.let_go()
    (answer,) = await asyncio.gather(request)
    return answer


async def assert_logged_out(portal: Portal, stolen: str) -> None:
    """Neither the old cookie nor whatever the slow answer left in the browser opens the account."""
    for sid in {stolen, cookie(portal, "session")} - {None}:
        assert sid is not None
        set_cookie(portal, "session", sid)
        r = await portal.get("/espace-prive")
        assert where(r) == "/connexion", "a session came back after the logout"
    assert await stored_sessions(portal) == 0, "the store still holds a session after the logout"


async def test_a_session_rotated_by_a_slow_request_stays_logged_out(store_portal: Portal, demo_people: Any) -> None:
    portal = store_portal
    account_row = await make_account(portal)
    await login(portal, person().identifier)
    stolen = cookie(portal, "session")
    assert stolen
    remember(OTHER_PASSWORD)
    answer = await logout_during(
        portal, {"current_password": PASSWORD, "new_password": OTHER_PASSWORD, "confirm_password": OTHER_PASSWORD}
    )
    assert where(answer) == "/mot-de-passe-modifie", "the change itself was made by a logged-in request"
    await assert_logged_out(portal, stolen)
    await expect_event(portal, "logout", account_id=account_row["id"], count=1)


async def test_a_session_saved_by_a_slow_request_stays_logged_out(
    store_portal: Portal, clock: Any, demo_people: Any
) -> None:
    portal = store_portal
    account_row = await make_account(portal)
    await login(portal, person().identifier)
    stolen = cookie(portal, "session")
    assert stolen
    answer = await logout_during(
        portal,
        {"current_password": "Pas-Le-Bon-1!", "new_password": OTHER_PASSWORD, "confirm_password": OTHER_PASSWORD},
        clock=clock,
    )
    assert answer.status_code == 422
    await assert_logged_out(portal, stolen)
    await expect_event(portal, "logout", account_id=account_row["id"], count=1)


async def test_a_new_login_after_a_logout_elsewhere_still_works(store_portal: Portal, demo_people: Any) -> None:
    """Only an existing session is update-only: a brand-new login is stored even if the old one was ended."""
    portal = store_portal
    await make_account(portal)
    await login(portal, person().identifier)
    await portal.get("/espace-prive")
    r = await portal.post("/deconnexion", {})
    assert where(r) == "/?deconnexion=faite"
    await login(portal, person().identifier)
    r = await portal.get("/espace-prive")
    assert r.status_code == 200
    assert await stored_sessions(portal) == 1


@pytest.mark.parametrize("failure", ["hung", "down"])
async def test_a_logout_the_store_cannot_take_says_so_and_changes_nothing(
    portal_factory: Callable[..., Any], make_config: Callable[..., CaisseConfig], db_url: str, failure: str
) -> None:
    """Redis hung or gone during a logout: a 503 that says the session is still open, an audit row,
    the cookie left alone; once Redis is back (hung case: the session is still in it) the logout works."""
    from tests.ops.servers import RedisServer

    server = RedisServer().start()
    try:
        config = make_config(
            database_url=db_url,
            # a hung Redis is found out after 1 s, not the default 5 (the test waits for it twice)
            base=portal_config_text(f'\n[redis]\nurl = "{server.url}"\ntimeout_seconds = 1\n').replace(
                "[sessions]\n", '[sessions]\nstore = "redis"\n', 1
            ),
        )
        portal = await portal_factory(config)
        account_row = await make_account(portal)
        await login(portal, person().identifier)
        await portal.get("/espace-prive")
        server.pause() if failure == "hung" else server.kill()
        for htmx in (False, True):
            r = await portal.post("/deconnexion", {}, htmx=htmx)
            assert r.status_code == 503 and r.headers["retry-after"].isdigit()
            page = text(r)
            assert "Déconnexion impossible" in page and "votre session est toujours ouverte" in page
            assert "Réessayez" in page and 'action="/deconnexion"' in page
            assert not any("guichet_session" in c for c in r.headers.get_list("set-cookie"))
            if htmx:
                assert r.headers["hx-retarget"] == "#contenu"
        rows = await audit_rows(portal, "logout.failed")
        assert len(rows) == 2 and all(row["client"] == "203.0.113.7" for row in rows)
        assert not await audit_rows(portal, "logout")
        if failure == "hung":
            server.resume()
            r = await portal.get("/espace-prive")
            assert r.status_code == 200, "the session lived on: the 503 told the truth"
            r = await portal.post("/deconnexion", {})
            assert where(r) == "/?deconnexion=faite"
            assert (await portal.get("/espace-prive")).headers.get("location") == "/connexion"
            await expect_event(portal, "logout", account_id=account_row["id"], count=1)
    finally:
        server.close()
