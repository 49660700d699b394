"""Flow state stored server-side, and what a step returns to the web layer."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import msgspec

from guichet.core.keys import new_token, token_digest

if TYPE_CHECKING:
    from guichet.core.database import Database


class FlowState(msgspec.Struct, kw_only=True):
    """One browser's progress through a procedure; ``data`` holds what was typed and decided."""

    kind: str
    step: str
    done: list[str] = []
    data: dict[str, Any] = {}
    drafts: dict[str, dict[str, str]] = {}  # what was typed on a step left with "Précédent"
    saved_ms: int = 0  # when the row was last written: its expiry slides from there


class StepResult(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of a submitted step: the step to show, and errors tied to fields (a 422)."""

    step: str
    errors: dict[str, str] = {}
    values: dict[str, str] = {}
    notice: str = ""

    @property
    def ok(self) -> bool:
        return not self.errors


# A submit that changes nothing (a form refused by validation) rewrites the row only to slide the
# expiry, and at most this often: a refused form costs a read, not a write
EXPIRY_REFRESH = dt.timedelta(minutes=5)


class Flows:
    """Flow rows keyed by the SHA-256 of a 256-bit random id held in a cookie."""

    def __init__(self, database: "Database", lifetime: dt.timedelta = dt.timedelta(minutes=45)) -> None:
        self.database = database
        self.lifetime = lifetime

    async def start(self, kind: str, first_step: str, now: dt.datetime) -> tuple[str, FlowState]:
        flow_id = new_token()
        state = FlowState(kind=kind, step=first_step, saved_ms=_ms(now))
        t = self.database.t.Flow
        await t.insert(
            t(
                token=token_digest(flow_id),
                kind=kind,
                step=first_step,
                data=msgspec.json.encode(state).decode(),
                created_at=now,
                expires_at=now + self.lifetime,
            )
        ).run()
        return flow_id, state

    async def load(self, kind: str, flow_id: str | None, now: dt.datetime) -> FlowState | None:
        if not flow_id or len(flow_id) > 100:
            return None
        t = self.database.t.Flow
        rows = await (
            t.select(t.data)
            .where((t.token == token_digest(flow_id)) & (t.kind == kind) & (t.expires_at > now))
            .limit(1)
            .run()
        )
        if not rows:
            return None
        return msgspec.json.decode(rows[0]["data"], type=FlowState)

    async def save(self, flow_id: str, state: FlowState, now: dt.datetime, *, unless_same_as: bytes = b"") -> None:
        """Write the state; with ``unless_same_as`` (its encoding when loaded), only if it changed or
        its expiry was last slid more than EXPIRY_REFRESH ago."""
        if (
            unless_same_as
            and msgspec.json.encode(state) == unless_same_as
            and _ms(now) - state.saved_ms < EXPIRY_REFRESH.total_seconds() * 1000
        ):
            return
        state.saved_ms = _ms(now)
        t = self.database.t.Flow
        await (
            t.update(
                {t.step: state.step, t.data: msgspec.json.encode(state).decode(), t.expires_at: now + self.lifetime}
            )
            .where(t.token == token_digest(flow_id))
            .run()
        )

    async def drop(self, flow_id: str) -> None:
        t = self.database.t.Flow
        await t.delete().where(t.token == token_digest(flow_id)).run()

    async def purge(self, now: dt.datetime) -> None:
        t = self.database.t.Flow
        await t.delete().where(t.expires_at <= now).run()


def _ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def advance(state: FlowState, finished: str, next_step: str, order: list[str]) -> None:
    """Mark ``finished`` done, forget later steps (their inputs depend on it), move on."""
    position = order.index(finished) if finished in order else len(order)
    state.done = [s for s in state.done if s in order and order.index(s) < position] + [finished]
    state.drafts.pop(finished, None)
    state.step = next_step


def reachable(state: FlowState, step: str, order: list[str]) -> bool:
    """A step can be shown once every step before it in ``order`` is done."""
    if step not in order:
        return False
    return all(s in state.done for s in order[: order.index(step)])
