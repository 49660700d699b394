"""What the provider's tests share: a caisse with services declared, and a relying party's side of the flow."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from tests.conftest import Portal
from tests.flows.helpers import field_errors

ISSUER = "http://127.0.0.1:8000"
SECRET = "s3cret-attestations-0123456789abcdef"
ATTESTATIONS = "attestations"
ATTESTATIONS_CB = "https://attestations.test/retour"
ATTESTATIONS_BYE = "https://attestations.test/au-revoir"
APP = "appli"
APP_CB = "https://appli.test/cb"
PARTNER = "partenaire"
PARTNER_CB = "https://partenaire.test/cb"
PARTNER_KEY = ECKey.generate_key("P-256", auto_kid=True)


def oidc_extra(tmp_path: Path, *, issuer: str = ISSUER, more: str = "", backchannel: str = "") -> str:
    """The [oidc] table: a first-party service with a secret, a public app, a third party with keys."""
    jwks = tmp_path / "partenaire.jwks"
    jwks.write_text(json.dumps({"keys": [PARTNER_KEY.as_dict(private=False)]}))
    return f"""
[oidc]
enabled = true
issuer = "{issuer}"
forward_auth = true
code_seconds = 60
{more}

[[oidc.clients]]
id = "{ATTESTATIONS}"
name = "Mes attestations"
description = "Vos attestations de droits et de paiements."
start_url = "https://attestations.test/"
redirect_uris = ["{ATTESTATIONS_CB}"]
post_logout_redirect_uris = ["{ATTESTATIONS_BYE}"]
{f'backchannel_logout_uri = "{backchannel}"' if backchannel else ""}
secret = {{ value = "{SECRET}" }}

[[oidc.clients]]
id = "{APP}"
name = "Appli mobile"
auth_method = "none"
redirect_uris = ["{APP_CB}"]

[[oidc.clients]]
id = "{PARTNER}"
name = "Partenaire social"
start_url = "https://partenaire.test/"
description = "Un partenaire de l'action sociale."
third_party = true
auth_method = "private_key_jwt"
jwks_file = "{jwks}"
redirect_uris = ["{PARTNER_CB}"]
scopes = ["openid", "profile", "nir"]
"""


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_url(
    client_id: str = ATTESTATIONS,
    redirect_uri: str = ATTESTATIONS_CB,
    *,
    challenge: str | None = None,
    scope: str = "openid profile email phone",
    drop: tuple[str, ...] = (),
    **extra: str,
) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": "etat-123",
        "nonce": "nonce-456",
        "code_challenge": challenge or pkce()[1],
        "code_challenge_method": "S256",
        **extra,
    }
    return "/oidc/autoriser?" + urlencode({k: v for k, v in params.items() if k not in drop})


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def login_through(
    portal: Portal, response: httpx.Response, identifier: str, password: str, *, code: bool = True
) -> httpx.Response:
    """From an authorization answered by the login page: the password, the code if asked, and back."""
    login = response.headers["location"]
    assert login.startswith("/connexion?retour="), login
    page = await portal.get(login)
    retour = page.text.split('name="retour" value="')[1].split('"')[0].replace("&amp;", "&")
    form = {"identifier": identifier, "password": password, "retour": retour}
    if 'name="code" value="oui"' in page.text:
        form["code"] = "oui"
    r = await portal.post("/connexion", form)
    assert r.status_code == 303, field_errors(r)
    if r.headers["location"] == "/connexion/code":
        assert code, "a code was asked"
        await portal.get("/connexion/code")
        r = await portal.post("/connexion/code", {"code": await portal.last_code("login_code")})
        assert r.status_code == 303, field_errors(r)
    return r


async def code_for(portal: Portal, url: str, identifier: str, password: str) -> tuple[str, httpx.Response]:
    """Run the authorization request to its end (logging in when asked); the code and the last answer."""
    r = await portal.get(url)
    if r.headers.get("location", "").startswith("/connexion"):
        r = await login_through(portal, r, identifier, password)
        assert r.headers["location"].startswith("/oidc/autoriser"), r.headers["location"]
        r = await portal.get(r.headers["location"])
    assert r.status_code == 303, r.text[:500]
    query = query_of(r.headers["location"])
    assert "code" in query, query
    return query["code"], r


async def exchange(
    portal: Portal,
    code: str,
    verifier: str,
    *,
    client_id: str = ATTESTATIONS,
    secret: str | None = SECRET,
    redirect_uri: str = ATTESTATIONS_CB,
    extra: dict[str, str] | None = None,
) -> httpx.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": redirect_uri,
        **(extra or {}),
    }
    auth = (client_id, secret) if secret is not None else None
    if secret is None and "client_assertion" not in data:
        data["client_id"] = client_id
    return await portal.client.post("/oidc/jeton", data=data, auth=auth)  # type: ignore[arg-type]


def partner_assertion(*, audience: str = f"{ISSUER}/oidc/jeton", key: Any = PARTNER_KEY, now: int) -> dict[str, str]:
    claims = {"iss": PARTNER, "sub": PARTNER, "aud": audience, "iat": now, "exp": now + 60, "jti": secrets.token_hex(8)}
    assertion = jwt.encode({"alg": "ES256", "kid": key.kid}, claims, key)
    return {
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }


async def verified_id_token(portal: Portal, id_token: str) -> dict[str, Any]:
    """What a relying party does: the signature against the published keys, then the claims it checks."""
    keys = KeySet.import_key_set((await portal.client.get("/oidc/jwks")).json())
    token = jwt.decode(id_token, keys, algorithms=["RS256", "ES256"])
    return dict(token.claims)
