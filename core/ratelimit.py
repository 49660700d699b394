"""Counters for rate limits and progressive slow-downs, in the database or in Redis.

Keys are HMACs of what is counted (an identifier, a client address), so the counter table holds
no NIR. When the store fails, ``CounterStoreError`` is raised and callers refuse the attempt:
a code or password is never checked without a limit.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Protocol

import msgspec

from guichet.core import metrics
from guichet.core.addresses import client_subject
from guichet.core.errors import CounterStoreError

if TYPE_CHECKING:
    from guichet.core.database import Database
    from guichet.core.keys import Keys

log = logging.getLogger("guichet.ratelimit")


class Count(msgspec.Struct, frozen=True, kw_only=True):
    """A counter after a hit: how many in the window, and when the last one was."""

    count: int
    last_at_ms: int


NO_HITS = Count(count=0, last_at_ms=0)


class CounterStore(Protocol):
    async def hit(self, key: str, window_ms: int, now_ms: int) -> Count: ...
    async def peek(self, keys: dict[str, int], now_ms: int) -> dict[str, Count]:
        """The counts of several keys at once; ``keys`` maps each key to its window in ms."""
    async def clear(self, key: str) -> None: ...


class DatabaseCounters:
    """Counters in the guichet_rate_counter table: one atomic upsert per hit."""

    def __init__(self, database: "Database") -> None:
        self.database = database

    async def hit(self, key: str, window_ms: int, now_ms: int) -> Count:
        table = self.database.t.RateCounter._meta.tablename
        start = now_ms - window_ms
        try:
            rows = await self.database.t.RateCounter.raw(
                f"INSERT INTO {table} (key, hits, window_start_ms, last_at_ms, window_ms) "
                "VALUES ({}, 1, {}, {}, {}) ON CONFLICT (key) DO UPDATE SET "
                f"hits = CASE WHEN {table}.window_start_ms < {{}} THEN 1 ELSE {table}.hits + 1 END, "
                f"window_start_ms = CASE WHEN {table}.window_start_ms < {{}} THEN {{}} ELSE {table}.window_start_ms END, "
                "last_at_ms = {}, window_ms = {} RETURNING hits, last_at_ms",
                key, now_ms, now_ms, window_ms, start, start, now_ms, now_ms, window_ms).run()
        except Exception as exc:
            log.error("rate-limit counter store failed: %s", type(exc).__name__)
            raise CounterStoreError("the counter store is unavailable") from None
        return Count(count=int(rows[0]["hits"]), last_at_ms=int(rows[0]["last_at_ms"]))

    async def peek(self, keys: dict[str, int], now_ms: int) -> dict[str, Count]:
        t = self.database.t.RateCounter
        try:
            rows = await (t.select(t.key, t.hits, t.window_start_ms, t.last_at_ms)
                          .where(t.key.is_in(list(keys))).run())
        except Exception as exc:
            log.error("rate-limit counter store failed: %s", type(exc).__name__)
            raise CounterStoreError("the counter store is unavailable") from None
        counts = dict.fromkeys(keys, NO_HITS)
        for row in rows:
            if row["window_start_ms"] >= now_ms - keys[row["key"]]:
                counts[row["key"]] = Count(count=int(row["hits"]), last_at_ms=int(row["last_at_ms"]))
        return counts

    async def clear(self, key: str) -> None:
        t = self.database.t.RateCounter
        try:
            await t.delete().where(t.key == key).run()
        except Exception as exc:
            log.error("rate-limit counter store failed: %s", type(exc).__name__)
            raise CounterStoreError("the counter store is unavailable") from None


class RedisCounters:
    """Counters in Redis, shared by every app process; a window is a key's time to live."""

    _HIT = """
    local count = redis.call('INCR', KEYS[1])
    if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
    redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[1])
    return count
    """

    def __init__(self, url: str, namespace: str, *, password: str | None = None) -> None:
        import redis.asyncio as redis

        self.client = redis.Redis.from_url(url, password=password, socket_timeout=2, socket_connect_timeout=2)
        self.namespace = namespace
        self._hit = self.client.register_script(self._HIT)

    def _keys(self, key: str) -> list[str]:
        return [f"{self.namespace}:rl:{key}", f"{self.namespace}:rl:{key}:last"]

    async def hit(self, key: str, window_ms: int, now_ms: int) -> Count:
        try:
            count = await self._hit(keys=self._keys(key), args=[window_ms, now_ms])
        except Exception as exc:
            log.error("rate-limit counter store failed: %s", type(exc).__name__)
            raise CounterStoreError("the counter store is unavailable") from None
        return Count(count=int(count), last_at_ms=now_ms)

    async def peek(self, keys: dict[str, int], now_ms: int) -> dict[str, Count]:
        try:
            values = await self.client.mget([k for key in keys for k in self._keys(key)])
        except Exception as exc:
            log.error("rate-limit counter store failed: %s", type(exc).__name__)
            raise CounterStoreError("the counter store is unavailable") from None
        return {key: Count(count=int(values[2 * n] or 0), last_at_ms=int(values[2 * n + 1] or 0))
                for n, key in enumerate(keys)}

    async def clear(self, key: str) -> None:
        try:
            await self.client.delete(*self._keys(key))
        except Exception as exc:
            log.error("rate-limit counter store failed: %s", type(exc).__name__)
            raise CounterStoreError("the counter store is unavailable") from None

    async def close(self) -> None:
        await self.client.aclose()


