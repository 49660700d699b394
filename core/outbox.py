"""The outbox: messages written in the caller's transaction, delivered later by a worker.

A request handler only ever calls ``enqueue``; it never waits on an SMTP or SMS server.
"""

from __future__ import annotations

import datetime as dt
import email.utils
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import msgspec

from guichet.core.keys import token_digest
from guichet.core.statements import fetch, insert_one, select_latest
from guichet.core.structs import Message, Recipient

if TYPE_CHECKING:
    from guichet.core.database import Database
    from guichet.core.keys import Keys

PENDING, SENDING, SENT, FAILED, EXPIRED = "pending", "sending", "sent", "failed", "expired"
# set by enqueue; read once the request's transaction is over, to wake the worker without waiting
_enqueued: ContextVar[bool] = ContextVar("guichet_outbox_enqueued", default=False)
FINAL_STATES = (SENT, FAILED, EXPIRED)
_ENQUEUE_COLUMNS = (
    "channel",
    "template",
    "sealed",
    "state",
    "attempts",
    "next_attempt_at",
    "created_at",
    "expires_at",
    "sent_for",
)


class SealedContent(msgspec.Struct, frozen=True, kw_only=True):
    """What is encrypted at rest: the recipient and the payload (codes, passwords)."""

    recipient: Recipient
    payload: dict[str, Any]


async def enqueue(
    database: "Database",
    keys: "Keys",
    *,
    channel: str,
    template: str,
    recipient: Recipient,
    payload: dict[str, Any],
    now: dt.datetime,
    expires_at: dt.datetime | None = None,
    sent_for: str = "",
) -> int:
    """Write a message to deliver; call it inside the transaction that creates what it carries.

    ``expires_at`` is when the content stops being useful (a code's expiry): it is not sent after.
    ``sent_for`` names what a page waits on (``sent_for_digest``), so it can read the delivery's state.
    """
    t = database.t.OutboxMessage
    sealed = keys.seal(msgspec.json.encode(SealedContent(recipient=recipient, payload=payload)))
    rows = await fetch(
        t,
        insert_one(t, _ENQUEUE_COLUMNS, returning="id"),
        channel,
        template,
        sealed,
        PENDING,
        0,
        now,
        now,
        expires_at,
        sent_for,
    )
    _enqueued.set(True)
    return int(rows[0]["id"])


def sent_for_digest(purpose: str, binding: str) -> str:
    """What a code message is sent for: its purpose and binding (a flow or session secret), hashed
    as the code table hashes bindings, so the outbox holds nothing that opens the flow."""
    return token_digest(f"sent-for:{purpose}:{binding}")


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """The latest message sent for something, as a page waiting on it sees it."""

    id: int
    channel: str
    state: str


async def latest_delivery(database: "Database", sent_for: str) -> Delivery | None:
    """The latest message queued for ``sent_for`` (one indexed read), or None."""
    t = database.t.OutboxMessage
    rows = await fetch(t, select_latest(t, ("id", "channel", "state"), ("sent_for",)), sent_for)
    return msgspec.convert(rows[0], Delivery) if rows else None


def delivery_key(caisse_id: str, message: Message) -> str:
    """A message's identity for the receiving side: the same on every attempt, so a gateway can
    drop a repeat (``Idempotency-Key``) and a mail client a duplicate (``Message-ID``).

    Made of the caisse, the outbox id and the creation time (milliseconds), never of the content:
    the time keeps the key unique if ids start again (a database restored from a backup).
    """
    return f"{caisse_id}-{message.id}-{int(message.created_at.timestamp() * 1000)}"


def retry_after_seconds(value: str | None, now: dt.datetime) -> float | None:
    """A server's ``Retry-After`` header as seconds from ``now`` (RFC 9110: a number of seconds or an
    HTTP date; a date in the past is 0), or None when absent or unreadable: what a channel passes as
    ``DeliveryError(retry_after=...)``.
    """
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" in the date: UTC, as RFC 5322 reads it
        when = when.replace(tzinfo=dt.UTC)
    return max((when - now).total_seconds(), 0.0)


def take_enqueued() -> bool:
    """Whether this request queued a message since the last call; resets the flag."""
    queued = _enqueued.get()
    if queued:
        _enqueued.set(False)
    return queued


def open_sealed(keys: "Keys", sealed: str) -> SealedContent:
    return msgspec.json.decode(keys.unseal(sealed), type=SealedContent)
