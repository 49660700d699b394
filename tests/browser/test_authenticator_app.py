"""« Sécurité de connexion » in a real browser, with JavaScript and without: an authenticator app added
after the password again (its QR code and its key as text), then asked for first at the next login,
on SQLite and PostgreSQL. axe-core runs on every state."""

from __future__ import annotations

import time
from typing import Any

import pyotp
import pytest
from playwright.sync_api import expect

from tests.browser.flows import login_code, login_password
from tests.browser.support import LiveServer, person_with_account
from tests.browser.test_passkey import passkey_server  # noqa: F401  (the demo caisse on SQLite, then PostgreSQL)

pytestmark = pytest.mark.browser


def test_an_authenticator_app_is_added_then_asked_for_first(
    passkey_server: LiveServer,  # noqa: F811
    open_browser: Any,
    js: bool,
) -> None:
    demo_server = passkey_server
    person, password = person_with_account(demo_server, "particulier_vitale")
    b = open_browser(demo_server, js=js)
    page = b.page
    mark = login_password(b, person.nir, password)
    login_code(b, person, mark)
    b.act(page.get_by_role("link", name="Mon compte").first, "mon-compte", h1="Mon compte", swap=False)
    b.act(
        page.get_by_role("link", name="> gérer mes moyens de connexion"),
        "securite",
        h1="Sécurité de connexion",
        swap=False,
    )
    expect(page.locator("#moyen-code")).to_contain_text("Code de sécurité par e-mail ou SMS")
    b.act(
        page.get_by_role("link", name="> ajouter : application d'authentification"),
        "securite-confirmer",
        h1="Confirmez votre identité",
        swap=False,
    )
    b.fill("current_password", password + "x")
    b.click_button("Confirmer", "securite-confirmer-erreur", h1="Confirmez votre identité", swap=True, error=True)
    b.fill("current_password", password)
    b.click_button("Confirmer", "securite-totp", h1="Ajouter une application d'authentification", swap=False)
    expect(page.locator("figure.qr svg")).to_be_visible()
    key = page.locator("strong.key").inner_text().replace(" ", "")
    assert len(key) == 32
    assert page.get_attribute("#f-code", "autocomplete") == "one-time-code"
    assert page.get_attribute("#f-code", "inputmode") == "numeric"
    b.fill("label", "Téléphone de test")
    b.fill("code", "000000")
    b.click_button("Terminer", "securite-totp-erreur", h1="Ajouter une application d'authentification", error=True)
    assert page.locator("strong.key").inner_text().replace(" ", "") == key  # the same key: nothing to re-scan
    b.fill("code", pyotp.TOTP(key).now())
    mark = b.mailbox_mark()
    b.click_button("Terminer", "securite-ajoute", h1="Sécurité de connexion")
    expect(page.locator(".notice")).to_contain_text("Application d'authentification : ajout enregistré.")
    expect(page.locator("#moyen-totp")).to_contain_text("Téléphone de test")
    demo_server.mailbox.email_to(person.email, subject="connexion", after=mark)

    b.click_button("Se déconnecter", "deconnexion", swap=False, exact=False)
    mark = login_password(b, person.nir, password, state="connexion-totp", method=True)
    expect(page.locator("#step h2").first).to_have_text("Code de votre application d'authentification")
    expect(page.get_by_role("link", name="Code de sécurité par e-mail ou SMS")).to_be_visible()
    assert not demo_server.mailbox.seen() - mark, "a code was sent although the app comes first"
    # the enrolment's code is spent: the app's next one (one step of skew is accepted) logs in
    b.fill("code", pyotp.TOTP(key).at(time.time() + 30))
    b.click_button("Valider", "connexion-totp-ok", h1="Mon espace privé", swap="body")
