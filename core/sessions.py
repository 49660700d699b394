"""Server-side sessions: the cookie holds a random id, the store keeps its SHA-256 and the data.

The id changes after the password step and after the second factor; idle and absolute timeouts
apply; a credential change bumps the account's version and so ends its other sessions.
"""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Protocol

import msgspec

from guichet.core.keys import new_token, token_digest

if TYPE_CHECKING:
    from guichet.core.database import Database

ANONYMOUS, PASSWORD, FULL = "anonymous", "password", "full"
# A timed-out session stays readable this much longer, so that its return is judged (and audited as
# session.expired) rather than unknown: the database store's housekeeping purge runs as often.
EXPIRED_KEPT = dt.timedelta(minutes=5)


class SessionData(msgspec.Struct, kw_only=True):
    """What a session knows; nothing secret in clear (codes are in their own table)."""

    created_ms: int
    seen_ms: int
    account_id: int | None = None
    level: str = ANONYMOUS  # "password" after the password step, "full" after the second factor
    credentials_version: int = 0
    login_binding: str = ""  # the second-factor code's binding for this login
    trust_requested: bool = False
    pending_contact: dict[str, str] = {}  # a new email or mobile waiting for its code


class SessionBackend(Protocol):
    async def load(self, key: str, now: dt.datetime) -> bytes | None: ...
    async def save(self, key: str, data: bytes, expires_at: dt.datetime) -> None: ...
    async def replace(self, old_key: str, key: str, data: bytes, expires_at: dt.datetime) -> None:
        """Drop ``old_key`` and save under ``key``: a session id's rotation."""
    async def delete(self, key: str) -> None: ...


class DatabaseSessions:
    def __init__(self, database: "Database") -> None:
        self.database = database

    async def load(self, key: str, now: dt.datetime) -> bytes | None:
        t = self.database.t.Session
        # an expired row is still read: SessionManager judges the timeouts from the data, deletes the
        # row and audits session.expired; the housekeeping purge drops the rows nobody comes back for
        rows = await t.select(t.data).where(t.key == key).limit(1).run()
        return rows[0]["data"].encode() if rows else None

    async def save(self, key: str, data: bytes, expires_at: dt.datetime) -> None:
        t = self.database.t.Session
        table = t._meta.tablename
        await t.raw(f"INSERT INTO {table} (key, data, expires_at) VALUES ({{}}, {{}}, {{}}) "
                    "ON CONFLICT (key) DO UPDATE SET data = EXCLUDED.data, expires_at = EXCLUDED.expires_at",
                    key, data.decode(), expires_at).run()

    async def replace(self, old_key: str, key: str, data: bytes, expires_at: dt.datetime) -> None:
        # one statement in the usual case; a row already gone (a logout in another tab) is saved anew,
        # as a delete and a save would
        t = self.database.t.Session
        moved = await (t.update({t.key: key, t.data: data.decode(), t.expires_at: expires_at})
                       .where(t.key == old_key).returning(t.id).run())
        if not moved:
            await self.save(key, data, expires_at)

    async def delete(self, key: str) -> None:
        t = self.database.t.Session
        await t.delete().where(t.key == key).run()

    async def purge(self, now: dt.datetime) -> None:
        t = self.database.t.Session
        await t.delete().where(t.expires_at <= now).run()


