"""Counters and progressive delays, in the database and in Redis; a failing store refuses."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from typing import Any
from urllib.parse import urlsplit

import pytest

from guichet.core.clock import FrozenClock
from guichet.core.database import Database
from guichet.core.errors import CounterStoreError
from guichet.core.keys import Keys
from guichet.core.ratelimit import DatabaseCounters, Limit, Limiter, RedisCounters, Settlement, Verdict
from guichet.core.services import build_services
from tests.conftest import TEST_SECRET, portal_config_text, redis_url

SLOW = Limit(name="t-slow", window_seconds=3600, max_count=100, delay_after=3, max_delay_seconds=60)
HARD = Limit(name="t-hard", window_seconds=600, max_count=3)


@pytest.fixture
def limiter(database: Database) -> Limiter:
    return Limiter(DatabaseCounters(database), Keys(TEST_SECRET))


async def test_hard_limit_resets_with_the_window(limiter: Limiter, clock: FrozenClock) -> None:
    verdicts = [await limiter.hit(HARD, "1850578006084", clock.now()) for _ in range(3)]
    assert [v.allowed for v in verdicts] == [True, True, False]
    assert not (await limiter.check(HARD, "1850578006084", clock.now())).allowed
    assert (await limiter.check(HARD, "2920633123045", clock.now())).allowed, "another subject is not affected"
    clock.advance(seconds=601)
    assert (await limiter.check(HARD, "1850578006084", clock.now())).allowed
    assert (await limiter.hit(HARD, "1850578006084", clock.now())).allowed


async def test_progressive_delay_doubles_and_never_locks_out(limiter: Limiter, clock: FrozenClock) -> None:
    for _ in range(3):
        await limiter.hit(SLOW, "x", clock.now())
    first = await limiter.check(SLOW, "x", clock.now())
    assert not first.allowed and first.retry_after_seconds == 1
    clock.advance(seconds=1.1)
    assert (await limiter.check(SLOW, "x", clock.now())).allowed
    await limiter.hit(SLOW, "x", clock.now())
    second = await limiter.check(SLOW, "x", clock.now())
    assert second.retry_after_seconds == 2
    for _ in range(20):
        await limiter.hit(SLOW, "x", clock.now())
    capped = await limiter.check(SLOW, "x", clock.now())
    assert capped.retry_after_seconds <= 60
    clock.advance(seconds=61)
    assert (await limiter.check(SLOW, "x", clock.now())).allowed, "the owner can always try again later"


async def test_counter_keys_hold_no_identifier(limiter: Limiter, database: Database, clock: FrozenClock) -> None:
    await limiter.hit(HARD, "1850578006084", clock.now())
    rows = await database.t.RateCounter.select().run()
    assert "1850578006084" not in repr(rows)


async def test_redis_counters(clock: FrozenClock) -> None:
    url = redis_url()
    store = RedisCounters(url, f"test-{dt.datetime.now().timestamp()}")
    limiter = Limiter(store, Keys(TEST_SECRET))
    try:
        assert [(await limiter.hit(HARD, "s", clock.now())).allowed for _ in range(3)] == [True, True, False]
        await limiter.clear(HARD, "s")
        assert (await limiter.check(HARD, "s", clock.now())).allowed
    finally:
        await store.close()


async def test_unreachable_store_raises_so_callers_refuse(clock: FrozenClock) -> None:
    store = RedisCounters("redis://127.0.0.1:1/0", "down")
    limiter = Limiter(store, Keys(TEST_SECRET))
    with pytest.raises(CounterStoreError):
        await limiter.hit(HARD, "s", clock.now())
    with pytest.raises(CounterStoreError):
        await limiter.check(HARD, "s", clock.now())
    await store.close()


async def _two_three_none(limiter: Limiter, clock: FrozenClock) -> list[Verdict]:
    """Subject "a" hit twice under HARD, "b" three times under SLOW, "c" never: read all at once."""
    for _ in range(2):
        await limiter.hit(HARD, "a", clock.now())
    for _ in range(3):
        await limiter.hit(SLOW, "b", clock.now())
    hard_a, slow_b, hard_c = verdicts = await limiter.check_all([(HARD, "a"), (SLOW, "b"), (HARD, "c")], clock.now())
    assert (hard_a.allowed, hard_a.count) == (True, 2)
    assert (slow_b.allowed, slow_b.count) == (False, 3), "the delay applies"
    assert (hard_c.allowed, hard_c.count) == (True, 0), "a subject never seen has nothing to clear"
    return verdicts


async def test_check_all_reads_several_subjects_at_once(limiter: Limiter, clock: FrozenClock) -> None:
    verdicts = await _two_three_none(limiter, clock)
    assert verdicts[1].retry_after_seconds == 1
    assert [v.count for v in await limiter.check_all([(HARD, "a")], clock.now())] == [2]
    clock.advance(seconds=601)  # HARD's window is over, SLOW's is not (windows end per limit)
    hard_a, slow_b = await limiter.check_all([(HARD, "a"), (SLOW, "b")], clock.now())
    assert hard_a.count == 0 and slow_b.count == 3


async def test_check_all_on_redis(clock: FrozenClock) -> None:
    store = RedisCounters(redis_url(), f"test-{dt.datetime.now().timestamp()}")
    try:
        await _two_three_none(Limiter(store, Keys(TEST_SECRET)), clock)
    finally:
        await store.close()


async def test_redis_password_comes_from_the_config_secret(
    make_config: Any, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Redis user with a password (ACL): counters and sessions authenticate with [redis] password."""
    import redis.asyncio as redis

    url = urlsplit(redis_url())
    admin = redis.Redis(host=url.hostname or "127.0.0.1", port=url.port or 6379)
    user = f"guichet-test-{secrets.token_hex(4)}"
    await admin.execute_command("ACL", "SETUSER", user, "on", ">right-password", "~*", "+@all")
    extra = f"""
        [rate_limits]
        store = "redis"
        [redis]
        url = "redis://{user}@{url.hostname}:{url.port}{url.path}"
        password = {{ env = "GUICHET_TEST_REDIS_PASSWORD" }}
    """
    try:
        for password, works in (("right-password", True), ("wrong-password", False)):
            monkeypatch.setenv("GUICHET_TEST_REDIS_PASSWORD", password)
            services = build_services(make_config(extra, base=portal_config_text()))
            try:
                if works:
                    assert (await services.limiter.hit(HARD, user, clock.now())).allowed  # a subject of this run
                else:
                    with pytest.raises(CounterStoreError):  # refused, so the caller refuses the attempt
                        await services.limiter.hit(HARD, user, clock.now())
            finally:
                await services.close()
    finally:
        await admin.execute_command("ACL", "DELUSER", user)
        await admin.aclose()


