"""Forgotten password over HTTP, with MSA Sud Aquitaine's policies (a 4-digit code valid 30 minutes, SMS or email)."""

from __future__ import annotations

from typing import Any

import pytest

from guichet.core.identifiers import nir_key
from tests.conftest import Portal
from tests.flows.helpers import (
    NEW_PASSWORD,
    UNKNOWN_NIR,
    account_of,
    activate,
    field_error,
    is_full_page,
    is_partial,
    login,
    logout,
    more_portals,
    neutral,
    personalise,
    portal_with,
    prove_mobile,
    register,
    temporary_password,
    text_of,
    where,
)

pytestmark = pytest.mark.asyncio

SENT_BY_SMS = "Un mot de passe temporaire vous a été envoyé par SMS."
CODE_WRONG = "Le code saisi est incorrect."


@pytest.fixture
async def sud(portal: Portal, demo_people: Any, portal_factory: Any, make_config: Any, db_url: str) -> Portal:
    """A browser on MSA Sud Aquitaine's portal (the caisse_sud_aquitaine preset), demo registry loaded."""
    return await portal_with(portal_factory, make_config, db_url, plugins=("caisse_sud_aquitaine",))


@pytest.fixture
async def julien(sud: Portal, demo_people: Any) -> Any:
    """Julien LEFEBVRE with a personal password (NEW_PASSWORD), confirmed contacts and both his email and
    mobile proven (recovery goes only to proven contacts), logged out."""
    person = demo_people.DEMO_PERSONS["particulier_vitale"]
    await activate(sud, person)
    await prove_mobile(sud, person)
    await logout(sud)
    return person


async def ask(portal: Portal, identifier: str, channel: str) -> None:
    """The first two steps: the identifier, then the channel; the code page is next."""
    await portal.get("/mot-de-passe-oublie/identifiant")
    r = await portal.post("/mot-de-passe-oublie/identifiant", {"identifier": identifier})
    assert r.headers.get("location") == "/mot-de-passe-oublie/canal", field_error(r, "identifier")
    r = await portal.post("/mot-de-passe-oublie/canal", {"channel": channel})
    assert r.headers.get("location") == "/mot-de-passe-oublie/code", field_error(r, "channel")


async def test_recovery_by_sms_with_a_four_digit_code(sud: Portal, julien: Any, clock: Any) -> None:
    r = await sud.get("/connexion")
    assert 'href="/mot-de-passe-oublie/identifiant"' in r.text and "J'ai oublié mon mot de passe" in text_of(r)
    r = await sud.get("/mot-de-passe-oublie/identifiant")
    assert is_full_page(r) and "Par sécurité, nous devons vérifier votre identité." in r.text
    r = await sud.post("/mot-de-passe-oublie/identifiant", {"identifier": julien.nir_with_key})
    assert r.status_code == 303 and r.headers["location"] == "/mot-de-passe-oublie/canal"
    r = await sud.get("/mot-de-passe-oublie/canal")
    assert "Comment désirez-vous recevoir votre mot de passe temporaire ?" in r.text
    assert r.text.index('value="sms"') < r.text.index('value="email"')
    r = await sud.post("/mot-de-passe-oublie/canal", {"channel": "sms"})
    assert r.status_code == 303 and r.headers["location"] == "/mot-de-passe-oublie/code"
    r = await sud.get("/mot-de-passe-oublie/code")
    assert "Un code de confirmation vous a été envoyé par sms." in r.text
    assert "Ce code de 4 chiffres est valable 30 minutes." in r.text and "Saisir le code de confirmation" in r.text
    [code_message] = await sud.outbox("recovery_code")
    assert code_message["channel"] == "sms" and code_message["recipient"]["mobile"] == "+33600000101"
    code = code_message["payload"]["code"]
    assert len(code) == 4 and code.isdigit()

    clock.advance(minutes=29)
    r = await sud.post("/mot-de-passe-oublie/code", {"code": code})
    assert r.status_code == 303 and r.headers["location"] == "/mot-de-passe-oublie/confirmation"
    r = await sud.get("/mot-de-passe-oublie/confirmation")
    assert SENT_BY_SMS in r.text
    assert "Vous pourrez le modifier après vous être connecté à Mon espace privé MSA." in r.text
    password_message = (await sud.outbox("temporary_password"))[-1]
    assert password_message["channel"] == "sms" and password_message["recipient"]["mobile"] == "+33600000101"
    [notice] = await sud.outbox("password_reset_notice")
    assert notice["channel"] == "email" and notice["recipient"]["email"] == julien.email
    account = await account_of(sud, julien.identifier)
    assert account is not None and account["password_is_temporary"]

    r = await sud.post("/connexion", {"identifier": julien.identifier, "password": NEW_PASSWORD})
    assert r.status_code == 422  # the old password is gone
    temporary = password_message["payload"]["password"]
    r = await sud.post("/connexion", {"identifier": julien.identifier, "password": temporary})
    assert r.headers["location"] == "/connexion/code"  # the second factor is still asked
    await sud.get("/connexion/code")
    r = await sud.post("/connexion/code", {"code": await sud.last_code("login_code")})
    assert r.headers["location"] == "/changement-mot-de-passe"
    r = await sud.get("/espace-prive")
    assert r.headers["location"] == "/changement-mot-de-passe?raison=mot-de-passe-temporaire"
    await personalise(sud, "Sable-Fougere-8-Pignada!")
    # seed 002, steps 5 and 6: a recovery ends in the contact confirmation, even when it was done before
    r = await sud.get("/mot-de-passe-modifie")
    assert "Avant d'accéder à votre espace privé MSA, nous vous demandons de confirmer vos coordonnées." in text_of(r)
    step = r.text.split('id="step"', 1)[1].split("</section>", 1)[0]
    assert 'href="/confirmation-coordonnees"' in step and 'href="/espace-prive"' not in step
    assert (await sud.get("/espace-prive")).headers[
        "location"
    ] == "/confirmation-coordonnees?raison=coordonnees-a-confirmer"
    r = await sud.get("/confirmation-coordonnees")
    assert (
        r.status_code == 200 and "Pour utiliser Mon espace privé MSA, vous devez confirmer vos coordonnées." in r.text
    )
    r = await sud.post("/confirmation-coordonnees", {"action": "confirmer"})
    assert r.headers["location"] == "/espace-prive"
    assert (await sud.get("/espace-prive")).status_code == 200


