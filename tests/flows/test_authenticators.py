"""Authenticators over HTTP: what core enforces whatever the plugin (here the authenticator app and
the recovery codes): the password again before a change, the strongest first at login, codes refused
where they are not offered, each try counted, every change told and audited; a stolen session, a
replayed code, parallel answers and a skewed clock get nothing."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import pyotp
import pytest

from guichet.core.clock import FrozenClock
from tests.conftest import Portal
from tests.flows.helpers import (
    NEW_PASSWORD,
    activate,
    field_errors,
    logout,
    more_portals,
    portal_with,
    share_cookies,
    text_of,
)

pytestmark = pytest.mark.asyncio

TOTP = ("authenticator_totp", "authenticator_recovery")
KEY = re.compile(r'<strong class="key" translate="no">([A-Z2-7 ]+)</strong>')


@pytest.fixture
async def site(portal_factory: Callable[..., Any], make_config: Callable[..., Any], db_url: str) -> Portal:
    return await portal_with(portal_factory, make_config, db_url, plugins=TOTP)


@pytest.fixture
async def person(site: Portal) -> Any:
    from guichet.plugins.registry_tables import importer as registry_import

    await registry_import.generate_demo_registry(site.services.database, count=0, seed=1)
    return registry_import.DEMO_PERSONS["particulier_vitale"]


@pytest.fixture
async def account(site: Portal, person: Any) -> dict[str, Any]:
    return await activate(site, person)


def code_now(key: str, clock: FrozenClock, offset_steps: int = 0) -> str:
    return pyotp.TOTP(key).at(int(clock.now().timestamp()) + 30 * offset_steps)


async def reauthenticate(portal: Portal, then: str = "/mon-compte/securite") -> None:
    await portal.get(f"/mon-compte/securite/confirmer?suite={then}")
    r = await portal.post("/mon-compte/securite/confirmer", {"current_password": NEW_PASSWORD, "suite": then})
    assert r.status_code == 303 and r.headers["location"] == then, field_errors(r)


async def enrol_totp(portal: Portal, clock: FrozenClock, label: str = "Téléphone de Julien") -> str:
    """Add an authenticator app from Mon compte; returns its key."""
    await reauthenticate(portal, "/mon-compte/securite/totp/ajouter")
    page = await portal.get("/mon-compte/securite/totp/ajouter")
    assert page.status_code == 200 and "<svg" in page.text
    key = KEY.search(page.text).group(1).replace(" ", "")  # type: ignore[union-attr]
    r = await portal.post("/mon-compte/securite/totp/ajouter", {"label": label, "code": code_now(key, clock)})
    assert r.status_code == 200 and "ajout enregistré" in text_of(r), field_errors(r)
    return key


async def password_step(portal: Portal, person: Any) -> str:
    await portal.get("/connexion")
    r = await portal.post("/connexion", {"identifier": person.identifier, "password": NEW_PASSWORD})
    assert r.status_code == 303, field_errors(r)
    return str(r.headers["location"])


async def credentials(portal: Portal, account_id: int) -> list[dict[str, Any]]:
    t = portal.services.database.t.Credential
    return await t.select().where(t.account_id == account_id).run()  # type: ignore[no-any-return]


async def audit_kinds(portal: Portal, account_id: int) -> list[str]:
    t = portal.services.database.t.AuditLog
    return [row["kind"] for row in await t.select(t.kind).where(t.account_id == account_id).order_by(t.id).run()]


async def test_a_stolen_session_cannot_add_an_authenticator_without_the_password(
    site: Portal, account: dict[str, Any], clock: FrozenClock
) -> None:
    page = await site.get("/mon-compte/securite")
    assert page.status_code == 200 and "Application d'authentification" in text_of(page)
    r = await site.get("/mon-compte/securite/totp/ajouter")
    assert r.status_code == 303 and r.headers["location"].startswith("/mon-compte/securite/confirmer")
    r = await site.post("/mon-compte/securite/totp/ajouter", {"code": "123456", "label": "Pirate"})
    assert r.status_code == 303 and r.headers["location"].startswith("/mon-compte/securite/confirmer")
    # a wrong password is refused, counted, and opens nothing
    await site.get("/mon-compte/securite/confirmer")
    r = await site.post("/mon-compte/securite/confirmer", {"current_password": "Pas-Le-Bon-1!", "suite": ""})
    assert r.status_code == 422 and "Le mot de passe actuel est incorrect." in text_of(r)
    r = await site.get("/mon-compte/securite/totp/ajouter")
    assert r.status_code == 303
    assert await credentials(site, account["id"]) == []


async def test_the_re_authentication_lasts_minutes_only(
    site: Portal, account: dict[str, Any], clock: FrozenClock
) -> None:
    await reauthenticate(site)
    assert (await site.get("/mon-compte/securite/totp/ajouter")).status_code == 200
    clock.advance(minutes=site.services.config.authentication.reauthentication_minutes, seconds=1)
    r = await site.get("/mon-compte/securite/totp/ajouter")
    assert r.status_code == 303 and r.headers["location"].startswith("/mon-compte/securite/confirmer")


async def test_the_confirmation_only_leads_within_the_section(site: Portal, account: dict[str, Any]) -> None:
    for elsewhere in ("https://pirate.example/", "//pirate.example/", "/espace-prive", "/mon-compte/securite//x"):
        await site.get("/mon-compte/securite/confirmer")
        r = await site.post("/mon-compte/securite/confirmer", {"current_password": NEW_PASSWORD, "suite": elsewhere})
        assert r.status_code == 303 and r.headers["location"] == "/mon-compte/securite", elsewhere


async def test_enrolment_is_told_audited_and_a_wrong_first_code_keeps_the_same_key(
    site: Portal, account: dict[str, Any], clock: FrozenClock
) -> None:
    await reauthenticate(site, "/mon-compte/securite/totp/ajouter")
    first = await site.get("/mon-compte/securite/totp/ajouter")
    key = KEY.search(first.text).group(1)  # type: ignore[union-attr]
    wrong = await site.post("/mon-compte/securite/totp/ajouter", {"label": "Tél", "code": "000000"})
    assert wrong.status_code == 422 and KEY.search(wrong.text).group(1) == key  # type: ignore[union-attr]
    assert await credentials(site, account["id"]) == []
    r = await site.post(
        "/mon-compte/securite/totp/ajouter", {"label": "Tél", "code": code_now(key.replace(" ", ""), clock)}
    )
    assert r.status_code == 200 and "ajout enregistré" in text_of(r)
    [row] = await credentials(site, account["id"])
    assert row["kind"] == "totp" and row["label"] == "Tél" and key.replace(" ", "") not in row["secret"]
    [notice] = await site.outbox("authenticator_changed_notice")  # Julien has an email only: one notice
    assert notice["payload"] == {"change": "added", "authenticator": "Application d'authentification"}
    kinds = await audit_kinds(site, account["id"])
    assert kinds.count("authenticator.enrolment_failed") == 1 and kinds.count("authenticator.enrolled") == 1
    # Mes données lists it, never its key
    export = await site.get("/mon-compte/mes-donnees.json")
    [held] = export.json()["authenticators"]
    assert held["kind"] == "Application d'authentification" and held["label"] == "Tél"
    assert key.replace(" ", "") not in export.text


async def test_login_asks_for_the_app_first_sends_no_code_and_records_what_proved_it(
    site: Portal, account: dict[str, Any], person: Any, clock: FrozenClock
) -> None:
    key = await enrol_totp(site, clock)
    await logout(site)
    sent_before = len(await site.outbox("login_code"))
    clock.advance(seconds=31)
    assert await password_step(site, person) == "/connexion/methode/totp"
    assert len(await site.outbox("login_code")) == sent_before  # no code unless the person asks for one
    page = await site.get("/connexion/methode/totp")
    assert page.status_code == 200 and "Code de sécurité par e-mail ou SMS" in text_of(page)  # the fallback
    r = await site.post("/connexion/methode/totp", {"code": code_now(key, clock)})
    assert r.status_code == 303 and r.headers["location"] == "/espace-prive", field_errors(r)
    [data] = [d for d in await session_data(site) if d.get("account_id") == account["id"]]
    assert data["amr"] == ["pwd", "otp", "mfa"] and data["aal"] == 2 and data["auth_via"] == "totp"
    assert not data["phishing_resistant"]


async def session_data(portal: Portal) -> list[dict[str, Any]]:
    import msgspec

    t = portal.services.database.t.Session
    return [msgspec.json.decode(row["data"]) for row in await t.select(t.data).run()]


async def test_a_code_is_used_once_even_by_two_browsers_at_once(
    site: Portal, portal_factory: Callable[..., Any], account: dict[str, Any], person: Any, clock: FrozenClock
) -> None:
    key = await enrol_totp(site, clock)
    await logout(site)
    clock.advance(seconds=31)
    assert await password_step(site, person) == "/connexion/methode/totp"
    await site.get("/connexion/methode/totp")
    [twin] = await more_portals(portal_factory, site, 1)
    share_cookies(site, twin)  # the same session, replayed from a second connection
    code = code_now(key, clock)
    answers = await asyncio.gather(
        site.post("/connexion/methode/totp", {"code": code}), twin.post("/connexion/methode/totp", {"code": code})
    )
    assert sorted(a.headers.get("location", "") == "/espace-prive" for a in answers) == [False, True]
    # and replayed later, on a new login, the same code opens nothing
    await logout(site)
    assert await password_step(site, person) == "/connexion/methode/totp"
    await site.get("/connexion/methode/totp")
    r = await site.post("/connexion/methode/totp", {"code": code})
    assert r.status_code == 422 and "Ce code a déjà servi." in text_of(r)


async def test_wrong_app_codes_count_with_the_password_failures(
    site: Portal, account: dict[str, Any], person: Any, clock: FrozenClock
) -> None:
    key = await enrol_totp(site, clock)
    await logout(site)
    clock.advance(seconds=31)
    assert await password_step(site, person) == "/connexion/methode/totp"
    limit = site.services.config.security.login_failures_before_delay
    messages = []
    for _ in range(limit + 1):
        await site.get("/connexion/methode/totp")
        r = await site.post("/connexion/methode/totp", {"code": "999999"})
        assert r.status_code == 422
        messages.append(text_of(r))
    assert "Trop de tentatives" in messages[-1]
    await site.get("/connexion/methode/totp")
    r = await site.post("/connexion/methode/totp", {"code": code_now(key, clock)})
    assert r.status_code == 422 and "Trop de tentatives" in text_of(r)  # even the right code waits
    assert (await audit_kinds(site, account["id"])).count("authenticator.failed") == limit + 2


async def test_a_skewed_clock_gets_one_step_either_side_and_no_more(
    site: Portal, account: dict[str, Any], person: Any, clock: FrozenClock
) -> None:
    key = await enrol_totp(site, clock)
    await logout(site)
    clock.advance(minutes=5)
    assert await password_step(site, person) == "/connexion/methode/totp"
    await site.get("/connexion/methode/totp")
    r = await site.post("/connexion/methode/totp", {"code": code_now(key, clock, offset_steps=-3)})
    assert r.status_code == 422
    await site.get("/connexion/methode/totp")
    r = await site.post("/connexion/methode/totp", {"code": code_now(key, clock, offset_steps=1)})
    assert r.status_code == 303 and r.headers["location"] == "/espace-prive"


async def test_a_half_login_reaches_neither_the_security_page_nor_another_s_method(
    site: Portal, account: dict[str, Any], person: Any, clock: FrozenClock
) -> None:
    await enrol_totp(site, clock)
    await logout(site)
    assert await password_step(site, person) == "/connexion/methode/totp"
    for path in ("/mon-compte/securite", "/mon-compte/securite/totp/ajouter", "/mon-compte/securite/confirmer"):
        r = await site.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/connexion", path
    # an authenticator the person does not hold, or that does not exist, is no way in
    for name in ("recovery_code", "inconnu", "code"):
        r = await site.get(f"/connexion/methode/{name}")
        assert r.status_code == 303, name


async def test_without_fallback_the_code_page_sends_nothing(
    portal_factory: Callable[..., Any], make_config: Callable[..., Any], db_url: str, clock: FrozenClock
) -> None:
    site = await portal_with(
        portal_factory, make_config, db_url, plugins=TOTP, extra="[authentication]\ncode_fallback = false\n"
    )
    from guichet.plugins.registry_tables import importer as registry_import

    await registry_import.generate_demo_registry(site.services.database, count=0, seed=1)
    person = registry_import.DEMO_PERSONS["particulier_vitale"]
    await activate(site, person)
    await enrol_totp(site, clock)
    await logout(site)
    assert await password_step(site, person) == "/connexion/methode/totp"
    page = await site.get("/connexion/methode/totp")
    assert "Code de sécurité par e-mail ou SMS" not in text_of(page)
    sent = len(await site.outbox("login_code"))
    await site.get("/connexion/code")
    r = await site.post("/connexion/code", {"action": "renvoyer", "channel": "email"})
    assert "n'est pas disponible pour votre compte" in text_of(r)
    assert len(await site.outbox("login_code")) == sent


async def test_removal_needs_the_password_again_and_only_removes_one_s_own(
    site: Portal,
    portal_factory: Callable[..., Any],
    account: dict[str, Any],
    clock: FrozenClock,
) -> None:
    await enrol_totp(site, clock)
    [row] = await credentials(site, account["id"])
    clock.advance(minutes=10)  # the re-authentication is over
    await site.get("/mon-compte/securite")
    r = await site.post(f"/mon-compte/securite/totp/{row['id']}/supprimer", {})
    assert r.status_code == 303 and r.headers["location"].startswith("/mon-compte/securite/confirmer")
    assert len(await credentials(site, account["id"])) == 1
    await reauthenticate(site)
    r = await site.post(f"/mon-compte/securite/totp/{row['id'] + 1000}/supprimer", {})
    assert r.status_code == 200 and "suppression enregistrée" not in text_of(r)
    r = await site.post(f"/mon-compte/securite/totp/{row['id']}/supprimer", {})
    assert r.status_code == 200 and "suppression enregistrée" in text_of(r)
    assert await credentials(site, account["id"]) == []
    notices = await site.outbox("authenticator_changed_notice")
    assert [n["payload"]["change"] for n in notices] == ["added", "removed"]
    assert "authenticator.removed" in await audit_kinds(site, account["id"])


async def test_a_recovery_code_logs_in_once_then_a_new_authenticator_comes_first(
    site: Portal, account: dict[str, Any], person: Any, clock: FrozenClock
) -> None:
    await enrol_totp(site, clock)
    await reauthenticate(site, "/mon-compte/securite/recovery_code/ajouter")
    page = await site.get("/mon-compte/securite/recovery_code/ajouter")
    assert page.status_code == 200
    r = await site.post("/mon-compte/securite/recovery_code/ajouter", {})
    assert r.status_code == 200 and "un courrier vous sera envoyé" in text_of(r), field_errors(r)
    [letter] = await site.outbox("recovery_codes_letter")
    codes = letter["payload"]["codes"]
    assert len(codes) == 10
    await logout(site)
    # the phone is lost: the person chooses the recovery codes instead of the app
    assert await password_step(site, person) == "/connexion/methode/totp"
    page = await site.get("/connexion/methode/totp")
    assert "Codes de secours par courrier" in text_of(page)
    await site.get("/connexion/methode/recovery_code")
    r = await site.post("/connexion/methode/recovery_code", {"code": codes[0]})
    assert r.status_code == 303 and r.headers["location"] == "/mon-compte/securite", field_errors(r)
    r = await site.get("/espace-prive")
    assert r.status_code == 303 and r.headers["location"] == "/mon-compte/securite"
    page = await site.get("/mon-compte/securite")
    assert "Vous venez d'utiliser un code de secours." in text_of(page)
    await logout(site)
    assert await password_step(site, person) == "/connexion/methode/totp"
    await site.get("/connexion/methode/recovery_code")
    r = await site.post("/connexion/methode/recovery_code", {"code": codes[0]})
    assert r.status_code == 422  # used once


async def test_no_key_code_or_secret_in_any_log_line(
    site: Portal, account: dict[str, Any], person: Any, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    key = await enrol_totp(site, clock)
    await logout(site)
    clock.advance(seconds=31)
    await password_step(site, person)
    await site.get("/connexion/methode/totp")
    code = code_now(key, clock)
    await site.post("/connexion/methode/totp", {"code": code})
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert key not in logged and key[:16] not in logged and code not in logged


async def test_the_security_page_offers_the_stronger_ones_and_tells_the_risks_of_sms(
    site: Portal, account: dict[str, Any]
) -> None:
    page = text_of(await site.get("/mon-compte/securite"))
    for offered in ("Application d'authentification", "Codes de secours par courrier", "Code de sécurité par e-mail"):
        assert offered in page, offered
    assert "Un code par SMS peut être détourné" in page
    assert "une clé d'accès ou une application d'authentification vous protège mieux" in page
