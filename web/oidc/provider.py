"""The OpenID Connect provider's rules: clients, signing keys, grants, tokens and claims.

No HTTP object comes in here (web/oidc/routes.py decodes requests). Every JOSE operation (keys,
signatures, JWT encoding and checking) is joserfc's; this module only decides what goes in them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import functools
import hashlib
import hmac
import json
import logging
import re
import time
from typing import Any
from urllib.parse import unquote, urlsplit

import msgspec
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey, import_key
from joserfc.jws import extract_compact
from joserfc.jwt import JWTClaimsRegistry
from piccolo.table import Table

from guichet.core.availability import is_store_failure
from guichet.core.clock import PARIS
from guichet.core.config import OidcClientConfig, check_client
from guichet.core.errors import ConfigError
from guichet.core.flows.common import CLOSED, account_by_id
from guichet.core.keys import new_token, token_digest
from guichet.core.services import Services
from guichet.core.sessions import SessionData
from guichet.core.statements import POINT_READ, fetch

log = logging.getLogger("guichet.oidc")
ALGORITHMS = ("RS256", "ES256")
SEAL_PURPOSE = "oidc-key"
# What a second factor meant for this login, in the ID token's acr: a code sent and typed now, or a
# browser that proved a code earlier (within security.trusted_browser_days) and so skipped it
ACR_CODE = "urn:guichet:acr:code"
ACR_TRUSTED_BROWSER = "urn:guichet:acr:navigateur-de-confiance"
# a second factor proven now and bound to the caisse's origin (a passkey): a look-alike site could not relay it
ACR_PHISHING_RESISTANT = "urn:guichet:acr:anti-hameconnage"
ACR_VALUES = (ACR_PHISHING_RESISTANT, ACR_CODE, ACR_TRUSTED_BROWSER)


def acr_of(data: SessionData) -> str:
    """What the login of this session proved, as an ``acr`` value."""
    if data.auth_via == "trusted_browser" or "mfa" not in amr_of(data):
        return ACR_TRUSTED_BROWSER
    return ACR_PHISHING_RESISTANT if data.phishing_resistant else ACR_CODE


def amr_of(data: SessionData) -> list[str]:
    """The login's ``amr`` (RFC 8176): what core recorded, or, for a session older than that record, what
    its second factor meant then."""
    if data.amr:
        return list(data.amr)
    return ["pwd", "otp", "mfa"] if data.auth_via == "code" else ["pwd"]


SCOPE_CLAIMS = {
    "openid": ("sub",),
    "profile": ("family_name", "given_name", "birthdate"),
    "email": ("email", "email_verified"),
    "phone": ("phone_number", "phone_number_verified"),
    "nir": ("nir",),  # the caisse's own scope: only to clients the config allows
}
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43,128}$")
_VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")
CLOCK_LEEWAY = 30


class OidcError(Exception):
    """A refusal in OAuth's words (``error`` code and a description that shows nothing secret)."""

    def __init__(self, error: str, description: str, *, status: int = 400) -> None:
        super().__init__(error)
        self.error = error
        self.description = description
        self.status = status


class Client(msgspec.Struct, frozen=True, kw_only=True):
    config: OidcClientConfig
    secret: str | None
    jwks: Any  # joserfc KeySet for private_key_jwt
    sector: str

    @property
    def id(self) -> str:
        return self.config.id


class AuthRequest(msgspec.Struct, frozen=True, kw_only=True):
    """An authorization request that passed every check."""

    client_id: str
    redirect_uri: str
    scope: tuple[str, ...]
    state: str
    nonce: str
    code_challenge: str
    prompt: tuple[str, ...]
    max_age: int | None
    acr_values: tuple[str, ...]


