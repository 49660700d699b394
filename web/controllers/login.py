"""Login pages: /connexion (identifier and password), /connexion/code (the second factor), /deconnexion."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from litestar import Controller, Request, Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import Cookie

from guichet.core.availability import is_store_failure
from guichet.core.flows import login as flow
from guichet.core.flows.engine import StepResult
from guichet.core.sessions import FULL, PASSWORD
from guichet.web import metrics
from guichet.web.controllers.account import HOME_URL, home_page
from guichet.web.forms import form_of
from guichet.web.http import (
    audit_quietly,
    client_address,
    cookie_name,
    error_handler,
    go,
    is_htmx,
    queue_cookie,
    render,
    services_of,
    session_of,
    step_status,
    unavailable_page,
)
from guichet.web.oidc.routes import end_login, return_target

LOGOUT_FAILED = (
    "La déconnexion n'a pas abouti : le service est momentanément indisponible et votre session "
    "est toujours ouverte. Réessayez dans quelques instants. Sur un ordinateur partagé, fermez "
    "aussi le navigateur."
)


def _login_page(
    request: Request[Any, Any, Any], result: StepResult | None = None, *, return_to: str = "", force_code: bool = False
) -> Any:
    caisse = services_of(request).config.caisse.name
    return render(
        request,
        "steps/login/connexion.html",
        {
            "values": result.values if result else {},
            "errors": result.errors if result else {},
            "retour": return_to,
            "force_code": force_code,
            "passwordless": flow.passwordless_offers(services_of(request)),
        },
        status=step_status(result) if result else 200,
        title=f"Connexion — Mon espace privé — {caisse}",
        push_url="/connexion",
    )


async def _code_page(
    request: Request[Any, Any, Any], result: StepResult | None = None, info: dict[str, Any] | None = None
) -> Any:
    services = services_of(request)
    if info is None:
        info = await flow.code_page(services, session_of(request))
    if not info or (result is not None and result.step == "connexion"):
        return go(request, "/connexion")  # the flow ended this login (its account gone or its password changed)
    context = {
        "values": result.values if result else {},
        "errors": result.errors if result else {},
        "notice": result.notice if result else "",
        **info,
    }
    return render(
        request,
        "steps/login/code.html",
        context,
        status=step_status(result) if result else 200,
        title=f"Code de sécurité — Mon espace privé — {services.config.caisse.name}",
        push_url="/connexion/code",
    )


def _queue_trusted(request: Request[Any, Any, Any], token: str) -> None:
    """The trusted-browser cookie, when the person just asked for it."""
    if not token:
        return
    services = services_of(request)
    queue_cookie(
        request,
        Cookie(
            key=cookie_name(services, "trusted"),
            value=token,
            path="/",
            httponly=True,
            secure=services.config.sessions.secure_cookies,
            samesite="strict",
            max_age=services.config.security.trusted_browser_days * 86400,
        ),
    )


def _method_page(request: Request[Any, Any, Any], page: flow.MethodPage, result: StepResult | None = None) -> Any:
    return render(
        request,
        "steps/login/methode.html",
        {
            "method": page,
            "action": f"{flow.METHOD_URL}/{page.name}",
            "errors": result.errors if result else {},
            "notice": result.notice if result else "",
        },
        status=step_status(result) if result else 200,
        title=f"{page.label} — Mon espace privé — {services_of(request).config.caisse.name}",
        push_url=f"{flow.METHOD_URL}/{page.name}",
    )


def _passwordless_page(
    request: Request[Any, Any, Any], name: str, prompt: Any, result: StepResult | None = None, return_to: str = ""
) -> Any:
    services = services_of(request)
    found = services.host.authenticator(name)
    action = f"{flow.PASSWORDLESS_URL}/{name}" + (f"?retour={quote(return_to, safe='')}" if return_to else "")
    return render(
        request,
        "steps/login/sans_mot_de_passe.html",
        {
            "prompt": prompt,
            "label": f"Se connecter avec une {found.label_fr.lower()}" if found else "",
            "action": action,
            "errors": result.errors if result else {},
        },
        status=step_status(result) if result else 200,
        title=f"Connexion — Mon espace privé — {services.config.caisse.name}",
    )


async def _step_done(request: Request[Any, Any, Any], outcome: flow.LoginOutcome) -> Any:
    """Where a finished step leads. A login done, asked with htmx and owing nothing first (a password
    to personalise, contacts to confirm, a service waiting): Mon espace privé in this very answer."""
    if outcome.next_url == HOME_URL and outcome.account is not None and is_htmx(request):
        return await home_page(request, outcome.account, in_place=True)
    return go(request, outcome.next_url)


class LoginController(Controller):
    path = "/connexion"

    @get("/")
    async def show(self, request: Request[Any, Any, Any], retour: str = "", code: str = "") -> Any:
        """The login form; with ``retour`` (a service waiting, web/oidc) it is shown even to a logged-in
        person, since the service asked for a new login, and ``code=oui`` asks for a code on any browser."""
        session = session_of(request)
        return_to = return_target(retour)
        if session.data and session.data.level == FULL and not return_to:
            return go(request, "/espace-prive")
        return _login_page(request, return_to=return_to, force_code=code == "oui")

    @post("/")
    async def submit(self, request: Request[Any, Any, Any]) -> Any:
        services = services_of(request)
        session = session_of(request)
        form = await form_of(request)
        trusted = request.cookies.get(cookie_name(services, "trusted"))
        if session.data is not None:  # a new login starts from a clean session
            session.clear()
            session.cleared = False
        return_to = return_target(form.get("retour", ""))
        force_code = form.get("code") == "oui"
        outcome = await flow.submit_password(
            services,
            session,
            form,
            client=client_address(request),
            trusted_token=trusted,
            return_to=return_to,
            trust_browser=not force_code,
            preferred_channel=request.cookies.get(cookie_name(services, "code_channel"), ""),
            with_code_page=is_htmx(request),
        )
        metrics.step("login", "connexion", not outcome.result.errors)
        if outcome.next_url:
            return await _step_done(request, outcome)
        if outcome.result.step == "code":
            if outcome.result.errors:
                return await _code_page(request, outcome.result)
            if outcome.code_page is not None:  # htmx: the next step in this response, its URL pushed
                return await _code_page(request, info=outcome.code_page)
            return go(request, "/connexion/code")  # without JavaScript: a GET, so a reload sends nothing again
        return _login_page(request, outcome.result, return_to=return_to, force_code=force_code)

    @get("/methode/{name:str}")
    async def method(self, request: Request[Any, Any, Any], name: str) -> Any:
        """Another authenticator than the codes, for the second step: a new challenge each time."""
        page = await flow.method_page(services_of(request), session_of(request), name)
        if page is None:
            return go(request, "/connexion")
        return _method_page(request, page)

    @post("/methode/{name:str}")
    async def submit_method(self, request: Request[Any, Any, Any], name: str) -> Any:
        services = services_of(request)
        session = session_of(request)
        form = await form_of(request)
        form["user_agent"] = request.headers.get("user-agent", "")[:300]
        outcome = await flow.submit_method(services, session, name, form, client=client_address(request))
        metrics.step("login", "methode", not outcome.result.errors)
        _queue_trusted(request, outcome.set_trusted_cookie)
        if outcome.next_url:
            return await _step_done(request, outcome)
        page = await flow.method_page(services, session, name) if outcome.result.step == "methode" else None
        if page is None:
            return go(request, "/connexion")
        return _method_page(request, page, outcome.result)

    @get("/sans-mot-de-passe/{name:str}")
    async def passwordless(self, request: Request[Any, Any, Any], name: str, retour: str = "") -> Any:
        """A whole login with an authenticator that replaces the password (a passkey), when allowed."""
        session = session_of(request)
        return_to = return_target(retour)
        if session.data is not None and session.data.level != FULL:  # a half-done login starts over
            session.clear()
            session.cleared = False
        if session.data and session.data.level == FULL and not return_to:
            return go(request, "/espace-prive")
        prompt = await flow.passwordless_page(services_of(request), session, name)
        if prompt is None:
            return go(request, "/connexion")
        return _passwordless_page(request, name, prompt, return_to=return_to)

    @post("/sans-mot-de-passe/{name:str}")
    async def submit_passwordless(self, request: Request[Any, Any, Any], name: str, retour: str = "") -> Any:
        services = services_of(request)
        session = session_of(request)
        return_to = return_target(retour)
        form = await form_of(request)
        outcome = await flow.submit_passwordless(
            services, session, name, form, client=client_address(request), return_to=return_to
        )
        metrics.step("login", "sans-mot-de-passe", not outcome.result.errors)
        if outcome.next_url:
            return await _step_done(request, outcome)
        prompt = await flow.passwordless_page(services, session, name)
        if prompt is None:
            return go(request, "/connexion")
        return _passwordless_page(request, name, prompt, outcome.result, return_to=return_to)

    @get("/code")
    async def code(self, request: Request[Any, Any, Any]) -> Any:
        session = session_of(request)
        if not session.data or session.data.level != PASSWORD:
            return go(request, "/connexion")
        return await _code_page(request)

    @post("/code")
    async def submit_code(self, request: Request[Any, Any, Any]) -> Any:
        services = services_of(request)
        session = session_of(request)
        if not session.data or session.data.level != PASSWORD:
            return go(request, "/connexion")
        form = await form_of(request)
        if form.get("action") == "renvoyer":
            return await _code_page(
                request, await flow.resend(services, session, form.get("channel", ""), client=client_address(request))
            )
        if form.get("action") == "autre-canal":
            return await _code_page(request, await flow.resend_other(services, session, client=client_address(request)))
        form["user_agent"] = request.headers.get("user-agent", "")[:300]
        outcome = await flow.submit_code(services, session, form, client=client_address(request))
        metrics.step("login", "code", not outcome.result.errors)
        _queue_trusted(request, outcome.set_trusted_cookie)
        if outcome.chosen_channel:  # not a secret: a channel name, which only orders the person's proven ones
            queue_cookie(
                request,
                Cookie(
                    key=cookie_name(services, "code_channel"),
                    value=outcome.chosen_channel,
                    path="/",
                    httponly=True,
                    secure=services.config.sessions.secure_cookies,
                    samesite="lax",
                    max_age=365 * 86400,
                ),
            )
        if outcome.next_url:
            return await _step_done(request, outcome)
        if outcome.result.step == "connexion":
            return go(request, "/connexion")
        return await _code_page(request, outcome.result)


def _logout_failed(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A store failure anywhere in a logout (loading the session, deleting it): a 503 that says the
    session is still open, and a ``logout.failed`` audit event; never a redirect that pretends."""
    if not is_store_failure(exc):
        return error_handler(request, exc)
    services = services_of(request)
    session = request.scope["state"].get("session")
    account_id = session.data.account_id if session is not None and session.data is not None else None
    if session is not None:
        session.dirty = False  # the cookie stays: the person can try again
    response = unavailable_page(
        request, title="Déconnexion impossible", message=LOGOUT_FAILED, context={"retry_logout": True}
    )
    response.background = BackgroundTask(
        audit_quietly, services, "logout.failed", account_id=account_id, client=client_address(request)
    )
    return response


class LogoutController(Controller):
    path = "/deconnexion"
    exception_handlers = {Exception: _logout_failed}

    @post("/")
    async def logout(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """The session is deleted here, before the answer goes out (a store failure: ``_logout_failed``)."""
        services = services_of(request)
        session = session_of(request)
        account_id = session.data.account_id if session.data is not None else None
        notify = await end_login(request)
        await services.sessions.end(session)
        if account_id is not None:
            await audit_quietly(services, "logout", account_id=account_id, client=client_address(request))
        response = go(request, "/?deconnexion=faite")
        response.background = notify
        return response
