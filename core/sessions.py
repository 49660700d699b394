"""Server-side sessions: the cookie holds a random id, the store keeps its SHA-256 and the data.

The id changes after the password step and after the second factor; idle and absolute timeouts
apply; a credential change bumps the account's version and so ends its other sessions.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Protocol

import msgspec

from guichet.core.clock import Clock
from guichet.core.config import DEFAULT_REDIS_TIMEOUT_SECONDS
from guichet.core.keys import new_token, token_digest
from guichet.core.redis_store import redis_client
from guichet.core.statements import fetch, insert_one, select_where, update_where

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
    login_channel: str = ""  # where this login's code went ("" while the person has not chosen yet)
    trust_requested: bool = False
    pending_contact: dict[str, str] = {}  # a new email or mobile waiting for its code
    # set when the login completes: its time, how the second factor was met ("code" or
    # "trusted_browser") and a random reference, the same across id rotations, that a logout uses to
    # revoke what the services received from this login (web/oidc)
    auth_ms: int = 0
    auth_via: str = ""
    login_ref: str = ""
    return_to: str = ""  # where the login goes on once done, instead of the espace privé (an authorization)
    # what proved this login (RFC 8176 values: "pwd", "otp", "hwk", "user", "mfa"...) and the NIST level reached
    amr: list[str] = []
    aal: int = 0
    phishing_resistant: bool = False  # the second factor was bound to this site's origin (a passkey)
    # an authenticator's challenge under way (its name, and its state sealed): a login's, or an enrolment's
    auth_name: str = ""
    auth_state: str = ""
    reauth_ms: int = 0  # the last time the person typed their password again to change their authenticators
    must_enrol: bool = False  # a recovery code or a required phishing-resistant factor: enrol before anything else


class SessionBackend(Protocol):
    """Where sessions live. Only ``create`` may make a session exist: a save or a rotation of a
    session that was deleted meanwhile (a logout in another tab) finds nothing and brings nothing back."""

    async def load(self, key: str, now: dt.datetime) -> bytes | None: ...
    async def create(self, key: str, data: bytes, expires_at: dt.datetime) -> None:
        """Store a brand-new session."""

    async def update(self, key: str, data: bytes, expires_at: dt.datetime) -> bool:
        """Save an existing session; False (and nothing stored) if it no longer exists."""

    async def move(self, old_key: str, key: str, data: bytes, expires_at: dt.datetime) -> bool:
        """Rotate an id, atomically: ``old_key`` goes, ``key`` holds the data; False if ``old_key`` is gone."""

    async def delete(self, key: str) -> bool:
        """Drop a session; whether it was there."""


class DatabaseSessions:
    def __init__(self, database: "Database") -> None:
        self.database = database

    async def load(self, key: str, now: dt.datetime) -> bytes | None:
        t = self.database.t.Session
        # an expired row is still read: SessionManager judges the timeouts from the data, deletes the
        # row and audits session.expired; the housekeeping purge drops the rows nobody comes back for
        # SQL written once (core/statements.py): a session is read and written on every request
        rows = await fetch(t, select_where(t, ("data",), "key"), key)
        return rows[0]["data"].encode() if rows else None

    async def create(self, key: str, data: bytes, expires_at: dt.datetime) -> None:
        t = self.database.t.Session
        await fetch(t, insert_one(t, ("key", "data", "expires_at")), key, data.decode(), expires_at)

    async def update(self, key: str, data: bytes, expires_at: dt.datetime) -> bool:
        t = self.database.t.Session
        rows = await fetch(t, update_where(t, ("data", "expires_at"), "key", "id"), data.decode(), expires_at, key)
        return bool(rows)

    async def move(self, old_key: str, key: str, data: bytes, expires_at: dt.datetime) -> bool:
        t = self.database.t.Session
        rows = await fetch(
            t, update_where(t, ("key", "data", "expires_at"), "key", "id"), key, data.decode(), expires_at, old_key
        )
        return bool(rows)

    async def delete(self, key: str) -> bool:
        t = self.database.t.Session
        return bool(await t.delete().where(t.key == key).returning(t.id).run())

    async def purge(self, now: dt.datetime) -> None:
        t = self.database.t.Session
        await t.delete().where(t.expires_at <= now).run()


class RedisSessions:
    # EXISTS, DEL and SET in one script: nothing can delete the old key between the check and the move
    _MOVE = """
    if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
    redis.call('DEL', KEYS[1])
    redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
    return 1
    """

    def __init__(
        self,
        url: str,
        namespace: str,
        *,
        password: str | None = None,
        clock: Clock | None = None,
        timeout_seconds: float = DEFAULT_REDIS_TIMEOUT_SECONDS,
    ) -> None:
        self.client = redis_client(url, password=password, timeout_seconds=timeout_seconds)
        self.namespace = namespace
        # expiries are on the deployment's clock (the database's): the time to live Redis counts
        # down is measured on that same clock, not on this host's
        self.clock = clock or Clock()
        self._move = self.client.register_script(self._MOVE)

    def _name(self, key: str) -> str:
        return f"{self.namespace}:session:{key}"

    async def load(self, key: str, now: dt.datetime) -> bytes | None:
        value = await self.client.get(self._name(key))
        if value is None:
            return None
        return value.encode() if isinstance(value, str) else bytes(value)

    async def create(self, key: str, data: bytes, expires_at: dt.datetime) -> None:
        await self.client.set(self._name(key), data, ex=self._ttl(expires_at), nx=True)

    async def update(self, key: str, data: bytes, expires_at: dt.datetime) -> bool:
        # XX: only if the key is still there
        return bool(await self.client.set(self._name(key), data, ex=self._ttl(expires_at), xx=True))

    async def move(self, old_key: str, key: str, data: bytes, expires_at: dt.datetime) -> bool:
        moved = await self._move(keys=[self._name(old_key), self._name(key)], args=[data, self._ttl(expires_at)])
        return bool(moved)

    def _ttl(self, expires_at: dt.datetime) -> int:
        return max(1, int((expires_at + EXPIRED_KEPT - self.clock.now()).total_seconds()))

    async def delete(self, key: str) -> bool:
        return bool(await self.client.delete(self._name(key)))

    async def close(self) -> None:
        await self.client.aclose()


class Session:
    """One request's view of its session: load, change, rotate, clear; saved once at the response."""

    def __init__(self, sid: str | None, data: SessionData | None) -> None:
        self.sid = sid
        self.data = data
        self.stored_sid = sid if data is not None else None  # the id the store holds this session under
        self.old_sid: str | None = None
        self.fresh = False  # made in this request: stored with ``create``; a loaded one is only ever updated
        self.dirty = False
        self.cleared = False
        self.lost = False  # ended elsewhere (a logout) while this request ran: not saved, no cookie set
        self.expired: tuple[int | None, str] | None = (
            None  # (account, "idle" or "absolute") of a session that just timed out
        )

    @property
    def exists(self) -> bool:
        return self.data is not None

    def ensure(self, now_ms: int) -> SessionData:
        if self.data is None:
            self.data = SessionData(created_ms=now_ms, seen_ms=now_ms)
            self.sid = new_token()
            self.fresh = True
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
        self.fresh = False
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

    async def end(self, session: Session) -> None:
        """Delete the session from the store now (a logout); a store failure raises, so the caller
        can say the logout did not happen instead of pretending."""
        if session.stored_sid:
            await self.backend.delete(token_digest(session.stored_sid))
        session.clear()
        session.old_sid = None
        session.stored_sid = None

    async def commit(self, session: Session, now: dt.datetime) -> None:
        """Save what the request changed. A session loaded by this request and ended meanwhile is
        not brought back by the save or the rotation: it is marked ``lost`` instead."""
        if not session.dirty:
            return
        if session.sid is None or session.data is None:
            if session.old_sid and not await self.backend.delete(token_digest(session.old_sid)):
                # already gone: ended elsewhere, or moved to a new id by a rotation in a parallel request
                # (a password change): the browser may hold that new id, so its cookie is left alone
                session.lost = True
            return
        expires = min(
            now + self.idle, dt.datetime.fromtimestamp(session.data.created_ms / 1000, dt.UTC) + self.absolute
        )
        data = msgspec.json.encode(session.data)
        if session.fresh:  # a new login: whatever this browser had before is dropped
            if session.old_sid:
                await self.backend.delete(token_digest(session.old_sid))
            await self.backend.create(token_digest(session.sid), data, expires)
            kept = True
        elif session.old_sid and session.old_sid != session.sid:
            kept = await self.backend.move(token_digest(session.old_sid), token_digest(session.sid), data, expires)
        else:
            kept = await self.backend.update(token_digest(session.sid), data, expires)
        if not kept:
            session.lost = True