def load_clients(services: Services, declared: list[OidcClientConfig] | None = None) -> dict[str, Client]:
    """Clients (the config's by default), with their secrets and keys resolved at start-up."""
    clients = {}
    for client in services.config.oidc.clients if declared is None else declared:
        keys = None
        if client.jwks_file:
            path = services.config.path(client.jwks_file)
            try:
                keys = KeySet.import_key_set(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, JoseError) as exc:
                raise ConfigError(
                    f"cannot read the client's keys {path}: {type(exc).__name__}",
                    path=services.config.source,
                    key="$.oidc.clients.jwks_file",
                ) from None
        sector = client.sector or (urlsplit(client.redirect_uris[0]).hostname or "")
        clients[client.id] = Client(
            config=client,
            secret=client.secret.resolve() if client.secret else None,
            jwks=keys,
            sector="" if client.subject == "public" else sector,
        )
    return clients


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def s256(verifier: str) -> str:
    """RFC 7636's S256 transformation of a code verifier."""
    return _b64url(hashlib.sha256(verifier.encode()).digest())


def half_hash(token: str) -> str:
    """OIDC's at_hash for RS256 and ES256: the left half of the SHA-256, base64url."""
    return _b64url(hashlib.sha256(token.encode()).digest()[:16])


# how long a process signs with the key it last read as active before reading again (signing_key)
ACTIVE_KEY_SECONDS = 30.0
# how many (account, sector) subjects a process keeps in memory (a few MiB at most)
SUBJECTS_KEPT = 100_000


@functools.cache
def _live_grant_of_token(tokens: type[Table], grants: type[Table]) -> str:
    """userinfo's one read (on every call of a service): the grant of an access token, both unrevoked,
    as SQL written once (core/statements.py says why); the token's expiry is judged by the caller.
    A point read: one token by its unique digest, its grant by primary key."""
    token, grant = tokens._meta.tablename, grants._meta.tablename
    return (
        f'{POINT_READ}SELECT g."client_id" AS "client_id", g."account_id" AS "account_id", g."scope" AS "scope", '
        f't."expires_at" AS "expires_at" FROM "{token}" t JOIN "{grant}" g ON g."id" = t."grant_id" '
        f'WHERE t."token_hash" = {{}} AND t."revoked_at" IS NULL AND g."revoked_at" IS NULL LIMIT 1'
    )


