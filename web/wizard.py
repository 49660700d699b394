"""The plumbing registration and recovery share: a flow per browser behind a cookie, one URL per step.

A step is shown only once the steps before it are done; a finished flow shows only its last page,
until the first step starts a new one; "< Précédent" keeps what was typed as a draft.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Request, Response

from guichet.core.flows.engine import FlowState, StepResult, reachable
from guichet.web import metrics
from guichet.web.http import flow_cookie, go, is_htmx, services_of, set_flow_cookie

NOT_KEPT = ("csrf_token", "action", "answer", "code")  # never kept as a draft: secrets and buttons
PageRenderer = Callable[[Request[Any, Any, Any], FlowState, str, StepResult | None], Awaitable[Any]]
StepHandler = Callable[[FlowState, str, dict[str, str], str], Awaitable[StepResult]]


@dataclass(frozen=True)
class Wizard:
    kind: str  # the flow kind, and its metrics label
    base: str  # "/inscription"
    first: str  # the first step's slug
    finished: tuple[str, ...]  # the last pages
    steps: Callable[[FlowState], list[str]]
    page: PageRenderer

    def url(self, step: str) -> str:
        return f"{self.base}/{step}"

    async def show(self, request: Request[Any, Any, Any], step: str) -> Any:
        services = services_of(request)
        state = await services.flows.load(self.kind, flow_cookie(request, self.kind), services.now())
        if state is not None and step == self.first and state.step in self.finished:
            state = None  # the last one is over: another may start on this browser
        if state is None:
            if step != self.first:
                return go(request, self.url(self.first))
            state = FlowState(kind=self.kind, step=self.first)
        if not self._may_show(state, step):
            return go(request, self.url(state.step))
        return await self.page(request, state, step, None)

    def _may_show(self, state: FlowState, step: str) -> bool:
        order = self.steps(state)
        if step not in order or not reachable(state, step, order):
            return False
        # a finished flow shows its last page only, and a last page only a finished flow
        return (state.step in self.finished) == (step in self.finished) and (
            state.step not in self.finished or step == state.step
        )

    async def abandon(self, request: Request[Any, Any, Any], then: str) -> Response[Any]:
        flow_id = flow_cookie(request, self.kind)
        if flow_id:
            await services_of(request).flows.drop(flow_id)
        set_flow_cookie(request, self.kind, None)
        return go(request, then)

    async def submit(
        self, request: Request[Any, Any, Any], step: str, form: dict[str, str], handle: StepHandler
    ) -> Any:
        """Load or start the flow, refuse steps out of order, then ``handle(state, step, form, flow_id)``."""
        services = services_of(request)
        now = services.now()
        flow_id = flow_cookie(request, self.kind)
        state = await services.flows.load(self.kind, flow_id, now)
        if state is not None and flow_id and step == self.first and state.step in self.finished:
            await services.flows.drop(flow_id)  # a new one replaces the finished one
            state = None
        if state is None:
            if step != self.first:
                return go(request, self.url(self.first))
            flow_id, state = await services.flows.start(self.kind, self.first, now)
            set_flow_cookie(request, self.kind, flow_id)
        assert flow_id is not None
        order = self.steps(state)
        if step not in order or not reachable(state, step, order) or state.step in self.finished:
            return go(request, self.url(state.step))
        if form.get("action") == "precedent" and order.index(step) > 0:
            state.drafts[step] = {k: v for k, v in form.items() if k not in NOT_KEPT}
            state.step = order[order.index(step) - 1]
            await services.flows.save(flow_id, state, now)
            return await self.after(request, state, StepResult(step=state.step))
        loaded = msgspec.json.encode(state)
        result = await handle(state, step, form, flow_id)
        await services.flows.save(flow_id, state, now, unless_same_as=loaded)
        metrics.step(self.kind, step, not result.errors)
        return await self.after(request, state, result, submitted=step)

    async def after(
        self, request: Request[Any, Any, Any], state: FlowState, result: StepResult, submitted: str = ""
    ) -> Any:
        """The same step again with its errors or notice; else the next step (partial with htmx, 303 without)."""
        if result.errors or result.notice or result.step == submitted:
            return await self.page(request, state, result.step, result)
        if is_htmx(request):
            return await self.page(request, state, result.step, None)
        return go(request, self.url(result.step))
