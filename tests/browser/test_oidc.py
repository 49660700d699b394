"""A service logs people in through guichet, in Chromium: panva's openid-client is the service
(tests/oidc/test_certified_rp.py), Chromium is the person on guichet's own pages.

First login: password and the emailed code, the browser marked as trusted; the client validates an
ID token saying a code was typed. Second login: the trusted browser skips the code, and the token
says so (no otp in amr). Third: the service asks prompt=login, and the code is asked again.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.oidc.test_certified_rp import RP, RelyingParty, caisse
from tests.ops.serving import Served, free_port
from tests.ops.test_forward_auth import IDENTIFIER, PASSWORD, add_person, last_code

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def node_client() -> None:
    from tests.conftest import service_missing

    if shutil.which("node") is None or not (RP / "node_modules" / "openid-client").is_dir():
        service_missing("Node.js with openid-client (npm install --prefix tests/oidc/rp)")


def run(coroutine: Any) -> Any:
    """A coroutine of the test's helpers, in a thread of its own (sync Playwright owns this thread's loop)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


class Callback(BaseHTTPRequestHandler):
    """The service's redirect address: answers 200 and keeps the URL it was called with."""

    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        Callback.seen.append(self.path)
        self.send_response(200)
        self.send_header("content-length", "7")
        self.end_headers()
        self.wfile.write(b"service")

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def callback() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Callback)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/retour"
    server.shutdown()
    server.server_close()


def sign_in(
    page: Any, rp: RelyingParty, folder: Path, callback: str, *, trust: bool = False
) -> tuple[dict[str, Any], bool]:
    """Chromium from the service's authorization URL back to its callback; (what the client validated,
    whether a code was asked)."""
    page.goto(rp.read()["authorize"])
    asked_code = False
    if page.locator("#f-password").count():
        page.fill("#f-identifier", IDENTIFIER)
        page.fill("#f-password", PASSWORD)
        page.get_by_role("button", name="Se connecter").click()
        page.wait_for_url(lambda url: "/connexion/code" in url or url.startswith(callback))
        if "/connexion/code" in page.url:
            asked_code = True
            page.fill("#f-code", run(last_code(folder)))
            if trust:
                page.locator("#f-trust").check()
            page.get_by_role("button", name="Valider").click()
    page.wait_for_url(lambda url: url.startswith(callback))
    rp.send(page.url)
    return rp.read(), asked_code


def test_a_service_logs_in_through_guichet_with_code_trusted_browser_and_prompt_login(
    playwright_browser: Any, callback: str
) -> None:
    folder = Path(tempfile.mkdtemp(prefix="guichet-oidc-browser-"))
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    config = caisse(folder, issuer, callback)
    run(add_person(folder))
    served = Served(config, port=port).start()
    context = playwright_browser.new_context(locale="fr-FR")
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        rp = RelyingParty(issuer, callback)
        first, asked = sign_in(page, rp, folder, callback, trust=True)
        rp.close()
        assert asked and first["claims"]["amr"] == ["pwd", "otp", "mfa"]
        assert first["claims"]["acr"] == "urn:guichet:acr:code"
        assert first["userinfo"]["given_name"] == "Julien"
        # logged out of guichet: the next login is a new one, on a browser that is now trusted
        page.goto(f"{issuer}/espace-prive")
        page.get_by_role("button", name="Se déconnecter").click()
        page.wait_for_url(f"{issuer}/?deconnexion=faite")  # the logout is confirmed on the home page
        rp = RelyingParty(issuer, callback)
        second, asked = sign_in(page, rp, folder, callback)
        rp.close()
        assert not asked and second["claims"]["amr"] == ["pwd"]
        assert second["claims"]["acr"] == "urn:guichet:acr:navigateur-de-confiance"
        assert second["claims"]["sub"] == first["claims"]["sub"]
        # the service wants a fresh login with a code: the trusted browser does not skip it
        rp = RelyingParty(issuer, callback, prompt="login")
        third, asked = sign_in(page, rp, folder, callback)
        rp.close()
        assert asked and third["claims"]["amr"] == ["pwd", "otp", "mfa"]
        assert third["claims"]["auth_time"] >= second["claims"]["auth_time"]
    finally:
        context.close()
        served.stop()