class Provider:
    """One caisse's provider, built with the app."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.config = services.config.oidc
        self.issuer = (self.config.issuer or services.config.server.public_url).rstrip("/")
        self.clients = load_clients(services)
        self._private: dict[str, Any] = {}  # kid -> joserfc key, so a key is unsealed once per process
        self._active: dict[str, tuple[float, str]] = {}  # alg -> (when read, kid): see signing_key
        self._subjects: dict[tuple[int, str], str] = {}  # (account id, sector) -> subject: see subject

    async def load_stored_clients(self) -> list[str]:
        """Add the services of ``guichet clients add`` (the config's win a clash); the ids added."""
        t = self.services.database.t.OidcClient
        stored = []
        for row in await t.select(t.client_id, t.settings).order_by(t.id).run():
            if row["client_id"] in self.clients:
                log.error("the stored client %s is also in the config: the config's is used", row["client_id"])
                continue
            try:
                client = msgspec.json.decode(row["settings"].encode(), type=OidcClientConfig)
                check_client(
                    client,
                    f"guichet_oidc_client[{row['client_id']}]",
                    production=self.services.config.server.mode == "production",
                )
                self.clients.update(load_clients(self.services, [client]))
            except (msgspec.ValidationError, ValueError, ConfigError) as exc:
                log.error("the stored client %s is not used: %s", row["client_id"], exc)
                continue
            stored.append(row["client_id"])
        return stored

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/oidc/jeton"

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/oidc/autoriser",
            "token_endpoint": self.token_endpoint,
            "userinfo_endpoint": f"{self.issuer}/oidc/userinfo",
            "jwks_uri": f"{self.issuer}/oidc/jwks",
            "end_session_endpoint": f"{self.issuer}/oidc/deconnexion",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["pairwise", "public"],
            "id_token_signing_alg_values_supported": list(ALGORITHMS),
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt", "none"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256", "PS256"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": list(SCOPE_CLAIMS),
            "claims_supported": sorted(
                {c for claims in SCOPE_CLAIMS.values() for c in claims}
                | {"iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "sid"}
            ),
            "acr_values_supported": list(ACR_VALUES),
            "prompt_values_supported": ["none", "login", "consent"],
            "backchannel_logout_supported": True,
            "backchannel_logout_session_supported": True,
            "claims_parameter_supported": False,
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
            "require_request_uri_registration": True,
            "ui_locales_supported": ["fr"],
        }

    # --- signing keys ---------------------------------------------------------------------------------

    async def ensure_keys(self) -> None:
        """One active key per algorithm: made (and sealed) on first use."""
        t = self.services.database.t.OidcKey
        rows = await t.select(t.alg).where(t.retired_at.is_null()).run()
        have = {row["alg"] for row in rows}
        for alg in ALGORITHMS:
            if alg not in have:
                await self._create_key(alg)

    async def _create_key(self, alg: str) -> None:
        key = await asyncio.to_thread(_generate, alg)
        t = self.services.database.t.OidcKey
        private = json.dumps(key.as_dict(private=True)).encode()
        public = json.dumps({**key.as_dict(private=False), "alg": alg, "use": "sig"})
        try:
            await t.insert(
                t(
                    kid=key.kid,
                    alg=alg,
                    sealed=self.services.keys.seal(private, SEAL_PURPOSE),
                    public_jwk=public,
                    created_at=self.services.now(),
                )
            ).run()
        except Exception as exc:
            if is_store_failure(exc) or "unique" not in f"{type(exc).__name__} {exc}".lower():
                raise
            # another worker made this algorithm's key at the same time (one active key per algorithm)

    async def rotate_keys(self) -> list[str]:
        """New signing keys; the old ones stop signing and stay published until their tokens expire."""
        t = self.services.database.t.OidcKey
        now = self.services.now()
        keep = dt.timedelta(
            seconds=max(
                self.config.id_token_seconds, self.config.access_token_seconds, self.config.forward_auth_token_seconds
            )
            + 300
        )
        await t.update({t.retired_at: now, t.drop_after: now + keep}).where(t.retired_at.is_null()).run()
        self._active.clear()  # this process signs with the new keys at once
        await self.ensure_keys()
        rows = await t.select(t.kid).where(t.retired_at.is_null()).run()
        return [row["kid"] for row in rows]

    async def jwks(self) -> dict[str, Any]:
        t = self.services.database.t.OidcKey
        now = self.services.now()
        query = t.select(t.public_jwk).where(t.drop_after.is_null() | (t.drop_after > now)).order_by(t.id)
        rows = await query.run()
        if not rows:  # a new database (the start-up could not make them): made now, as signing would
            await self.ensure_keys()
            rows = await query.run()
        return {"keys": [json.loads(row["public_jwk"]) for row in rows]}

    async def signing_key(self, alg: str) -> Any:
        """The active key of ``alg``. Which one it is, is read again after ``ACTIVE_KEY_SECONDS``:
        forward auth signs on every page view of a caisse's services, and a key retired by ``guichet
        keys rotate`` in another process stays published far longer than a token signed meanwhile
        lives (``rotate_keys``' ``drop_after``)."""
        known = self._active.get(alg)
        if known is not None and time.monotonic() - known[0] < ACTIVE_KEY_SECONDS and known[1] in self._private:
            return self._private[known[1]]
        t = self.services.database.t.OidcKey
        rows = await t.select(t.kid, t.sealed).where(t.retired_at.is_null() & (t.alg == alg)).limit(1).run()
        if not rows:
            await self.ensure_keys()
            rows = await t.select(t.kid, t.sealed).where(t.retired_at.is_null() & (t.alg == alg)).limit(1).run()
        kid = rows[0]["kid"]
        if kid not in self._private:
            self._private[kid] = import_key(json.loads(self.services.keys.unseal(rows[0]["sealed"], SEAL_PURPOSE)))
        self._active[alg] = (time.monotonic(), kid)
        return self._private[kid]

    async def sign(self, alg: str, claims: dict[str, Any], *, typ: str = "JWT") -> str:
        key = await self.signing_key(alg)
        return jwt.encode({"alg": alg, "kid": key.kid, "typ": typ}, claims, key, algorithms=[alg])

    # --- the authorization request ----------------------------------------------------------------------

    def client_and_redirect(self, params: dict[str, str]) -> tuple[Client, str]:
        """The client and its redirect URI, compared exactly; anything wrong here is shown to the
        person, never sent to an address nobody registered."""
        client = self.clients.get(params.get("client_id", ""))
        if client is None:
            raise OidcError("invalid_client", "Ce service n'est pas connu de votre caisse.")
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in client.config.redirect_uris:
            raise OidcError("invalid_request", "L'adresse de retour demandée par ce service n'est pas enregistrée.")
        return client, redirect_uri

    def check_request(self, client: Client, redirect_uri: str, params: dict[str, str]) -> AuthRequest:
        """The rest of the request; an OidcError here goes back to the client's redirect URI."""
        if "request" in params:
            raise OidcError("request_not_supported", "request objects are not supported")
        if "request_uri" in params:
            raise OidcError("request_uri_not_supported", "request_uri is not supported")
        if params.get("response_type") != "code":
            raise OidcError("unsupported_response_type", "only the authorization code flow (response_type=code)")
        if params.get("response_mode", "query") != "query":
            raise OidcError("invalid_request", "only response_mode=query")
        asked = params.get("scope", "").split()
        if "openid" not in asked:
            raise OidcError("invalid_scope", "the openid scope is required")
        # scopes the client may not have (the NIR for most) are simply not granted
        scope = tuple(s for s in dict.fromkeys(asked) if s in SCOPE_CLAIMS and s in client.config.scopes)
        method = params.get("code_challenge_method", "")
        challenge = params.get("code_challenge", "")
        if not challenge:
            raise OidcError("invalid_request", "PKCE is required: code_challenge with code_challenge_method=S256")
        if method != "S256":
            raise OidcError("invalid_request", "only code_challenge_method=S256 is accepted")
        if not _CHALLENGE.match(challenge):
            raise OidcError("invalid_request", "code_challenge is not an S256 challenge")
        prompt = tuple(params.get("prompt", "").split())
        if "none" in prompt and len(prompt) > 1:
            raise OidcError("invalid_request", "prompt=none cannot be combined")
        max_age: int | None = None
        if params.get("max_age", "") != "":
            raw = params["max_age"]
            if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
                raise OidcError("invalid_request", "max_age is a number of seconds")
            max_age = int(raw)
        nonce = params.get("nonce", "")
        state = params.get("state", "")
        if len(nonce) > 512 or len(state) > 512:
            raise OidcError("invalid_request", "nonce and state are limited to 512 characters")
        return AuthRequest(
            client_id=client.id,
            redirect_uri=redirect_uri,
            scope=scope,
            state=state,
            nonce=nonce,
            code_challenge=challenge,
            prompt=prompt,
            max_age=max_age,
            acr_values=tuple(params.get("acr_values", "").split()),
        )

    async def has_consent(self, account_id: int, client: Client, scope: tuple[str, ...]) -> bool:
        if not client.config.third_party:
            return True
        t = self.services.database.t.OidcConsent
        rows = await t.select(t.scope).where((t.account_id == account_id) & (t.client_id == client.id)).run()
        granted = {s for row in rows for s in row["scope"].split()}
        return set(scope) <= granted

    async def record_consent(self, account_id: int, client: Client, scope: tuple[str, ...]) -> None:
        t = self.services.database.t.OidcConsent
        async with self.services.database.transaction():
            await t.delete().where((t.account_id == account_id) & (t.client_id == client.id)).run()
            await t.insert(
                t(account_id=account_id, client_id=client.id, scope=" ".join(scope), created_at=self.services.now())
            ).run()
            await self.services.audit("oidc.consent", account_id=account_id, client_id=client.id, scope=" ".join(scope))

    async def issue_code(
        self, request: AuthRequest, *, account_id: int, auth_ms: int, amr: list[str], acr: str, login_ref: str
    ) -> str:
        code = new_token()
        now = self.services.now()
        t = self.services.database.t.OidcGrant
        async with self.services.database.transaction(brief=True):  # one insert and its audit
            await t.insert(
                t(
                    code_hash=token_digest(code),
                    client_id=request.client_id,
                    account_id=account_id,
                    login_ref=token_digest(login_ref),
                    redirect_uri=request.redirect_uri,
                    scope=" ".join(request.scope),
                    nonce=request.nonce,
                    code_challenge=request.code_challenge,
                    auth_time=dt.datetime.fromtimestamp(auth_ms / 1000, dt.UTC),
                    amr=" ".join(amr)[:40],
                    acr=acr,
                    created_at=now,
                    expires_at=now + dt.timedelta(seconds=self.config.code_seconds),
                )
            ).run()
            await self.services.audit(
                "oidc.authorized", account_id=account_id, client_id=request.client_id, scope=" ".join(request.scope)
            )
        return code

    # --- the token endpoint ----------------------------------------------------------------------------

    async def authenticate_client(self, authorization: str, form: dict[str, str]) -> Client:
        """client_secret_basic, private_key_jwt, or a public client (``none``); one method per client."""
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() != "basic":
                raise OidcError("invalid_client", "client authentication failed", status=401)
            try:
                raw_id, _, raw_secret = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise OidcError("invalid_client", "client authentication failed", status=401) from None
            client = self.clients.get(unquote(raw_id.replace("+", " ")))
            secret = unquote(raw_secret.replace("+", " "))
            if (
                client is None
                or client.config.auth_method != "client_secret_basic"
                or client.secret is None
                or not hmac.compare_digest(secret.encode(), client.secret.encode())
                or form.get("client_id", client.id) != client.id
            ):
                raise OidcError("invalid_client", "client authentication failed", status=401)
            return client
        if "client_assertion" in form:
            client, jti, expires = self._assertion_client(form)
            t = self.services.database.t.OidcAssertion
            try:  # used once: the unique index refuses a second use, even by parallel requests
                await t.insert(
                    t(
                        jti_hash=token_digest(f"{client.id}\n{jti}"),
                        expires_at=dt.datetime.fromtimestamp(expires, dt.UTC),
                    )
                ).run()
            except Exception as exc:
                if is_store_failure(exc):
                    raise
                raise OidcError("invalid_client", "client authentication failed", status=401) from None
            return client
        client = self.clients.get(form.get("client_id", ""))
        if client is None or client.config.auth_method != "none":
            raise OidcError("invalid_client", "client authentication failed", status=401)
        return client

    def _assertion_client(self, form: dict[str, str]) -> tuple[Client, str, int]:
        fail = OidcError("invalid_client", "client authentication failed", status=401)
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise fail
        assertion = form.get("client_assertion", "")
        try:
            unverified = json.loads(extract_compact(assertion.encode()).payload)
            claimed = unverified.get("sub") if isinstance(unverified, dict) else None
        except (JoseError, ValueError):
            raise fail from None
        # only which client claims to be speaking is read before the signature: its keys decide the rest
        client = self.clients.get(str(claimed or form.get("client_id", "")))
        if client is None or client.config.auth_method != "private_key_jwt" or client.jwks is None:
            raise fail
        try:
            token = jwt.decode(assertion, client.jwks, algorithms=["RS256", "ES256", "PS256"])
            now = int(self.services.now().timestamp())
            JWTClaimsRegistry(
                now=now,
                leeway=CLOCK_LEEWAY,
                iss={"essential": True, "value": client.id},
                sub={"essential": True, "value": client.id},
                aud={"essential": True, "values": [self.token_endpoint, self.issuer]},
                exp={"essential": True},
                jti={"essential": True},
            ).validate(token.claims)
        except (JoseError, ValueError):
            raise fail from None
        if (
            int(token.claims["exp"]) > now + 600
            or form.get("client_id", client.id) != client.id
            or not isinstance(token.claims["jti"], str)
            or len(token.claims["jti"]) > 200
        ):
            raise fail  # a long-lived assertion would be a password by another name
        return client, token.claims["jti"], int(token.claims["exp"])

    async def redeem(self, client: Client, form: dict[str, str]) -> dict[str, Any]:
        """Exchange a code: once only, by the client it was issued to, with its redirect URI and
        PKCE verifier. A second use revokes the grant and every token it gave."""
        if form.get("grant_type") != "authorization_code":
            raise OidcError("unsupported_grant_type", "only authorization_code")
        code = form.get("code", "")
        verifier = form.get("code_verifier", "")
        if not code or len(code) > 100:
            raise OidcError("invalid_grant", "the code is invalid, expired or already used")
        now = self.services.now()
        t = self.services.database.t.OidcGrant
        digest = token_digest(code)
        rows = await (
            t.update({t.used_at: now})
            .where((t.code_hash == digest) & t.used_at.is_null() & t.revoked_at.is_null())
            .returning(
                t.id,
                t.client_id,
                t.account_id,
                t.redirect_uri,
                t.scope,
                t.nonce,
                t.code_challenge,
                t.auth_time,
                t.amr,
                t.acr,
                t.login_ref,
                t.expires_at,
            )
            .run()
        )
        if not rows:
            used = await t.select(t.id, t.account_id, t.client_id).where(t.code_hash == digest).limit(1).run()
            if used:
                await self.revoke_grant(
                    used[0]["id"],
                    reason="code_replayed",
                    account_id=used[0]["account_id"],
                    client_id=used[0]["client_id"],
                )
            await self._refused(client, "unknown_code" if not used else "code_replayed")
            raise OidcError("invalid_grant", "the code is invalid, expired or already used")
        grant = rows[0]
        reason = (
            "wrong_client"
            if grant["client_id"] != client.id
            else "expired"
            if grant["expires_at"] <= now
            else "redirect_uri"
            if form.get("redirect_uri", "") != grant["redirect_uri"]
            else "pkce"
            if not _VERIFIER.match(verifier) or not hmac.compare_digest(s256(verifier), grant["code_challenge"])
            else ""
        )
        if reason:
            # the code is spent either way: whoever tried it, it will not be tried again
            await t.update({t.revoked_at: now}).where(t.id == grant["id"]).run()
            await self._refused(client, reason, account_id=grant["account_id"])
            raise OidcError("invalid_grant", "the code is invalid, expired or already used")
        account = await self._open_account(grant["account_id"])
        if account is None:
            raise OidcError("invalid_grant", "the code is invalid, expired or already used")
        access_token = new_token()
        tokens = self.services.database.t.OidcToken
        expires_in = self.config.access_token_seconds
        async with self.services.database.transaction(brief=True):  # one insert and its audit
            await tokens.insert(
                tokens(
                    token_hash=token_digest(access_token),
                    grant_id=grant["id"],
                    expires_at=now + dt.timedelta(seconds=expires_in),
                )
            ).run()
            await self.services.audit("oidc.token_issued", account_id=grant["account_id"], client_id=client.id)
        iat = int(now.timestamp())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": await self.subject(account["id"], client),
            "aud": client.id,
            "azp": client.id,
            "iat": iat,
            "exp": iat + self.config.id_token_seconds,
            "auth_time": int(grant["auth_time"].timestamp()),
            "acr": grant["acr"],
            "amr": grant["amr"].split(),
            "at_hash": half_hash(access_token),
            "sid": self.session_id(grant["login_ref"], client),
        }
        if grant["nonce"]:
            claims["nonce"] = grant["nonce"]
        id_token = await self.sign(client.config.id_token_alg, claims)
        return {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "id_token": id_token,
            "scope": grant["scope"],
        }

    async def _refused(self, client: Client, reason: str, *, account_id: int | None = None) -> None:
        await self.services.audit("oidc.refused", account_id=account_id, client_id=client.id, reason=reason)

    async def revoke_grant(self, grant_id: int, *, reason: str, account_id: int | None, client_id: str) -> None:
        now = self.services.now()
        grants = self.services.database.t.OidcGrant
        tokens = self.services.database.t.OidcToken
        async with self.services.database.transaction():
            await (
                grants.update({grants.revoked_at: now})
                .where((grants.id == grant_id) & grants.revoked_at.is_null())
                .run()
            )
            await (
                tokens.update({tokens.revoked_at: now})
                .where((tokens.grant_id == grant_id) & tokens.revoked_at.is_null())
                .run()
            )
            await self.services.audit("oidc.revoked", account_id=account_id, client_id=client_id, reason=reason)

    async def logout_tokens(self, login_digest: str, account_id: int, clients: list[str]) -> list[tuple[str, str]]:
        """(back-channel address, signed logout token) for each client of an ended login that has one;
        ``login_digest``: the login's ``login_ref`` as the grants keep it (its SHA-256)."""
        found = []
        now = int(self.services.now().timestamp())
        for client_id in clients:
            client = self.clients.get(client_id)
            if client is None or not client.config.backchannel_logout_uri:
                continue
            claims = {
                "iss": self.issuer,
                "aud": client.id,
                "iat": now,
                "exp": now + 120,
                "jti": new_token(),
                "sub": await self.subject(account_id, client),
                "sid": self.session_id(login_digest, client),
                "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
            }
            token = await self.sign(client.config.id_token_alg, claims, typ="logout+jwt")
            found.append((client.config.backchannel_logout_uri, token))
        return found

    async def end_login(self, login_ref: str, account_id: int | None) -> list[str]:
        """A logout: every grant of this login and its tokens are revoked; the clients it reached."""
        if not login_ref:
            return []
        grants = self.services.database.t.OidcGrant
        rows = await grants.select(grants.id, grants.client_id).where(grants.login_ref == token_digest(login_ref)).run()
        await self._revoke_grants([row["id"] for row in rows])
        return sorted({row["client_id"] for row in rows})

    async def end_other_logins(self, account_id: int, keep_login_ref: str) -> list[tuple[str, str]]:
        """A credential change: every live grant of the account but those of the login that made the
        change (``keep_login_ref``, "" for none) is revoked with its tokens; the (login digest, client
        id) pairs they came from, for the back-channel."""
        grants = self.services.database.t.OidcGrant
        keep = token_digest(keep_login_ref) if keep_login_ref else ""
        rows = await (
            grants.select(grants.id, grants.client_id, grants.login_ref)
            .where((grants.account_id == account_id) & grants.revoked_at.is_null() & (grants.login_ref != keep))
            .run()
        )
        await self._revoke_grants([row["id"] for row in rows])
        return sorted({(row["login_ref"], row["client_id"]) for row in rows})

    async def _revoke_grants(self, ids: list[int]) -> None:
        """These grants and every token they gave, revoked together."""
        if not ids:
            return
        grants = self.services.database.t.OidcGrant
        tokens = self.services.database.t.OidcToken
        now = self.services.now()
        async with self.services.database.transaction():
            await (
                grants.update({grants.revoked_at: now}).where(grants.id.is_in(ids) & grants.revoked_at.is_null()).run()
            )
            await (
                tokens.update({tokens.revoked_at: now})
                .where(tokens.grant_id.is_in(ids) & tokens.revoked_at.is_null())
                .run()
            )

    async def services_for(self, account_id: int) -> list[dict[str, Any]]:
        """The first-party services the espace privé lists (those with a start address), each with when
        this person last logged into it."""
        listed = [c for c in self.clients.values() if c.config.start_url and not c.config.third_party]
        if not listed:
            return []
        t = self.services.database.t.OidcGrant
        rows = await (
            t.select(t.client_id, t.created_at).where((t.account_id == account_id) & t.used_at.is_not_null()).run()
        )
        last: dict[str, dt.datetime] = {}
        for row in rows:
            if row["client_id"] not in last or row["created_at"] > last[row["client_id"]]:
                last[row["client_id"]] = row["created_at"]
        return [
            {
                "name": c.config.name,
                "description": c.config.description,
                "url": c.config.start_url,
                "last_used": last[c.id].astimezone(PARIS).strftime("%d/%m/%Y à %H:%M") if c.id in last else "",
            }
            for c in listed
        ]

    async def purge(self, now: dt.datetime) -> None:
        """Drop grants a day past their code's expiry whose tokens are all dead, dead tokens, spent assertions."""
        database = self.services.database
        grants, tokens, assertions = database.t.OidcGrant, database.t.OidcToken, database.t.OidcAssertion
        day = dt.timedelta(days=1)
        await tokens.delete().where(tokens.expires_at <= now - day).run()
        await assertions.delete().where(assertions.expires_at <= now - dt.timedelta(minutes=5)).run()
        live = tokens.select(tokens.grant_id)
        await grants.delete().where((grants.expires_at <= now - day) & grants.id.not_in(live)).run()

    # --- identity -------------------------------------------------------------------------------------

    async def subject(self, account_id: int, client: Client | str) -> str:
        """The subject a sector (a client's, or a name) knows this person by, made on first use."""
        sector = client if isinstance(client, str) else client.sector
        # Kept once known (forward auth asks on every page view): a subject never changes, and an
        # account id is never given to another person (a closed account stays as a tombstone row)
        known = self._subjects.get((account_id, sector))
        if known is not None:
            return known
        t = self.services.database.t.OidcSubject
        for _ in range(2):
            rows = await t.select(t.subject).where((t.account_id == account_id) & (t.sector == sector)).run()
            if rows:
                if len(self._subjects) >= SUBJECTS_KEPT:
                    self._subjects.clear()
                self._subjects[(account_id, sector)] = subject = str(rows[0]["subject"])
                return subject
            try:
                await t.insert(t(account_id=account_id, sector=sector, subject=new_token()[:43])).run()
            except Exception as exc:
                if is_store_failure(exc):
                    raise  # else: made by a parallel request; read it back
        raise OidcError("server_error", "subject unavailable", status=503)

    async def read_id_token_hint(self, hint: str) -> dict[str, Any] | None:
        """The claims of an ID token this provider signed (expired or not: a hint names a login, it
        proves nothing), or None."""
        keys = KeySet.import_key_set(await self.jwks())  # type: ignore[arg-type]  # a JWKS dict
        try:
            token = jwt.decode(hint, keys, algorithms=list(ALGORITHMS))
        except (JoseError, ValueError):
            return None
        claims = dict(token.claims)
        if claims.get("iss") != self.issuer or claims.get("aud") not in self.clients:
            return None
        return claims

    def session_id(self, login_ref_digest: str, client: Client) -> str:
        """``sid``: the login as this client sees it (one value per client, so clients cannot match them)."""
        return self.services.keys.hmac("oidc-sid", f"{client.id}\n{login_ref_digest}")[:32]

    async def userinfo(self, authorization: str) -> dict[str, Any]:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise OidcError("invalid_token", "a bearer access token is required", status=401)
        tokens = self.services.database.t.OidcToken
        now = self.services.now()
        rows = await fetch(
            tokens, _live_grant_of_token(tokens, self.services.database.t.OidcGrant), token_digest(token.strip())
        )
        if not rows or rows[0]["expires_at"] <= now:
            raise OidcError("invalid_token", "the access token is invalid, expired or revoked", status=401)
        grant = rows[0]
        client = self.clients.get(grant["client_id"])
        account = await self._open_account(grant["account_id"])
        if client is None or account is None:
            raise OidcError("invalid_token", "the access token is invalid, expired or revoked", status=401)
        return await self.claims(account, client, tuple(grant["scope"].split()))

    async def _open_account(self, account_id: int) -> dict[str, Any] | None:
        """The account a grant is for; None once it is closed (only its empty tombstone row is left)."""
        account = await account_by_id(self.services, account_id)
        return None if account is None or account["identifier_kind"] == CLOSED else account

    async def claims(self, account: dict[str, Any], client: Client, scope: tuple[str, ...]) -> dict[str, Any]:
        claims: dict[str, Any] = {"sub": await self.subject(account["id"], client)}
        if "profile" in scope:
            claims["family_name"] = account["last_name"]
            if account["first_name"]:
                claims["given_name"] = account["first_name"]
            if account["birth_date"]:
                claims["birthdate"] = account["birth_date"].isoformat()
        if "email" in scope and account["email"]:
            claims["email"] = account["email"]
            claims["email_verified"] = bool(account["email_verified"])
        if "phone" in scope and account["mobile"]:
            claims["phone_number"] = account["mobile"]
            claims["phone_number_verified"] = bool(account["mobile_verified"])
        if "nir" in scope and "nir" in client.config.scopes and account["identifier_kind"] == "nir":
            claims["nir"] = account["identifier"]
        return claims


def _generate(alg: str) -> Any:
    if alg == "ES256":
        return ECKey.generate_key("P-256", auto_kid=True)
    return RSAKey.generate_key(2048, auto_kid=True)
