"""Login in a real browser: the email code, "Recevoir un nouveau code", the trusted browser and its revocation."""

from __future__ import annotations

import time
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.flows import login_code, login_password
from tests.browser.support import LiveServer, code_in, person_with_account

pytestmark = pytest.mark.browser


def test_login_with_an_email_code_a_new_code_and_a_trusted_browser(
    demo_server: LiveServer, open_browser: Any, js: bool
) -> None:
    person, password = person_with_account(demo_server, "particulier_vitale")
    b = open_browser(demo_server, js=js)
    page = b.page
    mailbox = demo_server.mailbox

    # "Où trouver mon identifiant ?": in place with htmx, a page of its own without
    b.goto("/connexion", "connexion", h1="Je me connecte à Mon espace privé")
    if js:
        b.act(
            page.get_by_role("link", name="> Où trouver mon identifiant ?"),
            "connexion-aide",
            h1="Je me connecte à Mon espace privé",
            swap=True,
            focus=False,
        )
        expect(page.locator("#aide-slot")).to_contain_text("numéro de Sécurité Sociale")
    else:
        b.act(
            page.get_by_role("link", name="> Où trouver mon identifiant ?"),
            "aide-identifiant",
            h1="Où trouver mon identifiant ?",
        )

    mark = login_password(b, person.nir, password, mistakes=True)
    step = page.locator("#step")
    expect(step).to_contain_text("Un code de sécurité vient de vous être envoyé à l'adresse :")
    masked = f"{person.email[0]}…{person.email.split('@')[0][-1]}@{person.email.split('@')[1]}"
    expect(step).to_contain_text(masked)
    expect(step).to_contain_text("Ce code est valable 10 minutes.")
    first = code_in(mailbox.email_to(person.email, subject="code", after=mark).text)

    # a new code at once is refused (cooldown), then sent; the first one no longer works
    b.click_button(
        "Recevoir un nouveau code", "connexion-code-attente", h1="Authentification à 2 facteurs", swap=True, error=True
    )
    expect(page.locator(".alert")).to_contain_text("Vous pourrez en demander un nouveau dans")
    time.sleep(3.2)
    mark = b.mailbox_mark()
    b.click_button("Recevoir un nouveau code", "connexion-nouveau-code", h1="Authentification à 2 facteurs", swap=True)
    expect(page.locator(".notice")).to_have_text("Un nouveau code de sécurité vient de vous être envoyé.")
    expect(page.locator(".notice")).to_have_attribute("role", "status")
    second = code_in(mailbox.email_to(person.email, subject="code", after=mark).text)
    if first != second:
        b.fill("code", first)
        b.click_button("Valider", "connexion-code-perime", h1="Authentification à 2 facteurs", swap=True, error=True)
    b.fill("code", second)
    page.locator("#f-trust").check()
    b.click_button("Valider", "espace-prive", h1="Mon espace privé", swap="body")
    if js:  # the login renewed the CSRF token: htmx's header follows the forms swapped in
        header, field = page.evaluate(
            "() => [JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token'],"
            " document.querySelector('input[name=csrf_token]').value]"
        )
        assert header == field

    # next time, this browser skips the code (the password is still asked)
    b.click_button("Se déconnecter", "deconnexion", h1="Mon espace privé", swap=False)
    login_password(b, person.nir, password, state="connexion-confiance", expect_h1="Mon espace privé")
    expect(page.locator("#step")).to_contain_text(f"Bonjour {person.first_name} {person.last_name}")

    # revoked in Mon compte: the code is asked again
    b.act(page.get_by_role("link", name="Mon compte").first, "mon-compte", h1="Mon compte", swap=False)
    b.click_button("Retirer la confiance", "mon-compte-revocation", exact=False, h1="Mon compte", swap=True)
    expect(page.locator(".notice")).to_contain_text("Ce navigateur n'est plus un navigateur de confiance.")
    expect(page.get_by_role("button", name="Retirer la confiance")).to_have_count(0)
    b.click_button("Se déconnecter", "deconnexion-2", h1="Mon espace privé", swap=False)
    mark = login_password(b, person.nir, password, state="connexion-apres-revocation")
    login_code(b, person, mark, next_h1="Mon espace privé")


def test_provence_azur_login_code_by_email_valid_15_minutes(
    provence_azur: LiveServer, open_browser: Any, js: bool
) -> None:
    """The caisse's own preset and colour survive the derived config: a 15-minute email code, its red."""
    person, password = person_with_account(provence_azur, "particulier_paiement")
    b = open_browser(provence_azur, js=js)
    mark = login_password(b, person.nir, password)
    expect(b.page.locator("#step")).to_contain_text("Ce code est valable 15 minutes.")
    assert (
        b.page.evaluate("() => getComputedStyle(document.querySelector('.banner')).borderTopColor")
        == "rgb(200, 16, 46)"
    )
    expect(b.page.locator(".assistance")).to_contain_text("03 20 900 500")
    login_code(b, person, mark, next_h1="Mon espace privé")
