"""« Mes attestations »: a small service of the caisse that logs people in through guichet.

Two ways, as docs/oidc.md describes them:

* OpenID Connect (``/``): the authorization code flow with PKCE, the ID token checked with joserfc
  against guichet's JWKS (issuer, audience, expiry, nonce), userinfo for the names, and the logout
  through guichet's end-session endpoint;
* behind nginx with forward auth (under ``/attestations/``, guichet on the same host): the identity comes in guichet's headers, and the
  signed ``X-Guichet-Jeton`` is checked against the same JWKS rather than trusted.

    python examples/mes-attestations/app.py --guichet https://monespace.example.fr \\
        --public-url https://attestations.example.fr --client-id attestations --secret-env ATTESTATIONS_SECRET

Standard library, httpx and joserfc only; sessions in memory (an example, not a product).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import os
import secrets
import sys
import threading
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

COOKIE = "attestations_session"
FORWARD_PREFIX = "/attestations/"  # behind nginx, on guichet's host (docs/oidc.md)


class Service:
    def __init__(self, guichet: str, public_url: str, client_id: str, secret: str) -> None:
        self.guichet = guichet.rstrip("/")
        self.public_url = public_url.rstrip("/")
        self.client_id = client_id
        self.secret = secret
        self.metadata = httpx.get(f"{self.guichet}/.well-known/openid-configuration", timeout=10).json()
        self.pending: dict[str, tuple[str, str]] = {}  # state -> (nonce, PKCE verifier)
        self.sessions: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def keys(self) -> KeySet:
        return KeySet.import_key_set(httpx.get(self.metadata["jwks_uri"], timeout=10).json())

    def start_login(self) -> str:
        state, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        with self.lock:
            self.pending[state] = (nonce, verifier)
        return (
            self.metadata["authorization_endpoint"]
            + "?"
            + urlencode(
                {
                    "response_type": "code",
                    "client_id": self.client_id,
                    "redirect_uri": f"{self.public_url}/retour",
                    "scope": "openid profile",
                    "state": state,
                    "nonce": nonce,
                    "code_challenge": challenge,
                    "code_challenge_method": "S256",
                }
            )
        )

    def finish_login(self, query: dict[str, str]) -> str:
        """The callback: a session id, or ValueError."""
        with self.lock:
            nonce, verifier = self.pending.pop(query.get("state", ""), ("", ""))
        if not verifier or query.get("iss") != self.metadata["issuer"] or "code" not in query:
            raise ValueError("réponse inattendue")
        answer = httpx.post(
            self.metadata["token_endpoint"],
            auth=(self.client_id, self.secret),
            timeout=10,
            data={
                "grant_type": "authorization_code",
                "code": query["code"],
                "code_verifier": verifier,
                "redirect_uri": f"{self.public_url}/retour",
            },
        )
        answer.raise_for_status()
        tokens = answer.json()
        claims = jwt.decode(tokens["id_token"], self.keys(), algorithms=["RS256", "ES256"]).claims
        JWTClaimsRegistry(
            leeway=30,
            iss={"essential": True, "value": self.metadata["issuer"]},
            aud={"essential": True, "value": self.client_id},
            exp={"essential": True},
            nonce={"essential": True, "value": nonce},
        ).validate(claims)
        info = httpx.get(
            self.metadata["userinfo_endpoint"],
            timeout=10,
            headers={"authorization": f"Bearer {tokens['access_token']}"},
        ).json()
        if info.get("sub") != claims["sub"]:
            raise ValueError("identité incohérente")
        sid = secrets.token_urlsafe(32)
        with self.lock:
            self.sessions[sid] = {"claims": claims, "info": info, "id_token": tokens["id_token"]}
        return sid

    def forward_identity(self, headers: Any) -> dict[str, Any] | None:
        """The identity nginx passed on, trusted only once its signed token checks out."""
        token = headers.get("X-Guichet-Jeton", "")
        if not token:
            return None
        try:
            claims = jwt.decode(token, self.keys(), algorithms=["ES256"]).claims
            JWTClaimsRegistry(
                leeway=30,
                iss={"essential": True, "value": self.metadata["issuer"]},
                aud={"essential": True, "value": "guichet-forward-auth"},
                exp={"essential": True},
            ).validate(claims)
        except (JoseError, ValueError):
            return None
        return dict(claims)


def page(title: str, body: str) -> bytes:
    return (
        f'<!doctype html><html lang="fr"><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>'
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    ).encode()


LEVELS = {
    "urn:guichet:acr:code": "mot de passe et code de sécurité",
    "urn:guichet:acr:navigateur-de-confiance": "mot de passe, navigateur de confiance",
}


def make_handler(service: Service) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in {
                "content-type": "text/html; charset=utf-8",
                "cache-control": "no-store",
                **(headers or {}),
            }.items():
                self.send_header(key, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _session(self) -> tuple[str, dict[str, Any] | None]:
            jar = SimpleCookie(self.headers.get("Cookie", ""))
            sid = jar[COOKIE].value if COOKIE in jar else ""
            return sid, service.sessions.get(sid)

        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            sid, session = self._session()
            if parts.path == "/":
                if session is None:
                    self._send(303, headers={"location": service.start_login()})
                    return
                claims, info = session["claims"], session["info"]
                name = html.escape(f"{info.get('given_name', '')} {info.get('family_name', '')}".strip())
                level = html.escape(LEVELS.get(claims.get("acr", ""), claims.get("acr", "")))
                self._send(
                    200,
                    page(
                        "Mes attestations",
                        f"<p>Bonjour {name}.</p><p>Niveau de connexion : {level}.</p>"
                        '<p><a href="/deconnexion">Se déconnecter</a></p>',
                    ),
                )
            elif parts.path == "/retour":
                try:
                    new_sid = service.finish_login(query)
                except (ValueError, httpx.HTTPError, JoseError) as exc:
                    print(f"login refused: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                    self._send(400, page("Connexion impossible", "<p>La connexion n'a pas abouti.</p>"))
                    return
                self._send(
                    303, headers={"location": "/", "set-cookie": f"{COOKIE}={new_sid}; Path=/; HttpOnly; SameSite=Lax"}
                )
            elif parts.path == "/deconnexion":
                hint = session["id_token"] if session else ""
                with service.lock:
                    service.sessions.pop(sid, None)
                target = (
                    service.metadata["end_session_endpoint"]
                    + "?"
                    + urlencode({"id_token_hint": hint, "post_logout_redirect_uri": f"{service.public_url}/au-revoir"})
                )
                self._send(303, headers={"location": target, "set-cookie": f"{COOKIE}=; Path=/; Max-Age=0"})
            elif parts.path == "/au-revoir":
                self._send(200, page("Mes attestations", "<p>Vous êtes déconnecté.</p>"))
            elif parts.path.startswith(FORWARD_PREFIX):
                claims = service.forward_identity(self.headers)
                if claims is None:
                    self._send(401, page("Accès refusé", "<p>Identité non vérifiée.</p>"))
                    return
                name = html.escape(f"{claims.get('given_name', '')} {claims.get('family_name', '')}".strip())
                level = html.escape(LEVELS.get(claims.get("acr", ""), claims.get("acr", "")))
                self._send(
                    200,
                    page(
                        "Mes attestations",
                        f"<p>Bonjour {name}.</p><p>Niveau de connexion : {level}.</p>"
                        '<p><a href="/oidc/deconnexion">Se déconnecter</a></p>',
                    ),
                )
            else:
                self._send(404, page("Page introuvable", ""))

        def log_message(self, *args: Any) -> None:
            return None

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="Mes attestations: a service that logs in through guichet")
    parser.add_argument("--guichet", required=True, help="guichet's issuer address")
    parser.add_argument("--public-url", required=True, help="this service's own address")
    parser.add_argument("--client-id", default="attestations")
    parser.add_argument("--secret-env", default="ATTESTATIONS_SECRET", help="the variable holding the client secret")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8010)
    args = parser.parse_args()
    service = Service(args.guichet, args.public_url, args.client_id, os.environ[args.secret_env])
    server = ThreadingHTTPServer((args.host, args.port), make_handler(service))
    print(f"Mes attestations on http://{args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
