"""Server-side sessions: hashed ids, rotation, idle and absolute timeouts, database and Redis."""

from __future__ import annotations

import datetime as dt

import pytest

from guichet.core.clock import FrozenClock
from guichet.core.database import Database
from guichet.core.keys import token_digest
from guichet.core.sessions import DatabaseSessions, RedisSessions, SessionManager
from tests.conftest import redis_url


def manager_for(backend: object) -> SessionManager:
    return SessionManager(backend, idle_minutes=30, absolute_hours=12)  # type: ignore[arg-type]


async def test_database_sessions_rotate_and_expire(database: Database, clock: FrozenClock) -> None:
    manager = manager_for(DatabaseSessions(database))
    session = await manager.load(None, clock.now())
    data = session.ensure(int(clock.now().timestamp() * 1000))
    data.account_id = 42
    await manager.commit(session, clock.now())
    first_sid = session.sid
    assert first_sid
    rows = await database.t.Session.select(database.t.Session.key).run()
    assert rows == [{"key": token_digest(first_sid)}], "the store keeps only a digest of the id"

    again = await manager.load(first_sid, clock.now())
    assert again.data is not None and again.data.account_id == 42
    again.rotate()
    await manager.commit(again, clock.now())
    assert again.sid != first_sid
    assert (await manager.load(first_sid, clock.now())).data is None, "the old id is dead after rotation"
    assert (await manager.load(again.sid, clock.now())).data is not None

    clock.advance(minutes=31)
    assert (await manager.load(again.sid, clock.now())).data is None, "idle timeout"


async def test_absolute_timeout(database: Database, clock: FrozenClock) -> None:
    manager = manager_for(DatabaseSessions(database))
    session = await manager.load(None, clock.now())
    session.ensure(int(clock.now().timestamp() * 1000))
    await manager.commit(session, clock.now())
    sid = session.sid
    for _ in range(26):  # active every 29 minutes for 12.5 hours
        clock.advance(minutes=29)
        current = await manager.load(sid, clock.now())
        if current.data is None:
            break
        await manager.commit(current, clock.now())
    assert current.data is None


async def test_redis_sessions() -> None:
    url = redis_url()
    backend = RedisSessions(url, f"test-{dt.datetime.now().timestamp()}")
    manager = manager_for(backend)
    clock = FrozenClock()
    try:
        session = await manager.load(None, clock.now())
        session.ensure(int(clock.now().timestamp() * 1000)).account_id = 5
        await manager.commit(session, clock.now())
        loaded = await manager.load(session.sid, clock.now())
        assert loaded.data is not None and loaded.data.account_id == 5
        loaded.clear()
        await manager.commit(loaded, clock.now())
        assert (await manager.load(session.sid, clock.now())).data is None
    finally:
        await backend.close()


@pytest.mark.parametrize("bad", ["", "x" * 200, "not-a-session"])
async def test_garbage_ids_load_nothing(database: Database, clock: FrozenClock, bad: str) -> None:
    manager = manager_for(DatabaseSessions(database))
    assert (await manager.load(bad, clock.now())).data is None


async def _rotation_keeps_one_row(manager: SessionManager, clock: FrozenClock) -> None:
    session = await manager.load(None, clock.now())
    session.ensure(int(clock.now().timestamp() * 1000)).account_id = 7
    session.rotate()  # rotated before it was ever stored (a login from an anonymous browser)
    assert session.old_sid is None, "an id made in this request was never stored: nothing to drop"
    await manager.commit(session, clock.now())
    stored = await manager.load(session.sid, clock.now())
    stored.rotate()
    stored.rotate()  # twice in one request (password, then a trusted browser): the stored id is dropped
    await manager.commit(stored, clock.now())
    assert (await manager.load(session.sid, clock.now())).data is None
    moved = await manager.load(stored.sid, clock.now())
    assert moved.data is not None and moved.data.account_id == 7


async def test_database_rotation_moves_the_row(database: Database, clock: FrozenClock) -> None:
    backend = DatabaseSessions(database)
    await _rotation_keeps_one_row(manager_for(backend), clock)
    assert len(await database.t.Session.select(database.t.Session.key).run()) == 1
    # the old row already gone (a logout in another tab): nothing is moved, nothing is made
    future = clock.now() + dt.timedelta(minutes=5)
    assert not await backend.move("gone", "new-key", b'{"created_ms": 1, "seen_ms": 1}', future)
    assert await backend.load("new-key", clock.now()) is None


