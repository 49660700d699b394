"""Forward auth behind Debian's nginx: ``auth_request`` to /auth/verifier in front of a protected service.

``guichet serve`` and a small protected service run on loopback ports behind a real nginx with the
configuration docs/oidc.md gives. Without a session the service is never reached and the browser is
sent to the login, which returns to the page asked for; after the login the service receives the
person's identity from guichet (never from the browser), and after the logout it is closed again.

Needs nginx (``apt-get install nginx``): skipped with a clear line without it, a failure under
GUICHET_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from argon2 import PasswordHasher
from joserfc import jwt
from joserfc.jwk import KeySet

from guichet.core.database import Database
from guichet.core.keys import Keys
from guichet.core.outbox import open_sealed
from tests.conftest import TEST_SECRET, service_missing
from tests.ops import restart_load
from tests.ops.restart_load import Nginx
from tests.ops.serving import Served, free_port

IDENTIFIER = "1850578006084"
PASSWORD = "Vert-Galet-42-Nuage!"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(autouse=True)
def nginx_installed() -> None:
    if restart_load.nginx_binary() is None:
        service_missing("nginx (apt-get install nginx)")


class Protected(BaseHTTPRequestHandler):
    """The protected service: answers with the identity headers it was given."""

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        body = json.dumps({k.lower(): v for k, v in self.headers.items() if k.lower().startswith("x-guichet")}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def service() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Protected)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def nginx_location(guichet_port: int, service_port: int) -> str:
    """The snippet of docs/oidc.md, with the ports of this test."""
    return f"""
        location = /auth/verifier {{
            internal;
            proxy_pass http://127.0.0.1:{guichet_port};
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header Host $host;
            proxy_set_header X-Original-URI $request_uri;
        }}
        location /attestations/ {{
            auth_request /auth/verifier;
            auth_request_set $guichet_sujet $upstream_http_x_guichet_sujet;
            auth_request_set $guichet_niveau $upstream_http_x_guichet_niveau;
            auth_request_set $guichet_nom $upstream_http_x_guichet_nom;
            auth_request_set $guichet_prenom $upstream_http_x_guichet_prenom;
            auth_request_set $guichet_jeton $upstream_http_x_guichet_jeton;
            auth_request_set $guichet_connexion $upstream_http_location;
            error_page 401 =302 $guichet_connexion;
            proxy_set_header X-Guichet-Sujet $guichet_sujet;
            proxy_set_header X-Guichet-Niveau $guichet_niveau;
            proxy_set_header X-Guichet-Nom $guichet_nom;
            proxy_set_header X-Guichet-Prenom $guichet_prenom;
            proxy_set_header X-Guichet-Jeton $guichet_jeton;
            proxy_pass http://127.0.0.1:{service_port};
        }}
        location / {{
            proxy_pass http://127.0.0.1:{guichet_port};
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;   # replace, do not append a client's own value
        }}"""


def caisse(folder: Path, issuer: str) -> Path:
    path = restart_load.app_config(folder)
    text = path.read_text()
    path.write_text(
        text
        + f"""
