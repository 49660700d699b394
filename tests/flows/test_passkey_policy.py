"""What a caisse asks of passkeys, over HTTP with the software passkey: a status that must use a
phishing-resistant factor (``[authentication] phishing_resistant_statuses``), the per-address count of
whole logins, and what a passkey login tells the services (``amr``, ``acr``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from guichet.core.sessions import SessionData
from guichet.web.oidc.provider import (
    ACR_CODE,
    ACR_PHISHING_RESISTANT,
    ACR_TRUSTED_BROWSER,
    acr_of,
    amr_of,
)
from tests.conftest import Portal, error_messages, portal_config_text
from tests.flows.test_passkey import ORIGIN, log_out, options_of
from tests.plugins.softkey import SoftPasskey
from tests.security.support import PASSWORD, login, make_account, password_step, person


async def passkey_portal(
    portal_factory: Callable[..., Any],
    make_config: Callable[..., Any],
    db_url: str,
    authentication: str,
    *,
    security: str = "",
) -> Portal:
    base = portal_config_text(f"\n[authentication]\n{authentication}\n").replace(
        '"password_msa"]', '"password_msa", "authenticator_passkey"]'
    )
    base = base.replace("[security]\n", f"[security]\n{security}\n", 1)
    return await portal_factory(make_config(database_url=db_url, base=base))  # type: ignore[no-any-return]


async def add_passkey(portal: Portal, key: SoftPasskey) -> None:
    await portal.get("/mon-compte/securite/confirmer")
    r = await portal.post(
        "/mon-compte/securite/confirmer",
        {"current_password": PASSWORD, "suite": "/mon-compte/securite/passkey/ajouter"},
    )
    assert r.status_code == 303, error_messages(r)
    page = await portal.get("/mon-compte/securite/passkey/ajouter")
    r = await portal.post("/mon-compte/securite/passkey/ajouter", {"credential": key.create(options_of(page.text))})
    assert r.status_code == 200 and "ajout enregistré" in r.text, error_messages(r)


async def session_of_account(portal: Portal, account_id: int) -> SessionData:
    t = portal.services.database.t.Session
    found = [msgspec.json.decode(row["data"], type=SessionData) for row in await t.select(t.data).run()]
    [data] = [d for d in found if d.account_id == account_id]
    return data


async def assert_forged_answers_are_slowed(portal: Portal, answers: int = 5) -> None:
    """Forged whole-login answers from this address: the first is judged, the last is slowed."""
    said = []
    for _ in range(answers):
        await portal.get("/connexion/sans-mot-de-passe/passkey")
        r = await portal.post("/connexion/sans-mot-de-passe/passkey", {"credential": '{"id": "forged"}'})
        assert r.status_code == 422
        said.append(" ".join(error_messages(r)))
    assert "Trop de tentatives" not in said[0]
    assert "Trop de tentatives" in said[-1]


@pytest.mark.asyncio
async def test_a_status_that_requires_a_passkey_adds_one_first_then_uses_nothing_else(
    portal_factory: Callable[..., Any], make_config: Callable[..., Any], db_url: str
) -> None:
    who = person()
    portal = await passkey_portal(
        portal_factory, make_config, db_url, f'phishing_resistant_statuses = ["{who.status}"]'
    )
    account = await make_account(portal)
    # nothing phishing-resistant yet: the code lets the person in, but only as far as adding a passkey
    r = await login(portal, who.identifier)
    assert r.headers["location"] == "/mon-compte/securite"
    for elsewhere in ("/espace-prive", "/mon-compte", "/mon-compte/mes-donnees"):
        r = await portal.get(elsewhere)
        assert r.status_code == 303 and r.headers["location"] == "/mon-compte/securite", elsewhere
    page = await portal.get("/mon-compte/securite")
    assert "Votre compte doit être protégé par une clé d'accès." in page.text
    key = SoftPasskey(ORIGIN)
    await add_passkey(portal, key)
    assert (await portal.get("/espace-prive")).status_code == 200
    await log_out(portal)

    # from now on the passkey, and nothing else: no code offered, none sent when asked for
    r = await password_step(portal, who.identifier, PASSWORD)
    assert r.headers["location"] == "/connexion/methode/passkey"
    page = await portal.get("/connexion/methode/passkey")
    assert "Code de sécurité par e-mail ou SMS" not in page.text
    sent = len(await portal.outbox("login_code"))
    await portal.get("/connexion/code")
    r = await portal.post("/connexion/code", {"action": "renvoyer", "channel": "email"})
    assert "pas disponible pour votre compte" in r.text
    assert len(await portal.outbox("login_code")) == sent
    page = await portal.get("/connexion/methode/passkey")
    r = await portal.post("/connexion/methode/passkey", {"credential": key.get(options_of(page.text))})
    assert r.status_code == 303 and r.headers["location"] == "/espace-prive", error_messages(r)
    data = await session_of_account(portal, account["id"])
    assert data.amr == ["pwd", "swk", "user", "mfa"] and data.aal == 2 and data.phishing_resistant
    assert acr_of(data) == ACR_PHISHING_RESISTANT and amr_of(data) == data.amr


@pytest.mark.asyncio
async def test_whole_logins_are_counted_per_address(
    portal_factory: Callable[..., Any], make_config: Callable[..., Any], db_url: str
) -> None:
    portal = await passkey_portal(
        portal_factory, make_config, db_url, "passwordless = true", security="per_client_attempts_per_hour = 10"
    )
    await assert_forged_answers_are_slowed(portal)


@pytest.mark.asyncio
async def test_right_whole_logins_from_one_address_give_their_try_back(
    portal_factory: Callable[..., Any], make_config: Callable[..., Any], db_url: str
) -> None:
    """Many people log in from one address (an office, a mobile operator's NAT): a passkey that logs
    in gives its try back, as a right password does; wrong answers from there are still slowed."""
    portal = await passkey_portal(
        portal_factory, make_config, db_url, "passwordless = true", security="per_client_attempts_per_hour = 12"
    )
    who = person()
    await make_account(portal)
    await login(portal, who.identifier)
    key = SoftPasskey(ORIGIN)
    await add_passkey(portal, key)
    await log_out(portal)
    for n in range(8):  # twice what the address may try before it is slowed (12 // 3)
        page = await portal.get("/connexion/sans-mot-de-passe/passkey")
        r = await portal.post("/connexion/sans-mot-de-passe/passkey", {"credential": key.get(options_of(page.text))})
        assert r.status_code == 303 and r.headers["location"] == "/espace-prive", (n, error_messages(r))
        await log_out(portal)
    await assert_forged_answers_are_slowed(portal)


def test_what_a_login_tells_the_services() -> None:
    def session(**fields: Any) -> SessionData:
        return SessionData(created_ms=0, seen_ms=0, account_id=1, level="full", **fields)

    by_code = session(auth_via="code", amr=["pwd", "otp", "mfa"], aal=1)
    by_app = session(auth_via="totp", amr=["pwd", "otp", "mfa"], aal=2)
    by_passkey = session(auth_via="passkey", amr=["swk", "user", "mfa"], aal=2, phishing_resistant=True)
    trusted = session(auth_via="trusted_browser", amr=["pwd"], aal=1)
    older = session(auth_via="code")  # a session from before amr was recorded
    assert [acr_of(s) for s in (by_code, by_app, by_passkey, trusted, older)] == [
        ACR_CODE,
        ACR_CODE,
        ACR_PHISHING_RESISTANT,
        ACR_TRUSTED_BROWSER,
        ACR_CODE,
    ]
    assert amr_of(older) == ["pwd", "otp", "mfa"] and amr_of(trusted) == ["pwd"]


@pytest.mark.asyncio
async def test_the_services_wait_for_the_enrolment_a_status_requires(
    portal_factory: Callable[..., Any], make_config: Callable[..., Any], db_url: str, tmp_path: Any
) -> None:
    """A login that must add a passkey first opens no service meanwhile: forward auth says 401 and
    an OpenID Connect request goes to the enrolment, then back to the service once it is done."""
    from tests.oidc.support import ISSUER, authorize_url, oidc_extra, query_of

    who = person()
    portal = await passkey_portal(
        portal_factory, make_config, db_url, f'phishing_resistant_statuses = ["{who.status}"]\n' + oidc_extra(tmp_path)
    )
    await make_account(portal)
    r = await login(portal, who.identifier)
    assert r.headers["location"] == "/mon-compte/securite"
    verdict = await portal.client.get("/auth/verifier", headers={"x-original-uri": "/attestations/"})
    assert verdict.status_code == 401 and "x-guichet-jeton" not in verdict.headers
    assert verdict.headers["location"] == f"{ISSUER}/connexion?retour=%2Fattestations%2F"
    request = authorize_url()
    r = await portal.get(request)
    assert r.status_code == 303 and r.headers["location"] == "/mon-compte/securite", "a code went to the service"
    r = await portal.get(authorize_url(prompt="none"))
    assert query_of(r.headers["location"])["error"] == "interaction_required"
    await add_passkey(portal, SoftPasskey(ORIGIN))
    assert (await portal.client.get("/auth/verifier")).status_code == 200
    r = await portal.get("/espace-prive")  # the waiting service, once the passkey is there
    assert r.status_code == 303 and r.headers["location"].startswith("/oidc/autoriser?")
    r = await portal.get(r.headers["location"])
    assert "code" in query_of(r.headers["location"])
