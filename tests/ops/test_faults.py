"""Faults of the delivery side and of the disk, with real servers: the SMTP server down then back,
an SMS gateway that times out, two outbox worker processes at once, a disk that fills up, and a
PostgreSQL cluster restarted while the worker delivers.

Each scenario runs the app (in the test's event loop, over HTTP), a real ``guichet outbox work``
process, a real SMTP server (aiosmtpd) or HTTP SMS gateway, on SQLite and PostgreSQL, and ends
with the shared SQL invariants (tests/ops/invariants.py). What each one would catch is in its
docstring. Waits that the retry policy would impose (30 s and more) are not waited for: the test
moves the message's due time to the database's now, as time passing would.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email
import html
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from guichet.core.config import CaisseConfig, load_config
from guichet.core.database import Database
from guichet.core.keys import Keys
from guichet.core.outbox import enqueue
from guichet.core.structs import Recipient
from guichet.testing import HttpSink, SmtpSink, free_port
from tests.conftest import Portal, _reset_postgres, portal_config_text, service_missing
from tests.ops.invariants import DELIVERY_BOUND, check_invariants, email_keys, sms_keys
from tests.ops.servers import PostgresServer, running_portal
from tests.ops.serving import OutboxProcess
from tests.ops.test_outages import assert_unavailable, no_500, ready, stranger, tour
from tests.security.support import PASSWORD, make_account, password_step

pytestmark = pytest.mark.faults

CODE = re.compile(r"\b(\d{6})\b")
CAISSE = "test"


def write_config(
    path: Path,
    db_url: str,
    *,
    smtp_port: int = 2525,
    sms_url: str = "http://127.0.0.1:9/sms",
    sms_timeout: float = 10,
    extra: str = "",
) -> CaisseConfig:
    """The portal's config, its outbox worker apart (a process of its own), written where both read it."""
    text = (
        portal_config_text(extra + f'\n[database]\nurl = "{db_url}"\n')
        .replace("port = 2525", f"port = {smtp_port}", 1)
        .replace('url = "http://127.0.0.1:9/sms"', f'url = "{sms_url}"\ntimeout_seconds = {sms_timeout}', 1)
        .replace('mode = "demo"\n', 'mode = "demo"\noutbox_worker = false\n', 1)
    )
    path.write_text(text, encoding="utf-8")
    return load_config(path)


@contextlib.asynccontextmanager
async def deployment(config: CaisseConfig, clock: Any) -> AsyncIterator[Portal]:
    """The app on ``config`` with an empty database (PostgreSQL's emptied)."""
    async with running_portal(config, clock) as portal:
        if not portal.services.database.is_sqlite:
            await _reset_postgres(portal.services.database)
        yield portal


