"""One clock: processes whose host clock is wrong still judge leases, codes, sessions and audit
times on the database's time.

Each skewed process really runs with a moved clock (Debian's faketime), against PostgreSQL, Redis
and a real SMTP server (aiosmtpd): an outbox worker 90 s ahead, web nodes 11 and 31 minutes ahead
of and behind the others. Skipped without faketime, PostgreSQL or Redis, unless
GUICHET_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from guichet.core.config import load_config
from guichet.core.database import Database
from guichet.core.keys import Keys
from guichet.core.outbox import enqueue
from guichet.core.structs import Recipient
from guichet.testing import SmtpSink
from tests.conftest import _reset_postgres, portal_config_text, postgres_url, redis_url
from tests.ops.invariants import check_invariants, email_keys
from tests.ops.serving import OutboxProcess, Served, faketime

pytestmark = pytest.mark.faults

PASSWORD = "Ocre-Falaise-31-Marée!"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
CODE = re.compile(r"\b(\d{6})\b")


def config_text(caisse_id: str, database_url: str, redis: str, smtp_port: int) -> str:
    """The portal config on PostgreSQL and Redis; email to the test's SMTP server; workers apart."""
    extra = f"""
[rate_limits]
store = "redis"

[redis]
url = "{redis}"

[database]
url = "{database_url}"

[logging]
format = "text"
"""
    return (
        portal_config_text(extra)
        .replace('id = "test"', f'id = "{caisse_id}"', 1)
        .replace("port = 2525", f"port = {smtp_port}", 1)
        .replace("secure_cookies = false\n", 'secure_cookies = false\nstore = "redis"\n', 1)
        .replace('mode = "demo"\n', 'mode = "demo"\noutbox_worker = false\n', 1)
    )


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


def database_time(config_path: Path) -> dt.datetime:
    async def read(database: Database) -> dt.datetime:
        now = await database.server_time()
        assert now is not None
        return now

    return asyncio.run(_with_database(config_path, read))


def recipients(sink: SmtpSink) -> list[str]:
    with sink.lock:
        return [address for envelope in sink.messages for address in envelope.rcpt_tos]


# --- the outbox worker ---------------------------------------------------------------------------


def test_a_worker_90_s_ahead_takes_no_lease_of_the_others(tmp_path: Path) -> None:
    """A worker holds 12 messages, its SMTP server slow to answer; a worker 90 s ahead starts.

    On its own clock the holder's 60 s leases have run out; on the database's they have not: it
    takes only the message nobody holds. Every message reaches the server once.
    """
    skew = faketime("+90s")
    hold = threading.Event()
    caisse_id = f"skew-{secrets.token_hex(4)}"
    config_path = tmp_path / "caisse.toml"
    with SmtpSink(hold=hold) as sink:
        config_path.write_text(config_text(caisse_id, postgres_url(), redis_url(), sink.port), encoding="utf-8")
        config = load_config(config_path)
        keys = Keys.from_config(config)

        async def queue(database: Database, names: list[str]) -> None:
            now = await database.current_time()
            async with database.transaction():
                for name in names:
                    await enqueue(
                        database,
                        keys,
                        channel="email",
                        template="login_code",
                        recipient=Recipient(name=name, email=f"{name}@test.invalid"),
                        payload={"code": "123456", "lifetime_minutes": 10},
                        now=now,
                    )

        async def reset(database: Database) -> None:
            await _reset_postgres(database)

        asyncio.run(_with_database(config_path, reset))
        asyncio.run(_with_database(config_path, lambda db: queue(db, [f"held{n}" for n in range(12)])))
        holder = OutboxProcess(config_path, name="holder").start()
        skewed = OutboxProcess(config_path, name="skewed", env=skew)
        try:
            # the holder claimed all 12 at once and is sending 8 of them (its concurrency); the
            # server answers none of them yet
            wait_until(lambda: len(sink.arrived) >= 8, "the first worker sending")
            asyncio.run(_with_database(config_path, lambda db: queue(db, ["sentinel"])))
            skewed.start()
            # the next message to arrive can only come from the skewed worker: the sentinel, or,
            # if it judged the leases on its own clock, one it took from the holder
            wait_until(lambda: len(sink.arrived) >= 9, "the skewed worker sending")
            hold.set()

            async def states(database: Database) -> Counter[str]:
                t = database.t.OutboxMessage
                return Counter(row["state"] for row in await t.select(t.state).run())

            wait_until(
                lambda: asyncio.run(_with_database(config_path, states)) == Counter({"sent": 13}), "every message sent"
            )
        finally:
            hold.set()
            codes = [holder.stop(), skewed.stop()]
        skewed_log = skewed.output()
        assert codes == [0, 0], f"{holder.output()[-2000:]}\n{skewed_log[-2000:]}"
        delivered = Counter(recipients(sink))
        assert delivered == Counter([f"held{n}@test.invalid" for n in range(12)] + ["sentinel@test.invalid"]), (
            f"sent more than once: {sorted(a for a, n in delivered.items() if n > 1)}"
        )
        assert "ahead of the database's" in skewed_log, skewed_log[-2000:]  # it really ran 90 s ahead
        counted = asyncio.run(
            _with_database(
                config_path, lambda database: check_invariants(database, caisse_id, received=email_keys(sink.messages))
            )
        )
        assert set(counted.copies.values()) == {1}


