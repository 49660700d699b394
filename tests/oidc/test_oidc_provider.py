"""The OpenID Connect provider over HTTP: what an attacker tries first, then the code flow end to end."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey

from guichet.core.config import CaisseConfig
from tests.conftest import Portal, portal_config_text
from tests.flows.helpers import NEW_PASSWORD, activate, login, logout
from tests.oidc.support import (
    APP,
    APP_CB,
    ATTESTATIONS,
    ATTESTATIONS_BYE,
    ATTESTATIONS_CB,
    ISSUER,
    PARTNER,
    PARTNER_CB,
    SECRET,
    authorize_url,
    code_for,
    exchange,
    login_through,
    oidc_extra,
    partner_assertion,
    pkce,
    query_of,
    verified_id_token,
)

pytestmark = pytest.mark.asyncio


@pytest.fixture
def oidc_config(make_config: Callable[..., CaisseConfig], db_url: str, tmp_path: Path) -> CaisseConfig:
    return make_config(database_url=db_url, base=portal_config_text(oidc_extra(tmp_path)))


@pytest.fixture
async def provider_portal(portal_factory: Callable[..., Any], oidc_config: CaisseConfig) -> Portal:
    return await portal_factory(oidc_config)  # type: ignore[no-any-return]


@pytest.fixture
async def julien(provider_portal: Portal) -> Any:
    """Julien LEFEBVRE with a personal password (NEW_PASSWORD), logged out."""
    return await registered_person(provider_portal)


async def token_response(portal: Portal, person: Any, **options: Any) -> tuple[dict[str, Any], str]:
    verifier, challenge = pkce()
    code, _ = await code_for(portal, authorize_url(challenge=challenge, **options), person.identifier, NEW_PASSWORD)
    r = await exchange(portal, code, verifier)
    assert r.status_code == 200, r.text
    return r.json(), code


async def audit_kinds(portal: Portal, prefix: str = "oidc.") -> list[tuple[str, str]]:
    t = portal.services.database.t.AuditLog
    rows = await t.select(t.kind, t.details).where(t.kind.like(f"{prefix}%")).order_by(t.id).run()
    return [(row["kind"], json.loads(row["details"]).get("reason", "")) for row in rows]


# --- what an attacker tries ---------------------------------------------------------------------------


async def test_authorization_without_pkce_or_with_plain_pkce_is_refused(provider_portal: Portal, julien: Any) -> None:
    for url in (
        authorize_url(drop=("code_challenge", "code_challenge_method")),
        authorize_url(drop=("code_challenge_method",)),
        authorize_url(code_challenge_method="plain"),
        authorize_url(challenge="trop-court"),
    ):
        r = await provider_portal.get(url)
        assert r.status_code == 303
        query = query_of(r.headers["location"])
        assert r.headers["location"].startswith(ATTESTATIONS_CB + "?")
        assert query["error"] == "invalid_request" and query["state"] == "etat-123" and "code" not in query
        assert query["iss"] == ISSUER


async def test_wrong_or_partial_redirect_uri_is_shown_to_the_person_never_followed(provider_portal: Portal) -> None:
    for wrong in (
        ATTESTATIONS_CB + "/plus",
        ATTESTATIONS_CB + "?x=1",
        "https://attestations.test/",
        "https://evil.test/retour",
        ATTESTATIONS_CB.upper(),
        ATTESTATIONS_CB + "#f",
        APP_CB,
    ):
        r = await provider_portal.get(authorize_url(redirect_uri=wrong))
        assert r.status_code == 400 and "location" not in r.headers
        assert (
            "L&#39;adresse de retour demandée par ce service n&#39;est pas enregistrée." in r.text
            or "L'adresse de retour demandée par ce service n'est pas enregistrée." in r.text
        )


async def test_an_unknown_client_such_as_another_caisses_is_refused(provider_portal: Portal) -> None:
    r = await provider_portal.get(authorize_url(client_id="attestations-provence"))
    assert r.status_code == 400 and "location" not in r.headers
    assert "Ce service n" in r.text


async def test_a_repeated_parameter_is_refused(provider_portal: Portal) -> None:
    r = await provider_portal.get(authorize_url() + "&redirect_uri=https%3A%2F%2Fevil.test%2F")
    assert r.status_code == 400 and "location" not in r.headers


async def test_pkce_verifier_mismatch_refuses_and_spends_the_code(provider_portal: Portal, julien: Any) -> None:
    verifier, challenge = pkce()
    code, _ = await code_for(provider_portal, authorize_url(challenge=challenge), julien.identifier, NEW_PASSWORD)
    wrong = await exchange(provider_portal, code, pkce()[0])
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    assert "access_token" not in wrong.text
    # the right verifier afterwards gets nothing either: a code is tried once
    again = await exchange(provider_portal, code, verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    missing = await exchange(provider_portal, code, "")
    assert missing.status_code == 400


async def test_code_redeemed_with_another_redirect_uri_is_refused(provider_portal: Portal, julien: Any) -> None:
    verifier, challenge = pkce()
    code, _ = await code_for(provider_portal, authorize_url(challenge=challenge), julien.identifier, NEW_PASSWORD)
    r = await exchange(provider_portal, code, verifier, redirect_uri=ATTESTATIONS_CB + "/autre")
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


async def test_code_replay_revokes_the_tokens_it_issued(provider_portal: Portal, julien: Any) -> None:
    tokens, code = await token_response(provider_portal, julien)
    bearer = {"authorization": f"Bearer {tokens['access_token']}"}
    assert (await provider_portal.client.get("/oidc/userinfo", headers=bearer)).status_code == 200
    replay = await exchange(provider_portal, code, "x" * 43)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    r = await provider_portal.client.get("/oidc/userinfo", headers=bearer)
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"
    assert ("oidc.revoked", "code_replayed") in await audit_kinds(provider_portal)


async def test_a_code_is_for_its_own_client_only(provider_portal: Portal, julien: Any) -> None:
    verifier, challenge = pkce()
    code, _ = await code_for(provider_portal, authorize_url(challenge=challenge), julien.identifier, NEW_PASSWORD)
    r = await exchange(provider_portal, code, verifier, client_id=APP, secret=None, redirect_uri=ATTESTATIONS_CB)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    assert ("oidc.refused", "wrong_client") in await audit_kinds(provider_portal)


async def test_client_authentication_is_required_and_checked(provider_portal: Portal, julien: Any) -> None:
    verifier, challenge = pkce()
    code, _ = await code_for(provider_portal, authorize_url(challenge=challenge), julien.identifier, NEW_PASSWORD)
    for secret in ("mauvais-secret", SECRET + "x", ""):
        r = await exchange(provider_portal, code, verifier, secret=secret)
        assert r.status_code == 401 and r.json()["error"] == "invalid_client"
        assert r.headers["www-authenticate"].startswith("Basic")
    # a confidential client cannot pass as a public one by leaving its secret out
    r = await exchange(provider_portal, code, verifier, secret=None)
    assert r.status_code == 401
    # none of this spent the code: it was never tried by an authenticated client
    ok = await exchange(provider_portal, code, verifier)
    assert ok.status_code == 200, ok.text


async def test_an_expired_code_is_refused(provider_portal: Portal, julien: Any, clock: Any) -> None:
    verifier, challenge = pkce()
    code, _ = await code_for(provider_portal, authorize_url(challenge=challenge), julien.identifier, NEW_PASSWORD)
    clock.advance(seconds=61)
    r = await exchange(provider_portal, code, verifier)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    assert ("oidc.refused", "expired") in await audit_kinds(provider_portal)


async def test_tampered_or_forged_id_tokens_do_not_verify(provider_portal: Portal, julien: Any) -> None:
    tokens, _ = await token_response(provider_portal, julien)
    claims = await verified_id_token(provider_portal, tokens["id_token"])
    header, payload, signature = tokens["id_token"].split(".")
    other = dict(claims, sub="quelqu-un-d-autre")
    forged_payload = base64.urlsafe_b64encode(json.dumps(other).encode()).rstrip(b"=").decode()
    with pytest.raises(Exception):
        await verified_id_token(provider_portal, f"{header}.{forged_payload}.{signature}")
    # alg none, and HS256 keyed with the published public key (the classic confusion)
    none_header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).rstrip(b"=").decode()
    with pytest.raises(Exception):
        await verified_id_token(provider_portal, f"{none_header}.{forged_payload}.")
    jwks = (await provider_portal.client.get("/oidc/jwks")).json()
    public_bytes = json.dumps(jwks["keys"][0]).encode()
    hs = jwt.encode(
        {"alg": "HS256", "kid": jwks["keys"][0]["kid"]}, other, OctKey.import_key(public_bytes), algorithms=["HS256"]
    )
    with pytest.raises(Exception):
        await verified_id_token(provider_portal, hs)
    # no published key is symmetric, and none carries a private part
    assert {k["kty"] for k in jwks["keys"]} == {"RSA", "EC"}
    assert not any(set(k) & {"d", "p", "q", "dp", "dq", "qi"} for k in jwks["keys"])


async def test_nonce_is_echoed_and_bound_to_its_own_request(provider_portal: Portal, julien: Any) -> None:
    first, _ = await token_response(provider_portal, julien, nonce="premier-nonce")
    second, _ = await token_response(provider_portal, julien, nonce="second-nonce")
    one = await verified_id_token(provider_portal, first["id_token"])
    two = await verified_id_token(provider_portal, second["id_token"])
    assert one["nonce"] == "premier-nonce" and two["nonce"] == "second-nonce"
    assert one["aud"] == ATTESTATIONS and one["iss"] == ISSUER


async def test_a_token_after_logout_is_refused(provider_portal: Portal, julien: Any) -> None:
    tokens, _ = await token_response(provider_portal, julien)
    bearer = {"authorization": f"Bearer {tokens['access_token']}"}
    assert (await provider_portal.client.get("/oidc/userinfo", headers=bearer)).status_code == 200
    await logout(provider_portal)
    assert (await provider_portal.client.get("/oidc/userinfo", headers=bearer)).status_code == 401


async def test_a_closed_account_s_tokens_and_codes_give_nothing(
    provider_portal: Portal, julien: Any, portal_factory: Callable[..., Any]
) -> None:
    """The person closes the espace privé from another browser: a service's access token and a code
    not yet exchanged give nothing more (the account stays only as an empty tombstone row)."""
    tokens, _ = await token_response(provider_portal, julien)
    bearer = {"authorization": f"Bearer {tokens['access_token']}"}
    assert (await provider_portal.client.get("/oidc/userinfo", headers=bearer)).status_code == 200
    verifier, challenge = pkce()
    pending, _ = await code_for(provider_portal, authorize_url(challenge=challenge), julien.identifier, NEW_PASSWORD)
    own = await portal_factory(provider_portal.services.config)
    await login(own, julien.identifier, NEW_PASSWORD)
    await own.get("/mon-compte/fermeture")
    closed = await own.post("/mon-compte/fermeture", {"current_password": NEW_PASSWORD})
    assert closed.headers["location"] == "/espace-ferme"
    r = await provider_portal.client.get("/oidc/userinfo", headers=bearer)
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"
    r = await exchange(provider_portal, pending, verifier)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant" and "access_token" not in r.text


@pytest.mark.parametrize("revoked", ["token", "grant"])
async def test_userinfo_honours_the_revocation_of_the_token_and_of_its_grant_alone(
    provider_portal: Portal, julien: Any, revoked: str
) -> None:
    tokens, _ = await token_response(provider_portal, julien)
    bearer = {"authorization": f"Bearer {tokens['access_token']}"}
    assert (await provider_portal.client.get("/oidc/userinfo", headers=bearer)).status_code == 200
    db = provider_portal.services.database
    t = db.t.OidcToken if revoked == "token" else db.t.OidcGrant
    await t.update({t.revoked_at: provider_portal.services.now()}).where(t.revoked_at.is_null()).run()
    r = await provider_portal.client.get("/oidc/userinfo", headers=bearer)
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"


async def test_userinfo_refuses_anything_but_a_live_bearer_token(
    provider_portal: Portal, julien: Any, clock: Any
) -> None:
    for header in (
        {},
        {"authorization": "Bearer "},
        {"authorization": "Bearer inconnu"},
        {"authorization": f"Basic {base64.b64encode(b'attestations:x').decode()}"},
    ):
        r = await provider_portal.client.get("/oidc/userinfo", headers=header)
        assert r.status_code == 401 and r.json()["error"] == "invalid_token"
    tokens, _ = await token_response(provider_portal, julien)
    clock.advance(seconds=601)
    r = await provider_portal.client.get(
        "/oidc/userinfo", headers={"authorization": f"Bearer {tokens['access_token']}"}
    )
    assert r.status_code == 401


async def test_userinfo_answers_services_in_oauth_s_words_only(provider_portal: Portal, julien: Any) -> None:
    """GET or POST with the token in the Authorization header (RFC 6750 2.1); JSON that no cache
    keeps; a refusal says how to authenticate; anything else is a 405, and no page is ever shown."""
    tokens, _ = await token_response(provider_portal, julien)
    bearer = {"authorization": f"Bearer {tokens['access_token']}"}
    for method in ("GET", "POST"):
        r = await provider_portal.client.request(method, "/oidc/userinfo", headers=bearer)
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        assert r.headers["cache-control"] == "no-store" and r.headers["pragma"] == "no-cache"
        assert r.json()["family_name"] == "LEFEBVRE" and r.headers["x-request-id"]
    refused = await provider_portal.client.post("/oidc/userinfo", data={"access_token": tokens["access_token"]})
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_token"
    assert refused.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    for method in ("PUT", "DELETE", "PATCH"):
        r = await provider_portal.client.request(method, "/oidc/userinfo", headers=bearer)
        assert r.status_code == 405 and r.headers["allow"] == "GET, POST" and not r.content


OFF_SITE = (
    "https://evil.test/",
    "//evil.test/x",
    "/\\evil.test",
    "https:evil.test",
    "/\r\nSet-Cookie:x",
    "javascript:alert(1)",
    " //evil.test",
    "/connexion?retour=//evil.test",
)


async def test_login_return_url_cannot_leave_the_site(provider_portal: Portal, julien: Any) -> None:
    from urllib.parse import quote

    from guichet.web.oidc.routes import return_target

    for target in OFF_SITE:
        assert return_target(target) == ""
        page = await provider_portal.get("/connexion?retour=" + quote(target, safe=""))
        assert page.status_code == 200 and 'name="retour"' not in page.text
    for target in OFF_SITE[:2]:
        r = await provider_portal.post(
            "/connexion", {"identifier": julien.identifier, "password": NEW_PASSWORD, "retour": target}
        )
        assert r.status_code == 303 and r.headers["location"] == "/connexion/code"
        await provider_portal.get("/connexion/code")
        r = await provider_portal.post("/connexion/code", {"code": await provider_portal.last_code("login_code")})
        assert r.headers["location"] == "/espace-prive", (target, r.headers["location"])
        await logout(provider_portal)


async def test_the_nir_goes_only_to_clients_allowed_it(provider_portal: Portal, julien: Any) -> None:
    tokens, _ = await token_response(provider_portal, julien, scope="openid profile nir")
    assert tokens["scope"] == "openid profile"
    info = (
        await provider_portal.client.get(
            "/oidc/userinfo", headers={"authorization": f"Bearer {tokens['access_token']}"}
        )
    ).json()
    assert "nir" not in info and julien.identifier not in json.dumps(info)


async def test_a_forged_client_assertion_is_refused(provider_portal: Portal, julien: Any) -> None:
    now = int(provider_portal.services.now().timestamp())
    stranger = ECKey.generate_key("P-256", auto_kid=True)
    for assertion in (
        partner_assertion(key=stranger, now=now),
        partner_assertion(audience="https://ailleurs", now=now),
        partner_assertion(now=now - 3600),
    ):
        r = await exchange(
            provider_portal,
            "un-code",
            "v" * 43,
            client_id=PARTNER,
            secret=None,
            redirect_uri=PARTNER_CB,
            extra=assertion,
        )
        assert r.status_code == 401 and r.json()["error"] == "invalid_client"


async def test_signing_keys_are_stored_sealed(provider_portal: Portal) -> None:
    published = (await provider_portal.client.get("/oidc/jwks")).json()["keys"]
    t = provider_portal.services.database.t.OidcKey
    rows = await t.select().run()
    assert {row["alg"] for row in rows} == {"RS256", "ES256"}
    for row in rows:
        # the stored text is base64 of ciphertext: neither it nor its bytes hold the key's JSON (a bare
        # "kty" may occur in random base64 by chance, about once in a hundred keys: look for the quoted names)
        stored = base64.urlsafe_b64decode(row["sealed"])
        assert '"d"' not in row["sealed"] and b'"kty"' not in stored and b'"d"' not in stored
        assert '"d"' not in row["public_jwk"]
        private = provider_portal.services.keys.unseal(row["sealed"], "oidc-key")
        assert b'"d"' in private  # the private half is there, sealed
        with pytest.raises(ValueError):
            provider_portal.services.keys.unseal(row["sealed"])  # a key sealed for one use opens for no other
    assert sorted(k["kid"] for k in published) == sorted(row["kid"] for row in rows)


# --- the code flow ------------------------------------------------------------------------------------


async def test_code_flow_gives_a_verified_id_token_and_the_person_s_claims(
    provider_portal: Portal, julien: Any
) -> None:
    verifier, challenge = pkce()
    r = await provider_portal.get(authorize_url(challenge=challenge))
    assert r.status_code == 303 and r.headers["location"].startswith("/connexion?retour=")
    r = await login_through(provider_portal, r, julien.identifier, NEW_PASSWORD)
    r = await provider_portal.get(r.headers["location"])
    query = query_of(r.headers["location"])
    assert r.headers["location"].startswith(ATTESTATIONS_CB + "?") and query["state"] == "etat-123"
    token = await exchange(provider_portal, query["code"], verifier)
    assert token.status_code == 200 and token.headers["cache-control"] == "no-store"
    body = token.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 600
    claims = await verified_id_token(provider_portal, body["id_token"])
    now = int(provider_portal.services.now().timestamp())
    assert claims["iss"] == ISSUER and claims["aud"] == ATTESTATIONS and claims["nonce"] == "nonce-456"
    assert claims["amr"] == ["pwd", "otp", "mfa"] and claims["acr"] == "urn:guichet:acr:code"
    assert abs(claims["auth_time"] - now) <= 2 and claims["exp"] == claims["iat"] + 600
    assert julien.identifier not in claims["sub"]
    info = (
        await provider_portal.client.get("/oidc/userinfo", headers={"authorization": f"Bearer {body['access_token']}"})
    ).json()
    assert (
        info
        == {
            "sub": claims["sub"],
            "family_name": "LEFEBVRE",
            "given_name": "Julien",
            "birthdate": "1985-05-14",
            "email": "julien.lefebvre@demo.invalid",
            "email_verified": True,
            "phone_number": info.get("phone_number"),
            "phone_number_verified": info.get("phone_number_verified"),
        }
        or "phone_number" not in info
    )
    assert info["sub"] == claims["sub"] and info["family_name"] == "LEFEBVRE" and info["birthdate"] == "1985-05-14"
    kinds = [k for k, _ in await audit_kinds(provider_portal)]
    assert kinds[-2:] == ["oidc.authorized", "oidc.token_issued"]


async def test_a_logged_in_person_gets_a_code_without_logging_in_again(provider_portal: Portal, julien: Any) -> None:
    await token_response(provider_portal, julien)
    r = await provider_portal.get(authorize_url())
    assert (
        r.status_code == 303 and "code=" in r.headers["location"] and r.headers["location"].startswith(ATTESTATIONS_CB)
    )


async def test_subjects_are_pairwise_per_sector(provider_portal: Portal, julien: Any) -> None:
    first, _ = await token_response(provider_portal, julien)
    verifier, challenge = pkce()
    code, _ = await code_for(
        provider_portal, authorize_url(APP, APP_CB, challenge=challenge), julien.identifier, NEW_PASSWORD
    )
    app = await exchange(provider_portal, code, verifier, client_id=APP, secret=None, redirect_uri=APP_CB)
    assert app.status_code == 200, app.text
    one = await verified_id_token(provider_portal, first["id_token"])
    two = await verified_id_token(provider_portal, app.json()["id_token"])
    assert one["sub"] != two["sub"] and one["sid"] != two["sid"]
    again, _ = await token_response(provider_portal, julien)
    assert (await verified_id_token(provider_portal, again["id_token"]))["sub"] == one["sub"]


async def test_prompt_none_without_a_session_answers_login_required(provider_portal: Portal) -> None:
    r = await provider_portal.get(authorize_url(prompt="none"))
    assert r.status_code == 303 and query_of(r.headers["location"])["error"] == "login_required"


async def test_prompt_login_asks_for_the_password_and_a_code_again(
    provider_portal: Portal, julien: Any, clock: Any
) -> None:
    first, _ = await token_response(provider_portal, julien)
    clock.advance(seconds=120)
    r = await provider_portal.get(authorize_url(prompt="login"))
    assert r.headers["location"].startswith("/connexion?retour=") and "code=oui" in r.headers["location"]
    verifier, challenge = pkce()
    r = await provider_portal.get(authorize_url(prompt="login", challenge=challenge))
    r = await login_through(provider_portal, r, julien.identifier, NEW_PASSWORD)
    r = await provider_portal.get(r.headers["location"])
    code = query_of(r.headers["location"])["code"]
    token = (await exchange(provider_portal, code, verifier)).json()
    before = await verified_id_token(provider_portal, first["id_token"])
    after = await verified_id_token(provider_portal, token["id_token"])
    assert after["auth_time"] >= before["auth_time"] + 120


async def test_max_age_past_sends_the_person_to_log_in_again(provider_portal: Portal, julien: Any, clock: Any) -> None:
    await token_response(provider_portal, julien)
    clock.advance(seconds=300)
    r = await provider_portal.get(authorize_url(max_age="600"))
    assert "code=" in r.headers["location"]
    r = await provider_portal.get(authorize_url(max_age="60"))
    assert r.headers["location"].startswith("/connexion?retour=")
    r = await provider_portal.get(authorize_url(max_age="60", prompt="none"))
    assert query_of(r.headers["location"])["error"] == "login_required"


async def test_third_party_asks_consent_in_french_and_private_key_jwt_works(
    provider_portal: Portal, julien: Any
) -> None:
    verifier, challenge = pkce()
    url = authorize_url(PARTNER, PARTNER_CB, challenge=challenge, scope="openid profile nir")
    r = await provider_portal.get(url)
    r = await login_through(provider_portal, r, julien.identifier, NEW_PASSWORD)
    page = await provider_portal.get(r.headers["location"])
    assert page.status_code == 200 and "Autoriser « Partenaire social »" in page.text
    assert "votre numéro de Sécurité Sociale" in page.text and "vos nom, prénom et date de naissance" in page.text
    retour = page.text.split('name="retour" value="')[1].split('"')[0].replace("&amp;", "&")
    refused = await provider_portal.post("/oidc/consentement", {"retour": retour, "action": "refuser"})
    assert query_of(refused.headers["location"])["error"] == "access_denied"
    r = await provider_portal.post("/oidc/consentement", {"retour": retour, "action": "accepter"})
    r = await provider_portal.get(r.headers["location"])
    code = query_of(r.headers["location"])["code"]
    now = int(provider_portal.services.now().timestamp())
    token = await exchange(
        provider_portal,
        code,
        verifier,
        client_id=PARTNER,
        secret=None,
        redirect_uri=PARTNER_CB,
        extra=partner_assertion(now=now),
    )
    assert token.status_code == 200, token.text
    info = (
        await provider_portal.client.get(
            "/oidc/userinfo", headers={"authorization": f"Bearer {token.json()['access_token']}"}
        )
    ).json()
    assert info["nir"] == julien.identifier and "email" not in info
    # consent given once: the next request goes straight through
    r = await provider_portal.get(authorize_url(PARTNER, PARTNER_CB, scope="openid profile nir"))
    assert "code=" in r.headers["location"]


async def test_discovery_describes_what_the_provider_does(provider_portal: Portal) -> None:
    doc = (await provider_portal.client.get("/.well-known/openid-configuration")).json()
    assert doc["issuer"] == ISSUER and doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["response_types_supported"] == ["code"] and doc["jwks_uri"] == f"{ISSUER}/oidc/jwks"
    assert set(doc["token_endpoint_auth_methods_supported"]) == {"client_secret_basic", "private_key_jwt", "none"}


async def test_rp_initiated_logout_returns_only_to_a_registered_address(provider_portal: Portal, julien: Any) -> None:
    tokens, _ = await token_response(provider_portal, julien)
    bad = await provider_portal.get(
        "/oidc/deconnexion?"
        + __import__("urllib.parse").parse.urlencode(
            {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": "https://evil.test/"}
        )
    )
    assert bad.status_code == 400
    page = await provider_portal.get(
        "/oidc/deconnexion?"
        + __import__("urllib.parse").parse.urlencode(
            {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": ATTESTATIONS_BYE, "state": "s1"}
        )
    )
    assert page.status_code == 200 and "Me déconnecter" in page.text
    r = await provider_portal.post(
        "/oidc/deconnexion", {"target": ATTESTATIONS_BYE, "client_id": ATTESTATIONS, "state": "s1"}
    )
    assert r.status_code == 303 and r.headers["location"] == ATTESTATIONS_BYE + "?state=s1"
    bearer = {"authorization": f"Bearer {tokens['access_token']}"}
    assert (await provider_portal.client.get("/oidc/userinfo", headers=bearer)).status_code == 401
    assert (await provider_portal.get("/espace-prive")).headers["location"].startswith("/connexion")


async def test_every_provider_event_is_audited(provider_portal: Portal, julien: Any) -> None:
    from guichet.core.events import EVENT_KINDS

    tokens, code = await token_response(provider_portal, julien)
    await exchange(provider_portal, code, "x" * 43)  # a replay: refused, and the grant revoked
    r = await provider_portal.get(authorize_url(PARTNER, PARTNER_CB))
    page = (
        await provider_portal.get(r.headers["location"])
        if r.status_code == 303 and r.headers["location"].startswith("/oidc")
        else r
    )
    retour = page.text.split('name="retour" value="')[1].split('"')[0].replace("&amp;", "&")
    await provider_portal.post("/oidc/consentement", {"retour": retour, "action": "refuser"})
    await provider_portal.post("/oidc/consentement", {"retour": retour, "action": "accepter"})
    await logout(provider_portal)
    stored = {kind for kind, _ in await audit_kinds(provider_portal)}
    assert stored == {kind for kind in EVENT_KINDS if kind.startswith("oidc.")}
    t = provider_portal.services.database.t.AuditLog
    details = " ".join(row["details"] for row in await t.select(t.details).run())
    assert code not in details and tokens["access_token"] not in details and SECRET not in details


# --- forward auth (nginx auth_request; the real nginx is in tests/ops/test_forward_auth.py) ------------


async def test_forward_auth_needs_a_complete_login_and_refuses_off_site_returns(
    provider_portal: Portal, julien: Any
) -> None:
    r = await provider_portal.client.get("/auth/verifier", headers={"x-original-uri": "/attestations/?a=1"})
    assert r.status_code == 401 and r.headers["location"] == f"{ISSUER}/connexion?retour=%2Fattestations%2F%3Fa%3D1"
    for off_site in ("https://evil.test/", "//evil.test/", "/\\evil.test"):
        r = await provider_portal.client.get("/auth/verifier", headers={"x-original-uri": off_site})
        assert r.status_code == 401 and r.headers["location"] == f"{ISSUER}/connexion"
    # the password alone (the code not typed yet) opens nothing
    await provider_portal.get("/connexion")
    r = await provider_portal.post("/connexion", {"identifier": julien.identifier, "password": NEW_PASSWORD})
    assert r.headers["location"] == "/connexion/code"
    assert (await provider_portal.client.get("/auth/verifier")).status_code == 401
    await provider_portal.get("/connexion/code")
    await provider_portal.post("/connexion/code", {"code": await provider_portal.last_code("login_code")})
    r = await provider_portal.client.get("/auth/verifier")
    assert r.status_code == 200 and r.headers["x-guichet-niveau"] == "urn:guichet:acr:code"
    assert r.headers["x-guichet-nom"] == "LEFEBVRE" and r.headers["x-guichet-prenom"] == "Julien"
    claims = await verified_id_token(provider_portal, r.headers["x-guichet-jeton"])
    assert claims["sub"] == r.headers["x-guichet-sujet"] and claims["aud"] == "guichet-forward-auth"
    await logout(provider_portal)
    assert (await provider_portal.client.get("/auth/verifier")).status_code == 401


async def test_forward_auth_refuses_a_session_revoked_elsewhere_whatever_it_signed_before(
    provider_portal: Portal, julien: Any, portal_factory: Callable[..., Any]
) -> None:
    """A stolen session cookie: the person changes the password from another browser. The token
    forward auth keeps for reuse is never handed out without the session and the account being
    checked again."""
    await login(provider_portal, julien.identifier, NEW_PASSWORD)
    first = await provider_portal.client.get("/auth/verifier")
    assert first.status_code == 200
    own = await portal_factory(provider_portal.services.config)
    await login(own, julien.identifier, NEW_PASSWORD)
    await own.get("/mon-compte/mot-de-passe")
    changed = await own.post(
        "/mon-compte/mot-de-passe",
        {
            "current_password": NEW_PASSWORD,
            "new_password": "Autre-Galet-58-Brume!",
            "confirm_password": "Autre-Galet-58-Brume!",
        },
    )
    assert changed.status_code in (200, 303), changed.text[-400:]
    stolen = await provider_portal.client.get("/auth/verifier")
    assert stolen.status_code == 401 and "x-guichet-jeton" not in stolen.headers
    assert (await own.client.get("/auth/verifier")).status_code == 200


async def test_forward_auth_hands_out_a_token_again_only_while_half_its_life_is_left(
    provider_portal: Portal, julien: Any, clock: Any
) -> None:
    """One signature per person and login every half lifetime, not one per page view; a token is
    never handed out with less than half its life left, nor dated after now (a clock moved back)."""
    lifetime = provider_portal.services.config.oidc.forward_auth_token_seconds
    await login(provider_portal, julien.identifier, NEW_PASSWORD)

    async def token() -> tuple[str, dict[str, Any]]:
        r = await provider_portal.client.get("/auth/verifier")
        assert r.status_code == 200
        claims = await verified_id_token(provider_portal, r.headers["x-guichet-jeton"])
        now = int(provider_portal.services.now().timestamp())
        assert claims["iat"] <= now and claims["exp"] - now >= lifetime // 2, (claims, now)
        assert claims["exp"] == claims["iat"] + lifetime
        return r.headers["x-guichet-jeton"], claims

    first, claims = await token()
    clock.advance(seconds=lifetime // 2 - 1)
    assert (await token())[0] == first  # the same page views' token, signed once
    clock.advance(seconds=2)
    second, later = await token()
    assert second != first and later["iat"] > claims["iat"] and later["sub"] == claims["sub"]
    clock.advance(seconds=-120)
    third, earlier = await token()  # the clock moved back: signed anew, dated now
    assert third != second and earlier["iat"] < later["iat"]


async def test_forward_auth_keeps_only_the_tokens_it_may_still_hand_out(provider_portal: Portal) -> None:
    """Its memory is the last half lifetime's logins, not every person ever checked."""
    from guichet.web.oidc.service_calls import SignedTokens

    provider = provider_portal.app.state.oidc
    tokens = SignedTokens(60)
    first = [await tokens.token(provider, {"sub": f"personne-{n}"}, 1_000) for n in range(3)]
    assert len(tokens) == 3 and len(set(first)) == 3
    assert await tokens.token(provider, {"sub": "personne-0"}, 1_030) == first[0]
    await tokens.token(provider, {"sub": "personne-3"}, 1_031)
    assert len(tokens) == 1  # the three signed at 1 000 can no longer be handed out: gone


