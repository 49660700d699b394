"""The demo mailbox: its sinks receive what the real channels send, and list_mailbox reads everything back."""

from __future__ import annotations

import datetime as dt
import logging
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from guichet.core.clock import FrozenClock
from guichet.core.config import CaisseConfig
from guichet.core.context import PluginContext
from guichet.core.database import Database
from guichet.core.keys import Keys
from guichet.core.outbox import enqueue
from guichet.core.outbox_worker import OutboxWorker, run_worker_process
from guichet.core.plugins import PluginHost
from guichet.core.structs import PostalAddress, Recipient
from guichet.plugins.demo_mailbox.mailbox import DemoSinks, letter_path, list_mailbox, mailbox_dirs, start_demo_sinks
from guichet.testing import base_with_plugins

T0 = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)
DEMO_SETTINGS = """
    [plugins.settings.delivery_email]
    port = 0
    sender = "Mon espace privé <ne-pas-repondre@demo.invalid>"

    [plugins.settings.delivery_sms]
    url = "demo"
    sender = "MSA"

    [plugins.settings.delivery_postal]
    spool_dir = "var/spool/letters"

    [demo]
    mailbox = true
    mailbox_dir = "var/demo-mailbox"
"""
PERSON = Recipient(
    name="Marie DUPONT",
    email="marie.dupont@exemple.fr",
    mobile="0612345678",
    address=PostalAddress(lines=("Marie DUPONT", "3 rue du Port", "13002 MARSEILLE")),
)


@pytest.fixture
def demo_config(make_config: Callable[..., CaisseConfig]) -> Callable[..., CaisseConfig]:
    def factory(db_url: str | None = None) -> CaisseConfig:
        return make_config(
            DEMO_SETTINGS,
            database_url=db_url,
            base=base_with_plugins("delivery_email", "delivery_sms", "delivery_postal"),
        )

    return factory


@pytest.fixture
def sinks(demo_config: Callable[..., CaisseConfig]) -> Iterator[DemoSinks]:
    running = start_demo_sinks(demo_config())  # synchronous: no event loop needed
    yield running
    running.stop()


def test_the_sinks_start_without_an_event_loop_and_stop(
    demo_config: Callable[..., CaisseConfig], tmp_path: Path
) -> None:
    running = start_demo_sinks(demo_config())
    endpoints = running.endpoints
    assert endpoints.smtp_host == "127.0.0.1" and endpoints.smtp_port > 0
    assert (
        endpoints.sms_url.startswith("http://127.0.0.1:")
        and Path(endpoints.mailbox_dir) == tmp_path / "var/demo-mailbox"
    )
    with socket.create_connection(("127.0.0.1", endpoints.smtp_port), timeout=2) as conn:
        assert conn.recv(100).startswith(b"220")
    reply = httpx.post(endpoints.sms_url, json={"to": "+33612345678", "text": "Bonjour"})
    assert reply.status_code == 200
    running.stop()
    running.stop()  # idempotent
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", endpoints.smtp_port), timeout=1)
    with pytest.raises(httpx.HTTPError):
        httpx.post(endpoints.sms_url, json={}, timeout=1)
    [item] = list_mailbox(endpoints.mailbox_dir)
    assert item.kind == "sms" and item.to == "+33612345678" and item.text == "Bonjour"


async def test_every_channel_lands_in_the_mailbox(
    demo_config: Callable[..., CaisseConfig], sinks: DemoSinks, database: Database, db_url: str
) -> None:
    config = demo_config(db_url)
    clock = FrozenClock(T0)
    keys = Keys.from_config(config)
    host = PluginHost(config, PluginContext(config=config, database=database, clock=clock, demo=sinks.endpoints))
    async with database.transaction():
        for channel, template, payload in (
            ("email", "login_code", {"code": "482913", "lifetime_minutes": 15}),
            ("sms", "recovery_code", {"code": "7310", "lifetime_minutes": 30}),
            ("postal", "registration_letter", {"masked_identifier": "185*******123", "registered_on": "02/03/2026"}),
        ):
            await enqueue(database, keys, channel=channel, template=template, recipient=PERSON, payload=payload, now=T0)
    assert await OutboxWorker(database, keys, host, clock, worker_id="demo", concurrency=1).run_once() == 3
    items = list_mailbox(*mailbox_dirs(config))
    by_kind = {item.kind: item for item in items}
    assert set(by_kind) == {"email", "sms", "letter"}
    mail = by_kind["email"]
    assert mail.to == "Marie DUPONT <marie.dupont@exemple.fr>"
    assert mail.subject == "Votre code de sécurité pour vous connecter à Mon espace privé"
    assert "482913" in mail.text and "482913" in mail.html and mail.html.startswith("<!DOCTYPE html>")
    sms = by_kind["sms"]
    assert sms.to == "+33612345678" and "7310" in sms.text and sms.subject == "MSA"
    letter = by_kind["letter"]
    assert letter.file == "letter-3.pdf" and letter.to == "Marie DUPONT" and letter.when == T0
    assert letter.subject == "confirmation de votre inscription à Mon espace privé"
    assert letter_path(mailbox_dirs(config)[1], letter.file) is not None


