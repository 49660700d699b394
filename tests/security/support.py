"""What the security tests share: the log and secret records, audit queries, accounts, logins, browsers."""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from guichet.core.identifiers import parse_mobile
from guichet.plugins.registry_tables.importer import DEMO_PERSONS, DemoPerson
from tests.conftest import Portal, error_messages

# --- the log and the secrets (filled by tests/security/conftest.py) ---------------------------------

LOG: list[tuple[str, int, str]] = []  # (logger name, level, the formatted message and traceback)
SECRETS: set[str] = set()

_DIGITS = re.compile(r"[0-9]+")
_TOKENISH = re.compile(r"[A-Za-z0-9_\-]{16,}")
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9_\-]+$")


# loggers that tests write planted secrets to on purpose (tests/ops checks that the log formatter
# scrubs them): not the application's own lines
PLANTED_LOGGERS = frozenset({"guichet.test"})


def application_lines(lines: Iterable[tuple[str, int, str]]) -> list[tuple[str, int, str]]:
    return [line for line in lines if line[0] not in PLANTED_LOGGERS]


def remember(*values: str | None) -> None:
    """Secrets a test saw: they must never reach a log line. Under 6 characters: too common to scan for."""
    for value in values:
        if value and len(value) >= 6:
            SECRETS.add(value)


_QUOTED = re.compile(r"'([^'\s]{1,40})'")
_CHARSETS: dict[str, frozenset[str]] = {}


def _charset_names(secret: str) -> frozenset[str]:
    """A password's distinct characters as a font library names them ('Q', 'seven', 'exclam'...)."""
    if secret not in _CHARSETS:
        from fontTools.agl import UV2AGL

        _CHARSETS[secret] = frozenset(UV2AGL.get(ord(c), c) for c in secret)
    return _CHARSETS[secret]


def _charset_leaks(text: str, passwords: set[str]) -> bool:
    """Whether a line lists every character of a password (in any order, as characters or glyph names):
    what a PDF font subset logs when a letter draws a password, a secret by its character set."""
    quoted = set(_QUOTED.findall(text))
    if len(quoted) < 5:
        return False
    return any(len(names) >= 5 and names <= quoted for names in map(_charset_names, passwords))


def find_leaks(lines: Iterable[tuple[str, int, str]], known: Iterable[str]) -> list[str]:
    """Every log line holding a known secret, or derived from one, described by its kind (the secret masked)."""
    known = set(known)
    digits = {s for s in known if s.isascii() and s.isdigit()}
    tokens = {s for s in known if _TOKEN_CHARS.match(s) and not s.isdigit()}
    others = known - digits - tokens
    found: list[str] = []
    for name, level, text in lines:
        kinds = set()
        if _charset_leaks(text, others):
            kinds.add("the character set of a password")
        if any(run in digits for run in _DIGITS.findall(text)):
            kinds.add("digits (a code or a NIR)")
        if any(run in tokens for run in _TOKENISH.findall(text)):
            kinds.add("a token")
        if any(secret in text for secret in others):
            kinds.add("a password")
        compact = "".join(text.split())
        if compact != text and any(len(s) >= 13 and s in compact for s in digits):
            kinds.add("a NIR written with spaces")
        if kinds:
            shown = text
            for secret in sorted(known, key=len, reverse=True):
                shown = shown.replace(secret, "<SECRET>")
            found.append(f"{logging.getLevelName(level)} {name}: {', '.join(sorted(kinds))}: {shown[:300]}")
    return found


# --- fixed values -----------------------------------------------------------------------------------

PASSWORD = "Vert-Galet-42-Nuage!"  # passes the MSA classes, the blocklist and the demo persons' context
OTHER_PASSWORD = "Rouge-Caillou-17-Brume?"
UNKNOWN_NIR = "1990175123456"  # well-formed, in nobody's registry
remember(PASSWORD, OTHER_PASSWORD, UNKNOWN_NIR)
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
}


def messages(response: httpx.Response) -> list[str]:
    """The French messages tied to fields on a page, unescaped."""
    return [html.unescape(m) for m in error_messages(response)]


def text(response: httpx.Response) -> str:
    return html.unescape(response.text)


def person(key: str = "particulier_vitale") -> DemoPerson:
    return DEMO_PERSONS[key]


# --- audit ------------------------------------------------------------------------------------------


async def audit_rows(portal: Portal, kind: str | None = None) -> list[dict[str, Any]]:
    t = portal.services.database.t.AuditLog
    query = t.select().order_by(t.id)
    if kind:
        query = query.where(t.kind == kind)
    rows = await query.run()
    for row in rows:
        row["details"] = json.loads(row["details"] or "{}")
    return rows


