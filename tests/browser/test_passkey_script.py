"""guichet.js's passkey forms in Chromium, with its virtual authenticator (CDP ``WebAuthn``), on a page
of their own: the form the web layer renders for a ``webauthn`` prompt, served at http://localhost
by Playwright (a secure context whose RP ID is ``localhost``), with the options and the checks of the
passkey plugin itself on a SQLite database. The pages of the login and of Mon compte are in
test_passkey.py; here: the ceremony's answer is what the plugin accepts, a cancel or a browser
without WebAuthn says so in French and leaves the page usable, and without JavaScript the form stays
hidden behind a note.
"""

from __future__ import annotations

import asyncio
import html
import json
import threading
import urllib.parse
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from guichet.core import AccountRef, Check, PluginContext
from guichet.core.clock import FrozenClock
from guichet.core.database import Database
from guichet.plugins.authenticator_passkey import passkey as messages
from guichet.plugins.authenticator_passkey.passkey import Passkey
from guichet.plugins.authenticator_passkey.settings import PasskeySettings, relying_party
from guichet.testing.config import caisse_config
from tests.conftest import ROOT

pytestmark = pytest.mark.browser
T = TypeVar("T")
SITE = "http://localhost:8731"
SCRIPT = (ROOT / "web" / "static" / "guichet.js").read_text(encoding="utf-8")
HTMX = next((ROOT / "web" / "static").glob("htmx-*.min.js")).read_text(encoding="utf-8")
MARIE = AccountRef(id=7, name="Marie DUPONT", handle="c" * 64)


class Loop:
    """An event loop in a thread of its own: the sync Playwright API keeps one in the test's thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Loop, Passkey]]:
    folder: Path = tmp_path_factory.mktemp("passkey-script")
    config = caisse_config(folder, enabled=["authenticator_passkey"])
    loop = Loop()
    database = Database(config.database.url)
    loop.run(database.connect())
    loop.run(database.upgrade())
    context = PluginContext(config=config, database=database, clock=FrozenClock())
    settings = context.settings("authenticator_passkey", PasskeySettings)
    from guichet.core.credentials import CredentialStore

    store = CredentialStore(database, config, context.clock)
    yield loop, Passkey(store, relying_party(settings, config), context.clock)
    loop.run(database.close())
    loop.stop()


def form_page(ceremony: str, options: dict[str, Any], *, label: bool = False, htmx: bool = False) -> str:
    """The markup of web/templates/components/prompt.html for a ``webauthn`` prompt. The note that this
    browser cannot use a passkey is shown by default and hidden by guichet.js where it can: Chromium
    with JavaScript turned off by Playwright parses <noscript> as text and shows nothing of it."""
    swap = ' hx-post="/envoi" hx-target="#step" hx-swap="outerHTML"' if htmx else ""
    scripts = '<script src="/static/htmx.js"></script>' if htmx else ""
    label_field = (
        '<label for="label">Nom</label><input id="label" name="label" value="Téléphone de Marie">' if label else ""
    )
    return f"""<!doctype html><html lang="fr"><head><meta charset="utf-8"><title>Clé d'accès</title></head><body>
<main><section id="step"><h1>Clé d'accès</h1>
<form method="post" action="/envoi"{swap} data-webauthn="{ceremony}" data-webauthn-options="{html.escape(json.dumps(options))}" hidden>
<input type="hidden" name="credential" value="">
<p class="error" data-webauthn-error role="alert" hidden></p>
{label_field}
<button type="submit">Utiliser ma clé d'accès</button>
</form>
<noscript><p class="info">Votre navigateur n'exécute pas JavaScript : il ne peut pas utiliser une clé d'accès.</p></noscript>
<p class="info" data-webauthn-unsupported>Ce navigateur ne permet pas d'utiliser une clé d'accès.</p>
<a href="/autre">Choisir une autre méthode</a>
</section></main>{scripts}<script src="/static/guichet.js"></script></body></html>"""


class Site:
    """http://localhost:8731 served by Playwright: one page, the script, and the form's POST kept."""

    def __init__(self, context: Any, page_html: str, site: str = SITE) -> None:
        self.posted: list[dict[str, str]] = []
        self.headers: list[dict[str, str]] = []
        self.page_html = page_html
        context.route(f"{site}/**", self.handle)

    def handle(self, route: Any) -> None:
        request = route.request
        if request.url.endswith("/static/guichet.js"):
            route.fulfill(status=200, content_type="text/javascript", body=SCRIPT)
        elif request.url.endswith("/static/htmx.js"):
            route.fulfill(status=200, content_type="text/javascript", body=HTMX)
        elif request.method == "POST":
            self.posted.append(dict(urllib.parse.parse_qsl(request.post_data or "")))
            self.headers.append(request.headers)
            route.fulfill(
                status=200,
                content_type="text/html; charset=utf-8",
                body='<!doctype html><title>Reçu</title><section id="step"><h1>Reçu</h1></section>',
            )
        else:
            route.fulfill(status=200, content_type="text/html; charset=utf-8", body=self.page_html)


