"""What must hold after every fault scenario, read from the database (and from what the receiving
servers kept): one module, so every scenario checks the same promises.

- **No message lost**: no message is left ``pending`` or ``sending``; every message is in a final
  state the scenario allows (``sent`` unless told otherwise), and every ``sent`` one reached its
  receiver (its delivery key is among the copies the SMTP server or the SMS gateway took in).
- **The documented bound** (docs/delivery.md): a message reaches its receiver at most
  ``1 + RetryPolicy.max_unknown_retries`` times (3), and more than once only when an attempt's
  outcome was unknown (``unknown_outcomes``): a copy for every doubt, never more.
- **No code used twice**: each accepted code is one ``guichet_code`` row with ``used_at`` set, and
  ``code.succeeded`` audit rows match those rows one for one (per purpose).
- **No duplicate account**: one account per identifier.
- **Audit rows present**: every code issued has its ``code.sent`` row, every account created
  during the scenario its ``registration.completed`` row, and the kinds the scenario expects
  appear at least as often as it says.

``check_invariants`` raises AssertionError with the broken promise and returns what it counted, so a
scenario can also assert on the counts (how many messages, how many copies).
"""

from __future__ import annotations

import email
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from guichet.core.database import Database
from guichet.core.outbox_worker import RetryPolicy

#: how many times one message may reach its receiver (docs/delivery.md, "The bound")
DELIVERY_BOUND = 1 + RetryPolicy().max_unknown_retries


class Counted(msgspec.Struct, kw_only=True):
    """What the checks counted: outbox states, copies per message, codes used, audit kinds."""

    states: dict[str, int]
    copies: dict[str, int]  # delivery key -> copies the receiver took in
    codes_used: int
    accounts: int
    audit: dict[str, int]


def email_keys(envelopes: Iterable[Any]) -> Counter[str]:
    """Delivery keys of the emails an SmtpSink took in (the part of the Message-ID before the @)."""
    found: Counter[str] = Counter()
    for envelope in envelopes:
        message_id = email.message_from_bytes(envelope.content)["Message-ID"] or ""
        found[message_id.strip("<>").split("@", 1)[0]] += 1
    return found


def sms_keys(requests: Iterable[Any], header: str = "Idempotency-Key") -> Counter[str]:
    """Delivery keys of the requests an HttpSink (the SMS gateway) received."""
    return Counter(r.headers.get(header, "") for r in requests)


def _key(caisse_id: str, row: Mapping[str, Any]) -> str:
    # core.outbox.delivery_key, from a row rather than a claimed message
    return f"{caisse_id}-{row['id']}-{int(row['created_at'].timestamp() * 1000)}"


async def check_invariants(
    database: Database,
    caisse_id: str,
    *,
    received: Mapping[str, int] | None = None,
    final_states: Iterable[str] = ("sent",),
    seeded_accounts: Iterable[int] = (),
    expect_audit: Mapping[str, int] | None = None,
    channels: Iterable[str] | None = None,
) -> Counted:
    """Assert the promises above; ``received`` maps delivery keys to copies taken in (None: not
    checked against a receiver), ``channels`` limits the receiver check to those channels."""
    allowed = set(final_states)
    t = database.t
    messages = (
        await t.OutboxMessage.select(
            t.OutboxMessage.id,
            t.OutboxMessage.channel,
            t.OutboxMessage.template,
            t.OutboxMessage.state,
            t.OutboxMessage.created_at,
            t.OutboxMessage.unknown_outcomes,
            t.OutboxMessage.attempts,
        )
        .order_by(t.OutboxMessage.id)
        .run()
    )
    states = Counter(row["state"] for row in messages)

    # no message lost
    unfinished = [(row["id"], row["template"], row["state"]) for row in messages if row["state"] not in allowed]
    assert not unfinished, f"messages not in {sorted(allowed)} (lost or stuck): {unfinished}"
    copies: dict[str, int] = dict(received or {})
    if received is not None:
        watched = set(channels) if channels is not None else None
        missing = [
            (row["id"], row["template"])
            for row in messages
            if row["state"] == "sent"
            and (watched is None or row["channel"] in watched)
            and not received.get(_key(caisse_id, row))
        ]
        assert not missing, f"messages marked sent that never reached their receiver: {missing}"
        known = {_key(caisse_id, row): row for row in messages}
        strangers = sorted(key for key in received if key not in known)
        assert not strangers, f"the receiver got messages the outbox does not hold: {strangers}"
        # the bound, and a copy only for a doubt
        over = []
        for key, count in received.items():
            row = known[key]
            if count > DELIVERY_BOUND or count > 1 + row["unknown_outcomes"]:
                over.append((row["id"], row["template"], count, row["unknown_outcomes"]))
        assert not over, (
            f"messages received more often than the bound ({DELIVERY_BOUND}) or than their "
            f"doubts allow (id, template, copies, unknown outcomes): {over}"
        )
    doubts = [
        (row["id"], row["unknown_outcomes"])
        for row in messages
        if row["unknown_outcomes"] > RetryPolicy().max_unknown_retries + 1
    ]
    assert not doubts, f"messages handed to their channel in doubt more often than the bound: {doubts}"

    # no code used twice
    codes = await t.OneTimeCode.select(t.OneTimeCode.purpose, t.OneTimeCode.account_id, t.OneTimeCode.used_at).run()
    audit_rows = await t.AuditLog.select(t.AuditLog.kind, t.AuditLog.account_id, t.AuditLog.details).run()
    audit = Counter(row["kind"] for row in audit_rows)
    used = Counter(row["purpose"] for row in codes if row["used_at"] is not None)
    accepted = Counter(
        msgspec.json.decode(row["details"]).get("purpose") for row in audit_rows if row["kind"] == "code.succeeded"
    )
    assert accepted == used, (
        f"codes accepted (code.succeeded) {dict(accepted)} do not match the codes "
        f"marked used {dict(used)} (per purpose): a code was used twice, or used unaudited"
    )

    # no duplicate account
    accounts = await t.Account.select(t.Account.id, t.Account.identifier).run()
    twice = [identifier for identifier, n in Counter(row["identifier"] for row in accounts).items() if n > 1]
    assert not twice, f"more than one account for {len(twice)} identifier(s)"

    # audit rows present
    issued = Counter(row["purpose"] for row in codes)
    sent_events = Counter(
        msgspec.json.decode(row["details"]).get("purpose") for row in audit_rows if row["kind"] == "code.sent"
    )
    unaudited = {purpose: n for purpose, n in issued.items() if sent_events[purpose] < n}
    assert not unaudited, f"codes issued without their code.sent audit row: {unaudited} (audited {dict(sent_events)})"
    completed = {row["account_id"] for row in audit_rows if row["kind"] == "registration.completed"}
    seeded = set(seeded_accounts)
    silent = sorted(row["id"] for row in accounts if row["id"] not in seeded and row["id"] not in completed)
    assert not silent, f"accounts created without a registration.completed audit row: {silent}"
    short = {kind: (audit[kind], n) for kind, n in (expect_audit or {}).items() if audit[kind] < n}
    assert not short, f"audit rows missing (kind: (found, expected at least)): {short}"

    return Counted(
        states=dict(states), copies=copies, codes_used=sum(used.values()), accounts=len(accounts), audit=dict(audit)
    )
