"""Counters for rate limits and progressive slow-downs, in the database or in Redis.

Keys are HMACs of what is counted (an identifier, a client address), so the counter table holds
no NIR. When the store fails, ``CounterStoreError`` is raised and callers refuse the attempt:
a code or password is never checked without a limit.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Protocol

import msgspec

from guichet.core.addresses import client_subject
from guichet.core.config import DEFAULT_REDIS_TIMEOUT_SECONDS
from guichet.core.errors import CounterStoreError
from guichet.core.redis_store import redis_client
from guichet.core.statements import POINT_WRITE, fetch
from guichet.core.structs import Measurement

if TYPE_CHECKING:
    from guichet.core.database import Database
    from guichet.core.keys import Keys

log = logging.getLogger("guichet.ratelimit")


class Count(msgspec.Struct, frozen=True, kw_only=True):
    """A counter after a hit: how many in the window, when the last one was, and the one before it."""

    count: int
    last_at_ms: int
    previous_at_ms: int = 0  # the hit before this one, 0 when it is the window's first


NO_HITS = Count(count=0, last_at_ms=0)


class CounterStore(Protocol):
    async def update(
        self, hits: dict[str, int], now_ms: int, *, clear: Collection[str] = (), give_back: dict[str, int] | None = None
    ) -> dict[str, Count]:
        """In one atomic round trip: count a hit on each key of ``hits`` (key to window in ms), reset
        the keys of ``clear`` and undo the hit counted at ``give_back[key]`` (ms) on each of its keys:
        one hit less (never below 0), and the last hit's time back to the one before it unless a
        later hit came since. Returns the counts of the hit keys."""

    async def peek(self, keys: dict[str, int], now_ms: int) -> dict[str, Count]:
        """The counts of several keys at once; ``keys`` maps each key to its window in ms."""

    async def clear(self, key: str) -> None: ...


def _ops(
    hits: dict[str, int], now_ms: int, clear: Collection[str], give_back: dict[str, int] | None
) -> list[tuple[str, int, int]]:
    """(key, window, time) rows, sorted by key so that concurrent statements lock rows in one order;
    the window says the operation: > 0 a hit at now, 0 a reset, -1 the hit counted at ``time`` undone."""
    if any(window <= 0 for window in hits.values()):
        raise ValueError("a hit needs a window")
    rows = {key: (window, now_ms) for key, window in hits.items()}
    for key, op in [*((k, (0, now_ms)) for k in clear), *((k, (-1, at)) for k, at in (give_back or {}).items())]:
        if key in rows:
            raise ValueError("a counter is hit, cleared or given back once per update")
        rows[key] = op
    return sorted((key, window, at) for key, (window, at) in rows.items())


class DatabaseCounters:
    """Counters in the guichet_rate_counter table: one atomic upsert per update, whatever it touches."""

    def __init__(self, database: "Database") -> None:
        self.database = database

    async def update(
        self, hits: dict[str, int], now_ms: int, *, clear: Collection[str] = (), give_back: dict[str, int] | None = None
    ) -> dict[str, Count]:
        rows = _ops(hits, now_ms, clear, give_back)
        if not rows:
            return {}
        t = self.database.t.RateCounter._meta.tablename
        # In an upsert, SET expressions read the row as it was: prev_at_ms keeps the last hit's time
        # before this one, so a try is judged by the pause since the try before it. A row's window_ms
        # and last_at_ms carry the operation and its time (excluded.*). A reset ends the window (as
        # a delete would: the next hit starts a new one); a reset or a give-back of a key never hit
        # inserts a row with no hit and no window, which the purge drops.
        expired = f"{t}.window_start_ms < {{}} - excluded.window_ms"
        values = ", ".join("({}, {}, {}, {}, 0, {})" for _ in rows)
        args: list[object] = []
        for key, window, at in rows:
            args += [key, 1 if window > 0 else 0, 0 if window == 0 else now_ms, at, window]
        sql = (
            f"{POINT_WRITE}INSERT INTO {t} (key, hits, window_start_ms, last_at_ms, prev_at_ms, window_ms) "
            f"VALUES {values} "
            "ON CONFLICT (key) DO UPDATE SET "
            f"hits = CASE WHEN excluded.window_ms > 0 THEN CASE WHEN {expired} THEN 1 ELSE {t}.hits + 1 END "
            f"WHEN excluded.window_ms = 0 THEN 0 "
            f"WHEN {t}.hits > 0 THEN {t}.hits - 1 ELSE 0 END, "
            f"prev_at_ms = CASE WHEN excluded.window_ms <= 0 THEN {t}.prev_at_ms "
            f"WHEN {expired} THEN 0 ELSE {t}.last_at_ms END, "
            f"window_start_ms = CASE WHEN excluded.window_ms > 0 AND {expired} THEN excluded.window_start_ms "
            f"WHEN excluded.window_ms = 0 THEN 0 ELSE {t}.window_start_ms END, "
            f"last_at_ms = CASE WHEN excluded.window_ms > 0 THEN excluded.last_at_ms "
            f"WHEN excluded.window_ms < 0 AND {t}.last_at_ms = excluded.last_at_ms THEN {t}.prev_at_ms "
            f"ELSE {t}.last_at_ms END, "
            f"window_ms = CASE WHEN excluded.window_ms > 0 THEN excluded.window_ms ELSE {t}.window_ms END "
            "RETURNING key, hits, last_at_ms, prev_at_ms"
        )
        args += [now_ms, now_ms, now_ms]
        try:
            returned = await fetch(self.database.t.RateCounter, sql, *args)
        except Exception as exc:
            log.error("rate-limit counter store failed: %s", type(exc).__name__)
            raise CounterStoreError("the counter store is unavailable") from None
        return {
            row["key"]: Count(
                count=int(row["hits"]), last_at_ms=int(row["last_at_ms"]), previous_at_ms=int(row["prev_at_ms"])
            )
            for row in returned
            if row["key"] in hits
        }

    async def peek(self, keys: dict[str, int], now_ms: int) -> dict[str, Count]:
        t = self.database.t.RateCounter
        try:
            rows = await t.select(t.key, t.hits, t.window_start_ms, t.last_at_ms).where(t.key.is_in(list(keys))).run()
        except Exception as exc:
            log.error("rate-limit counter store failed: %s", type(exc).__name__)
            raise CounterStoreError("the counter store is unavailable") from None
        counts = dict.fromkeys(keys, NO_HITS)
        for row in rows:
            if row["window_start_ms"] >= now_ms - keys[row["key"]]:
                counts[row["key"]] = Count(count=int(row["hits"]), last_at_ms=int(row["last_at_ms"]))
        return counts

    async def clear(self, key: str) -> None:
        await self.update({}, 0, clear=[key])

    async def purge(self, now: dt.datetime) -> None:
        """Drop the counters whose window has passed (a reset or a give-back alone has no window)."""
        t = self.database.t.RateCounter
        await t.raw(
            f"DELETE FROM {t._meta.tablename} WHERE window_start_ms + window_ms < {{}}", int(now.timestamp() * 1000)
        ).run()


class RedisCounters:
    """Counters in Redis, shared by every app process; a window is a key's time to live."""

    # KEYS: the count, last-hit and previous-hit keys of each counter, in threes; ARGV: now, then per
    # counter an operation ("hit", "clear", "back"), a window and a time (a given-back hit's).
    # Returns the count and the previous hit's time of each hit, in order.
    _UPDATE = """
    local now = ARGV[1]
    local out = {}
    for i = 1, #KEYS, 3 do
      local n = (i - 1) / 3
      local op, window, at = ARGV[3 * n + 2], ARGV[3 * n + 3], ARGV[3 * n + 4]
      if op == 'hit' then
        local count = redis.call('INCR', KEYS[i])
        local previous = '0'
        if count == 1 then
          redis.call('PEXPIRE', KEYS[i], window)
        else
          previous = redis.call('GET', KEYS[i + 1]) or '0'
        end
        redis.call('SET', KEYS[i + 1], now, 'PX', window)
        redis.call('SET', KEYS[i + 2], previous, 'PX', window)
        table.insert(out, count)
        table.insert(out, tonumber(previous))
      elseif op == 'clear' then
        redis.call('DEL', KEYS[i], KEYS[i + 1], KEYS[i + 2])
      elseif tonumber(redis.call('GET', KEYS[i]) or '0') > 0 then
        redis.call('DECR', KEYS[i])
        if redis.call('GET', KEYS[i + 1]) == at then
          redis.call('SET', KEYS[i + 1], redis.call('GET', KEYS[i + 2]) or '0', 'KEEPTTL')
        end
      end
    end
    return out
    """

    def __init__(
        self,
        url: str,
        namespace: str,
        *,
        password: str | None = None,
        timeout_seconds: float = DEFAULT_REDIS_TIMEOUT_SECONDS,
    ) -> None:
        self.client = redis_client(url, password=password, timeout_seconds=timeout_seconds)
        self.namespace = namespace
        self._update = self.client.register_script(self._UPDATE)

    def _keys(self, key: str) -> list[str]:
        """The count, the last hit's time and the time of the hit before it."""
        return [f"{self.namespace}:rl:{key}", f"{self.namespace}:rl:{key}:last", f"{self.namespace}:rl:{key}:prev"]

    async def update(
        self, hits: dict[str, int], now_ms: int, *, clear: Collection[str] = (), give_back: dict[str, int] | None = None
    ) -> dict[str, Count]:
        rows = _ops(hits, now_ms, clear, give_back)
        if not rows:
            return {}
        keys = [k for key, _, _ in rows for k in self._keys(key)]
        args: list[str | int] = [now_ms]
        for _key, window, at in rows:
            args += ["hit" if window > 0 else "clear" if window == 0 else "back", max(window, 1), at]
        try:
            out = await self._update(keys=keys, args=args)
        except Exception as exc:
            log.error("rate-limit counter store failed: %s", type(exc).__name__)
            raise CounterStoreError("the counter store is unavailable") from None
        hit_keys = [key for key, window, _ in rows if window > 0]
        return {
            key: Count(count=int(out[2 * n]), last_at_ms=now_ms, previous_at_ms=int(out[2 * n + 1]))
            for n, key in enumerate(hit_keys)
        }

    async def peek(self, keys: dict[str, int], now_ms: int) -> dict[str, Count]:
        try:
            values = await self.client.mget([k for key in keys for k in self._keys(key)[:2]])
        except Exception as exc:
            log.error("rate-limit counter store failed: %s", type(exc).__name__)
            raise CounterStoreError("the counter store is unavailable") from None
        return {
            key: Count(count=int(values[2 * n] or 0), last_at_ms=int(values[2 * n + 1] or 0))
            for n, key in enumerate(keys)
        }

    async def clear(self, key: str) -> None:
        await self.update({}, 0, clear=[key])

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