def browser(portal: Portal, n: int) -> httpx.AsyncClient:
    """A browser of its own (cookies, address) on the same app."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=portal.app, client=(f"192.0.2.{n}", 40000)),
        base_url="http://127.0.0.1:8000",
        follow_redirects=False,
    )


async def people(portal: Portal, count: int, *, sms: bool = False) -> list[dict[str, Any]]:
    """``count`` accounts with a known password, a proven email (or, with ``sms``, a proven mobile only)."""
    made = []
    for n in range(1, count + 1):
        overrides: dict[str, Any] = {
            "identifier": f"1850575{100 + n:03d}{n:03d}",
            "email": f"faute{n}@test.invalid",
            "mobile": f"+336123456{n:02d}",
        }
        if sms:
            overrides.update(email=None, email_verified=False, mobile_verified=True)
        made.append(await make_account(portal, **overrides))
    return made


async def wait_for(condition: Callable[[], Any], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.05)


async def outbox_rows(database: Database) -> list[dict[str, Any]]:
    t = database.t.OutboxMessage
    return (
        await t.select(t.id, t.state, t.attempts, t.unknown_outcomes, t.next_attempt_at, t.last_error)
        .order_by(t.id)
        .run()
    )


async def due_now(database: Database) -> int:
    """Pending messages made due at once: the backoff that would have run out, without the wait."""
    t = database.t.OutboxMessage
    now = await database.current_time()
    rows = (
        await t.update({t.next_attempt_at: now})
        .where((t.state == "pending") & (t.next_attempt_at > now))
        .returning(t.id)
        .run()
    )
    return len(rows)


def email_code(sink: SmtpSink, address: str) -> str:
    with sink.lock:
        mails = [m for m in sink.messages if address in m.rcpt_tos]
    assert len(mails) == 1, f"{len(mails)} emails to {address}"
    message = email.message_from_bytes(mails[0].content)
    text = next(part for part in message.walk() if part.get_content_type() == "text/plain")
    found = CODE.search(text.get_payload(decode=True).decode())
    assert found, "no code in the email"
    return found.group(1)


# --- the SMTP server down, then back ----------------------------------------------------------------


async def test_smtp_down_then_back_delivers_every_code_once(tmp_path: Path, db_url: str, clock: Any) -> None:
    """Four people ask for a login code while the SMTP server is down; the worker's tries are
    refused (connection refused: a known failure, retried). The server comes back: each code
    arrives exactly once and logs its person in. Fails on a message left pending or failed, a
    second copy (a refused connection is no doubt), a code accepted twice or an audit row missing."""
    smtp_port = free_port()
    config = write_config(tmp_path / "caisse.toml", db_url, smtp_port=smtp_port)
    async with deployment(config, clock) as portal:
        database = portal.services.database
        accounts = await people(portal, 4)
        browsers = [Portal(portal.app, browser(portal, n)) for n in range(1, 5)]
        for who, person_browser in zip(accounts, browsers):
            r = await password_step(person_browser, who["identifier"], PASSWORD)
            assert r.status_code == 303 and r.headers["location"] == "/connexion/code"

        with OutboxProcess(tmp_path / "caisse.toml", name="smtp-down") as worker:

            async def all_refused() -> bool:
                rows = await outbox_rows(database)
                return len(rows) == 4 and all(r["attempts"] >= 1 and r["state"] == "pending" for r in rows)

            await wait_for(all_refused, "every first attempt refused and rescheduled")
            for person_browser in browsers:  # a temporary failure is not told as a refusal
                r = await person_browser.get("/connexion/code")
                assert r.status_code == 200 and "pu être remis" not in html.unescape(r.text)

            with SmtpSink(port=smtp_port) as sink:

                async def all_sent() -> bool:
                    await due_now(database)
                    return all(r["state"] == "sent" for r in await outbox_rows(database))

                await wait_for(all_sent, "every code sent once the server is back")
                for who, person_browser in zip(accounts, browsers):
                    code = email_code(sink, who["email"])
                    r = await person_browser.post("/connexion/code", {"code": code})
                    assert r.status_code == 303 and r.headers["location"] == "/espace-prive"
                counted = await check_invariants(
                    database,
                    CAISSE,
                    received=email_keys(sink.messages),
                    seeded_accounts=[a["id"] for a in accounts],
                    expect_audit={"code.sent": 4, "code.succeeded": 4, "login.succeeded": 4},
                )
        assert worker.proc is not None and worker.proc.returncode == 0, worker.output()[-2000:]
        assert counted.states == {"sent": 4} and sorted(counted.copies.values()) == [1, 1, 1, 1]
        for person_browser in browsers:
            await person_browser.client.aclose()


# --- an SMS gateway that times out --------------------------------------------------------------------


async def test_sms_gateway_timeouts_stay_within_the_bound_and_an_unknown_outcome_is_told(
    tmp_path: Path, db_url: str, clock: Any
) -> None:
    """The gateway takes each request in (the phone gets it) but answers after the channel's 1 s
    timeout. First person: two timeouts, then an answer: 3 requests with one Idempotency-Key, one
    SMS on the phone, the code logs in. Second person: three timeouts: the message ends ``failed``,
    never a 4th request, and the code page says it could not be delivered (the known limit: it may
    have reached the phone). Fails on a 4th request, a request without the key, a second key for
    one message, or a message left in flight."""
    with HttpSink(honour_key="Idempotency-Key") as gateway:
        path = tmp_path / "caisse.toml"
        config = write_config(
            path, db_url, sms_url=gateway.url, sms_timeout=1, extra='\n[codes.login]\nchannels = ["sms"]\n'
        )
        late = (200, {}, 1.6)  # accepted, answered after the client gave up
        async with deployment(config, clock) as portal:
            database = portal.services.database
            accounts = await people(portal, 2, sms=True)
            browsers = [Portal(portal.app, browser(portal, n)) for n in (1, 2)]
            with OutboxProcess(path, name="sms-timeouts") as worker:
                for who, person_browser, script in zip(accounts, browsers, ([late, late], [late, late, late])):
                    gateway.script.extend(script)
                    r = await password_step(person_browser, who["identifier"], PASSWORD)
                    assert r.status_code == 303 and r.headers["location"] == "/connexion/code"

                    async def final() -> bool:
                        await due_now(database)
                        rows = await outbox_rows(database)
                        return rows[-1]["state"] in ("sent", "failed")

                    await wait_for(final, "the SMS delivered or given up")
                counted = await check_invariants(
                    database,
                    CAISSE,
                    received=sms_keys(gateway.requests),
                    final_states=("sent", "failed"),
                    seeded_accounts=[a["id"] for a in accounts],
                )
            assert worker.proc is not None and worker.proc.returncode == 0, worker.output()[-2000:]
            rows = await outbox_rows(database)
            # the third doubt is not counted in the row: it ends the message (its last_error says 3)
            assert [(r["state"], r["unknown_outcomes"]) for r in rows] == [("sent", 2), ("failed", 2)]
            assert "outcome unknown 3 times" in rows[1]["last_error"]
            assert sorted(counted.copies.values()) == [DELIVERY_BOUND, DELIVERY_BOUND], "3 requests each, not more"
            assert "" not in counted.copies, "a request without its Idempotency-Key"
            # the gateway honoured the key: one SMS per message reached the phone
            assert Counter(r.headers["Idempotency-Key"] for r in gateway.delivered) == Counter(
                {key: 1 for key in counted.copies}
            )

            first = json.loads(gateway.delivered[0].body)["text"]
            await browsers[0].get("/connexion/code")
            r = await browsers[0].post("/connexion/code", {"code": CODE.search(first).group(1)})  # type: ignore[union-attr]
            assert r.status_code == 303 and r.headers["location"] == "/espace-prive"
            r = await browsers[1].get("/connexion/code")
            assert "Le message n'a pas pu être remis au numéro" in html.unescape(r.text), r.text[:2000]
            await check_invariants(
                database,
                CAISSE,
                final_states=("sent", "failed"),
                seeded_accounts=[a["id"] for a in accounts],
                expect_audit={"code.sent": 2, "code.succeeded": 1, "login.succeeded": 1},
            )
            for person_browser in browsers:
                await person_browser.client.aclose()


# --- two outbox workers at once -------------------------------------------------------------------------


WORKER_SENT = re.compile(r"outbox message (\d+) \(email, [a-z_]+\) sent")


async def test_two_workers_at_once_share_the_outbox_and_send_each_message_once(
    tmp_path: Path, db_url: str, clock: Any
) -> None:
    """Two ``guichet outbox work`` processes on one database, 40 messages queued. The SMTP server
    holds its answers until both workers are sending (16 messages in flight: 8 each), so both
    really hold leases at the same time. Fails if a message goes out twice, if both workers log it
    as sent, or if one is left behind."""
    hold = threading.Event()
    with SmtpSink(hold=hold) as sink:
        path = tmp_path / "caisse.toml"
        config = write_config(path, db_url, smtp_port=sink.port)
        keys = Keys.from_config(config)
        async with deployment(config, clock) as portal:
            database = portal.services.database
            now = await database.current_time()
            async with database.transaction():
                for n in range(40):
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
            workers = [OutboxProcess(path, name=f"worker-{n}") for n in (1, 2)]
            try:
                for worker in workers:
                    worker.start()

                async def both_sending() -> bool:
                    with sink.lock:
                        return len(sink.arrived) >= 16

                await wait_for(both_sending, "16 messages in flight: both workers sending")
                hold.set()

                async def all_sent() -> bool:
                    return all(r["state"] == "sent" for r in await outbox_rows(database))

                await wait_for(all_sent, "every message sent")
            finally:
                hold.set()
                codes = [worker.stop() for worker in workers]
            assert codes == [0, 0], "\n".join(w.output()[-2000:] for w in workers)
            counted = await check_invariants(database, CAISSE, received=email_keys(sink.messages))
        assert counted.states == {"sent": 40} and set(counted.copies.values()) == {1}
        sent_by = [set(WORKER_SENT.findall(w.output())) for w in workers]
        assert sent_by[0] and sent_by[1], "one worker did everything: the scenario did not run two at once"
        assert not sent_by[0] & sent_by[1], f"sent by both workers: {sorted(sent_by[0] & sent_by[1])}"
        assert len(sent_by[0] | sent_by[1]) == 40


# --- a full disk (SQLite on a small tmpfs) --------------------------------------------------------------


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 6 MiB tmpfs mounted for the test (root only): a disk that really fills up."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        service_missing("root and mount(8), to mount a small tmpfs")
    where = Path(tempfile.mkdtemp(prefix="guichet-disk-"))
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m,mode=0755", "tmpfs", str(where)], capture_output=True, text=True
    )
    if done.returncode != 0:
        shutil.rmtree(where, ignore_errors=True)
        service_missing(f"a tmpfs mount ({done.stderr.strip()[:200]})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)
        shutil.rmtree(where, ignore_errors=True)


def fill(disk: Path) -> Path:
    """Everything left on ``disk`` taken by one file (written until the kernel says ENOSPC)."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as out:  # unbuffered: nothing left to flush (and fail) at close
        block = b"\1" * 4096
        with contextlib.suppress(OSError):
            while True:
                out.write(block)
    return filler