async def test_forward_auth_keeps_the_session_alive_while_the_services_are_browsed(
    provider_portal: Portal, julien: Any, clock: Any
) -> None:
    """Browsing a caisse's service is being active: each check saves the idle clock (at most once a
    minute), so the session outlives its idle timeout; left alone, it ends and says so."""
    idle = provider_portal.services.config.sessions.idle_minutes
    await login(provider_portal, julien.identifier, NEW_PASSWORD)
    for _ in range(3):
        clock.advance(minutes=idle - 1)
        assert (await provider_portal.client.get("/auth/verifier")).status_code == 200
    clock.advance(minutes=idle + 1)
    r = await provider_portal.client.get("/auth/verifier", headers={"x-original-uri": "/attestations/"})
    assert r.status_code == 401 and r.headers["location"] == f"{ISSUER}/connexion?retour=%2Fattestations%2F"
    t = provider_portal.services.database.t.AuditLog
    rows = await t.select(t.details).where(t.kind == "session.expired").run()
    assert [json.loads(row["details"])["timeout"] for row in rows] == ["idle"]


async def test_forward_auth_answers_a_check_and_nothing_else(provider_portal: Portal, julien: Any) -> None:
    """Only GET and HEAD; every answer is uncacheable and carries the request id and the usual headers."""
    from guichet.web import metrics

    def counted() -> float:
        value = metrics.REGISTRY.get_sample_value(
            "guichet_http_requests_total", {"method": "GET", "route": "/auth/verifier", "status": "200"}
        )
        return value or 0.0

    await login(provider_portal, julien.identifier, NEW_PASSWORD)
    before = counted()
    for method in ("POST", "PUT", "DELETE"):
        r = await provider_portal.client.request(method, "/auth/verifier")
        assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD" and not r.content
    head = await provider_portal.client.head("/auth/verifier")
    assert head.status_code == 200 and head.headers["x-guichet-sujet"]
    r = await provider_portal.client.get("/auth/verifier", headers={"x-request-id": "verif-42"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "verif-42"
    assert r.headers["cache-control"] == "no-store" and r.headers["x-content-type-options"] == "nosniff"
    assert r.content == b"" and "set-cookie" not in r.headers  # an idle clock unmoved: nothing to save
    assert counted() == before + 1  # under its own route in the metrics


@pytest.mark.parametrize("failure", ["hung", "down"])
async def test_forward_auth_with_its_session_store_out_is_a_503_never_a_pass(
    portal_factory: Callable[..., Any],
    make_config: Callable[..., CaisseConfig],
    db_url: str,
    tmp_path: Path,
    failure: str,
) -> None:
    from guichet.plugins.registry_tables import importer as registry_import
    from tests.ops.servers import RedisServer

    server = RedisServer().start()
    try:
        # a hung Redis is found out after 1 s, not the default 5
        extra = oidc_extra(tmp_path) + f'\n[redis]\nurl = "{server.url}"\ntimeout_seconds = 1\n'
        config = make_config(
            database_url=db_url,
            base=portal_config_text(extra).replace("[sessions]\n", '[sessions]\nstore = "redis"\n', 1),
        )
        portal = await portal_factory(config)
        await registry_import.generate_demo_registry(portal.services.database, count=0, seed=1)
        await activate(portal, registry_import.DEMO_PERSONS["particulier_vitale"])
        assert (await portal.client.get("/auth/verifier")).status_code == 200
        server.pause() if failure == "hung" else server.kill()
        r = await portal.client.get("/auth/verifier")
        assert r.status_code == 503 and r.headers["retry-after"].isdigit() and "x-guichet-jeton" not in r.headers
        if failure == "hung":
            server.resume()
            assert (await portal.client.get("/auth/verifier")).status_code == 200
    finally:
        server.close()


async def test_forward_auth_signs_with_the_new_key_once_another_process_rotated(
    provider_portal: Portal, julien: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The active key is read again after a while, not on every page view: meanwhile the retired key
    still signs, and what it signs still verifies (it stays published); a rotation in this process
    takes effect at once."""
    from joserfc.jws import extract_compact

    from guichet.web.oidc import provider as provider_module
    from guichet.web.oidc.provider import Provider

    def kid_of(token: str) -> str:
        return str(extract_compact(token.encode()).protected["kid"])

    await login(provider_portal, julien.identifier, NEW_PASSWORD)
    first = (await provider_portal.client.get("/auth/verifier")).headers["x-guichet-jeton"]
    await Provider(provider_portal.services).rotate_keys()  # `guichet keys rotate`, another process
    still = (await provider_portal.client.get("/auth/verifier")).headers["x-guichet-jeton"]
    assert kid_of(still) == kid_of(first)
    assert (await verified_id_token(provider_portal, still))["aud"] == "guichet-forward-auth"
    later = provider_module.time.monotonic() + provider_module.ACTIVE_KEY_SECONDS + 1
    monkeypatch.setattr(provider_module.time, "monotonic", lambda: later)
    renewed = (await provider_portal.client.get("/auth/verifier")).headers["x-guichet-jeton"]
    assert kid_of(renewed) != kid_of(first)
    await provider_portal.app.state.oidc.rotate_keys()  # in this process: at once
    again = (await provider_portal.client.get("/auth/verifier")).headers["x-guichet-jeton"]
    assert kid_of(again) not in (kid_of(first), kid_of(renewed))
    assert (await verified_id_token(provider_portal, again))["aud"] == "guichet-forward-auth"


@pytest.fixture
def service() -> Any:
    """A service's back-channel logout address: an HTTP sink that records what it is posted."""
    from guichet.testing import HttpSink

    with HttpSink() as sink:
        yield sink


@pytest.fixture
def backchannel_config(
    make_config: Callable[..., CaisseConfig], db_url: str, tmp_path: Path, service: Any
) -> CaisseConfig:
    return make_config(
        database_url=db_url, base=portal_config_text(oidc_extra(tmp_path, backchannel=f"{service.url}/deconnexion"))
    )


async def registered_person(portal: Portal) -> Any:
    """Julien with a personal password (NEW_PASSWORD), logged out of ``portal``."""
    from guichet.plugins.registry_tables import importer as registry_import

    await registry_import.generate_demo_registry(portal.services.database, count=0, seed=1)
    person = registry_import.DEMO_PERSONS["particulier_vitale"]
    await activate(portal, person)
    await logout(portal)
    return person


async def told(service: Any) -> list[Any]:
    """What the service was posted, once something came (logout tokens go after the answer)."""
    import asyncio

    for _ in range(100):
        if service.requests:
            break
        await asyncio.sleep(0.05)
    return list(service.requests)


def logout_token_of(request: Any) -> str:
    from urllib.parse import unquote_plus

    body = request.body.decode()
    assert body.startswith("logout_token=")
    return unquote_plus(body.removeprefix("logout_token="))


async def test_back_channel_logout_tells_the_services_the_login_reached(
    portal_factory: Callable[..., Any], backchannel_config: CaisseConfig, service: Any
) -> None:
    portal = await portal_factory(backchannel_config)
    person = await registered_person(portal)
    assert service.requests == []  # a login that reached no service tells nobody
    tokens, _ = await token_response(portal, person)
    id_claims = await verified_id_token(portal, tokens["id_token"])
    await logout(portal)
    [request] = await told(service)
    assert request.method == "POST"
    token = logout_token_of(request)
    claims = await verified_id_token(portal, token)
    assert claims["sid"] == id_claims["sid"] and claims["sub"] == id_claims["sub"]
    assert claims["aud"] == ATTESTATIONS and "nonce" not in claims
    assert "http://schemas.openid.net/event/backchannel-logout" in claims["events"]
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["typ"] == "logout+jwt"


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    from guichet.web.oidc import routes

    monkeypatch.setattr(routes, "LOGOUT_RETRY_SECONDS", (0.05, 0.1, 0.2))


async def test_a_service_that_could_not_take_the_logout_is_told_again(
    portal_factory: Callable[..., Any], backchannel_config: CaisseConfig, service: Any, quick_retries: None
) -> None:
    """A service restarting when the person logs out (a 503, then no answer at all) still learns it:
    its own session of that person must not outlive the logout."""
    portal = await portal_factory(backchannel_config)
    person = await registered_person(portal)
    await token_response(portal, person)
    service.script.extend([(503, {}), (503, {}, "drop")])
    await logout(portal)
    for _ in range(100):
        if service.delivered:
            break
        await asyncio.sleep(0.05)
    assert [r.method for r in service.requests] == ["POST"] * 3
    assert len({logout_token_of(r) for r in service.requests}) == 1  # the same token each time
    assert service.delivered == service.requests[2:]


async def test_the_logout_answers_without_waiting_for_the_services(
    portal_factory: Callable[..., Any], backchannel_config: CaisseConfig, service: Any
) -> None:
    """The retries run in the process's back channel, not in the logout's request: the person has
    the answer while a service that could not take the token waits for its next try (2 s later)."""
    portal = await portal_factory(backchannel_config)
    person = await registered_person(portal)
    await token_response(portal, person)
    service.script.append((503, {}))
    await logout(portal)
    back_channel = portal.app.state.back_channel
    assert len(service.requests) <= 1 and back_channel._sending  # the retry is still to come
    await back_channel.close()


async def test_a_stopping_process_drops_what_is_left_to_tell_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    from guichet.testing import HttpSink
    from guichet.web.oidc.routes import BackChannel

    with HttpSink(always=(503, {})) as down, caplog.at_level(logging.WARNING, logger="guichet.oidc"):
        back_channel = BackChannel()
        await back_channel.send([(down.url, "jeton-secret-de-deconnexion")])
        for _ in range(100):
            if down.requests:
                break
            await asyncio.sleep(0.02)
        await back_channel.close()  # the app stops while the service waits for its second try
    assert len(down.requests) == 1
    assert f"back-channel logout to {down.url} dropped" in caplog.text and "jeton-secret" not in caplog.text


async def test_a_logout_token_a_service_refused_is_not_sent_again(quick_retries: None) -> None:
    from guichet.testing import HttpSink
    from guichet.web.oidc.routes import send_logout_tokens

    with HttpSink(script=[(400, {})]) as refusing:
        await send_logout_tokens([(refusing.url, "jeton-de-deconnexion")])  # every retry would be over
        assert len(refusing.requests) == 1


async def test_a_service_slow_to_answer_does_not_delay_the_others_logout(quick_retries: None) -> None:
    from guichet.testing import HttpSink
    from guichet.web.oidc.routes import send_logout_tokens

    with HttpSink(script=[(200, {}, 3)]) as slow, HttpSink() as quick:
        sending = asyncio.create_task(send_logout_tokens([(slow.url, "pour-le-lent"), (quick.url, "pour-le-rapide")]))
        for _ in range(40):
            if quick.delivered:
                break
            await asyncio.sleep(0.05)
        # told while the slow service, listed first, is still holding its answer
        assert [logout_token_of(r) for r in quick.delivered] == ["pour-le-rapide"] and not sending.done()
        await sending
        assert [logout_token_of(r) for r in slow.delivered] == ["pour-le-lent"]


async def test_a_service_that_never_answers_is_given_up_and_logged_without_its_token(
    quick_retries: None, caplog: pytest.LogCaptureFixture
) -> None:
    from guichet.testing import HttpSink
    from guichet.web.oidc.routes import LOGOUT_RETRY_SECONDS, send_logout_tokens

    with HttpSink(always=(503, {})) as down, caplog.at_level(logging.WARNING, logger="guichet.oidc"):
        await send_logout_tokens([(down.url, "jeton-secret-de-deconnexion")])
    assert len(down.requests) == len(LOGOUT_RETRY_SECONDS) + 1
    assert "given up" in caplog.text and down.url in caplog.text
    assert "jeton-secret" not in caplog.text


async def test_the_espace_prive_lists_the_caisse_s_services_and_when_they_were_used(
    provider_portal: Portal, julien: Any, clock: Any
) -> None:
    await token_response(provider_portal, julien)
    page = await provider_portal.get("/espace-prive")
    assert page.status_code == 200 and "<h2>Mes services</h2>" in page.text
    assert '<a href="https://attestations.test/">Mes attestations</a> : Vos attestations de droits' in page.text
    assert "Dernière utilisation le " in page.text
    assert "Partenaire social" not in page.text  # a third party is not one of the caisse's services


async def test_a_client_assertion_is_used_once(provider_portal: Portal, julien: Any) -> None:
    verifier, challenge = pkce()
    r = await provider_portal.get(authorize_url(PARTNER, PARTNER_CB, challenge=challenge))
    r = await login_through(provider_portal, r, julien.identifier, NEW_PASSWORD)
    page = await provider_portal.get(r.headers["location"])
    retour = page.text.split('name="retour" value="')[1].split('"')[0].replace("&amp;", "&")
    r = await provider_portal.post("/oidc/consentement", {"retour": retour, "action": "accepter"})
    code = query_of((await provider_portal.get(r.headers["location"])).headers["location"])["code"]
    assertion = partner_assertion(now=int(provider_portal.services.now().timestamp()))
    # an assertion caught on its way (a log, a proxy) and sent first: it authenticates once, and
    # the client's own copy is then refused
    first = await exchange(
        provider_portal,
        "un-autre-code",
        "v" * 43,
        client_id=PARTNER,
        secret=None,
        redirect_uri=PARTNER_CB,
        extra=assertion,
    )
    assert first.status_code == 400 and first.json()["error"] == "invalid_grant"
    again = await exchange(
        provider_portal, code, verifier, client_id=PARTNER, secret=None, redirect_uri=PARTNER_CB, extra=assertion
    )
    assert again.status_code == 401 and again.json()["error"] == "invalid_client"


async def test_housekeeping_drops_spent_grants_tokens_and_assertions(
    provider_portal: Portal, julien: Any, clock: Any
) -> None:
    from guichet.web.app import housekeep

    tokens, _ = await token_response(provider_portal, julien)
    bearer = {"authorization": f"Bearer {tokens['access_token']}"}
    database = provider_portal.services.database
    await housekeep(provider_portal.services, provider_portal.app.state.oidc)
    assert await database.t.OidcGrant.count().run() == 1  # alive: kept
    assert (await provider_portal.client.get("/oidc/userinfo", headers=bearer)).status_code == 200
    clock.advance(days=2)
    await housekeep(provider_portal.services, provider_portal.app.state.oidc)
    assert await database.t.OidcGrant.count().run() == 0
    assert await database.t.OidcToken.count().run() == 0


async def test_with_redis_sessions_the_flow_forward_auth_and_logout_hold(
    make_config: Callable[..., CaisseConfig], db_url: str, tmp_path: Path, portal_factory: Callable[..., Any]
) -> None:
    from guichet.plugins.registry_tables import importer as registry_import
    from tests.conftest import redis_url

    text = portal_config_text(oidc_extra(tmp_path) + f'\n[redis]\nurl = "{redis_url()}"\n')
    config = make_config(database_url=db_url, base=text.replace("[sessions]\n", '[sessions]\nstore = "redis"\n', 1))
    portal = await portal_factory(config)
    await registry_import.generate_demo_registry(portal.services.database, count=0, seed=1)
    person = registry_import.DEMO_PERSONS["particulier_vitale"]
    await activate(portal, person)
    await logout(portal)
    tokens, _ = await token_response(portal, person)
    assert (await portal.client.get("/auth/verifier")).status_code == 200
    bearer = {"authorization": f"Bearer {tokens['access_token']}"}
    assert (await portal.client.get("/oidc/userinfo", headers=bearer)).status_code == 200
    await logout(portal)
    assert (await portal.client.get("/auth/verifier")).status_code == 401
    assert (await portal.client.get("/oidc/userinfo", headers=bearer)).status_code == 401


async def test_a_first_login_through_a_service_personalises_and_confirms_before_returning(
    provider_portal: Portal,
) -> None:
    from guichet.plugins.registry_tables import importer as registry_import
    from tests.flows.helpers import personalise, register, temporary_password

    await registry_import.generate_demo_registry(provider_portal.services.database, count=0, seed=1)
    person = registry_import.DEMO_PERSONS["particulier_vitale"]
    assert await register(provider_portal, person) == "termine"
    temporary = await temporary_password(provider_portal)
    verifier, challenge = pkce()
    r = await provider_portal.get(authorize_url(challenge=challenge))
    r = await login_through(provider_portal, r, person.identifier, temporary)
    assert r.headers["location"] == "/changement-mot-de-passe"  # forced first, whatever the service wants
    await personalise(provider_portal)
    r = await provider_portal.get(authorize_url(challenge=challenge, prompt="none"))
    assert query_of(r.headers["location"])["error"] == "interaction_required"  # contacts still to confirm
    await provider_portal.get("/confirmation-coordonnees")
    r = await provider_portal.post("/confirmation-coordonnees", {"action": "confirmer"})
    assert r.headers["location"] == "/espace-prive"
    r = await provider_portal.get("/espace-prive")
    assert r.status_code == 303 and r.headers["location"].startswith("/oidc/autoriser?")
    r = await provider_portal.get(r.headers["location"])
    code = query_of(r.headers["location"])["code"]
    token = await exchange(provider_portal, code, verifier)
    assert token.status_code == 200, token.text
    # the waiting service was served once: the espace privé is the espace privé again
    assert (await provider_portal.get("/espace-prive")).status_code == 200


async def test_a_password_change_ends_the_other_logins_at_the_services_too(
    portal_factory: Callable[..., Any], backchannel_config: CaisseConfig, service: Any
) -> None:
    """Someone with a stolen session got a service's access token; the owner changes the password
    from their own session. The thief's session ends, and so does what it reached: its access token
    answers nothing more and the service is told on its back-channel. The owner's own login keeps
    its services."""
    thief = await portal_factory(backchannel_config)
    person = await registered_person(thief)
    stolen, _ = await token_response(thief, person)
    stolen_claims = await verified_id_token(thief, stolen["id_token"])
    owner = await portal_factory(backchannel_config)
    own, _ = await token_response(owner, person)
    stolen_bearer = {"authorization": f"Bearer {stolen['access_token']}"}
    own_bearer = {"authorization": f"Bearer {own['access_token']}"}
    assert (await owner.client.get("/oidc/userinfo", headers=stolen_bearer)).status_code == 200
    await owner.get("/mon-compte/mot-de-passe")
    r = await owner.post(
        "/mon-compte/mot-de-passe",
        {"current_password": NEW_PASSWORD, "new_password": "Autre-Mot-2026!x", "confirm_password": "Autre-Mot-2026!x"},
    )
    assert r.headers["location"] == "/mot-de-passe-modifie"
    r = await owner.client.get("/oidc/userinfo", headers=stolen_bearer)
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"
    assert (await owner.client.get("/oidc/userinfo", headers=own_bearer)).status_code == 200
    requests = await told(service)
    assert len(requests) == 1, "the service of the ended login was not told"
    claims = await verified_id_token(owner, logout_token_of(requests[0]))
    assert claims["sid"] == stolen_claims["sid"] and claims["sub"] == stolen_claims["sub"]
    assert (await thief.get("/espace-prive")).headers["location"] == "/connexion"


async def test_closing_the_account_ends_every_login_at_the_services(
    portal_factory: Callable[..., Any], backchannel_config: CaisseConfig, service: Any
) -> None:
    """The espace privé closed: every grant of the account is revoked, the one of the closing login
    included, and each service that asked is told on its back-channel."""
    portal = await portal_factory(backchannel_config)
    person = await registered_person(portal)
    await token_response(portal, person)
    await portal.get("/mon-compte/fermeture")
    closed = await portal.post("/mon-compte/fermeture", {"current_password": NEW_PASSWORD})
    assert closed.headers["location"] == "/espace-ferme"
    grants = portal.services.database.t.OidcGrant
    assert not await grants.count().where(grants.revoked_at.is_null())
    [request] = await told(service)
    assert logout_token_of(request)


async def test_a_forgotten_password_reset_ends_every_login_at_the_services(
    portal_factory: Callable[..., Any], backchannel_config: CaisseConfig, service: Any
) -> None:
    """The owner of a taken-over account gets a temporary password through "mot de passe oublié":
    the taker's sessions end, and so does what they reached at the services (access token refused,
    the service told on its back-channel), before any personalisation."""
    taker = await portal_factory(backchannel_config)
    person = await registered_person(taker)
    stolen, _ = await token_response(taker, person)
    bearer = {"authorization": f"Bearer {stolen['access_token']}"}
    owner = await portal_factory(backchannel_config)
    await owner.get("/mot-de-passe-oublie/identifiant")
    await owner.post("/mot-de-passe-oublie/identifiant", {"identifier": person.nir_with_key})
    r = await owner.post("/mot-de-passe-oublie/canal", {"channel": "email"})
    assert r.headers["location"] == "/mot-de-passe-oublie/code"
    [code_message] = await owner.outbox("recovery_code")
    r = await owner.post("/mot-de-passe-oublie/code", {"code": code_message["payload"]["code"]})
    assert r.headers["location"] == "/mot-de-passe-oublie/confirmation"
    r = await owner.client.get("/oidc/userinfo", headers=bearer)
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"
    [request] = await told(service)
    assert logout_token_of(request)