class Settlement(msgspec.Struct, frozen=True, kw_only=True):
    """What a try that succeeded undoes: counters to reset, and tries reserved at ``reserved_at`` to
    give back (their count, and their time, so that a success does not lengthen the next pause)."""

    clear: tuple[tuple[Limit, str], ...] = ()
    give_back: tuple[tuple[Limit, str], ...] = ()
    reserved_at: dt.datetime | None = None

    def __bool__(self) -> bool:
        return bool(self.clear or self.give_back)


class Limiter:
    """Applies Limits to subjects; subjects are hashed with the caisse's key before they are stored."""

    def __init__(self, store: CounterStore, keys: "Keys", measure: Callable[[Measurement], None] | None = None) -> None:
        """``measure``: where hits and refusals are counted (``PluginHost.measure``: guichet_measure)."""
        self.store = store
        self.keys = keys
        self.measure = measure

    def _counted(self, name: str, limit: Limit) -> None:
        if self.measure is not None:
            self.measure(Measurement(name=name, labels={"limit": limit.name}))

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
                self._counted("rate_limit_refusal", limit)
            verdicts.append(verdict)
        return verdicts

    async def reserve(
        self, tries: list[tuple[Limit, str]], now: dt.datetime, settle: Settlement | None = None
    ) -> list[Verdict]:
        """Count one try on each (limit, subject), then judge each against the tries counted before it.

        The count comes first, in one atomic round trip for every pair: of N concurrent tries, each
        gets its own place 1..N, so those past a limit or inside a pause are refused without being
        checked (a password verified, a code compared, a message sent). A refused try counts too:
        retrying inside a pause makes it longer. A try that succeeds is undone with ``settle`` (a right
        password resets its identifier's counter); ``settle`` here goes in the same round trip.
        """
        keyed = [(limit, self._key(limit, subject)) for limit, subject in tries]
        now_ms = self._ms(now)
        clear, give_back = self._settle_keys(settle)
        counts = await self.store.update(
            {key: limit.window_seconds * 1000 for limit, key in keyed}, now_ms, clear=clear, give_back=give_back
        )
        verdicts = []
        for limit, key in keyed:
            after = counts[key]
            self._counted("rate_limit_hit", limit)
            before = Count(count=after.count - 1, last_at_ms=after.previous_at_ms)
            verdict = self._judge(limit, before, now_ms)
            if not verdict.allowed:
                self._counted("rate_limit_refusal", limit)
            verdicts.append(
                Verdict(allowed=verdict.allowed, retry_after_seconds=verdict.retry_after_seconds, count=after.count)
            )
        return verdicts

    async def settle(self, settlement: Settlement) -> None:
        """Undo tries that succeeded (see ``reserve``): one round trip."""
        clear, give_back = self._settle_keys(settlement)
        if clear or give_back:
            await self.store.update({}, 0, clear=clear, give_back=give_back)

    def _settle_keys(self, settlement: Settlement | None) -> tuple[list[str], dict[str, int]]:
        if not settlement:
            return [], {}
        if settlement.give_back and settlement.reserved_at is None:
            raise ValueError("a try given back needs the time it was reserved")
        at = self._ms(settlement.reserved_at) if settlement.reserved_at else 0
        return (
            [self._key(limit, subject) for limit, subject in settlement.clear],
            {self._key(limit, subject): at for limit, subject in settlement.give_back},
        )

    async def hit(self, limit: Limit, subject: str, now: dt.datetime) -> Verdict:
        """Count one try (a failure, a send) and say whether the next one may come now."""
        key = self._key(limit, subject)
        count = (await self.store.update({key: limit.window_seconds * 1000}, self._ms(now)))[key]
        self._counted("rate_limit_hit", limit)
        verdict = self._judge(limit, count, self._ms(now))
        if not verdict.allowed:
            self._counted("rate_limit_refusal", limit)
        return verdict

    async def take(self, limit: Limit, subject: str, now: dt.datetime) -> Verdict:
        """Count this try and say whether *it* is within the limit: a send, a registration, a request.

        ``hit`` judges the try after (whether the next may come); with ``take`` a limit of N per
        window lets N through and refuses the N + 1st.
        """
        (verdict,) = await self.reserve([(limit, subject)], now)
        return verdict

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
