"""Registration over HTTP ("Créer mon espace privé"), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import msgspec
import pytest

from guichet.core.flows.engine import FlowState
from guichet.core.identifiers import nir_key
from tests.conftest import Portal, error_messages
from tests.flows.helpers import (
    UNKNOWN_NIR,
    account_count,
    account_of,
    codes_of,
    contact_form,
    field_error,
    flow_of,
    is_full_page,
    is_partial,
    more_portals,
    neutral,
    portal_with,
    register,
    text_of,
    where,
)

pytestmark = pytest.mark.asyncio

HEADINGS = {
    "statut": "Vous êtes...",
    "identifiant": "Votre identifiant",
    "coordonnees": "Vos coordonnées",
    "question": "Vérification de votre identité",
    "canal": "Réception du code de sécurité",
    "code": "Votre code de sécurité",
    "termine": "Votre inscription est enregistrée",
    "structure": "Nature de votre structure",
    "demande": "Votre demande d'inscription",
    "demande-envoyee": "Votre demande est transmise",
}
PERSON_STEPS = ["statut", "identifiant", "coordonnees", "question", "canal", "code"]


def person_forms(person: Any, **contact: str) -> dict[str, dict[str, str]]:
    """The form of every step up to the code, filled in as the person would."""
    return {
        "statut": {"status": person.status},
        "identifiant": {"identifier": person.nir_with_key},
        "coordonnees": contact_form(person, **contact),
        "question": {"question": person.question, "answer": person.answer},
        "canal": {"channel": "email"},
    }


async def reach(portal: Portal, person: Any, step: str, **contact: str) -> None:
    """Fill in every step before ``step``."""
    forms = person_forms(person, **contact)
    for earlier in PERSON_STEPS[: PERSON_STEPS.index(step)]:
        r = await portal.post(f"/inscription/{earlier}", forms[earlier])
        assert r.status_code == 303, (earlier, error_messages(r))


async def submit(portal: Portal, person: Any, step: str, *, htmx: bool) -> Any:
    form = person_forms(person).get(step) or {"code": await portal.last_code("registration_code")}
    return await portal.post(f"/inscription/{step}", form, htmx=htmx)


# --- every step with and without htmx ---------------------------------------------------------------


async def test_each_step_without_htmx_redirects_then_shows_the_full_page(portal: Portal, demo_people: Any) -> None:
    person = demo_people.DEMO_PERSONS["particulier_vitale"]
    r = await portal.get("/inscription/statut")
    assert r.status_code == 200 and is_full_page(r) and HEADINGS["statut"] in r.text
    for step, following in zip(PERSON_STEPS, [*PERSON_STEPS[1:], "termine"]):
        r = await submit(portal, person, step, htmx=False)
        assert r.status_code == 303, (step, error_messages(r))
        assert r.headers["location"] == f"/inscription/{following}"
        assert r.text == ""
        r = await portal.get(r.headers["location"])
        assert r.status_code == 200 and is_full_page(r), following
        assert HEADINGS[following] in r.text


async def test_each_step_with_htmx_answers_with_the_next_step_fragment(portal: Portal, demo_people: Any) -> None:
    person = demo_people.DEMO_PERSONS["particulier_vitale"]
    r = await portal.get("/inscription/statut", htmx=True)
    assert r.status_code == 200 and is_partial(r)
    for step, following in zip(PERSON_STEPS, [*PERSON_STEPS[1:], "termine"]):
        r = await submit(portal, person, step, htmx=True)
        assert r.status_code == 200, (step, error_messages(r))
        assert is_partial(r), step
        assert r.headers["hx-push-url"] == f"/inscription/{following}"
        assert HEADINGS[following] in r.text
    assert "HX-Request" in r.headers["vary"]


async def test_a_refused_step_with_htmx_is_the_fragment_with_422(portal: Portal, demo_people: Any) -> None:
    person = demo_people.DEMO_PERSONS["particulier_vitale"]
    bad = {
        "statut": {"status": ""},
        "identifiant": {"identifier": "12"},
        "coordonnees": {**contact_form(person), "email": "pas-une-adresse"},
        "question": {"question": "payment", "answer": "beaucoup"},
        "canal": {"channel": "pigeon"},
        "code": {"code": "12"},
    }
    for step in PERSON_STEPS:
        r = await portal.post(f"/inscription/{step}", bad[step], htmx=True)
        assert r.status_code == 422, step
        assert is_partial(r) and HEADINGS[step] in r.text, step
        assert error_messages(r), step
        r = await submit(portal, person, step, htmx=True)
        assert r.status_code == 200, (step, error_messages(r))


async def test_a_refused_step_without_htmx_is_the_full_page_with_422(portal: Portal, demo_people: Any) -> None:
    await portal.get("/inscription/statut")
    r = await portal.post("/inscription/statut", {"status": ""})
    assert r.status_code == 422 and is_full_page(r)
    assert field_error(r, "status") == "Veuillez choisir ce que vous êtes."


# --- bad inputs: a French message next to the field, 422, and nothing changes -------------------------

VITALE = "particulier_vitale"
PAYMENT = "particulier_paiement"
TOMORROW = "TOMORROW"

BAD_INPUTS = [
    # (demo person, step, form fields, field with the message, part of the message)
    (VITALE, "statut", {"status": ""}, "status", "Veuillez choisir ce que vous êtes."),
    (VITALE, "statut", {"status": "pirate"}, "status", "Veuillez choisir ce que vous êtes."),
    (VITALE, "identifiant", {"identifier": ""}, "identifier", "Veuillez saisir votre numéro de Sécurité Sociale."),
    (VITALE, "identifiant", {"identifier": "1850578"}, "identifier", "comporte 13 caractères"),
    (VITALE, "identifiant", {"identifier": "3850578006084"}, "identifier", "doit commencer par 1 ou 2"),
    (VITALE, "identifiant", {"identifier": "1851378006084"}, "identifier", "mois de naissance"),
    (VITALE, "identifiant", {"identifier": "WRONG_KEY"}, "identifier", "La clé du numéro de Sécurité Sociale"),
    (VITALE, "identifiant", {"identifier": "18505780060841"}, "identifier", "comporte 13 caractères"),
    (VITALE, "identifiant", {"identifier": "185O5780O6084"}, "identifier", "uniquement des chiffres"),
    (VITALE, "identifiant", {"identifier": "ABCDEFGHIJKLM"}, "identifier", "uniquement des chiffres"),
    (VITALE, "identifiant", {"identifier": "１８５０５７８００６０８４"}, "identifier", "uniquement des chiffres"),
    (
        VITALE,
        "coordonnees",
        {"last_name": "", "first_name": "", "birth_date": "", "email": ""},
        "last_name",
        "Veuillez saisir votre nom.",
    ),
    (VITALE, "coordonnees", {"first_name": " "}, "first_name", "Veuillez saisir votre prénom."),
    (VITALE, "coordonnees", {"birth_date": ""}, "birth_date", "Veuillez saisir votre date de naissance."),
    (VITALE, "coordonnees", {"birth_date": TOMORROW}, "birth_date", "ne peut pas être dans le futur"),
    (VITALE, "coordonnees", {"birth_date": "31/02/1985"}, "birth_date", "JJ/MM/AAAA"),
    (VITALE, "coordonnees", {"birth_date": "１４/05/1985"}, "birth_date", "JJ/MM/AAAA"),
    (VITALE, "coordonnees", {"email": ""}, "email", "Veuillez saisir votre adresse email."),
    (VITALE, "coordonnees", {"email": "julien.lefebvre@"}, "email", "Saisissez une adresse email valide"),
    (VITALE, "coordonnees", {"email": "julien lefebvre@demo.invalid"}, "email", "Saisissez une adresse email valide"),
    (VITALE, "coordonnees", {"mobile": "01 23 45 67 89"}, "mobile", "n'est pas un numéro de téléphone mobile"),
    (VITALE, "coordonnees", {"mobile": "06 12"}, "mobile", "numéro de téléphone mobile"),
    (
        PAYMENT,
        "question",
        {"question": "payment", "answer-payment": "-12,00"},
        "answer-payment",
        "Saisissez le montant en euros",
    ),
    (
        PAYMENT,
        "question",
        {"question": "payment", "answer-payment": "NaN"},
        "answer-payment",
        "Saisissez le montant en euros",
    ),
    (
        PAYMENT,
        "question",
        {"question": "payment", "answer-payment": "1" * 40},
        "answer-payment",
        "Saisissez le montant en euros",
    ),
    (
        PAYMENT,
        "question",
        {"question": "payment", "answer-payment": "1e3"},
        "answer-payment",
        "Saisissez le montant en euros",
    ),
    (
        PAYMENT,
        "question",
        {"question": "payment", "answer-payment": "Infinity"},
        "answer-payment",
        "Saisissez le montant en euros",
    ),
    (
        PAYMENT,
        "question",
        {"question": "payment", "answer-payment": "４１２,３７"},
        "answer-payment",
        "Saisissez le montant en euros",
    ),
    (
        PAYMENT,
        "question",
        {"question": "payment", "answer-payment": ""},
        "answer-payment",
        "Veuillez saisir un montant.",
    ),
    (
        VITALE,
        "question",
        {"question": "vitale", "answer-vitale": "ABCDEFGHIJ"},
        "answer-vitale",
        "Le numéro de série de la carte Vitale ne comporte que des chiffres",
    ),
    (
        VITALE,
        "question",
        {"question": "vitale", "answer-vitale": "12345"},
        "answer-vitale",
        "Le numéro de série de la carte Vitale comporte de 8 à 20 chiffres : vous en avez saisi 5.",
    ),
    (
        VITALE,
        "question",
        {"question": "vitale", "answer-vitale": ""},
        "answer-vitale",
        "Veuillez saisir le numéro de série de votre carte Vitale",
    ),
    (PAYMENT, "question", {"question": "inexistante", "answer": "12"}, "question", "Veuillez choisir une question"),
    (VITALE, "question", {"question": "vitale", "answer-vitale": "<script>"}, "answer-vitale", "carte Vitale"),
    (VITALE, "canal", {"channel": "postal"}, "channel", "Veuillez choisir comment recevoir votre code"),
    (VITALE, "canal", {"channel": ""}, "channel", "Veuillez choisir comment recevoir votre code"),
    (VITALE, "code", {"code": ""}, "code", "Veuillez saisir le code reçu."),
    (VITALE, "code", {"code": "12345"}, "code", "Le code comporte 6 chiffres."),
    (VITALE, "code", {"code": "1234567"}, "code", "Le code comporte 6 chiffres."),
    (VITALE, "code", {"code": "12a456"}, "code", "Le code comporte 6 chiffres."),
    (VITALE, "code", {"code": "１２３４５６"}, "code", "Le code comporte 6 chiffres."),
]


async def snapshot(portal: Portal) -> tuple[Any, int, int, list[tuple[int, Any]]]:
    # no flow yet is the same as a flow at its first step
    state = await flow_of(portal, "registration") or FlowState(kind="registration", step="statut")
    codes = [(c["attempts"], c["used_at"]) for c in await codes_of(portal, "registration")]
    typed = msgspec.to_builtins(state)
    typed.pop("saved_ms")  # when the row was written, not what the person did
    return typed, len(await portal.outbox()), await account_count(portal), codes


@pytest.mark.parametrize(
    ("who", "step", "fields", "field", "message"),
    BAD_INPUTS,
    ids=[f"{c[1]}-{c[3]}-{i}" for i, c in enumerate(BAD_INPUTS)],
)
async def test_a_bad_input_gets_a_french_message_next_to_its_field_and_changes_nothing(
    portal: Portal, demo_people: Any, clock: Any, who: str, step: str, fields: dict[str, str], field: str, message: str
) -> None:
    person = demo_people.DEMO_PERSONS[who]
    await reach(portal, person, step)
    form = {**person_forms(person).get(step, {}), **fields}
    for key, value in form.items():
        if value == TOMORROW:
            form[key] = (clock.today() + dt.timedelta(days=1)).strftime("%d/%m/%Y")
        elif value == "WRONG_KEY":
            key_digits = nir_key(person.identifier)
            form[key] = person.identifier + f"{(int(key_digits) % 97) + 1:02d}"
    before = await snapshot(portal)
    r = await portal.post(f"/inscription/{step}", form)
    assert r.status_code == 422
    assert message in field_error(r, field), error_messages(r)
    assert await snapshot(portal) == before


async def test_a_refused_form_slides_the_flow_expiry_at_most_every_five_minutes(
    portal: Portal, demo_people: Any, clock: Any
) -> None:
    person = demo_people.DEMO_PERSONS[VITALE]
    await reach(portal, person, "identifiant")
    t = portal.services.database.t.Flow

    async def expiry() -> Any:
        return (await t.select(t.expires_at).run())[0]["expires_at"]

    written = await expiry()
    clock.advance(minutes=4)
    assert (await portal.post("/inscription/identifiant", {"identifier": "123"})).status_code == 422
    assert await expiry() == written, "a refused form within five minutes of the last write writes nothing"
    clock.advance(minutes=2)
    assert (await portal.post("/inscription/identifiant", {"identifier": "123"})).status_code == 422
    assert await expiry() == written + dt.timedelta(minutes=6), "then the 45 minutes run from now again"


async def test_empty_contact_form_names_every_required_field(portal: Portal, demo_people: Any) -> None:
    person = demo_people.DEMO_PERSONS[VITALE]
    await reach(portal, person, "coordonnees")
    r = await portal.post(
        "/inscription/coordonnees", {"last_name": "", "first_name": "", "birth_date": "", "email": "", "mobile": ""}
    )
    assert r.status_code == 422
    assert {f: field_error(r, f) for f in ("last_name", "first_name", "birth_date", "email", "mobile")} == {
        "last_name": "Veuillez saisir votre nom.",
        "first_name": "Veuillez saisir votre prénom.",
        "birth_date": "Veuillez saisir votre date de naissance.",
        "email": "Veuillez saisir votre adresse email.",
        "mobile": "",
    }
    assert "4 champs sont à corriger" in r.text


async def test_sms_is_not_offered_without_a_mobile(portal: Portal, demo_people: Any) -> None:
    person = demo_people.DEMO_PERSONS[VITALE]
    await reach(portal, person, "canal", mobile="")
    r = await portal.get("/inscription/canal")
    assert 'value="sms"' not in r.text and 'value="email"' in r.text
    before = await snapshot(portal)
    r = await portal.post("/inscription/canal", {"channel": "sms"})
    assert r.status_code == 422 and "Veuillez choisir comment recevoir votre code" in field_error(r, "channel")
    assert await snapshot(portal) == before


async def test_a_vitale_serial_with_letters_is_refused_not_judged(portal: Portal, demo_people: Any) -> None:
    """A serial made of letters used one of the three tries and sent the password by post: now it is
    refused next to its field, and the right answer still goes through after more than three of them."""
    person = demo_people.DEMO_PERSONS[VITALE]
    await reach(portal, person, "question")
    for typed in ["ABCDEFGHIJ", "12345", "2345-678-90x", "2345678901234567890123"]:
        r = await portal.post("/inscription/question", {"question": "vitale", "answer-vitale": typed})
        assert r.status_code == 422 and field_error(r, "answer-vitale"), typed
    assert await portal.outbox("temporary_password") == []
    r = await portal.post("/inscription/question", {"question": "vitale", "answer-vitale": person.answer})
    assert r.headers["location"] == "/inscription/canal"


async def test_badly_written_answers_do_not_use_up_the_identity_answers(portal: Portal, demo_people: Any) -> None:
    person = demo_people.DEMO_PERSONS[PAYMENT]
    await reach(portal, person, "question")
    for typed in ["1e3", "NaN", "-5", "douze", "1" * 40]:
        r = await portal.post("/inscription/question", {"question": "payment", "answer-payment": typed})
        assert r.status_code == 422
    r = await portal.post("/inscription/question", {"question": "payment", "answer-payment": person.answer})
    assert r.headers["location"] == "/inscription/canal"


# --- "< Précédent", steps out of order, "Abandonner" ---------------------------------------------------


async def test_previous_keeps_what_was_typed(portal: Portal, demo_people: Any) -> None:
    person = demo_people.DEMO_PERSONS[VITALE]
    await reach(portal, person, "coordonnees")
    typed = contact_form(person, last_name="Lefèbvre", email="julien@exemple.fr")
    r = await portal.post("/inscription/coordonnees", {**typed, "action": "precedent"})
    assert r.status_code == 303 and r.headers["location"] == "/inscription/identifiant"
    r = await portal.get("/inscription/identifiant")
    assert f'value="{person.identifier}"' in r.text
    r = await portal.post("/inscription/identifiant", {"identifier": person.nir_with_key})
    assert r.headers["location"] == "/inscription/coordonnees"
    r = await portal.get("/inscription/coordonnees")
    for value in typed.values():
        assert f'value="{value}"' in r.text, value

    r = await portal.post("/inscription/coordonnees", typed)
    assert r.headers["location"] == "/inscription/question"
    r = await portal.post(
        "/inscription/question", {"question": "payment", "answer": "", "action": "precedent"}, htmx=True
    )
    assert r.status_code == 200 and is_partial(r) and r.headers["hx-push-url"] == "/inscription/coordonnees"
    for key in ("last_name", "first_name", "email"):
        assert f'value="{typed[key]}"' in r.text, key
    assert 'value="14/05/1985"' in r.text, "the birth date is shown in another form than typed"
    assert 'value="06 00 00 01 01"' in r.text, "the mobile is shown in another form than typed"
    r = await portal.post("/inscription/coordonnees", {**typed, "last_name": person.last_name})
    assert r.headers["location"] == "/inscription/question"
    r = await portal.get("/inscription/question")
    assert 'value="payment" checked' in r.text, "the question chosen before going back is forgotten"


async def test_previous_then_forward_shows_the_latest_draft(portal: Portal, demo_people: Any) -> None:
    person = demo_people.DEMO_PERSONS[VITALE]
    await reach(portal, person, "question")
    r = await portal.post("/inscription/question", {"question": "vitale", "answer": "", "action": "precedent"})
    assert r.headers["location"] == "/inscription/coordonnees"
    retyped = contact_form(person, email="julien.nouveau@demo.invalid", first_name="Julien-Marie")
    r = await portal.post("/inscription/coordonnees", {**retyped, "action": "precedent"})
    assert r.headers["location"] == "/inscription/identifiant"
    await portal.post("/inscription/identifiant", {"identifier": person.nir_with_key})
    r = await portal.get("/inscription/coordonnees")
    assert 'value="julien.nouveau@demo.invalid"' in r.text and 'value="Julien-Marie"' in r.text
    assert f'value="{person.email}"' not in r.text


async def test_a_later_step_cannot_be_reached_before_the_earlier_ones(portal: Portal, demo_people: Any) -> None:
    person = demo_people.DEMO_PERSONS[VITALE]
    for step in ["identifiant", "coordonnees", "question", "canal", "code", "termine"]:
        r = await portal.get(f"/inscription/{step}")
        assert (r.status_code, r.headers.get("location")) == (303, "/inscription/statut"), step
        r = await portal.post(f"/inscription/{step}", {"identifier": person.nir_with_key, "code": "123456"})
        assert (r.status_code, r.headers.get("location")) == (303, "/inscription/statut"), step
    await reach(portal, person, "coordonnees")
    for step in ["question", "canal", "code", "termine", "structure", "demande", "nulle-part"]:
        r = await portal.get(f"/inscription/{step}")
        assert (r.status_code, r.headers.get("location")) == (303, "/inscription/coordonnees"), step
        r = await portal.get(f"/inscription/{step}", htmx=True)
        assert (r.status_code, r.headers.get("hx-redirect"), r.text) == (200, "/inscription/coordonnees", ""), step
        r = await portal.post(
            f"/inscription/{step}",
            {"question": "vitale", "answer": person.answer, "channel": "email", "code": "123456"},
        )
        assert (r.status_code, r.headers.get("location")) == (303, "/inscription/coordonnees"), step
    assert (await flow_of(portal, "registration")).step == "coordonnees"  # type: ignore[union-attr]
    assert await portal.outbox() == [] and await account_count(portal) == 0


async def test_a_finished_registration_only_shows_its_end(portal: Portal, demo_people: Any) -> None:
    person = demo_people.DEMO_PERSONS[VITALE]
    assert await register(portal, person) == "termine"
    for step in PERSON_STEPS[1:]:
        r = await portal.get(f"/inscription/{step}")
        assert r.headers.get("location") == "/inscription/termine", step
        r = await portal.post(f"/inscription/{step}", person_forms(person).get(step, {"code": "123456"}))
        assert r.headers.get("location") == "/inscription/termine", step
    assert await account_count(portal) == 1


async def test_a_new_registration_can_start_after_the_last_one_ended(portal: Portal, demo_people: Any) -> None:
    first, second = demo_people.DEMO_PERSONS[VITALE], demo_people.DEMO_PERSONS["exploitant"]
    assert await register(portal, first) == "termine"
    r = await portal.get("/inscription/statut")  # someone else on the same browser, "S'inscrire"
    assert r.status_code == 200 and HEADINGS["statut"] in r.text and "checked" not in r.text
    r = await portal.post("/inscription/statut", {"status": second.status})
    assert r.headers["location"] == "/inscription/identifiant"
    r = await portal.get("/inscription/termine")
    assert r.headers["location"] == "/inscription/identifiant"
    for step in PERSON_STEPS[1:]:
        r = await portal.post(
            f"/inscription/{step}",
            person_forms(second).get(step) or {"code": await portal.last_code("registration_code")},
        )
        assert r.status_code == 303, (step, error_messages(r))
    assert r.headers["location"] == "/inscription/termine"
    assert await account_count(portal) == 2


async def test_abandon_drops_the_flow(portal: Portal, demo_people: Any) -> None:
    person = demo_people.DEMO_PERSONS[VITALE]
    await reach(portal, person, "question")
    flow_id = portal.client.cookies.get("guichet_flow_registration")
    assert flow_id and await flow_of(portal, "registration") is not None
    r = await portal.post("/inscription/abandon", {})
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert await portal.services.flows.load("registration", flow_id, portal.services.now()) is None
    assert "guichet_flow_registration" not in portal.client.cookies
    r = await portal.get("/inscription/question")
    assert r.headers["location"] == "/inscription/statut"
    r = await portal.get("/inscription/statut")
    assert "checked" not in r.text


async def test_a_new_registration_code_respects_the_cooldown_and_replaces_the_old(
    portal: Portal, demo_people: Any, clock: Any
) -> None:
    person = demo_people.DEMO_PERSONS[VITALE]
    await reach(portal, person, "code")
    r = await portal.get("/inscription/code")
    assert "Un code de sécurité vient de vous être envoyé à l'adresse" in text_of(r) and person.email in r.text
    old = await portal.last_code("registration_code")
    r = await portal.post("/inscription/code", {"action": "renvoyer"})
    assert r.status_code == 422 and "dans 60 secondes" in field_error(r, "code")
    clock.advance(seconds=60)
    r = await portal.post("/inscription/code", {"action": "renvoyer"})
    assert r.status_code == 200 and "Un nouveau code de sécurité vient de vous être envoyé." in r.text
    new = await portal.last_code("registration_code")
    assert len(await portal.outbox("registration_code")) == 2
    if new != old:
        r = await portal.post("/inscription/code", {"code": old})
        assert r.status_code == 422 and "Le code saisi est incorrect." in field_error(r, "code")
    r = await portal.post("/inscription/code", {"code": new})
    assert r.headers["location"] == "/inscription/termine"
    assert await account_count(portal) == 1


# --- outcomes ------------------------------------------------------------------------------------------


async def assert_registered(portal: Portal, person: Any, *, channel: str) -> dict[str, Any]:
    """An account with a temporary password sent on ``channel``, and the confirmation letter by post."""
    account = await account_of(portal, person.identifier)
    assert account is not None and account["password_is_temporary"]
    assert account["temporary_expires_at"] > portal.services.now()
    assert account["status"] == person.status and account["identifier_kind"] == person.identifier_kind
    [password] = await portal.outbox("temporary_password")
    assert password["channel"] == channel
    if channel == "email":
        assert password["recipient"]["email"] == person.email and account["email_verified"]
    elif channel == "sms":
        assert password["recipient"]["mobile"] == e164(person.mobile)
        assert account["mobile_verified"]
    else:
        assert list(password["recipient"]["address"]["lines"]) == list(person.address)
        assert not account["email_verified"] and not account["mobile_verified"]
    assert await portal.services.passwords.verify(account["password_hash"], password["payload"]["password"])
    [letter] = await portal.outbox("registration_letter")
    assert letter["channel"] == "postal" and list(letter["recipient"]["address"]["lines"]) == list(person.address)
    return account


END_TEXT = {
    "email": "Un mot de passe temporaire vous a été envoyé par e-mail.",
    "sms": "Un mot de passe temporaire vous a été envoyé par SMS.",
    "postal": "vous sera envoyé <strong>par courrier</strong>",
}


async def test_right_vitale_answer_sends_the_password_by_email(portal: Portal, demo_people: Any) -> None:
    person = demo_people.DEMO_PERSONS[VITALE]
    assert await register(portal, person, channel="email") == "termine"
    [code] = await portal.outbox("registration_code")
    assert code["channel"] == "email" and code["recipient"]["email"] == person.email
    await assert_registered(portal, person, channel="email")
    assert END_TEXT["email"] in (await portal.get("/inscription/termine")).text


async def test_right_vitale_answer_sends_the_password_by_sms(portal: Portal, demo_people: Any) -> None:
    person = demo_people.DEMO_PERSONS[VITALE]
    assert await register(portal, person, channel="sms", htmx=True) == "termine"
    [code] = await portal.outbox("registration_code")
    assert code["channel"] == "sms"
    await assert_registered(portal, person, channel="sms")
    assert END_TEXT["sms"] in (await portal.get("/inscription/termine")).text


async def test_wrong_amount_sends_the_password_by_post(portal: Portal, demo_people: Any) -> None:
    person = demo_people.DEMO_PERSONS[PAYMENT]
    assert await register(portal, person, answer="412,38") == "termine"
    await assert_registered(portal, person, channel="postal")
    assert await portal.outbox("registration_code") == []
    assert END_TEXT["postal"] in (await portal.get("/inscription/termine")).text


async def test_wrong_vitale_serial_sends_the_password_by_post(portal: Portal, demo_people: Any) -> None:
    person = demo_people.DEMO_PERSONS[VITALE]
    assert await register(portal, person, answer="2345678900") == "termine"
    await assert_registered(portal, person, channel="postal")


async def test_cannot_answer_sends_the_password_by_post(portal: Portal, demo_people: Any) -> None:
    person = demo_people.DEMO_PERSONS[VITALE]
    assert await register(portal, person, question="aucune", answer="") == "termine"
    await assert_registered(portal, person, channel="postal")
    assert END_TEXT["postal"] in (await portal.get("/inscription/termine")).text


async def test_exploitant_invoice_amount_by_sms(portal: Portal, demo_people: Any) -> None:
    person = demo_people.DEMO_PERSONS["exploitant"]
    await reach(portal, person, "question")
    r = await portal.get("/inscription/question")
    assert "facture de cotisations" in r.text and "12 derniers mois" in r.text
    assert 'value="vitale"' not in r.text
    assert await register(portal, person, channel="sms") == "termine"
    await assert_registered(portal, person, channel="sms")


async def test_entreprise_with_its_siret_and_salary_contributions(portal: Portal, demo_people: Any) -> None:
    person = demo_people.DEMO_PERSONS["entreprise"]
    r = await portal.post("/inscription/statut", {"status": "entreprise"})
    r = await portal.get(r.headers["location"])
    assert "Numéro SIRET" in r.text
    r = await portal.post("/inscription/identifiant", {"identifier": "842 167 306 00021"})
    r = await portal.get(r.headers["location"])
    assert "Raison sociale" in r.text and "Date de naissance" not in r.text
    r = await portal.post("/inscription/coordonnees", contact_form(person))
    r = await portal.get(r.headers["location"])
    assert "cotisations sur salaires" in r.text
    await portal.post("/inscription/abandon", {})
    assert await register(portal, person) == "termine"
    account = await assert_registered(portal, person, channel="email")
    assert account["identifier"] == "84216730600021" and account["identifier_kind"] == "siret"


async def test_employeur_de_jardinier_with_salary_contributions(portal: Portal, demo_people: Any) -> None:
    person = demo_people.DEMO_PERSONS["employeur_jardinier"]
    assert await register(portal, person, channel="sms") == "termine"
    await assert_registered(portal, person, channel="sms")


@pytest.mark.parametrize("typed", ["1 875,40", "1875.40", "1875,4", "1875,40 €", "1\u00a0875,40"])
async def test_each_amount_notation_is_understood(portal: Portal, demo_people: Any, typed: str) -> None:
    person = demo_people.DEMO_PERSONS["exploitant"]
    await reach(portal, person, "question")
    r = await portal.post("/inscription/question", {"question": "payment", "answer": typed})
    assert r.status_code == 303 and r.headers["location"] == "/inscription/canal"


async def test_an_amount_outside_the_window_is_wrong(portal: Portal, demo_people: Any) -> None:
    person = demo_people.DEMO_PERSONS[PAYMENT]  # 380,00 was paid 400 days ago, outside the 6 months
    assert await register(portal, person, answer="380,00") == "termine"
    await assert_registered(portal, person, channel="postal")


# --- identity answers are bounded per identifier ----------------------------------------------------------


async def answer_once(portal: Portal, person: Any, *, birth_date: str | None = None) -> str:
    """One registration with the right answer (and, if given, a birth date the registry does not match)."""
    contact = {"birth_date": birth_date} if birth_date else {}
    await reach(portal, person, "question", **contact)
    r = await portal.post("/inscription/question", {"question": person.question, "answer": person.answer})
    assert r.status_code == 303
    return str(r.headers["location"])


async def test_the_last_allowed_identity_answer_is_still_checked(
    portal: Portal, demo_people: Any, portal_factory: Any, make_config: Any, db_url: str
) -> None:
    person = demo_people.DEMO_PERSONS[PAYMENT]
    first = await portal_with(portal_factory, make_config, db_url, security="identity_answers_per_identifier = 2")
    [second] = await more_portals(portal_factory, first, 1)
    assert await answer_once(first, person, birth_date="01/01/1990") == "/inscription/termine"
    assert await answer_once(second, person) == "/inscription/canal"


async def test_after_the_allowed_identity_answers_even_a_right_one_goes_by_post(
    portal: Portal, demo_people: Any, portal_factory: Any, make_config: Any, db_url: str
) -> None:
    person = demo_people.DEMO_PERSONS[PAYMENT]
    first = await portal_with(portal_factory, make_config, db_url, security="identity_answers_per_identifier = 2")
    browsers = [first, *await more_portals(portal_factory, first, 2)]
    for browser in browsers[:2]:
        assert await answer_once(browser, person, birth_date="01/01/1990") == "/inscription/termine"
    assert await account_count(first) == 0
    assert await answer_once(browsers[2], person) == "/inscription/termine"
    await assert_registered(first, person, channel="postal")
    assert await first.outbox("registration_code") == []
    other = demo_people.DEMO_PERSONS[VITALE]  # the bound is per identifier
    [fresh] = await more_portals(portal_factory, first, 1)
    assert await answer_once(fresh, other) == "/inscription/canal"


async def test_cannot_answer_does_not_use_up_the_identity_answers(
    portal: Portal, demo_people: Any, portal_factory: Any, make_config: Any, db_url: str
) -> None:
    person = demo_people.DEMO_PERSONS[PAYMENT]
    first = await portal_with(portal_factory, make_config, db_url, security="identity_answers_per_identifier = 1")
    [second] = await more_portals(portal_factory, first, 1)
    await reach(first, person, "question", birth_date="01/01/1990")
    r = await first.post("/inscription/question", {"question": "aucune", "answer": ""})
    assert r.headers["location"] == "/inscription/termine"
    assert await answer_once(second, person) == "/inscription/canal"


# --- no enumeration -----------------------------------------------------------------------------------


def e164(mobile: str) -> str:
    return "+33" + mobile.replace(" ", "")[1:]


async def walk(portal: Portal, person: Any, identifier: str, *, question: str, answer: str) -> list[Any]:
    """Registration step by step: each answer's status and destination, then the page it leads to."""
    seen: list[Any] = []
    forms = [
        ("statut", {"status": "particulier"}),
        ("identifiant", {"identifier": identifier}),
        ("coordonnees", contact_form(person)),
        ("question", {"question": question, "answer": answer}),
        ("canal", {"channel": "email"}),
        ("code", {}),
    ]
    r = await portal.get("/inscription/statut")
    seen.append((r.status_code, neutral(r.text)))
    for step, form in forms:
        if f"/inscription/{step}" != (where(r) or "/inscription/statut"):
            break
        if step == "code":
            form = {"code": await portal.last_code("registration_code")}
        r = await portal.post(f"/inscription/{step}", form)
        seen.append((step, r.status_code, where(r)))
        page = await portal.get(where(r))
        typed = [identifier, person.identifier, *contact_form(person).values(), e164(person.mobile)]
        seen.append((page.status_code, neutral(page.text, *typed)))
    return seen