# --- web nodes -----------------------------------------------------------------------------------


class Deployment:
    def __init__(self, config_path: Path, node: Served, sink: SmtpSink) -> None:
        self.config_path = config_path
        self.node = node
        self.sink = sink
        self.accounts = 0
        self.account_ids: list[int] = []
        self.caisse_id = ""

    def new_account(self) -> tuple[int, str, str]:
        """An account with a known password and a verified email: (id, identifier, email)."""
        from guichet.core.passwords import Passwords

        self.accounts += 1
        identifier = f"1850575{100 + self.accounts:03d}{self.accounts:03d}"
        address = f"skew{self.accounts}-{secrets.token_hex(3)}@test.invalid"
        config = load_config(self.config_path)

        async def add(database: Database) -> int:
            hasher = Passwords(config.passwords.argon2, host=None)  # type: ignore[arg-type]
            now = await database.current_time()
            t = database.t.Account
            rows = (
                await t.insert(
                    t(
                        identifier_kind="nir",
                        identifier=identifier,
                        status="particulier",
                        last_name="TEST",
                        first_name="Test",
                        email=address,
                        email_verified=True,
                        password_hash=await hasher.hash(PASSWORD),
                        password_is_temporary=False,
                        password_changed_at=now,
                        contacts_confirmed_at=now,
                        credentials_version=1,
                        created_at=now,
                    )
                )
                .returning(t.id)
                .run()
            )
            hasher.close()
            return int(rows[0]["id"])

        account_id = asyncio.run(_with_database(self.config_path, add))
        self.account_ids.append(account_id)
        return account_id, identifier, address

    def code_for(self, address: str, seen: int) -> str:
        """The code in the ``seen + 1``-th email to ``address``, delivered by the outbox worker."""

        def mails() -> list[Any]:
            with self.sink.lock:
                return [m for m in self.sink.messages if address in m.rcpt_tos]

        wait_until(lambda: len(mails()) > seen, f"a code sent to {address}")
        message = email.message_from_bytes(mails()[seen].content)
        text = next(part for part in message.walk() if part.get_content_type() == "text/plain")
        found = CODE.search(text.get_payload(decode=True).decode())
        assert found, "no code in the email"
        return found.group(1)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """One web node and one outbox worker on the right time, PostgreSQL, Redis and an SMTP server."""
    database_url = postgres_url()
    redis = redis_url()
    faketime("+0s")  # skip before starting anything when faketime is missing
    caisse_id = f"skew-{secrets.token_hex(4)}"
    config_path = tmp_path_factory.mktemp("clock-skew") / "caisse.toml"
    with SmtpSink() as sink:
        config_path.write_text(config_text(caisse_id, database_url, redis, sink.port), encoding="utf-8")

        async def reset(database: Database) -> None:
            await _reset_postgres(database)

        asyncio.run(_with_database(config_path, reset))
        node = Served(config_path)
        worker = OutboxProcess(config_path, name="web-worker")
        try:
            node.start()
            worker.start()
            deployed = Deployment(config_path, node, sink)
            deployed.caisse_id = caisse_id
            yield deployed
        finally:
            codes = [node.stop(), worker.stop()]
            asyncio.run(_clear_redis(redis, caisse_id))
        assert codes == [0, 0], f"{node.output()[-2000:]}\n{worker.output()[-2000:]}"


