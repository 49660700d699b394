"""The outbox worker: claims due messages, delivers them through their channel, records the outcome.

Claims are safe with several workers and several processes. A claim moves a message to
``sending`` with a lease (``lease_until``) in one atomic ``UPDATE ... RETURNING``; on
PostgreSQL the candidate rows are picked ``FOR UPDATE SKIP LOCKED`` so concurrent claims do
not wait on each other. A worker killed between the claim and the outcome leaves a lease that
expires: the message is then claimable again. Every outcome is written only if the lease is
still the one this worker took (the lease timestamp is the fencing token), so a worker that
lost its lease never overwrites the outcome of the one that took over.

Content lifecycle: ``sent`` and ``expired`` messages have their sealed content emptied at
once. ``failed`` messages keep their sealed (encrypted) content so an operator can
``guichet outbox retry`` them once the cause is fixed; ``purge_final`` empties it after
``failed_retention`` (7 days by default), and the worker runs that purge periodically.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import random
import signal
import socket
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import msgspec

from guichet.core.clock import Clock, DatabaseClock, start_synced
from guichet.core.errors import CounterStoreError, DeliveryError
from guichet.core.events import Auditor
from guichet.core.outbox import EXPIRED, FAILED, FINAL_STATES, PENDING, SENDING, SENT, open_sealed
from guichet.core.statements import POINT_WRITE, fetch
from guichet.core.structs import AuditEvent, Measurement, Message

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import ModuleType

    from guichet.core.config import CaisseConfig
    from guichet.core.database import Database
    from guichet.core.keys import Keys
    from guichet.core.limits import Limits
    from guichet.core.plugins import PluginHost
    from guichet.core.ratelimit import Limit, Limiter

log = logging.getLogger("guichet.outbox")

UTC = dt.UTC
MAX_ERROR_LENGTH = 300  # the width of guichet_outbox.last_error


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Exponential backoff with jitter for temporary failures, then ``failed``."""

    base_seconds: float = 30.0
    cap_seconds: float = 3600.0
    max_attempts: int = 10
    # after an attempt whose outcome is unknown (it may have been delivered, and billed), at most
    # this many more: a message is handed to its channel at most 1 + this many times in doubt
    max_unknown_retries: int = 2
    jitter: float = 0.25  # up to this fraction of a delay is removed at random, so one outage's retries spread out
    max_retry_after_seconds: float = 6 * 3600.0  # a gateway's Retry-After is honoured up to this

    def delay(self, attempts: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait before the next attempt, ``attempts`` having been made."""
        if retry_after is not None:
            return min(max(retry_after, 1.0), self.max_retry_after_seconds)
        backoff = min(self.cap_seconds, self.base_seconds * 2.0 ** max(attempts - 1, 0))
        return backoff * (1.0 - self.jitter * rng.random())


class ClaimedMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A message this worker holds a lease on; ``lease_until`` is the fencing token."""

    id: int
    channel: str
    template: str
    sealed: str
    attempts: int
    created_at: dt.datetime
    expires_at: dt.datetime | None
    lease_until: dt.datetime
    unknown_outcomes: int = 0  # earlier attempts that may have delivered it (timeouts after sending, lost leases)
    last_error: str = ""


def _utc(value: dt.datetime) -> dt.datetime:
    # SQLite stores Timestamptz as text and compares it as text: every value must be aware UTC,
    # formatted the same way by piccolo's adapter, or comparisons go wrong
    if value.tzinfo is None:
        raise ValueError("the outbox needs timezone-aware datetimes")
    return value.astimezone(UTC)


def _short(reason: str, payload: dict[str, Any] | None = None) -> str:
    """A one-line reason fit for last_error and logs; any payload value found in it is masked."""
    text = " ".join(reason.split())
    for value in (payload or {}).values():
        if isinstance(value, str) and len(value) >= 4 and value in text:
            text = text.replace(value, "***")
    return text[:MAX_ERROR_LENGTH]


def _table(database: "Database") -> str:
    return str(database.t.OutboxMessage._meta.tablename)


# letters go last: a printing backlog never delays a security code waiting to be emailed or texted.
# A message taken over from an expired lease was being sent by a worker that never recorded the
# outcome (killed, or its database write failed): that attempt may have delivered it.
#
# Each kind of claimable message is read by its own partial index (migration 7), in claim order, up
# to the batch: a claim reads a few index entries however many messages wait, where one query over
# the whole outbox read and sorted every pending message, due or not (a postal outage's backlog
# made every claim cost 13 ms per 100,000 letters waiting, docs/benchmarks.md). The batch is then
# the first of those by the same order: the same messages the one query chose.
CLAIM_INDEXES = ("due", "letters_due", "lease_expired")  # made by migration 7 (core/database.py)
_LETTERS_LAST = "CASE WHEN channel = 'postal' THEN 1 ELSE 0 END"


def _claim_sql(table: str, *, lock: str, indexed: bool) -> str:
    """The claim statement (``{}`` for each of ``OutboxWorker.claim_arguments``); ``indexed`` names
    each part's index (SQLite)."""

    def part(name: str, where: str, order: str) -> str:
        index = f" INDEXED BY {table}_{name}" if indexed else ""
        return f"""
    SELECT * FROM (
        SELECT id, {_LETTERS_LAST} AS last, next_attempt_at
        FROM {table}{index}
        WHERE {where}
        ORDER BY {order} LIMIT {{}}{lock}
    ) AS {name}"""

    parts = "\n    UNION ALL".join(
        (
            part(
                "due", f"state = '{PENDING}' AND channel <> 'postal' AND next_attempt_at <= {{}}", "next_attempt_at, id"
            ),
            part(
                "letters_due",
                f"state = '{PENDING}' AND channel = 'postal' AND next_attempt_at <= {{}}",
                "next_attempt_at, id",
            ),
            part(
                "lease_expired", f"state = '{SENDING}' AND lease_until <= {{}}", f"{_LETTERS_LAST}, next_attempt_at, id"
            ),
        )
    )
    return f"""
UPDATE {table} SET state = '{SENDING}', lease_until = {{}}, attempts = attempts + 1,
    unknown_outcomes = unknown_outcomes + CASE WHEN state = '{SENDING}' THEN 1 ELSE 0 END
WHERE id IN (
    SELECT id FROM ({parts}
    ) AS claimable
    ORDER BY last, next_attempt_at, id
    LIMIT {{}}
)
RETURNING id, channel, template, sealed, attempts, created_at, expires_at, lease_until, unknown_outcomes, last_error
"""


BUDGET_WAIT = "waiting for the caisse's hourly budget"


class DeliveryBudgets:
    """The caisse's budgets for the channels that cost money (``security.sms_per_hour``), counted
    per delivery attempt: a retry costs what a first attempt costs."""

    def __init__(
        self, limiter: "Limiter", limits: "dict[str, Limit]", caisse_id: str, *, wait_seconds: float = 60.0
    ) -> None:
        self.limiter = limiter
        self.limits = limits
        self.caisse_id = caisse_id
        self.wait_seconds = wait_seconds  # how soon a message refused by a spent budget looks again
        # one take at a time, in the order the batch's deliveries ask (oldest message first): when
        # the budget has room for one, the oldest message gets it, not the one whose count commits first
        self._in_order = asyncio.Lock()

    @classmethod
    def for_caisse(cls, limiter: "Limiter", limits: "Limits", caisse_id: str) -> "DeliveryBudgets":
        return cls(limiter, {"sms": limits.sms_budget}, caisse_id)

    async def take(self, channel: str, now: dt.datetime) -> bool:
        """Count one attempt on ``channel``; False if the budget is spent (the attempt must wait).

        Raises CounterStoreError when the counters cannot be read.
        """
        limit = self.limits.get(channel)
        if limit is None:
            return True
        async with self._in_order:
            return (await self.limiter.take(limit, self.caisse_id, now)).allowed


class _GroupCommit:
    """Runs the outcome UPDATEs of concurrent deliveries in shared transactions.

    Each commit costs an fsync (about 9 ms on SQLite here, which capped delivery near 110
    messages/s); updates that arrive while a commit runs wait for the next one and share it.
    An update still reaches the database as soon as the previous commit is done, alone as a
    statement of its own when no other is waiting.
    """

    def __init__(self, database: "Database") -> None:
        self.database = database
        self.pending: list[tuple[str, tuple[Any, ...], asyncio.Future[list[dict[str, Any]]]]] = []
        self.flusher: asyncio.Task[None] | None = None

    async def execute(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        future: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self.pending.append((sql, args, future))
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let the deliveries finishing in this same turn of the loop join
        while self.pending:
            batch, self.pending = self.pending, []
            table = self.database.t.OutboxMessage
            try:
                if len(batch) == 1:  # one UPDATE is atomic by itself: no BEGIN and COMMIT to pay for
                    sql, args, _ = batch[0]
                    results = [await fetch(table, sql, *args)]
                else:
                    async with self.database.transaction(brief=True):
                        results = [await fetch(table, sql, *args) for sql, args, _ in batch]
            except Exception as exc:  # every update of the batch failed with it: their leases will expire
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, _, future), rows in zip(batch, results):
                if not future.done():
                    future.set_result(rows)


class OutboxWorker:
    """Delivers the outbox through the caisse's channels; run one or several, in one or several processes."""

    def __init__(
        self,
        database: "Database",
        keys: "Keys",
        host: "PluginHost",
        clock: Clock,
        *,
        worker_id: str,
        lease_seconds: float = 60,
        batch: int = 20,
        concurrency: int = 8,
        retry: RetryPolicy | None = None,
        failed_retention: dt.timedelta = dt.timedelta(days=7),
        rng: random.Random | None = None,
        budgets: DeliveryBudgets | None = None,
    ) -> None:
        if lease_seconds <= 0 or batch < 1 or concurrency < 1:
            raise ValueError("lease_seconds, batch and concurrency must be positive")
        self.database = database
        self.keys = keys
        self.host = host
        self.clock = clock
        self.worker_id = worker_id
        self.lease = dt.timedelta(seconds=lease_seconds)
        self.batch = batch
        self.concurrency = concurrency
        self.retry = retry or RetryPolicy()
        self.failed_retention = failed_retention
        self.rng = rng or random.Random()
        self.budgets = budgets
        self.auditor = Auditor(database, host)
        self._stop: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._commits = _GroupCommit(database)
        table = _table(database)
        self._t = table
        # SQLite, without statistics, would rather read every pending message by the state index
        self._claim_sql = self._claim_statement(indexed=database.is_sqlite)

    def _claim_statement(self, *, indexed: bool) -> str:
        return _claim_sql(self._t, lock="" if self.database.is_sqlite else " FOR UPDATE SKIP LOCKED", indexed=indexed)

    # -- claiming -----------------------------------------------------------------------------------

    def claim_arguments(self, now: dt.datetime, batch: int) -> tuple[object, ...]:
        """The claim statement's arguments, in its order: the new lease, then each part's bound and
        batch, then the batch."""
        return (now + self.lease, now, batch, now, batch, now, batch, batch)

    async def claim(self, limit: int | None = None) -> list[ClaimedMessage]:
        """Take a lease on up to ``limit`` due messages (pending and due, or with an expired lease)."""
        now = _utc(self.clock.now())
        args = self.claim_arguments(now, limit or self.batch)
        try:
            rows = await fetch(self.database.t.OutboxMessage, self._claim_sql, *args)
        except Exception as exc:
            if "no such index" not in str(exc):
                raise
            # a SQLite database whose schema is behind (`guichet db upgrade` not run): the messages
            # still go, by the slower way, and the operator is told once what to do
            log.error("outbox: the claim's indexes are missing; run `guichet db upgrade` (claiming without them)")
            self._claim_sql = self._claim_statement(indexed=False)
            rows = await fetch(self.database.t.OutboxMessage, self._claim_sql, *args)
        claimed = [msgspec.convert(row, ClaimedMessage) for row in rows]
        return sorted(claimed, key=lambda m: m.id)

    async def _guarded(self, sql: str, message: ClaimedMessage, *args: Any) -> bool:
        """Run an UPDATE on the message only while our lease is the current one."""
        rows = await self._commits.execute(
            f"{POINT_WRITE}UPDATE {self._t} SET {sql} WHERE id = {{}} AND state = '{SENDING}' AND lease_until = {{}} "
            "RETURNING id",
            *args,
            message.id,
            message.lease_until,
        )
        return bool(rows)

    async def _renew(self, message: ClaimedMessage) -> ClaimedMessage | None:
        """A fresh lease before a send that starts late in a batch; None if the lease was lost."""
        now = _utc(self.clock.now())
        if message.lease_until - now > self.lease / 2:
            return message
        new_lease = now + self.lease
        if await self._guarded("lease_until = {}", message, new_lease):
            return msgspec.structs.replace(message, lease_until=new_lease)
        return None

    async def release(self, message: ClaimedMessage) -> None:
        """Give a claimed message back untouched (graceful stop): claimable at once, no attempt counted."""
        await self._guarded(f"state = '{PENDING}', lease_until = NULL, attempts = attempts - 1", message)

    # -- outcomes -----------------------------------------------------------------------------------

    async def _finish(self, message: ClaimedMessage, state: str, error: str = "", *, purge: bool) -> bool:
        now = _utc(self.clock.now())
        sealed = ", sealed = ''" if purge else ""
        done = await self._guarded(
            f"state = {{}}, lease_until = NULL, finished_at = {{}}, last_error = {{}}{sealed}",
            message,
            state,
            now,
            error[:MAX_ERROR_LENGTH],
        )
        if not done:
            log.warning(
                "outbox message %s: lease lost before recording %s (worker %s)", message.id, state, self.worker_id
            )
        return done

    async def _reschedule(self, message: ClaimedMessage, delay: float, error: str, *, unknown: bool = False) -> None:
        next_at = _utc(self.clock.now()) + dt.timedelta(seconds=delay)
        if message.expires_at is not None and next_at >= message.expires_at:
            # the content would be stale by the next attempt: stop now and forget it
            await self._finish(message, EXPIRED, f"expired while retrying: {error}", purge=True)
            return
        counted = ", unknown_outcomes = unknown_outcomes + 1" if unknown else ""
        if not await self._guarded(
            f"state = {{}}, lease_until = NULL, next_attempt_at = {{}}, last_error = {{}}{counted}",
            message,
            PENDING,
            next_at,
            error[:MAX_ERROR_LENGTH],
        ):
            log.warning("outbox message %s: lease lost before rescheduling (worker %s)", message.id, self.worker_id)

    async def _temporary(self, message: ClaimedMessage, error: str, retry_after: float | None) -> str:
        if message.attempts >= self.retry.max_attempts:
            await self._finish(message, FAILED, f"gave up after {message.attempts} attempts: {error}", purge=False)
            return FAILED
        await self._reschedule(message, self.retry.delay(message.attempts, self.rng, retry_after), error)
        return PENDING

    async def _unknown(self, message: ClaimedMessage, error: str, retry_after: float | None) -> str:
        """The attempt may have delivered the message: retried, but only a bounded number of times."""
        if message.unknown_outcomes >= self.retry.max_unknown_retries or message.attempts >= self.retry.max_attempts:
            await self._finish(
                message,
                FAILED,
                f"outcome unknown {message.unknown_outcomes + 1} times, not sent again "
                f"(it may have been delivered): {error}",
                purge=False,
            )
            return FAILED
        await self._reschedule(
            message,
            self.retry.delay(message.attempts, self.rng, retry_after),
            f"outcome unknown: {error}",
            unknown=True,
        )
        return PENDING

    # -- delivering ---------------------------------------------------------------------------------

    async def deliver(self, message: ClaimedMessage) -> str:
        """Deliver one claimed message and record the outcome; return the state it is left in."""
        now = _utc(self.clock.now())
        if message.expires_at is not None and message.expires_at <= now:
            await self._finish(message, EXPIRED, "content expired before delivery", purge=True)
            log.info("outbox message %s (%s, %s) expired unsent", message.id, message.channel, message.template)
            return EXPIRED
        if message.attempts > self.retry.max_attempts:
            # only reached when leases keep expiring: a message that kills its worker must stop somewhere
            await self._finish(message, FAILED, f"abandoned by a worker {message.attempts - 1} times", purge=False)
            return FAILED
        if message.unknown_outcomes > self.retry.max_unknown_retries:
            # taken over from lost leases that often: each of those sends may have reached the recipient
            await self._finish(
                message,
                FAILED,
                f"outcome unknown {message.unknown_outcomes} times, not sent again (it may have been delivered)",
                purge=False,
            )
            log.warning(
                "outbox message %s (%s, %s): outcome unknown %s times; failed, not sent again",
                message.id,
                message.channel,
                message.template,
                message.unknown_outcomes,
            )
            return FAILED
        channel = self.host.channel(message.channel)
        if channel is None:
            error = (
                f"no channel {message.channel!r} in this caisse's config "
                f"(enabled channels: {', '.join(sorted(self.host.channels())) or 'none'})"
            )
            await self._finish(message, FAILED, error, purge=False)
            log.error("outbox message %s: %s", message.id, error)
            return FAILED
        try:
            content = open_sealed(self.keys, message.sealed)
        except (ValueError, msgspec.DecodeError):
            error = "the sealed content cannot be opened (secret key changed or content purged)"
            await self._finish(message, FAILED, error, purge=False)
            log.error("outbox message %s: %s", message.id, error)
            return FAILED
        if self.budgets is not None:
            refused = await self._over_budget(message, now)
            if refused:
                return refused
        outgoing = Message(
            id=message.id,
            channel=message.channel,
            template=message.template,
            recipient=content.recipient,
            payload=content.payload,
            caisse_name=self.host.config.caisse.name,
            created_at=message.created_at,
        )
        plugin = type(channel).__module__
        # bounded below the lease, so no other worker can take the message while this send runs
        deadline = asyncio.timeout(self.lease.total_seconds() * 0.8)
        try:
            async with deadline:
                await channel.send(outgoing)
        except DeliveryError as exc:
            error = _short(str(exc), content.payload)
            if exc.permanent:
                await self._finish(message, FAILED, error, purge=False)
                log.warning(
                    "outbox message %s (%s, %s) failed permanently: %s",
                    message.id,
                    message.channel,
                    message.template,
                    error,
                )
                return FAILED
            log.info(
                "outbox message %s (%s, %s) attempt %s failed: %s%s",
                message.id,
                message.channel,
                message.template,
                message.attempts,
                "outcome unknown: " if exc.outcome_unknown else "",
                error,
            )
            if exc.outcome_unknown:
                return await self._unknown(message, error, exc.retry_after)
            return await self._temporary(message, error, exc.retry_after)
        except Exception as exc:  # a channel bug or an unexpected error is retried, like any temporary failure
            if isinstance(exc, TimeoutError) and deadline.expired():
                # the worker cut a send that ran too long: what the server did with it is unknown
                error = f"the send took longer than {self.lease.total_seconds() * 0.8:.0f} s and was cut"
                log.warning("outbox message %s (%s, %s): %s", message.id, message.channel, message.template, error)
                return await self._unknown(message, error, None)
            error = f"{type(exc).__name__} raised by channel {message.channel!r} ({plugin})"
            log.warning("outbox message %s: %s", message.id, error)  # the exception text may hold the payload
            return await self._temporary(message, error, None)
        handed_over = time.perf_counter()
        await self._record_sent(message)
        # the duplicate window: a worker that dies within it has sent a message it never recorded
        self.host.measure(Measurement(name="outbox_unrecorded_seconds", value=time.perf_counter() - handed_over))
        log.info("outbox message %s (%s, %s) sent", message.id, message.channel, message.template)
        return SENT

    async def _record_sent(self, message: ClaimedMessage) -> None:
        """Store ``sent``; a failed write is tried again while the lease lasts, since a message
        whose sending is not recorded is sent again once its lease runs out."""
        pause = 0.25
        while True:
            try:
                await self._finish(message, SENT, "", purge=True)
                return
            except Exception as exc:
                left = (message.lease_until - _utc(self.clock.now())).total_seconds()
                if left <= pause * 2:
                    raise
                log.warning(
                    "outbox message %s: sent, but its outcome could not be stored (%s); trying again",
                    message.id,
                    type(exc).__name__,
                )
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    # -- budgets ------------------------------------------------------------------------------------

    def _budget_wait(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.budgets.wait_seconds if self.budgets else 0)

    async def _over_budget(self, message: ClaimedMessage, now: dt.datetime) -> str | None:
        """Count this attempt against its channel's budget: None if within it. When it is spent, the
        message waits (this attempt not counted: PENDING) or, if it would be stale by then, expires
        with its content (EXPIRED)."""
        assert self.budgets is not None
        try:
            if await self.budgets.take(message.channel, now):
                return None
            reason = BUDGET_WAIT
        except CounterStoreError:  # the budget cannot be read: nothing that costs money goes out meanwhile
            reason = "waiting: the budget counters cannot be read"
        next_at = now + self._budget_wait()
        if message.expires_at is not None and next_at >= message.expires_at:
            await self._finish(message, EXPIRED, f"expired {reason}", purge=True)
            log.warning("outbox message %s (%s, %s) expired %s", message.id, message.channel, message.template, reason)
            await self._audit("budget.exhausted", channel=message.channel, stage="delivery", outcome="expired")
            return EXPIRED
        # not an attempt: the message was never handed to its channel
        if not await self._guarded(
            "state = {}, lease_until = NULL, next_attempt_at = {}, last_error = {}, attempts = attempts - 1",
            message,
            PENDING,
            next_at,
            reason,
        ):
            log.warning("outbox message %s: lease lost before waiting for the budget", message.id)
        log.info("outbox message %s (%s, %s) %s", message.id, message.channel, message.template, reason)
        if reason == BUDGET_WAIT and not message.last_error.startswith(BUDGET_WAIT):  # once per message
            await self._audit("budget.exhausted", channel=message.channel, stage="delivery", outcome="waiting")
        return PENDING

    async def _audit(self, kind: str, **details: Any) -> None:
        event = AuditEvent(kind=kind, at=_utc(self.clock.now()), details=details)
        await self.auditor.record(event)
        self.auditor.publish([event])

    def _stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    async def process(self, message: ClaimedMessage) -> bool:
        """Deliver one claimed message unless stopping or its lease was lost; True if it was handled."""
        try:
            if self._stopping():
                await self.release(message)
                return False
            renewed = await self._renew(message)
            if renewed is None:
                log.warning("outbox message %s: lease lost before sending; left to its new holder", message.id)
                return False
            await self.deliver(renewed)
            return True
        except Exception:
            # a database error while recording: the lease expires and another attempt follows
            log.exception("outbox message %s: could not record the outcome", message.id)
            return False

    async def _gated(self, message: ClaimedMessage, gate: asyncio.Semaphore) -> bool:
        async with gate:
            return await self.process(message)

    async def run_once(self) -> int:
        """Claim the due messages (up to ``batch``), deliver them; return how many were handled."""
        claimed = await self.claim()
        if not claimed:
            return 0
        gate = asyncio.Semaphore(self.concurrency)
        results = await asyncio.gather(*(self._gated(message, gate) for message in claimed))
        return sum(results)

    async def drain(self) -> int:
        """Deliver until nothing is due (``guichet outbox work --once``, tests, benchmarks)."""
        total = 0
        while handled := await self.run_once():
            total += handled
        return total

    def wake(self) -> None:
        """Look for due messages now rather than after the idle pause (call it after enqueueing)."""
        if self._wake is not None:
            self._wake.set()

    async def run_forever(self, stop: asyncio.Event, idle_seconds: float = 1.0) -> None:
        """Deliver until ``stop`` is set; the messages in flight finish, the others stay claimable."""
        self._stop = stop
        self._wake = asyncio.Event()
        last_purge: dt.datetime | None = None
        failures = 0
        log.info("outbox worker %s started", self.worker_id)
        try:
            while not stop.is_set():
                try:
                    handled = await self.run_once()
                    now = _utc(self.clock.now())
                    if last_purge is None or now - last_purge >= dt.timedelta(minutes=10):
                        await purge_final(self.database, now - self.failed_retention)
                        last_purge = now
                    failures = 0
                except Exception as exc:  # the database is down: wait and try again, never die
                    failures += 1
                    handled = 0
                    log.error("outbox worker %s: %s (retrying)", self.worker_id, type(exc).__name__)
                if handled and not stop.is_set():
                    continue
                pause = idle_seconds if not failures else min(idle_seconds * 2**failures, 60.0)
                waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())}
                try:
                    await asyncio.wait(waiters, timeout=pause, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiter in waiters:
                        waiter.cancel()
                self._wake.clear()
        finally:
            log.info("outbox worker %s stopped", self.worker_id)

    @contextlib.asynccontextmanager
    async def running(self, idle_seconds: float = 1.0) -> AsyncIterator["OutboxWorker"]:
        """Run the worker in a background task for the duration of the block (an app's lifespan)."""
        stop = asyncio.Event()
        task = asyncio.create_task(self.run_forever(stop, idle_seconds), name=f"outbox-{self.worker_id}")
        try:
            yield self
        finally:
            stop.set()
            self.wake()
            try:
                await asyncio.wait_for(task, timeout=self.lease.total_seconds())
            except TimeoutError:  # a send that hangs past its bound: its lease expires, nothing is lost
                log.warning("outbox worker %s did not stop in time; cancelled", self.worker_id)


# --- operations ------------------------------------------------------------------------------------


async def outbox_status(database: "Database") -> dict[tuple[str, str], int]:
    """How many messages per (channel, state)."""
    rows = await database.t.OutboxMessage.raw(
        f"SELECT channel, state, COUNT(*) AS n FROM {_table(database)} GROUP BY channel, state"
    ).run()
    return {(row["channel"], row["state"]): int(row["n"]) for row in rows}


async def retry_message(database: "Database", id: int, *, clock: Clock | None = None) -> bool:
    """Put a failed message back in the queue, due now; False if it is not failed or its content was purged."""
    now = _utc(clock.now() if clock else await database.current_time())
    rows = await database.t.OutboxMessage.raw(
        f"UPDATE {_table(database)} SET state = '{PENDING}', attempts = 0, next_attempt_at = {{}}, "
        f"last_error = '', finished_at = NULL, lease_until = NULL "
        f"WHERE id = {{}} AND state = '{FAILED}' AND sealed <> '' RETURNING id",
        now,
        id,
    ).run()
    return bool(rows)


async def purge_final(database: "Database", older_than: dt.datetime) -> int:
    """Empty the sealed content of messages in a final state since before ``older_than``; return how many."""
    states = ", ".join(f"'{state}'" for state in FINAL_STATES)
    rows = await database.t.OutboxMessage.raw(
        f"UPDATE {_table(database)} SET sealed = '' WHERE state IN ({states}) AND sealed <> '' "
        f"AND finished_at < {{}} RETURNING id",
        _utc(older_than),
    ).run()
    if rows:
        log.info("outbox: sealed content of %s finished message(s) purged", len(rows))
    return len(rows)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def run_worker_process(
    config: "CaisseConfig", *, once: bool, extra_plugins: "Mapping[str, ModuleType] | None" = None
) -> int:
    """``guichet outbox work``: deliver until SIGTERM or SIGINT (or, with ``once``, until nothing is due).

    ``extra_plugins``: the application's own plugins (the metrics observers of the web layer)."""
    from guichet.core.context import PluginContext
    from guichet.core.database import Database
    from guichet.core.keys import Keys
    from guichet.core.limits import counter_store_for, limits_from_config
    from guichet.core.plugins import PluginHost
    from guichet.core.ratelimit import Limiter

    database = Database.from_config(config)
    sinks = None
    counters = counter_store_for(config, database)
    await database.connect()
    try:
        # a worker process of its own in demo mode: its sinks write to the same mailbox folder
        from guichet.core.plugins import demo_mailbox

        sinks = demo_mailbox(config)
        endpoints = sinks.start() if sinks is not None else None
        # leases are judged on the database's clock: a worker on a host whose clock is ahead must
        # not take the leases of the others (core/clock.py)
        clock: Clock = Clock() if database.is_sqlite else DatabaseClock(database.server_time)
        await start_synced(clock)
        context = PluginContext(config=config, database=database, clock=clock, demo=endpoints)
        keys = Keys.from_config(config)
        host = PluginHost(config, context, extra=extra_plugins)
        budgets = DeliveryBudgets.for_caisse(
            Limiter(counters, keys, host.measure), limits_from_config(config), config.caisse.id
        )
        host.check_can_serve()
        worker = OutboxWorker(database, keys, host, clock, worker_id=default_worker_id(), budgets=budgets)
        if once:
            handled = await worker.drain()
            print(f"{handled} message(s) handled")
            return 0
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        syncing = asyncio.create_task(clock.keep_synced(stop)) if isinstance(clock, DatabaseClock) else None
        try:
            await worker.run_forever(stop, config.server.outbox_poll_seconds)
        finally:
            stop.set()
            if syncing is not None:
                await syncing
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        return 0
    finally:
        if sinks is not None:
            sinks.stop()
        closer = getattr(counters, "close", None)
        if closer is not None:
            await closer()
        await database.close()