# --- races: every store counts N concurrent tries as 1..N, in one round trip per request ----------------

WINDOW_MS = 3_600_000


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """Where the counters live: a database URL, or the Redis URL."""
    from tests.conftest import postgres_url

    if request.param == "redis":
        return redis_url()
    return f"sqlite:///{tmp_path / 'race.sqlite'}" if request.param == "sqlite" else postgres_url()


@pytest.fixture
async def store(backend: str) -> Any:
    """Each counter store on its real backend."""
    if backend.startswith("redis"):
        redis_store = RedisCounters(backend, f"test-race-{secrets.token_hex(4)}")
        try:
            yield redis_store
        finally:
            for key in await redis_store.client.keys(f"{redis_store.namespace}:*"):
                await redis_store.client.delete(key)
            await redis_store.close()
        return
    from tests.conftest import _reset_postgres

    db = Database(backend)
    await db.connect()
    if db.is_sqlite:
        await db.upgrade()
    else:
        await _reset_postgres(db)
    try:
        yield DatabaseCounters(db)
    finally:
        await db.close()


async def test_concurrent_hits_on_one_counter_count_one_to_n(store: Any, clock: FrozenClock) -> None:
    now_ms = int(clock.now().timestamp() * 1000)
    results = await asyncio.gather(*(store.update({"k": WINDOW_MS}, now_ms) for _ in range(40)))
    assert sorted(r["k"].count for r in results) == list(range(1, 41)), "two tries got the same count"