async def test_a_full_disk_answers_503_then_loses_nothing_once_space_is_back(
    small_disk: Path, tmp_path: Path, clock: Any
) -> None:
    """The SQLite database on a 6 MiB tmpfs; a login code queued, then the disk filled to the
    last byte. Writes answer 503 (never a 500), readiness says 503, the worker cannot store its
    outcomes; space back: readiness 200, every queued code sent once, the login ends. Fails on a
    500, a readiness that stays 200 on a full disk, a message lost or sent twice."""
    with SmtpSink() as sink:
        path = tmp_path / "caisse.toml"
        config = write_config(path, f"sqlite:///{small_disk / 'guichet.sqlite'}", smtp_port=sink.port)
        async with deployment(config, clock) as portal:
            database = portal.services.database
            [who] = await people(portal, 1)
            person_browser = Portal(portal.app, browser(portal, 1))
            r = await password_step(person_browser, who["identifier"], PASSWORD)
            assert r.status_code == 303
            filler = fill(small_disk)
            # writes until one is refused: SQLite may still find room in pages it holds
            full = None
            for _ in range(300):
                async with stranger(portal) as someone:
                    await someone.get("/inscription/statut")
                    r = await someone.post("/inscription/statut", {"status": "particulier"})
                assert r.status_code in (303, 503), (r.status_code, r.text[:300])
                if r.status_code == 503:
                    full = r
                    break
            assert full is not None, "the disk never refused a write"
            assert_unavailable(full, htmx=False)
            r = await ready(portal)
            assert r.status_code == 503 and r.json()["database"] == "unavailable"
            no_500(await tour(portal, logged_in=False))

            with OutboxProcess(path, name="disk-full") as worker:
                await asyncio.sleep(1.5)  # it claims and sends, or fails to claim: either way, nothing lost
                filler.unlink()

                async def back() -> bool:
                    return (await ready(portal)).status_code == 200

                await wait_for(back, "readiness 200 once space is back")

                async def all_sent() -> bool:
                    await due_now(database)
                    return all(r["state"] == "sent" for r in await outbox_rows(database))

                await wait_for(all_sent, "the queued code sent")
            assert worker.proc is not None and worker.proc.returncode == 0, worker.output()[-2000:]
            assert (await person_browser.get("/connexion/code")).status_code == 200, "the half-login survived"
            r = await person_browser.post("/connexion/code", {"code": email_code(sink, who["email"])})
            assert r.status_code == 303 and r.headers["location"] == "/espace-prive"
            await person_browser.client.aclose()
            counted = await check_invariants(
                database,
                CAISSE,
                received=email_keys(sink.messages),
                seeded_accounts=[who["id"]],
                expect_audit={"code.sent": 1, "login.succeeded": 1},
            )
        assert set(counted.copies.values()) == {1}


