"""One-time codes: single use, bounded attempts counted before comparing, bound to purpose and binding."""

from __future__ import annotations

import asyncio

import pytest

from guichet.core.clock import FrozenClock
from guichet.core.codes import CodeOutcome, Codes, CodeStillLive
from guichet.core.database import Database
from guichet.core.keys import Keys
from guichet.core.structs import CodePolicy
from tests.conftest import TEST_SECRET

POLICY = CodePolicy(length=6, lifetime_minutes=10, max_attempts=3)


@pytest.fixture
def codes(database: Database) -> Codes:
    return Codes(database, Keys(TEST_SECRET))


async def issue(codes: Codes, clock: FrozenClock, binding: str = "flow-a", purpose: str = "login") -> str:
    issued = await codes.issue(
        purpose=purpose, binding=binding, policy=POLICY, channel="email", account_id=7, now=clock.now()
    )
    assert len(issued.code) == 6 and issued.code.isdigit()
    return issued.code


async def test_code_is_stored_as_an_hmac_only(codes: Codes, database: Database, clock: FrozenClock) -> None:
    code = await issue(codes, clock)
    rows = await database.t.OneTimeCode.select().run()
    assert code not in repr(rows)


async def test_right_code_accepted_once(codes: Codes, clock: FrozenClock) -> None:
    code = await issue(codes, clock)
    first = await codes.check(purpose="login", binding="flow-a", code=code, now=clock.now())
    second = await codes.check(purpose="login", binding="flow-a", code=code, now=clock.now())
    assert first.outcome is CodeOutcome.ACCEPTED and first.account_id == 7
    assert second.outcome is CodeOutcome.MISSING


async def test_twenty_concurrent_right_submissions_one_winner(codes: Codes, clock: FrozenClock) -> None:
    code = await issue(codes, clock)
    results = await asyncio.gather(
        *(codes.check(purpose="login", binding="flow-a", code=code, now=clock.now()) for _ in range(20))
    )
    assert sum(r.outcome is CodeOutcome.ACCEPTED for r in results) == 1
    losers = [r for r in results if r.outcome is not CodeOutcome.ACCEPTED]
    assert all(r.matched for r in losers), "the right code, used by another request: no guess"


async def test_concurrent_wrong_guesses_never_exceed_the_attempts(
    codes: Codes, database: Database, clock: FrozenClock
) -> None:
    code = await issue(codes, clock)
    wrong = [f"{(int(code) + i) % 1_000_000:06d}" for i in range(1, 31)]
    results = await asyncio.gather(
        *(codes.check(purpose="login", binding="flow-a", code=guess, now=clock.now()) for guess in wrong)
    )
    # a guess is compared only after its try was counted, and the count stops at max_attempts
    rows = await database.t.OneTimeCode.select(database.t.OneTimeCode.attempts).run()
    assert rows[0]["attempts"] == POLICY.max_attempts
    assert sum(r.outcome is CodeOutcome.WRONG for r in results) <= POLICY.max_attempts
    after = await codes.check(purpose="login", binding="flow-a", code=code, now=clock.now())
    assert after.outcome is CodeOutcome.EXHAUSTED, "the right code must not work once the tries are spent"
    assert not any(r.matched for r in results), "a wrong guess is never taken for the right code"


async def test_expired_code_refused(codes: Codes, clock: FrozenClock) -> None:
    code = await issue(codes, clock)
    clock.advance(minutes=10, seconds=1)
    assert (
        await codes.check(purpose="login", binding="flow-a", code=code, now=clock.now())
    ).outcome is CodeOutcome.EXPIRED


async def test_new_code_supersedes_the_old(codes: Codes, clock: FrozenClock) -> None:
    old = await issue(codes, clock)
    new = await issue(codes, clock)
    if old == new:
        pytest.skip("the same code was drawn twice")
    assert (
        await codes.check(purpose="login", binding="flow-a", code=old, now=clock.now())
    ).outcome is CodeOutcome.WRONG
    assert (
        await codes.check(purpose="login", binding="flow-a", code=new, now=clock.now())
    ).outcome is CodeOutcome.ACCEPTED