async def test_a_caisse_may_skip_the_contact_confirmation_after_a_recovery(
    portal_factory: Any, make_config: Any, db_url: str, demo_people: Any
) -> None:
    portal = await portal_with(
        portal_factory,
        make_config,
        db_url,
        plugins=("caisse_sud_aquitaine",),
        extra="[citizen]\nconfirm_contacts_after_recovery = false\n",
    )
    person = demo_people.DEMO_PERSONS["particulier_vitale"]
    await activate(portal, person)
    await prove_mobile(portal, person)
    await logout(portal)
    await ask(portal, person.identifier, "sms")
    await portal.post("/mot-de-passe-oublie/code", {"code": await portal.last_code("recovery_code")})
    assert await login(portal, person.identifier, await temporary_password(portal)) == "/changement-mot-de-passe"
    await personalise(portal, "Sable-Fougere-8-Pignada!")
    r = await portal.get("/mot-de-passe-modifie")
    step = r.text.split('id="step"', 1)[1].split("</section>", 1)[0]
    assert 'href="/espace-prive"' in step and "confirmer vos coordonnées" not in step
    assert (await portal.get("/espace-prive")).status_code == 200


async def test_recovery_by_email(sud: Portal, julien: Any) -> None:
    await ask(sud, julien.identifier, "email")
    r = await sud.get("/mot-de-passe-oublie/code")
    assert "Un code de confirmation vous a été envoyé par e-mail." in r.text
    code = (await sud.outbox("recovery_code"))[-1]
    assert code["channel"] == "email" and code["recipient"]["email"] == julien.email
    r = await sud.post("/mot-de-passe-oublie/code", {"code": code["payload"]["code"]}, htmx=True)
    assert r.status_code == 200 and is_partial(r)
    assert r.headers["hx-push-url"] == "/mot-de-passe-oublie/confirmation"
    assert "Un mot de passe temporaire vous a été envoyé par e-mail." in r.text
    assert (await sud.outbox("temporary_password"))[-1]["channel"] == "email"
    [notice] = await sud.outbox("password_reset_notice")
    assert notice["channel"] == "sms" and notice["recipient"]["mobile"] == "+33600000101"


async def test_a_reset_revokes_the_trusted_browsers_and_ends_the_sessions(
    sud: Portal, julien: Any, portal_factory: Any
) -> None:
    assert await login(sud, julien.identifier, NEW_PASSWORD, trust=True) == "/espace-prive"
    [elsewhere] = await more_portals(portal_factory, sud, 1)
    assert await login(elsewhere, julien.identifier, NEW_PASSWORD) == "/espace-prive"
    await logout(sud)
    await ask(sud, julien.identifier, "sms")
    await sud.post("/mot-de-passe-oublie/code", {"code": await sud.last_code("recovery_code")})
    t = sud.services.database.t.TrustedBrowser
    rows = await t.select(t.revoked_at).run()
    assert rows and all(row["revoked_at"] is not None for row in rows)
    assert (await elsewhere.get("/espace-prive")).headers["location"] == "/connexion"
    r = await sud.post("/connexion", {"identifier": julien.identifier, "password": await temporary_password(sud)})
    assert r.headers["location"] == "/connexion/code"