async def test_unknown_known_and_registered_identifiers_see_the_same_screens(
    portal: Portal, demo_people: Any, portal_factory: Any
) -> None:
    owner = demo_people.DEMO_PERSONS[VITALE]
    known = demo_people.DEMO_PERSONS[PAYMENT]
    assert await register(portal, owner) == "termine"
    owner_before = await account_of(portal, owner.identifier)
    outbox_before = len(await portal.outbox())
    stranger_nir = UNKNOWN_NIR + nir_key(UNKNOWN_NIR)
    browsers = await more_portals(portal_factory, portal, 3)

    runs = [
        await walk(browsers[0], owner, owner.nir_with_key, question="payment", answer="999,99"),
        await walk(browsers[1], known, known.nir_with_key, question="payment", answer="999,99"),
        await walk(browsers[2], owner, stranger_nir, question="payment", answer="999,99"),
    ]
    assert runs[0] == runs[1] == runs[2]
    assert [s[2] for s in runs[0] if len(s) == 3] == [
        "/inscription/identifiant",
        "/inscription/coordonnees",
        "/inscription/question",
        "/inscription/termine",
    ]

    after = await portal.outbox()
    new = after[outbox_before:]
    notices = [m for m in new if m["template"] == "registration_attempt_notice"]
    assert len(notices) == 1 and notices[0]["recipient"]["email"] == owner.email
    assert await account_of(portal, owner.identifier) == owner_before
    assert await account_of(portal, UNKNOWN_NIR) is None
    # the known person without an account was registered, by post; the stranger got nothing
    assert {m["template"] for m in new if m["template"] != "registration_attempt_notice"} == {
        "temporary_password",
        "registration_letter",
    }
    assert all(m["recipient"].get("address") for m in new if m["template"] != "registration_attempt_notice")
    assert await account_count(portal) == 2


