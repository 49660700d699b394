"""The outbox worker against real databases (SQLite and PostgreSQL) and a real SMTP server."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import random
import textwrap
from collections.abc import Callable
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest

from guichet.core.clock import FrozenClock
from guichet.core.config import CaisseConfig
from guichet.core.context import PluginContext
from guichet.core.database import Database
from guichet.core.keys import Keys
from guichet.core.outbox import EXPIRED, FAILED, PENDING, SENDING, SENT, enqueue
from guichet.core.outbox_worker import (
    CLAIM_INDEXES,
    OutboxWorker,
    RetryPolicy,
    outbox_status,
    purge_final,
    retry_message,
    run_worker_process,
)
from guichet.core.plugins import PluginHost
from guichet.core.statements import compiled
from guichet.core.structs import Recipient
from guichet.testing import PluginSite, SmtpSink, base_with_plugins, free_port
from tests.conftest import TEST_SECRET

T0 = dt.datetime(2026, 3, 2, 9, 30, 0, tzinfo=dt.UTC)  # microsecond 0: str() drops the fraction
CODE = "845216"
RECIPIENT = Recipient(name="Marie DUPONT", email="marie.dupont@exemple.fr", mobile="+33612345678")


def email_config(make_config: Callable[..., CaisseConfig], db_url: str, port: int, extra: str = "") -> CaisseConfig:
    return make_config(
        f"""
        [plugins.settings.delivery_email]
        host = "127.0.0.1"
        port = {port}
        security = "none"
        timeout_seconds = 2
        sender = "MSA Test <ne-pas-repondre@test.invalid>"
        {extra}
    """,
        database_url=db_url,
        base=base_with_plugins("delivery_email", "delivery_postal"),
    )


class Setup:
    def __init__(self, config: CaisseConfig, database: Database, clock: FrozenClock) -> None:
        self.config, self.database, self.clock = config, database, clock
        self.keys = Keys.from_config(config)
        self.host = PluginHost(config, PluginContext(config=config, database=database, clock=clock))

    def worker(self, name: str = "w1", database: Database | None = None, **kwargs: Any) -> OutboxWorker:
        kwargs.setdefault("rng", random.Random(1))
        return OutboxWorker(database or self.database, self.keys, self.host, self.clock, worker_id=name, **kwargs)

    async def enqueue(
        self,
        channel: str = "email",
        template: str = "login_code",
        *,
        code: str = CODE,
        recipient: Recipient = RECIPIENT,
        expires_at: dt.datetime | None = None,
    ) -> int:
        async with self.database.transaction():
            return await enqueue(
                self.database,
                self.keys,
                channel=channel,
                template=template,
                recipient=recipient,
                payload={"code": code, "lifetime_minutes": 15},
                now=self.clock.now(),
                expires_at=expires_at,
            )

    async def row(self, id: int) -> dict[str, Any]:
        t = self.database.t.OutboxMessage
        rows = await t.select().where(t.id == id).run()
        return rows[0]


@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
def setup(make_config: Callable[..., CaisseConfig], database: Database, db_url: str, smtp_port: int) -> Setup:
    return Setup(email_config(make_config, db_url, smtp_port), database, FrozenClock(T0))


def codes_in(sink: SmtpSink) -> list[str]:
    found = []
    for envelope in sink.messages:
        text = message_from_bytes(envelope.content).get_payload()[0].get_payload(decode=True).decode()
        found.extend(code for code in text.split() if code.isdigit() and len(code) == 6)
    return found


async def test_delivers_and_purges_the_payload(setup: Setup, smtp_port: int) -> None:
    id = await setup.enqueue()
    with SmtpSink(smtp_port) as sink:
        assert await setup.worker().run_once() == 1
    assert len(sink.messages) == 1 and codes_in(sink) == [CODE]
    row = await setup.row(id)
    assert row["state"] == SENT and row["sealed"] == "" and row["attempts"] == 1
    assert row["finished_at"] == T0 and row["lease_until"] is None and row["last_error"] == ""
    assert await outbox_status(setup.database) == {("email", SENT): 1}


async def test_the_payload_is_encrypted_at_rest(setup: Setup) -> None:
    await setup.enqueue(code="913746")
    rows = await setup.database.t.OutboxMessage.raw("SELECT * FROM guichet_outbox").run()
    dump = repr(rows)
    assert "913746" not in dump and "marie.dupont" not in dump and "DUPONT" not in dump
    assert rows[0]["sealed"]


async def test_timestamptz_comparisons_hold_to_the_microsecond(setup: Setup, smtp_port: int) -> None:
    """SQLite keeps Timestamptz as text: '...09:30:00+00:00' against '...09:30:00.000001+00:00' must still order."""
    id = await setup.enqueue()
    worker = setup.worker(lease_seconds=60)
    setup.clock._now = T0 - dt.timedelta(microseconds=1)
    assert await worker.claim() == []  # not due one microsecond early
    setup.clock._now = T0
    claimed = await worker.claim()
    assert [m.id for m in claimed] == [id] and claimed[0].lease_until == T0 + dt.timedelta(seconds=60)
    setup.clock._now = T0 + dt.timedelta(seconds=60, microseconds=-1)
    assert await worker.claim() == []  # the lease holds until its last microsecond
    setup.clock._now = T0 + dt.timedelta(seconds=60)
    again = await worker.claim()
    assert [m.id for m in again] == [id] and again[0].attempts == 2
    assert again[0].lease_until == T0 + dt.timedelta(seconds=120)


async def test_smtp_down_then_up_delivers_exactly_once(setup: Setup, smtp_port: int) -> None:
    id = await setup.enqueue()
    worker = setup.worker()
    assert await worker.run_once() == 1  # nobody listens on the port
    row = await setup.row(id)
    assert row["state"] == PENDING and row["attempts"] == 1 and "cannot reach the SMTP server" in row["last_error"]
    assert row["sealed"] != "" and row["next_attempt_at"] > T0
    assert T0 + dt.timedelta(seconds=22.5) <= row["next_attempt_at"] <= T0 + dt.timedelta(seconds=30)
    with SmtpSink(smtp_port) as sink:
        assert await worker.run_once() == 0  # not due yet: backoff
        setup.clock.advance(seconds=30)
        assert await worker.run_once() == 1
        assert await worker.run_once() == 0
        setup.clock.advance(hours=2)
        assert await worker.drain() == 0
    assert codes_in(sink) == [CODE]
    row = await setup.row(id)
    assert row["state"] == SENT and row["attempts"] == 2 and row["sealed"] == ""


async def test_a_550_reply_is_a_permanent_failure(setup: Setup, smtp_port: int) -> None:
    id = await setup.enqueue()
    with SmtpSink(smtp_port, rcpt_reply="550 5.1.1 no such user") as sink:
        assert await setup.worker().run_once() == 1
    row = await setup.row(id)
    assert row["state"] == FAILED and row["attempts"] == 1
    assert "550" in row["last_error"] and CODE not in row["last_error"]
    assert sink.messages == []
    # failed messages keep their sealed content so that an operator can retry them
    assert row["sealed"] != ""
    assert await retry_message(setup.database, id, clock=setup.clock) is True
    assert (await setup.row(id))["state"] == PENDING
    assert await retry_message(setup.database, id, clock=setup.clock) is False  # only failed ones
    with SmtpSink(smtp_port) as sink:
        assert await setup.worker().run_once() == 1
    assert codes_in(sink) == [CODE]


async def test_failed_content_is_purged_after_the_retention(setup: Setup, smtp_port: int) -> None:
    id = await setup.enqueue(channel="fax")
    assert await setup.worker().run_once() == 1
    row = await setup.row(id)
    assert row["state"] == FAILED and "no channel 'fax'" in row["last_error"] and "email" in row["last_error"]
    assert await purge_final(setup.database, T0) == 0  # finished at T0, not before
    assert await purge_final(setup.database, T0 + dt.timedelta(days=7)) == 1
    assert (await setup.row(id))["sealed"] == ""
    assert await retry_message(setup.database, id, clock=setup.clock) is False  # nothing left to send


async def test_temporary_failures_end_in_failed_after_max_attempts(setup: Setup) -> None:
    id = await setup.enqueue()
    worker = setup.worker(retry=RetryPolicy(base_seconds=10, cap_seconds=40, max_attempts=4, jitter=0))
    delays = []
    for _ in range(4):
        before = setup.clock.now()
        assert await worker.run_once() == 1
        row = await setup.row(id)
        if row["state"] == PENDING:
            delays.append((row["next_attempt_at"] - before).total_seconds())
            setup.clock._now = row["next_attempt_at"]
    assert delays == [10, 20, 40]
    row = await setup.row(id)
    assert row["state"] == FAILED and row["attempts"] == 4 and row["last_error"].startswith("gave up after 4 attempts")


def test_backoff_has_jitter_and_a_cap() -> None:
    policy = RetryPolicy(base_seconds=30, cap_seconds=3600, jitter=0.25)
    rng = random.Random(7)
    for attempts, full in ((1, 30), (2, 60), (5, 480), (9, 3600), (30, 3600)):
        delays = {policy.delay(attempts, rng) for _ in range(20)}
        assert all(0.75 * full <= d <= full for d in delays) and len(delays) > 1
    assert policy.delay(3, rng, retry_after=120) == 120
    assert policy.delay(3, rng, retry_after=10**9) == policy.max_retry_after_seconds


async def test_expired_content_is_not_sent(setup: Setup, smtp_port: int) -> None:
    id = await setup.enqueue(expires_at=T0 + dt.timedelta(minutes=10))
    setup.clock.advance(minutes=10)
    with SmtpSink(smtp_port) as sink:
        assert await setup.worker().run_once() == 1
    assert sink.messages == []
    row = await setup.row(id)
    assert row["state"] == EXPIRED and row["sealed"] == ""


async def test_a_retry_past_the_expiry_expires_at_once(setup: Setup) -> None:
    id = await setup.enqueue(expires_at=T0 + dt.timedelta(seconds=20))
    assert await setup.worker(retry=RetryPolicy(base_seconds=30, jitter=0)).run_once() == 1  # SMTP is down
    row = await setup.row(id)
    assert row["state"] == EXPIRED and row["sealed"] == "" and "expired while retrying" in row["last_error"]


async def test_a_worker_killed_after_claiming_is_relieved_after_the_lease(setup: Setup, smtp_port: int) -> None:
    id = await setup.enqueue()
    killed = setup.worker("killed", lease_seconds=60)
    claimed = await killed.claim()  # ... and the process dies here
    assert [m.id for m in claimed] == [id] and (await setup.row(id))["state"] == SENDING
    restarted = setup.worker("restarted", lease_seconds=60)
    with SmtpSink(smtp_port) as sink:
        assert await restarted.run_once() == 0  # the lease still holds
        setup.clock.advance(seconds=61)
        assert await restarted.run_once() == 1
        # the first worker wakes up late: its lease is gone, so it neither sends nor records anything
        assert await killed.process(claimed[0]) is False
    assert codes_in(sink) == [CODE]
    row = await setup.row(id)
    assert row["state"] == SENT and row["attempts"] == 2
    assert row["unknown_outcomes"] == 1  # the killed worker may have sent it: that attempt is counted as such


async def test_a_message_taken_over_from_lost_leases_is_handed_over_at_most_three_times(
    setup: Setup, smtp_port: int
) -> None:
    """Each worker that took the message and vanished may have sent it: after three such attempts
    it is failed (and kept for an operator's retry), not sent a fourth time."""
    id = await setup.enqueue(expires_at=T0 + dt.timedelta(hours=1))
    for _ in range(3):
        [claimed] = await setup.worker("doomed", lease_seconds=60).claim()  # ... and each time the worker dies
        setup.clock.advance(seconds=61)
    with SmtpSink(smtp_port) as sink:
        assert await setup.worker("last", lease_seconds=60).run_once() == 1
    assert sink.messages == []
    row = await setup.row(id)
    assert row["state"] == FAILED and row["unknown_outcomes"] == 3 and row["sealed"] != ""
    assert row["last_error"] == "outcome unknown 3 times, not sent again (it may have been delivered)"
    assert claimed.unknown_outcomes == 2


async def test_a_send_the_worker_cuts_is_an_unknown_outcome(setup: Setup, smtp_port: int) -> None:
    """The SMTP server holds the message past 80 % of the lease: the server may still accept it, so
    the attempt counts among the unknown outcomes."""
    import threading

    id = await setup.enqueue(expires_at=T0 + dt.timedelta(hours=1))
    hold = threading.Event()
    try:
        with SmtpSink(smtp_port, hold=hold) as sink:
            assert await setup.worker(lease_seconds=1).run_once() == 1
            hold.set()
    finally:
        hold.set()
    assert len(sink.arrived) == 1
    row = await setup.row(id)
    assert row["state"] == PENDING and row["unknown_outcomes"] == 1
    assert row["last_error"] == "outcome unknown: the send took longer than 1 s and was cut"


async def test_an_outcome_write_that_fails_is_tried_again_rather_than_the_send(
    setup: Setup, smtp_port: int, database: Database, db_url: str
) -> None:
    """The database refuses to store 'sent' for a moment, just as the server accepts the message:
    the worker stores it once the database takes it again, instead of leaving the message to be
    sent a second time after its lease."""
    import threading

    id = await setup.enqueue()
    if database.is_sqlite:
        block = (
            "CREATE TRIGGER refuse_sent BEFORE UPDATE ON guichet_outbox WHEN NEW.state = 'sent' "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
        unblock = "DROP TRIGGER refuse_sent"
    else:
        block = "ALTER TABLE guichet_outbox ADD CONSTRAINT refuse_sent CHECK (state <> 'sent') NOT VALID"
        unblock = "ALTER TABLE guichet_outbox DROP CONSTRAINT refuse_sent"

    def ddl(statement: str) -> None:
        async def run() -> None:
            other = Database(db_url)
            await other.connect()
            try:
                await other.engine.run_ddl(statement)
            finally:
                await other.close()

        asyncio.run(run())

    def refuse_for_a_moment(_envelope: Any) -> None:
        ddl(block)
        threading.Timer(0.5, ddl, [unblock]).start()

    with SmtpSink(smtp_port, before_reply=refuse_for_a_moment) as sink:
        assert await setup.worker().run_once() == 1
    assert codes_in(sink) == [CODE]
    row = await setup.row(id)
    assert row["state"] == SENT and row["attempts"] == 1 and row["unknown_outcomes"] == 0


async def test_two_workers_deliver_each_message_exactly_once(setup: Setup, smtp_port: int, db_url: str) -> None:
    ids = [await setup.enqueue(code=f"{100000 + n}") for n in range(30)]
    other_db = Database(db_url)  # a second process would have its own pool
    await other_db.connect()
    try:
        first = setup.worker("first", batch=4, concurrency=2)
        second = setup.worker("second", database=other_db, batch=4, concurrency=2)
        with SmtpSink(smtp_port) as sink:
            counts = await asyncio.gather(first.drain(), second.drain(), first.drain())
    finally:
        await other_db.close()
    delivered = codes_in(sink)
    assert sorted(delivered) == sorted(f"{100000 + n}" for n in range(30)) and sum(counts) == 30
    assert await outbox_status(setup.database) == {("email", SENT): 30}
    assert {(await setup.row(id))["attempts"] for id in ids} == {1}


async def test_a_template_missing_a_value_fails_without_showing_values(
    setup: Setup, smtp_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    async with setup.database.transaction():
        id = await enqueue(
            setup.database,
            setup.keys,
            channel="email",
            template="temporary_password",
            recipient=RECIPIENT,
            payload={"password": "Secret#Pass99"},
            now=T0,
        )
    caplog.set_level(logging.DEBUG)
    with SmtpSink(smtp_port):
        assert await setup.worker().run_once() == 1
    row = await setup.row(id)
    assert row["state"] == FAILED and "needs a value" in row["last_error"]
    assert "Secret#Pass99" not in caplog.text and "Secret#Pass99" not in row["last_error"]


async def test_graceful_stop_finishes_the_current_message_and_releases_the_rest(setup: Setup, smtp_port: int) -> None:
    ids = [await setup.enqueue(code=f"{200000 + n}") for n in range(6)]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    worker = setup.worker(batch=6, concurrency=1)
    with SmtpSink(smtp_port, on_message=lambda envelope: loop.call_soon_threadsafe(stop.set)) as sink:
        await asyncio.wait_for(worker.run_forever(stop, idle_seconds=0.05), timeout=10)
    assert len(sink.messages) == 1
    rows = [await setup.row(id) for id in ids]
    assert [r["state"] for r in rows].count(SENT) == 1
    released = [r for r in rows if r["state"] != SENT]
    assert all(r["state"] == PENDING and r["attempts"] == 0 and r["lease_until"] is None for r in released)


async def test_running_in_an_app_lifespan_and_wake(setup: Setup, smtp_port: int) -> None:
    worker = setup.worker()
    with SmtpSink(smtp_port) as sink:
        async with worker.running(idle_seconds=30):
            await asyncio.sleep(0.05)
            await setup.enqueue()
            worker.wake()  # without it the worker would sleep 30 s
            for _ in range(100):
                if sink.messages:
                    break
                await asyncio.sleep(0.05)
    assert codes_in(sink) == [CODE]


async def test_run_worker_process_once(setup: Setup, smtp_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    await setup.enqueue()
    await setup.enqueue(code="777111")
    with SmtpSink(smtp_port) as sink:
        assert await run_worker_process(setup.config, once=True) == 0
    assert sorted(codes_in(sink)) == sorted([CODE, "777111"])
    assert "2 message(s) handled" in capsys.readouterr().out


def test_outbox_cli(
    make_config: Callable[..., CaisseConfig], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`guichet outbox status / retry` on a config file (SQLite)."""
    from guichet.cli import main
    from guichet.testing import BASE_CONFIG

    config_file = tmp_path / "caisse.toml"
    config_file.write_text(
        textwrap.dedent(BASE_CONFIG) + f'\n[database]\nurl = "sqlite:///{tmp_path / "cli.sqlite"}"\n'
    )
    assert main(["db", "upgrade", "--config", str(config_file)]) == 0
    config = make_config(database_url=f"sqlite:///{tmp_path / 'cli.sqlite'}")

    async def add() -> None:
        database = Database.from_config(config)
        await database.connect()
        await enqueue(
            database,
            Keys.from_config(config),
            channel="email",
            template="login_code",
            recipient=RECIPIENT,
            payload={"code": CODE},
            now=T0,
        )

    asyncio.run(add())
    capsys.readouterr()
    assert main(["outbox", "status", "--config", str(config_file)]) == 0
    assert capsys.readouterr().out.split() == ["Channel", "State", "Messages", "email", "pending", "1"]
    assert main(["outbox", "status", "--json", "--config", str(config_file)]) == 0
    assert json.loads(capsys.readouterr().out) == [{"channel": "email", "state": "pending", "count": 1}]
    assert main(["outbox", "retry", "1", "--config", str(config_file)]) == 1


BOOM_PLUGIN = """
from guichet.core import hookimpl


class BoomChannel:
    name = "boom"
    label_fr = "boum"
    reaches = "email"

    def __init__(self):
        self.calls = 0

    async def send(self, message):
        self.calls += 1
        raise RuntimeError("leaking " + message.payload["code"] + " to " + message.recipient.email)


@hookimpl
def guichet_channels(context):
    return [BoomChannel()]
"""


async def test_a_channel_raising_anything_else_is_retried_and_never_logged(
    make_config: Callable[..., CaisseConfig],
    database: Database,
    db_url: str,
    guichet_plugin_site: PluginSite,
    caplog: pytest.LogCaptureFixture,
) -> None:
    package = guichet_plugin_site.add_module("boom", BOOM_PLUGIN)
    config = make_config(database_url=db_url, base=base_with_plugins("boom"))
    setup = Setup(config, database, FrozenClock(T0))
    id = await setup.enqueue(channel="boom", code="660022")
    caplog.set_level(logging.DEBUG)
    assert await setup.worker().run_once() == 1
    row = await setup.row(id)
    assert row["state"] == PENDING and row["attempts"] == 1 and row["sealed"] != ""
    assert row["last_error"] == f"RuntimeError raised by channel 'boom' ({package}.hooks)"
    assert "660022" not in caplog.text and "marie.dupont" not in caplog.text
    assert setup.host.channel("boom").calls == 1  # type: ignore[union-attr]


def test_guichet_outbox_work_stops_gracefully_on_sigterm(tmp_path: Path, root: Path) -> None:
    """The worker process delivers what is due, then exits 0 on SIGTERM."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from guichet.core.config import load_config

    port = free_port()
    config_file = tmp_path / "caisse.toml"
    text = base_with_plugins("delivery_email", "delivery_postal") + textwrap.dedent(f"""
        [plugins.settings.delivery_email]
        host = "127.0.0.1"
        port = {port}
        security = "none"
        sender = "MSA Test <ne-pas-repondre@test.invalid>"

        [database]
        url = "sqlite:///{tmp_path / "worker.sqlite"}"
    """)
    config_file.write_text(text)
    config = load_config(config_file)

    async def add() -> None:
        database = Database.from_config(config)
        await database.upgrade()
        await enqueue(
            database,
            Keys.from_config(config),
            channel="email",
            template="login_code",
            recipient=RECIPIENT,
            payload={"code": CODE, "lifetime_minutes": 15},
            now=dt.datetime.now(dt.UTC),
        )
        await database.close()

    asyncio.run(add())
    with SmtpSink(port) as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "guichet.cli", "outbox", "work", "--config", str(config_file)],
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 20
            while not sink.messages and time.monotonic() < deadline and process.poll() is None:
                time.sleep(0.05)
            assert codes_in(sink) == [CODE]
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=15) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


async def test_codes_are_claimed_before_a_backlog_of_letters(database: Database, clock: FrozenClock) -> None:
    """A burst of PDF letters queued first must not delay an emailed code."""
    from guichet.core.structs import PostalAddress

    keys = Keys(TEST_SECRET)
    letter_to = Recipient(name="A", address=PostalAddress(lines=("1 RUE A", "75001 PARIS")))
    for _ in range(30):
        await enqueue(
            database,
            keys,
            channel="postal",
            template="registration_letter",
            recipient=letter_to,
            payload={"masked_identifier": "185*******084", "registered_on": "25/11/2026"},
            now=clock.now(),
        )
    code_id = await enqueue(
        database,
        keys,
        channel="email",
        template="login_code",
        recipient=Recipient(name="B", email="b@demo.invalid"),
        payload={"code": "123456", "lifetime_minutes": 10},
        now=clock.now(),
    )
    worker = OutboxWorker(database, keys, None, clock, worker_id="t", batch=5)  # type: ignore[arg-type]
    claimed = await worker.claim(5)
    assert code_id in [m.id for m in claimed]
    assert len(claimed) == 5


async def test_a_delivery_s_outcome_stored_alone_is_one_statement_not_a_transaction(
    setup: Setup, smtp_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An outcome that shares its commit with no other is one UPDATE, atomic by itself: no BEGIN
    and COMMIT around it (two more round trips, or hops to SQLite's thread, per email)."""
    id = await setup.enqueue()
    opened = 0
    transaction = setup.database.transaction

    def counted() -> Any:
        nonlocal opened
        opened += 1
        return transaction()

    monkeypatch.setattr(setup.database, "transaction", counted)
    with SmtpSink(smtp_port) as sink:
        assert await setup.worker().run_once() == 1
    assert codes_in(sink) == [CODE]
    assert (await setup.row(id))["state"] == SENT
    assert opened == 0


async def rows_a_claim_reads(database: Database, worker: OutboxWorker, batch: int, now: dt.datetime) -> int:
    """How much of the outbox one claim reads: SQLite's virtual machine steps, or PostgreSQL's rows
    out of its scans of the table (EXPLAIN ANALYZE). The claim is rolled back: nothing changes."""
    args = worker.claim_arguments(now, batch)
    if database.is_sqlite:
        import sqlite3

        steps = 0

        def step() -> int:
            nonlocal steps
            steps += 1
            return 0

        connection = sqlite3.connect(str(database.path), isolation_level=None)
        try:
            connection.set_progress_handler(step, 1)
            connection.execute("BEGIN")
            claimed = connection.execute(compiled(worker._claim_sql, "sqlite"), args).fetchall()
            assert len(claimed) == min(batch, 10)  # what the claim takes: the statement matched
            connection.execute("ROLLBACK")
        finally:
            connection.close()
        return steps
    plan: list[dict[str, Any]] = []

    class Undo(Exception):
        pass

    with contextlib.suppress(Undo):
        async with database.transaction():
            plan = await database.t.OutboxMessage.raw(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + worker._claim_sql, *args
            ).run()
            raise Undo  # EXPLAIN ANALYZE made the claim: rolled back
    read = 0

    def walk(node: dict[str, Any]) -> None:
        nonlocal read
        if node.get("Relation Name") == "guichet_outbox":
            loops = node.get("Actual Loops", 1)
            read += (node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)) * loops
        for child in node.get("Plans", []):
            walk(child)

    document = plan[0]["QUERY PLAN"]
    walk((json.loads(document) if isinstance(document, str) else document)[0]["Plan"])
    return read


async def test_a_claim_reads_no_more_for_a_backlog(database: Database, clock: FrozenClock) -> None:
    """A claim reads what it takes, not what waits: letters queued behind a postal outage, messages
    in their retry backoff and due messages beyond the batch cost it nothing (one query over the
    whole outbox read and sorted every pending message: 13 ms a claim per 100,000 waiting)."""
    table = database.t.OutboxMessage
    now = clock.now()

    async def queue(count: int, channel: str, due_in: dt.timedelta) -> None:
        rows = [
            table(
                channel=channel,
                template="t",
                sealed="x",
                state=PENDING,
                next_attempt_at=now + due_in,
                created_at=now,
            )
            for _ in range(count)
        ]
        for start in range(0, count, 1000):
            await table.insert(*rows[start : start + 1000]).run()

    worker = OutboxWorker(database, Keys(TEST_SECRET), None, clock, worker_id="t", batch=5)  # type: ignore[arg-type]
    await queue(10, "email", -dt.timedelta(minutes=1))
    if not database.is_sqlite:
        await table.raw("ANALYZE guichet_outbox").run()
    alone = await rows_a_claim_reads(database, worker, 5, now)
    await queue(3000, "postal", dt.timedelta(hours=6))  # the printer is down
    await queue(3000, "email", dt.timedelta(minutes=30))  # retries in their backoff
    await queue(3000, "email", -dt.timedelta(minutes=2))  # due, behind the first ten
    if not database.is_sqlite:
        await table.raw("ANALYZE guichet_outbox").run()
    behind = await rows_a_claim_reads(database, worker, 5, now)
    assert behind <= 2 * alone + 200, (alone, behind)
    claimed = await worker.claim(5)
    assert len(claimed) == 5 and all(m.channel == "email" for m in claimed)


async def test_a_schema_behind_still_delivers_and_says_why_it_is_slow(
    database: Database, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A database whose migration 7 has not run (`guichet db upgrade` forgotten) has no claim
    indexes: SQLite refuses a statement that names them. The codes still go out, and the log says
    what to run."""
    for name in CLAIM_INDEXES:
        await database.t.OutboxMessage.raw(f"DROP INDEX IF EXISTS guichet_outbox_{name}").run()
    id = await enqueue(
        database,
        Keys(TEST_SECRET),
        channel="email",
        template="login_code",
        recipient=RECIPIENT,
        payload={"code": CODE, "lifetime_minutes": 10},
        now=clock.now(),
    )
    worker = OutboxWorker(database, Keys(TEST_SECRET), None, clock, worker_id="t", batch=5)  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="guichet.outbox"):
        assert [m.id for m in await worker.claim()] == [id]
        assert await worker.claim() == []
    told = [r for r in caplog.records if "guichet db upgrade" in r.getMessage()]
    assert len(told) == (1 if database.is_sqlite else 0)  # PostgreSQL plans without them, silently
