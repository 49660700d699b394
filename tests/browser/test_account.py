"""After login, in a real browser: the forced personalisation with its meter, the contact confirmation with
an edit (✎), and Mon compte's change of password and of email."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.flows import confirm_contacts, login_code, login_password, personalise
from tests.browser.support import HttpCitizen, LiveServer, Person, code_in, new_password, person_with_account

pytestmark = pytest.mark.browser


def other_mobile(person: Person) -> str:
    digits = re.sub(r"\D", "", person.nir)[-8:]
    return "07 " + " ".join(digits[i : i + 2] for i in range(0, 8, 2))


def test_first_login_forces_the_change_then_the_contact_confirmation(
    demo_server: LiveServer, open_browser: Any, js: bool
) -> None:
    person = demo_server.people.take("particulier_paiement")
    citizen = HttpCitizen(demo_server)
    temporary = citizen.register(person)
    citizen.close()
    b = open_browser(demo_server, js=js)
    mark = login_password(b, person.nir, temporary)
    login_code(b, person, mark, next_h1="Changement de votre mot de passe", state="changement-mot-de-passe")
    expect(b.page.locator("#step")).to_contain_text("Votre mot de passe est temporaire. Vous devez le personnaliser.")
    # the espace privé is out of reach until the password is personalised
    b.goto("/espace-prive", "espace-prive-refuse", h1="Changement de votre mot de passe")
    # with JavaScript the meter moves from "faible" to "fort" as the person types
    personalise(b, new_password(person))
    expect(b.page.locator("#step")).to_contain_text("nous vous demandons de confirmer vos coordonnées")
    b.act(
        b.page.get_by_role("link", name="Continuer >"), "coordonnees", h1="Confirmation de vos coordonnées", swap=False
    )
    expect(b.page.locator("#contact-email")).to_contain_text(person.email)
    confirm_contacts(b, person, edit_mobile=other_mobile(person), password=new_password(person))


def test_mon_compte_changes_the_password_and_the_email(demo_server: LiveServer, open_browser: Any, js: bool) -> None:
    person, password = person_with_account(demo_server, "particulier_vitale")
    b = open_browser(demo_server, js=js)
    page = b.page
    mailbox = demo_server.mailbox
    mark = login_password(b, person.nir, password)
    login_code(b, person, mark)

    b.act(page.get_by_role("link", name="Mon compte").first, "mon-compte", h1="Mon compte", swap=False)
    expect(page.locator("#step")).to_contain_text(f"Email : {person.email}")
    b.act(
        page.get_by_role("link", name="> modifier mon mot de passe"),
        "mon-compte-mot-de-passe",
        h1="Modifier mon mot de passe",
        swap=False,
    )
    changed = password[::-1]
    mark = b.mailbox_mark()
    personalise(b, changed, current=password, meter=False)
    mailbox.email_to(person.email, subject="Votre mot de passe a été modifié", after=mark)
    b.act(page.get_by_role("link", name="Continuer >"), "espace-prive", h1="Mon espace privé", swap=False)

    b.act(page.get_by_role("link", name="Mon compte").first, "mon-compte", h1="Mon compte", swap=False)
    b.act(
        page.get_by_role("link", name="> modifier cet email"), "mon-compte-email", h1="Modifier mon email", swap=False
    )
    assert page.get_attribute("#f-value", "autocomplete") == "email"
    new_email = f"nouvelle.{person.nir[-6:]}@demo.invalid"
    b.fill("current_password", password)  # the old one: refused
    b.fill("value", new_email)
    b.click_button("Suivant >", "mon-compte-email-erreur", h1="Modifier mon email", swap=True, error=True)
    expect(b.field("value")).to_have_value(new_email)
    b.fill("current_password", changed)
    mark = b.mailbox_mark()
    b.click_button("Suivant >", "mon-compte-email-code", h1="Modifier mon email", swap=True)
    code = code_in(mailbox.email_to(new_email, subject="code", after=mark).text)
    b.fill("code", code)
    b.click_button("Valider", "mon-compte-email-modifie", h1="Mon compte", swap=True)
    expect(page.locator(".notice")).to_contain_text("Votre adresse email a été modifiée.")
    expect(page.locator("#step")).to_contain_text(f"Email : {new_email}")
    # the old address is told
    mailbox.email_to(person.email, subject="adresse email", after=mark)
