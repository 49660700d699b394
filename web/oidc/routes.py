"""HTTP endpoints of the OpenID Connect provider and of forward auth: decode, call the provider, answer."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from litestar import Request, Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.response import Redirect

from guichet.core.availability import is_store_failure
from guichet.core.flows.account import current_account
from guichet.core.flows.login import next_url_of
from guichet.core.keys import token_digest
from guichet.core.sessions import FULL
from guichet.web.forms import form_of
from guichet.web.http import client_address, error_page, go, render, services_of, session_of
from guichet.web.oidc.provider import (
    ACR_CODE,
    ACR_TRUSTED_BROWSER,
    AuthRequest,
    Client,
    OidcError,
    Provider,
    acr_of,
    amr_of,
)

log = logging.getLogger("guichet.oidc")
AUTHORIZE_PATH = "/oidc/autoriser"
# called by services' servers, not by browsers: no session, no CSRF token (client authentication instead)
API_PATHS = frozenset({"/.well-known/openid-configuration", "/oidc/jwks", "/oidc/jeton", "/oidc/userinfo"})
SCOPE_LABELS = {
    "openid": "un identifiant propre à ce service, qui ne permet pas de vous reconnaître ailleurs",
    "profile": "vos nom, prénom et date de naissance",
    "email": "votre adresse email",
    "phone": "votre numéro de téléphone mobile",
    "nir": "votre numéro de Sécurité Sociale",
}
JSON_HEADERS = {"pragma": "no-cache"}


def provider_of(request: Request[Any, Any, Any]) -> Provider:
    return request.app.state.oidc  # type: ignore[no-any-return]


def _json(content: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        content=content, status_code=status, media_type="application/json", headers={**JSON_HEADERS, **(headers or {})}
    )


def oauth_error(error: OidcError) -> tuple[int, dict[str, str], dict[str, str]]:
    """A refusal's status, headers and JSON body (RFC 6749 5.2, RFC 6750 3)."""
    headers = (
        {"www-authenticate": 'Basic realm="guichet"'}
        if error.status == 401 and error.error == "invalid_client"
        else {"www-authenticate": f'Bearer error="{error.error}"'}
        if error.error == "invalid_token"
        else {}
    )
    return error.status, headers, {"error": error.error, "error_description": error.description}


def _oauth_error(error: OidcError) -> Response[Any]:
    status, headers, content = oauth_error(error)
    return _json(content, status, headers)


def _single_params(items: list[tuple[str, str]]) -> dict[str, str] | None:
    """OAuth parameters appear at most once (RFC 6749 3.1); None when one is repeated."""
    params: dict[str, str] = {}
    for key, value in items:
        if key in params:
            return None
        params[key] = value
    return params


def _back_to_client(provider: Provider, redirect_uri: str, state: str, **values: str) -> Response[Any]:
    query = {**values, **({"state": state} if state else {}), "iss": provider.issuer}
    separator = "&" if urlsplit(redirect_uri).query else "?"
    return Redirect(path=redirect_uri + separator + urlencode(query), status_code=303)


def login_url(return_to: str, *, force_code: bool) -> str:
    return f"/connexion?retour={quote(return_to, safe='')}" + ("&code=oui" if force_code else "")


def return_target(value: str) -> str:
    """A login's return URL: a path on this site only (no scheme, host, '//', backslash or control
    character), else ""; an off-site target would make the login page an open redirect."""
    if not value or len(value) > 4000 or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return ""
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):
        return ""
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or parts.path.startswith(("/connexion", "/deconnexion")):
        return ""
    return value


@get("/.well-known/openid-configuration", sync_to_thread=False, include_in_schema=False)
def discovery(request: Request[Any, Any, Any]) -> Response[Any]:
    return _json(provider_of(request).discovery())


@get("/oidc/jwks", include_in_schema=False)
async def jwks(request: Request[Any, Any, Any]) -> Response[Any]:
    return _json(await provider_of(request).jwks())