async def _clear_redis(url: str, caisse_id: str) -> None:
    import redis.asyncio as redis

    client = redis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"guichet:{caisse_id}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def _token(response: httpx.Response) -> str:
    found = CSRF.search(response.text)
    assert found, f"no CSRF token on {response.request.url}: {response.status_code} {response.text[:300]}"
    return found.group(1)


def _log_in(
    deployment: Deployment, password_node: str, code_node: str, identifier: str, address: str, seen: int
) -> httpx.Client:
    """A login whose password step is on one node and code step on another; the client is logged in."""
    browser = httpx.Client(timeout=30)
    token = _token(browser.get(f"{password_node}/connexion"))
    r = browser.post(
        f"{password_node}/connexion", data={"identifier": identifier, "password": PASSWORD, "csrf_token": token}
    )
    assert r.status_code == 303 and r.headers["location"] == "/connexion/code", r.text[:500]
    token = _token(browser.get(f"{code_node}/connexion/code"))
    code = deployment.code_for(address, seen)
    r = browser.post(f"{code_node}/connexion/code", data={"code": code, "csrf_token": token})
    assert r.status_code == 303 and r.headers["location"] == "/espace-prive", (
        f"the code was refused on {code_node}: {r.status_code} {r.text[:800]}"
    )
    return browser


@pytest.mark.parametrize("skew", ["+11m", "-11m", "+31m", "-31m"])
def test_a_web_node_with_a_wrong_clock_accepts_fresh_codes_keeps_sessions_and_audits_on_time(
    deployment: Deployment, skew: str
) -> None:
    """Codes are issued on one node and typed on the other (10-minute codes), sessions go on from
    one to the other (30 minutes idle): with an 11- or 31-minute skew, on either side, none of it
    may fail, and every audit row carries the database's time."""
    node = Served(deployment.config_path, env=faketime(skew))
    right = deployment.node.url
    account_id, identifier, address = deployment.new_account()
    started = database_time(deployment.config_path)
    try:
        node.start()
        skewed = node.url
        # the code issued on the right node, typed on the skewed one; then the other way round
        first = _log_in(deployment, right, skewed, identifier, address, seen=0)
        second = _log_in(deployment, skewed, right, identifier, address, seen=1)
        # each session, made on one node, is still alive on the other
        for browser in (first, second):
            for url in (right, skewed, right):
                r = browser.get(f"{url}/espace-prive")
                assert r.status_code == 200 and "Bonjour" in r.text, (
                    f"logged out on {url}: {r.status_code} {r.headers.get('location')}"
                )
            browser.close()
    finally:
        node.stop()
    ended = database_time(deployment.config_path)
    assert "the database's" in node.output(), node.output()[-2000:]  # it really ran with a wrong clock
    assert recipients(deployment.sink).count(address) == 2  # each login's code, sent once

    async def audit(database: Database) -> list[dict[str, Any]]:
        t = database.t.AuditLog
        return await t.select(t.kind, t.at).where(t.account_id == account_id).order_by(t.id).run()

    rows = asyncio.run(_with_database(deployment.config_path, audit))
    kinds = [row["kind"] for row in rows]
    assert kinds.count("login.succeeded") == 2 and kinds.count("code.sent") == 2, kinds
    # one offset measurement's error is a fraction of a millisecond; a second is generous
    margin = dt.timedelta(seconds=1)
    wrong = [
        (row["kind"], row["at"].isoformat()) for row in rows if not started - margin <= row["at"] <= ended + margin
    ]
    assert not wrong, f"audit rows outside [{started.isoformat()}, {ended.isoformat()}]: {wrong}"
    # the worker (on the right clock) has sent both codes: the shared invariants over the whole run
    asyncio.run(
        _with_database(
            deployment.config_path,
            lambda database: check_invariants(
                database,
                deployment.caisse_id,
                received=email_keys(deployment.sink.messages),
                seeded_accounts=deployment.account_ids,
                expect_audit={"login.succeeded": 2 * len(deployment.account_ids)},
            ),
        )
    )
