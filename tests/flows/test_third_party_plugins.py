"""The plugin contract proven from outside the tree: the two example distributions, installed as packages
(examples/, pip-installed by `make test`), found by their entry points, chosen by a caisse's config.

- guichet-webhook-channel, configured as a channel of its own ("messagerie", the caisse's secure
  messaging, which knows its people by their identifier) for the login and the recovery codes;
- guichet-prime-activite, an identity question with its own registry facts, offered for the
  "particulier" status by config.

Nothing in core names either of them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from guichet.testing import HttpSink
from tests.conftest import Portal
from tests.flows.helpers import config_text, field_error, visible_text, where
from tests.security.support import PASSWORD, make_account, password_step, person

pytestmark = pytest.mark.asyncio


# --- the channel of its own: the caisse's secure messaging --------------------------------------------


@pytest.fixture
def messaging() -> Iterator[HttpSink]:
    """The secure messaging service's endpoint: it takes each message for the inbox of a NIR."""
    endpoint = HttpSink()
    with endpoint:
        yield endpoint


@pytest.fixture
async def messagerie(
    portal_factory: Callable[..., Any],
    make_config: Callable[..., Any],
    db_url: str,
    messaging: HttpSink,
    demo_people: Any,
) -> Portal:
    extra = f"""
[plugins.settings.webhook]
url = "{messaging.url}"
secret = {{ value = "messagerie-shared-secret" }}
channel = "messagerie"
label_fr = "dans votre messagerie MSA"
destination_fr = "votre messagerie sécurisée MSA"

[codes.login]
channels = ["messagerie", "email"]

[codes.recovery]
channels = ["messagerie", "email"]
"""
    portal = await portal_factory(make_config(database_url=db_url, base=config_text(plugins=("webhook",), extra=extra)))
    await demo_people.generate_demo_registry(portal.services.database, count=0, seed=1)
    return portal


def delivered(endpoint: HttpSink) -> list[dict[str, Any]]:
    return [json.loads(request.body) for request in endpoint.requests]


async def test_a_login_code_goes_to_the_secure_messaging(messagerie: Portal, messaging: HttpSink) -> None:
    who = person()
    await make_account(messagerie)
    r = await password_step(messagerie, who.identifier, PASSWORD)
    assert where(r) == "/connexion/code"
    page = visible_text(await messagerie.get("/connexion/code"))
    assert "Un code de sécurité vient de vous être envoyé dans votre messagerie MSA" in page
    assert "votre messagerie sécurisée MSA" in page
    assert "par e-mail à l'adresse j…e@demo.invalid" in page  # the other proven channel, offered
    await messagerie.services.outbox_worker("messagerie").drain()
    [sent] = delivered(messaging)
    assert sent["template"] == "login_code" and sent["recipient"]["addresses"] == {"identifier": who.identifier}
    assert sent["recipient"]["email"] is None, "the message carries only the address its channel reaches"
    r = await messagerie.post("/connexion/code", {"code": sent["payload"]["code"]})
    assert where(r) == "/espace-prive"


async def test_a_recovery_goes_through_the_secure_messaging(messagerie: Portal, messaging: HttpSink) -> None:
    who = person()
    await make_account(messagerie)
    await messagerie.get("/mot-de-passe-oublie/identifiant")
    await messagerie.post("/mot-de-passe-oublie/identifiant", {"identifier": who.identifier})
    page = visible_text(await messagerie.get("/mot-de-passe-oublie/canal"))
    assert "dans votre messagerie MSA" in page
    r = await messagerie.post("/mot-de-passe-oublie/canal", {"channel": "messagerie"})
    assert where(r) == "/mot-de-passe-oublie/code"
    await messagerie.services.outbox_worker("messagerie").drain()
    [code] = delivered(messaging)
    r = await messagerie.post("/mot-de-passe-oublie/code", {"code": code["payload"]["code"]})
    assert where(r) == "/mot-de-passe-oublie/confirmation"
    page = visible_text(await messagerie.get("/mot-de-passe-oublie/confirmation"))
    assert "Un mot de passe temporaire vous a été envoyé dans votre messagerie MSA." in page
    await messagerie.services.outbox_worker("messagerie").drain()
    temporary = [m for m in delivered(messaging) if m["template"] == "temporary_password"]
    assert len(temporary) == 1 and temporary[0]["recipient"]["addresses"] == {"identifier": who.identifier}