@get(AUTHORIZE_PATH, include_in_schema=False)
async def authorize(request: Request[Any, Any, Any]) -> Response[Any]:
    """Check the request, run guichet's login when needed, then send the code back to the client."""
    provider = provider_of(request)
    services = services_of(request)
    params = _single_params(list(request.query_params.items()))
    if params is None:
        return error_page(request, 400, "Demande invalide", "La demande de connexion de ce service est invalide.")
    try:
        client, redirect_uri = provider.client_and_redirect(params)
    except OidcError as error:
        await services.audit(
            "oidc.refused",
            client=client_address(request),
            reason=error.error,
            client_id=params.get("client_id", "")[:64],
        )
        return error_page(request, 400, "Demande invalide", error.description)
    state = params.get("state", "")
    try:
        auth = provider.check_request(client, redirect_uri, params)
    except OidcError as error:
        await services.audit("oidc.refused", client=client_address(request), reason=error.error, client_id=client.id)
        return _back_to_client(provider, redirect_uri, state, error=error.error, error_description=error.description)
    session = session_of(request)
    data = session.data
    account = await current_account(services, session) if data is not None and data.level == FULL else None
    if account is not None and data is not None and account["credentials_version"] != data.credentials_version:
        account = None
    now_ms = int(services.now().timestamp() * 1000)
    needs_login = (
        account is None
        or data is None
        or "login" in auth.prompt
        or (auth.max_age is not None and now_ms - data.auth_ms > auth.max_age * 1000)
        or (ACR_CODE in auth.acr_values and acr_of(data) == ACR_TRUSTED_BROWSER)
    )
    if needs_login:
        if "none" in auth.prompt:
            return _back_to_client(provider, redirect_uri, state, error="login_required")
        # the request comes back after the login without what asked for it, so it cannot loop: the
        # fresh auth_time in the ID token is what tells the client a new login happened
        kept = [(k, v) for k, v in params.items() if k not in ("prompt", "max_age")]
        return go(
            request,
            login_url(
                f"{AUTHORIZE_PATH}?{urlencode(kept)}", force_code="login" in auth.prompt or ACR_CODE in auth.acr_values
            ),
        )
    assert account is not None and data is not None
    forced = next_url_of(account, data)
    if forced != "/espace-prive":  # personalisation, contact confirmation or an enrolment first, then back here
        if "none" in auth.prompt:
            return _back_to_client(provider, redirect_uri, state, error="interaction_required")
        data.return_to = request.url.path + "?" + request.url.query
        session.dirty = True
        return go(request, forced)
    if "consent" in auth.prompt or not await provider.has_consent(account["id"], client, auth.scope):
        if "none" in auth.prompt:
            return _back_to_client(provider, redirect_uri, state, error="consent_required")
        return _consent_page(request, client, auth, request.url.path + "?" + request.url.query)
    code = await provider.issue_code(
        auth,
        account_id=account["id"],
        auth_ms=data.auth_ms,
        amr=amr_of(data),
        acr=acr_of(data),
        login_ref=data.login_ref,
    )
    return _back_to_client(provider, redirect_uri, state, code=code)


def _consent_page(request: Request[Any, Any, Any], client: Client, auth: AuthRequest, return_to: str) -> Response[Any]:
    caisse = services_of(request).config.caisse.name
    return render(
        request,
        "steps/oidc/consentement.html",
        {
            "client": client.config,
            "data": [SCOPE_LABELS[s] for s in auth.scope if s in SCOPE_LABELS],
            "retour": return_to,
        },
        title=f"Autorisation — Mon espace privé — {caisse}",
    )


@post("/oidc/consentement", include_in_schema=False)
async def consent(request: Request[Any, Any, Any]) -> Response[Any]:
    """The person's answer on the consent screen: agree (and go on with the request) or refuse."""
    provider = provider_of(request)
    services = services_of(request)
    form = await form_of(request)
    target = return_target(form.get("retour", ""))
    parts = urlsplit(target)
    params = _single_params(parse_qsl(parts.query)) if parts.path == AUTHORIZE_PATH else None
    session = session_of(request)
    account = (
        await current_account(services, session) if session.data is not None and session.data.level == FULL else None
    )
    if params is None or account is None:
        return go(request, "/connexion")
    try:
        client, redirect_uri = provider.client_and_redirect(params)
        auth = provider.check_request(client, redirect_uri, params)
    except OidcError as error:
        return error_page(request, 400, "Demande invalide", error.description)
    if form.get("action") != "accepter":
        await services.audit("oidc.consent_refused", account_id=account["id"], client_id=client.id)
        return _back_to_client(provider, redirect_uri, auth.state, error="access_denied")
    await provider.record_consent(account["id"], client, auth.scope)
    kept = [(k, v) for k, v in params.items() if k != "prompt"]
    return go(request, f"{AUTHORIZE_PATH}?{urlencode(kept)}")


