"""Mon compte, « Sécurité de connexion »: the person's authenticators, added and removed after the
password again (a stolen session alone changes nothing here), each change told to the owner."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from litestar import Controller, Request, get, post

from guichet.core.flows import account as account_flow
from guichet.core.flows import authenticate
from guichet.core.flows.engine import StepResult
from guichet.core.structs import Authenticator, Challenge
from guichet.web.controllers.account import require_account
from guichet.web.forms import form_of
from guichet.web.http import client_address, go, render, services_of, session_of, step_status

SECURITY_URL = "/mon-compte/securite"
CONFIRM_URL = f"{SECURITY_URL}/confirmer"
NO_ADDRESS = (
    "Votre MSA ne connaît pas d'adresse postale pour vous : les codes de secours ne peuvent pas vous être "
    "envoyés. Contactez l'assistance Internet de votre MSA."
)
ADDED = {"page": "{} : ajout enregistré.", "letter": "{} : un courrier vous sera envoyé dans les prochains jours."}


def _title(request: Request[Any, Any, Any], heading: str) -> str:
    return f"{heading} — Mon espace privé — {services_of(request).config.caisse.name}"


def _enrollable(request: Request[Any, Any, Any], name: str) -> Authenticator | None:
    found = services_of(request).host.authenticator(name)
    return found if found is not None and found.enrolment in ("page", "letter") else None


async def _security_page(
    request: Request[Any, Any, Any], account: dict[str, Any], notice: str = "", errors: dict[str, str] | None = None
) -> Any:
    services = services_of(request)
    session = session_of(request)
    offers = await authenticate.holdings(services, account)
    return render(
        request,
        "pages/securite.html",
        {
            "offers": offers,
            "notice": notice,
            "errors": errors or {},
            "must_enrol": bool(session.data and session.data.must_enrol),
            "required": authenticate.phishing_resistance_required(services, account),
        },
        status=422 if errors else 200,
        title=_title(request, "Sécurité de connexion"),
        push_url=SECURITY_URL,
    )


def _confirm_first(request: Request[Any, Any, Any], then: str) -> Any:
    return go(request, f"{CONFIRM_URL}?suite={quote(then, safe='')}")


def _enrol_page(
    request: Request[Any, Any, Any],
    authenticator: Authenticator,
    challenge: Challenge,
    result: StepResult | None = None,
    label: str = "",
) -> Any:
    return render(
        request,
        "steps/account/securite_ajout.html",
        {
            "authenticator": authenticator,
            "prompt": challenge.prompt,
            "action": f"{SECURITY_URL}/{authenticator.name}/ajouter",
            "errors": result.errors if result else {},
            "label_value": label,
        },
        status=step_status(result) if result else 200,
        title=_title(request, authenticator.label_fr),
        push_url=f"{SECURITY_URL}/{authenticator.name}/ajouter",
    )


class SecurityController(Controller):
    path = SECURITY_URL

    @get("/")
    async def show(self, request: Request[Any, Any, Any]) -> Any:
        account = await require_account(request)
        return await _security_page(request, account)

    @get("/confirmer")
    async def confirm(self, request: Request[Any, Any, Any], suite: str = "") -> Any:
        await require_account(request)
        return render(
            request,
            "steps/account/securite_confirmer.html",
            {"errors": {}, "suite": _next(suite)},
            title=_title(request, "Confirmez votre identité"),
        )

    @post("/confirmer")
    async def submit_confirm(self, request: Request[Any, Any, Any]) -> Any:
        account = await require_account(request)
        services = services_of(request)
        form = await form_of(request)
        then = _next(form.get("suite", ""))
        refusal = await account_flow.verify_current(
            services, account, form.get("current_password", ""), client=client_address(request)
        )
        if refusal:
            return render(
                request,
                "steps/account/securite_confirmer.html",
                {"errors": {"current_password": refusal}, "suite": then},
                status=422,
                title=_title(request, "Confirmez votre identité"),
            )
        authenticate.mark_reauthenticated(services, session_of(request))
        return go(request, then)

    @get("/{name:str}/ajouter")
    async def add(self, request: Request[Any, Any, Any], name: str) -> Any:
        account, authenticator, leave = await _enrolment_allowed(request, name)
        if leave is not None:
            return leave
        assert authenticator is not None
        services = services_of(request)
        session = session_of(request)
        if authenticator.enrolment == "letter" and await authenticate.letter_recipient(services, account) is None:
            return await _security_page(request, account, errors={"ajout": NO_ADDRESS})
        challenge = await authenticate.begin_enrolment(services, session, authenticator, account)
        return _enrol_page(request, authenticator, challenge)

    @post("/{name:str}/ajouter")
    async def submit_add(self, request: Request[Any, Any, Any], name: str) -> Any:
        account, authenticator, leave = await _enrolment_allowed(request, name)
        if leave is not None:
            return leave
        assert authenticator is not None
        services = services_of(request)
        session = session_of(request)
        form = await form_of(request)
        try:
            check, message = await authenticate.finish_enrolment(
                services, session, authenticator, account, form, client=client_address(request)
            )
        except LookupError:  # no address for the letter any more
            return await _security_page(request, account, errors={"ajout": NO_ADDRESS})
        if message:
            challenge = authenticate.enrolment_under_way(services, session, name) or await authenticate.begin_enrolment(
                services, session, authenticator, account
            )
            return _enrol_page(
                request,
                authenticator,
                challenge,
                StepResult(step="ajout", errors={"code": message}),
                form.get("label", ""),
            )
        return await _security_page(
            request, account, notice=ADDED[authenticator.enrolment].format(authenticator.label_fr)
        )

    @post("/{name:str}/{enrolment_id:int}/supprimer")
    async def remove(self, request: Request[Any, Any, Any], name: str, enrolment_id: int) -> Any:
        account = await require_account(request)
        services = services_of(request)
        authenticator = _enrollable(request, name)
        if authenticator is None:
            return go(request, SECURITY_URL)
        if not authenticate.recently_reauthenticated(services, session_of(request)):
            return _confirm_first(request, SECURITY_URL)
        removed = await authenticate.remove(
            services, authenticator, account, enrolment_id, client=client_address(request)
        )
        notice = f"{authenticator.label_fr} : suppression enregistrée." if removed else ""
        return await _security_page(request, account, notice=notice)


async def _enrolment_allowed(
    request: Request[Any, Any, Any], name: str
) -> tuple[dict[str, Any], Authenticator | None, Any]:
    """The account and the authenticator to enrol, or where to go first: back to the list for an
    authenticator nobody enrols here, the password again when it was not typed in the last minutes."""
    account = await require_account(request)
    authenticator = _enrollable(request, name)
    if authenticator is None:
        return account, None, go(request, SECURITY_URL)
    if not authenticate.recently_reauthenticated(services_of(request), session_of(request)):
        return account, authenticator, _confirm_first(request, f"{SECURITY_URL}/{name}/ajouter")
    return account, authenticator, None


def _next(suite: str) -> str:
    """Where a re-authentication leads: only a page of this section."""
    return suite if suite.startswith(f"{SECURITY_URL}/") and "//" not in suite and "\\" not in suite else SECURITY_URL
