"""Mon compte, "Mes données": what the account holds as a page and a JSON file (never a secret), and
the closure of the online account (the password again, notices by email and post, the journal
kept, the registry untouched, a new registration possible); and what an attacker would try."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.conftest import Portal
from tests.flows.helpers import (
    NEW_PASSWORD,
    account_of,
    activate,
    field_errors,
    login,
    logout,
    more_portals,
    register,
    share_cookies,
    visible_text,
)


@pytest.fixture
async def julien(portal: Portal, demo_people: Any) -> Any:
    return demo_people.DEMO_PERSONS["particulier_vitale"]


async def audit_of(portal: Portal, kind: str) -> list[dict[str, Any]]:
    t = portal.services.database.t.AuditLog
    return await t.select().where(t.kind == kind).order_by(t.id).run()


async def test_my_data_shows_and_exports_what_the_account_holds(portal: Portal, julien: Any) -> None:
    account = await activate(portal, julien)
    await logout(portal)
    assert await login(portal, julien.identifier, NEW_PASSWORD, trust=True) == "/espace-prive"
    r = await portal.get("/mon-compte")
    assert "consulter et télécharger mes données" in r.text and "fermer mon espace privé" in r.text
    r = await portal.get("/mon-compte/mes-donnees")
    assert r.status_code == 200
    text = visible_text(r)
    for wanted in (
        account["identifier"],
        account["last_name"],
        julien.email,
        "vérifiée",
        "Particulier",
        "Connexion réussie",
        "Mot de passe modifié",
        "Coordonnées confirmées",
        "adresse IP 203.0.113.7",
        "Navigateur",
        "Télécharger mes données (fichier JSON)",
    ):
        assert wanted in text, wanted
    assert julien.birth_date.strftime("%d/%m/%Y") in text

    r = await portal.get("/mon-compte/mes-donnees.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert r.headers["content-disposition"].startswith('attachment; filename="mes-donnees-')
    assert r.headers["cache-control"] == "no-store"
    data = json.loads(r.content)
    assert set(data) == {
        "caisse",
        "exported_at",
        "identity",
        "contacts",
        "account_created_at",
        "password_changed_at",
        "password_is_temporary",
        "contacts_confirmed_at",
        "trusted_browsers",
        "authenticators",
        "recent_security_events",
    }
    assert data["authenticators"] == []  # codes by email and SMS only: nothing enrolled
    assert data["identity"]["identifier"] == account["identifier"]
    assert data["identity"]["postal_address"], "the address letters go to, as the registry knows it"
    assert data["contacts"]["email"] == julien.email and data["contacts"]["email_verified"] is True
    assert len(data["trusted_browsers"]) == 1
    kinds = {e["kind"] for e in data["recent_security_events"]}
    assert {"login.succeeded", "password.changed", "trusted_browser.added"} <= kinds
    assert [row["account_id"] for row in await audit_of(portal, "account.exported")] == [account["id"]]


async def test_the_export_never_holds_a_secret(portal: Portal, julien: Any) -> None:
    await activate(portal, julien)
    await logout(portal)
    await login(portal, julien.identifier, NEW_PASSWORD, trust=True)
    account = await account_of(portal, julien.identifier)
    assert account is not None
    body = (await portal.get("/mon-compte/mes-donnees.json")).text
    page = (await portal.get("/mon-compte/mes-donnees")).text
    t = portal.services.database.t
    secrets = [account["password_hash"], NEW_PASSWORD]
    secrets += [row["token_hash"] for row in await t.TrustedBrowser.select(t.TrustedBrowser.token_hash).run()]
    secrets += [row["code_hmac"] for row in await t.OneTimeCode.select(t.OneTimeCode.code_hmac).run()]
    secrets += [
        m["payload"].get("code") or m["payload"].get("password")
        for m in await portal.outbox()
        if m["payload"] and ("code" in m["payload"] or "password" in m["payload"])
    ]
    # every cookie but the remembered code channel, whose value is a channel's name ("email"), no secret
    secrets += [c.value for c in portal.client.cookies.jar if c.value and "code_channel" not in c.name]
    for secret in filter(None, secrets):
        assert str(secret) not in body and str(secret) not in page
    for word in ("hash", "hmac", "token", "credentials_version", "argon2"):
        assert word not in body


async def test_my_data_needs_a_full_login(portal: Portal, julien: Any) -> None:
    for path in ("/mon-compte/mes-donnees", "/mon-compte/mes-donnees.json", "/mon-compte/fermeture"):
        r = await portal.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/connexion"
    assert await register(portal, julien) == "termine"
    [temporary] = await portal.outbox("temporary_password")
    assert await login(portal, julien.identifier, temporary["payload"]["password"]) == "/changement-mot-de-passe"
    r = await portal.get("/mon-compte/mes-donnees.json")  # the temporary password still to personalise
    assert r.status_code == 303 and r.headers["location"].partition("?")[0] == "/changement-mot-de-passe"


async def test_closing_the_account_notifies_keeps_the_journal_and_allows_a_new_registration(
    portal: Portal, julien: Any
) -> None:
    account = await activate(portal, julien)
    from guichet.plugins.registry_tables.tables import tables_of

    t = portal.services.database.t
    registry = tables_of(portal.services.database).RegistryPerson
    registry_before = await registry.select().where(registry.nir == julien.identifier).run()
    journal_before = len(await t.AuditLog.select().where(t.AuditLog.account_id == account["id"]).run())
    r = await portal.get("/mon-compte/fermeture")
    assert r.status_code == 200 and "Fermer mon espace privé" in r.text
    r = await portal.post("/mon-compte/fermeture", {"current_password": NEW_PASSWORD})
    assert r.status_code == 303 and r.headers["location"] == "/espace-ferme", field_errors(r)
    r = await portal.get("/espace-ferme")
    assert "Votre espace privé est fermé" in r.text

    assert await account_of(portal, julien.identifier) is None
    [row] = await t.Account.select().where(t.Account.id == account["id"]).run()
    assert (row["identifier_kind"], row["email"], row["last_name"], row["password_hash"]) == ("closed", None, "", "!")
    assert await t.TrustedBrowser.select().where(t.TrustedBrowser.account_id == account["id"]).run() == []
    [email] = await portal.outbox("account_closed_notice")
    assert email["channel"] == "email" and email["recipient"]["email"] == julien.email
    [letter] = await portal.outbox("account_closed_letter")
    assert letter["channel"] == "postal" and letter["recipient"]["address"]["lines"]
    assert await registry.select().where(registry.nir == julien.identifier).run() == registry_before
    journal = await t.AuditLog.select().where(t.AuditLog.account_id == account["id"]).run()
    assert len(journal) == journal_before + 1 and journal[-1]["kind"] == "account.closed"

    # the session ended; the old password opens nothing
    r = await portal.get("/espace-prive")
    assert r.headers["location"] == "/connexion"
    await portal.get("/connexion")
    r = await portal.post("/connexion", {"identifier": julien.identifier, "password": NEW_PASSWORD})
    assert r.status_code == 422
    # the person can register again: a new account, with a new id
    again = await activate(portal, julien, password="Un-Autre-Mot-De-Passe-2027")
    assert again["id"] != account["id"] and again["identifier"] == account["identifier"]


# --- the attacker's tests ----------------------------------------------------------------------------------


async def test_a_stolen_session_cannot_close_without_the_password(
    portal: Portal, julien: Any, portal_factory: Any
) -> None:
    account = await activate(portal, julien)
    thief = (await more_portals(portal_factory, portal, 1))[0]
    share_cookies(portal, thief)
    for form in ({}, {"current_password": ""}, {"current_password": "Mauvais-Mot-De-Passe-1"}):
        r = await thief.post("/mon-compte/fermeture", form)
        assert r.status_code == 422 and "current_password" in field_errors(r)
    assert (await account_of(portal, julien.identifier))["id"] == account["id"]  # type: ignore[index]
    assert await portal.outbox("account_closed_notice") == []
    # guesses are counted with the login's: the pause comes, even with the right password
    for _ in range(portal.services.config.security.login_failures_before_delay):
        await thief.post("/mon-compte/fermeture", {"current_password": "Encore-Faux-2026!"})
    r = await thief.post("/mon-compte/fermeture", {"current_password": NEW_PASSWORD})
    assert r.status_code == 422 and "Trop de tentatives" in field_errors(r)["current_password"]
    assert await account_of(portal, julien.identifier) is not None


async def test_parallel_closures_close_once_and_notify_once(portal: Portal, julien: Any, portal_factory: Any) -> None:
    await activate(portal, julien)
    others = await more_portals(portal_factory, portal, 3)
    for other in others:
        share_cookies(portal, other)
    answers = await asyncio.gather(
        *(p.post("/mon-compte/fermeture", {"current_password": NEW_PASSWORD}) for p in [portal, *others])
    )
    closed = [r for r in answers if r.status_code == 303 and r.headers["location"] == "/espace-ferme"]
    assert len(closed) == 1, [(r.status_code, r.headers.get("location")) for r in answers]
    assert len(await portal.outbox("account_closed_notice")) == 1
    assert len(await portal.outbox("account_closed_letter")) == 1
    assert len(await audit_of(portal, "account.closed")) == 1


async def test_a_closed_account_id_is_never_given_to_a_new_account(
    portal: Portal, julien: Any, demo_people: Any
) -> None:
    """A session that outlived the closure must not open the next account created (SQLite would
    reuse the highest row id of a deleted row): the closed row stays as an empty tombstone."""
    account = await activate(portal, julien)
    await portal.post("/mon-compte/fermeture", {"current_password": NEW_PASSWORD})
    other = demo_people.DEMO_PERSONS["exploitant"]
    fresh = await activate(portal, other)
    assert fresh["id"] > account["id"]
