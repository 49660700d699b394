"""The request plumbing every controller shares: sessions, CSRF, cookies, headers, step rendering."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
from typing import Any
from urllib.parse import urlsplit

from litestar import Request, Response
from litestar.datastructures import Cookie
from litestar.enums import MediaType, ScopeType
from litestar.exceptions import HTTPException
from litestar.response import Redirect, Template
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from guichet.core.availability import RETRY_AFTER_SECONDS, is_store_failure
from guichet.core.flows.common import UNAVAILABLE
from guichet.core.flows.engine import StepResult
from guichet.core.outbox import take_enqueued
from guichet.core.services import Services
from guichet.core.sessions import FULL, Session

log = logging.getLogger("guichet.web")

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
STATIC_PREFIX = "/static/"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPS_PATHS = frozenset({"/metrics", "/sante", "/sante/pret"})  # no session, no CSRF: probes and scrapers
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'; connect-src 'self'"
)
_CSP_BYTES = CSP.encode()


def services_of(request: Request[Any, Any, Any]) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def cookie_name(services: Services, name: str) -> str:
    # __Host- cookies are Secure, host-only and Path=/: a subdomain cannot plant one
    return f"__Host-guichet_{name}" if services.config.sessions.secure_cookies else f"guichet_{name}"


def session_of(request: Request[Any, Any, Any]) -> Session:
    return request.scope["state"]["session"]  # type: ignore[no-any-return]


def client_address(request: Request[Any, Any, Any]) -> str:
    """The client's address; X-Forwarded-For is believed only from a trusted proxy (an address or a
    network of ``security.trusted_proxies``)."""
    peer = request.client.host if request.client else ""
    trusted = request.app.state.trusted_proxies
    if peer and peer in trusted:
        forwarded = request.headers.get("x-forwarded-for", "")
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        # walk from the nearest hop back, skipping our own proxies; the first other hop is the one our
        # proxy appended: it must be an IP address, or the header is not believed at all
        for hop in reversed(hops):
            if hop not in trusted:
                try:
                    return str(ipaddress.ip_address(hop))
                except ValueError:
                    break
    return peer[:64]


async def audit_quietly(services: Services, kind: str, **fields: Any) -> None:
    """An audit event whose store may be the one that is down: a failure is logged, the answer stands."""
    try:
        await services.audit(kind, **fields)
    except Exception as exc:
        if not is_store_failure(exc):
            raise
        log.error("audit store failed, %s not recorded: %s", kind, type(exc).__name__)


def queue_cookie(request: Request[Any, Any, Any], cookie: Cookie) -> None:
    request.scope["state"].setdefault("cookies", []).append(cookie)


def set_flow_cookie(request: Request[Any, Any, Any], kind: str, flow_id: str | None) -> None:
    services = services_of(request)
    secure = services.config.sessions.secure_cookies
    name = cookie_name(services, f"flow_{kind}")
    if flow_id is None:
        queue_cookie(
            request, Cookie(key=name, value="", max_age=0, path="/", secure=secure, httponly=True, samesite="lax")
        )
    else:
        queue_cookie(
            request,
            Cookie(
                key=name,
                value=flow_id,
                path="/",
                secure=secure,
                httponly=True,
                samesite="lax",
                max_age=int(services.flows.lifetime.total_seconds()),
            ),
        )


def flow_cookie(request: Request[Any, Any, Any], kind: str) -> str | None:
    return request.cookies.get(cookie_name(services_of(request), f"flow_{kind}"))


# --- CSRF: a random cookie, and a token that is its HMAC bound to the session id ------------------


def csrf_token(request: Request[Any, Any, Any]) -> str:
    services = services_of(request)
    state = request.scope["state"]
    seed = state.get("csrf_seed") or request.cookies.get(cookie_name(services, "csrf"))
    if not seed or len(seed) > 100:
        seed = secrets.token_urlsafe(24)
        state["csrf_seed"] = seed
        queue_cookie(
            request,
            Cookie(
                key=cookie_name(services, "csrf"),
                value=seed,
                path="/",
                httponly=True,
                secure=services.config.sessions.secure_cookies,
                samesite="strict",
            ),
        )
    state["csrf_seed"] = seed
    session = state.get("session")
    sid = session.sid if session is not None and session.sid else ""
    return services.keys.hmac("csrf", f"{seed}:{sid}")


def _csrf_valid(request: Request[Any, Any, Any], submitted: list[str]) -> bool:
    services = services_of(request)
    seed = request.cookies.get(cookie_name(services, "csrf"))
    if not seed:
        return False
    session = request.scope["state"].get("session")
    sid = session.sid if session is not None and session.sid else ""
    return any(services.keys.matches("csrf", f"{seed}:{sid}", token) for token in submitted if token)


# --- hooks -----------------------------------------------------------------------------------------


def _plain_error(status: int, message: str) -> Response[str]:
    return Response(
        content=message, status_code=status, media_type=MediaType.TEXT, headers={"cache-control": "no-store"}
    )


def public_origin(public_url: str) -> str:
    """``scheme://host[:port]`` of ``server.public_url`` as a browser writes it in Origin ("" when unset)."""
    if not public_url:
        return ""
    parts = urlsplit(public_url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port and parts.port != default else ""
    return f"{parts.scheme}://{host}{port}"


def cross_site(request: Request[Any, Any, Any]) -> str | None:
    """Why a state-changing request comes from another site, or None.

    Sec-Fetch-Site is the browser's own verdict (only "same-origin", or "none" for what the person
    did themselves, pass: "same-site" is a sibling subdomain); without it, Origin must be this
    site (the request's Host, or ``server.public_url``); with neither (an old browser), the CSRF
    token alone decides.
    """
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return None if fetch_site in ("same-origin", "none") else "sec-fetch-site"
    origin = request.headers.get("origin")
    if origin is None:
        return None
    origin = origin.strip().lower()
    host = request.headers.get("host", "").strip().lower()
    own = {f"http://{host}", f"https://{host}"} if host else set()
    own.add(request.app.state.public_origin)
    return None if origin in own - {""} else "origin"


async def load_session(request: Request[Any, Any, Any]) -> Session:
    """The request's session from its cookie, kept in the scope's state (its save and cookie come
    after the handler); an expired one is audited."""
    services = services_of(request)
    sid = request.cookies.get(cookie_name(services, "session"))
    session = await services.sessions.load(sid, services.now())
    request.scope["state"]["session"] = session
    if session.expired is not None and session.expired[0] is not None:
        await services.audit(
            "session.expired", account_id=session.expired[0], client=client_address(request), timeout=session.expired[1]
        )
    return session


async def before_request(request: Request[Any, Any, Any]) -> Response[Any] | None:
    """Load the session; refuse a state-changing request from another site; on every POST refuse
    duplicated fields and a missing or wrong CSRF token."""
    if (
        request.url.path.startswith(STATIC_PREFIX)
        or request.url.path in OPS_PATHS
        or request.url.path in getattr(request.app.state, "api_paths", ())
    ):
        return None
    await load_session(request)
    if request.method not in SAFE_METHODS and (why := cross_site(request)) is not None:
        log.info("cross-site request refused path=%s by=%s", request.url.path, why)
        return error_page(
            request,
            403,
            "Requête refusée",
            "Cette action doit être faite depuis une page de ce site. Revenez à l'accueil et recommencez.",
        )
    if request.method == "POST":
        form = await request.form()
        for key in form.keys():
            if len(form.getall(key)) > 1:
                return error_page(
                    request,
                    400,
                    "Requête invalide",
                    "Le formulaire envoyé contient un champ en double. Rechargez la page et recommencez.",
                )
        submitted = [request.headers.get(CSRF_HEADER, ""), str(form.get(CSRF_FIELD, ""))]
        if not _csrf_valid(request, submitted):
            log.info("csrf refused path=%s", request.url.path)
            return error_page(
                request,
                403,
                "Session expirée",
                "Votre page a expiré ou n'a pas été envoyée depuis ce site. Rechargez la page et recommencez.",
            )
    return None


def error_page(
    request: Request[Any, Any, Any],
    status: int,
    title: str,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    context: dict[str, Any] | None = None,
) -> Response[Any]:
    """A French error page (or, with htmx, its section, aimed at the page's main area)."""
    extra = dict(headers or {})
    if is_htmx(request):
        extra.update({"hx-retarget": "#contenu", "hx-reswap": "innerHTML"})
    caisse = services_of(request).config.caisse.name
    return render(
        request,
        "pages/error.html",
        {"title": title, "message": message, **(context or {})},
        status=status,
        title=f"{title} — Mon espace privé — {caisse}",
        headers=extra,
    )


UNAVAILABLE_TITLE = "Service momentanément indisponible"
UNAVAILABLE_MESSAGE = "Le service est momentanément indisponible. Veuillez réessayer dans quelques instants."
_TITLES = {
    404: ("Page introuvable", "La page demandée n'existe pas ou n'est plus disponible."),
    405: ("Action impossible", "Cette action n'est pas possible sur cette page."),
    413: ("Envoi trop volumineux", "Les informations envoyées sont trop volumineuses."),
    400: ("Requête invalide", "Les informations envoyées ne sont pas valides. Rechargez la page."),
}


def unavailable_page(
    request: Request[Any, Any, Any],
    *,
    title: str = UNAVAILABLE_TITLE,
    message: str = UNAVAILABLE_MESSAGE,
    context: dict[str, Any] | None = None,
) -> Response[Any]:
    """503 with Retry-After: a store the request needs is down; nothing pretends it went through."""
    return error_page(request, 503, title, message, headers={"retry-after": str(RETRY_AFTER_SECONDS)}, context=context)


def error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Every exception a handler raises: a store outage is a 503, an HTTP error its own page, the rest a 500."""
    if is_store_failure(exc):
        log.warning("store unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        status, title, message = 503, UNAVAILABLE_TITLE, UNAVAILABLE_MESSAGE
    else:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status >= 500:
            log.exception("unhandled error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        title, message = _TITLES.get(
            status,
            (
                "Service indisponible" if status >= 500 else "Requête invalide",
                "Une erreur est survenue. Veuillez réessayer dans quelques instants."
                if status >= 500
                else "Cette requête n'a pas pu être traitée.",
            ),
        )
    headers = {"retry-after": str(RETRY_AFTER_SECONDS)} if status == 503 else {}
    try:
        return error_page(request, status, title, message, headers=headers)
    except Exception:
        return Response(
            content=message,
            status_code=status,
            media_type=MediaType.TEXT,
            headers={"cache-control": "no-store", **headers},
        )


class SessionSaver:
    """Saves the request's session before the first byte of its answer goes out.

    A save that fails must not pretend: the answer becomes a 503 (or a 500 for a bug) instead of
    the handler's page with a cookie for a session that was never stored. ASGI middleware, outside
    the compression, so the replaced answer has not started yet.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        failure: Exception | None = None

        async def save_then_send(message: Message) -> None:
            nonlocal failure
            if failure is not None:
                return  # the rest of the handler's answer, replaced
            if message["type"] == "http.response.start":
                session: Session | None = scope.get("state", {}).get("session")
                if session is not None and session.dirty:
                    services: Services = scope["app"].state.services
                    try:
                        await services.sessions.commit(session, services.now())
                    except Exception as exc:
                        log.error("session store failed while saving a session: %s", type(exc).__name__)
                        session.lost = True  # no cookie for what was not stored
                        if message["status"] != 503:  # a 503 already says it (the logout's own page)
                            failure = exc
                            return
            await send(message)

        await self.app(scope, receive, save_then_send)
        if failure is not None:
            request: Request[Any, Any, Any] = scope["app"].request_class(scope=scope, receive=receive, send=send)
            response = error_handler(request, failure)
            await response.to_asgi_response(app=None, request=request)(scope, receive, send)


async def before_send(message: Message, scope: Scope) -> None:
    """Set the session's cookie (saved by SessionSaver), queued cookies and the security headers on every response."""
    if message["type"] != "http.response.start":
        return
    state = scope.get("state", {})
    headers: list[tuple[bytes, bytes]] = list(message.get("headers", []))
    message["headers"] = headers
    app = scope["app"]
    services: Services = app.state.services
    if take_enqueued():  # the handler's transactions are committed: the worker can see the message now
        wake = getattr(app.state, "wake_outbox", None)
        if wake is not None:
            wake()
    session: Session | None = state.get("session")
    cookies: list[Cookie] = list(state.get("cookies", []))
    if session is not None and session.dirty and not session.lost:  # saved by SessionSaver
        secure = services.config.sessions.secure_cookies
        name = cookie_name(services, "session")
        if session.sid and session.data is not None:
            cookies.append(Cookie(key=name, value=session.sid, path="/", secure=secure, httponly=True, samesite="lax"))
        elif session.cleared:
            cookies.append(
                Cookie(key=name, value="", max_age=0, path="/", secure=secure, httponly=True, samesite="lax")
            )
    for cookie in cookies:
        headers.append((b"set-cookie", cookie.to_header(header="").strip().encode("latin-1")))
    path = scope.get("path", "")
    existing = {k.lower() for k, _ in headers}
    fixed = [
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
        (b"x-frame-options", b"DENY"),
        (b"content-security-policy", getattr(app.state, "csp", _CSP_BYTES)),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"permissions-policy", b"interest-cohort=()"),
    ]
    if services.config.sessions.secure_cookies:
        fixed.append((b"strict-transport-security", b"max-age=63072000; includeSubDomains"))
    if not path.startswith(STATIC_PREFIX):
        fixed.append((b"cache-control", b"no-store"))
        vary = [v.decode("latin-1") for k, v in headers if k.lower() == b"vary"]
        headers[:] = [(k, v) for k, v in headers if k.lower() != b"vary"]
        wanted = {part.strip() for value in vary for part in value.split(",") if part.strip()} | {
            "HX-Request",
            "Cookie",
        }
        headers.append((b"vary", ", ".join(sorted(wanted)).encode("latin-1")))
    for key, value in fixed:
        if key not in existing:
            headers.append((key, value))


