"""After login over HTTP: forced personalisation, contact confirmation, Mon compte, and what a half login reaches."""

from __future__ import annotations

import re
from typing import Any

import pytest

from guichet.core.defaults import CLASSES_MESSAGE
from tests.conftest import Portal
from tests.flows.helpers import (
    NEW_PASSWORD,
    account_of,
    activate,
    field_error,
    login,
    logout,
    more_portals,
    register,
    temporary_password,
    text_of,
)

pytestmark = pytest.mark.asyncio

COMMON = "Ce mot de passe est trop courant. Choisissez-en un autre."
CONTEXT = (
    "Votre mot de passe ne doit pas contenir votre nom, votre prénom, votre numéro de Sécurité Sociale, "
    "votre date de naissance ni le nom de votre caisse."
)
MISMATCH = "Les deux mots de passe ne sont pas identiques."
WRONG_CURRENT = "Le mot de passe actuel est incorrect."
OTHER_PASSWORD = "Lampe-Orage-77-Brume?"


@pytest.fixture
async def julien(portal: Portal, demo_people: Any) -> Any:
    return demo_people.DEMO_PERSONS["particulier_vitale"]


@pytest.fixture
async def first_login(portal: Portal, julien: Any) -> str:
    """Julien registered and logged in with his temporary password: personalisation is next."""
    assert await register(portal, julien) == "termine"
    temporary = await temporary_password(portal)
    assert await login(portal, julien.identifier, temporary) == "/changement-mot-de-passe"
    await portal.get("/changement-mot-de-passe")
    return temporary


@pytest.fixture
async def logged_in(portal: Portal, julien: Any) -> dict[str, Any]:
    """Julien with a personal password and confirmed contacts, logged in."""
    account = await activate(portal, julien)
    await portal.get("/mon-compte")
    return account


async def messages_to(portal: Portal, template: str) -> list[dict[str, Any]]:
    return await portal.outbox(template)


# --- forced personalisation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("Ab1!xyz", CLASSES_MESSAGE),  # too short
        ("motsansclasse-tresl0ng", CLASSES_MESSAGE),  # no upper case
        ("ABCDEFGHIJ12!", CLASSES_MESSAGE),  # no lower case
        ("Abcdefghijkl!", CLASSES_MESSAGE),  # no digit
        ("Abcdefghijk12", CLASSES_MESSAGE),  # no special character
        ("Azerty123!", COMMON),
        ("Motdepasse1!", COMMON),
        ("Lefebvre#2024x", CONTEXT),
        ("Julien#2024xyZ", CONTEXT),
        ("Xy#14051985ab", CONTEXT),
        ("Xy#1850578006084!", CONTEXT),
    ],
)
async def test_personalisation_refuses_what_the_policy_forbids(
    portal: Portal, julien: Any, first_login: str, password: str, message: str
) -> None:
    r = await portal.post("/changement-mot-de-passe", {"new_password": password, "confirm_password": password})
    assert r.status_code == 422
    assert message in field_error(r, "new_password")
    assert password not in text_of(r)
    account = await account_of(portal, julien.identifier)
    assert account is not None and account["password_is_temporary"]
    assert await portal.services.passwords.verify(account["password_hash"], first_login)


