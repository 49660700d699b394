"""Contacts used for codes and recovery: who may change them, where codes go, which mobiles are accepted.

The attacker holds a stolen, fully logged-in session (a cookie copied from a shared computer).
Before these controls, ``POST /confirmation-coordonnees`` with ``action=modifier`` changed the email
of any logged-in session without the password; "mot de passe oublié" by email then handed the
account over. Codes also went to an email nobody had proven, and any country's mobile was accepted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from guichet.core.config import CaisseConfig
from guichet.core.errors import StepError
from guichet.core.identifiers import parse_mobile
from tests.conftest import Portal, portal_config_text
from tests.security.support import (
    PASSWORD,
    account,
    expect_event,
    login,
    make_account,
    messages,
    password_step,
    person,
    snapshot,
    text,
    where,
)

ATTACKER_EMAIL = "voleur@exemple.fr"
ATTACKER_MOBILE = "07 81 23 45 67"
NEEDS_PASSWORD = "Pour modifier cette coordonnée, saisissez votre mot de passe actuel."


async def _contact_changes(portal: Portal) -> list[dict[str, Any]]:
    return await portal.outbox("contact_code")


# --- a stolen session cannot move the account's contacts --------------------------------------------


@pytest.mark.parametrize("field, value", [("email", ATTACKER_EMAIL), ("mobile", ATTACKER_MOBILE)])
async def test_a_stolen_session_cannot_change_a_contact_on_the_confirmation_page(
    portal: Portal, demo_people: Any, field: str, value: str
) -> None:
    row = await make_account(portal, confirmed=False)  # the first login's confirmation is due: the page is open
    await login(portal, person().identifier)
    await portal.get("/")  # the page's CSRF token, bound to the new session
    before = await snapshot(portal)
    r = await portal.post("/confirmation-coordonnees", {"action": "modifier", "field": field, "value": value})
    assert r.status_code == 422 and NEEDS_PASSWORD in messages(r)
    r = await portal.post(
        "/confirmation-coordonnees",
        {"action": "modifier", "field": field, "value": value, "current_password": "Pas-Le-Bon-Mot-2-Passe!"},
    )
    assert r.status_code == 422 and "Le mot de passe actuel est incorrect." in messages(r)
    assert await _contact_changes(portal) == []
    after = await snapshot(portal)
    assert after["accounts"] == before["accounts"] and after["outbox"] == before["outbox"]
    await expect_event(portal, "login.failed", account_id=row["id"], reason="current_password")


@pytest.mark.parametrize("field, value", [("email", ATTACKER_EMAIL), ("mobile", ATTACKER_MOBILE)])
async def test_a_stolen_session_cannot_change_a_contact_in_mon_compte(
    portal: Portal, demo_people: Any, field: str, value: str
) -> None:
    await make_account(portal)
    await login(portal, person().identifier)
    await portal.get("/")  # the page's CSRF token, bound to the new session
    before = await snapshot(portal)
    r = await portal.post("/mon-compte/coordonnees", {"action": "modifier", "field": field, "value": value})
    assert r.status_code == 422 and NEEDS_PASSWORD in messages(r)
    assert await _contact_changes(portal) == []
    assert (await snapshot(portal))["accounts"] == before["accounts"]


async def test_the_takeover_through_recovery_no_longer_works(
    portal: Portal, portal_factory: Callable[..., Any], demo_people: Any
) -> None:
    """The whole attack: change the email with the stolen session, then recover the password by email."""
    row = await make_account(portal, confirmed=False)
    await login(portal, person().identifier)
    await portal.get("/")  # the page's CSRF token, bound to the new session
    await portal.post("/confirmation-coordonnees", {"action": "modifier", "field": "email", "value": ATTACKER_EMAIL})
    for sent_to_attacker in await _contact_changes(portal):  # the code reaches the thief's own mailbox
        await portal.post("/confirmation-coordonnees", {"action": "code", "code": sent_to_attacker["payload"]["code"]})
    attacker = await portal_factory(portal.services.config)
    await attacker.post("/mot-de-passe-oublie/identifiant", {"identifier": person().identifier})
    await attacker.post("/mot-de-passe-oublie/canal", {"channel": "email"})
    sent = [m for m in await portal.outbox("recovery_code")]
    assert all(m["recipient"]["email"] == person().email for m in sent)
    assert (await account(portal, row["id"]))["email"] == person().email


async def test_the_confirmation_page_closes_once_the_contacts_are_confirmed(portal: Portal, demo_people: Any) -> None:
    await make_account(portal)  # contacts confirmed
    await login(portal, person().identifier)
    await portal.get("/")  # the page's CSRF token, bound to the new session
    before = await snapshot(portal)
    r = await portal.get("/confirmation-coordonnees")
    assert r.status_code == 303 and where(r) == "/mon-compte/coordonnees"
    r = await portal.get("/confirmation-coordonnees?modifier=email", htmx=True)
    assert where(r) == "/mon-compte/coordonnees"
    r = await portal.post(
        "/confirmation-coordonnees",
        {"action": "modifier", "field": "landline", "value": "05 59 12 34 56", "current_password": PASSWORD},
    )
    assert where(r) == "/mon-compte/coordonnees"
    assert (await snapshot(portal))["accounts"] == before["accounts"]


async def test_with_the_password_a_new_email_is_proven_and_the_old_address_told(
    portal: Portal, demo_people: Any
) -> None:
    row = await make_account(portal)
    await login(portal, person().identifier)
    await portal.get("/")  # the page's CSRF token, bound to the new session
    r = await portal.post(
        "/mon-compte/coordonnees",
        {"action": "modifier", "field": "email", "value": "julien.neuf@demo.invalid", "current_password": PASSWORD},
    )
    assert r.status_code == 200, messages(r)
    [code] = await _contact_changes(portal)
    assert code["recipient"]["email"] == "julien.neuf@demo.invalid"
    r = await portal.post("/mon-compte/coordonnees", {"action": "code", "code": code["payload"]["code"]})
    assert r.status_code == 200 and "Votre coordonnée a été vérifiée et enregistrée." in text(r)
    changed = await account(portal, row["id"])
    assert changed["email"] == "julien.neuf@demo.invalid" and changed["email_verified"]
    [notice] = await portal.outbox("email_changed_notice")
    assert notice["channel"] == "email" and notice["recipient"]["email"] == person().email


async def test_a_new_mobile_is_told_to_the_old_number_and_to_the_email(portal: Portal, demo_people: Any) -> None:
    row = await make_account(portal, mobile_verified=True)
    old_mobile = row["mobile"]
    await login(portal, person().identifier)
    await portal.get("/")  # the page's CSRF token, bound to the new session
    r = await portal.post(
        "/mon-compte/coordonnees",
        {"action": "modifier", "field": "mobile", "value": ATTACKER_MOBILE, "current_password": PASSWORD},
    )
    assert r.status_code == 200, messages(r)
    [code] = await _contact_changes(portal)
    assert code["channel"] == "sms" and code["recipient"]["mobile"] == "+33781234567"
    await portal.post("/mon-compte/coordonnees", {"action": "code", "code": code["payload"]["code"]})
    changed = await account(portal, row["id"])
    assert changed["mobile"] == "+33781234567" and changed["mobile_verified"]
    notices = await portal.outbox("mobile_changed_notice")
    assert {(n["channel"], n["recipient"]["mobile"] or n["recipient"]["email"]) for n in notices} == {
        ("sms", old_mobile),
        ("email", person().email),
    }
    assert all(
        "+33781234567" not in str(n["payload"]) for n in notices
    )  # masked: the thief's number is not spelled out
    await expect_event(portal, "mobile.changed", account_id=row["id"])


async def test_a_landline_needs_no_password(portal: Portal, demo_people: Any) -> None:
    """Landline and fax never carry a code nor a recovery: no proof asked, as before."""
    row = await make_account(portal)
    await login(portal, person().identifier)
    await portal.get("/")  # the page's CSRF token, bound to the new session
    r = await portal.post(
        "/mon-compte/coordonnees", {"action": "modifier", "field": "landline", "value": "05 59 12 34 56"}
    )
    assert r.status_code == 200 and "Votre coordonnée a été enregistrée." in text(r)
    assert (await account(portal, row["id"]))["landline"] == "+33559123456"


# --- codes go only to a proven contact -------------------------------------------------------------


async def test_the_login_code_never_goes_to_an_email_nobody_proved(portal: Portal, demo_people: Any) -> None:
    """Registered by SMS with a mistyped email: the codes go to the mobile the person proved."""
    await make_account(portal, email="inconnu@exemple.fr", email_verified=False, mobile_verified=True)
    r = await password_step(portal, person().identifier, PASSWORD)
    assert where(r) == "/connexion/code"
    [code] = await portal.outbox("login_code")
    assert code["channel"] == "sms" and code["recipient"]["mobile"] == "+33600000101"
    r = await portal.get("/connexion/code")
    assert "06 xx xx xx 01" in text(r) and "inconnu" not in text(r)


async def test_the_proven_channel_is_used_even_where_the_caisse_prefers_email(
    portal_factory: Callable[..., Any], make_config: Callable[..., CaisseConfig], db_url: str, demo_people: Any
) -> None:
    config = make_config(database_url=db_url, base=portal_config_text('[codes.login]\nchannels = ["email"]\n'))
    portal = await portal_factory(config)
    await demo_people.generate_demo_registry(portal.services.database, count=0, seed=1)
    await make_account(portal, email="inconnu@exemple.fr", email_verified=False, mobile_verified=True)
    await password_step(portal, person().identifier, PASSWORD)
    [code] = await portal.outbox("login_code")
    assert code["channel"] == "sms"


async def test_with_no_proven_contact_the_person_chooses_and_the_code_proves_it(
    portal: Portal, demo_people: Any
) -> None:
    """Registered with the password by post: nothing proven yet. No code goes anywhere until the person
    picks a contact they recognise; the right code then proves that contact."""
    row = await make_account(portal, email_verified=False, mobile_verified=False)
    r = await password_step(portal, person().identifier, PASSWORD)
    assert where(r) == "/connexion/code"
    assert await portal.outbox("login_code") == []
    page = await portal.get("/connexion/code")
    assert "j…e@demo.invalid" in text(page) and "06 xx xx xx 01" in text(page)
    r = await portal.post("/connexion/code", {"action": "renvoyer", "channel": "sms"})
    assert r.status_code == 200, messages(r)
    [code] = await portal.outbox("login_code")
    assert code["channel"] == "sms"
    r = await portal.post("/connexion/code", {"code": code["payload"]["code"]})
    assert r.status_code == 303
    proven = await account(portal, row["id"])
    assert proven["mobile_verified"] and not proven["email_verified"]


async def test_a_person_with_two_proven_channels_chooses(portal: Portal, demo_people: Any) -> None:
    await make_account(portal, mobile_verified=True)
    await password_step(portal, person().identifier, PASSWORD)
    [first] = await portal.outbox("login_code")
    assert first["channel"] == "email"
    page = await portal.get("/connexion/code")
    assert "par SMS" in text(page)
    portal.services.clock.advance(seconds=61)
    r = await portal.post("/connexion/code", {"action": "renvoyer", "channel": "sms"})
    assert r.status_code == 200, messages(r)
    second = (await portal.outbox("login_code"))[-1]
    assert second["channel"] == "sms"
    r = await portal.post("/connexion/code", {"action": "renvoyer", "channel": "fax"})
    assert r.status_code == 422


async def test_the_channel_a_person_chose_comes_first_next_time(portal: Portal, demo_people: Any) -> None:
    """Two proven channels: the person asked for the code by SMS and used it; this browser's next login
    code goes by SMS at once (a preference cookie, which only orders the person's own proven channels)."""
    await make_account(portal, mobile_verified=True)
    await password_step(portal, person().identifier, PASSWORD)
    await portal.get("/connexion/code")
    portal.services.clock.advance(seconds=61)
    r = await portal.post("/connexion/code", {"action": "renvoyer", "channel": "sms"})
    assert r.status_code == 200 and (await portal.outbox("login_code"))[-1]["channel"] == "sms", messages(r)
    r = await portal.post("/connexion/code", {"code": (await portal.outbox("login_code"))[-1]["payload"]["code"]})
    assert where(r) == "/espace-prive", messages(r)
    assert portal.client.cookies.get("guichet_code_channel") == "sms"
    await portal.post("/deconnexion", {})
    await password_step(portal, person().identifier, PASSWORD)
    assert (await portal.outbox("login_code"))[-1]["channel"] == "sms"


@pytest.mark.parametrize("planted", ["sms", "postal", "fax", "sms; email", "x" * 300])
async def test_a_planted_channel_preference_never_reaches_an_unproven_contact(
    portal: Portal, demo_people: Any, planted: str
) -> None:
    """The attacker plants the preference cookie: the code still goes only to a contact the person proved."""
    await make_account(portal, email_verified=True, mobile_verified=False)
    portal.client.cookies.set("guichet_code_channel", planted)
    r = await password_step(portal, person().identifier, PASSWORD)
    assert where(r) == "/connexion/code"
    [code] = await portal.outbox("login_code")
    assert code["channel"] == "email"


async def test_a_recovery_code_never_goes_to_an_unproven_contact(portal: Portal, demo_people: Any) -> None:
    await make_account(portal, email_verified=False, mobile_verified=True)
    await portal.post("/mot-de-passe-oublie/identifiant", {"identifier": person().identifier})
    r = await portal.post("/mot-de-passe-oublie/canal", {"channel": "email"})
    assert where(r) == "/mot-de-passe-oublie/code"  # the same pages as for anyone: nothing tells the difference
    assert await portal.outbox("recovery_code") == []
    await expect_event(portal, "recovery.requested", reachable=False)


# --- mobiles: French ranges by default --------------------------------------------------------------


@pytest.mark.parametrize("raw", ["+44 7911 123456", "+7 912 345 67 89", "0044 7911 123456", "+1 415 555 2671"])
def test_a_foreign_mobile_is_refused_by_default(raw: str) -> None:
    with pytest.raises(StepError) as refused:
        parse_mobile(raw, required=True)
    assert "français" in refused.value.message_fr


@pytest.mark.parametrize(
    "raw, e164",
    [
        ("06 12 34 56 78", "+33612345678"),
        ("+33 7 81 23 45 67", "+33781234567"),
        ("0690 12 34 56", "+590690123456"),
        ("+262 692 12 34 56", "+262692123456"),
        ("0694 20 12 34", "+594694201234"),
        ("0696 12 34 56", "+596696123456"),
    ],
)
def test_french_and_overseas_mobiles_are_accepted(raw: str, e164: str) -> None:
    assert parse_mobile(raw, required=True) == e164


def test_a_country_the_caisse_lists_is_accepted() -> None:
    assert parse_mobile("+44 7400 123456", regions=("FR", "GB")) == "+447400123456"
    with pytest.raises(StepError):
        parse_mobile("+7 912 345 67 89", regions=("FR", "GB"))


async def test_registration_refuses_a_foreign_mobile_and_changes_nothing(portal: Portal, demo_people: Any) -> None:
    who = person()
    await portal.post("/inscription/statut", {"status": who.status})
    await portal.post("/inscription/identifiant", {"identifier": who.nir_with_key})
    r = await portal.post(
        "/inscription/coordonnees",
        {
            "last_name": who.last_name,
            "first_name": who.first_name,
            "birth_date": "14/05/1985",
            "email": who.email,
            "mobile": "+44 7911 123456",
        },
    )
    assert r.status_code == 422 and any("français" in m for m in messages(r))


async def test_a_caisse_may_list_other_countries(
    portal_factory: Callable[..., Any], make_config: Callable[..., CaisseConfig], db_url: str, demo_people: Any
) -> None:
    config = make_config(database_url=db_url, base=portal_config_text())
    assert config.security.foreign_mobile_regions == ()
    listed = make_config(
        database_url=db_url,
        base=portal_config_text().replace("[security]\n", '[security]\nforeign_mobile_regions = ["BE"]\n'),
    )
    portal = await portal_factory(listed)
    await demo_people.generate_demo_registry(portal.services.database, count=0, seed=1)
    who = person()
    await portal.post("/inscription/statut", {"status": who.status})
    await portal.post("/inscription/identifiant", {"identifier": who.nir_with_key})
    r = await portal.post(
        "/inscription/coordonnees",
        {
            "last_name": who.last_name,
            "first_name": who.first_name,
            "birth_date": "14/05/1985",
            "email": who.email,
            "mobile": "+32 470 12 34 56",
        },
    )
    assert r.status_code in (200, 303), messages(r)