async def test_concurrent_hits_on_two_counters_in_one_statement_count_each_exactly(
    store: Any, clock: FrozenClock
) -> None:
    now_ms = int(clock.now().timestamp() * 1000)
    # both orders at once: the store takes its locks in one order, so they cannot deadlock
    results = await asyncio.gather(
        *(
            store.update({"a": WINDOW_MS, "b": WINDOW_MS} if n % 2 else {"b": WINDOW_MS, "a": WINDOW_MS}, now_ms)
            for n in range(30)
        )
    )
    for key in ("a", "b"):
        assert sorted(r[key].count for r in results) == list(range(1, 31)), key


async def test_a_hit_returns_the_time_of_the_hit_before_it(store: Any, clock: FrozenClock) -> None:
    t0 = int(clock.now().timestamp() * 1000)
    first = (await store.update({"k": WINDOW_MS}, t0))["k"]
    second = (await store.update({"k": WINDOW_MS}, t0 + 1500))["k"]
    assert (first.count, first.previous_at_ms) == (1, 0)
    assert (second.count, second.last_at_ms, second.previous_at_ms) == (2, t0 + 1500, t0)


async def test_clear_and_give_back_go_with_the_hits_in_one_round_trip(store: Any, clock: FrozenClock) -> None:
    now_ms = int(clock.now().timestamp() * 1000)
    for _ in range(3):
        await store.update({"a": WINDOW_MS, "b": WINDOW_MS}, now_ms)
    counts = await store.update({"c": WINDOW_MS}, now_ms, clear=["a"], give_back={"b": now_ms, "never-hit": now_ms})
    assert list(counts) == ["c"] and counts["c"].count == 1
    seen = await store.peek({"a": WINDOW_MS, "b": WINDOW_MS, "c": WINDOW_MS, "never-hit": WINDOW_MS}, now_ms)
    assert {k: v.count for k, v in seen.items()} == {"a": 0, "b": 2, "c": 1, "never-hit": 0}
    assert (await store.update({"never-hit": WINDOW_MS}, now_ms))["never-hit"].count == 1, (
        "a try given back that was never counted leaves no debt"
    )


async def test_concurrent_give_backs_and_hits_add_up(store: Any, clock: FrozenClock) -> None:
    now_ms = int(clock.now().timestamp() * 1000)
    for _ in range(10):
        await store.update({"k": WINDOW_MS}, now_ms)
    await asyncio.gather(
        *(store.update({}, now_ms, give_back={"k": now_ms}) for _ in range(10)),
        *(store.update({"k": WINDOW_MS}, now_ms) for _ in range(20)),
    )
    assert (await store.peek({"k": WINDOW_MS}, now_ms))["k"].count == 20


async def test_parallel_reservations_let_exactly_the_allowance_through(store: Any, clock: FrozenClock) -> None:
    """A try is counted before it is judged, against the tries before it: N parallel tries cost N."""
    limiter = Limiter(store, Keys(TEST_SECRET))
    slowed = await asyncio.gather(*(limiter.reserve([(SLOW, "x")], clock.now()) for _ in range(20)))
    assert sum(v.allowed for [v] in slowed) == SLOW.delay_after, "tries past the pause were let through"
    assert sorted(v.count for [v] in slowed) == list(range(1, 21))
    hard = await asyncio.gather(*(limiter.reserve([(HARD, "y"), (SLOW, "z")], clock.now()) for _ in range(10)))
    assert sum(h.allowed for h, _ in hard) == HARD.max_count
    assert sum(s.allowed for _, s in hard) == SLOW.delay_after
    [after] = await limiter.check_all([(SLOW, "x")], clock.now())
    assert after.count == 20 and not after.allowed