async def test_a_registered_identifier_with_the_right_answer_sees_the_same_screens(
    portal: Portal, demo_people: Any, portal_factory: Any
) -> None:
    owner = demo_people.DEMO_PERSONS[VITALE]
    known = demo_people.DEMO_PERSONS[PAYMENT]
    assert await register(portal, owner) == "termine"
    owner_before = await account_of(portal, owner.identifier)
    browsers = await more_portals(portal_factory, portal, 2)
    first = await walk(browsers[0], owner, owner.nir_with_key, question=owner.question, answer=owner.answer)
    second = await walk(browsers[1], known, known.nir_with_key, question=known.question, answer=known.answer)
    assert first == second
    assert [s[2] for s in first if len(s) == 3][-3:] == [
        "/inscription/canal",
        "/inscription/code",
        "/inscription/termine",
    ]
    assert await account_of(portal, owner.identifier) == owner_before
    notices = await portal.outbox("registration_attempt_notice")
    assert len(notices) == 1 and notices[0]["recipient"]["email"] == owner.email
    assert len(await portal.outbox("temporary_password")) == 2  # the owner's first registration, and the known one


# --- two registrations of one identifier at the same moment ---------------------------------------------


async def test_two_concurrent_registrations_make_one_account(
    portal: Portal, demo_people: Any, portal_factory: Any
) -> None:
    person = demo_people.DEMO_PERSONS[VITALE]
    other = (await more_portals(portal_factory, portal, 1))[0]
    for browser in (portal, other):
        await reach(browser, person, "code")
    first, second = [m["payload"]["code"] for m in await portal.outbox("registration_code")]
    answers = await asyncio.gather(
        portal.post("/inscription/code", {"code": first}), other.post("/inscription/code", {"code": second})
    )
    assert [(r.status_code, r.headers.get("location")) for r in answers] == [(303, "/inscription/termine")] * 2
    assert await account_count(portal) == 1
    assert len(await portal.outbox("temporary_password")) == 1
    assert len(await portal.outbox("registration_letter")) == 1
    assert len(await portal.outbox("registration_attempt_notice")) == 1


