"""Where authenticator plugins keep what they enrol: one table for all, secrets sealed, counters that
only move up, single-use rows used once. Every write is one conditional statement, so two parallel
requests cannot both use a recovery code or a TOTP step (the loser's update matches no row)."""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import msgspec

from guichet.core.clock import Clock
from guichet.core.keys import Keys

if TYPE_CHECKING:
    from guichet.core.config import CaisseConfig
    from guichet.core.database import Database


class StoredCredential(msgspec.Struct, frozen=True, kw_only=True):
    """One row of an authenticator plugin's, without its sealed secret (``CredentialStore.secret``)."""

    id: int
    account_id: int
    kind: str
    label: str
    lookup: str
    public: dict[str, Any]
    counter: int
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    used_at: dt.datetime | None
    sealed: str


# an account's credentials read once for a batch of ``of_account`` calls (``CredentialStore.read_once``)
_snapshot: contextvars.ContextVar[tuple[int, dict[str, list[StoredCredential]]] | None] = contextvars.ContextVar(
    "guichet_credentials_snapshot", default=None
)


class CredentialStore:
    """The only code that reads or writes ``guichet_credential``; handed to ``guichet_authenticators``."""

    def __init__(self, database: "Database", config: "CaisseConfig", clock: Clock) -> None:
        self.database = database
        self.config = config
        self.clock = clock
        self._keys: Keys | None = None

    @property
    def keys(self) -> Keys:
        # resolved on first use: ``guichet config check`` builds authenticators where secrets are not set
        if self._keys is None:
            self._keys = Keys.from_config(self.config)
        return self._keys

    @property
    def _t(self) -> Any:
        return self.database.t.Credential

    def _struct(self, row: dict[str, Any]) -> StoredCredential:
        return StoredCredential(
            id=row["id"],
            account_id=row["account_id"],
            kind=row["kind"],
            label=row["label"],
            lookup=row["lookup"],
            public=msgspec.json.decode(row["public"] or "{}"),
            counter=row["counter"],
            created_at=row["created_at"],
            last_used_at=row["last_used_at"],
            used_at=row["used_at"],
            sealed=row["secret"],
        )

    def lookup_digest(self, kind: str, value: str) -> str:
        """What ``lookup`` holds for a value that must not be kept in clear (a recovery code): its HMAC
        under the caisse's key, so that a copy of the table is no list of codes."""
        return self.keys.hmac(f"credential-{kind}", value)

    async def add(
        self,
        *,
        account_id: int,
        kind: str,
        label: str = "",
        lookup: str = "",
        secret: bytes | None = None,
        public: dict[str, Any] | None = None,
        counter: int = 0,
    ) -> int:
        """Keep a new credential; ``secret`` is sealed under a key of its kind. Returns its id."""
        t = self._t
        rows = await (
            t.insert(
                t(
                    account_id=account_id,
                    kind=kind,
                    label=label[:80],
                    lookup=lookup,
                    secret=self.keys.seal(secret, f"credential-{kind}") if secret is not None else "",
                    public=msgspec.json.encode(public or {}).decode(),
                    counter=counter,
                    created_at=self.clock.now(),
                )
            )
            .returning(t.id)
            .run()
        )
        return int(rows[0]["id"])

    async def of_account(self, account_id: int, kind: str) -> list[StoredCredential]:
        """An account's credentials of one kind, oldest first (used single-use ones included)."""
        snapshot = _snapshot.get()
        if snapshot is not None and snapshot[0] == account_id:
            return list(snapshot[1].get(kind, []))
        t = self._t
        rows = await t.select().where((t.account_id == account_id) & (t.kind == kind)).order_by(t.id).run()
        return [self._struct(row) for row in rows]

    @contextlib.asynccontextmanager
    async def read_once(self, account_id: int) -> AsyncIterator[None]:
        """Every kind of this account's credentials in one query, for the ``of_account`` calls made
        inside the block (every authenticator listing what a person holds, at each login step):
        one statement instead of one per authenticator. Reads only: a write inside the block is
        not seen by a later ``of_account`` in it. Nested blocks for the same account read nothing more."""
        current = _snapshot.get()
        if current is not None and current[0] == account_id:
            yield
            return
        t = self._t
        rows = await t.select().where(t.account_id == account_id).order_by(t.id).run()
        by_kind: dict[str, list[StoredCredential]] = {}
        for row in rows:
            by_kind.setdefault(row["kind"], []).append(self._struct(row))
        token = _snapshot.set((account_id, by_kind))
        try:
            yield
        finally:
            _snapshot.reset(token)

    def lookup_digests(self, kind: str, value: str) -> list[str]:
        """``lookup_digest`` under every key still accepted, the current first: what ``find`` looks
        for, so that a letter of recovery codes outlives a rotation of the caisse's secret key."""
        return self.keys.hmacs(f"credential-{kind}", value)

    async def find(self, kind: str, lookup: str | list[str]) -> StoredCredential | None:
        """The credential of ``kind`` with this lookup (a passkey's id), or any of these lookups (a
        value's digests under each key, ``lookup_digests``), whoever holds it."""
        wanted = [lookup] if isinstance(lookup, str) else [value for value in lookup if value]
        if not wanted or not all(wanted):
            return None
        t = self._t
        rows = await t.select().where((t.kind == kind) & t.lookup.is_in(wanted)).limit(1).run()
        return self._struct(rows[0]) if rows else None

    def secret(self, credential: StoredCredential) -> bytes:
        """The sealed secret, opened (raises ValueError when no known key opens it)."""
        return self.keys.unseal(credential.sealed, f"credential-{credential.kind}")

    async def advance(self, credential_id: int, to: int, *, allow_equal: bool = False) -> bool:
        """Move the counter up to ``to`` and mark the credential used; False, and nothing written, when
        the counter is already there or beyond (a TOTP step used twice, a cloned passkey). With
        ``allow_equal`` an equal counter passes too (passkeys that count nothing send 0 every time)."""
        t = self._t
        reached = t.counter <= to if allow_equal else t.counter < to
        rows = await (
            t.update({t.counter: to, t.last_used_at: self.clock.now()})
            .where((t.id == credential_id) & reached)
            .returning(t.id)
            .run()
        )
        return bool(rows)

    async def use_once(self, credential_id: int) -> bool:
        """Mark a single-use credential used; False when it already was (by a parallel request too)."""
        t = self._t
        now = self.clock.now()
        rows = await (
            t.update({t.used_at: now, t.last_used_at: now})
            .where((t.id == credential_id) & t.used_at.is_null())
            .returning(t.id)
            .run()
        )
        return bool(rows)

    async def rename(self, account_id: int, credential_id: int, label: str) -> bool:
        t = self._t
        rows = await (
            t.update({t.label: label[:80]})
            .where((t.id == credential_id) & (t.account_id == account_id))
            .returning(t.id)
            .run()
        )
        return bool(rows)

    async def remove(self, account_id: int, kind: str, credential_id: int) -> bool:
        """Drop one credential of this account's; False when it is not theirs or already gone."""
        t = self._t
        rows = await (
            t.delete()
            .where((t.id == credential_id) & (t.account_id == account_id) & (t.kind == kind))
            .returning(t.id)
            .run()
        )
        return bool(rows)

    async def remove_all(self, account_id: int, kind: str | None = None) -> int:
        """Drop every credential of this account's (of one kind); how many went."""
        t = self._t
        where = t.account_id == account_id
        if kind is not None:
            where = where & (t.kind == kind)
        return len(await t.delete().where(where).returning(t.id).run())
