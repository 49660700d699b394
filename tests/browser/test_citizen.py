"""The citizen's side as the seeds word it, and the small stumbles of issue 14, on both seed configs
(Provence Azur, seed 000; Sud Aquitaine, seed 002), JavaScript on and off, at 360 px and 1280 px.

Every state goes through Browse's checks (axe-core WCAG 2.1 A/AA, CSP, no horizontal scroll, touch targets).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from guichet.core.config import FICTITIOUS_NIR_EXAMPLE
from tests.browser.flows import confirm_contacts, login_code, login_password, personalise
from tests.browser.support import (
    TEST_CITIZEN,
    HttpCitizen,
    LiveServer,
    code_in,
    new_password,
    password_in,
    person_with_account,
)

pytestmark = pytest.mark.browser

PHONE_DISPLAY = re.compile(r"0\d( \d\d){4}")
LOGGED_OUT = "Vous êtes déconnecté de Mon espace privé."


def on_one_line(page: Page, selector: str, text: str) -> bool:
    """Whether ``text`` (found in ``selector``'s text, spaces of any kind) is laid out on a single line."""
    return bool(
        page.evaluate(
            """([selector, wanted]) => {
      const root = document.querySelector(selector);
      const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
      const flat = s => s.replace(/\\s/g, ' ');
      for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        const at = flat(node.textContent).indexOf(flat(wanted));
        if (at < 0) continue;
        const range = document.createRange();
        range.setStart(node, at);
        range.setEnd(node, at + wanted.length);
        const tops = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
        return tops.size === 1;
      }
      throw new Error('text not found: ' + wanted);
    }""",
            [selector, text],
        )
    )


def no_word_broken(page: Page, selector: str) -> list[str]:
    """The words (runs between spaces and <wbr>) inside ``selector`` that are laid out on two lines."""
    return list(
        page.evaluate(
            """selector => {
      const broken = [];
      for (const root of document.querySelectorAll(selector)) {
        const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
          for (const match of node.textContent.matchAll(/[^\\s]+/g)) {
            const range = document.createRange();
            range.setStart(node, match.index);
            range.setEnd(node, match.index + match[0].length);
            const tops = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
            if (tops.size > 1) broken.push(match[0]);
          }
        }
      }
      return broken;
    }""",
            selector,
        )
    )


def footer_at_the_bottom(page: Page) -> None:
    """The page's foot (the assistance footer, then the legal links) ends at the bottom of the window on a
    short page, at the end of a long one."""
    bottom, window, document = page.evaluate("""() => [document.body.lastElementChild
        .getBoundingClientRect().bottom + window.scrollY, window.innerHeight, document.documentElement.scrollHeight]""")
    assert abs(bottom - max(window, document)) <= 2, (bottom, window, document)


def test_registration_pages_as_the_seeds_word_them(
    seed_server: LiveServer, open_browser: Any, js: bool, width: dict[str, int]
) -> None:
    """The fictitious example NIR (8), an exploitant told only of his own question (7), an amount that keeps
    together (10), malformed answers refused without a try (3), the mobile written as on every page (5)."""
    server = seed_server
    person = server.people.take("exploitant")
    b = open_browser(server, js=js, viewport=width)
    page = b.page
    b.goto("/inscription/statut", "inscription-statut", h1="Vous êtes...")
    page.locator("input[name=status][value=exploitant]").check()
    b.click_button("Suivant >", "inscription-identifiant", h1="Votre identifiant", swap=True)
    hint = page.locator("#f-identifier-hint")
    expect(hint).to_contain_text(f"par exemple {FICTITIOUS_NIR_EXAMPLE}")
    assert on_one_line(page, "#f-identifier-hint", FICTITIOUS_NIR_EXAMPLE)
    b.fill("identifier", person.nir_with_key)
    b.click_button("Suivant >", "inscription-coordonnees", h1="Vos coordonnées", swap=True)
    for name in ("last_name", "first_name", "birth_date", "email"):
        b.fill(name, getattr(person, name))
    b.fill("mobile", person.mobile_display)
    b.click_button("Suivant >", "inscription-question", h1="Vérification de votre identité", swap=True)
    step = page.locator("#step")
    expect(step).not_to_contain_text("Vitale")
    assert "1\u00a0234,50" in (page.locator("#f-answer-payment-hint").text_content() or "")
    assert on_one_line(page, "#f-answer-payment-hint", "1 234,50")
    page.locator("input[name=question][value=payment]").check()
    for typed, message in (
        ("douze euros", "Saisissez le montant en euros, par exemple 1 234,50."),
        ("", "Veuillez saisir un montant."),
        ("12,3,4", "Saisissez le montant en euros, par exemple 1 234,50."),
    ):
        b.fill("answer-payment", typed)
        b.click_button(
            "Suivant >", "inscription-question-malformee", h1="Vérification de votre identité", swap=True, error=True
        )
        expect(page.locator("#f-answer-payment-error")).to_contain_text(message)
    # three malformed answers cost none of the three tries: the right one still leads to the code
    b.fill("answer-payment", person.answer)
    b.click_button("Suivant >", "inscription-canal", h1="Réception du code de sécurité", swap=True)
    sms_label = page.locator("label", has_text="SMS").first.inner_text()
    assert PHONE_DISPLAY.search(sms_label) and "+33" not in sms_label, sms_label
    assert person.mobile_display in sms_label


def test_a_vitale_serial_with_letters_costs_no_try(
    seed_server: LiveServer, open_browser: Any, js: bool, width: dict[str, int]
) -> None:
    server = seed_server
    person = server.people.take("particulier_vitale")
    b = open_browser(server, js=js, viewport=width)
    page = b.page
    b.goto("/inscription/statut", "inscription-statut", h1="Vous êtes...")
    page.locator("input[name=status][value=particulier]").check()
    b.click_button("Suivant >", "inscription-identifiant", h1="Votre identifiant", swap=True)
    b.fill("identifier", person.nir_with_key)
    b.click_button("Suivant >", "inscription-coordonnees", h1="Vos coordonnées", swap=True)
    for name in ("last_name", "first_name", "birth_date", "email"):
        b.fill(name, getattr(person, name))
    b.click_button("Suivant >", "inscription-question", h1="Vérification de votre identité", swap=True)
    page.locator("input[name=question][value=vitale]").check()
    mark = b.mailbox_mark()
    for typed, message in (
        ("ABCDEFGHIJ", "Le numéro de série de la carte Vitale ne comporte que des chiffres"),
        ("12345", "comporte de 8 à 20 chiffres : vous en avez saisi 5."),
        ("ABCDEFGHIJ", "ne comporte que des chiffres"),
    ):
        b.fill("answer-vitale", typed)
        b.click_button(
            "Suivant >", "inscription-vitale-malformee", h1="Vérification de votre identité", swap=True, error=True
        )
        expect(page.locator("#f-answer-vitale-error")).to_contain_text(message)
    b.fill("answer-vitale", person.answer)
    b.click_button("Suivant >", "inscription-canal", h1="Réception du code de sécurité", swap=True)
    assert not [i for i in server.mailbox.items() if i.id not in mark and i.kind == "letter"], "a letter went"


def test_the_login_code_page(seed_server: LiveServer, open_browser: Any, js: bool, width: dict[str, int]) -> None:
    """A person who proved SMS gets the code by SMS (11); the caisse's help link (2); "< Précédent" and
    "Abandonner" (8); a logout is confirmed (8); the footer sits at the bottom (10)."""
    server = seed_server
    person = server.people.take("particulier_paiement")
    password = new_password(person)
    citizen = HttpCitizen(server)
    citizen.make_account(person, password, channel="sms")
    citizen.close()
    b = open_browser(server, js=js, viewport=width)
    page = b.page
    mark = login_password(b, person.nir, password)
    step = page.locator("#step")
    expect(step).to_contain_text("Un code de sécurité vient de vous être envoyé par SMS au")
    server.mailbox.sms_to(person.mobile, contains="code", after=mark)
    assert not [i for i in server.mailbox.items() if i.id not in mark and i.kind == "email"], "an email code went"
    help_url = TEST_CITIZEN.get(server.table["caisse"]["id"], {}).get("code_help_url")
    if help_url:
        expect(page.get_by_role("link", name="Tuto vidéo")).to_have_attribute("href", help_url)
    else:
        expect(page.get_by_role("link", name="Tuto vidéo")).to_have_count(0)
    footer_at_the_bottom(page)
    assert not no_word_broken(page, "footer.assistance p")
    b.act(
        page.get_by_role("link", name="< Précédent"),
        "connexion-precedent",
        h1="Je me connecte à Mon espace privé",
        swap=False,
    )
    login_password(b, person.nir, password, state="connexion-2")
    b.click_button("Abandonner", "connexion-abandon", h1="Mon espace privé", swap=False)
    expect(page.locator(".notice")).to_have_text(LOGGED_OUT)
    footer_at_the_bottom(page)
    b.goto("/connexion/code", "connexion-code-apres-abandon", h1="Je me connecte à Mon espace privé")


def test_the_private_space_and_mon_compte(
    seed_server: LiveServer, open_browser: Any, js: bool, width: dict[str, int]
) -> None:
    """The title says Mon espace privé once (8); «paramètres du compte» and «Email et mot de passe» (2); the
    meter and "voir" only with JavaScript (4); the rules listed (6); an email that breaks only at its @ (10)."""
    server = seed_server
    person, password = person_with_account(server, "particulier_vitale")
    b = open_browser(server, js=js, viewport=width)
    page = b.page
    mark = login_password(b, person.nir, password)
    login_code(b, person, mark, next_h1="Mon espace privé")
    assert page.title().count("Mon espace privé") == 1, page.title()
    b.act(page.get_by_role("link", name="paramètres du compte"), "mon-compte-parametres", h1="Mon compte", swap=False)
    expect(page.locator("#parametres-du-compte")).to_have_text("Paramètres du compte")
    block = page.locator(".card", has=page.get_by_role("heading", name="Email et mot de passe"))
    expect(block).to_contain_text(f"Email : {person.email}")
    assert not no_word_broken(page, "#step .card p, footer.assistance p")
    b.act(
        block.get_by_role("link", name="> modifier mon mot de passe"),
        "mon-compte-mot-de-passe",
        h1="Modifier mon mot de passe",
        swap=False,
    )
    toggles = page.locator("button.toggle")
    assert toggles.count() == 3
    for toggle in toggles.all():
        if js:
            expect(toggle).to_be_visible()
        else:
            expect(toggle).to_be_hidden()
    if js:
        expect(page.locator(".meter-live")).to_be_visible()
    else:
        expect(page.locator(".meter-live")).to_be_hidden()
    weak = person.last_name.lower()
    b.fill("current_password", password)
    b.fill("new_password", weak)
    b.fill("confirm_password", weak)
    b.click_button("Suivant >", "mot-de-passe-regles", h1="Modifier mon mot de passe", swap=True, error=True)
    rules = page.locator("#f-new_password-error li")
    assert rules.count() >= 2, rules.all_inner_texts()
    assert all(text.strip() for text in rules.all_inner_texts())
    b.click_button("Se déconnecter", "deconnexion-confirmee", h1="Mon espace privé", swap=False)
    expect(page.locator(".notice")).to_have_text(LOGGED_OUT)


def test_a_header_link_during_the_personalisation_says_why(
    seed_server: LiveServer, open_browser: Any, js: bool, width: dict[str, int]
) -> None:
    """The forced personalisation says why a header link led back to it (8); the names typed "Lefebvre"
    are written "LEFEBVRE" in every message, as the registry writes them (9)."""
    server = seed_server
    registered = server.people.take("particulier_vitale")
    typed = dataclasses.replace(
        registered, last_name=registered.last_name.title(), first_name=registered.first_name.lower()
    )
    citizen = HttpCitizen(server)
    mark = server.mailbox.seen()
    temporary = citizen.register(typed)
    citizen.close()
    name = f"{registered.first_name} {registered.last_name}"
    mailbox = server.mailbox
    for item in (
        mailbox.email_to(registered.email, subject="code", after=mark),
        mailbox.email_to(registered.email, subject="mot de passe temporaire", after=mark),
        mailbox.letter_to(name, subject="inscription", after=mark),
    ):
        assert name in item.to, (item.subject, item.to)
    b = open_browser(server, js=js, viewport=width)
    page = b.page
    mark = login_password(b, registered.nir, temporary)
    login_code(b, registered, mark, next_h1="Changement de votre mot de passe", state="changement-mot-de-passe")
    expect(page.locator(".notice")).to_be_empty()
    b.act(
        page.get_by_role("link", name="Mon compte").first,
        "changement-raison",
        h1="Changement de votre mot de passe",
        swap=False,
    )
    expect(page.locator(".notice")).to_have_text(
        "Votre mot de passe est temporaire : personnalisez-le avant d'accéder à Mon espace privé."
    )


def test_a_recovery_ends_in_the_contact_confirmation(
    seed_server: LiveServer, open_browser: Any, js: bool, width: dict[str, int]
) -> None:
    """Seed 002, steps 4 to 6: "…après vous être connecté à Mon espace privé MSA." (2), then after the
    personalisation "Confirmation", [Continuer >] and "Confirmation de vos coordonnées" (1)."""
    server = seed_server
    person, password = person_with_account(server, "particulier_vitale")
    b = open_browser(server, js=js, viewport=width)
    page = b.page
    step = page.locator("#step")
    b.goto("/mot-de-passe-oublie/identifiant", "oubli-identifiant", h1="Vérification de votre identité")
    b.fill("identifier", person.nir_with_key)
    b.click_button("Suivant >", "oubli-canal", h1="Demande d'un nouveau mot de passe", swap=True)
    page.get_by_label("par e-mail").check()
    mark = b.mailbox_mark()
    b.click_button("Suivant >", "oubli-code", h1="Demande d'un nouveau mot de passe", swap=True)
    b.fill("code", code_in(server.mailbox.email_to(person.email, subject="code", after=mark).text))
    b.click_button("Suivant >", "oubli-confirmation", h1="Confirmation", swap=True)
    expect(step).to_contain_text("Vous pourrez le modifier après vous être connecté à Mon espace privé MSA.")
    temporary = password_in(server.mailbox.email_to(person.email, subject="mot de passe temporaire", after=mark).text)
    mark = login_password(b, person.nir, temporary)
    login_code(b, person, mark, next_h1="Changement de votre mot de passe", state="changement-mot-de-passe")
    personalise(b, password[::-1], mistakes=False, meter=False)
    expect(step).to_contain_text(
        "Avant d'accéder à votre espace privé MSA, nous vous demandons de confirmer vos coordonnées."
    )
    b.act(
        page.get_by_role("link", name="Continuer >"),
        "coordonnees-apres-oubli",
        h1="Confirmation de vos coordonnées",
        swap=False,
    )
    expect(step).to_contain_text("Pour utiliser Mon espace privé MSA, vous devez confirmer vos coordonnées.")
    confirm_contacts(b, person, mistakes=False)
