"""The fault suite's invariants can fail: each broken promise, written into a real database (SQLite
and PostgreSQL), is caught with a message that names it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import msgspec
import pytest

from guichet.core.database import Database
from tests.ops.invariants import DELIVERY_BOUND, check_invariants

pytestmark = pytest.mark.faults

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)


async def message(database: Database, *, state: str = "sent", unknown: int = 0) -> str:
    t = database.t.OutboxMessage
    rows = (
        await t.insert(
            t(
                channel="email",
                template="login_code",
                sealed="",
                state=state,
                attempts=1,
                next_attempt_at=NOW,
                created_at=NOW,
                unknown_outcomes=unknown,
            )
        )
        .returning(t.id)
        .run()
    )
    return f"test-{rows[0]['id']}-{int(NOW.timestamp() * 1000)}"


async def audit(database: Database, kind: str, account_id: int | None = None, **details: Any) -> None:
    t = database.t.AuditLog
    await t.insert(t(at=NOW, kind=kind, account_id=account_id, details=msgspec.json.encode(details).decode())).run()


async def code(database: Database, *, used: bool) -> None:
    t = database.t.OneTimeCode
    await t.insert(
        t(
            purpose="login",
            binding="b",
            code_hmac="h",
            channel="email",
            created_at=NOW,
            expires_at=NOW + dt.timedelta(minutes=10),
            used_at=NOW if used else None,
        )
    ).run()
    await audit(database, "code.sent", purpose="login")


async def account(database: Database, identifier: str) -> int:
    t = database.t.Account
    rows = (
        await t.insert(
            t(
                identifier_kind="nir",
                identifier=identifier,
                status="particulier",
                last_name="T",
                password_hash="x",
                created_at=NOW,
            )
        )
        .returning(t.id)
        .run()
    )
    return int(rows[0]["id"])


async def test_a_sound_state_passes(database: Database) -> None:
    key = await message(database)
    await code(database, used=True)
    await audit(database, "code.succeeded", purpose="login")
    seeded = await account(database, "1850575100001")
    counted = await check_invariants(
        database, "test", received={key: 1}, seeded_accounts=[seeded], expect_audit={"code.succeeded": 1}
    )
    assert counted.states == {"sent": 1} and counted.codes_used == 1 and counted.accounts == 1


@pytest.mark.parametrize("state", ["pending", "sending", "failed"])
async def test_a_message_not_sent_is_lost(database: Database, state: str) -> None:
    await message(database, state=state)
    with pytest.raises(AssertionError, match="lost or stuck"):
        await check_invariants(database, "test")


async def test_a_message_marked_sent_that_never_arrived_is_lost(database: Database) -> None:
    await message(database)
    with pytest.raises(AssertionError, match="never reached their receiver"):
        await check_invariants(database, "test", received={})


async def test_a_copy_without_a_doubt_or_past_the_bound_is_caught(database: Database) -> None:
    plain = await message(database)
    with pytest.raises(AssertionError, match="more often than the bound"):
        await check_invariants(database, "test", received={plain: 2})
    doubted = await message(database, unknown=DELIVERY_BOUND)
    await check_invariants(database, "test", received={plain: 1, doubted: DELIVERY_BOUND})
    with pytest.raises(AssertionError, match="more often than the bound"):
        await check_invariants(database, "test", received={plain: 1, doubted: DELIVERY_BOUND + 1})


async def test_a_code_accepted_twice_is_caught(database: Database) -> None:
    await code(database, used=True)
    await audit(database, "code.succeeded", purpose="login")
    await audit(database, "code.succeeded", purpose="login")
    with pytest.raises(AssertionError, match="used twice"):
        await check_invariants(database, "test")


async def test_a_code_used_unaudited_is_caught(database: Database) -> None:
    await code(database, used=True)
    with pytest.raises(AssertionError, match="used twice, or used unaudited"):
        await check_invariants(database, "test")


async def test_a_code_issued_without_its_audit_row_is_caught(database: Database) -> None:
    t = database.t.OneTimeCode
    await t.insert(
        t(purpose="login", binding="b", code_hmac="h", channel="email", created_at=NOW, expires_at=NOW)
    ).run()
    with pytest.raises(AssertionError, match="without their code.sent"):
        await check_invariants(database, "test")


async def test_an_account_without_its_registration_row_is_caught(database: Database) -> None:
    made = await account(database, "1850575100001")
    with pytest.raises(AssertionError, match="without a registration.completed"):
        await check_invariants(database, "test")
    await audit(database, "registration.completed", account_id=made)
    await check_invariants(database, "test")


async def test_a_duplicate_account_is_caught(tmp_path: Path) -> None:
    """The unique index forbids it; the check would still see one a schema let through (shown on a
    SQLite database of its own: the shared PostgreSQL one keeps its constraint for the other tests)."""
    database = Database(f"sqlite:///{tmp_path / 'lost-constraint.sqlite'}")
    await database.connect()
    try:
        await database.upgrade()
        await _duplicate_caught(database)
    finally:
        await database.close()


async def _duplicate_caught(database: Database) -> None:
    seeded = [await account(database, "1850575100001")]
    rows = await database.engine.run_ddl(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'guichet_account' AND sql IS NULL"
    )
    assert rows, "the identifier's unique index"
    # a table without the constraint, as a schema that lost it would be
    await database.engine.run_ddl("ALTER TABLE guichet_account RENAME TO guichet_account_old")
    await database.engine.run_ddl("CREATE TABLE guichet_account AS SELECT * FROM guichet_account_old")
    await database.engine.run_ddl("INSERT INTO guichet_account SELECT * FROM guichet_account_old")
    with pytest.raises(AssertionError, match="more than one account"):
        await check_invariants(database, "test", seeded_accounts=seeded)


async def test_an_expected_audit_row_missing_is_caught(database: Database) -> None:
    with pytest.raises(AssertionError, match="audit rows missing"):
        await check_invariants(database, "test", expect_audit={"logout.failed": 1})
