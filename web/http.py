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
from litestar.enums import MediaType
from litestar.response import Redirect, Template
from litestar.types import Message, Scope

from guichet.core.flows.engine import StepResult
from guichet.core.outbox import take_enqueued
from guichet.core.services import Services
from guichet.core.sessions import FULL, Session

log = logging.getLogger("guichet.web")

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
STATIC_PREFIX = "/static/"
OPS_PATHS = frozenset({"/metrics", "/sante", "/sante/pret"})  # no session, no CSRF: probes and scrapers
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
       "base-uri 'none'; frame-ancestors 'none'; form-action 'self'; connect-src 'self'")


def services_of(request: Request[Any, Any, Any]) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def cookie_name(services: Services, name: str) -> str:
    # __Host- cookies are Secure, host-only and Path=/: a subdomain cannot plant one
    return f"__Host-guichet_{name}" if services.config.sessions.secure_cookies else f"guichet_{name}"


def session_of(request: Request[Any, Any, Any]) -> Session:
    return request.scope["state"]["session"]  # type: ignore[no-any-return]


def client_address(request: Request[Any, Any, Any]) -> str:
    """The client's address; X-Forwarded-For is believed only from a configured trusted proxy."""
    services = services_of(request)
    peer = request.client.host if request.client else ""
    trusted = services.config.security.trusted_proxies
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


def queue_cookie(request: Request[Any, Any, Any], cookie: Cookie) -> None:
    request.scope["state"].setdefault("cookies", []).append(cookie)


def set_flow_cookie(request: Request[Any, Any, Any], kind: str, flow_id: str | None) -> None:
    services = services_of(request)
    secure = services.config.sessions.secure_cookies
    name = cookie_name(services, f"flow_{kind}")
    if flow_id is None:
        queue_cookie(request, Cookie(key=name, value="", max_age=0, path="/", secure=secure, httponly=True,
                                     samesite="lax"))
    else:
        queue_cookie(request, Cookie(key=name, value=flow_id, path="/", secure=secure, httponly=True, samesite="lax",
                                     max_age=int(services.flows.lifetime.total_seconds())))


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
        queue_cookie(request, Cookie(key=cookie_name(services, "csrf"), value=seed, path="/", httponly=True,
                                     secure=services.config.sessions.secure_cookies, samesite="strict"))
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
    return Response(content=message, status_code=status, media_type=MediaType.TEXT,
                    headers={"cache-control": "no-store"})


async def before_request(request: Request[Any, Any, Any]) -> Response[Any] | None:
    """Load the session; on every POST refuse duplicated fields and a missing or wrong CSRF token."""
    if request.url.path.startswith(STATIC_PREFIX) or request.url.path in OPS_PATHS:
        return None
    services = services_of(request)
    sid = request.cookies.get(cookie_name(services, "session"))
    session = await services.sessions.load(sid, services.now())
    request.scope["state"]["session"] = session
    if session.expired is not None and session.expired[0] is not None:
        await services.audit("session.expired", account_id=session.expired[0], client=client_address(request),
                             timeout=session.expired[1])
    if request.method == "POST":
        form = await request.form()
        for key in form.keys():
            if len(form.getall(key)) > 1:
                return _error_page(request, 400, "Requête invalide",
                                   "Le formulaire envoyé contient un champ en double. Rechargez la page et recommencez.")
        submitted = [request.headers.get(CSRF_HEADER, ""), str(form.get(CSRF_FIELD, ""))]
        if not _csrf_valid(request, submitted):
            log.info("csrf refused path=%s", request.url.path)
            return _error_page(request, 403, "Session expirée",
                               "Votre page a expiré ou n'a pas été envoyée depuis ce site. "
                               "Rechargez la page et recommencez.")
    return None


def _error_page(request: Request[Any, Any, Any], status: int, title: str, message: str) -> Response[Any]:
    return Template(template_name="pages/error.html", status_code=status, media_type=MediaType.HTML,
                    context={"title": title, "message": message, **base_context(request)})


async def before_send(message: Message, scope: Scope) -> None:
    """Save the session, set queued cookies and the security headers on every response."""
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
    if session is not None and session.dirty:
        try:
            await services.sessions.commit(session, services.now())
        except Exception:
            log.error("session store failed while saving a session")
        secure = services.config.sessions.secure_cookies
        name = cookie_name(services, "session")
        if session.sid and session.data is not None:
            cookies.append(Cookie(key=name, value=session.sid, path="/", secure=secure, httponly=True, samesite="lax"))
        elif session.cleared:
            cookies.append(Cookie(key=name, value="", max_age=0, path="/", secure=secure, httponly=True, samesite="lax"))
    for cookie in cookies:
        headers.append((b"set-cookie", cookie.to_header(header="").strip().encode("latin-1")))
    path = scope.get("path", "")
    existing = {k.lower() for k, _ in headers}
    fixed = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin"),
             (b"x-frame-options", b"DENY"), (b"content-security-policy", CSP.encode()),
             (b"cross-origin-opener-policy", b"same-origin"), (b"permissions-policy", b"interest-cohort=()")]
    if services.config.sessions.secure_cookies:
        fixed.append((b"strict-transport-security", b"max-age=63072000; includeSubDomains"))
    if not path.startswith(STATIC_PREFIX):
        fixed.append((b"cache-control", b"no-store"))
        vary = [v.decode("latin-1") for k, v in headers if k.lower() == b"vary"]
        headers[:] = [(k, v) for k, v in headers if k.lower() != b"vary"]
        wanted = {part.strip() for value in vary for part in value.split(",") if part.strip()} | {"HX-Request", "Cookie"}
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
        "csrf_token": csrf_token(request),
        "logged_in": bool(session and session.data and session.data.level == FULL),
        "demo_mailbox": services.config.demo.mailbox,
        "static": request.app.state.static_names,
    }


def is_htmx(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("hx-request") == "true" and request.headers.get("hx-history-restore-request") != "true"


def render(request: Request[Any, Any, Any], partial: str, context: dict[str, Any], *, status: int = 200,
           title: str, push_url: str | None = None) -> Template:
    """The step's partial for htmx, the full page otherwise; Vary: HX-Request keeps caches apart."""
    full_context = {**base_context(request), **context, "partial": partial, "page_title": title}
    headers: dict[str, str] = {}
    if push_url and is_htmx(request):
        headers["hx-push-url"] = push_url
    name = partial if is_htmx(request) else "page.html"
    # a handler annotated ``-> Any`` would otherwise label the HTML application/json
    return Template(template_name=name, context=full_context, status_code=status, headers=headers,
                    media_type=MediaType.HTML)


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
