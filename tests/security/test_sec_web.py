"""The HTTP surface, generated from the app's route table so a new route is covered automatically:
CSRF on every POST, duplicated fields, body size, methods, security headers on every page and
fragment, HSTS and cookie attributes, redirects to our own paths only, X-Forwarded-For."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from guichet.core.config import CaisseConfig
from guichet.web.app import FORM_BODY_LIMIT
from guichet.web.http import CSP, safe_path
from tests.conftest import Portal, portal_config_text
from tests.security.support import (
    PASSWORD,
    UNKNOWN_NIR,
    another_browser,
    audit_rows,
    concrete_paths,
    expect_event,
    kinds,
    login,
    make_account,
    password_step,
    person,
    register,
    route_table,
    snapshot,
    where,
)

POST_PATHS = [p for template, methods in route_table() if "POST" in methods for p in concrete_paths(template)]
GET_PATHS = [
    p
    for template, methods in route_table()
    if "GET" in methods and "{name:str}" not in template
    for p in concrete_paths(template)
]


async def logged_in(portal: Portal) -> dict[str, Any]:
    row = await make_account(portal)
    await login(portal, person().identifier)
    await portal.get("/espace-prive")
    return row


# --- CSRF ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", POST_PATHS)
async def test_every_post_route_refuses_a_missing_or_foreign_csrf_token(
    portal: Portal, path: str, portal_factory: Callable[..., Any], demo_people: Any
) -> None:
    account_row = await logged_in(portal)
    stranger = await another_browser(portal_factory, portal)
    await stranger.get("/connexion")
    foreign = stranger.csrf
    assert foreign and foreign != portal.csrf
    events = await kinds(portal)
    before = await snapshot(portal)
    form = {
        "identifier": person().identifier,
        "password": PASSWORD,
        "code": "123456",
        "action": "confirmer",
        "status": "particulier",
    }
    for label, token, headers in (
        ("no token", None, {}),
        ("another browser's token", foreign, {}),
        ("another browser's token in the header", None, {"X-CSRF-Token": foreign}),
        ("an empty token", "", {"X-CSRF-Token": ""}),
    ):
        body = dict(form) if token is None else {**form, "csrf_token": token}
        r = await portal.client.post(path, data=body, headers={"HX-Request": "true", **headers})
        assert r.status_code == 403, f"{path} with {label}: {r.status_code}"
        assert await snapshot(portal) == before and await kinds(portal) == events, f"{path} changed with {label}"
    r = await portal.client.post(path, data=form, headers={"HX-Request": "true", "X-CSRF-Token": portal.csrf})
    assert r.status_code != 403, f"{path} refused its own token sent in the htmx header"
    await expect_event(portal, "login.succeeded", account_id=account_row["id"])


# --- duplicated fields, body size, methods ----------------------------------------------------------


@pytest.mark.parametrize("path", POST_PATHS)
async def test_every_post_route_refuses_a_field_sent_twice(portal: Portal, path: str, demo_people: Any) -> None:
    await portal.get("/connexion")
    before = await snapshot(portal)
    for body in (
        f"identifier={UNKNOWN_NIR}&identifier=1850578006084&csrf_token={portal.csrf}",
        f"csrf_token={portal.csrf}&csrf_token={portal.csrf}&code=123456",
    ):
        r = await portal.client.post(
            path, content=body.encode(), headers={"content-type": "application/x-www-form-urlencoded"}
        )
        assert r.status_code == 400 and "champ en double" in r.text, (path, r.status_code)
    assert await snapshot(portal) == before and await kinds(portal) == []


@pytest.mark.parametrize("path", POST_PATHS)
async def test_every_post_route_refuses_an_oversized_body(portal: Portal, path: str) -> None:
    await portal.get("/connexion")
    before = await snapshot(portal)
    padding = "x" * (FORM_BODY_LIMIT + 1024)
    for headers in ({}, {"HX-Request": "true"}):
        r = await portal.client.post(path, data={"csrf_token": portal.csrf, "identifier": padding}, headers=headers)
        assert r.status_code == 413, (path, r.status_code)
        assert r.headers["cache-control"] == "no-store" and r.headers["content-security-policy"] == CSP
    assert await snapshot(portal) == before and await kinds(portal) == []


async def test_a_body_just_under_the_limit_is_read(portal: Portal, demo_people: Any) -> None:
    await portal.get("/connexion")
    r = await portal.post("/connexion", {"identifier": "1" * (FORM_BODY_LIMIT - 1024), "password": "x"})
    assert r.status_code == 422
    await expect_event(portal, "login.failed", account_id=None)


@pytest.mark.parametrize("path", sorted({t for t, m in route_table() if "POST" in m and "{" not in t}))
async def test_other_methods_are_refused_without_a_change(portal: Portal, path: str, demo_people: Any) -> None:
    before = await snapshot(portal)
    for method in ("PUT", "DELETE", "PATCH"):
        r = await portal.client.request(method, path, data={"identifier": UNKNOWN_NIR})
        assert r.status_code == 405, (method, path, r.status_code)
        assert r.headers["content-security-policy"] == CSP
    assert await snapshot(portal) == before and await kinds(portal) == []


# --- security headers on every page and fragment ------------------------------------------------------


def security_headers(response: httpx.Response, *, static: bool = False) -> dict[str, str]:
    """The security headers of one answer, normalised to what every answer must carry."""
    h = response.headers
    csp = h.get("content-security-policy", "")
    vary = {v.strip().lower() for v in h.get("vary", "").split(",")}
    return {
        "csp": "strict" if csp == CSP and "unsafe" not in csp and "frame-ancestors 'none'" in csp else csp,
        "nosniff": h.get("x-content-type-options", ""),
        "frame": h.get("x-frame-options", ""),
        "referrer": h.get("referrer-policy", ""),
        "cache": "static" if static and "immutable" in h.get("cache-control", "") else h.get("cache-control", ""),
        "vary": "hx-request" if static or "hx-request" in vary else h.get("vary", ""),
        "hsts": h.get("strict-transport-security", "none"),
    }


EXPECTED = {
    "csp": "strict",
    "nosniff": "nosniff",
    "frame": "DENY",
    "referrer": "same-origin",
    "cache": "no-store",
    "vary": "hx-request",
    "hsts": "none",
}


async def test_every_page_and_fragment_carries_the_security_headers(
    portal: Portal, portal_factory: Callable[..., Any], demo_people: Any
) -> None:
    account_row = await make_account(portal)
    member = await another_browser(portal_factory, portal)
    await login(member, person().identifier)
    half = await another_browser(portal_factory, portal)
    await password_step(half, person().identifier, PASSWORD)
    seen: dict[str, dict[str, str]] = {}
    for path in GET_PATHS:
        for who, browser in (("anonymous", portal), ("password only", half), ("logged in", member)):
            for htmx in (False, True):
                r = await browser.get(path, htmx=htmx)
                seen[f"{who} {'fragment' if htmx else 'page'} GET {path} {r.status_code}"] = security_headers(r)
    for name in portal.app.state.static_names.values():
        r = await portal.get(name)
        assert r.status_code == 200
        seen[f"static {name}"] = {**security_headers(r, static=True), "cache": "no-store"}
    for path in POST_PATHS:  # the answers of refused and accepted forms, 4xx included
        r = await member.post(path, {"code": "12", "identifier": "x", "new_password": "x"}, htmx=True)
        seen[f"logged in fragment POST {path} {r.status_code}"] = security_headers(r)
    for path, status in (("/nulle-part", 404), ("/static/absent.js", 404)):
        r = await portal.get(path)
        assert r.status_code == status
        static = path.startswith("/static/")  # a missing static file: no cache header needed either way
        seen[f"error GET {path}"] = {**security_headers(r, static=static), **({"cache": "no-store"} if static else {})}
    wrong = {key: headers for key, headers in seen.items() if headers != EXPECTED}
    assert not wrong, "answers without the security headers:\n" + "\n".join(f"{k}: {v}" for k, v in wrong.items())
    assert len(seen) > 3 * 2 * 20
    await expect_event(portal, "login.succeeded", account_id=account_row["id"])


async def test_secure_cookies_bring_hsts_and_host_only_cookies(
    portal_factory: Callable[..., Any], make_config: Callable[..., CaisseConfig], db_url: str, demo_people: Any
) -> None:
    config = make_config(
        database_url=db_url, base=portal_config_text().replace("secure_cookies = false", "secure_cookies = true")
    )
    plain = await portal_factory(config)
    portal = Portal(
        plain.app,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=plain.app, client=("203.0.113.7", 40000)),
            base_url="https://127.0.0.1:8000",
            follow_redirects=False,
        ),
    )
    try:
        account_row = await make_account(portal)
        answers = [await portal.get("/connexion"), await portal.get("/nulle-part")]
        r = await password_step(portal, person().identifier, PASSWORD)
        answers.append(r)
        await portal.get("/connexion/code")
        r = await portal.post("/connexion/code", {"code": await portal.last_code("login_code"), "trust": "oui"})
        answers.append(r)
        answers.append(await portal.get("/espace-prive", htmx=True))
        for r in answers:
            assert r.headers.get("strict-transport-security") == "max-age=63072000; includeSubDomains", r.url
        cookies = [c for r in answers for c in r.headers.get_list("set-cookie")]
        names = {c.split("=", 1)[0] for c in cookies}
        assert {"__Host-guichet_csrf", "__Host-guichet_session", "__Host-guichet_trusted"} <= names, names
        for line in cookies:
            attributes = {a.strip().split("=")[0].lower() for a in line.split(";")[1:]}
            assert {"secure", "httponly", "samesite", "path"} <= attributes and "domain" not in attributes, line
        assert where(answers[-2]) == "/espace-prive"
        await expect_event(portal, "trusted_browser.added", account_id=account_row["id"])
    finally:
        await portal.client.aclose()


# --- redirects go to our own paths only ----------------------------------------------------------------


@pytest.mark.parametrize(
    "target,kept",
    [
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("\\\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("evil.example", "/"),
        ("http:/evil.example", "/"),
        (" //evil.example", "/"),
        ("\t/evil", "/"),
        ("/espace-prive", "/espace-prive"),
        ("/%0d%0aSet-Cookie:x=1", "/%0d%0aSet-Cookie:x=1"),
    ],
)
def test_safe_path_keeps_only_our_own_paths(target: str, kept: str) -> None:
    assert safe_path(target) == kept


async def test_no_answer_ever_points_to_another_site(portal: Portal, demo_people: Any) -> None:
    hostile = {
        "Host": "evil.example",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Proto": "https",
        "Referer": "https://evil.example/",
    }
    portal.client.headers.update(hostile)
    account_row = await make_account(portal, "particulier_paiement")
    targets = []
    for path in (
        "/?next=https://evil.example/",
        "/connexion?next=//evil.example",
        "/inscription",
        "/inscription/code?redirect=https://evil.example",
        "/mot-de-passe-oublie",
        "/espace-prive",
        "/connexion/code",
    ):
        for htmx in (False, True):
            r = await portal.get(path, htmx=htmx)
            targets += [r.headers.get(h, "") for h in ("location", "hx-redirect", "hx-push-url", "hx-location")]
    await portal.get("/connexion")
    r = await portal.post(
        "/connexion",
        {
            "identifier": person("particulier_paiement").identifier,
            "password": PASSWORD,
            "next": "https://evil.example/",
        },
    )
    targets.append(where(r))
    await portal.get("/connexion/code")
    r = await portal.post(
        "/connexion/code",
        {"code": await portal.last_code("login_code"), "next": "//evil.example/", "redirect": "https://evil.example/"},
    )
    targets.append(where(r))
    await register(portal, person("particulier_vitale"), htmx=True)
    for target in (t for t in targets if t):
        assert target.startswith("/") and not target.startswith("//") and "evil" not in target, target
    assert where(r) == "/espace-prive"
    await expect_event(portal, "login.succeeded", account_id=account_row["id"])


# --- X-Forwarded-For -----------------------------------------------------------------------------------


async def proxied_portal(
    portal_factory: Callable[..., Any], make_config: Callable[..., CaisseConfig], db_url: str, trusted: list[str]
) -> Portal:
    security = f"trusted_proxies = {json.dumps(trusted)}\nper_client_attempts_per_hour = 10\n"
    text = portal_config_text().replace("[security]\n", "[security]\n" + security, 1)
    return await portal_factory(make_config(database_url=db_url, base=text))  # type: ignore[no-any-return]


async def test_a_forged_x_forwarded_for_is_ignored_without_a_trusted_proxy(
    portal_factory: Callable[..., Any], make_config: Callable[..., CaisseConfig], db_url: str, demo_people: Any
) -> None:
    portal = await proxied_portal(portal_factory, make_config, db_url, [])
    await make_account(portal)
    for n in range(4):  # a fresh forged address each time: still one client, slowed after 10 // 3 failures
        r = await password_step(portal, UNKNOWN_NIR, "Pas-Le-Bon-1!", headers={"X-Forwarded-For": f"198.51.100.{n}"})
        assert r.status_code == 422
    r = await password_step(portal, person().identifier, PASSWORD, headers={"X-Forwarded-For": "198.51.100.99"})
    assert r.status_code == 422, "a forged X-Forwarded-For gave a fresh per-client budget"
    rows = await audit_rows(portal, "login.failed")
    assert {row["client"] for row in rows} == {"203.0.113.7"}
    await expect_event(portal, "login.failed", reason="slowed")


async def test_x_forwarded_for_is_honoured_from_a_trusted_proxy(
    portal_factory: Callable[..., Any], make_config: Callable[..., CaisseConfig], db_url: str, demo_people: Any
) -> None:
    portal = await proxied_portal(portal_factory, make_config, db_url, ["203.0.113.7"])
    account_row = await make_account(portal)
    for _ in range(4):  # the client behind the proxy is slowed...
        await password_step(
            portal, UNKNOWN_NIR, "Pas-Le-Bon-1!", headers={"X-Forwarded-For": "192.0.2.1, 198.51.100.1"}
        )
    r = await password_step(portal, person().identifier, PASSWORD, headers={"X-Forwarded-For": "198.51.100.1"})
    assert r.status_code == 422
    # ...another one is not: the proxy's own address is not the client
    r = await password_step(portal, person().identifier, PASSWORD, headers={"X-Forwarded-For": "198.51.100.2"})
    assert where(r) == "/connexion/code"
    clients = [row["client"] for row in await audit_rows(portal, "login.failed")]
    assert set(clients) == {"198.51.100.1"}, "the proxy-appended hop is the client, not what the client wrote"
    await expect_event(portal, "login.password_ok", account_id=account_row["id"])
    assert (await audit_rows(portal, "login.password_ok"))[-1]["client"] == "198.51.100.2"


@pytest.mark.parametrize(
    "forwarded", ["<script>alert(1)</script>", "unknown", "198.51.100.1\r\nX-Evil: 1", "x" * 200, "", "203.0.113.7"]
)
async def test_a_malformed_forwarded_address_falls_back_to_the_peer(
    portal_factory: Callable[..., Any],
    make_config: Callable[..., CaisseConfig],
    db_url: str,
    forwarded: str,
    demo_people: Any,
) -> None:
    portal = await proxied_portal(portal_factory, make_config, db_url, ["203.0.113.7"])
    await portal.get("/connexion")
    r = await portal.client.post(
        "/connexion",
        data={"identifier": UNKNOWN_NIR, "password": "x", "csrf_token": portal.csrf},
        headers={"X-Forwarded-For": forwarded.replace("\r\n", " ")},
    )
    assert r.status_code == 422
    row = await expect_event(portal, "login.failed", account_id=None)
    assert row["client"] == "203.0.113.7", row["client"]
    assert re.fullmatch(r"[0-9a-fA-F.:]+", row["client"])
