"""One-time codes: drawn with ``secrets``, stored as an HMAC, single use, bounded attempts.

A code is bound to a purpose and to a binding (the flow or session it was sent for), so it is
useless for another purpose, account or browser. Each try is counted, and a right code used, in
one conditional update, so concurrent guesses cannot exceed the attempts. The binding is a flow's
cookie value or a session secret: the table keeps only its SHA-256.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import secrets
from typing import TYPE_CHECKING, Any

import msgspec

from guichet.core.database import INTEGRITY_ERRORS
from guichet.core.keys import token_digest
from guichet.core.statements import POINT_WRITE, fetch, insert_one, select_latest
from guichet.core.structs import CodePolicy

_CHECKED_COLUMNS = ("id", "account_id", "channel", "expires_at", "code_hmac", "used_at", "superseded_at")


@functools.cache
def _count_try_sql(table: type[Any], *, use: bool) -> str:
    """One try counted (and the code used, when right) only while tries are left and the code is live."""
    used = ', "used_at" = {}' if use else ""
    return (
        f'{POINT_WRITE}UPDATE "{table._meta.tablename}" SET "attempts" = "attempts" + 1{used} '
        'WHERE "id" = {} AND "attempts" < "max_attempts" AND "used_at" IS NULL AND "superseded_at" IS NULL '
        'RETURNING "attempts", "max_attempts"'
    )


_CODE_COLUMNS = (
    "purpose",
    "binding",
    "account_id",
    "code_hmac",
    "channel",
    "attempts",
    "max_attempts",
    "created_at",
    "expires_at",
)

if TYPE_CHECKING:
    from guichet.core.database import Database
    from guichet.core.keys import Keys


class CodeOutcome(enum.Enum):
    ACCEPTED = "accepted"
    WRONG = "wrong"
    EXPIRED = "expired"
    EXHAUSTED = "exhausted"  # no try left on this code: a new one is needed
    MISSING = "missing"  # no live code for this binding


class CodeCheck(msgspec.Struct, frozen=True, kw_only=True):
    outcome: CodeOutcome
    code_id: int | None = None
    account_id: int | None = None
    channel: str = ""
    attempts_left: int = 0
    locked: bool = False  # this try used the code's last attempt
    matched: bool = False  # the right code, refused because another request used it (or no try was left)


class CodeStillLive(Exception):
    """A live code younger than the resend cooldown holds the binding: a parallel request issued it."""


class IssuedCode(msgspec.Struct, frozen=True, kw_only=True):
    code: str  # goes into the outbox payload only (sealed), never into a log
    code_id: int
    expires_at: dt.datetime


def draw_code(policy: CodePolicy) -> str:
    return "".join(secrets.choice(policy.alphabet) for _ in range(policy.length))


class Codes:
    """Issue and check codes in the guichet_code table."""

    def __init__(self, database: "Database", keys: "Keys") -> None:
        self.database = database
        self.keys = keys

    def _mac(self, purpose: str, binding: str, code: str) -> str:
        return self.keys.hmac("code", f"{purpose}:{binding}:{code}")

    async def issue(
        self,
        *,
        purpose: str,
        binding: str,
        policy: CodePolicy,
        channel: str,
        account_id: int | None,
        now: dt.datetime,
        supersede: bool = True,
        cooldown: bool = False,
    ) -> IssuedCode:
        """A new code; any live code for the same purpose and binding is superseded (``supersede=False``
        only for a binding drawn a moment ago, which has none). Call in a transaction.

        A binding has at most one live code: a unique index (migration 2) refuses a second. With
        ``cooldown``, only a live code older than the policy's resend cooldown is superseded, so of
        parallel resends one issues a code and the others raise :class:`CodeStillLive`, which rolls
        their transaction back.
        """
        t = self.database.t.OneTimeCode
        if supersede:
            older_than = now - dt.timedelta(seconds=policy.resend_cooldown_seconds) if cooldown else None
            await self.withdraw(purpose=purpose, binding=binding, now=now, created_before=older_than)
        code = draw_code(policy)
        expires = now + dt.timedelta(minutes=policy.lifetime_minutes)
        try:
            rows = await fetch(
                t,
                insert_one(t, _CODE_COLUMNS, returning="id"),
                purpose,
                token_digest(binding),
                account_id,
                self._mac(purpose, binding, code),
                channel,
                0,
                policy.max_attempts,
                now,
                expires,
            )
        except INTEGRITY_ERRORS:
            raise CodeStillLive() from None
        return IssuedCode(code=code, code_id=int(rows[0]["id"]), expires_at=expires)

    async def latest(self, *, purpose: str, binding: str) -> dict[str, object] | None:
        """The live code row (not used, not superseded) for this binding, if any: its id and creation time."""
        t = self.database.t.OneTimeCode
        rows = await (
            t.select(t.id, t.created_at)
            .where(
                (t.purpose == purpose)
                & (t.binding == token_digest(binding))
                & t.used_at.is_null()
                & t.superseded_at.is_null()
            )
            .order_by(t.id, ascending=False)
            .limit(1)
            .run()
        )
        return rows[0] if rows else None

    async def check(self, *, purpose: str, binding: str, code: str, now: dt.datetime) -> CodeCheck:
        t = self.database.t.OneTimeCode
        # the binding's last code, live or not: a copy of a code another request has just used is
        # told apart from a guess
        rows = await fetch(
            t, select_latest(t, _CHECKED_COLUMNS, ("purpose", "binding")), purpose, token_digest(binding)
        )
        if not rows or rows[0]["superseded_at"] is not None:
            return CodeCheck(outcome=CodeOutcome.MISSING)
        live = rows[0]
        right = self.keys.matches("code", f"{purpose}:{binding}:{code}", str(live["code_hmac"]))
        if live["used_at"] is not None:
            return CodeCheck(outcome=CodeOutcome.MISSING, matched=right)
        code_id = int(live["id"])
        account_id = live["account_id"]
        channel = str(live["channel"])
        if live["expires_at"] <= now:
            return CodeCheck(outcome=CodeOutcome.EXPIRED, code_id=code_id, account_id=account_id, channel=channel)
        # Every try is counted, right or wrong, in one conditional update: of N concurrent guesses at
        # most max_attempts are counted, and only a counted try may use the code (once: used_at).
        if right:
            counted = await fetch(t, _count_try_sql(t, use=True), now, code_id)
        else:
            counted = await fetch(t, _count_try_sql(t, use=False), code_id)
        if not counted:  # no try left, or another request used or replaced the code a moment ago
            return CodeCheck(
                outcome=CodeOutcome.EXHAUSTED, code_id=code_id, account_id=account_id, channel=channel, matched=right
            )
        left = int(counted[0]["max_attempts"]) - int(counted[0]["attempts"])
        if not right:
            outcome = CodeOutcome.WRONG if left > 0 else CodeOutcome.EXHAUSTED
            return CodeCheck(
                outcome=outcome,
                code_id=code_id,
                account_id=account_id,
                channel=channel,
                attempts_left=left,
                locked=left <= 0,
            )
        return CodeCheck(outcome=CodeOutcome.ACCEPTED, code_id=code_id, account_id=account_id, channel=channel)

    async def cooldown_left(self, *, purpose: str, binding: str, policy: CodePolicy, now: dt.datetime) -> int:
        """Seconds before a new code may be sent for this binding."""
        live = await self.latest(purpose=purpose, binding=binding)
        if live is None:
            return 0
        created: dt.datetime = live["created_at"]  # type: ignore[assignment]
        ready = created + dt.timedelta(seconds=policy.resend_cooldown_seconds)
        return max(0, int((ready - now).total_seconds() + 0.999))

    async def withdraw(
        self, *, purpose: str, binding: str, now: dt.datetime, created_before: dt.datetime | None = None
    ) -> None:
        t = self.database.t.OneTimeCode
        where = (
            (t.purpose == purpose)
            & (t.binding == token_digest(binding))
            & t.used_at.is_null()
            & t.superseded_at.is_null()
        )
        if created_before is not None:
            where &= t.created_at <= created_before
        await t.update({t.superseded_at: now}).where(where).run()

    async def purge(self, now: dt.datetime, *, kept: dt.timedelta = dt.timedelta(days=1)) -> None:
        """Drop codes expired for more than ``kept``: until then a late copy of a used code is still
        told apart from a guess (``check``), and its binding (a flow, a session) is long gone after."""
        t = self.database.t.OneTimeCode
        await t.delete().where(t.expires_at < now - kept).run()