@pytest.fixture
def tab(playwright_browser: Any) -> Iterator[Any]:
    contexts: list[Any] = []

    def open_tab(
        page_html: str, *, js: bool = True, verified: bool = True, webauthn: bool = True, site: str = SITE
    ) -> Any:
        context = playwright_browser.new_context(java_script_enabled=js, locale="fr-FR")
        context.set_default_timeout(10_000)
        contexts.append(context)
        if not webauthn:
            context.add_init_script("delete window.PublicKeyCredential;")
        served = Site(context, page_html, site)
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        cdp.send("WebAuthn.enable")
        options = {
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": True,
            "hasUserVerification": True,
            "isUserVerified": verified,
            "automaticPresenceSimulation": True,
        }
        authenticator = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})["authenticatorId"]
        page.goto(site + "/")
        return page, served, cdp, authenticator

    yield open_tab
    for context in contexts:
        context.close()


def press(page: Any) -> None:
    page.get_by_role("button", name="Utiliser ma clé d'accès").click()


@pytest.mark.parametrize("htmx", [False, True], ids=["plain-form", "htmx-form"])
def test_a_passkey_is_created_then_used_through_the_form(tab: Any, plugin: tuple[Loop, Passkey], htmx: bool) -> None:
    loop, passkey = plugin
    account = AccountRef(id=MARIE.id + htmx, name=MARIE.name, handle=MARIE.handle)
    enrolment = loop.run(passkey.begin_enrolment(account))
    page, site, cdp, authenticator = tab(form_page("create", enrolment.prompt.public["options"], label=True, htmx=htmx))
    assert page.locator("form[data-webauthn]").is_visible()
    assert not page.locator("[data-webauthn-unsupported]").is_visible()
    press(page)
    page.get_by_role("heading", name="Reçu").wait_for()
    [posted] = site.posted
    assert posted["label"] == "Téléphone de Marie" and json.loads(posted["credential"])["type"] == "public-key"
    assert (site.headers[0].get("hx-request") == "true") is htmx  # htmx sent it, with the credential
    check: Check = loop.run(passkey.finish_enrolment(account, enrolment.state, posted))
    assert check.ok, check
    [held] = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    assert held["isResidentCredential"] and held["rpId"] == "localhost"

    for whole_login in (False, True):  # as the second factor, then as a whole login (the browser finds it)
        asked = None if whole_login else account
        challenge = loop.run(passkey.challenge(asked))
        site.page_html = form_page("get", challenge.prompt.public["options"], htmx=htmx)
        page.goto(SITE + "/")
        press(page)
        page.get_by_role("heading", name="Reçu").wait_for()
        answer = site.posted[-1]
        verified = loop.run(passkey.verify(asked, challenge.state, answer))
        assert verified.ok and verified.account_id == account.id, verified
        # the same answer again (core spends the challenge first; here the plugin alone): its counter did not move up
        replayed = loop.run(passkey.verify(asked, challenge.state, answer))
        assert not replayed.ok and replayed.message_fr == messages.CLONED


def test_a_cancelled_dialog_says_so_and_leaves_the_page_usable(tab: Any, plugin: tuple[Loop, Passkey]) -> None:
    loop, passkey = plugin
    challenge = loop.run(passkey.challenge(None))
    page, site, cdp, authenticator = tab(form_page("get", challenge.prompt.public["options"]), verified=False)
    press(page)  # user verification required, and this authenticator cannot verify the person: NotAllowedError
    error = page.locator("[data-webauthn-error]")
    error.wait_for()
    assert "vous avez annulé" in error.inner_text() and "autre méthode" in error.inner_text()
    assert site.posted == []
    assert page.get_by_role("button", name="Utiliser ma clé d'accès").is_enabled()
    page.get_by_role("link", name="Choisir une autre méthode").click()


@pytest.mark.parametrize(
    "how", [{"webauthn": False}, {"site": "http://127.0.0.1:8731"}], ids=["no-webauthn", "ip-address"]
)
def test_a_browser_without_webauthn_shows_a_note_not_a_dead_button(
    tab: Any, plugin: tuple[Loop, Passkey], how: dict[str, Any]
) -> None:
    loop, passkey = plugin
    challenge = loop.run(passkey.challenge(None))
    page, site, _cdp, _id = tab(form_page("get", challenge.prompt.public["options"]), **how)
    page.locator("[data-webauthn-unsupported]").wait_for()
    assert not page.get_by_role("button", name="Utiliser ma clé d'accès").is_visible()


def test_without_javascript_the_form_stays_hidden_behind_a_note(tab: Any, plugin: tuple[Loop, Passkey]) -> None:
    loop, passkey = plugin
    challenge = loop.run(passkey.challenge(None))
    page, site, _cdp, _id = tab(form_page("get", challenge.prompt.public["options"]), js=False)
    assert not page.get_by_role("button", name="Utiliser ma clé d'accès").is_visible()
    assert page.locator("[data-webauthn-unsupported]").is_visible()
    page.get_by_role("link", name="Choisir une autre méthode").click()
