"""A third party ("Autre") from its request to its private space, in a real browser: the request, the
approval by an agent (``guichet requests approve``), the letter read from the postal sink, the first
login (code to the request's email), the personalisation, the contact confirmation. On both caisses'
configs, JavaScript on and off, at 1280 px and 360 px."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from typing import Any

import pytest
from playwright.sync_api import expect
from stdnum import luhn

from tests.browser.flows import Browse, choose_code_channel, personalise
from tests.browser.support import ROOT, LiveServer, code_in

pytestmark = pytest.mark.browser

WIDE, NARROW = {"width": 1280, "height": 800}, {"width": 360, "height": 740}


def new_siret() -> str:
    """A valid SIRET no test used before (the servers live for the whole package)."""
    siren = "8" + "".join(str(secrets.randbelow(10)) for _ in range(7))
    body = siren + luhn.calc_check_digit(siren) + "".join(str(secrets.randbelow(10)) for _ in range(4))
    return body + luhn.calc_check_digit(body)


def structure_name(siret: str) -> str:
    """A name of letters only: digits in it would read as a code in the emails' greeting."""
    return "Cabinet " + "".join(chr(ord("A") + int(d)) for d in siret[-5:])


def guichet(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    """The agent's command line, on the live server's config and database."""
    return subprocess.run(
        [sys.executable, "-m", "guichet.cli", *args, "--config", str(server.config_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def request_number(server: LiveServer, siret: str) -> int:
    listing = guichet(server, "requests", "list", "--state", "pending", "--json")
    assert listing.returncode == 0, listing.stderr
    found = [row["id"] for row in json.loads(listing.stdout) if row["siret"] == siret]
    assert len(found) == 1, listing.stdout
    return int(found[0])


def leave_request(b: Browse, siret: str, name: str, email: str) -> None:
    page = b.page
    b.goto("/inscription/statut", "tiers-statut", h1="Vous êtes...")
    page.locator("input[name=status][value=autre]").check()
    b.click_button("Suivant >", "tiers-structure", h1="Nature de votre structure", swap=True)
    page.locator("input[name=structure][value=tiers_declarant]").check()
    b.click_button("Suivant >", "tiers-demande", h1="Votre demande d'inscription", swap=True)
    for field, value in (
        ("structure_name", name),
        ("siret", siret),
        ("address_street", "12 rue des Pyrénées"),
        ("postal_code", "640"),
        ("city", "Pau"),
        ("contact_name", "Anne Etcheverry"),
        ("email", email),
    ):
        b.fill(field, value)
    b.click_button(
        "Envoyer ma demande", "tiers-demande-erreur", h1="Votre demande d'inscription", swap=True, error=True
    )
    expect(page.locator("#f-postal_code-error")).to_contain_text("Le code postal comporte 5 chiffres.")
    expect(b.field("address_street")).to_have_value("12 rue des Pyrénées")
    b.fill("postal_code", "64000")
    b.click_button("Envoyer ma demande", "tiers-demande-envoyee", h1="Votre demande est transmise", swap=True)
    expect(page.locator("#step")).to_contain_text("par courrier à l'adresse de votre structure")


@pytest.mark.parametrize(
    ("caisse", "js", "viewport"),
    [
        ("provence-azur", True, WIDE),
        ("provence-azur", False, NARROW),
        ("sud-aquitaine", True, NARROW),
        ("sud-aquitaine", False, WIDE),
    ],
    ids=["provence-azur-js-1280", "provence-azur-nojs-360", "sud-aquitaine-js-360", "sud-aquitaine-nojs-1280"],
)
def test_a_third_party_from_its_request_to_its_private_space(
    servers: Any, open_browser: Any, caisse: str, js: bool, viewport: dict[str, int]
) -> None:
    server = servers(caisse)
    b = open_browser(server, js=js, viewport=viewport)
    page = b.page
    siret, email = new_siret(), f"tiers.{secrets.token_hex(3)}@cabinet.invalid"
    name = structure_name(siret)
    leave_request(b, siret, name, email)

    mark = b.mailbox_mark()
    number = request_number(server, siret)
    approved = guichet(server, "requests", "approve", str(number), "--note", "Kbis et mandats vérifiés")
    assert approved.returncode == 0 and f"identifier {siret}" in approved.stdout, approved.stderr
    again = guichet(server, "requests", "approve", str(number))
    assert again.returncode == 1 and "is not pending" in again.stderr
    mailbox = server.mailbox
    notice = mailbox.email_to(email, subject="acceptée", after=mark)
    letter = mailbox.letter_to(name, subject="accès", after=mark)
    text = mailbox.letter_text(letter)
    identifier = re.search(r"Votre identifiant :\s*(\S+)", text).group(1)  # type: ignore[union-attr]
    password = re.search(r"Votre mot de passe temporaire :\s*(\S+)", text).group(1)  # type: ignore[union-attr]
    assert identifier == siret and password not in notice.text and "64000 PAU" in text

    b.goto("/connexion", "tiers-connexion", h1="Je me connecte à Mon espace privé")
    b.fill("identifier", identifier)
    b.fill("password", password)
    b.click_button("Se connecter", "tiers-connexion-suite", h1="Authentification à 2 facteurs", swap=True)
    mark = choose_code_channel(b, "email")
    code = code_in(mailbox.email_to(email, subject="code", after=mark).text)
    b.fill("code", code)
    b.click_button("Valider", "tiers-connexion-code", h1="Changement de votre mot de passe", swap=False)
    personalise(b, f"Tiers-{secrets.token_hex(4)}-Galet!", mistakes=False)
    b.act(
        page.get_by_role("link", name="Continuer >"),
        "tiers-coordonnees",
        h1="Confirmation de vos coordonnées",
        swap=False,
    )
    expect(page.locator("#contact-email")).to_contain_text(email)
    b.click_button("Je confirme mes coordonnées", "tiers-espace-prive", h1="Mon espace privé", swap=False)
    expect(page.locator("#step")).to_contain_text(name)


def test_a_rejected_request_gets_a_letter_with_the_reason_and_cannot_log_in(
    sud_aquitaine: LiveServer, open_browser: Any
) -> None:
    b = open_browser(sud_aquitaine, js=True)
    siret, email = new_siret(), f"tiers.{secrets.token_hex(3)}@cabinet.invalid"
    name = structure_name(siret)
    leave_request(b, siret, name, email)
    mark = b.mailbox_mark()
    number = request_number(sud_aquitaine, siret)
    refused = guichet(sud_aquitaine, "requests", "reject", str(number))
    assert refused.returncode == 2 and "--note" in refused.stderr  # a rejection gives its reason
    rejected = guichet(
        sud_aquitaine, "requests", "reject", str(number), "--note", "Le mandat signé des adhérents manque."
    )
    assert rejected.returncode == 0, rejected.stderr
    letter = sud_aquitaine.mailbox.letter_to(name, subject="demande", after=mark)
    assert "Le mandat signé des adhérents manque." in sud_aquitaine.mailbox.letter_text(letter)
    b.goto("/connexion", "tiers-refuse-connexion", h1="Je me connecte à Mon espace privé")
    b.fill("identifier", siret)
    b.fill("password", "Un-mot-de-passe-quelconque-1")
    b.click_button("Se connecter", "tiers-refuse-erreur", h1="Je me connecte à Mon espace privé", swap=True, error=True)
    expect(b.page.locator(".alert")).to_contain_text("Identifiant ou mot de passe incorrect.")
