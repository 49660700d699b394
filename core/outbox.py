"""The outbox: messages written in the caller's transaction, delivered later by a worker.

A request handler only ever calls ``enqueue``; it never waits on an SMTP or SMS server.
"""
from __future__ import annotations

import datetime as dt
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import msgspec

from guichet.core.structs import Recipient

if TYPE_CHECKING:
    from guichet.core.database import Database
    from guichet.core.keys import Keys

PENDING, SENDING, SENT, FAILED, EXPIRED = "pending", "sending", "sent", "failed", "expired"
# set by enqueue; read once the request's transaction is over, to wake the worker without waiting
_enqueued: ContextVar[bool] = ContextVar("guichet_outbox_enqueued", default=False)
FINAL_STATES = (SENT, FAILED, EXPIRED)


class SealedContent(msgspec.Struct, frozen=True, kw_only=True):
    """What is encrypted at rest: the recipient and the payload (codes, passwords)."""

    recipient: Recipient
    payload: dict[str, Any]


async def enqueue(database: "Database", keys: "Keys", *, channel: str, template: str, recipient: Recipient,
                  payload: dict[str, Any], now: dt.datetime, expires_at: dt.datetime | None = None) -> int:
    """Write a message to deliver; call it inside the transaction that creates what it carries.

    ``expires_at`` is when the content stops being useful (a code's expiry): it is not sent after.
    """
    t = database.t.OutboxMessage
    sealed = keys.seal(msgspec.json.encode(SealedContent(recipient=recipient, payload=payload)))
    rows = await t.insert(t(channel=channel, template=template, sealed=sealed, state=PENDING, attempts=0,
                            next_attempt_at=now, created_at=now, expires_at=expires_at)).returning(t.id).run()
    _enqueued.set(True)
    return int(rows[0]["id"])


def take_enqueued() -> bool:
    """Whether this request queued a message since the last call; resets the flag."""
    queued = _enqueued.get()
    if queued:
        _enqueued.set(False)
    return queued


def open_sealed(keys: "Keys", sealed: str) -> SealedContent:
    return msgspec.json.decode(keys.unseal(sealed), type=SealedContent)