async def test_a_reservation_is_judged_by_the_pause_since_the_try_before(store: Any, clock: FrozenClock) -> None:
    limiter = Limiter(store, Keys(TEST_SECRET))
    verdicts = [(await limiter.reserve([(SLOW, "x")], clock.now()))[0].allowed for _ in range(4)]
    assert verdicts == [True, True, True, False], "the 4th try comes less than 1 s after the 3rd"
    clock.advance(seconds=2.5)  # the refused try counted: 2 s after it, not 1
    assert (await limiter.reserve([(SLOW, "x")], clock.now()))[0].allowed
    assert not (await limiter.reserve([(SLOW, "x")], clock.now()))[0].allowed
    await limiter.settle(Settlement(clear=((SLOW, "x"),)))
    assert (await limiter.reserve([(SLOW, "x")], clock.now()))[0].allowed, "a right password clears the pause"


async def test_a_try_given_back_takes_its_time_back_too(store: Any, clock: FrozenClock) -> None:
    """A right code after failures must not lengthen the pause before the next try."""
    limiter = Limiter(store, Keys(TEST_SECRET))
    for _ in range(3):
        await limiter.reserve([(SLOW, "x")], clock.now())
    clock.advance(seconds=1.5)
    reserved_at = clock.now()
    assert (await limiter.reserve([(SLOW, "x")], reserved_at))[0].allowed  # the 4th try: right, given back
    await limiter.settle(Settlement(give_back=((SLOW, "x"),), reserved_at=reserved_at))
    clock.advance(seconds=0.1)  # 1.6 s after the last failure, 0.1 s after the success
    [verdict] = await limiter.reserve([(SLOW, "x")], clock.now())
    assert verdict.allowed and verdict.count == 4, "the pause was counted from the try given back"


async def test_a_give_back_leaves_a_later_try_s_time_alone(store: Any, clock: FrozenClock) -> None:
    limiter = Limiter(store, Keys(TEST_SECRET))
    for _ in range(3):
        await limiter.reserve([(SLOW, "x")], clock.now())
    clock.advance(seconds=2)
    reserved_at = clock.now()
    await limiter.reserve([(SLOW, "x")], reserved_at)
    clock.advance(seconds=1.9)
    await limiter.reserve([(SLOW, "x")], clock.now())  # a parallel wrong try, counted after it
    await limiter.settle(Settlement(give_back=((SLOW, "x"),), reserved_at=reserved_at))
    clock.advance(seconds=0.6)  # 2.5 s after the try given back, 0.6 s after the wrong one
    [verdict] = await limiter.check_all([(SLOW, "x")], clock.now())
    assert verdict.count == 4 and not verdict.allowed, "the wrong try's pause was lost"


async def test_counter_rows_whose_window_passed_are_purged(database: Database, clock: FrozenClock) -> None:
    store = DatabaseCounters(database)
    now_ms = int(clock.now().timestamp() * 1000)
    await store.update({"over": 1000, "running": WINDOW_MS}, now_ms - 5000)
    await store.update({}, now_ms - 5000, clear=["cleared-but-never-hit"])
    await store.purge(clock.now())
    rows = await database.t.RateCounter.select(database.t.RateCounter.key).run()
    assert [row["key"] for row in rows] == ["running"]


async def test_a_reset_counter_starts_a_new_window_at_its_next_hit(store: Any, clock: FrozenClock) -> None:
    t0 = int(clock.now().timestamp() * 1000)
    minute = 60_000
    for _ in range(3):
        await store.update({"k": 60 * minute}, t0)
    await store.update({}, t0 + 10 * minute, clear=["k"])
    assert (await store.peek({"k": 60 * minute}, t0 + 10 * minute))["k"].count == 0
    first = (await store.update({"k": 60 * minute}, t0 + 50 * minute))["k"]
    assert (first.count, first.previous_at_ms) == (1, 0)
    assert (await store.update({"k": 60 * minute}, t0 + 70 * minute))["k"].count == 2, (
        "the window after a reset runs from its first hit, as after a delete"
    )