class Limit(msgspec.Struct, frozen=True, kw_only=True):
    """A named limit: ``max_count`` hits per ``window_seconds``; past ``delay_after``, a growing pause."""

    name: str
    window_seconds: int
    max_count: int
    delay_after: int | None = None  # progressive delays instead of a hard stop
    max_delay_seconds: int = 900
    per_client: bool = False  # the subject is a client address: counted per IPv4 address or IPv6 /64


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    allowed: bool
    retry_after_seconds: int = 0
    count: int = 0  # hits in the window: 0 means there is nothing to clear


class Limiter:
    """Applies Limits to subjects; subjects are hashed with the caisse's key before they are stored."""

    def __init__(self, store: CounterStore, keys: "Keys") -> None:
        self.store = store
        self.keys = keys

    def _key(self, limit: Limit, subject: str) -> str:
        if limit.per_client:
            subject = client_subject(subject)
        return f"{limit.name}:{self.keys.hmac('ratelimit', subject)[:40]}"

    @staticmethod
    def _ms(now: dt.datetime) -> int:
        return int(now.timestamp() * 1000)

    async def check(self, limit: Limit, subject: str, now: dt.datetime) -> Verdict:
        """May this subject try now? Does not count the try."""
        (verdict,) = await self.check_all([(limit, subject)], now)
        return verdict

    async def check_all(self, checks: list[tuple[Limit, str]], now: dt.datetime) -> list[Verdict]:
        """``check`` for several (limit, subject) pairs, read from the store at once."""
        keyed = [(limit, self._key(limit, subject)) for limit, subject in checks]  # one HMAC each
        now_ms = self._ms(now)
        counts = await self.store.peek({key: limit.window_seconds * 1000 for limit, key in keyed}, now_ms)
        verdicts = []
        for limit, key in keyed:
            verdict = self._judge(limit, counts[key], now_ms)
            if not verdict.allowed:
                metrics.RATE_LIMIT_REFUSALS.labels(limit.name).inc()
            verdicts.append(verdict)
        return verdicts

    async def hit(self, limit: Limit, subject: str, now: dt.datetime) -> Verdict:
        """Count one try (a failure, a send) and say whether the next one may come now."""
        count = await self.store.hit(self._key(limit, subject), limit.window_seconds * 1000, self._ms(now))
        metrics.RATE_LIMIT_HITS.labels(limit.name).inc()
        verdict = self._judge(limit, count, self._ms(now))
        if not verdict.allowed:
            metrics.RATE_LIMIT_REFUSALS.labels(limit.name).inc()
        return verdict

    async def take(self, limit: Limit, subject: str, now: dt.datetime) -> Verdict:
        """Count this try and say whether *it* is within the limit: a send, a registration, a request.

        ``hit`` judges the try after (right for failure counters); with ``take`` a limit of N per
        window lets N through and refuses the N + 1st.
        """
        count = await self.store.hit(self._key(limit, subject), limit.window_seconds * 1000, self._ms(now))
        metrics.RATE_LIMIT_HITS.labels(limit.name).inc()
        if count.count > limit.max_count:
            metrics.RATE_LIMIT_REFUSALS.labels(limit.name).inc()
            return Verdict(allowed=False, retry_after_seconds=limit.window_seconds)
        return Verdict(allowed=True)

    async def clear(self, limit: Limit, subject: str) -> None:
        await self.store.clear(self._key(limit, subject))

    @staticmethod
    def _judge(limit: Limit, count: Count, now_ms: int) -> Verdict:
        if count.count >= limit.max_count:
            return Verdict(allowed=False, retry_after_seconds=limit.window_seconds, count=count.count)
        if limit.delay_after is not None and count.count >= limit.delay_after:
            # 1 s after the first failure over the threshold, then doubling: guessing stays slow, the owner is never locked out
            delay_ms = min(2 ** (count.count - limit.delay_after) * 1000, limit.max_delay_seconds * 1000)
            wait = count.last_at_ms + delay_ms - now_ms
            if wait > 0:
                return Verdict(allowed=False, retry_after_seconds=max(1, -(-wait // 1000)), count=count.count)
        return Verdict(allowed=True, count=count.count)