async def assert_audit_clean(portal: Portal) -> None:
    """No audit row holds a secret: codes, passwords, tokens, full NIRs."""
    rows = await audit_rows(portal)
    lines = [
        ("audit", logging.INFO, f"{r['kind']} {r['subject']} {r['client']} {json.dumps(r['details'])}") for r in rows
    ]
    leaks = find_leaks(lines, SECRETS)
    assert not leaks, "secrets in the audit table:\n" + "\n".join(leaks)


ANY = object()


async def expect_event(
    portal: Portal, kind: str, *, count: int | None = None, account_id: Any = ANY, **details: Any
) -> dict[str, Any]:
    """The latest stored event of ``kind`` whose details include ``details``; the audit table holds no secret."""
    rows = [
        r
        for r in await audit_rows(portal, kind)
        if all(r["details"].get(k) == v for k, v in details.items())
        and (account_id is ANY or r["account_id"] == account_id)
    ]
    assert rows, (
        f"no {kind} event with {details} (account {'any' if account_id is ANY else account_id}); stored: "
        + ", ".join(f"{r['kind']}{r['details']}" for r in (await audit_rows(portal))[-15:])
    )
    if count is not None:
        assert len(rows) == count, f"{len(rows)} {kind} events with {details}, expected {count}"
    await assert_audit_clean(portal)
    return rows[-1]


async def kinds(portal: Portal) -> list[str]:
    return [r["kind"] for r in await audit_rows(portal)]


# --- accounts and logins ----------------------------------------------------------------------------


async def make_account(
    portal: Portal,
    key: str = "particulier_vitale",
    *,
    password: str = PASSWORD,
    temporary: bool = False,
    confirmed: bool = True,
    **overrides: Any,
) -> dict[str, Any]:
    """An account for a demo person straight in the database (its password hashed as the app does)."""
    who = person(key)
    services = portal.services
    now = services.now()
    remember(password)
    t = services.database.t.Account
    values: dict[str, Any] = dict(
        identifier_kind=who.identifier_kind,
        identifier=who.identifier,
        status=who.status,
        last_name=who.last_name,
        first_name=who.first_name,
        birth_date=who.birth_date,
        email=who.email,
        email_verified=True,
        mobile=parse_mobile(who.mobile),
        mobile_verified=False,
        password_hash=await services.passwords.hash(password),
        password_is_temporary=temporary,
        temporary_expires_at=now + dt.timedelta(days=1) if temporary else None,
        credentials_version=1,
        created_at=now,
        contacts_confirmed_at=None if not confirmed else now,
    )
    values.update(overrides)
    rows = await t.insert(t(**values)).returning(t.id).run()
    return await account(portal, int(rows[0]["id"]))


async def account(portal: Portal, account_id: int) -> dict[str, Any]:
    t = portal.services.database.t.Account
    rows = await t.select().where(t.id == account_id).run()
    return rows[0]  # type: ignore[no-any-return]


async def password_step(portal: Portal, identifier: str, password: str, **kwargs: Any) -> httpx.Response:
    """The login form, read then sent, as a browser does (so the CSRF token is the page's own)."""
    await portal.get("/connexion")
    return await portal.post("/connexion", {"identifier": identifier, "password": password}, **kwargs)


async def login(portal: Portal, identifier: str, password: str = PASSWORD, *, trust: bool = False) -> httpx.Response:
    """Password, then the code just sent; asserts both steps pass; returns the code step's answer."""
    r = await password_step(portal, identifier, password)
    assert r.status_code == 303 and r.headers["location"] == "/connexion/code", (r.status_code, error_messages(r))
    await portal.get("/connexion/code")
    data = {"code": await portal.last_code("login_code")}
    if trust:
        data["trust"] = "oui"
    r = await portal.post("/connexion/code", data)
    assert r.status_code == 303 and r.headers["location"] != "/connexion", (r.status_code, error_messages(r))
    return r


async def register(
    portal: Portal,
    who: DemoPerson,
    *,
    answer: str | None = None,
    channel: str = "email",
    last_name: str | None = None,
    first_name: str | None = None,
    identifier: str | None = None,
    htmx: bool = False,
) -> None:
    """A whole registration through the pages (the code step only after a right answer)."""
    await portal.get("/inscription/statut")
    r = await portal.post("/inscription/statut", {"status": who.status}, htmx=htmx)
    assert r.status_code in (200, 303), error_messages(r)
    r = await portal.post("/inscription/identifiant", {"identifier": identifier or who.nir_with_key}, htmx=htmx)
    assert r.status_code in (200, 303), error_messages(r)
    birth = who.birth_date.strftime("%d/%m/%Y") if who.birth_date else ""
    r = await portal.post(
        "/inscription/coordonnees",
        {
            "last_name": who.last_name if last_name is None else last_name,
            "first_name": who.first_name if first_name is None else first_name,
            "birth_date": birth,
            "email": who.email,
            "mobile": who.mobile,
        },
        htmx=htmx,
    )
    assert r.status_code in (200, 303), error_messages(r)
    r = await portal.post(
        "/inscription/question",
        {"question": who.question, "answer": who.answer if answer is None else answer},
        htmx=htmx,
    )
    assert r.status_code in (200, 303), error_messages(r)
    if answer is None:
        r = await portal.post("/inscription/canal", {"channel": channel}, htmx=htmx)
        assert r.status_code in (200, 303), error_messages(r)
        r = await portal.post("/inscription/code", {"code": await portal.last_code("registration_code")}, htmx=htmx)
        assert r.status_code in (200, 303), error_messages(r)


