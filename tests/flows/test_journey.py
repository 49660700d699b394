"""One citizen's whole journey over HTTP: register, log in with a code, personalise, confirm, Mon compte."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Portal, error_messages
from tests.flows.helpers import register

pytestmark = pytest.mark.asyncio


async def test_register_login_personalise_confirm(portal: Portal, demo_people: Any) -> None:
    person = demo_people.DEMO_PERSONS["particulier_vitale"]
    await register(portal, person)
    r = await portal.get("/inscription/termine")
    assert "Un mot de passe temporaire vous a été envoyé par e-mail." in r.text
    [password_message] = await portal.outbox("temporary_password")
    assert password_message["channel"] == "email"
    assert password_message["recipient"]["email"] == person.email
    temporary = password_message["payload"]["password"]
    [letter] = await portal.outbox("registration_letter")
    assert letter["channel"] == "postal" and list(letter["recipient"]["address"]["lines"]) == list(person.address)

    r = await portal.post("/connexion", {"identifier": person.identifier, "password": temporary})
    assert r.status_code == 303 and r.headers["location"] == "/connexion/code"
    r = await portal.get("/espace-prive")
    assert r.status_code == 303 and r.headers["location"] == "/connexion", "half-logged-in session got through"
    r = await portal.get("/connexion/code")
    assert "j…e@demo.invalid" in r.text and "Ce code est valable 10 minutes." in r.text
    code = await portal.last_code("login_code")
    r = await portal.post("/connexion/code", {"code": code})
    assert r.status_code == 303 and r.headers["location"] == "/changement-mot-de-passe"

    r = await portal.get("/espace-prive")
    assert r.headers["location"] == "/changement-mot-de-passe?raison=mot-de-passe-temporaire"
    r = await portal.get("/changement-mot-de-passe")
    assert "Votre mot de passe est temporaire. Vous devez le personnaliser." in r.text
    r = await portal.post("/changement-mot-de-passe", {"new_password": "lefebvre", "confirm_password": "lefebvre"})
    assert r.status_code == 422 and error_messages(r)
    new_password = "Vert-Galet-42-Nuage!"
    r = await portal.post("/changement-mot-de-passe", {"new_password": new_password, "confirm_password": new_password})
    assert r.status_code == 303 and r.headers["location"] == "/mot-de-passe-modifie", error_messages(r)
    r = await portal.get("/espace-prive")
    assert r.headers["location"] == "/confirmation-coordonnees?raison=coordonnees-a-confirmer"
    r = await portal.get("/confirmation-coordonnees")
    assert "Pour utiliser Mon espace privé MSA, vous devez confirmer vos coordonnées." in r.text
    r = await portal.post("/confirmation-coordonnees", {"action": "confirmer"})
    assert r.status_code == 303 and r.headers["location"] == "/espace-prive"
    r = await portal.get("/espace-prive")
    assert r.status_code == 200 and "Bonjour Julien LEFEBVRE" in r.text

    await portal.post("/deconnexion", {})
    await portal.get("/connexion")
    r = await portal.post("/connexion", {"identifier": person.identifier, "password": temporary})
    assert r.status_code == 422 and "Identifiant ou mot de passe incorrect." in r.text
    r = await portal.post("/connexion", {"identifier": person.identifier, "password": new_password})
    assert r.headers["location"] == "/connexion/code"


async def test_wrong_answer_sends_the_password_by_post(portal: Portal, demo_people: Any) -> None:
    person = demo_people.DEMO_PERSONS["particulier_paiement"]
    await register(portal, person, answer="999,99", htmx=True)
    r = await portal.get("/inscription/termine")
    assert "par courrier" in r.text
    messages = await portal.outbox()
    assert [m["channel"] for m in messages] == ["postal", "postal"]
    assert messages[0]["template"] == "temporary_password"
    assert list(messages[0]["recipient"]["address"]["lines"]) == list(person.address)


async def test_unknown_identifier_sees_the_same_screens(portal: Portal, demo_people: Any) -> None:
    person = demo_people.DEMO_PERSONS["particulier_paiement"]
    stranger = type(person)(
        **{**{f: getattr(person, f) for f in person.__struct_fields__}, "identifier": "1990175123456"}
    )
    await register(portal, stranger, answer="412,37")
    r = await portal.get("/inscription/termine")
    assert "par courrier" in r.text
    assert await portal.outbox() == []
