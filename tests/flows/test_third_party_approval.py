"""A third party's request ("Autre") carried through: the approval's account, letter and email, the
first login as everyone's, the rejection's letter; and what an attacker would try."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from guichet.core.errors import StepError
from guichet.core.identifiers import new_issued_identifier, parse_issued
from guichet.core.third_party import approve_request, list_requests, reject_request
from tests.conftest import Portal
from tests.flows.helpers import account_count, account_of, field_errors, personalise, portal_with

SIRET = "73282932000074"
REQUEST = {
    "structure_name": "Cabinet Comptable du Béarn",
    "siret": "732 829 320 00074",
    "contact_name": "Anne Etcheverry",
    "email": "anne@cabinet.invalid",
    "phone": "05 59 00 00 00",
    "address_street": "12 rue des Pyrénées",
    "address_extra": "Bâtiment B",
    "postal_code": "64000",
    "city": "Pau",
}
NEW_PASSWORD = "Tiers-Declarant-2026!"


async def leave_request(portal: Portal, **changes: str) -> int:
    await portal.get("/inscription/statut")
    await portal.post("/inscription/abandon", {})
    await portal.post("/inscription/statut", {"status": "autre"})
    await portal.post("/inscription/structure", {"structure": "tiers_declarant"})
    r = await portal.post("/inscription/demande", {**REQUEST, **changes})
    assert r.status_code == 303 and r.headers["location"] == "/inscription/demande-envoyee", field_errors(r)
    return max(request.id for request in await list_requests(portal.services.database, state=None))


async def audit_kinds(portal: Portal) -> list[str]:
    t = portal.services.database.t.AuditLog
    return [row["kind"] for row in await t.select(t.kind).order_by(t.id).run()]


async def first_login(portal: Portal, identifier: str, password: str) -> None:
    """Identifier and temporary password, the code to the request's email, personalisation, contacts."""
    await portal.get("/connexion")
    r = await portal.post("/connexion", {"identifier": identifier, "password": password})
    assert r.status_code == 303 and r.headers["location"] == "/connexion/code", field_errors(r)
    r = await portal.get("/connexion/code")
    assert "anne@cabinet.invalid" in r.text or "a…e@cabinet.invalid" in r.text
    r = await portal.post("/connexion/code", {"action": "renvoyer", "channel": "email"})
    assert r.status_code == 200, field_errors(r)
    [message] = await portal.outbox("login_code")
    assert message["recipient"]["email"] == "anne@cabinet.invalid"
    r = await portal.post("/connexion/code", {"code": message["payload"]["code"]})
    assert r.status_code == 303 and r.headers["location"] == "/changement-mot-de-passe", field_errors(r)
    await personalise(portal, NEW_PASSWORD)
    r = await portal.get("/espace-prive")
    assert r.headers["location"] == "/confirmation-coordonnees?raison=coordonnees-a-confirmer"
    await portal.get("/confirmation-coordonnees")
    r = await portal.post("/confirmation-coordonnees", {"action": "confirmer"})
    assert r.headers["location"] == "/espace-prive"
    r = await portal.get("/espace-prive")
    assert r.status_code == 200 and "Cabinet Comptable du Béarn" in r.text