async def another_browser(portal_factory: Callable[..., Any], portal: Portal) -> Portal:
    """A second browser (own cookies) on the same app."""
    return await portal_factory(portal.services.config)  # type: ignore[no-any-return]


def cookie(portal: Portal, name: str) -> str | None:
    """A cookie's value by its short name ("session", "trusted", "csrf", "flow_registration"...)."""
    for item in portal.client.cookies.jar:
        if item.name.endswith(f"guichet_{name}"):
            return item.value
    return None


def set_cookie(portal: Portal, name: str, value: str) -> None:
    full = f"__Host-guichet_{name}" if portal.services.config.sessions.secure_cookies else f"guichet_{name}"
    portal.client.cookies.set(full, value, domain="127.0.0.1", path="/")


def forget_cookie(portal: Portal, name: str) -> None:
    for item in list(portal.client.cookies.jar):
        if item.name.endswith(f"guichet_{name}"):
            portal.client.cookies.jar.clear(item.domain, item.path, item.name)


def where(response: httpx.Response) -> str:
    """Where an answer sends the browser: a 303's Location or htmx's HX-Redirect."""
    return response.headers.get("location") or response.headers.get("hx-redirect") or ""


# --- state, for "a refusal changes nothing" ---------------------------------------------------------


async def snapshot(portal: Portal) -> dict[str, Any]:
    """The durable state a refused request must leave alone (codes' try counters aside)."""
    t = portal.services.database.t
    accounts = await t.Account.select().order_by(t.Account.id).run()
    browsers = await t.TrustedBrowser.select().order_by(t.TrustedBrowser.id).run()
    codes = (
        await t.OneTimeCode.select(t.OneTimeCode.id, t.OneTimeCode.used_at, t.OneTimeCode.superseded_at)
        .order_by(t.OneTimeCode.id)
        .run()
    )
    outbox = (
        await t.OutboxMessage.select(t.OutboxMessage.id, t.OutboxMessage.template).order_by(t.OutboxMessage.id).run()
    )
    requests = await t.ThirdPartyRequest.count().run()
    return {"accounts": accounts, "browsers": browsers, "codes": codes, "outbox": outbox, "requests": requests}


async def reset_counters(portal: Portal) -> None:
    t = portal.services.database.t.RateCounter
    await t.delete(force=True).run()


# --- the app's route table, for tests generated from it --------------------------------------------

_ROUTES: list[tuple[str, frozenset[str]]] = []


def route_table() -> list[tuple[str, frozenset[str]]]:
    """(path template, methods) of every route of an app built from the test config (no database opened)."""
    if not _ROUTES:
        import tempfile

        from guichet.core.config import decode_config
        from guichet.web.app import create_app
        from tests.conftest import portal_config_text

        folder = tempfile.mkdtemp(prefix="guichet-routes-")
        config = decode_config(
            portal_config_text() + f'\n[database]\nurl = "sqlite:///{folder}/routes.sqlite"\n',
            source="routes.toml",
            base_dir=folder,
        )
        app = create_app(config, run_outbox_worker=False)
        for route in app.routes:
            methods = frozenset(getattr(route, "methods", ())) - {"OPTIONS", "HEAD"}
            if methods:
                _ROUTES.append((route.path, methods))
    return _ROUTES


def concrete_paths(template: str) -> list[str]:
    """Every concrete path a route template stands for in the flows (each step, a browser id, a topic)."""
    from guichet.core.flows import recovery, registration
    from guichet.web.controllers.pages import HELP

    values = {"browser_id": ["1"], "enrolment_id": ["1"], "topic": sorted(HELP)}
    if template.startswith("/inscription/"):
        values["step"] = list(dict.fromkeys(registration.PERSON_STEPS + registration.THIRD_PARTY_STEPS))
    elif template.startswith("/mot-de-passe-oublie/"):
        values["step"] = list(recovery.STEPS)
    paths = [template]
    for name, options in values.items():
        pattern = re.compile(r"\{" + name + r":[a-z]+\}")
        if any(pattern.search(p) for p in paths):
            paths = [pattern.sub(option, p) for p in paths for option in options]
    return paths
