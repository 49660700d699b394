"""Forgotten password pages: /mot-de-passe-oublie/<step>."""
from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.response import Redirect

from core import metrics
from core.flows import recovery as flow
from core.flows.engine import FlowState, StepResult, reachable
from web.forms import form_of
from web.http import client_address, flow_cookie, go, is_htmx, render, services_of, set_flow_cookie, step_status

TITLES = {"identifiant": "Vérification de votre identité", "canal": "Demande d'un nouveau mot de passe",
          "code": "Demande d'un nouveau mot de passe", "confirmation": "Confirmation"}


def _page(request: Request[Any, Any, Any], state: FlowState, step: str, result: StepResult | None = None) -> Any:
    services = services_of(request)
    policy = services.host.code_policy("recovery")
    values = dict(state.drafts.get(step, {}))
    if step == "identifiant" and "identifier" in state.data:
        values.setdefault("identifier", state.data["identifier"])
    if "channel" in state.data:
        values.setdefault("channel", state.data["channel"])
    if result is not None:
        values.update(result.values)
    context = {"step": step, "values": values, "errors": result.errors if result else {},
               "notice": result.notice if result else "", "channels": flow.channels(services),
               "channel": state.data.get("channel"), "length": policy.length,
               "lifetime_minutes": policy.lifetime_minutes, "action": f"/mot-de-passe-oublie/{step}",
               "position": (flow.STEPS.index(step) + 1, len(flow.STEPS))}
    position = flow.STEPS.index(step) + 1
    title = f"Étape {position} sur {len(flow.STEPS)} — {TITLES[step]} — Mon espace privé — {services.config.caisse.name}"
    return render(request, f"steps/recovery/{step}.html", context,
                  status=step_status(result) if result else 200, title=title,
                  push_url=f"/mot-de-passe-oublie/{step}")


class RecoveryController(Controller):
    path = "/mot-de-passe-oublie"

    @get("/")
    async def start(self) -> Response[Any]:
        return Redirect(path="/mot-de-passe-oublie/identifiant", status_code=303)

    @get("/{step:str}")
    async def show(self, request: Request[Any, Any, Any], step: str) -> Any:
        services = services_of(request)
        state = await services.flows.load(flow.KIND, flow_cookie(request, flow.KIND), services.now())
        if state is not None and step == "identifiant" and state.step == "confirmation":
            state = None  # the last request is over: another one may start (the SMS never came...)
        if state is None:
            if step != "identifiant":
                return go(request, "/mot-de-passe-oublie/identifiant")
            state = FlowState(kind=flow.KIND, step="identifiant")
        if step not in flow.STEPS or not reachable(state, step, flow.STEPS) or \
                (state.step == "confirmation") != (step == "confirmation"):
            return go(request, f"/mot-de-passe-oublie/{state.step}")
        return _page(request, state, step)

    @post("/abandon")
    async def abandon(self, request: Request[Any, Any, Any]) -> Response[Any]:
        services = services_of(request)
        flow_id = flow_cookie(request, flow.KIND)
        if flow_id:
            await services.flows.drop(flow_id)
        set_flow_cookie(request, flow.KIND, None)
        return go(request, "/connexion")

    @post("/{step:str}")
    async def submit(self, request: Request[Any, Any, Any], step: str) -> Any:
        services = services_of(request)
        form = await form_of(request)
        now = services.now()
        flow_id = flow_cookie(request, flow.KIND)
        state = await services.flows.load(flow.KIND, flow_id, now)
        if state is not None and flow_id and step == "identifiant" and state.step == "confirmation":
            await services.flows.drop(flow_id)  # a new request replaces the finished one
            state = None
        if state is None:
            if step != "identifiant":
                return go(request, "/mot-de-passe-oublie/identifiant")
            flow_id, state = await services.flows.start(flow.KIND, "identifiant", now)
            set_flow_cookie(request, flow.KIND, flow_id)
        assert flow_id is not None
        if step not in flow.STEPS or not reachable(state, step, flow.STEPS) or state.step == "confirmation":
            return go(request, f"/mot-de-passe-oublie/{state.step}")
        if form.get("action") == "precedent" and flow.STEPS.index(step) > 0:
            state.step = flow.STEPS[flow.STEPS.index(step) - 1]
            await services.flows.save(flow_id, state, now)
            return _page(request, state, state.step) if is_htmx(request) else go(request, f"/mot-de-passe-oublie/{state.step}")
        client = client_address(request)
        if step == "identifiant":
            result = await flow.submit_identifier(services, state, form, client)
        elif step == "canal":
            result = await flow.submit_channel(services, state, form, flow_id, client)
        elif form.get("action") == "renvoyer":
            result = await flow.resend_code(services, state, flow_id)
        else:
            result = await flow.submit_code(services, state, form, flow_id, client)
        await services.flows.save(flow_id, state, now)
        metrics.step("recovery", step, not result.errors)
        if result.errors or result.notice or result.step == step:
            return _page(request, state, result.step, result)
        if is_htmx(request):
            return _page(request, state, result.step)
        return go(request, f"/mot-de-passe-oublie/{result.step}")