[oidc]
enabled = true
issuer = "{issuer}"
forward_auth = true
"""
    )
    return path


async def add_person(folder: Path) -> None:
    """A person who has personalised their password and confirmed an email, as after their first login."""
    database = Database(f"sqlite:///{folder / 'guichet.sqlite'}")
    await database.connect()
    try:
        t = database.t.Account
        now = dt.datetime.now(dt.UTC)
        await t.insert(
            t(
                identifier_kind="nir",
                identifier=IDENTIFIER,
                status="particulier",
                last_name="LEFÈVRE",
                first_name="Julien",
                birth_date=dt.date(1985, 5, 14),
                email="julien@demo.invalid",
                email_verified=True,
                password_hash=PasswordHasher().hash(PASSWORD),
                password_is_temporary=False,
                contacts_confirmed_at=now,
                created_at=now,
            )
        ).run()
    finally:
        await database.close()


async def last_code(folder: Path) -> str:
    database = Database(f"sqlite:///{folder / 'guichet.sqlite'}")
    await database.connect()
    try:
        t = database.t.OutboxMessage
        rows = await t.select(t.sealed).where(t.template == "login_code").order_by(t.id, ascending=False).run()
        content = open_sealed(Keys(TEST_SECRET), rows[0]["sealed"])
        assert content is not None
        return str(content.payload["code"])
    finally:
        await database.close()


async def test_forward_auth_behind_nginx_guards_the_service_until_login_and_after_logout(service: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="guichet-forward-"))
    guichet_port = free_port()
    nginx = Nginx(guichet_port, upstream="", location=nginx_location(guichet_port, service))
    config = caisse(folder, nginx.url)
    await add_person(folder)
    served = Served(config, port=guichet_port).start()
    try:
        nginx.start()
        async with httpx.AsyncClient(base_url=nginx.url, follow_redirects=False, timeout=30) as browser:
            # no session: the service is not reached, the login returns to the page asked for
            r = await browser.get("/attestations/releve?annee=2026", headers={"X-Guichet-Sujet": "usurpateur"})
            assert r.status_code == 302, (r.status_code, nginx.errors()[-2000:])
            assert r.headers["location"] == f"{nginx.url}/connexion?retour=%2Fattestations%2Freleve%3Fannee%3D2026"
            page = await browser.get(r.headers["location"])
            assert 'name="retour" value="/attestations/releve?annee=2026"' in page.text
            token = CSRF.search(page.text)
            assert token
            r = await browser.post(
                "/connexion",
                data={
                    "identifier": IDENTIFIER,
                    "password": PASSWORD,
                    "retour": "/attestations/releve?annee=2026",
                    "csrf_token": token.group(1),
                },
            )
            assert r.status_code == 303 and r.headers["location"] == "/connexion/code", r.text[-800:]
            page = await browser.get("/connexion/code")
            token = CSRF.search(page.text)
            assert token
            r = await browser.post(
                "/connexion/code", data={"code": await last_code(folder), "csrf_token": token.group(1)}
            )
            assert r.status_code == 303 and r.headers["location"] == "/attestations/releve?annee=2026"
            # logged in: the service gets the identity from guichet, not the browser's header
            r = await browser.get("/attestations/releve?annee=2026", headers={"X-Guichet-Sujet": "usurpateur"})
            assert r.status_code == 200, r.text
            seen = r.json()
            assert seen["x-guichet-sujet"] != "usurpateur" and len(seen["x-guichet-sujet"]) >= 32
            assert seen["x-guichet-niveau"] == "urn:guichet:acr:code"
            assert unquote(seen["x-guichet-nom"]) == "LEFÈVRE" and unquote(seen["x-guichet-prenom"]) == "Julien"
            keys = KeySet.import_key_set((await browser.get("/oidc/jwks")).json())
            claims = jwt.decode(seen["x-guichet-jeton"], keys, algorithms=["ES256"]).claims
            assert claims["sub"] == seen["x-guichet-sujet"] and claims["aud"] == "guichet-forward-auth"
            assert claims["iss"] == nginx.url and claims["exp"] - claims["iat"] == 60
            assert claims["amr"] == ["pwd", "otp", "mfa"]
            # the verifier itself is not reachable from outside
            assert (await browser.get("/auth/verifier")).status_code == 404
            # logged out: closed again
            page = await browser.get("/espace-prive")
            token = CSRF.search(page.text)
            assert token
            r = await browser.post("/deconnexion", data={"csrf_token": token.group(1)})
            assert r.status_code == 303
            r = await browser.get("/attestations/releve?annee=2026")
            assert r.status_code == 302 and r.headers["location"].startswith(f"{nginx.url}/connexion?retour=")
    finally:
        nginx.stop()
        served.stop()