# --- the identity question of its own: the last prime d'activité ----------------------------------------


@pytest.fixture
async def prime(
    portal_factory: Callable[..., Any],
    make_config: Callable[..., Any],
    db_url: str,
    tmp_path: Path,
    clock: Any,
    demo_people: Any,
) -> Portal:
    sophie = demo_people.DEMO_PERSONS["particulier_paiement"]
    recent = clock.today() - dt.timedelta(days=20)
    (tmp_path / "prime.csv").write_text(
        "nir;paid_on;amount\n"
        f"{sophie.nir_with_key};{recent - dt.timedelta(days=31)};180,00\n"
        f"{sophie.identifier};{recent};187,45\n"
        "not-a-nir;2026-01-01;12\n",
        encoding="utf-8",
    )
    extra = f"""
[plugins.settings.prime_activite]
payments_csv = "{tmp_path / "prime.csv"}"

[statuses.particulier]
questions = ["vitale", "prime_activite", "payment"]
"""
    portal = await portal_factory(
        make_config(database_url=db_url, base=config_text(plugins=("prime_activite",), extra=extra))
    )
    await demo_people.generate_demo_registry(portal.services.database, count=0, seed=1)
    return portal


async def reach_question(portal: Portal, who: Any) -> str:
    await portal.get("/inscription/statut")
    await portal.post("/inscription/statut", {"status": who.status})
    await portal.post("/inscription/identifiant", {"identifier": who.nir_with_key})
    r = await portal.post(
        "/inscription/coordonnees",
        {
            "last_name": who.last_name,
            "first_name": who.first_name,
            "birth_date": who.birth_date.strftime("%d/%m/%Y"),
            "email": who.email,
            "mobile": "",
        },
    )
    assert where(r) == "/inscription/question"
    return visible_text(await portal.get("/inscription/question")) + (await portal.get("/inscription/question")).text


async def test_the_question_of_its_own_registers_a_person(prime: Portal, demo_people: Any) -> None:
    sophie = demo_people.DEMO_PERSONS["particulier_paiement"]
    page = await reach_question(prime, sophie)
    assert "Le montant de votre dernière prime d'activité" in page and 'name="answer-prime_activite"' in page
    assert page.index('value="vitale"') < page.index('value="prime_activite"') < page.index('value="payment"')
    r = await prime.post("/inscription/question", {"question": "prime_activite", "answer-prime_activite": "beaucoup"})
    assert r.status_code == 422 and "Saisissez le montant en euros" in field_error(r, "answer-prime_activite")
    r = await prime.post("/inscription/question", {"question": "prime_activite", "answer-prime_activite": "187,45"})
    assert where(r) == "/inscription/canal", "the last payment's amount is the right answer"
    await prime.post("/inscription/canal", {"channel": "email"})
    r = await prime.post("/inscription/code", {"code": await prime.last_code("registration_code")})
    assert where(r) == "/inscription/termine"
    [temporary] = await prime.outbox("temporary_password")
    assert temporary["channel"] == "email" and temporary["recipient"]["email"] == sophie.email


async def test_an_older_amount_is_a_wrong_answer_and_the_password_goes_by_post(prime: Portal, demo_people: Any) -> None:
    sophie = demo_people.DEMO_PERSONS["particulier_paiement"]
    await reach_question(prime, sophie)
    r = await prime.post("/inscription/question", {"question": "prime_activite", "answer-prime_activite": "180,00"})
    assert where(r) == "/inscription/termine"
    [letter] = await prime.outbox("temporary_password")
    assert letter["channel"] == "postal"


async def test_someone_the_export_does_not_know_sees_the_same_page(prime: Portal, demo_people: Any) -> None:
    """The page is the same for every identifier (it tells nothing of the registry); an answer from
    someone without a payment is simply wrong."""
    julien = demo_people.DEMO_PERSONS["particulier_vitale"]
    page = await reach_question(prime, julien)
    assert 'name="answer-prime_activite"' in page
    r = await prime.post("/inscription/question", {"question": "prime_activite", "answer-prime_activite": "187,45"})
    assert where(r) == "/inscription/termine"
    assert [m["channel"] for m in await prime.outbox("temporary_password")] == ["postal"]