@pytest.mark.parametrize("purpose, binding", [("recovery", "flow-a"), ("login", "flow-b")])
async def test_code_useless_for_another_purpose_or_binding(
    codes: Codes, clock: FrozenClock, purpose: str, binding: str
) -> None:
    code = await issue(codes, clock)
    other = await codes.check(purpose=purpose, binding=binding, code=code, now=clock.now())
    assert other.outcome is CodeOutcome.MISSING
    assert (
        await codes.check(purpose="login", binding="flow-a", code=code, now=clock.now())
    ).outcome is CodeOutcome.ACCEPTED


async def test_cooldown(codes: Codes, clock: FrozenClock) -> None:
    await issue(codes, clock)
    assert await codes.cooldown_left(purpose="login", binding="flow-a", policy=POLICY, now=clock.now()) == 60
    clock.advance(seconds=61)
    assert await codes.cooldown_left(purpose="login", binding="flow-a", policy=POLICY, now=clock.now()) == 0


async def test_codes_survive_a_key_rotation(database: Database, clock: FrozenClock) -> None:
    before = Codes(database, Keys(TEST_SECRET))
    code = await issue(before, clock)
    after = Codes(database, Keys("a-brand-new-secret-key-of-enough-length-000", [TEST_SECRET]))
    assert (
        await after.check(purpose="login", binding="flow-a", code=code, now=clock.now())
    ).outcome is CodeOutcome.ACCEPTED


async def test_a_binding_holds_one_live_code_at_most(codes: Codes, database: Database, clock: FrozenClock) -> None:
    """The database itself refuses a second live code (migration 3's partial unique index)."""
    from guichet.core.database import INTEGRITY_ERRORS

    await issue(codes, clock)
    t = database.t.OneTimeCode
    with pytest.raises(INTEGRITY_ERRORS):
        await t.insert(
            t(
                purpose="login",
                binding=(await t.select(t.binding).run())[0]["binding"],
                account_id=7,
                code_hmac="x" * 64,
                channel="email",
                created_at=clock.now(),
                expires_at=clock.now(),
            )
        ).run()
    await issue(codes, clock, binding="flow-b")  # another binding
    await issue(codes, clock, purpose="recovery")  # another purpose


async def test_parallel_issues_inside_the_cooldown_give_one_code(
    codes: Codes, database: Database, clock: FrozenClock
) -> None:
    await issue(codes, clock)
    clock.advance(seconds=61)

    async def resend() -> bool:
        try:
            async with database.transaction():
                await codes.issue(
                    purpose="login",
                    binding="flow-a",
                    policy=POLICY,
                    channel="email",
                    account_id=7,
                    now=clock.now(),
                    cooldown=True,
                )
            return True
        except CodeStillLive:
            return False

    issued = await asyncio.gather(*(resend() for _ in range(8)))
    assert sum(issued) == 1, f"{sum(issued)} codes issued by parallel resends"
    t = database.t.OneTimeCode
    live = await t.select().where(t.used_at.is_null() & t.superseded_at.is_null()).run()
    assert len(live) == 1 and await t.count().run() == 2
    with pytest.raises(CodeStillLive):  # and inside the cooldown, sequentially too
        async with database.transaction():
            await codes.issue(
                purpose="login",
                binding="flow-a",
                policy=POLICY,
                channel="email",
                account_id=7,
                now=clock.now(),
                cooldown=True,
            )


async def test_codes_a_day_past_their_expiry_are_purged(codes: Codes, database: Database, clock: FrozenClock) -> None:
    used = await issue(codes, clock, binding="used")
    await codes.check(purpose="login", binding="used", code=used, now=clock.now())
    await issue(codes, clock, binding="abandoned")
    clock.advance(hours=20)
    await issue(codes, clock, binding="recent")
    clock.advance(hours=4, minutes=11)  # the first two expired a day ago and more
    await codes.purge(clock.now())
    t = database.t.OneTimeCode
    assert await t.count().run() == 1
    assert (
        await codes.check(purpose="login", binding="used", code=used, now=clock.now())
    ).outcome is CodeOutcome.MISSING
