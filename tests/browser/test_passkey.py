"""Passkeys end to end in Chromium with its virtual authenticator (CDP ``WebAuthn``), on the demo caisse
(passkeys and the passkey login enabled), on SQLite and on PostgreSQL: added from Mon compte after the
password again, used as the second factor after the password, used alone ("Se connecter avec une clé
d'accès"), removed; and refused when cloned (its counter goes back), when made for another site (another
RP ID), or when the phone did not check who holds it (no user verification).

Browsers refuse passkeys on an IP address, so these pages are opened at http://localhost:PORT (the
server listens on 127.0.0.1); the server's RP ID is ``localhost`` and it also accepts the origin
http://other.localhost:PORT, where the tests play a site whose passkeys are bound to another RP ID.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from guichet.plugins.authenticator_passkey import passkey as messages
from tests.browser.flows import Browse, login_code, login_password
from tests.browser.support import (
    CONFIG_DIR,
    LiveServer,
    People,
    PostgresDatabase,
    derive_config,
    free_port,
    person_with_account,
)
from tests.conftest import POSTGRES_URL, service_missing

pytestmark = pytest.mark.browser
LABEL = "Téléphone de test"
USE = "Utiliser ma clé d'accès"


class At:
    """A live server seen at another host name (the browser's ``url``); everything else is the server's."""

    def __init__(self, server: LiveServer, host: str) -> None:
        self._server = server
        self.url = f"http://{host}:{server.port}"

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def passkey_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    database: PostgresDatabase | None = None
    if request.param == "postgres":
        if not POSTGRES_URL:
            service_missing("PostgreSQL (GUICHET_TEST_POSTGRES)")
        database = PostgresDatabase(POSTGRES_URL)
    workdir: Path = tmp_path_factory.mktemp(f"passkey-{request.param}")
    port = free_port()
    origins = [f"http://localhost:{port}", f"http://other.localhost:{port}"]
    path = derive_config(
        CONFIG_DIR / "demo.toml",
        workdir,
        database_url=database.url if database else None,
        extra={"plugins": {"settings": {"authenticator_passkey": {"rp_id": "localhost", "origins": origins}}}},
    )
    server = LiveServer(config_path=path, workdir=workdir, port=port).start()
    server.people = People()  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()
        if database is not None:
            database.drop()


class Phone:
    """Chromium's virtual authenticator in a tab: a phone that unlocks with the person's fingerprint."""

    def __init__(self, b: Browse, *, verified: bool = True) -> None:
        self.cdp = b.page.context.new_cdp_session(b.page)
        self.cdp.send("WebAuthn.enable")
        options = {
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": True,
            "hasUserVerification": True,
            "isUserVerified": verified,
            "automaticPresenceSimulation": True,
        }
        self.id = self.cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})["authenticatorId"]

    def credentials(self) -> list[dict[str, Any]]:
        return list(self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": self.id})["credentials"])

    def replace(self, credential: dict[str, Any], **changes: Any) -> None:
        """The same key pair again with other facts: a copy of the key whose counter went back, another RP ID."""
        self.cdp.send(
            "WebAuthn.removeCredential", {"authenticatorId": self.id, "credentialId": credential["credentialId"]}
        )
        self.cdp.send("WebAuthn.addCredential", {"authenticatorId": self.id, "credential": {**credential, **changes}})

    def verifies(self, yes: bool) -> None:
        self.cdp.send("WebAuthn.setUserVerified", {"authenticatorId": self.id, "isUserVerified": yes})


def tab(
    open_browser: Callable[..., Browse], server: LiveServer, host: str = "localhost", **phone: Any
) -> tuple[Browse, Phone]:
    b = open_browser(At(server, host), js=True)
    return b, Phone(b, **phone)


def log_out(b: Browse) -> None:
    b.click_button("Se déconnecter", "deconnexion", h1="Mon espace privé", swap=False)


def add_passkey(b: Browse, password: str) -> set[str]:
    """Mon compte > Sécurité de connexion > ajouter une clé d'accès: the password again, a name, the phone."""
    page = b.page
    b.goto("/mon-compte/securite", "securite", h1="Sécurité de connexion")
    b.act(page.get_by_role("link", name="> ajouter : clé d'accès"), "securite-confirmer", h1="Confirmez votre identité")
    b.fill("current_password", password)
    b.click_button("Confirmer", "securite-ajout-cle", h1="Créer une clé d'accès")
    b.fill("label", LABEL)
    mark = b.mailbox_mark()
    b.click_button("Créer ma clé d'accès", "securite-cle-ajoutee", h1="Sécurité de connexion")
    expect(page.locator("#moyen-passkey")).to_contain_text(LABEL)
    return mark


def passkey_login(b: Browse, state: str, *, h1: str = "Mon espace privé", error: bool = False) -> None:
    """ "Se connecter avec une clé d'accès" from the login page, then the phone."""
    b.goto("/connexion", f"{state}-connexion", h1="Je me connecte à Mon espace privé")
    b.act(
        b.page.get_by_role("link", name="Se connecter avec une clé d'accès"),
        state,
        h1="Se connecter avec une clé d'accès",
    )
    b.click_button(USE, f"{state}-resultat", h1=h1, error=error)


def test_a_passkey_added_in_mon_compte_then_used_after_the_password_and_alone_then_removed(
    passkey_server: LiveServer, open_browser: Callable[..., Browse]
) -> None:
    person, password = person_with_account(passkey_server, "particulier_vitale")
    b, phone = tab(open_browser, passkey_server)
    page = b.page
    login_code(b, person, login_password(b, person.nir, password))  # no passkey yet: the code by email
    mark = add_passkey(b, password)
    [held] = phone.credentials()
    assert held["rpId"] == "localhost" and held["isResidentCredential"]
    passkey_server.mailbox.email_to(person.email, after=mark)  # the owner is told of the change
    log_out(b)

    # the second factor after the password: the passkey is offered first, no code is sent
    mark = login_password(b, person.nir, password, method=True)
    expect(page.get_by_role("button", name=USE)).to_be_visible()
    b.click_button(USE, "connexion-cle", h1="Mon espace privé", swap=False)
    sent = [i for i in passkey_server.mailbox.items() if i.id not in mark and person.email.lower() in i.to.lower()]
    assert not [i for i in sent if "code" in i.subject.lower()], "a login code went out although the passkey came first"
    log_out(b)

    # the whole login: no identifier, no password
    passkey_login(b, "connexion-sans-mot-de-passe")
    expect(page.locator("#step")).to_contain_text(person.first_name)
    assert phone.credentials()[0]["signCount"] >= 2

    # removed from Mon compte: this new session types the password again first
    b.goto("/mon-compte/securite", "securite-liste", h1="Sécurité de connexion")
    remove = page.get_by_role("button", name=f"Supprimer : Clé d'accès, {LABEL}")
    b.act(remove, "securite-supprimer-confirmer", h1="Confirmez votre identité")
    b.fill("current_password", password)
    b.click_button("Confirmer", "securite-confirme", h1="Sécurité de connexion")
    b.act(remove, "securite-cle-supprimee", h1="Sécurité de connexion")
    expect(page.locator(".notice")).to_contain_text("Clé d'accès : suppression enregistrée.")
    expect(page.locator("#moyen-passkey")).not_to_contain_text(LABEL)
    log_out(b)
    passkey_login(b, "connexion-cle-supprimee", h1="Se connecter avec une clé d'accès", error=True)
    expect(page.locator(".alert")).to_contain_text(messages.UNKNOWN)


def test_a_cloned_passkey_is_refused(passkey_server: LiveServer, open_browser: Callable[..., Browse]) -> None:
    person, password = person_with_account(passkey_server, "particulier_paiement")
    b, phone = tab(open_browser, passkey_server)
    login_code(b, person, login_password(b, person.nir, password))
    add_passkey(b, password)
    log_out(b)
    passkey_login(b, "clone-premiere")
    log_out(b)
    passkey_login(b, "clone-deuxieme")
    log_out(b)
    # a copy of the key made earlier: its counter is behind the one the caisse last saw
    [credential] = phone.credentials()
    phone.replace(credential, signCount=0)
    passkey_login(b, "clone-refuse", h1="Se connecter avec une clé d'accès", error=True)
    expect(b.page.locator(".alert")).to_contain_text(messages.CLONED)
    # and after the password, as the second factor, too
    login_password(b, person.nir, password, method=True)
    phone.replace(phone.credentials()[0], signCount=0)
    b.click_button(USE, "clone-refuse-second-facteur", h1="Authentification à 2 facteurs", error=True)
    expect(b.page.locator(".alert")).to_contain_text(messages.CLONED)


def test_a_passkey_of_another_site_is_refused(passkey_server: LiveServer, open_browser: Callable[..., Browse]) -> None:
    person, password = person_with_account(passkey_server, "exploitant")
    b, phone = tab(open_browser, passkey_server)
    login_code(b, person, login_password(b, person.nir, password))
    add_passkey(b, password)
    log_out(b)
    # the same key, bound to another RP ID (other.localhost), at an address the caisse accepts: its
    # signature is right, the RP ID it was made for is not the caisse's
    [credential] = phone.credentials()
    phone.replace(credential, rpId="other.localhost")
    b.goto("/connexion/sans-mot-de-passe/passkey", "autre-site", h1="Se connecter avec une clé d'accès")
    # at localhost the browser offers no passkey of another site: the dialog ends, nothing is sent
    b.page.get_by_role("button", name=USE).click()
    expect(b.page.locator("[data-webauthn-error]")).to_contain_text("vous avez annulé")
    # a copy of the page at other.localhost, asking for that site's passkeys: the caisse refuses the answer
    other, other_phone = tab(open_browser, passkey_server, "other.localhost")
    other_phone.cdp.send(
        "WebAuthn.addCredential",
        {"authenticatorId": other_phone.id, "credential": {**credential, "rpId": "other.localhost"}},
    )
    other.goto("/connexion/sans-mot-de-passe/passkey", "autre-site-copie", h1="Se connecter avec une clé d'accès")
    form = other.page.locator("form[data-webauthn]")
    options = json.loads(form.get_attribute("data-webauthn-options") or "{}")
    form.evaluate("(f, o) => { f.dataset.webauthnOptions = o; }", json.dumps({**options, "rpId": "other.localhost"}))
    other.click_button(USE, "autre-site-refuse", h1="Se connecter avec une clé d'accès", error=True)
    expect(other.page.locator(".alert")).to_contain_text(messages.REFUSED)


def test_a_passkey_without_user_verification_is_refused(
    passkey_server: LiveServer, open_browser: Callable[..., Browse]
) -> None:
    person, password = person_with_account(passkey_server, "particulier_vitale")
    b, phone = tab(open_browser, passkey_server)
    login_code(b, person, login_password(b, person.nir, password))
    add_passkey(b, password)
    log_out(b)
    phone.verifies(False)  # the phone cannot check the fingerprint: the browser ends the dialog itself
    b.goto("/connexion/sans-mot-de-passe/passkey", "sans-verification", h1="Se connecter avec une clé d'accès")
    b.page.get_by_role("button", name=USE).click()
    expect(b.page.locator("[data-webauthn-error]")).to_contain_text("vous avez annulé")
    # a page altered to stop asking for it: the answer comes without user verification, the caisse refuses it
    form = b.page.locator("form[data-webauthn]")
    options = json.loads(form.get_attribute("data-webauthn-options") or "{}")
    form.evaluate(
        "(f, o) => { f.dataset.webauthnOptions = o; }", json.dumps({**options, "userVerification": "discouraged"})
    )
    b.click_button(USE, "sans-verification-refuse", h1="Se connecter avec une clé d'accès", error=True)
    expect(b.page.locator(".alert")).to_contain_text(messages.REFUSED)


def test_without_javascript_the_passkey_pages_say_so_and_the_password_still_works(
    passkey_server: LiveServer, open_browser: Callable[..., Browse]
) -> None:
    person, password = person_with_account(passkey_server, "particulier_vitale")
    b = open_browser(At(passkey_server, "localhost"), js=False)
    b.goto("/connexion/sans-mot-de-passe/passkey", "sans-js", h1="Se connecter avec une clé d'accès")
    expect(b.page.get_by_role("button", name=USE)).to_be_hidden()
    expect(b.page.locator("[data-webauthn-unsupported]")).to_be_visible()
    expect(b.page.locator("[data-webauthn-unsupported]")).to_have_text(
        "Ce navigateur ne permet pas d'utiliser une clé d'accès ici. Choisissez une autre méthode."
    )
    b.act(
        b.page.get_by_role("link", name="Se connecter avec son identifiant et son mot de passe"),
        "sans-js-connexion",
        h1="Je me connecte à Mon espace privé",
    )
    login_code(b, person, login_password(b, person.nir, password))