async def test_approval_creates_the_account_sends_the_password_by_post_and_leads_to_the_first_login(
    portal: Portal,
) -> None:
    number = await leave_request(portal)
    decision = await approve_request(portal.services, number, note="Kbis et mandats reçus")
    assert decision.done and decision.identifier == SIRET
    account = await account_of(portal, SIRET)
    assert account is not None and account["id"] == decision.account_id
    assert (
        account["identifier_kind"],
        account["status"],
        account["last_name"],
        account["email"],
        account["email_verified"],
        account["password_is_temporary"],
    ) == ("siret", "autre", "Cabinet Comptable du Béarn", "anne@cabinet.invalid", False, True)
    [request] = await list_requests(portal.services.database, state="approved")
    assert request.account_id == account["id"] and request.note == "Kbis et mandats reçus"

    [letter] = await portal.outbox("third_party_password")
    assert letter["channel"] == "postal"
    assert letter["recipient"]["name"] == "Cabinet Comptable du Béarn"
    assert list(letter["recipient"]["address"]["lines"]) == ["Bâtiment B", "12 rue des Pyrénées", "64000 PAU"]
    assert letter["payload"]["identifier"] == SIRET
    password = letter["payload"]["password"]
    [email] = await portal.outbox("third_party_approved_notice")
    assert email["channel"] == "email" and email["recipient"]["email"] == "anne@cabinet.invalid"
    assert password not in json.dumps(email), "the password goes by post only"
    assert (await audit_kinds(portal))[-1] == "third_party.approved"

    await first_login(portal, SIRET, password)
    account = await account_of(portal, SIRET)
    assert account is not None and account["email_verified"] and account["contacts_confirmed_at"] is not None


async def test_a_siret_already_holding_an_account_gets_an_issued_identifier(portal: Portal) -> None:
    # the company already has its own account (as an employer): the third party's access is another one
    first = await leave_request(portal)
    assert (await approve_request(portal.services, first)).identifier == SIRET
    second = await leave_request(portal, contact_name="Paul Etcheverry")
    decision = await approve_request(portal.services, second)
    assert decision.done and decision.identifier.startswith("T") and parse_issued(decision.identifier)
    assert (await account_of(portal, decision.identifier))["identifier_kind"] == "tiers"  # type: ignore[index]
    letters = await portal.outbox("third_party_password")
    assert [m["payload"]["identifier"] for m in letters] == [SIRET, decision.identifier]
    await first_login(portal, decision.identifier.lower(), letters[-1]["payload"]["password"])


async def test_a_caisse_may_always_issue_the_identifier(portal_factory: Any, make_config: Any, db_url: str) -> None:
    portal = await portal_with(portal_factory, make_config, db_url, extra='\n[third_parties]\nidentifier = "issued"\n')
    number = await leave_request(portal)
    decision = await approve_request(portal.services, number)
    assert decision.done and parse_issued(decision.identifier) == decision.identifier
    assert await account_of(portal, SIRET) is None


async def test_rejection_sends_a_letter_with_the_reason_and_creates_nothing(portal: Portal) -> None:
    number = await leave_request(portal)
    assert not (await reject_request(portal.services, number, reason="  ")).done, "a rejection gives its reason"
    decision = await reject_request(portal.services, number, reason="Le mandat signé des adhérents manque.")
    assert decision.done and await account_count(portal) == 0
    [letter] = await portal.outbox("third_party_rejected_letter")
    assert letter["channel"] == "postal" and letter["payload"]["reason"] == "Le mandat signé des adhérents manque."
    assert letter["recipient"]["address"]["lines"][-1] == "64000 PAU"
    assert (await audit_kinds(portal))[-1] == "third_party.rejected"
    [request] = await list_requests(portal.services.database, state="rejected")
    assert request.note == "Le mandat signé des adhérents manque."


# --- the attacker's tests ----------------------------------------------------------------------------------


async def test_approving_in_parallel_creates_one_account_and_one_letter(portal: Portal) -> None:
    number = await leave_request(portal)
    decisions = await asyncio.gather(
        *(approve_request(portal.services, number) for _ in range(6)),
        reject_request(portal.services, number, reason="en même temps"),
    )
    assert sum(d.done for d in decisions) == 1
    approved = sum(d.done for d in decisions[:-1])
    assert await account_count(portal) == approved
    outbox = await portal.outbox()
    sent = [m["template"] for m in outbox]
    assert sent.count("third_party_password") == approved
    assert sent.count("third_party_rejected_letter") == 1 - approved
    # approvals alone, in parallel, on a second request: one account, one letter, one email
    second = await leave_request(portal)
    decisions = await asyncio.gather(*(approve_request(portal.services, second) for _ in range(6)))
    assert sum(d.done for d in decisions) == 1 and await account_count(portal) == approved + 1
    assert len(await portal.outbox("third_party_password")) == approved + 1
    assert len(await portal.outbox("third_party_approved_notice")) == approved + 1
    assert (await approve_request(portal.services, number)).refused.startswith("is not pending")


