"""Graceful shutdown: SIGTERM during a slow request lets it finish, the process exits 0, and the
outbox is left claimable (a send in flight finishes; nothing stays leased in ``sending``)."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.controller import Controller

from guichet.core.config import load_config
from guichet.core.database import Database
from tests.conftest import TEST_SECRET
from tests.ops.serving import Served, free_port

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
SEND_SECONDS = 4.0


class SlowSmtp:
    """An SMTP server that takes SEND_SECONDS to accept each message."""

    def __init__(self) -> None:
        self.accepted = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(SEND_SECONDS)
        self.accepted += 1
        return "250 OK"


def config_text(database: Path, smtp_port: int) -> str:
    # argon2id at 128 MiB and 12 passes: about a second per login attempt, a slow request on demand
    return f"""
[caisse]
id = "shutdown"
name = "MSA Test"
postal_address = ["MSA Test", "1 rue de la Paix", "75002 PARIS"]

[plugins]
enabled = ["statuses_msa", "registry_tables", "identity_vitale", "identity_payment", "delivery_email", "delivery_postal", "password_msa"]

[plugins.settings.delivery_email]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
sender = "MSA Test <ne-pas-repondre@test.invalid>"

[security]
secret_key = {{ value = "{TEST_SECRET}" }}

[passwords.argon2]
memory_kib = 131072
time_cost = 12
parallelism = 1

[sessions]
secure_cookies = false

[database]
url = "sqlite:///{database}"

[server]
mode = "demo"
outbox_worker = true

[logging]
format = "text"
"""


async def _queue_messages(config_path: Path, count: int) -> None:
    from guichet.core.keys import Keys
    from guichet.core.outbox import enqueue
    from guichet.core.structs import Recipient

    config = load_config(config_path)
    database = Database.from_config(config)
    await database.connect()
    try:
        await database.upgrade()
        keys = Keys.from_config(config)
        now = dt.datetime.now(dt.UTC)
        for n in range(count):
            await enqueue(
                database,
                keys,
                channel="email",
                template="login_code",
                recipient=Recipient(name="Test", email=f"person{n}@test.invalid"),
                payload={"code": "123456", "lifetime_minutes": 10},
                now=now,
                expires_at=now + dt.timedelta(minutes=10),
            )
    finally:
        await database.close()


def _states(database: Path) -> list[tuple[str, Any, int]]:
    with sqlite3.connect(database) as conn:
        return conn.execute("SELECT state, lease_until, attempts FROM guichet_outbox ORDER BY id").fetchall()


def test_sigterm_lets_the_request_in_flight_finish_and_leaves_the_outbox_claimable(tmp_path: Path) -> None:
    smtp = SlowSmtp()
    controller = Controller(smtp, hostname="127.0.0.1", port=free_port())
    controller.start()
    database = tmp_path / "guichet.sqlite"
    config_path = tmp_path / "caisse.toml"
    config_path.write_text(config_text(database, controller.port), encoding="utf-8")
    asyncio.run(_queue_messages(config_path, 16))  # four rounds of four sends
    server = Served(config_path)
    outcome: dict[str, Any] = {}
    try:
        server.start(timeout=90)
        deadline = time.monotonic() + 30
        while not any(state == "sending" for state, _, _ in _states(database)):
            assert time.monotonic() < deadline, "the outbox worker never claimed a message"
            time.sleep(0.05)

        with httpx.Client(base_url=server.url, timeout=60) as browser:
            token = CSRF.search(browser.get("/connexion").text).group(1)  # type: ignore[union-attr]

            def slow_login() -> None:
                started = time.monotonic()
                try:
                    r = browser.post(
                        "/connexion", data={"identifier": "1990175123456", "password": "x" * 12, "csrf_token": token}
                    )
                    outcome.update(status=r.status_code, text=r.text, finished=time.monotonic() - started)
                except httpx.HTTPError as exc:
                    outcome.update(error=repr(exc))

            request = threading.Thread(target=slow_login)
            request.start()
            time.sleep(0.3)  # the request is in its argon2 verification
            signalled = time.monotonic()
            server.terminate()
            request.join(60)
            code = server.wait(30)
        stopped_after = time.monotonic() - signalled
    finally:
        server.stop()
        controller.stop()
    log = server.output()
    assert "error" not in outcome, f"the request in flight was cut: {outcome['error']}\n{log[-2000:]}"
    assert outcome["status"] == 422 and "Identifiant ou mot de passe incorrect." in outcome["text"]
    assert outcome["finished"] > 0.3, "the request finished before the signal: not a test of the shutdown"
    assert code == 0, f"guichet serve exited with {code}\n{log[-2000:]}"
    assert stopped_after < 25
    states = _states(database)
    assert [s for s, _, _ in states if s == "sending"] == [], f"messages left leased: {states}"
    assert all(state in ("sent", "pending") for state, _, _ in states), states
    assert all(lease is None for state, lease, _ in states if state == "pending"), states
    assert smtp.accepted >= 1, "the sends in flight did not finish"
    assert smtp.accepted == sum(1 for s, _, _ in states if s == "sent")
    released = [(s, attempts) for s, _, attempts in states if s == "pending"]
    assert released, "every message was sent before the shutdown: nothing was given back"
    assert all(attempts == 0 for _, attempts in released), "a message given back at shutdown counts no attempt"
