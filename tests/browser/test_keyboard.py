"""Registration and login with the keyboard alone (Tab, Space, Enter, and typing), on a 320 px wide phone
with JavaScript: every focused control shows a visible focus ring."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.flows import Browse
from tests.browser.support import LiveServer, code_in, new_password, password_in

pytestmark = pytest.mark.browser

VISIBLE_FOCUS = """selector => {
  const e = document.activeElement;
  if (!e || !e.matches(selector)) return null;
  const s = getComputedStyle(e);
  return s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2;
}"""


def tab_to(page: Page, selector: str, *, limit: int = 40) -> None:
    """Press Tab until ``selector`` has the focus; it must show a visible focus ring."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        visible = page.evaluate(VISIBLE_FOCUS, selector)
        if visible is not None:
            assert visible, f"{selector} has the focus but no visible focus ring"
            return
    raise AssertionError(f"{limit} presses of Tab never reached {selector}")


def type_into(page: Page, selector: str, text: str) -> None:
    tab_to(page, selector)
    page.keyboard.type(text, delay=5)


def test_register_and_log_in_with_the_keyboard_alone(demo_server: LiveServer, open_browser: Any) -> None:
    person = demo_server.people.take("exploitant")
    b: Browse = open_browser(demo_server, js=True, viewport={"width": 320, "height": 640})
    page = b.page
    mailbox = demo_server.mailbox
    enter = lambda: page.keyboard.press("Enter")  # noqa: E731

    b.goto("/inscription/statut", "inscription-statut", h1="Vous êtes...")
    tab_to(page, "#f-status")  # the first status: Exploitant agricole
    expect(page.locator("label[for=f-status]")).to_contain_text("Exploitant agricole")
    page.keyboard.press("Space")
    expect(page.locator("#f-status")).to_be_checked()
    tab_to(page, "button.primary")
    b.act(enter, "inscription-identifiant", h1="Votre identifiant", swap=True)
    type_into(page, "#f-identifier", person.nir_with_key)
    b.act(enter, "inscription-coordonnees", h1="Vos coordonnées", swap=True)
    type_into(page, "#f-last_name", person.last_name)
    type_into(page, "#f-first_name", person.first_name)
    type_into(page, "#f-birth_date", person.birth_date)
    type_into(page, "#f-email", person.email)
    type_into(page, "#f-mobile", person.mobile_display)
    b.act(enter, "inscription-question", h1="Vérification de votre identité", swap=True)
    expect(page.locator("input[name=question]").first).to_be_checked()
    type_into(page, f"#f-answer-{person.question}", person.answer)
    b.act(enter, "inscription-canal", h1="Réception du code de sécurité", swap=True)
    tab_to(page, "button.primary")
    mark = b.mailbox_mark()
    b.act(enter, "inscription-code", h1="Votre code de sécurité", swap=True)
    type_into(page, "#f-code", code_in(mailbox.email_to(person.email, subject="code", after=mark).text))
    b.act(enter, "inscription-termine", h1="Votre inscription est enregistrée", swap=True)
    temporary = password_in(mailbox.email_to(person.email, subject="mot de passe temporaire", after=mark).text)

    tab_to(page, "a.button.primary")
    b.act(enter, "connexion", h1="Je me connecte à Mon espace privé", swap=False)
    type_into(page, "#f-identifier", person.nir)
    type_into(page, "#f-password", temporary)
    mark = b.mailbox_mark()
    b.act(enter, "connexion-code", h1="Authentification à 2 facteurs", swap=True)
    type_into(page, "#f-code", code_in(mailbox.email_to(person.email, subject="code", after=mark).text))
    b.act(enter, "changement-mot-de-passe", h1="Changement de votre mot de passe", swap=False)
    password = new_password(person)
    type_into(page, "#f-new_password", password)
    type_into(page, "#f-confirm_password", password)
    b.act(enter, "mot-de-passe-modifie", h1="Confirmation", swap=False)
    tab_to(page, "a.button.primary")
    b.act(enter, "coordonnees", h1="Confirmation de vos coordonnées", swap=False)
    tab_to(page, "button[value=confirmer]")
    b.act(enter, "espace-prive", h1="Mon espace privé", swap=False)
    expect(page.locator("#step")).to_contain_text(f"Bonjour {person.first_name} {person.last_name}")
