"""Registration pages: /inscription/<step>, one step per page, htmx swapping only the step."""
from __future__ import annotations

import datetime as dt
from typing import Any

from litestar import Controller, Request, Response, get, post

from core import metrics
from core.flows import registration as flow
from core.flows.engine import FlowState, StepResult, reachable
from core.identifiers import format_phone
from core.third_party import STRUCTURE_KINDS
from web.forms import form_of
from web.http import client_address, flow_cookie, go, render, services_of, set_flow_cookie, step_status

TITLES = {"statut": "Vous êtes...", "identifiant": "Votre identifiant", "coordonnees": "Vos coordonnées",
          "question": "Vérification de votre identité", "canal": "Réception du code de sécurité",
          "code": "Votre code de sécurité", "termine": "Votre inscription est enregistrée",
          "structure": "Nature de votre structure", "demande": "Votre demande d'inscription",
          "demande-envoyee": "Votre demande est transmise"}

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
        "step": step, "values": values, "errors": result.errors if result else {},
        "notice": result.notice if result else "", "status": status,
        "statuses": services.host.statuses(), "position": (order.index(step) + 1, len(order)),
        "visible_steps": visible, "action": f"/inscription/{step}", "titles": TITLES,
    }
    if step == "question":
        context["questions"] = flow.questions_for(services, state)
    elif step == "canal":
        context["channels"] = flow.channels_for(services, state)
    elif step == "code":
        policy = services.host.code_policy("registration")
        context.update(channel=state.data.get("channel"), length=policy.length,
                       lifetime_minutes=policy.lifetime_minutes,
                       destination=state.data.get("email") if state.data.get("channel") == "email"
                       else state.data.get("mobile"))
    elif step == "termine":
        context["outcome_channel"] = state.data.get("outcome_channel", "postal")
    elif step in ("structure", "demande", "demande-envoyee"):
        context["structure_kinds"] = STRUCTURE_KINDS
        context["structure"] = STRUCTURE_KINDS.get(str(state.data.get("structure", "")))
    return context


def _page(request: Request[Any, Any, Any], state: FlowState, step: str, result: StepResult | None = None) -> Any:
    order = flow.steps_for(state)
    position, total = order.index(step) + 1, len(order)
    caisse = services_of(request).config.caisse.name
    title = f"Étape {position} sur {total} — {TITLES[step]} — Mon espace privé — {caisse}"
    return render(request, f"steps/registration/{step}.html", _context(request, state, step, result),
                  status=step_status(result) if result else 200, title=title,
                  push_url=f"/inscription/{step}")


class RegistrationController(Controller):
    path = "/inscription"

    @get("/")
    async def start(self) -> Response[Any]:
        from litestar.response import Redirect

        return Redirect(path="/inscription/statut", status_code=303)

    @get("/{step:str}")
    async def show(self, request: Request[Any, Any, Any], step: str) -> Any:
        services = services_of(request)
        state = await services.flows.load(flow.KIND, flow_cookie(request, flow.KIND), services.now())
        if state is not None and step == "statut" and state.step in FINISHED:
            state = None  # the last registration is over: another one may start on this browser
        if state is None:
            state = FlowState(kind=flow.KIND, step="statut")
            if step != "statut":
                return go(request, "/inscription/statut")
        order = flow.steps_for(state)
        if step not in order or not reachable(state, step, order) or (step == "termine" and state.step != "termine"):
            return go(request, f"/inscription/{state.step}")
        if state.step == "termine" and step != "termine" or state.step == "demande-envoyee" and step != state.step:
            return go(request, f"/inscription/{state.step}")
        return _page(request, state, step)

    @post("/abandon")
    async def abandon(self, request: Request[Any, Any, Any]) -> Response[Any]:
        services = services_of(request)
        flow_id = flow_cookie(request, flow.KIND)
        if flow_id:
            await services.flows.drop(flow_id)
        set_flow_cookie(request, flow.KIND, None)
        return go(request, "/")

    @post("/{step:str}")
    async def submit(self, request: Request[Any, Any, Any], step: str) -> Any:
        services = services_of(request)
        form = await form_of(request)
        now = services.now()
        flow_id = flow_cookie(request, flow.KIND)
        state = await services.flows.load(flow.KIND, flow_id, now)
        if state is not None and flow_id and step == "statut" and state.step in FINISHED:
            await services.flows.drop(flow_id)  # a new registration replaces the finished one
            state = None
        if state is None:
            if step != "statut":
                return go(request, "/inscription/statut")
            flow_id, state = await services.flows.start(flow.KIND, "statut", now)
            set_flow_cookie(request, flow.KIND, flow_id)
        assert flow_id is not None
        order = flow.steps_for(state)
        if step not in order or not reachable(state, step, order) or state.step in ("termine", "demande-envoyee"):
            return go(request, f"/inscription/{state.step}")
        if form.get("action") == "precedent" and order.index(step) > 0:
            state.drafts[step] = {k: v for k, v in form.items() if k not in ("csrf_token", "action", "answer")}
            state.step = order[order.index(step) - 1]
            await services.flows.save(flow_id, state, now)
            return _after(request, state, StepResult(step=state.step))
        client = client_address(request)
        result = await _dispatch(services, state, step, form, flow_id, client)
        await services.flows.save(flow_id, state, now)
        return _after(request, state, result, submitted=step)


async def _dispatch(services: Any, state: FlowState, step: str, form: dict[str, str], flow_id: str,
                    client: str) -> StepResult:
    if step == "statut":
        return await flow.submit_status(services, state, form, client)
    if step == "identifiant":
        return await flow.submit_identifier(services, state, form)
    if step == "coordonnees":
        return await flow.submit_contact(services, state, form)
    if step == "question":
        return await flow.submit_question(services, state, form, client)
    if step == "canal":
        return await flow.submit_channel(services, state, form, flow_id)
    if step == "code":
        if form.get("action") == "renvoyer":
            return await flow.resend_code(services, state, flow_id)
        return await flow.submit_code(services, state, form, flow_id, client)
    if step == "structure":
        return await flow.submit_structure(services, state, form)
    if step == "demande":
        return await flow.submit_request(services, state, form, client)
    return StepResult(step=state.step)


def _after(request: Request[Any, Any, Any], state: FlowState, result: StepResult, submitted: str = "") -> Any:
    from web.http import is_htmx

    if submitted:
        metrics.step("registration", submitted, not result.errors)
    if result.errors or result.notice or result.step == submitted:
        return _page(request, state, result.step, result)
    if is_htmx(request):
        return _page(request, state, result.step)
    return go(request, f"/inscription/{result.step}")
