"""The accessibility statement, the mentions légales and the données personnelles page, in a real
browser on every shipped config, JavaScript on and off: reached from every page's footer, and
passing the checks of every page (axe-core, no horizontal scroll at 360 px, title, focus)."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.support import LiveServer

pytestmark = pytest.mark.browser


def test_the_legal_pages_from_the_footer(caisse_server: LiveServer, open_browser: Any, js: bool) -> None:
    viewport = {"width": 1280, "height": 800} if js else {"width": 360, "height": 740}
    b = open_browser(caisse_server, js=js, viewport=viewport)
    page = b.page
    b.goto("/connexion", "connexion", h1="Je me connecte à Mon espace privé")
    footer = page.get_by_role("navigation", name="Informations légales")
    status = footer.get_by_role("link", name="Accessibilité : partiellement conforme")
    expect(status).to_be_visible()
    b.act(status, "accessibilite", h1="Déclaration d'accessibilité", swap=False)
    expect(page.locator("#step")).to_contain_text("Voies de recours")
    expect(page.locator("#step")).to_contain_text("Défenseur des droits")
    b.act(footer.get_by_role("link", name="Mentions légales"), "mentions-legales", h1="Mentions légales", swap=False)
    expect(page.locator("#step")).to_contain_text("Directeur de la publication")
    b.act(
        footer.get_by_role("link", name="Données personnelles"),
        "donnees-personnelles",
        h1="Données personnelles",
        swap=False,
    )
    expect(page.locator("#step")).to_contain_text("délégué à la protection des données")
    expect(page.locator("#step")).to_contain_text(str(caisse_server.table["legal"]["privacy"]["dpo_email"]))