class RedisSessions:
    def __init__(self, url: str, namespace: str, *, password: str | None = None) -> None:
        import redis.asyncio as redis

        self.client = redis.Redis.from_url(url, password=password, socket_timeout=2, socket_connect_timeout=2)
        self.namespace = namespace

    async def load(self, key: str, now: dt.datetime) -> bytes | None:
        value = await self.client.get(f"{self.namespace}:session:{key}")
        return bytes(value) if value is not None else None

    async def save(self, key: str, data: bytes, expires_at: dt.datetime) -> None:
        await self.client.set(f"{self.namespace}:session:{key}", data, ex=self._ttl(expires_at))

    async def replace(self, old_key: str, key: str, data: bytes, expires_at: dt.datetime) -> None:
        async with self.client.pipeline(transaction=True) as pipe:  # one round trip
            pipe.delete(f"{self.namespace}:session:{old_key}")
            pipe.set(f"{self.namespace}:session:{key}", data, ex=self._ttl(expires_at))
            await pipe.execute()

    @staticmethod
    def _ttl(expires_at: dt.datetime) -> int:
        return max(1, int((expires_at + EXPIRED_KEPT - dt.datetime.now(dt.timezone.utc)).total_seconds()))

    async def delete(self, key: str) -> None:
        await self.client.delete(f"{self.namespace}:session:{key}")

    async def close(self) -> None:
        await self.client.aclose()


class Session:
    """One request's view of its session: load, change, rotate, clear; saved once at the response."""

    def __init__(self, sid: str | None, data: SessionData | None) -> None:
        self.sid = sid
        self.data = data
        self.stored_sid = sid if data is not None else None  # the id the store holds this session under
        self.old_sid: str | None = None
        self.dirty = False
        self.cleared = False
        self.expired: tuple[int | None, str] | None = None  # (account, "idle" or "absolute") of a session that just timed out

    @property
    def exists(self) -> bool:
        return self.data is not None

    def ensure(self, now_ms: int) -> SessionData:
        if self.data is None:
            self.data = SessionData(created_ms=now_ms, seen_ms=now_ms)
            self.sid = new_token()
            self.dirty = True
        return self.data

    def rotate(self) -> None:
        """A new id for the same data: a fixed or stolen pre-login id becomes useless."""
        self.old_sid = self.stored_sid  # an id made in this request was never stored: nothing to drop
        self.sid = new_token()
        self.dirty = True

    def clear(self) -> None:
        self.old_sid = self.stored_sid
        self.sid = None
        self.data = None
        self.cleared = True
        self.dirty = True


class SessionManager:
    """Loads and saves sessions with the caisse's timeouts."""

    def __init__(self, backend: SessionBackend, *, idle_minutes: int, absolute_hours: int) -> None:
        self.backend = backend
        self.idle = dt.timedelta(minutes=idle_minutes)
        self.absolute = dt.timedelta(hours=absolute_hours)

    async def load(self, sid: str | None, now: dt.datetime) -> Session:
        if not sid or len(sid) > 100:
            return Session(None, None)
        raw = await self.backend.load(token_digest(sid), now)
        if raw is None:
            return Session(None, None)
        try:
            data = msgspec.json.decode(raw, type=SessionData)
        except msgspec.DecodeError:
            return Session(None, None)
        now_ms = int(now.timestamp() * 1000)
        idle = now_ms - data.seen_ms > self.idle.total_seconds() * 1000
        if idle or now_ms - data.created_ms > self.absolute.total_seconds() * 1000:
            await self.backend.delete(token_digest(sid))
            gone = Session(None, None)
            gone.expired = (data.account_id, "idle" if idle else "absolute")
            return gone
        session = Session(sid, data)
        if now_ms - data.seen_ms > 60_000:  # refresh the idle clock at most once a minute
            data.seen_ms = now_ms
            session.dirty = True
        return session

    async def commit(self, session: Session, now: dt.datetime) -> None:
        if not session.dirty:
            return
        if session.sid is None or session.data is None:
            if session.old_sid:
                await self.backend.delete(token_digest(session.old_sid))
            return
        expires = min(now + self.idle, dt.datetime.fromtimestamp(session.data.created_ms / 1000, dt.timezone.utc)
                      + self.absolute)
        data = msgspec.json.encode(session.data)
        if session.old_sid and session.old_sid != session.sid:
            await self.backend.replace(token_digest(session.old_sid), token_digest(session.sid), data, expires)
        else:
            await self.backend.save(token_digest(session.sid), data, expires)