# --- PostgreSQL restarted while the worker delivers -------------------------------------------------------


@pytest.fixture
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.close()


async def test_a_postgresql_restart_in_the_middle_of_delivery_loses_nothing(
    postgres_server: PostgresServer, tmp_path: Path, clock: Any
) -> None:
    """A PostgreSQL cluster of the test's own is stopped (fast shutdown, as a restart or failover)
    while the SMTP server holds the 5th email, taken in but not yet answered: the worker cannot
    record ``sent`` for what is in flight (it logs "sent, but its outcome could not be stored" and
    writes it again while its lease lasts, rather than sending again). PostgreSQL starts again 2 s later. Every message is then
    sent, each received within the bound (a copy only for an unknown outcome), the worker still
    runs, and the three people log in with the codes they received. Fails on a worker that dies
    with the database, a message left behind, a copy past the bound or a code accepted twice."""
    stopped = threading.Event()
    restarted = threading.Event()

    def restart_at_the_fifth(envelope: Any) -> None:
        with sink.lock:  # the 5th or, when several arrive at once, the first after it: once
            if len(sink.messages) < 5 or stopped.is_set():
                return
            stopped.set()
        postgres_server.stop()

        def start_again() -> None:
            time.sleep(2)
            postgres_server.start()
            restarted.set()

        threading.Thread(target=start_again, daemon=True).start()

    with SmtpSink(before_reply=restart_at_the_fifth) as sink:
        path = tmp_path / "caisse.toml"
        config = write_config(path, postgres_server.url, smtp_port=sink.port)
        keys = Keys.from_config(config)
        async with deployment(config, clock) as portal:
            database = portal.services.database
            accounts = await people(portal, 3)
            browsers = [Portal(portal.app, browser(portal, n)) for n in range(1, 4)]
            for who, person_browser in zip(accounts, browsers):
                r = await password_step(person_browser, who["identifier"], PASSWORD)
                assert r.status_code == 303 and r.headers["location"] == "/connexion/code"
            now = await database.current_time()
            async with database.transaction():
                for n in range(17):
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

            with OutboxProcess(path, name="pg-restart") as worker:

                async def all_sent() -> bool:
                    if not restarted.is_set():
                        return False
                    try:
                        await due_now(database)
                        return all(r["state"] == "sent" for r in await outbox_rows(database))
                    except Exception:  # the app's pool is still finding its connections again
                        return False

                last_error: list[str] = []

                async def all_sent_noted() -> bool:
                    try:
                        return await all_sent()
                    finally:
                        with contextlib.suppress(Exception):
                            last_error[:] = [
                                repr(
                                    [
                                        (r["id"], r["state"], r["attempts"])
                                        for r in await outbox_rows(database)
                                        if r["state"] != "sent"
                                    ]
                                )
                            ]

                try:
                    await wait_for(all_sent_noted, "every message sent after the restart", timeout=120)
                except AssertionError as exc:
                    raise AssertionError(
                        f"{exc}; restarted={restarted.is_set()}; unsent={last_error}; worker:\n"
                        f"{worker.output()[-3000:]}"
                    ) from None
                assert worker.proc is not None and worker.proc.poll() is None, "the worker died with the database"
            assert worker.proc.returncode == 0, worker.output()[-3000:]
            assert stopped.is_set()
            for who, person_browser in zip(accounts, browsers):
                await person_browser.get("/connexion/code")
                r = await person_browser.post("/connexion/code", {"code": email_code_any(sink, who["email"])})
                assert r.status_code == 303 and r.headers["location"] == "/espace-prive"
                await person_browser.client.aclose()
            counted = await check_invariants(
                database,
                CAISSE,
                received=email_keys(sink.messages),
                seeded_accounts=[a["id"] for a in accounts],
                expect_audit={"code.sent": 3, "code.succeeded": 3, "login.succeeded": 3},
            )
        assert counted.states == {"sent": 20} and max(counted.copies.values()) <= DELIVERY_BOUND


def email_code_any(sink: SmtpSink, address: str) -> str:
    """The code in the emails to ``address``: every copy (a message sent again) carries the same one."""
    with sink.lock:
        mails = [m for m in sink.messages if address in m.rcpt_tos]
    codes = set()
    for mail in mails:
        message = email.message_from_bytes(mail.content)
        text = next(part for part in message.walk() if part.get_content_type() == "text/plain")
        found = CODE.search(text.get_payload(decode=True).decode())
        assert found, "no code in the email"
        codes.add(found.group(1))
    assert len(codes) == 1, f"{len(mails)} emails to {address} with {len(codes)} codes"
    return codes.pop()