@post("/oidc/jeton", include_in_schema=False, status_code=200)
async def token(request: Request[Any, Any, Any]) -> Response[Any]:
    provider = provider_of(request)
    form = await request.form()
    values = _single_params([(k, v) for k, v in form.multi_items() if isinstance(v, str)])
    if values is None:
        return _oauth_error(OidcError("invalid_request", "a parameter is repeated"))
    try:
        client = await provider.authenticate_client(request.headers.get("authorization", ""), values)
        return _json(await provider.redeem(client, values))
    except OidcError as error:
        if error.error == "invalid_client":
            await services_of(request).audit("oidc.refused", client=client_address(request), reason="client_auth")
        return _oauth_error(error)


def origin(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


def csp(base: str, provider: Provider) -> bytes:
    """The site's CSP, where a form whose answer leads on to a service (the login, the consent
    screen, the logout) may end at that service's registered addresses."""
    origins = sorted(
        {
            origin(uri)
            for client in provider.clients.values()
            for uri in (*client.config.redirect_uris, *client.config.post_logout_redirect_uris)
        }
    )
    return base.replace("form-action 'self'", " ".join(["form-action 'self'", *origins])).encode()


# --- RP-initiated logout -------------------------------------------------------------------------------


async def _logout_target(request: Request[Any, Any, Any], params: dict[str, str]) -> tuple[str, str, str] | None:
    """Where to go after the logout (a registered post_logout_redirect_uri of the client named by
    the hint or client_id, with its state and the client), empty for guichet's home, None if refused."""
    provider = provider_of(request)
    wanted = params.get("post_logout_redirect_uri", "")
    if not wanted:
        return "", "", ""
    client_id = params.get("client_id", "")
    if params.get("id_token_hint"):
        claims = await provider.read_id_token_hint(params["id_token_hint"])
        if claims is None or (client_id and claims["aud"] != client_id):
            return None
        client_id = str(claims["aud"])
    client = provider.clients.get(client_id)
    if client is None or wanted not in client.config.post_logout_redirect_uris:
        return None
    return wanted, params.get("state", ""), client.id


@get("/oidc/deconnexion", include_in_schema=False)
async def end_session(request: Request[Any, Any, Any]) -> Response[Any]:
    """A service asks to log the person out: guichet asks the person to confirm (a link alone must
    not end a session), then returns to the service's registered address."""
    params = _single_params(list(request.query_params.items()))
    target = await _logout_target(request, params) if params is not None else None
    if target is None:
        return error_page(
            request, 400, "Demande invalide", "L'adresse de retour demandée par ce service n'est pas enregistrée."
        )
    session = session_of(request)
    if session.data is None or session.data.level != FULL:
        return _after_logout(target)
    caisse = services_of(request).config.caisse.name
    return render(
        request,
        "steps/oidc/deconnexion.html",
        {"target": target[0], "state": target[1], "client_id": target[2]},
        title=f"Déconnexion — Mon espace privé — {caisse}",
    )


def _after_logout(target: tuple[str, str, str]) -> Response[Any]:
    url, state, _client = target
    if not url:
        return Redirect(path="/", status_code=303)
    separator = "&" if urlsplit(url).query else "?"
    return Redirect(path=url + (separator + urlencode({"state": state}) if state else ""), status_code=303)


@post("/oidc/deconnexion", include_in_schema=False)
async def end_session_confirmed(request: Request[Any, Any, Any]) -> Response[Any]:
    services = services_of(request)
    form = await form_of(request)
    target = (
        await _logout_target(
            request,
            {
                "post_logout_redirect_uri": form.get("target", ""),
                "client_id": form.get("client_id", ""),
                "state": form.get("state", ""),
            },
        )
        if form.get("target")
        else ("", "", "")
    )
    session = session_of(request)
    notify = await end_login(request)
    await services.sessions.end(session)
    response = _after_logout(target or ("", "", ""))
    response.background = notify
    return response


async def end_login(request: Request[Any, Any, Any]) -> BackgroundTask | None:
    """What a logout ends besides the session: the services' grants and tokens from this login; the
    services that asked for it are told on their back-channel, after the answer (a task to attach)."""
    provider: Provider | None = getattr(request.app.state, "oidc", None)
    session = session_of(request)
    if provider is None or session.data is None or session.data.account_id is None:
        return None
    try:
        clients = await provider.end_login(session.data.login_ref, session.data.account_id)
        await services_of(request).audit(
            "oidc.logout", account_id=session.data.account_id, client=client_address(request), clients=",".join(clients)
        )
        notices = await provider.logout_tokens(token_digest(session.data.login_ref), session.data.account_id, clients)
    except Exception as exc:
        if not is_store_failure(exc):
            raise
        # the session still ends (its store may be up); the services' tokens die at their expiry
        log.error("the services' grants of a login could not be revoked at logout: %s", type(exc).__name__)
        return None
    return BackgroundTask(request.app.state.back_channel.send, notices) if notices else None


async def end_other_logins(
    request: Request[Any, Any, Any], account_id: int, *, keep_own: bool = True
) -> BackgroundTask | None:
    """A credential change ends the account's other sessions: what those logins reached at the
    services ends with them (grants and tokens revoked; with ``keep_own`` the login that made the
    change keeps its own), and the services that asked are told on their back-channel, after the
    answer."""
    provider: Provider | None = getattr(request.app.state, "oidc", None)
    if provider is None:
        return None
    session = session_of(request)
    keep = session.data.login_ref if keep_own and session.data else ""
    try:
        ended = await provider.end_other_logins(account_id, keep)
        if not ended:
            return None
        clients = sorted({client for _, client in ended})
        await services_of(request).audit(
            "oidc.logout", account_id=account_id, client=client_address(request), clients=",".join(clients)
        )
        notices = [
            notice
            for login_digest, client in ended
            for notice in await provider.logout_tokens(login_digest, account_id, [client])
        ]
    except Exception as exc:
        if not is_store_failure(exc):
            raise
        # the password changed all the same; the other logins' tokens die at their expiry
        log.error("the services' grants of the other logins could not be revoked: %s", type(exc).__name__)
        return None
    return BackgroundTask(request.app.state.back_channel.send, notices) if notices else None


# the pauses before a back-channel logout is tried again, and the bound of one try: all within the
# token's two minutes (provider.logout_tokens)
LOGOUT_RETRY_SECONDS = (2.0, 10.0, 30.0)
LOGOUT_TRY_SECONDS = 10.0


class BackChannel:
    """The back-channel logouts this process is sending. Each logout's notices go in a task of their
    own, not in the request that ended the login: that request ends with its answer, whatever the
    services do, and a process that stops waits for none of them (what is left is logged as dropped)."""

    def __init__(self) -> None:
        self._sending: set[asyncio.Task[None]] = set()

    async def send(self, notices: list[tuple[str, str]]) -> None:
        """Start sending (a background task of the request calls it after the answer)."""
        task = asyncio.create_task(send_logout_tokens(notices), name="back-channel logout")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def close(self) -> None:
        """Stop what is still being sent (the app is stopping)."""
        sending = list(self._sending)
        for task in sending:
            task.cancel()
        await asyncio.gather(*sending, return_exceptions=True)


async def send_logout_tokens(notices: list[tuple[str, str]]) -> None:
    """POST each logout token (OpenID Connect Back-Channel Logout 1.0), every service at once: one
    that is slow to answer delays no other. A service that could not take it (no answer, a 5xx, a
    429) is tried again while the token lives (``LOGOUT_RETRY_SECONDS``); one that refused it (a 4xx:
    the token did not suit it) is not. Failures are logged by address only: the token is a
    credential, and the service's tokens from that login are already revoked."""
    # imported here: httpx (with its command line's rich and pygments) would cost every worker about
    # 15 MiB of memory for the logouts of services that asked to be told, a rare event
    import httpx

    async def tell(client: httpx.AsyncClient, address: str, token: str) -> None:
        try:
            for pause in (*LOGOUT_RETRY_SECONDS, None):
                try:
                    async with asyncio.timeout(LOGOUT_TRY_SECONDS):  # httpx's timeout bounds each read, not the try
                        answer = await client.post(address, data={"logout_token": token})
                    if answer.status_code < 300:
                        return
                    log.warning("back-channel logout refused by %s: %s", address, answer.status_code)
                    if answer.status_code < 500 and answer.status_code != 429:
                        return  # the service read it and said no: the same token would be refused again
                except (httpx.HTTPError, TimeoutError) as exc:
                    log.warning("back-channel logout to %s failed: %s", address, type(exc).__name__)
                if pause is not None:
                    await asyncio.sleep(pause)
            log.error("back-channel logout to %s given up after %s tries", address, len(LOGOUT_RETRY_SECONDS) + 1)
        except asyncio.CancelledError:
            log.warning("back-channel logout to %s dropped: the process is stopping", address)
            raise
        except Exception as exc:  # an address httpx cannot use, say: the others are still told
            log.error("back-channel logout to %s impossible: %s", address, type(exc).__name__)

    async with httpx.AsyncClient(timeout=5, follow_redirects=False) as client:
        await asyncio.gather(*(tell(client, address, token) for address, token in notices))


def route_handlers() -> list[Any]:
    # userinfo: web/oidc/service_calls.py, with forward auth
    return [discovery, jwks, authorize, consent, token, end_session, end_session_confirmed]
