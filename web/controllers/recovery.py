"""Forgotten password pages: /mot-de-passe-oublie/<step>."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.response import Redirect

from guichet.core.flows import recovery as flow
from guichet.core.flows.common import channel_view
from guichet.core.flows.engine import FlowState, StepResult
from guichet.web.forms import form_of
from guichet.web.http import client_address, flow_cookie, render, services_of, step_status
from guichet.web.oidc.routes import end_other_logins
from guichet.web.wizard import Wizard

TITLES = {
    "identifiant": "Vérification de votre identité",
    "canal": "Demande d'un nouveau mot de passe",
    "code": "Demande d'un nouveau mot de passe",
    "confirmation": "Confirmation",
}


async def _page(request: Request[Any, Any, Any], state: FlowState, step: str, result: StepResult | None = None) -> Any:
    services = services_of(request)
    policy = services.host.code_policy("recovery")
    values = dict(state.drafts.get(step, {}))
    if step == "identifiant" and "identifier" in state.data:
        values.setdefault("identifier", state.data["identifier"])
    if "channel" in state.data:
        values.setdefault("channel", state.data["channel"])
    if result is not None:
        values.update(result.values)
    context = {
        "step": step,
        "values": values,
        "errors": result.errors if result else {},
        "notice": result.notice if result else "",
        "channels": [channel_view(services, c) for c in flow.channels(services)],
        "channel": channel_view(services, str(state.data.get("channel", ""))),
        "length": policy.length,
        "lifetime_minutes": policy.lifetime_minutes,
        "action": f"/mot-de-passe-oublie/{step}",
        "position": (flow.STEPS.index(step) + 1, len(flow.STEPS)),
    }
    if step == "code":  # a code the server refused for good is told, with the other channel to try
        context.update(await flow.code_delivery(services, state, flow_cookie(request, flow.KIND)))
    position = flow.STEPS.index(step) + 1
    title = (
        f"Étape {position} sur {len(flow.STEPS)} — {TITLES[step]} — Mon espace privé — {services.config.caisse.name}"
    )
    return render(
        request,
        f"steps/recovery/{step}.html",
        context,
        status=step_status(result) if result else 200,
        title=title,
        push_url=f"/mot-de-passe-oublie/{step}",
    )


WIZARD = Wizard(
    kind=flow.KIND,
    base="/mot-de-passe-oublie",
    first="identifiant",
    finished=("confirmation",),
    steps=lambda state: flow.STEPS,
    page=_page,
)


class RecoveryController(Controller):
    path = "/mot-de-passe-oublie"

    @get("/")
    async def start(self) -> Response[Any]:
        return Redirect(path="/mot-de-passe-oublie/identifiant", status_code=303)

    @get("/{step:str}")
    async def show(self, request: Request[Any, Any, Any], step: str) -> Any:
        return await WIZARD.show(request, step)

    @post("/abandon")
    async def abandon(self, request: Request[Any, Any, Any]) -> Response[Any]:
        return await WIZARD.abandon(request, "/connexion")

    @post("/{step:str}")
    async def submit(self, request: Request[Any, Any, Any], step: str) -> Any:
        services = services_of(request)
        client = client_address(request)
        ended: BackgroundTask | None = None

        async def handle(state: FlowState, step: str, form: dict[str, str], flow_id: str) -> StepResult:
            nonlocal ended
            if step == "identifiant":
                return await flow.submit_identifier(services, state, form, client)
            if step == "canal":
                return await flow.submit_channel(services, state, form, flow_id, client)
            if form.get("action") == "renvoyer":
                return await flow.resend_code(services, state, flow_id, client=client)
            if form.get("action") == "autre-canal":
                return await flow.switch_channel(services, state, flow_id, client=client)
            result = await flow.submit_code(services, state, form, flow_id, client)
            if result.ok and result.step == "confirmation":
                # the temporary password ended every session of the account: what they reached at
                # the caisse's services ends too, before anyone logs in again
                ended = await end_other_logins(request, state.data["reset_account_id"], keep_own=False)
            return result

        response = await WIZARD.submit(request, step, await form_of(request), handle)
        if ended is not None:
            response.background = ended
        return response