async def test_a_decided_request_cannot_be_decided_again(portal: Portal) -> None:
    number = await leave_request(portal)
    assert (await reject_request(portal.services, number, reason="Pièces manquantes")).done
    assert not (await approve_request(portal.services, number)).done
    assert await account_count(portal) == 0 and await portal.outbox("third_party_password") == []
    assert not (await approve_request(portal.services, 999)).done


async def test_a_rejected_or_pending_request_cannot_log_in(portal: Portal) -> None:
    number = await leave_request(portal)
    await portal.get("/connexion")
    r = await portal.post("/connexion", {"identifier": SIRET, "password": "n'importe quoi"})
    assert r.status_code == 422 and "Identifiant ou mot de passe incorrect." in r.text
    await reject_request(portal.services, number, reason="Pièces manquantes")
    r = await portal.post("/connexion", {"identifier": SIRET, "password": ""})
    assert r.status_code == 422 and await account_count(portal) == 0


async def test_issued_identifiers_never_read_as_a_nir_or_a_siret(portal: Portal) -> None:
    from guichet.core.flows.login import parse_login_identifier
    from guichet.core.identifiers import parse_nir, parse_siret

    for _ in range(200):
        issued = new_issued_identifier()
        assert parse_login_identifier(issued) == issued
        for parse in (parse_nir, parse_siret):
            with pytest.raises(StepError):
                parse(issued)
    with pytest.raises(StepError):  # a typo in the check digit is refused, not looked up
        parse_issued(issued[:-1] + str((int(issued[-1]) + 1) % 10))
    # a NIR account holder cannot log in with a third party's identifier, nor the reverse
    number = await leave_request(portal)
    decision = await approve_request(portal.services, number)
    letter = (await portal.outbox("third_party_password"))[-1]
    await portal.get("/connexion")
    r = await portal.post("/connexion", {"identifier": "1 85 05 78 006 084", "password": letter["payload"]["password"]})
    assert r.status_code == 422
    assert decision.identifier == SIRET


async def test_a_request_without_a_usable_address_is_refused_when_typed(portal: Portal) -> None:
    await portal.get("/inscription/statut")
    await portal.post("/inscription/statut", {"status": "autre"})
    await portal.post("/inscription/structure", {"structure": "tiers_declarant"})
    r = await portal.post(
        "/inscription/demande",
        {**REQUEST, "address_street": "", "postal_code": "6400", "city": "P" * 40, "address_extra": "x\u0000y"},
    )
    assert r.status_code == 422
    errors = field_errors(r)
    assert errors["address_street"] == "Veuillez saisir l'adresse de la structure (numéro et voie)."
    assert errors["address_extra"].startswith("Le complément d'adresse contient des caractères non autorisés")
    assert errors["postal_code"] == "Le code postal comporte 5 chiffres."
    assert await list_requests(portal.services.database, state=None) == []


async def test_an_old_request_without_an_address_is_not_approved(portal: Portal) -> None:
    from guichet.core.third_party import create_request

    number = await create_request(
        portal.services.database,
        structure_kind="tiers_paiement",
        structure_name="Pharmacie",
        siret=SIRET,
        contact_name="Anne",
        email="anne@cabinet.invalid",
        phone="",
        now=portal.services.now(),
    )
    decision = await approve_request(portal.services, number)
    assert not decision.done and "no postal address" in decision.refused
    assert await account_count(portal) == 0 and await list_requests(portal.services.database, state="pending")
