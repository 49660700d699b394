"""What a caisse's services call on every page view (docs/oidc.md): forward auth (nginx's
``auth_request`` asks ``GET /auth/verifier``) and userinfo (``/oidc/userinfo`` with an access token).
Answered ahead of Litestar's router and middleware: they need a session or a token, the account and
the claims, none of the page machinery (routing, CSRF, compression, templates). The request id, the
metrics and the security headers still apply: this runs inside them."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any
from urllib.parse import quote

import msgspec
from litestar import Request
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from guichet.core.flows.account import current_account
from guichet.core.flows.login import next_url_of
from guichet.core.services import Services
from guichet.core.sessions import FULL
from guichet.web.http import error_handler, load_session
from guichet.web.oidc.provider import OidcError, Provider, acr_of, amr_of
from guichet.web.oidc.routes import login_url, oauth_error, return_target

FORWARD_PATH = "/auth/verifier"
USERINFO_PATH = "/oidc/userinfo"
SECTOR = "forward-auth"
AUDIENCE = "guichet-forward-auth"
TOKENS_KEPT = 10_000  # at most, ≈ 1 KB each: one per person and login checked in the last half lifetime


class SignedTokens:
    """The forward-auth token of a login, signed once and handed out again while more than half of
    its life is left: a service's page views within that time get the same token instead of one ES256
    signature each. Who may have it is decided before, on every request (the session, the account's
    credentials); the claims it reuses are its key, so a new name or login gets a new token."""

    def __init__(self, lifetime_seconds: int) -> None:
        self.lifetime = lifetime_seconds
        self._kept: OrderedDict[tuple[Any, ...], tuple[int, str]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._kept)

    async def token(self, provider: Provider, claims: dict[str, Any], now: int) -> str:
        active = await provider.signing_key("ES256")  # a rotation is a new key, so a new token
        key = (active.kid, *((name, tuple(v) if isinstance(v, list) else v) for name, v in claims.items()))
        kept = self._kept.get(key)
        # a token older than half its life, or from the future (the clock moved back), is signed anew
        if kept is not None and 0 <= now - kept[0] <= self.lifetime // 2:
            return kept[1]
        signed = await provider.sign("ES256", {**claims, "iat": now, "exp": now + self.lifetime})
        self._kept[key] = (now, signed)
        self._kept.move_to_end(key)
        # oldest first: what can no longer be handed out goes, so only the last half lifetime's are kept
        while self._kept:
            signed_at = next(iter(self._kept.values()))[0]
            if len(self._kept) <= TOKENS_KEPT and 0 <= now - signed_at <= self.lifetime // 2:
                break
            self._kept.popitem(last=False)
        return signed


class ServiceCalls:
    """ASGI: forward auth (when the config turns it on) and userinfo answered here, everything else
    passed to ``app`` (Litestar's handler)."""

    def __init__(self, app: ASGIApp, services: Services, provider: Provider, *, forward_auth: bool) -> None:
        self.app = app
        self.services = services
        self.provider = provider
        self.tokens = SignedTokens(services.config.oidc.forward_auth_token_seconds)
        self.paths = {USERINFO_PATH: (self.userinfo, (b"GET", b"POST"))}
        if forward_auth:
            self.paths[FORWARD_PATH] = (self.verdict, (b"GET", b"HEAD"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = self.paths.get(scope["path"]) if scope["type"] == ScopeType.HTTP else None
        if answer is None:
            await self.app(scope, receive, send)
            return
        handler, methods = answer
        scope["path_template"] = scope["path"]  # type: ignore[typeddict-unknown-key]  # the metrics' route label
        request: Request[Any, Any, Any] = Request(scope, receive, send)
        if scope["method"].encode() not in methods:  # type: ignore[typeddict-item]
            await _answer(send, 405, [(b"allow", b", ".join(methods))])
            return
        try:
            status, headers, body = await handler(request)
        except Exception as exc:  # an outage is a 503, a bug a 500: the pages' own answers
            session = request.scope["state"].get("session")
            if session is not None and session.dirty:
                session.lost = True  # not saved (its idle clock, or the save itself failed): no cookie for it
            response = error_handler(request, exc)
            await response.to_asgi_response(app=None, request=request)(scope, receive, send)
            return
        await _answer(send, status, headers, body)

    async def userinfo(self, request: Request[Any, Any, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """The claims an access token's grant allows, or an OAuth error (never the page machinery: a
        service's server is calling, with no session and no CSRF token)."""
        try:
            claims = await self.provider.userinfo(request.headers.get("authorization", ""))
        except OidcError as error:
            status, headers, content = oauth_error(error)
            return (
                status,
                [*_JSON, *((k.encode(), v.encode()) for k, v in headers.items())],
                msgspec.json.encode(content),
            )
        return 200, list(_JSON), msgspec.json.encode(claims)

    async def verdict(self, request: Request[Any, Any, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """200 with the person's identity for a fully logged-in session, else 401 with the login
        address (which returns to the original page, on this site only) in Location."""
        services = self.services
        session = await load_session(request)  # as a page loads it (its cookie goes out in before_send)
        data = session.data
        account = await current_account(services, session) if data is not None and data.level == FULL else None
        refused = (
            account is None
            or data is None
            or account["credentials_version"] != data.credentials_version
            or next_url_of(account, data) != "/espace-prive"
        )
        if session.dirty:  # the idle clock, moved at most once a minute: browsing a service is being active
            await services.sessions.commit(session, services.now())
        if refused or session.lost:  # lost: ended meanwhile (a logout in a parallel request)
            original = return_target(request.headers.get("x-original-uri", ""))
            login = login_url(original, force_code=False) if original else "/connexion"
            # absolute: nginx's ``error_page 401 =302 $url`` redirects the browser only to a full URL
            return 401, [(b"location", (self.provider.issuer + login).encode("latin-1"))], b""
        assert account is not None and data is not None
        subject = await self.provider.subject(account["id"], SECTOR)
        acr = acr_of(data)
        claims: dict[str, Any] = {
            "iss": self.provider.issuer,
            "sub": subject,
            "aud": AUDIENCE,
            "auth_time": data.auth_ms // 1000,
            "acr": acr,
            "amr": amr_of(data),
            "family_name": account["last_name"],
            "given_name": account["first_name"],
        }
        signed = await self.tokens.token(self.provider, claims, int(services.now().timestamp()))
        return (
            200,
            [
                (b"x-guichet-sujet", subject.encode("latin-1")),
                (b"x-guichet-niveau", acr.encode("latin-1")),
                # names may hold accents: percent-encoded UTF-8, so a header stays ASCII
                (b"x-guichet-nom", quote(account["last_name"], safe="").encode("latin-1")),
                (b"x-guichet-prenom", quote(account["first_name"], safe="").encode("latin-1")),
                (b"x-guichet-jeton", signed.encode("latin-1")),
            ],
            b"",
        )


_JSON = ((b"content-type", b"application/json"), (b"pragma", b"no-cache"))


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> None:
    length = (b"content-length", str(len(body)).encode())
    await send({"type": "http.response.start", "status": status, "headers": [*headers, length]})
    await send({"type": "http.response.body", "body": body, "more_body": False})
