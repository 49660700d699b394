"""A code the mail server refuses for good (550) is not waited for in silence: the next load of the
page that waits for it says so, and offers the other channel when the caisse allows it and the
person has it. A real SMTP server (aiosmtpd) that answers 550, a real SMS gateway, both databases."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from guichet.core.config import CaisseConfig
from guichet.core.flows.common import NO_OTHER_CHANNEL
from guichet.core.outbox import FAILED, SENT
from guichet.testing import HttpSink, SmtpSink
from tests.conftest import Portal, portal_config_text
from tests.flows.helpers import field_errors, visible_text, where
from tests.security.support import PASSWORD, make_account, person

REFUSED = "550 5.1.1 <destinataire> : adresse inconnue"
CODE = re.compile(r"\b(\d{6})\b")


class Servers:
    def __init__(self, sink: SmtpSink, gateway: HttpSink) -> None:
        self.sink, self.gateway = sink, gateway

    def sms_codes(self) -> list[str]:
        return [CODE.search(r.json()["text"]).group(1) for r in self.gateway.requests]  # type: ignore[union-attr]


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    with SmtpSink(rcpt_reply=REFUSED) as sink, HttpSink() as gateway:
        yield Servers(sink, gateway)


@pytest.fixture
async def portal(
    portal_factory: Callable[..., Any], make_config: Callable[..., CaisseConfig], db_url: str, servers: Servers
) -> Portal:
    text = (
        portal_config_text()
        .replace("port = 2525", f"port = {servers.sink.port}", 1)
        .replace('url = "http://127.0.0.1:9/sms"', f'url = "{servers.gateway.url}"', 1)
    )
    return await portal_factory(make_config(database_url=db_url, base=text))  # type: ignore[no-any-return]


async def deliver(portal: Portal) -> None:
    await portal.services.outbox_worker("test").drain()


async def test_login_code_refused_by_the_mail_server_offers_the_verified_mobile(
    portal: Portal, servers: Servers
) -> None:
    who = person("particulier_vitale")
    await make_account(portal, "particulier_vitale", mobile_verified=True)
    await portal.get("/connexion")
    r = await portal.post("/connexion", {"identifier": who.identifier, "password": PASSWORD})
    assert where(r) == "/connexion/code"
    r = await portal.get("/connexion/code")
    assert "n'a pas pu être remis" not in visible_text(r)  # not delivered yet: nothing to say
    await deliver(portal)
    [message] = await portal.outbox("login_code")
    assert message["state"] == FAILED and servers.sink.messages == []
    r = await portal.get("/connexion/code")
    shown = visible_text(r)
    assert r.status_code == 200
    assert "Le message n'a pas pu être remis à l'adresse j…e@demo.invalid." in shown, shown
    assert "Recevoir le code par SMS au 06 xx xx xx 01" in shown, shown
    r = await portal.post("/connexion/code", {"action": "autre-canal"})
    assert r.status_code == 200 and "Un nouveau code de sécurité vient de vous être envoyé par SMS." in visible_text(r)
    await deliver(portal)
    [sms] = servers.sms_codes()
    r = await portal.get("/connexion/code")
    shown = visible_text(r)
    assert "Un code de sécurité vient de vous être envoyé par SMS au : 06 xx xx xx 01" in shown, shown
    assert "n'a pas pu être remis" not in shown
    r = await portal.post("/connexion/code", {"code": sms})
    assert where(r) == "/espace-prive", field_errors(r)


async def test_without_another_proven_channel_the_refusal_is_still_told(portal: Portal, servers: Servers) -> None:
    who = person("particulier_vitale")
    await make_account(portal, "particulier_vitale")  # its mobile was never proven by a code
    await portal.get("/connexion")
    await portal.post("/connexion", {"identifier": who.identifier, "password": PASSWORD})
    await deliver(portal)
    r = await portal.get("/connexion/code", htmx=True)
    assert "vient de vous être envoyé" not in visible_text(r)  # it was not
    shown = visible_text(r)
    assert "Le message n'a pas pu être remis à l'adresse j…e@demo.invalid." in shown
    assert "par SMS" not in shown and 'value="autre-canal"' not in r.text
    r = await portal.post("/connexion/code", {"action": "autre-canal"})
    assert r.status_code == 422 and field_errors(r) == {"code": NO_OTHER_CHANNEL}
    assert servers.gateway.requests == [] and len(await portal.outbox("login_code")) == 1


async def test_the_other_channel_is_offered_only_after_a_refusal(portal: Portal, servers: Servers) -> None:
    """Delivered, or not tried yet: the other channel is no way around the resend pause."""
    servers.sink.rcpt_reply = ""
    who = person("particulier_vitale")
    await make_account(portal, "particulier_vitale", mobile_verified=True)
    await portal.get("/connexion")
    await portal.post("/connexion", {"identifier": who.identifier, "password": PASSWORD})
    await portal.get("/connexion/code")
    r = await portal.post("/connexion/code", {"action": "autre-canal"})
    assert r.status_code == 422 and field_errors(r) == {"code": NO_OTHER_CHANNEL}
    await deliver(portal)
    assert [m["state"] for m in await portal.outbox("login_code")] == [SENT]
    r = await portal.post("/connexion/code", {"action": "autre-canal"})
    assert r.status_code == 422 and servers.gateway.requests == []


async def test_registration_code_refused_offers_the_other_typed_contact(
    portal: Portal, servers: Servers, demo_people: Any
) -> None:
    from tests.flows.helpers import account_of, contact_form

    who = person("particulier_vitale")
    for step, form in (
        ("statut", {"status": who.status}),
        ("identifiant", {"identifier": who.nir_with_key}),
        ("coordonnees", contact_form(who)),
        ("question", {"question": who.question, "answer": who.answer}),
        ("canal", {"channel": "email"}),
    ):
        r = await portal.post(f"/inscription/{step}", form)
        assert r.status_code == 303, (step, field_errors(r))
    await deliver(portal)
    r = await portal.get("/inscription/code")
    shown = visible_text(r)
    assert f"Le message n'a pas pu être remis à l'adresse {who.email}." in shown, shown
    assert f"Recevoir le code par SMS au {who.mobile}" in shown and "vient de vous être envoyé" not in shown
    r = await portal.post("/inscription/code", {"action": "autre-canal"})
    assert r.status_code == 200 and "Un nouveau code de sécurité vient de vous être envoyé par SMS." in visible_text(r)
    await deliver(portal)
    [sms] = servers.sms_codes()
    r = await portal.get("/inscription/code")
    assert f"par SMS au {who.mobile}" in visible_text(r) and "n'a pas pu être remis" not in visible_text(r)
    r = await portal.post("/inscription/code", {"code": sms})
    assert where(r) == "/inscription/termine", field_errors(r)
    created = await account_of(portal, who.identifier)
    assert created is not None and created["mobile_verified"] and not created["email_verified"]
    [password] = await portal.outbox("temporary_password")
    assert password["channel"] == "sms"


async def test_recovery_code_refused_offers_the_other_channel_without_showing_the_address(
    portal: Portal, servers: Servers
) -> None:
    who = person("particulier_vitale")
    await make_account(portal, "particulier_vitale", mobile_verified=True)  # recovery goes to proven contacts
    await portal.get("/mot-de-passe-oublie/identifiant")
    await portal.post("/mot-de-passe-oublie/identifiant", {"identifier": who.identifier})
    r = await portal.post("/mot-de-passe-oublie/canal", {"channel": "email"})
    assert where(r) == "/mot-de-passe-oublie/code", field_errors(r)
    await deliver(portal)
    r = await portal.get("/mot-de-passe-oublie/code")
    shown = visible_text(r)
    assert "Le message n'a pas pu être remis à votre adresse email." in shown, shown
    assert "Recevoir le code de confirmation par SMS" in shown and "demo.invalid" not in shown
    r = await portal.post("/mot-de-passe-oublie/code", {"action": "autre-canal"})
    assert "Un nouveau code de confirmation vient de vous être envoyé par SMS." in visible_text(r)
    await deliver(portal)
    [sms] = servers.sms_codes()
    r = await portal.post("/mot-de-passe-oublie/code", {"code": sms})
    assert where(r) == "/mot-de-passe-oublie/confirmation", field_errors(r)
    [password] = await portal.outbox("temporary_password")
    assert password["channel"] == "sms"


async def test_a_recovery_for_an_unknown_identifier_shows_the_same_pages(portal: Portal, servers: Servers) -> None:
    """Nothing is sent for an identifier without an account, so nothing is refused: the page stays
    the plain one, and asking for the other channel is refused as for an account whose code went out."""
    await portal.get("/mot-de-passe-oublie/identifiant")
    await portal.post("/mot-de-passe-oublie/identifiant", {"identifier": "1990175123456"})
    await portal.post("/mot-de-passe-oublie/canal", {"channel": "email"})
    await deliver(portal)
    r = await portal.get("/mot-de-passe-oublie/code")
    assert "n'a pas pu être remis" not in visible_text(
        r
    ) and "Un code de confirmation vous a été envoyé par e-mail." in visible_text(r)
    r = await portal.post("/mot-de-passe-oublie/code", {"action": "autre-canal"})
    assert r.status_code == 422 and field_errors(r) == {"code": NO_OTHER_CHANNEL}


async def test_a_new_contacts_code_refused_is_told_on_the_code_pages(portal: Portal, servers: Servers) -> None:
    from tests.security.support import login

    who = person("particulier_vitale")
    await make_account(portal, "particulier_vitale")
    await login(portal, who.identifier)
    # Mon compte: a new email, its code refused by the server
    await portal.get("/mon-compte/email")
    r = await portal.post("/mon-compte/email", {"current_password": PASSWORD, "value": "nouvelle.adresse@exemple.fr"})
    assert r.status_code == 200 and "vient d'être envoyé" in visible_text(r)
    await deliver(portal)
    r = await portal.post("/mon-compte/email", {"action": "code", "code": ""})
    shown = visible_text(r)
    assert r.status_code == 422 and "Le message n'a pas pu être remis à l'adresse n…e@exemple.fr." in shown, shown
    assert "Vérifiez l'adresse saisie et demandez un nouveau code." in shown
    # Mes coordonnées: the same for a code sent there
    await portal.get("/mon-compte/coordonnees")
    r = await portal.post(
        "/mon-compte/coordonnees",
        {"action": "modifier", "field": "email", "value": "autre.adresse@exemple.fr", "current_password": PASSWORD},
    )
    assert r.status_code == 200 and "n'a pas pu être remis" not in visible_text(r)
    await deliver(portal)
    r = await portal.post("/mon-compte/coordonnees", {"action": "code", "code": ""})
    shown = visible_text(r)
    assert "Le message n'a pas pu être remis à l'adresse a…e@exemple.fr." in shown, shown
    assert 'href="/mon-compte/coordonnees?modifier=email"' in r.text