async def run(portal: Portal, identifier: str, wrong: str) -> list[Any]:
    """Every recovery screen up to a wrong code and a new code, with its status and its neutral text."""
    seen: list[Any] = []
    r = await portal.get("/mot-de-passe-oublie/identifiant")
    seen.append((r.status_code, neutral(r.text)))
    for step, form in [
        ("identifiant", {"identifier": identifier}),
        ("canal", {"channel": "sms"}),
        ("code", {"code": wrong}),
        ("code", {"action": "renvoyer"}),
    ]:
        r = await portal.post(f"/mot-de-passe-oublie/{step}", form)
        seen.append((step, r.status_code, where(r), neutral(r.text, identifier)))
        if r.status_code == 303:
            page = await portal.get(where(r))
            seen.append((page.status_code, neutral(page.text, identifier)))
    return seen


async def test_an_unknown_identifier_sees_the_same_pages_and_nothing_is_sent(
    sud: Portal, julien: Any, demo_people: Any, portal_factory: Any, clock: Any
) -> None:
    sophie = demo_people.DEMO_PERSONS["particulier_paiement"]
    await register(sud, sophie, mobile="")  # an account without a mobile: SMS cannot reach her
    outbox_before = len(await sud.outbox())
    account_before = await account_of(sud, julien.identifier)
    known, stranger, unreachable = await more_portals(portal_factory, sud, 3)

    wrong = "0000"
    first = await run(known, julien.identifier, wrong)
    if (await known.last_code("recovery_code")) == wrong:  # 1 in 10,000
        pytest.skip("the code drawn is the 'wrong' one")
    clock.advance(seconds=61)  # the same cooldown for everybody
    second = await run(stranger, UNKNOWN_NIR + nir_key(UNKNOWN_NIR), wrong)
    clock.advance(seconds=61)
    third = await run(unreachable, sophie.identifier, wrong)
    assert first == second == third
    assert any(CODE_WRONG in str(step) for step in first)

    sent = (await sud.outbox())[outbox_before:]
    assert [m["template"] for m in sent] == ["recovery_code"]  # to Julien; none to the others
    assert {m["recipient"]["mobile"] for m in sent} == {"+33600000101"}
    assert await account_of(sud, julien.identifier) == account_before
    assert await account_of(sud, UNKNOWN_NIR) is None


async def test_nothing_changes_until_a_valid_code_is_given(
    sud: Portal, julien: Any, clock: Any, portal_factory: Any
) -> None:
    before = await account_of(sud, julien.identifier)
    await ask(sud, julien.identifier, "sms")
    right = await sud.last_code("recovery_code")
    wrong = "0000" if right != "0000" else "1111"
    r = await sud.post("/mot-de-passe-oublie/code", {"code": wrong})
    assert r.status_code == 422 and field_error(r, "code") == f"{CODE_WRONG} Il vous reste 2 essais."
    r = await sud.post("/mot-de-passe-oublie/code", {"code": "12345"})
    assert r.status_code == 422 and field_error(r, "code") == "Le code comporte 4 chiffres."
    assert await account_of(sud, julien.identifier) == before
    assert len(await sud.outbox("temporary_password")) == 1  # the registration's only
    [other] = await more_portals(portal_factory, sud, 1)
    assert await login(other, julien.identifier, NEW_PASSWORD) == "/espace-prive"  # the old password still works

    clock.advance(minutes=30, seconds=1)
    r = await sud.post("/mot-de-passe-oublie/code", {"code": right})
    assert r.status_code == 422 and "n'est plus valable" in field_error(r, "code")
    assert (await account_of(sud, julien.identifier))["password_hash"] == before["password_hash"]  # type: ignore[index]
    await logout(other)
    assert await login(other, julien.identifier, NEW_PASSWORD) == "/espace-prive"