async def test_personalisation_refuses_a_confirmation_that_differs(
    portal: Portal, julien: Any, first_login: str
) -> None:
    r = await portal.post(
        "/changement-mot-de-passe", {"new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD + "x"}
    )
    assert r.status_code == 422 and field_error(r, "confirm_password") == MISMATCH
    r = await portal.post("/changement-mot-de-passe", {"new_password": NEW_PASSWORD, "confirm_password": ""}, htmx=True)
    assert r.status_code == 422 and r.text.strip().startswith('<section id="step"')
    assert field_error(r, "confirm_password") == MISMATCH
    assert (await account_of(portal, julien.identifier))["password_is_temporary"]  # type: ignore[index]


async def test_personalisation_refuses_the_temporary_password_itself(portal: Portal, first_login: str) -> None:
    r = await portal.post("/changement-mot-de-passe", {"new_password": first_login, "confirm_password": first_login})
    assert r.status_code == 422 and "différent" in field_error(r, "new_password")


async def test_the_meter_says_faible_for_abc_and_fort_for_a_long_passphrase(portal: Portal, first_login: str) -> None:
    r = await portal.post("/mot-de-passe/force", {"new_password": "abc"}, htmx=True)
    assert r.status_code == 200 and r.text.strip().startswith('<div id="meter"')
    assert re.search(r'<span class="verdict">faible</span>', r.text)
    r = await portal.post("/mot-de-passe/force", {"new_password": "Quartz-Violon-Marmotte-31-Escalier!"}, htmx=True)
    assert re.search(r'<span class="verdict">fort</span>', r.text)
    assert '<ul class="rules">' not in text_of(r)
    r = await portal.post("/mot-de-passe/force", {"new_password": "Azerty123!"}, htmx=True)
    assert COMMON in text_of(r) and '<span class="verdict">fort</span>' not in text_of(r)


async def test_after_personalisation_the_temporary_password_is_refused(
    portal: Portal, julien: Any, first_login: str
) -> None:
    r = await portal.post("/changement-mot-de-passe", {"new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    assert r.status_code == 303 and r.headers["location"] == "/mot-de-passe-modifie"
    r = await portal.get("/mot-de-passe-modifie")
    assert "Votre mot de passe a bien été modifié." in text_of(r) and "confirmer vos coordonnées" in text_of(r)
    account = await account_of(portal, julien.identifier)
    assert account is not None and not account["password_is_temporary"] and account["temporary_expires_at"] is None
    assert await messages_to(portal, "password_changed_notice") == []  # a personalisation is no change to announce
    await logout(portal)
    r = await portal.post("/connexion", {"identifier": julien.identifier, "password": first_login})
    assert r.status_code == 422
    assert await login(portal, julien.identifier, NEW_PASSWORD) == "/confirmation-coordonnees"


async def test_a_temporary_password_leads_only_to_personalisation(portal: Portal, first_login: str) -> None:
    for path in [
        "/espace-prive",
        "/mon-compte",
        "/confirmation-coordonnees",
        "/mon-compte/email",
        "/mon-compte/mot-de-passe",
        "/mot-de-passe-modifie",
    ]:
        r = await portal.get(path)
        assert (
            r.status_code == 303 and r.headers["location"] == "/changement-mot-de-passe?raison=mot-de-passe-temporaire"
        ), path
    r = await portal.post("/confirmation-coordonnees", {"action": "confirmer"})
    assert r.headers["location"] == "/changement-mot-de-passe?raison=mot-de-passe-temporaire"
    r = await portal.get("/changement-mot-de-passe")
    assert "Votre mot de passe est temporaire. Vous devez le personnaliser." in text_of(r)


# --- contact confirmation ------------------------------------------------------------------------------


@pytest.fixture
async def personalised(portal: Portal, julien: Any, first_login: str) -> None:
    r = await portal.post("/changement-mot-de-passe", {"new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    assert r.headers["location"] == "/mot-de-passe-modifie"
    r = await portal.get("/confirmation-coordonnees")
    assert "Pour utiliser Mon espace privé MSA, vous devez confirmer vos coordonnées." in text_of(r)


async def test_the_landline_is_saved_at_once(portal: Portal, julien: Any, personalised: None) -> None:
    r = await portal.get("/confirmation-coordonnees?modifier=landline", htmx=True)
    assert r.status_code == 200 and 'name="field" value="landline"' in text_of(r)
    r = await portal.post(
        "/confirmation-coordonnees", {"action": "modifier", "field": "landline", "value": "05 59 12 34 56"}
    )
    assert r.status_code == 200 and "Votre coordonnée a été enregistrée." in text_of(r)
    assert "05 59 12 34 56" in text_of(r)
    assert (await account_of(portal, julien.identifier))["landline"] == "+33559123456"  # type: ignore[index]
    r = await portal.post("/confirmation-coordonnees", {"action": "modifier", "field": "landline", "value": "12"})
    assert r.status_code == 422 and field_error(r, "value")
    assert (await account_of(portal, julien.identifier))["landline"] == "+33559123456"  # type: ignore[index]


async def test_a_new_email_waits_for_the_code_sent_to_it(portal: Portal, julien: Any, personalised: None) -> None:
    new = "julien.nouveau@demo.invalid"
    r = await portal.post(
        "/confirmation-coordonnees",
        {"action": "modifier", "field": "email", "value": new, "current_password": NEW_PASSWORD},
    )
    assert r.status_code == 200 and "Vérification de votre nouvelle coordonnée" in text_of(r)
    [code_message] = await messages_to(portal, "contact_code")
    assert code_message["channel"] == "email" and code_message["recipient"]["email"] == new
    assert (await account_of(portal, julien.identifier))["email"] == julien.email  # type: ignore[index]

    right = code_message["payload"]["code"]
    wrong = "000000" if right != "000000" else "111111"
    r = await portal.post("/confirmation-coordonnees", {"action": "code", "code": wrong})
    assert r.status_code == 422 and "Le code saisi est incorrect." in field_error(r, "code")
    assert (await account_of(portal, julien.identifier))["email"] == julien.email  # type: ignore[index]
    assert await messages_to(portal, "email_changed_notice") == []

    r = await portal.post("/confirmation-coordonnees", {"action": "code", "code": right})
    assert r.status_code == 200 and "Votre coordonnée a été vérifiée et enregistrée." in text_of(r)
    account = await account_of(portal, julien.identifier)
    assert account is not None and account["email"] == new and account["email_verified"]
    [notice] = await messages_to(portal, "email_changed_notice")
    assert notice["recipient"]["email"] == julien.email
    r = await portal.post("/confirmation-coordonnees", {"action": "code", "code": right})
    assert (await account_of(portal, julien.identifier))["email"] == new  # type: ignore[index]


async def test_a_new_mobile_waits_for_the_code_sent_to_it_by_sms(
    portal: Portal, julien: Any, personalised: None
) -> None:
    r = await portal.post(
        "/confirmation-coordonnees",
        {"action": "modifier", "field": "mobile", "value": "07 81 23 45 67", "current_password": NEW_PASSWORD},
    )
    assert r.status_code == 200 and "par SMS au nouveau numéro" in text_of(r)
    [code_message] = await messages_to(portal, "contact_code")
    assert code_message["channel"] == "sms" and code_message["recipient"]["mobile"] == "+33781234567"
    assert (await account_of(portal, julien.identifier))["mobile"] == "+33600000101"  # type: ignore[index]
    r = await portal.post("/confirmation-coordonnees", {"action": "code", "code": code_message["payload"]["code"]})
    assert r.status_code == 200 and "07 81 23 45 67" in text_of(r)
    account = await account_of(portal, julien.identifier)
    assert account is not None and account["mobile"] == "+33781234567" and account["mobile_verified"]
    r = await portal.post(
        "/confirmation-coordonnees", {"action": "modifier", "field": "mobile", "value": "01 23 45 67 89"}
    )
    assert r.status_code == 422 and "n'est pas un numéro de téléphone mobile" in field_error(r, "value")


async def test_a_bad_email_is_refused_next_to_the_field(portal: Portal, julien: Any, personalised: None) -> None:
    r = await portal.post("/confirmation-coordonnees", {"action": "modifier", "field": "email", "value": "julien@"})
    assert r.status_code == 422 and "Saisissez une adresse email valide" in field_error(r, "value")
    assert await messages_to(portal, "contact_code") == []


async def test_an_unknown_contact_field_cannot_be_changed(portal: Portal, julien: Any, personalised: None) -> None:
    r = await portal.post("/confirmation-coordonnees", {"action": "modifier", "field": "password_hash", "value": "x"})
    assert r.status_code == 422 and "Cette coordonnée ne peut pas être modifiée." in text_of(r)
    account = await account_of(portal, julien.identifier)
    assert account is not None and account["password_hash"].startswith("$argon2id$")


async def test_confirming_the_contacts_leads_to_the_espace_prive(
    portal: Portal, julien: Any, personalised: None
) -> None:
    r = await portal.get("/espace-prive")
    assert r.headers["location"] == "/confirmation-coordonnees?raison=coordonnees-a-confirmer"
    r = await portal.post("/confirmation-coordonnees", {"action": "confirmer"})
    assert r.status_code == 303 and r.headers["location"] == "/espace-prive"
    r = await portal.get("/espace-prive")
    assert r.status_code == 200 and "Bonjour Julien LEFEBVRE" in text_of(r)
    assert (await account_of(portal, julien.identifier))["contacts_confirmed_at"] is not None  # type: ignore[index]


# --- Mon compte ---------------------------------------------------------------------------------------


async def test_changing_the_password_needs_the_current_one(
    portal: Portal, julien: Any, logged_in: dict[str, Any]
) -> None:
    await portal.get("/mon-compte/mot-de-passe")
    r = await portal.post(
        "/mon-compte/mot-de-passe",
        {"current_password": "Pas-Le-Bon-1!", "new_password": OTHER_PASSWORD, "confirm_password": OTHER_PASSWORD},
    )
    assert r.status_code == 422 and field_error(r, "current_password") == WRONG_CURRENT
    account = await account_of(portal, julien.identifier)
    assert account is not None and account["password_hash"] == logged_in["password_hash"]
    r = await portal.post(
        "/mon-compte/mot-de-passe",
        {"current_password": NEW_PASSWORD, "new_password": "Azerty123!", "confirm_password": "Azerty123!"},
    )
    assert r.status_code == 422 and COMMON in field_error(r, "new_password")


async def test_changing_the_password_ends_the_other_sessions(
    portal: Portal, julien: Any, logged_in: dict[str, Any], portal_factory: Any
) -> None:
    [other] = await more_portals(portal_factory, portal, 1)
    assert await login(other, julien.identifier, NEW_PASSWORD) == "/espace-prive"
    assert (await other.get("/espace-prive")).status_code == 200
    await portal.get("/mon-compte/mot-de-passe")
    r = await portal.post(
        "/mon-compte/mot-de-passe",
        {"current_password": NEW_PASSWORD, "new_password": OTHER_PASSWORD, "confirm_password": OTHER_PASSWORD},
    )
    assert r.status_code == 303 and r.headers["location"] == "/mot-de-passe-modifie"
    r = await other.get("/espace-prive")
    assert r.status_code == 303 and r.headers["location"] == "/connexion"
    r = await other.get("/mon-compte", htmx=True)
    assert r.headers.get("hx-redirect") == "/connexion"
    r = await portal.get("/espace-prive")  # this session goes on
    assert r.status_code == 200
    [notice] = await portal.outbox("password_changed_notice")
    assert notice["recipient"]["email"] == julien.email
    await logout(portal)
    r = await portal.post("/connexion", {"identifier": julien.identifier, "password": NEW_PASSWORD})
    assert r.status_code == 422
    assert await login(portal, julien.identifier, OTHER_PASSWORD) == "/espace-prive"


async def test_changing_the_password_ends_the_trusted_browsers(
    portal: Portal, julien: Any, logged_in: dict[str, Any]
) -> None:
    await logout(portal)
    await login(portal, julien.identifier, NEW_PASSWORD, trust=True)
    await portal.get("/mon-compte/mot-de-passe")
    await portal.post(
        "/mon-compte/mot-de-passe",
        {"current_password": NEW_PASSWORD, "new_password": OTHER_PASSWORD, "confirm_password": OTHER_PASSWORD},
    )
    await portal.get("/mon-compte")
    await logout(portal)
    r = await portal.post("/connexion", {"identifier": julien.identifier, "password": OTHER_PASSWORD})
    assert r.headers["location"] == "/connexion/code"


async def test_changing_the_email_needs_the_password_and_a_code_to_the_new_address(
    portal: Portal, julien: Any, logged_in: dict[str, Any]
) -> None:
    new = "julien.ailleurs@demo.invalid"
    r = await portal.get("/mon-compte/email")
    assert julien.email in text_of(r)
    r = await portal.post("/mon-compte/email", {"current_password": "Pas-Le-Bon-1!", "value": new})
    assert r.status_code == 422 and field_error(r, "current_password") == WRONG_CURRENT
    assert await portal.outbox("contact_code") == []
    r = await portal.post("/mon-compte/email", {"current_password": NEW_PASSWORD, "value": "pas une adresse"})
    assert r.status_code == 422 and "Saisissez une adresse email valide" in field_error(r, "value")
    assert await portal.outbox("contact_code") == []

    r = await portal.post("/mon-compte/email", {"current_password": NEW_PASSWORD, "value": new})
    assert r.status_code == 200 and "Un code de sécurité vient d'être envoyé à la nouvelle adresse." in text_of(r)
    [code_message] = await portal.outbox("contact_code")
    assert code_message["recipient"]["email"] == new
    right = code_message["payload"]["code"]
    wrong = "000000" if right != "000000" else "111111"
    r = await portal.post("/mon-compte/email", {"action": "code", "code": wrong})
    assert r.status_code == 422 and "Le code saisi est incorrect." in field_error(r, "code")
    assert (await account_of(portal, julien.identifier))["email"] == julien.email  # type: ignore[index]
    r = await portal.post("/mon-compte/email", {"action": "code", "code": right})
    assert r.status_code == 200 and "Votre adresse email a été modifiée." in text_of(r) and new in text_of(r)
    assert (await account_of(portal, julien.identifier))["email"] == new  # type: ignore[index]
    [notice] = await portal.outbox("email_changed_notice")
    assert notice["recipient"]["email"] == julien.email and notice["payload"]["new_email_masked"] == "j…s@demo.invalid"
    await logout(portal)
    await portal.post("/connexion", {"identifier": julien.identifier, "password": NEW_PASSWORD})
    r = await portal.get("/connexion/code")
    assert "j…e@demo.invalid" not in text_of(r) and "j…s@demo.invalid" in text_of(r)


async def test_mon_compte_shows_the_assistance_and_the_account(
    portal: Portal, julien: Any, logged_in: dict[str, Any]
) -> None:
    r = await portal.get("/mon-compte")
    assert r.status_code == 200
    for text in (
        "Email et mot de passe",
        "modifier cet email",
        "modifier mon mot de passe",
        julien.email,
        "01 23 45 67 89",
        "aide@test.invalid",
    ):
        assert text in text_of(r), text


# --- nothing behind login answers a half-logged-in session ----------------------------------------------


def account_routes(portal: Portal) -> list[tuple[str, str]]:
    """Every (method, path) the account pages answer, found on the app itself."""
    found = []
    for route in portal.app.routes:
        for handler in route.route_handlers:
            if not handler.fn.__qualname__.startswith("AccountController."):
                continue
            path = route.path.replace("{browser_id:int}", "1")
            found += [(method, path) for method in sorted(handler.http_methods) if method in ("GET", "POST")]
    return sorted(set(found))


async def test_a_half_logged_in_session_reaches_no_page_behind_login(
    portal: Portal, julien: Any, logged_in: dict[str, Any]
) -> None:
    await login(portal, julien.identifier, NEW_PASSWORD, trust=True)  # a trusted browser to revoke, id 1
    await logout(portal)
    portal.client.cookies.delete("guichet_trusted")
    r = await portal.post("/connexion", {"identifier": julien.identifier, "password": NEW_PASSWORD})
    assert r.headers["location"] == "/connexion/code"
    await portal.get("/connexion/code")
    before = (await portal.outbox(), await account_of(portal, julien.identifier))
    routes = account_routes(portal)
    assert ("POST", "/mon-compte/email") in routes and ("POST", "/mot-de-passe/force") in routes
    assert len(routes) >= 13
    form = {
        "action": "confirmer",
        "current_password": NEW_PASSWORD,
        "new_password": OTHER_PASSWORD,
        "confirm_password": OTHER_PASSWORD,
        "value": "pirate@demo.invalid",
        "field": "email",
    }
    for method, path in routes + [("GET", "/confirmation-coordonnees?modifier=email")]:
        for htmx in (False, True):
            if method == "GET":
                r = await portal.get(path, htmx=htmx)
            else:
                r = await portal.post(path, form, htmx=htmx)
            if htmx:
                assert (r.status_code, r.text) == (200, ""), (method, path)
                assert r.headers.get("hx-redirect") in ("/connexion", "/connexion/code"), (method, path)
            else:
                assert r.status_code == 303, (method, path, r.status_code)
                assert r.headers["location"] in ("/connexion", "/connexion/code"), (method, path)
    assert (await portal.outbox(), await account_of(portal, julien.identifier)) == before
    t = portal.services.database.t.TrustedBrowser
    assert await t.count().where(t.revoked_at.is_null()).run() == 1
    r = await portal.post("/connexion/code", {"code": await portal.last_code("login_code")})  # still half-way
    assert r.headers["location"] == "/espace-prive"


async def test_a_logged_out_browser_reaches_no_page_behind_login(portal: Portal) -> None:
    await portal.get("/")
    for method, path in account_routes(portal):
        r = await (portal.get(path) if method == "GET" else portal.post(path, {}))
        assert r.status_code == 303 and r.headers["location"] == "/connexion", (method, path)