# --- "Autre": third parties ---------------------------------------------------------------------------


REQUEST = {
    "structure_name": "Cabinet Comptable du Béarn",
    "siret": "732 829 320 00074",
    "contact_name": "Anne Etcheverry",
    "email": "anne@cabinet.invalid",
    "phone": "05 59 00 00 00",
    "address_street": "12 rue des Pyrénées",
    "address_extra": "",
    "postal_code": "64000",
    "city": "Pau",
}


@pytest.mark.parametrize("htmx", [False, True])
async def test_a_third_party_picks_its_structure_and_leaves_a_request(portal: Portal, htmx: bool) -> None:
    from guichet.core.third_party import list_requests

    await portal.get("/inscription/statut")
    steps = [
        ("statut", {"status": "autre"}, "structure"),
        ("structure", {"structure": "tiers_declarant"}, "demande"),
        ("demande", REQUEST, "demande-envoyee"),
    ]
    for step, form, following in steps:
        r = await portal.post(f"/inscription/{step}", form, htmx=htmx)
        if htmx:
            assert r.status_code == 200 and is_partial(r) and r.headers["hx-push-url"] == f"/inscription/{following}"
        else:
            assert r.status_code == 303 and r.headers["location"] == f"/inscription/{following}"
            r = await portal.get(r.headers["location"])
            assert is_full_page(r)
        assert HEADINGS[following] in r.text
    assert "Kbis" in r.text  # the instructions for a tiers déclarant
    [request] = await list_requests(portal.services.database, state=None)
    assert (request.structure_kind, request.siret, request.email, request.phone, request.state) == (
        "tiers_declarant",
        "73282932000074",
        "anne@cabinet.invalid",
        "+33559000000",
        "pending",
    )
    assert request.address == ("12 rue des Pyrénées", "64000 PAU")
    assert await account_count(portal) == 0 and await portal.outbox() == []
    services = portal.services
    (allowance,) = await services.limiter.check_all(
        [(services.limits.registration_client, "203.0.113.7")], services.now()
    )
    assert allowance.count == 1, "one request, one count against the client's registrations"


