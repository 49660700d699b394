"""Forgotten password on the Sud Aquitaine config: a 4-digit code by SMS, valid 30 minutes, then a temporary
password by SMS, the login and the forced personalisation."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.flows import confirm_contacts, login_code, login_password, personalise
from tests.browser.support import HttpCitizen, LiveServer, code_in, new_password, password_in

pytestmark = pytest.mark.browser


def test_forgotten_password_by_sms_with_a_4_digit_code(sud_aquitaine: LiveServer, open_browser: Any, js: bool) -> None:
    server = sud_aquitaine
    person = server.people.take("particulier_vitale")
    citizen = HttpCitizen(server)
    citizen.make_account(person, new_password(person), channel="sms")  # a recovery SMS goes to a proven mobile
    citizen.close()
    b = open_browser(server, js=js)
    page = b.page
    mailbox = server.mailbox

    b.goto("/connexion", "connexion", h1="Je me connecte à Mon espace privé")
    b.act(
        page.get_by_role("link", name="> J'ai oublié mon mot de passe"),
        "oubli-identifiant",
        h1="Vérification de votre identité",
        swap=False,
    )
    expect(page.locator(".progress")).to_have_text("Étape 1 sur 4")
    assert page.get_attribute("#f-identifier", "inputmode") == "numeric"
    assert page.get_attribute("#f-identifier", "autocomplete") == "username"
    b.fill("identifier", "2 99 99")
    b.click_button("Suivant >", "oubli-identifiant-erreur", h1="Vérification de votre identité", swap=True, error=True)
    expect(b.field("identifier")).to_have_value("2 99 99")
    b.fill("identifier", person.nir_with_key)
    b.click_button("Suivant >", "oubli-canal", h1="Demande d'un nouveau mot de passe", swap=True)
    expect(page.locator("legend")).to_have_text("Comment désirez-vous recevoir votre mot de passe temporaire ?")
    page.get_by_label("par SMS").check()
    mark = b.mailbox_mark()
    b.click_button("Suivant >", "oubli-code", h1="Demande d'un nouveau mot de passe", swap=True)
    step = page.locator("#step")
    expect(step).to_contain_text("Un code de confirmation vous a été envoyé par sms.")
    expect(step).to_contain_text("Ce code de 4 chiffres est valable 30 minutes.")
    assert page.get_attribute("#f-code", "inputmode") == "numeric"
    sms = mailbox.sms_to(person.mobile, contains="code", after=mark)
    code = code_in(sms.text, 4)
    assert "30 min" in sms.text
    b.fill("code", "1234" if code != "1234" else "4321")
    b.click_button("Suivant >", "oubli-code-erreur", h1="Demande d'un nouveau mot de passe", swap=True, error=True)
    b.fill("code", code)
    b.click_button("Suivant >", "oubli-confirmation", h1="Confirmation", swap=True)
    expect(step).to_contain_text("Un mot de passe temporaire vous a été envoyé par SMS.")
    temporary = password_in(mailbox.sms_to(person.mobile, contains="mot de passe temporaire", after=mark).text)

    b.act(
        page.get_by_role("link", name="Accéder à Mon espace privé"),
        "connexion",
        swap=False,
        h1="Je me connecte à Mon espace privé",
    )
    mark = login_password(b, person.nir, temporary)
    login_code(
        b, person, mark, channel="sms", next_h1="Changement de votre mot de passe", state="changement-mot-de-passe"
    )
    personalise(b, new_password(person)[::-1], mistakes=False)
    # seed 002, steps 5-6: the contacts confirmed at the first login are confirmed again after a recovery
    expect(step).to_contain_text(
        "Avant d'accéder à votre espace privé MSA, nous vous demandons de confirmer vos coordonnées."
    )
    b.act(
        page.get_by_role("link", name="Continuer >"),
        "coordonnees-apres-oubli",
        h1="Confirmation de vos coordonnées",
        swap=False,
    )
    confirm_contacts(b, person, mistakes=False)