def test_newest_first_and_robust_to_strangers(sinks: DemoSinks, tmp_path: Path) -> None:
    for text in ("premier", "deuxième", "troisième"):
        httpx.post(sinks.endpoints.sms_url, json={"to": "+33612345678", "text": text})
        time.sleep(0.002)
    httpx.post(
        sinks.endpoints.sms_url,
        content=b"to=%2B33700000000&message=formulaire",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    folder = Path(sinks.endpoints.mailbox_dir)
    (folder / "notes.txt").write_text("not a message")  # ignored
    (folder / "20260101T000000000000Z-sms-0000abcd.json").write_text("{broken")  # unreadable: skipped
    items = list_mailbox(folder, tmp_path / "no-spool")
    assert [item.text for item in items] == ["formulaire", "troisième", "deuxième", "premier"]
    assert items[0].to == "+33700000000"


def test_list_mailbox_of_nothing(tmp_path: Path) -> None:
    assert list_mailbox(tmp_path / "absent", tmp_path / "absent-too") == []


def test_letter_path_refuses_anything_but_a_letter_name(tmp_path: Path) -> None:
    (tmp_path / "letter-5.pdf").write_bytes(b"%PDF")
    assert letter_path(tmp_path, "letter-5.pdf") == tmp_path / "letter-5.pdf"
    for name in ("../letter-5.pdf", "letter-5.pdf/..", "index.jsonl", "letter-6.pdf", "/etc/passwd"):
        assert letter_path(tmp_path, name) is None


async def test_a_separate_worker_process_in_demo_mode_uses_its_own_sinks(
    demo_config: Callable[..., CaisseConfig], database: Database, db_url: str
) -> None:
    config = demo_config(db_url)
    async with database.transaction():
        await enqueue(
            database,
            Keys.from_config(config),
            channel="email",
            template="password_changed_notice",
            recipient=PERSON,
            payload={},
            now=dt.datetime.now(dt.UTC),
        )
    assert await run_worker_process(config, once=True) == 0
    [item] = list_mailbox(*mailbox_dirs(config))
    assert item.kind == "email" and item.subject == "Votre mot de passe a été modifié"


async def test_no_code_reaches_the_log(
    demo_config: Callable[..., CaisseConfig],
    sinks: DemoSinks,
    database: Database,
    db_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger().setLevel(logging.DEBUG)
    config = demo_config(db_url)
    clock = FrozenClock(T0)
    keys = Keys.from_config(config)
    host = PluginHost(config, PluginContext(config=config, database=database, clock=clock, demo=sinks.endpoints))
    async with database.transaction():
        await enqueue(
            database,
            keys,
            channel="email",
            template="login_code",
            recipient=PERSON,
            payload={"code": "908172", "lifetime_minutes": 15},
            now=T0,
        )
        await enqueue(
            database,
            keys,
            channel="sms",
            template="login_code",
            recipient=PERSON,
            payload={"code": "908173", "lifetime_minutes": 15},
            now=T0,
        )
    assert await OutboxWorker(database, keys, host, clock, worker_id="demo").run_once() == 2
    assert len(list_mailbox(sinks.endpoints.mailbox_dir)) == 2
    assert caplog.records and "908172" not in caplog.text and "908173" not in caplog.text


def test_a_busy_fixed_smtp_port_is_a_clear_config_error(make_config: Callable[..., CaisseConfig]) -> None:
    from guichet.core.errors import ConfigError

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = make_config(f"[demo]\nmailbox = true\nsmtp_port = {port}")
        with pytest.raises(ConfigError, match=r"demo\.smtp_port.*smtp_port = 0"):
            start_demo_sinks(config)


async def test_building_the_app_starts_no_sink_serving_it_does(demo_config: Callable[..., CaisseConfig]) -> None:
    """`litestar routes` and `litestar run` build the app to find it, then uvicorn builds it again:
    only the app that serves (its lifespan) starts the demo SMTP server and SMS endpoint."""
    from guichet.web.app import create_app

    config = demo_config()
    built = [create_app(config, run_outbox_worker=False) for _ in range(2)]
    for app in built:
        endpoints = app.state.services.host.context.demo
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", endpoints.smtp_port), timeout=1)
    served = built[1]
    endpoints = served.state.services.host.context.demo
    async with served.lifespan():  # type: ignore[attr-defined]
        with socket.create_connection(("127.0.0.1", endpoints.smtp_port), timeout=2) as conn:
            assert conn.recv(100).startswith(b"220")
        reply = httpx.post(endpoints.sms_url, json={"to": "+33612345678", "text": "Bonjour"})
        assert reply.status_code == 200
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", endpoints.smtp_port), timeout=1)
