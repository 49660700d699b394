"""Sessions and the second factor: fixation, rotation, replay after logout, a half-logged-in session
(password only) against every account page and fragment, credential changes, timeouts, step
skipping, hidden-field tampering, trusted-browser cookies and temporary passwords."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from guichet.core.keys import token_digest
from tests.conftest import Portal
from tests.security.support import (
    OTHER_PASSWORD,
    PASSWORD,
    UNKNOWN_NIR,
    account,
    another_browser,
    audit_rows,
    concrete_paths,
    cookie,
    expect_event,
    forget_cookie,
    kinds,
    login,
    make_account,
    messages,
    password_step,
    person,
    remember,
    route_table,
    set_cookie,
    snapshot,
    text,
    where,
)

pytestmark = pytest.mark.asyncio
ACCOUNT_PREFIXES = (
    "/espace-prive",
    "/mon-compte",
    "/changement-mot-de-passe",
    "/mot-de-passe-modifie",
    "/confirmation-coordonnees",
    "/mot-de-passe/force",
)


def account_routes(method: str) -> list[str]:
    return [
        path
        for template, methods in route_table()
        if method in methods and template.startswith(ACCOUNT_PREFIXES)
        for path in concrete_paths(template)
    ]


async def session_exists(portal: Portal, sid: str | None) -> bool:
    if not sid:
        return False
    return await portal.services.session_backend.load(token_digest(sid), portal.services.now()) is not None


# --- fixation, rotation, logout ----------------------------------------------------------------------


async def test_a_session_id_planted_before_login_is_not_the_one_after(
    portal: Portal, portal_factory: Callable[..., Any], demo_people: Any
) -> None:
    victim_account = await make_account(portal, "particulier_vitale")
    await make_account(portal, "particulier_paiement")
    attacker = await another_browser(portal_factory, portal)
    r = await password_step(attacker, person("particulier_paiement").identifier, PASSWORD)
    assert where(r) == "/connexion/code"
    planted = cookie(attacker, "session")
    assert await session_exists(portal, planted)
    set_cookie(portal, "session", planted)  # e.g. through a cookie injected on a sibling site
    await login(portal, person("particulier_vitale").identifier)
    after = cookie(portal, "session")
    assert after and after != planted
    assert not await session_exists(portal, planted), "the planted session outlived the login"
    r = await attacker.get("/espace-prive")
    assert where(r) == "/connexion"
    r = await attacker.get("/connexion/code")
    assert where(r) == "/connexion"
    await expect_event(portal, "login.succeeded", account_id=victim_account["id"])


async def test_a_forged_session_id_is_ignored(portal: Portal, demo_people: Any) -> None:
    account_row = await make_account(portal)
    set_cookie(portal, "session", "attacker-chosen-value-" + "x" * 30)
    r = await portal.get("/espace-prive")
    assert where(r) == "/connexion"
    await login(portal, person().identifier)
    assert cookie(portal, "session") != "attacker-chosen-value-" + "x" * 30
    await expect_event(portal, "login.succeeded", account_id=account_row["id"])


async def test_the_session_id_changes_at_every_privilege_step(portal: Portal, demo_people: Any) -> None:
    account_row = await make_account(portal, temporary=True, confirmed=False)
    r = await password_step(portal, person().identifier, PASSWORD)
    after_password = cookie(portal, "session")
    await portal.get("/connexion/code")
    r = await portal.post("/connexion/code", {"code": await portal.last_code("login_code")})
    assert where(r) == "/changement-mot-de-passe"
    after_code = cookie(portal, "session")
    await portal.get("/changement-mot-de-passe")
    remember(OTHER_PASSWORD)
    r = await portal.post(
        "/changement-mot-de-passe", {"new_password": OTHER_PASSWORD, "confirm_password": OTHER_PASSWORD}
    )
    assert where(r) == "/mot-de-passe-modifie", messages(r)
    after_change = cookie(portal, "session")
    assert len({after_password, after_code, after_change}) == 3
    assert not await session_exists(portal, after_password) and not await session_exists(portal, after_code)
    assert await session_exists(portal, after_change)
    await expect_event(portal, "password.changed", account_id=account_row["id"], personalisation=True)


async def test_the_csrf_token_changes_at_login(portal: Portal, demo_people: Any) -> None:
    account_row = await make_account(portal)
    await portal.get("/connexion")
    before = portal.csrf
    await login(portal, person().identifier)
    await portal.get("/espace-prive")
    assert portal.csrf and portal.csrf != before
    r = await portal.post("/deconnexion", {"csrf_token": before})
    assert r.status_code == 403
    r = await portal.get("/espace-prive")
    assert r.status_code == 200, "the refused logout logged out"
    r = await portal.post("/deconnexion", {})
    assert where(r) == "/?deconnexion=faite"
    await expect_event(portal, "logout", account_id=account_row["id"])


async def test_a_session_cookie_replayed_after_logout_is_dead(
    portal: Portal, portal_factory: Callable[..., Any], demo_people: Any
) -> None:
    account_row = await make_account(portal)
    await login(portal, person().identifier)
    await portal.get("/mon-compte/mot-de-passe")
    stolen = {c.name: c.value for c in portal.client.cookies.jar}
    stolen_token = portal.csrf
    r = await portal.post("/deconnexion", {})
    assert where(r) == "/?deconnexion=faite"
    thief = await another_browser(portal_factory, portal)
    for name, value in stolen.items():
        thief.client.cookies.set(name, value, domain="127.0.0.1", path="/")
    before = await snapshot(portal)
    r = await thief.get("/espace-prive")
    assert where(r) == "/connexion"
    r = await thief.post(
        "/mon-compte/mot-de-passe",
        {
            "csrf_token": stolen_token,
            "current_password": PASSWORD,
            "new_password": OTHER_PASSWORD,
            "confirm_password": OTHER_PASSWORD,
        },
    )
    assert r.status_code in (303, 403) and await snapshot(portal) == before
    await expect_event(portal, "logout", account_id=account_row["id"])


async def test_a_credential_change_ends_the_other_sessions(
    portal: Portal, portal_factory: Callable[..., Any], demo_people: Any
) -> None:
    account_row = await make_account(portal)
    other = await another_browser(portal_factory, portal)
    await login(portal, person().identifier)
    await login(other, person().identifier)
    await portal.get("/mon-compte/mot-de-passe")
    r = await portal.post(
        "/mon-compte/mot-de-passe",
        {"current_password": PASSWORD, "new_password": OTHER_PASSWORD, "confirm_password": OTHER_PASSWORD},
    )
    assert where(r) == "/mot-de-passe-modifie", messages(r)
    r = await other.get("/espace-prive")
    assert where(r) == "/connexion", "another session survived the password change"
    r = await portal.get("/espace-prive")
    assert r.status_code == 200, "the session that changed the password goes on"
    await expect_event(portal, "password.changed", account_id=account_row["id"], personalisation=False)


@pytest.mark.parametrize("timeout", ["idle", "absolute"])
async def test_a_session_times_out(portal: Portal, clock: Any, timeout: str, demo_people: Any) -> None:
    account_row = await make_account(portal)
    await login(portal, person().identifier)
    config = portal.services.config.sessions
    if timeout == "idle":
        clock.advance(minutes=config.idle_minutes, seconds=1)
    else:
        for _ in range(config.absolute_hours * 60 // (config.idle_minutes - 1) + 1):
            clock.advance(minutes=config.idle_minutes - 1)  # active all along, but past the absolute limit
            r = await portal.get("/espace-prive")
            if r.status_code != 200:
                break
    r = await portal.get("/espace-prive")
    assert where(r) == "/connexion"
    await expect_event(portal, "session.expired", account_id=account_row["id"], timeout=timeout)


# --- the second factor cannot be skipped ---------------------------------------------------------------


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "forged-hx-request"])
@pytest.mark.parametrize("path", account_routes("GET"))
async def test_a_password_only_session_reaches_no_account_page(
    portal: Portal, path: str, htmx: bool, demo_people: Any
) -> None:
    account_row = await make_account(portal)
    r = await password_step(portal, person().identifier, PASSWORD)
    assert where(r) == "/connexion/code"
    headers = {"HX-Request": "true", "HX-Target": "step", "HX-Current-URL": "http://127.0.0.1:8000/connexion/code"}
    r = await portal.client.get(path, headers=headers if htmx else {})
    assert where(r) == "/connexion", (path, r.status_code)
    assert person().last_name not in r.text and person().email not in r.text
    if htmx:
        assert r.status_code == 200 and r.text == "" and "location" not in r.headers
    await expect_event(portal, "login.password_ok", account_id=account_row["id"])
    assert "login.succeeded" not in await kinds(portal)


@pytest.mark.parametrize("path", account_routes("POST"))
async def test_a_password_only_session_changes_nothing_through_account_forms(
    portal: Portal, path: str, demo_people: Any
) -> None:
    account_row = await make_account(portal)
    r = await password_step(portal, person().identifier, PASSWORD)
    await portal.get("/connexion/code")
    before = await snapshot(portal)
    form = {
        "action": "confirmer",
        "current_password": PASSWORD,
        "new_password": OTHER_PASSWORD,
        "confirm_password": OTHER_PASSWORD,
        "field": "email",
        "value": "pirate@attacker.invalid",
    }
    r = await portal.post(path, form, htmx=True)
    assert where(r) == "/connexion" and r.text == "", (path, r.status_code)
    after = await snapshot(portal)
    assert after == before, f"{path} changed something for a password-only session"
    await expect_event(portal, "login.password_ok", account_id=account_row["id"])
    assert not {"password.changed", "contacts.confirmed", "code.sent"} & set((await kinds(portal))[2:])


async def test_a_temporary_password_session_reaches_only_the_forced_change(portal: Portal, demo_people: Any) -> None:
    account_row = await make_account(portal, temporary=True, confirmed=False)
    await login(portal, person().identifier)
    for path in ("/espace-prive", "/mon-compte", "/mon-compte/email", "/confirmation-coordonnees"):
        r = await portal.get(path, htmx=True)
        assert where(r) == "/changement-mot-de-passe?raison=mot-de-passe-temporaire", (path, r.status_code, r.headers)
    await portal.get("/changement-mot-de-passe")
    r = await portal.post("/confirmation-coordonnees", {"action": "confirmer"})
    assert where(r) == "/changement-mot-de-passe?raison=mot-de-passe-temporaire"
    assert (await account(portal, account_row["id"]))["contacts_confirmed_at"] is None
    await expect_event(portal, "login.succeeded", account_id=account_row["id"])


# --- steps cannot be skipped ---------------------------------------------------------------------------


SKIPS = [
    ("POST", "/inscription/code", {"code": "123456"}, "/inscription/statut"),
    ("POST", "/inscription/question", {"question": "payment", "answer": "412,37"}, "/inscription/statut"),
    ("GET", "/inscription/termine", {}, "/inscription/statut"),
    ("POST", "/mot-de-passe-oublie/code", {"code": "123456"}, "/mot-de-passe-oublie/identifiant"),
    ("GET", "/mot-de-passe-oublie/confirmation", {}, "/mot-de-passe-oublie/identifiant"),
    ("POST", "/connexion/code", {"code": "123456"}, "/connexion"),
    ("GET", "/connexion/code", {}, "/connexion"),
]


@pytest.mark.parametrize("method,path,form,sent_to", SKIPS, ids=[f"{m} {p}" for m, p, _, _ in SKIPS])
async def test_a_later_step_cannot_be_reached_first(
    portal: Portal, method: str, path: str, form: dict[str, str], sent_to: str, demo_people: Any
) -> None:
    before = await snapshot(portal)
    r = await (portal.post(path, form) if method == "POST" else portal.get(path))
    assert where(r) == sent_to
    assert await snapshot(portal) == before and await kinds(portal) == []


async def test_a_flow_cannot_jump_ahead_of_its_current_step(portal: Portal, demo_people: Any) -> None:
    who = person("particulier_vitale")
    await portal.post("/inscription/statut", {"status": who.status})
    await portal.post("/inscription/identifiant", {"identifier": who.nir_with_key})
    before = await snapshot(portal)
    for path, form in (
        ("/inscription/question", {"question": "vitale", "answer": who.answer}),
        ("/inscription/canal", {"channel": "email"}),
        ("/inscription/code", {"code": "123456"}),
    ):
        r = await portal.post(path, form)
        assert where(r) == "/inscription/coordonnees", path
    assert await snapshot(portal) == before
    assert not {"identity.succeeded", "identity.failed", "code.sent"} & set(await kinds(portal))
    await portal.post("/mot-de-passe-oublie/identifiant", {"identifier": UNKNOWN_NIR})
    r = await portal.post("/mot-de-passe-oublie/code", {"code": "123456"})
    assert where(r) == "/mot-de-passe-oublie/canal"
    assert "code.failed" not in await kinds(portal)


# --- hidden fields and extra fields change nothing they should not ----------------------------------


@pytest.mark.parametrize("field", ["password_hash", "identifier", "email_verified", "credentials_version"])
async def test_a_tampered_contact_field_name_is_refused(portal: Portal, field: str, demo_people: Any) -> None:
    account_row = await make_account(portal)
    await login(portal, person().identifier)
    await portal.get("/mon-compte/coordonnees")
    before = await snapshot(portal)
    r = await portal.post("/mon-compte/coordonnees", {"action": "modifier", "field": field, "value": "1"})
    assert r.status_code == 422 and "Cette coordonnée ne peut pas être modifiée." in text(r)
    assert await snapshot(portal) == before
    await expect_event(portal, "login.succeeded", account_id=account_row["id"])


async def test_extra_and_tampered_flow_fields_are_ignored(
    portal: Portal, portal_factory: Callable[..., Any], demo_people: Any
) -> None:
    victim = await make_account(portal, "particulier_vitale")
    stranger = await another_browser(portal_factory, portal)
    await stranger.post("/mot-de-passe-oublie/identifiant", {"identifier": UNKNOWN_NIR})
    await stranger.post("/mot-de-passe-oublie/canal", {"channel": "email"})
    r = await stranger.post(
        "/mot-de-passe-oublie/code",
        {"code": "123456", "identifier": person().identifier, "account_id": str(victim["id"])},
    )
    assert r.status_code == 422
    who = person("particulier_paiement")
    await portal.post("/inscription/statut", {"status": who.status})
    await portal.post("/inscription/identifiant", {"identifier": who.nir_with_key})
    await portal.post(
        "/inscription/coordonnees",
        {
            "last_name": who.last_name,
            "first_name": who.first_name,
            "birth_date": who.birth_date.strftime("%d/%m/%Y"),
            "email": who.email,
            "mobile": "",
            "status": "entreprise",
            "matched": "true",
            "verdict": "right",
        },
    )
    r = await portal.post("/inscription/question", {"question": "admin", "answer": "x"})
    assert r.status_code == 422
    r = await portal.post("/inscription/question", {"question": "payment", "answer": "999,99", "verdict": "right"})
    assert where(r) == "/inscription/termine"
    assert [m["channel"] for m in await portal.outbox("temporary_password")] == ["postal"]
    assert (await account(portal, victim["id"]))["password_hash"] == victim["password_hash"]
    await expect_event(portal, "identity.failed", question="payment", verdict="wrong")
    await expect_event(portal, "recovery.requested", account_id=None, reachable=False)


async def test_the_channel_cannot_be_one_the_step_did_not_offer(portal: Portal, demo_people: Any) -> None:
    who = person("particulier_vitale")
    await portal.post("/inscription/statut", {"status": who.status})
    await portal.post("/inscription/identifiant", {"identifier": who.nir_with_key})
    await portal.post(
        "/inscription/coordonnees",
        {
            "last_name": who.last_name,
            "first_name": who.first_name,
            "birth_date": who.birth_date.strftime("%d/%m/%Y"),
            "email": who.email,
            "mobile": "",
        },
    )
    await portal.post("/inscription/question", {"question": who.question, "answer": who.answer})
    for channel in ("sms", "postal", "email,sms", "webhook"):
        r = await portal.post("/inscription/canal", {"channel": channel})
        assert r.status_code == 422, channel
    assert await portal.outbox() == []
    await expect_event(portal, "identity.succeeded", question="vitale")


async def test_a_browser_of_another_account_cannot_be_revoked(
    portal: Portal, portal_factory: Callable[..., Any], demo_people: Any
) -> None:
    await make_account(portal, "particulier_vitale")
    bob = await make_account(portal, "particulier_paiement")
    bob_browser = await another_browser(portal_factory, portal)
    await login(bob_browser, person("particulier_paiement").identifier, trust=True)
    [trusted] = await portal.services.database.t.TrustedBrowser.select().run()
    await login(portal, person("particulier_vitale").identifier)
    await portal.get("/mon-compte")
    r = await portal.post(f"/mon-compte/navigateurs/{trusted['id']}/revoquer", {})
    assert r.status_code == 200 and "n'est plus un navigateur de confiance" not in text(r)
    [still] = await portal.services.database.t.TrustedBrowser.select().run()
    assert still["revoked_at"] is None
    await expect_event(portal, "trusted_browser.added", account_id=bob["id"])
    assert "trusted_browser.revoked" not in await kinds(portal)


# --- trusted browsers ----------------------------------------------------------------------------------


async def trusted_login(portal: Portal, key: str = "particulier_vitale") -> str:
    """Log in ticking "navigateur de confiance", log out; returns the trusted-browser cookie."""
    await login(portal, person(key).identifier, trust=True)
    await portal.post("/deconnexion", {})
    token = cookie(portal, "trusted")
    assert token
    return token


async def test_a_trusted_browser_skips_the_code_step_only(portal: Portal, demo_people: Any) -> None:
    account_row = await make_account(portal)
    await trusted_login(portal)
    r = await password_step(portal, person().identifier, "Pas-Le-Bon-1!")
    assert r.status_code == 422, "a trusted browser skipped the password"
    r = await password_step(portal, person().identifier, PASSWORD)
    assert where(r) == "/espace-prive"
    await expect_event(portal, "trusted_browser.used", account_id=account_row["id"])
    await expect_event(portal, "login.succeeded", account_id=account_row["id"], via="trusted_browser")


async def test_a_stolen_trusted_cookie_is_useless_for_another_account(
    portal: Portal, portal_factory: Callable[..., Any], demo_people: Any
) -> None:
    await make_account(portal, "particulier_vitale")
    bob = await make_account(portal, "particulier_paiement")
    token = await trusted_login(portal)
    thief = await another_browser(portal_factory, portal)
    set_cookie(thief, "trusted", token)
    r = await password_step(thief, person("particulier_paiement").identifier, PASSWORD)
    assert where(r) == "/connexion/code", "another account's trusted cookie skipped the code"
    await expect_event(portal, "login.password_ok", account_id=bob["id"])
    assert all(e["account_id"] != bob["id"] for e in await audit_rows(portal, "trusted_browser.used"))


@pytest.mark.parametrize("forged", ["x" * 43, "", "../../etc/passwd", "A" * 400])
async def test_a_forged_trusted_cookie_is_useless(portal: Portal, forged: str, demo_people: Any) -> None:
    account_row = await make_account(portal)
    set_cookie(portal, "trusted", forged)
    r = await password_step(portal, person().identifier, PASSWORD)
    assert where(r) == "/connexion/code"
    await expect_event(portal, "code.sent", account_id=account_row["id"], purpose="login")
    assert "trusted_browser.used" not in await kinds(portal)


async def test_a_trusted_cookie_expires(portal: Portal, clock: Any, demo_people: Any) -> None:
    account_row = await make_account(portal)
    await trusted_login(portal)
    clock.advance(days=portal.services.config.security.trusted_browser_days, seconds=1)
    r = await password_step(portal, person().identifier, PASSWORD)
    assert where(r) == "/connexion/code"
    await expect_event(portal, "trusted_browser.added", account_id=account_row["id"])
    assert "trusted_browser.used" not in await kinds(portal)


async def test_a_revoked_trusted_browser_needs_the_code_again(portal: Portal, demo_people: Any) -> None:
    account_row = await make_account(portal)
    token = await trusted_login(portal)
    r = await password_step(portal, person().identifier, PASSWORD)
    assert where(r) == "/espace-prive"
    await portal.get("/mon-compte")
    [browser] = await portal.services.database.t.TrustedBrowser.select().run()
    r = await portal.post(f"/mon-compte/navigateurs/{browser['id']}/revoquer", {})
    assert "n'est plus un navigateur de confiance" in text(r)
    await portal.post("/deconnexion", {})
    assert cookie(portal, "trusted") == token
    r = await password_step(portal, person().identifier, PASSWORD)
    assert where(r) == "/connexion/code"
    await expect_event(portal, "trusted_browser.revoked", account_id=account_row["id"])


async def test_a_password_change_revokes_trusted_browsers(portal: Portal, demo_people: Any) -> None:
    account_row = await make_account(portal)
    await trusted_login(portal)
    r = await password_step(portal, person().identifier, PASSWORD)
    assert where(r) == "/espace-prive"  # the trusted browser logs in without a code
    await portal.get("/mon-compte/mot-de-passe")
    r = await portal.post(
        "/mon-compte/mot-de-passe",
        {"current_password": PASSWORD, "new_password": OTHER_PASSWORD, "confirm_password": OTHER_PASSWORD},
    )
    assert where(r) == "/mot-de-passe-modifie"
    await portal.post("/deconnexion", {})
    r = await password_step(portal, person().identifier, OTHER_PASSWORD)
    assert where(r) == "/connexion/code", "a trusted browser survived the password change"
    await expect_event(portal, "password.changed", account_id=account_row["id"])


# --- temporary passwords -------------------------------------------------------------------------------


async def recover(portal: Portal, key: str = "particulier_vitale") -> str:
    """A whole recovery by email; returns the temporary password sent."""
    await portal.post("/mot-de-passe-oublie/identifiant", {"identifier": person(key).identifier})
    await portal.post("/mot-de-passe-oublie/canal", {"channel": "email"})
    r = await portal.post("/mot-de-passe-oublie/code", {"code": await portal.last_code("recovery_code")})
    assert where(r) == "/mot-de-passe-oublie/confirmation", messages(r)
    forget_cookie(portal, "flow_recovery")
    return str((await portal.outbox("temporary_password"))[-1]["payload"]["password"])


async def test_a_temporary_password_is_dead_once_personalised(portal: Portal, demo_people: Any) -> None:
    account_row = await make_account(portal)
    temporary = await recover(portal)
    await login(portal, person().identifier, temporary)
    await portal.get("/changement-mot-de-passe")
    r = await portal.post(
        "/changement-mot-de-passe", {"new_password": OTHER_PASSWORD, "confirm_password": OTHER_PASSWORD}
    )
    assert where(r) == "/mot-de-passe-modifie"
    await portal.post("/deconnexion", {})
    r = await password_step(portal, person().identifier, temporary)
    assert r.status_code == 422
    await expect_event(portal, "password.reset", account_id=account_row["id"], channel="email")
    await expect_event(portal, "login.failed", account_id=account_row["id"], reason="bad_credentials")


async def test_a_second_recovery_kills_the_first_temporary_password(
    portal: Portal, clock: Any, demo_people: Any
) -> None:
    account_row = await make_account(portal)
    first = await recover(portal)
    clock.advance(minutes=2)
    second = await recover(portal)
    assert first != second
    r = await password_step(portal, person().identifier, first)
    assert r.status_code == 422
    r = await password_step(portal, person().identifier, PASSWORD)
    assert r.status_code == 422, "the old password still works after a reset"
    r = await password_step(portal, person().identifier, second)
    assert where(r) == "/connexion/code"
    await expect_event(portal, "password.reset", count=2, account_id=account_row["id"])


async def test_an_expired_temporary_password_is_refused(portal: Portal, clock: Any, demo_people: Any) -> None:
    account_row = await make_account(portal)
    temporary = await recover(portal)
    clock.advance(hours=portal.services.config.passwords.temporary_lifetime_hours.get("email", 24), seconds=1)
    r = await password_step(portal, person().identifier, temporary)
    assert r.status_code == 422
    await expect_event(portal, "login.failed", account_id=account_row["id"], reason="expired")


# --- tokens at rest -------------------------------------------------------------------------------------


async def test_no_cookie_token_is_stored_in_clear(
    portal: Portal, portal_factory: Callable[..., Any], demo_people: Any
) -> None:
    """Sessions, flows and trusted browsers are stored as digests: reading the database (a backup,
    a replica) gives no cookie to replay, not even through the codes table or the session data."""
    account_row = await make_account(portal, "particulier_paiement")
    await login(portal, person("particulier_paiement").identifier, trust=True)
    await portal.get("/mon-compte/coordonnees")
    await portal.post(
        "/mon-compte/coordonnees",
        {"action": "modifier", "field": "email", "value": "sophie.nouvelle@demo.invalid", "current_password": PASSWORD},
    )
    registering = await another_browser(portal_factory, portal)
    who = person("particulier_vitale")
    await registering.post("/inscription/statut", {"status": who.status})
    await registering.post("/inscription/identifiant", {"identifier": who.nir_with_key})
    await registering.post(
        "/inscription/coordonnees",
        {
            "last_name": who.last_name,
            "first_name": who.first_name,
            "birth_date": "14/05/1985",
            "email": who.email,
            "mobile": "",
        },
    )
    await registering.post("/inscription/question", {"question": who.question, "answer": who.answer})
    await registering.post("/inscription/canal", {"channel": "email"})
    recovering = await another_browser(portal_factory, portal)
    await recovering.post("/mot-de-passe-oublie/identifiant", {"identifier": UNKNOWN_NIR})
    await recovering.post("/mot-de-passe-oublie/canal", {"channel": "email"})
    half = await another_browser(portal_factory, portal)
    await password_step(half, person("particulier_paiement").identifier, PASSWORD)
    tokens = {
        c.value
        for browser in (portal, registering, recovering, half)
        for c in browser.client.cookies.jar
        if c.value and len(c.value) >= 20
    }
    assert len(tokens) >= 6
    t = portal.services.database.t
    stored = []
    for table in (t.Session, t.Flow, t.OneTimeCode, t.TrustedBrowser, t.RateCounter, t.AuditLog):
        for row in await table.select().run():
            stored += [f"{table._meta.tablename}.{k}={v}" for k, v in row.items() if isinstance(v, str)]
    found = [line.split("=", 1)[0] for line in stored for token in tokens if token in line]
    assert not found, f"cookie tokens stored in clear in {sorted(set(found))}"
    await expect_event(portal, "trusted_browser.added", account_id=account_row["id"])


@pytest.mark.parametrize("htmx", [True, False])
async def test_a_code_typed_after_the_password_changed_elsewhere_logs_nobody_in(
    portal: Portal, portal_factory: Callable[..., Any], demo_people: Any, htmx: bool
) -> None:
    """Someone past the password step (a stolen password) waits for the code while the owner changes
    the password from their own session: the code, even the right one, opens nothing any more: no
    login, no page of the account (not even the one htmx gets in the code step's answer), no
    trusted browser."""
    account_row = await make_account(portal)
    owner = await another_browser(portal_factory, portal)
    await login(owner, person().identifier)
    await password_step(portal, person().identifier, PASSWORD)
    await portal.get("/connexion/code")
    code = await portal.last_code("login_code")
    await owner.get("/mon-compte/mot-de-passe")
    r = await owner.post(
        "/mon-compte/mot-de-passe",
        {"current_password": PASSWORD, "new_password": OTHER_PASSWORD, "confirm_password": OTHER_PASSWORD},
    )
    assert where(r) == "/mot-de-passe-modifie", messages(r)
    logins = [row["id"] for row in await audit_rows(portal, "login.succeeded")]
    r = await portal.post("/connexion/code", {"code": code, "trust": "oui"}, htmx=htmx)
    assert where(r) == "/connexion", where(r)
    assert person().first_name not in text(r) and "Se déconnecter" not in text(r)
    assert [row["id"] for row in await audit_rows(portal, "login.succeeded")] == logins
    assert not await portal.services.database.t.TrustedBrowser.count().where(
        portal.services.database.t.TrustedBrowser.account_id == account_row["id"]
    )
    assert where(await portal.get("/espace-prive")) == "/connexion"


@pytest.mark.parametrize("action", ["page", "renvoyer", "autre-canal"])
async def test_a_half_done_login_ends_when_the_password_changes_elsewhere(
    portal: Portal, portal_factory: Callable[..., Any], demo_people: Any, clock: Any, action: str
) -> None:
    """After the owner changed the password from their own session, the browser left at the code
    step is sent back to the login form: its code page shows nothing of the account any more and
    it asks for no new code (the owner would receive it for nothing)."""
    await make_account(portal)
    owner = await another_browser(portal_factory, portal)
    await login(owner, person().identifier)
    await password_step(portal, person().identifier, PASSWORD)
    await portal.get("/connexion/code")
    sent = len(await portal.outbox("login_code"))
    await owner.get("/mon-compte/mot-de-passe")
    r = await owner.post(
        "/mon-compte/mot-de-passe",
        {"current_password": PASSWORD, "new_password": OTHER_PASSWORD, "confirm_password": OTHER_PASSWORD},
    )
    assert where(r) == "/mot-de-passe-modifie", messages(r)
    clock.advance(seconds=61)  # past the resend cooldown
    if action == "page":
        r = await portal.get("/connexion/code")
    else:
        r = await portal.post("/connexion/code", {"action": action})
    assert where(r) == "/connexion" and "@" not in text(r), where(r)
    assert len(await portal.outbox("login_code")) == sent
    assert where(await portal.get("/connexion/code")) == "/connexion"
