"""Registration pages: /inscription/<step>, one step per page, htmx swapping only the step."""

from __future__ import annotations

import datetime as dt
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.response import Redirect

from guichet.core.flows import registration as flow
from guichet.core.flows.common import channel_view
from guichet.core.flows.engine import FlowState, StepResult
from guichet.core.identifiers import format_phone
from guichet.core.third_party import STRUCTURE_KINDS
from guichet.web.forms import form_of
from guichet.web.http import client_address, flow_cookie, render, services_of, step_status
from guichet.web.wizard import Wizard

TITLES = {
    "statut": "Vous êtes...",
    "identifiant": "Votre identifiant",
    "coordonnees": "Vos coordonnées",
    "question": "Vérification de votre identité",
    "canal": "Réception du code de sécurité",
    "code": "Votre code de sécurité",
    "termine": "Votre inscription est enregistrée",
    "structure": "Nature de votre structure",
    "demande": "Votre demande d'inscription",
    "demande-envoyee": "Votre demande est transmise",
}

FINISHED = ("termine", "demande-envoyee")


def _context(request: Request[Any, Any, Any], state: FlowState, step: str, result: StepResult | None) -> dict[str, Any]:
    services = services_of(request)
    order = flow.steps_for(state)
    values = {k: str(v) for k, v in state.data.items() if isinstance(v, str)}
    if step == "coordonnees":  # shown again as a person types them, not as stored
        if values.get("birth_date"):
            values["birth_date"] = dt.date.fromisoformat(values["birth_date"]).strftime("%d/%m/%Y")
        if values.get("mobile"):
            values["mobile"] = format_phone(values["mobile"])
    values.update(state.drafts.get(step, {}))  # what was typed before "< Précédent" wins over older answers
    if result is not None:
        values.update(result.values)
    status = flow.current_status(services, state)
    visible = [s for s in order if s != "statut"]
    context: dict[str, Any] = {
        "step": step,
        "values": values,
        "errors": result.errors if result else {},
        "notice": result.notice if result else "",
        "status": status,
        "statuses": services.host.statuses(),
        "position": (order.index(step) + 1, len(order)),
        "visible_steps": visible,
        "action": f"/inscription/{step}",
        "titles": TITLES,
    }
    if step == "question":
        context["questions"] = flow.questions_for(services, state)
    elif step == "canal":
        context["channels"] = [
            {**channel_view(services, c), "destination": flow.typed_contact(services, state, c)}
            for c in flow.channels_for(services, state)
        ]
    elif step == "code":
        policy = services.host.code_policy("registration")
        channel = str(state.data.get("channel", ""))
        context.update(
            channel=channel_view(services, channel),
            length=policy.length,
            lifetime_minutes=policy.lifetime_minutes,
            destination=flow.typed_contact(services, state, channel),
        )
    elif step == "termine":
        context["outcome"] = channel_view(services, str(state.data.get("outcome_channel", "")))
    elif step in ("structure", "demande", "demande-envoyee"):
        context["structure_kinds"] = STRUCTURE_KINDS
        context["structure"] = STRUCTURE_KINDS.get(str(state.data.get("structure", "")))
    return context


async def _page(request: Request[Any, Any, Any], state: FlowState, step: str, result: StepResult | None = None) -> Any:
    order = flow.steps_for(state)
    position, total = order.index(step) + 1, len(order)
    services = services_of(request)
    caisse = services.config.caisse.name
    title = f"Étape {position} sur {total} — {TITLES[step]} — Mon espace privé — {caisse}"
    context = _context(request, state, step, result)
    if step == "code":  # a code the server refused for good is told, with the other contact to try
        context.update(await flow.code_delivery(services, state, flow_cookie(request, flow.KIND)))
    return render(
        request,
        f"steps/registration/{step}.html",
        context,
        status=step_status(result) if result else 200,
        title=title,
        push_url=f"/inscription/{step}",
    )


WIZARD = Wizard(
    kind=flow.KIND, base="/inscription", first="statut", finished=FINISHED, steps=flow.steps_for, page=_page
)


class RegistrationController(Controller):
    path = "/inscription"

    @get("/")
    async def start(self) -> Response[Any]:
        return Redirect(path="/inscription/statut", status_code=303)

    @get("/{step:str}")
    async def show(self, request: Request[Any, Any, Any], step: str) -> Any:
        return await WIZARD.show(request, step)

    @post("/abandon")
    async def abandon(self, request: Request[Any, Any, Any]) -> Response[Any]:
        return await WIZARD.abandon(request, "/")

    @post("/{step:str}")
    async def submit(self, request: Request[Any, Any, Any], step: str) -> Any:
        services = services_of(request)
        client = client_address(request)

        async def handle(state: FlowState, step: str, form: dict[str, str], flow_id: str) -> StepResult:
            return await _dispatch(services, state, step, form, flow_id, client)

        return await WIZARD.submit(request, step, await form_of(request), handle)


async def _dispatch(
    services: Any, state: FlowState, step: str, form: dict[str, str], flow_id: str, client: str
) -> StepResult:
    if step == "statut":
        return await flow.submit_status(services, state, form, client)
    if step == "identifiant":
        return await flow.submit_identifier(services, state, form)
    if step == "coordonnees":
        return await flow.submit_contact(services, state, form)
    if step == "question":
        return await flow.submit_question(services, state, form, client)
    if step == "canal":
        return await flow.submit_channel(services, state, form, flow_id, client=client)
    if step == "code":
        if form.get("action") == "renvoyer":
            return await flow.resend_code(services, state, flow_id, client=client)
        if form.get("action") == "autre-canal":
            return await flow.switch_channel(services, state, flow_id, client=client)
        return await flow.submit_code(services, state, form, flow_id, client)
    if step == "structure":
        return await flow.submit_structure(services, state, form)
    if step == "demande":
        return await flow.submit_request(services, state, form, client)
    return StepResult(step=state.step)
