"""guichet against an independent, certified relying party: panva's ``openid-client`` (OpenID
Certified) on Node.js, talking to ``guichet serve`` over HTTP.

The library discovers the provider, builds the authorization request (PKCE S256, state, nonce),
exchanges the code with ``client_secret_basic``, validates the ID token (signature from the JWKS,
issuer, audience, nonce, expiry, at_hash), calls userinfo and builds the logout URL; the person's
side (the login pages, the code) is driven over HTTP like a browser.

Needs Node.js and ``npm install --prefix tests/oidc/rp`` (CI does it): skipped with a clear line
without them, a failure under GUICHET_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.conftest import service_missing
from tests.ops import restart_load
from tests.ops.serving import Served, free_port
from tests.ops.test_forward_auth import IDENTIFIER, PASSWORD, add_person, last_code

RP = Path(__file__).resolve().parent / "rp"
CALLBACK = "https://attestations.test/retour"
BYE = "https://attestations.test/au-revoir"
SECRET = "un-secret-de-service-pour-openid-client-0123"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(autouse=True)
def node_client() -> None:
    if shutil.which("node") is None or not (RP / "node_modules" / "openid-client").is_dir():
        service_missing("Node.js with openid-client (npm install --prefix tests/oidc/rp)")


def caisse(folder: Path, issuer: str, callback: str = CALLBACK) -> Path:
    path = restart_load.app_config(folder)
    path.write_text(
        path.read_text()
        + f"""
[oidc]
enabled = true
issuer = "{issuer}"

[[oidc.clients]]
id = "attestations"
name = "Mes attestations"
redirect_uris = ["{callback}"]
post_logout_redirect_uris = ["{BYE}"]
secret = {{ value = "{SECRET}" }}
"""
    )
    return path


class RelyingParty:
    """rp.mjs in a subprocess: JSON lines out, the callback URL in."""

    def __init__(self, issuer: str, callback: str = CALLBACK, **params: str) -> None:
        self.proc = subprocess.Popen(
            ["node", str(RP / "rp.mjs"), issuer, "attestations", SECRET, callback, BYE, json.dumps(params)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=RP,
        )

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, self.proc.stderr.read() if self.proc.stderr else "no output"
        found: dict[str, Any] = json.loads(line)
        assert "error" not in found, found
        return found

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


async def login_in_pages(browser: httpx.AsyncClient, authorize: str, folder: Path) -> str:
    """The person's side: the authorization request, guichet's login pages and code, back to the service."""
    r = await browser.get(authorize)
    assert r.status_code == 303 and r.headers["location"].startswith("/connexion?retour="), r.text[:300]
    page = await browser.get(r.headers["location"])
    retour = page.text.split('name="retour" value="')[1].split('"')[0].replace("&amp;", "&")
    token = CSRF.search(page.text)
    assert token
    r = await browser.post(
        "/connexion",
        data={"identifier": IDENTIFIER, "password": PASSWORD, "retour": retour, "csrf_token": token.group(1)},
    )
    assert r.headers["location"] == "/connexion/code"
    page = await browser.get("/connexion/code")
    token = CSRF.search(page.text)
    assert token
    r = await browser.post("/connexion/code", data={"code": await last_code(folder), "csrf_token": token.group(1)})
    assert r.status_code == 303 and r.headers["location"].startswith("/oidc/autoriser?")
    r = await browser.get(r.headers["location"])
    assert r.status_code == 303 and r.headers["location"].startswith(CALLBACK + "?")
    return r.headers["location"]


async def test_openid_client_completes_the_code_flow_and_logs_out() -> None:
    folder = Path(tempfile.mkdtemp(prefix="guichet-rp-"))
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    config = caisse(folder, issuer)
    await add_person(folder)
    served = Served(config, port=port).start()
    rp = RelyingParty(issuer)
    try:
        authorize = rp.read()["authorize"]
        query = {k: v[0] for k, v in parse_qs(urlsplit(authorize).query).items()}
        assert query["code_challenge_method"] == "S256" and query["nonce"] and query["state"]
        async with httpx.AsyncClient(base_url=issuer, follow_redirects=False, timeout=30) as browser:
            callback = await login_in_pages(browser, authorize.removeprefix(issuer), folder)
            rp.send(callback)
            done = rp.read()
            claims, userinfo = done["claims"], done["userinfo"]
            assert claims["iss"] == issuer and claims["aud"] == "attestations" and claims["nonce"] == query["nonce"]
            assert claims["acr"] == "urn:guichet:acr:code" and claims["amr"] == ["pwd", "otp", "mfa"]
            assert userinfo["sub"] == claims["sub"] and userinfo["family_name"] == "LEFÈVRE"
            assert userinfo["email"] == "julien@demo.invalid" and "nir" not in userinfo
            assert rp.read()["replay"] == "invalid_grant"  # the library's second exchange of the same code
            # the replay revoked the tokens of the first exchange
            r = await browser.get("/oidc/userinfo", headers={"authorization": f"Bearer {done['access_token']}"})
            assert r.status_code == 401
            # the logout URL the library built: confirmed by the person, back to the registered address
            page = await browser.get(done["logout"].removeprefix(issuer))
            assert page.status_code == 200 and "Me déconnecter" in page.text
            token = CSRF.search(page.text)
            assert token
            r = await browser.post(
                "/oidc/deconnexion",
                data={"target": BYE, "client_id": "attestations", "state": "fin", "csrf_token": token.group(1)},
            )
            assert r.status_code == 303 and r.headers["location"] == BYE + "?state=fin"
            assert (await browser.get("/espace-prive")).headers["location"] == "/connexion"
    finally:
        rp.close()
        served.stop()
