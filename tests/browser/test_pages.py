"""Light pages: a full step page, everything included, under 40 KB compressed; static files cached for a
year under hashed names; pages readable at 320 px; the pages outside the flows pass the same checks."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.flows import Browse, register
from tests.browser.support import LiveServer

pytestmark = pytest.mark.browser

BUDGET = 40 * 1024
HASHED = re.compile(r"/static/[a-z0-9.-]+\.[0-9a-f]{10}\.(css|js)$")


class Meter:
    """Loads a URL with an empty cache in its own tab and counts the bytes on the wire (DevTools' figure)."""

    def __init__(self, context: Any) -> None:
        self.page = context.new_page()
        self.cdp = context.new_cdp_session(self.page)
        self.cdp.send("Network.enable")
        self.cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
        self.responses: dict[str, dict[str, Any]] = {}
        self.finished: dict[str, int] = {}
        self.cdp.on("Network.responseReceived", lambda e: self.responses.__setitem__(e["requestId"], e["response"]))
        self.cdp.on(
            "Network.loadingFinished", lambda e: self.finished.__setitem__(e["requestId"], int(e["encodedDataLength"]))
        )

    def load(self, url: str) -> tuple[int, list[dict[str, Any]]]:
        self.responses.clear()
        self.finished.clear()
        self.page.goto(url, wait_until="load")
        self.page.wait_for_timeout(50)
        total = sum(self.finished.values())
        return total, [self.responses[r] for r in self.finished if r in self.responses]


def test_step_pages_are_light_and_static_files_are_cached(demo_server: LiveServer, playwright_browser: Any) -> None:
    context = playwright_browser.new_context(viewport={"width": 1280, "height": 800})
    meter = Meter(context)
    weights: dict[str, int] = {}

    def weigh(b: Browse, state: str) -> None:
        url = b.page.url
        total, responses = meter.load(url)
        weights[f"{state} {url.split(demo_server.url, 1)[1]}"] = total
        assert total < BUDGET, f"{state}: {total} bytes on the wire, over the {BUDGET} budget"
        kinds = {r["url"].rsplit(".", 1)[-1] for r in responses if "/static/" in r["url"]}
        assert {"css", "js"} <= kinds, f"{state}: the page did not load its CSS and JS ({kinds})"
        for response in responses:
            headers = {k.lower(): v for k, v in response["headers"].items()}
            if "/static/" in response["url"]:
                assert HASHED.search(response["url"]), f"unhashed static name {response['url']}"
                assert (
                    "max-age=31536000" in headers.get("cache-control", "") and "immutable" in headers["cache-control"]
                ), response["url"]
                if int(headers.get("content-length", "1000")) > 500:
                    assert headers.get("content-encoding") == "gzip", f"{response['url']} not compressed"
            elif response["url"] == url:
                assert headers["content-type"].startswith("text/html"), headers["content-type"]
                assert headers.get("content-encoding") == "gzip"
                assert headers.get("cache-control") == "no-store"

    b = Browse(page=context.new_page(), server=demo_server, js=True, checks=False, on_state=weigh)
    b.goto("/", "accueil")
    b.goto("/connexion", "connexion")
    b.goto("/mot-de-passe-oublie/identifiant", "oubli-identifiant")
    register(b, demo_server.people.take("particulier_vitale"), mistakes=False)
    context.close()
    assert len(weights) >= 10
    print("\n".join(f"{size:>7} B  {name}" for name, size in weights.items()))


@pytest.mark.parametrize("js", [True, False], ids=["js", "nojs"])
def test_other_pages_at_320_px(demo_server: LiveServer, open_browser: Any, js: bool) -> None:
    """Home, help pages, the demo mailbox and an error page: same checks, on a 320 px wide screen."""
    b = open_browser(demo_server, js=js, viewport={"width": 320, "height": 640})
    b.goto("/", "accueil", h1="Mon espace privé")
    b.goto("/aide/identifiant", "aide-identifiant", h1="Où trouver mon identifiant ?")
    b.goto("/aide/numero-securite-sociale", "aide-nir", h1="Je ne connais pas mon numéro de Sécurité Sociale")
    b.goto("/demo/boite-aux-lettres", "boite-aux-lettres", h1="Boîte aux lettres de démonstration")
    b.goto("/page-qui-n-existe-pas", "erreur-404", h1="Page introuvable")
    b.goto("/inscription/statut", "inscription-statut", h1="Vous êtes...")
    page = b.page
    page.locator("input[name=status][value=autre]").check()
    b.click_button("Suivant >", "inscription-structure", h1="Nature de votre structure", swap=True)
    b.click_button("Suivant >", "inscription-structure-erreur", h1="Nature de votre structure", swap=True, error=True)