# --- rendering -------------------------------------------------------------------------------------


def base_context(request: Request[Any, Any, Any]) -> dict[str, Any]:
    services = services_of(request)
    session = request.scope["state"].get("session")
    return {
        "caisse": services.config.caisse,
        "citizen": services.config.citizen,
        "csrf_token": csrf_token(request),
        "logged_in": bool(session and session.data and session.data.level == FULL),
        "demo_mailbox": services.config.demo.mailbox,
        "static": request.app.state.static_names,
        # RGAA 4.1: every page states its compliance and links to the statement
        "accessibility_status": f"Accessibilité : {services.config.legal.accessibility.compliance} conforme",
    }


def is_htmx(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("hx-request") == "true" and request.headers.get("hx-history-restore-request") != "true"


def render(
    request: Request[Any, Any, Any],
    partial: str,
    context: dict[str, Any],
    *,
    status: int = 200,
    title: str,
    push_url: str | None = None,
    headers: dict[str, str] | None = None,
    whole_page: bool = False,
) -> Template:
    """The step's partial for htmx, the full page otherwise; Vary: HX-Request keeps caches apart.

    ``whole_page``: htmx too gets the full page, swapped in place of the body's content (the banner
    changes with it, as when a login is done) without a request of the browser's own."""
    full_context = {**base_context(request), **context, "partial": partial, "page_title": title}
    headers = dict(headers or {})
    if status == 422 and UNAVAILABLE in (context.get("errors") or {}).values():
        # a store the step needs is down (a counter store that cannot count): an outage, not bad input
        status = 503
        headers["retry-after"] = str(RETRY_AFTER_SECONDS)
    htmx = is_htmx(request)
    if push_url and htmx:
        headers["hx-push-url"] = push_url
    if whole_page and htmx:
        headers["hx-retarget"], headers["hx-reswap"] = "body", "innerHTML"
    name = partial if htmx and not whole_page else "page.html"
    # a handler annotated ``-> Any`` would otherwise label the HTML application/json
    return Template(
        template_name=name, context=full_context, status_code=status, headers=headers, media_type=MediaType.HTML
    )


class LeaveFor(Exception):
    """Raised by a handler to send the browser to another of our pages (see ``go``)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


def leave_for_handler(request: Request[Any, Any, Any], exc: LeaveFor) -> Response[Any]:
    return go(request, exc.url)


def go(request: Request[Any, Any, Any], url: str) -> Response[Any]:
    """Leave the step for ``url``: a full navigation with htmx, a 303 without."""
    url = safe_path(url)
    if is_htmx(request):
        return Response(content="", status_code=200, headers={"hx-redirect": url})
    return Redirect(path=url, status_code=303)


def safe_path(url: str) -> str:
    """Only our own absolute paths: never a scheme, a host or '//'."""
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return "/"
    return url


def step_status(result: StepResult) -> int:
    return 422 if result.errors else 200


def static_name(directory: Any, name: str) -> str:
    """A content-hashed file name, so static files can be cached for a year."""
    data = (directory / name).read_bytes()
    digest = hashlib.sha256(data).hexdigest()[:10]
    stem, _, ext = name.rpartition(".")
    return f"{stem}.{digest}.{ext}"


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