async def test_a_recovery_code_is_refused_after_three_wrong_tries(sud: Portal, julien: Any, clock: Any) -> None:
    await ask(sud, julien.identifier, "sms")
    right = await sud.last_code("recovery_code")
    for wrong in [c for c in ("0000", "1111", "2222", "3333") if c != right][:3]:
        r = await sud.post("/mot-de-passe-oublie/code", {"code": wrong})
        assert r.status_code == 422
    clock.advance(seconds=5)
    r = await sud.post("/mot-de-passe-oublie/code", {"code": right})
    assert r.status_code == 422 and "n'est plus valable" in field_error(r, "code")
    assert not (await account_of(sud, julien.identifier))["password_is_temporary"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("", "Veuillez saisir votre numéro de Sécurité Sociale."),
        ("185057800608", "comporte 13 caractères"),
        ("１８５０５７８００６０８４", "uniquement des chiffres"),
    ],
)
async def test_a_malformed_identifier_is_refused(sud: Portal, typed: str, message: str) -> None:
    await sud.get("/mot-de-passe-oublie/identifiant")
    r = await sud.post("/mot-de-passe-oublie/identifiant", {"identifier": typed})
    assert r.status_code == 422 and message in field_error(r, "identifier")
    assert await sud.outbox() == []


async def test_a_channel_not_offered_is_refused(sud: Portal, julien: Any) -> None:
    await sud.get("/mot-de-passe-oublie/identifiant")
    await sud.post("/mot-de-passe-oublie/identifiant", {"identifier": julien.identifier})
    before = len(await sud.outbox())
    for channel in ("postal", ""):
        r = await sud.post("/mot-de-passe-oublie/canal", {"channel": channel})
        assert r.status_code == 422 and "Veuillez choisir comment recevoir" in field_error(r, "channel")
    assert len(await sud.outbox()) == before


async def test_recovery_steps_go_in_order_and_can_be_abandoned(sud: Portal, julien: Any) -> None:
    for step in ("canal", "code", "confirmation"):
        r = await sud.get(f"/mot-de-passe-oublie/{step}")
        assert r.headers["location"] == "/mot-de-passe-oublie/identifiant", step
    await sud.get("/mot-de-passe-oublie/identifiant")
    await sud.post("/mot-de-passe-oublie/identifiant", {"identifier": julien.identifier})
    for step in ("code", "confirmation"):
        r = await sud.get(f"/mot-de-passe-oublie/{step}")
        assert r.headers["location"] == "/mot-de-passe-oublie/canal", step
        r = await sud.post(f"/mot-de-passe-oublie/{step}", {"code": "1234"})
        assert r.headers["location"] == "/mot-de-passe-oublie/canal", step
    r = await sud.post("/mot-de-passe-oublie/canal", {"action": "precedent"})
    assert r.headers["location"] == "/mot-de-passe-oublie/identifiant"
    r = await sud.get("/mot-de-passe-oublie/identifiant")
    assert f'value="{julien.identifier}"' in r.text
    r = await sud.post("/mot-de-passe-oublie/abandon", {})
    assert r.headers["location"] == "/connexion"
    r = await sud.get("/mot-de-passe-oublie/canal")
    assert r.headers["location"] == "/mot-de-passe-oublie/identifiant"
    assert await sud.outbox("recovery_code") == []


async def test_a_new_recovery_can_start_after_the_last_one_ended(sud: Portal, julien: Any, clock: Any) -> None:
    await ask(sud, julien.identifier, "sms")
    await sud.post("/mot-de-passe-oublie/code", {"code": await sud.last_code("recovery_code")})
    r = await sud.get("/mot-de-passe-oublie/code")
    assert r.headers["location"] == "/mot-de-passe-oublie/confirmation"
    # the SMS never came: the person asks again, by email this time
    r = await sud.get("/mot-de-passe-oublie/identifiant")
    assert r.status_code == 200 and f'value="{julien.identifier}"' not in r.text
    clock.advance(seconds=61)
    await ask(sud, julien.identifier, "email")
    r = await sud.post("/mot-de-passe-oublie/code", {"code": await sud.last_code("recovery_code")})
    assert r.headers["location"] == "/mot-de-passe-oublie/confirmation"
    assert (await sud.outbox("temporary_password"))[-1]["channel"] == "email"


async def test_a_new_recovery_code_respects_the_cooldown(sud: Portal, julien: Any, clock: Any) -> None:
    await ask(sud, julien.identifier, "sms")
    first = await sud.last_code("recovery_code")
    r = await sud.post("/mot-de-passe-oublie/code", {"action": "renvoyer"})
    assert r.status_code == 422 and "dans 60 secondes" in field_error(r, "code")
    clock.advance(seconds=60)
    r = await sud.post("/mot-de-passe-oublie/code", {"action": "renvoyer"})
    assert r.status_code == 200 and "Un nouveau code de confirmation vient de vous être envoyé." in text_of(r)
    second = await sud.last_code("recovery_code")
    if first != second:
        r = await sud.post("/mot-de-passe-oublie/code", {"code": first})
        assert r.status_code == 422
    r = await sud.post("/mot-de-passe-oublie/code", {"code": second})
    assert r.headers["location"] == "/mot-de-passe-oublie/confirmation"
