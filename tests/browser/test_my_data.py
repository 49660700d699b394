"""Mon compte, "Mes données", in a real browser: the page, the JSON file downloaded, then the closure
of the online account with the password (refused once without it), its email and letter, and the
old password refused afterwards. On both caisses' configs, JavaScript on and off, 1280 px and 360 px."""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.flows import login_code, login_password
from tests.browser.support import person_with_account

pytestmark = pytest.mark.browser

WIDE, NARROW = {"width": 1280, "height": 800}, {"width": 360, "height": 740}


@pytest.mark.parametrize(
    ("caisse", "js", "viewport"),
    [
        ("provence-azur", True, NARROW),
        ("provence-azur", False, WIDE),
        ("sud-aquitaine", True, WIDE),
        ("sud-aquitaine", False, NARROW),
    ],
    ids=["provence-azur-js-360", "provence-azur-nojs-1280", "sud-aquitaine-js-1280", "sud-aquitaine-nojs-360"],
)
def test_my_data_then_closing_the_account(
    servers: Any, open_browser: Any, caisse: str, js: bool, viewport: dict[str, int]
) -> None:
    server = servers(caisse)
    person, password = person_with_account(server, "particulier_vitale")
    b = open_browser(server, js=js, viewport=viewport)
    page = b.page
    mark = login_password(b, person.nir, password)
    login_code(b, person, mark)

    b.act(page.get_by_role("link", name="Mon compte").first, "mon-compte", h1="Mon compte", swap=False)
    b.act(
        page.get_by_role("link", name="> consulter et télécharger mes données"),
        "mes-donnees",
        h1="Mes données",
        swap=False,
    )
    step = page.locator("#step")
    expect(step).to_contain_text(person.email)
    expect(step).to_contain_text("Connexion réussie")
    with page.expect_download() as download:
        page.get_by_role("link", name="Télécharger mes données (fichier JSON)").click()
    data = json.loads(open(download.value.path(), encoding="utf-8").read())
    assert data["identity"]["identifier"] == person.nir and data["contacts"]["email"] == person.email
    assert password not in json.dumps(data) and "hash" not in json.dumps(data)

    b.act(
        page.get_by_role("link", name="> fermer mon espace privé"),
        "fermeture",
        h1="Fermer mon espace privé",
        swap=False,
    )
    b.click_button("Fermer mon espace privé", "fermeture-erreur", h1="Fermer mon espace privé", swap=True, error=True)
    expect(page.locator(".alert")).to_contain_text("saisissez votre mot de passe actuel")
    b.fill("current_password", password)
    mark = b.mailbox_mark()
    b.click_button("Fermer mon espace privé", "espace-ferme", h1="Votre espace privé est fermé", swap=False)
    mailbox = server.mailbox
    mailbox.email_to(person.email, subject="fermé", after=mark)
    letter = mailbox.letter_to(f"{person.first_name} {person.last_name}", subject="fermeture", after=mark)
    assert "n'est pas modifié" in mailbox.letter_text(letter)
    expect(page.get_by_role("link", name="Mon compte")).to_have_count(0)
    b.goto("/connexion", "connexion-apres-fermeture", h1="Je me connecte à Mon espace privé")
    b.fill("identifier", person.nir)
    b.fill("password", password)
    b.click_button("Se connecter", "connexion-refusee", h1="Je me connecte à Mon espace privé", swap=True, error=True)