@pytest.mark.parametrize(
    ("siret", "message"),
    [
        ("732 829 320 00075", "n'est pas valide"),
        ("7328293200007", "comporte 14 chiffres"),
        ("７３２８２９３２０００７４", "comporte 14 chiffres"),
        ("", "Veuillez saisir votre numéro SIRET."),
    ],
)
async def test_a_third_party_request_with_a_bad_siret_is_refused(portal: Portal, siret: str, message: str) -> None:
    from guichet.core.third_party import list_requests

    await portal.get("/inscription/statut")
    await portal.post("/inscription/statut", {"status": "autre"})
    await portal.post("/inscription/structure", {"structure": "partenaire_action_sociale"})
    r = await portal.post("/inscription/demande", {**REQUEST, "siret": siret})
    assert r.status_code == 422 and message in field_error(r, "siret")
    assert f'value="{siret}"' in r.text
    assert await list_requests(portal.services.database, state=None) == []
    assert (await flow_of(portal, "registration")).step == "demande"  # type: ignore[union-attr]


async def test_a_third_party_must_pick_a_structure_kind(portal: Portal) -> None:
    await portal.get("/inscription/statut")
    await portal.post("/inscription/statut", {"status": "autre"})
    r = await portal.post("/inscription/structure", {"structure": "banque"})
    assert r.status_code == 422 and "Veuillez choisir la nature de votre structure." in field_error(r, "structure")
    r = await portal.get("/inscription/identifiant")
    assert r.headers["location"] == "/inscription/structure"


# --- help -------------------------------------------------------------------------------------------------


async def test_help_is_a_fragment_with_htmx_and_a_page_without(portal: Portal) -> None:
    r = await portal.get("/aide/identifiant", htmx=True)
    assert r.status_code == 200
    assert r.text.strip().startswith('<div class="help" id="aide-identifiant">') and "<html" not in r.text
    assert '<section id="step"' not in r.text and "numéro de Sécurité Sociale" in r.text
    r = await portal.get("/aide/identifiant")
    assert r.status_code == 200 and is_full_page(r)
    assert "<h1" in r.text and "Où trouver mon identifiant ?" in r.text and 'id="aide-identifiant"' in r.text
    r = await portal.get("/aide/numero-securite-sociale", htmx=True)
    assert r.status_code == 200 and "<html" not in r.text
    r = await portal.get("/aide/inconnue")
    assert r.status_code == 404