async def test_redis_rotation_moves_the_key() -> None:
    backend = RedisSessions(redis_url(), f"test-{dt.datetime.now().timestamp()}")
    try:
        await _rotation_keeps_one_row(manager_for(backend), FrozenClock())
    finally:
        await backend.close()


async def test_a_timed_out_redis_session_is_judged_and_reported_not_lost() -> None:
    backend = RedisSessions(redis_url(), f"test-{dt.datetime.now().timestamp()}")
    manager = manager_for(backend)
    clock = FrozenClock()
    try:
        session = await manager.load(None, clock.now())
        session.ensure(int(clock.now().timestamp() * 1000)).account_id = 9
        await manager.commit(session, clock.now())
        assert session.sid is not None
        left = await backend.client.ttl(f"{backend.namespace}:session:{token_digest(session.sid)}")
        assert left > (30 + 4) * 60, "the key outlives the 30-minute idle timeout by a few minutes"
        clock.advance(minutes=31)  # past the idle timeout, while the key is still there
        returned = await manager.load(session.sid, clock.now())
        assert returned.data is None and returned.expired == (9, "idle"), "judged as expired, for the audit"
        assert (await manager.load(session.sid, clock.now())).expired is None, "and then gone"
    finally:
        await backend.close()


async def _an_ended_session_stays_ended(manager: SessionManager, clock: FrozenClock) -> None:
    """Two requests load one session; one logs out; the other's save or rotation brings nothing back."""
    session = await manager.load(None, clock.now())
    session.ensure(int(clock.now().timestamp() * 1000)).account_id = 11
    await manager.commit(session, clock.now())
    sid = session.sid
    for change in ("save", "rotate"):
        if change == "rotate":  # log in again for the second round
            session = await manager.load(None, clock.now())
            session.ensure(int(clock.now().timestamp() * 1000)).account_id = 11
            await manager.commit(session, clock.now())
            sid = session.sid
        slow = await manager.load(sid, clock.now())
        logout = await manager.load(sid, clock.now())
        assert slow.data is not None and logout.data is not None
        await manager.end(logout)
        assert (await manager.load(sid, clock.now())).data is None
        if change == "save":
            slow.data.seen_ms += 61_000
            slow.dirty = True
        else:
            slow.rotate()
        await manager.commit(slow, clock.now())
        assert slow.lost, f"the {change} of an ended session was not reported"
        assert (await manager.load(sid, clock.now())).data is None, f"the {change} brought the old id back"
        if slow.sid != sid:
            assert (await manager.load(slow.sid, clock.now())).data is None, "the rotation made a new session"


async def test_an_ended_database_session_stays_ended(database: Database, clock: FrozenClock) -> None:
    await _an_ended_session_stays_ended(manager_for(DatabaseSessions(database)), clock)
    assert await database.t.Session.count().run() == 0


async def test_an_ended_redis_session_stays_ended() -> None:
    backend = RedisSessions(redis_url(), f"test-{dt.datetime.now().timestamp()}")
    try:
        await _an_ended_session_stays_ended(manager_for(backend), FrozenClock())
        assert await backend.client.keys(f"{backend.namespace}:session:*") == []
    finally:
        await backend.close()


async def _a_stale_clear_leaves_the_rotated_session(manager: SessionManager, clock: FrozenClock) -> None:
    """A request loads a session while another rotates it (a password change): the first then finds the
    credentials changed and clears its view. That clear must not end the rotated session, nor clear
    the browser's cookie, which already holds the new id."""
    session = await manager.load(None, clock.now())
    session.ensure(int(clock.now().timestamp() * 1000)).account_id = 12
    await manager.commit(session, clock.now())
    old = session.sid
    stale = await manager.load(old, clock.now())  # the password meter, loaded before the change
    changing = await manager.load(old, clock.now())
    changing.rotate()
    await manager.commit(changing, clock.now())
    stale.clear()
    await manager.commit(stale, clock.now())
    assert stale.lost, "the stale clear would send a cookie that logs the browser out"
    assert (await manager.load(changing.sid, clock.now())).data is not None, "the rotated session was ended"


async def test_a_stale_clear_leaves_the_rotated_database_session(database: Database, clock: FrozenClock) -> None:
    await _a_stale_clear_leaves_the_rotated_session(manager_for(DatabaseSessions(database)), clock)


async def test_a_stale_clear_leaves_the_rotated_redis_session() -> None:
    backend = RedisSessions(redis_url(), f"test-{dt.datetime.now().timestamp()}")
    try:
        await _a_stale_clear_leaves_the_rotated_session(manager_for(backend), FrozenClock())
    finally:
        await backend.close()
