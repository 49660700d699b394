"""A ``guichet outbox work`` process killed with SIGKILL in the middle of a batch: delivery stays
at least once, within the documented bound, and every copy of a message carries its Message-ID.

The SMTP server (aiosmtpd) kills the worker as the 10th email arrives, before answering it: that
email, and any other the server was taking in at that moment, reached the server without the worker
ever learning it. Another worker takes the messages over once their leases run out.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from guichet.core.config import load_config
from guichet.core.database import Database
from guichet.core.keys import Keys
from guichet.core.outbox import SENT, enqueue
from guichet.core.outbox_worker import RetryPolicy
from guichet.core.structs import Recipient
from guichet.testing import SmtpSink
from tests.conftest import _reset_postgres, portal_config_text
from tests.ops.invariants import DELIVERY_BOUND, check_invariants, email_keys
from tests.ops.serving import OutboxProcess

pytestmark = pytest.mark.faults

MESSAGES = 40
KILL_AT = 10
CONCURRENCY = 8  # the worker's default: at most this many sends are in flight when it dies


def wait_until(condition: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)


async def _with_database(config_path: Path, work: Any) -> Any:
    database = Database.from_config(load_config(config_path))
    await database.connect()
    try:
        return await work(database)
    finally:
        await database.close()


def test_a_worker_killed_mid_batch_loses_nothing_and_duplicates_carry_one_message_id(
    tmp_path: Path, db_url: str
) -> None:
    killed: list[int] = []
    taken_in: list[Any] = []
    lock = threading.Lock()
    worker: OutboxProcess | None = None

    def kill_at_the_tenth(envelope: Any) -> None:
        with lock:
            taken_in.append(envelope)
            if len(taken_in) != KILL_AT:
                return
        assert worker is not None and worker.proc is not None
        os.kill(worker.proc.pid, signal.SIGKILL)
        worker.proc.wait(10)
        killed.append(worker.proc.pid)

    with SmtpSink(before_reply=kill_at_the_tenth) as sink:
        config_path = tmp_path / "caisse.toml"
        config_path.write_text(
            portal_config_text(f'\n[database]\nurl = "{db_url}"\n')
            .replace("port = 2525", f"port = {sink.port}", 1)
            .replace('mode = "demo"\n', 'mode = "demo"\noutbox_worker = false\n', 1),
            encoding="utf-8",
        )
        config = load_config(config_path)
        keys = Keys.from_config(config)

        async def prepare(database: Database) -> list[int]:
            if database.is_sqlite:
                await database.upgrade()
            else:
                await _reset_postgres(database)
            now = await database.current_time()
            async with database.transaction():
                return [
                    await enqueue(
                        database,
                        keys,
                        channel="email",
                        template="login_code",
                        recipient=Recipient(name=f"P{n}", email=f"p{n}@test.invalid"),
                        payload={"code": f"{100000 + n}", "lifetime_minutes": 10},
                        now=now,
                        expires_at=now + dt.timedelta(minutes=10),
                    )
                    for n in range(MESSAGES)
                ]

        ids = asyncio.run(_with_database(config_path, prepare))
        worker = OutboxProcess(config_path, name="killed").start()
        try:
            wait_until(lambda: bool(killed), "the worker killed by the SMTP server")
        finally:
            worker.stop()  # never left running when the test fails (a no-op once killed)

        async def expire_leases(database: Database) -> int:
            # the killed worker's leases run out: moved 61 s on rather than waited for
            t = database.t.OutboxMessage
            past = await database.current_time() - dt.timedelta(seconds=61)
            rows = await t.update({t.lease_until: past}).where(t.state == "sending").returning(t.id).run()
            return len(rows)

        orphaned = asyncio.run(_with_database(config_path, expire_leases))
        assert 1 <= orphaned <= 20  # the killed worker's batch (20) held them

        async def states(database: Database) -> list[dict[str, Any]]:
            t = database.t.OutboxMessage
            return await t.select(t.id, t.state, t.created_at, t.unknown_outcomes).order_by(t.id).run()

        with OutboxProcess(config_path, name="takes-over") as relief:
            wait_until(
                lambda: all(r["state"] == SENT for r in asyncio.run(_with_database(config_path, states))),
                "every message sent",
            )
        assert relief.proc is not None and relief.proc.returncode == 0, relief.output()[-2000:]

    rows = asyncio.run(_with_database(config_path, states))
    assert [r["id"] for r in rows] == ids and {r["state"] for r in rows} == {SENT}  # nothing lost
    # every copy of a message carries the message's one Message-ID: a mail client shows it once
    expected = {
        f"<test-{r['id']}-{int(r['created_at'].timestamp() * 1000)}@test.invalid>": f"p{r['id'] - ids[0]}@test.invalid"
        for r in rows
    }
    copies = Counter()
    for envelope in sink.messages:
        mail = email.message_from_bytes(envelope.content)
        assert expected[mail["Message-ID"]] == envelope.rcpt_tos[0]
        copies[mail["Message-ID"]] += 1
    assert set(copies) == set(expected)
    twice = sorted(mid for mid, n in copies.items() if n > 1)
    # the email the server was answering when the worker died went out twice; no copy beyond the bound
    assert 1 <= len(twice) <= CONCURRENCY and max(copies.values()) <= 1 + RetryPolicy().max_unknown_retries
    doubted = {
        f"<test-{r['id']}-{int(r['created_at'].timestamp() * 1000)}@test.invalid>"
        for r in rows
        if r["unknown_outcomes"]
    }
    assert set(twice) <= doubted  # every duplicate is a message whose first outcome was unknown
    counted = asyncio.run(
        _with_database(
            config_path, lambda database: check_invariants(database, "test", received=email_keys(sink.messages))
        )
    )
    assert counted.states == {SENT: MESSAGES} and max(counted.copies.values()) <= DELIVERY_BOUND
