"""The third-party example: a distribution found by its entry point, delivering through the outbox worker."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import tomllib
from collections.abc import Callable
from pathlib import Path

from guichet.core.clock import FrozenClock
from guichet.core.config import CaisseConfig
from guichet.core.context import PluginContext
from guichet.core.database import Database
from guichet.core.keys import Keys
from guichet.core.outbox import PENDING, SENT, enqueue
from guichet.core.outbox_worker import OutboxWorker
from guichet.core.plugins import PluginHost
from guichet.core.structs import Recipient
from guichet.testing import HttpSink, base_with_plugins

T0 = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)
SECRET = "webhook-shared-secret-for-tests"


def verify(header: str, body: bytes) -> bool:
    fields = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(SECRET.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"])


async def test_a_message_goes_through_the_webhook(
    webhook_example: Path, make_config: Callable[..., CaisseConfig], database: Database, db_url: str
) -> None:
    with HttpSink(script=[(503, {"Retry-After": "30"})]) as receiver:
        config = make_config(
            f"""
            [plugins.settings.webhook]
            url = "{receiver.url}"
            secret = {{ value = "{SECRET}" }}
        """,
            database_url=db_url,
            base=base_with_plugins("webhook"),
        )
        clock = FrozenClock(T0)
        keys = Keys.from_config(config)
        host = PluginHost(config, PluginContext(config=config, database=database, clock=clock))
        [info] = [i for i in host.infos if i.name == "webhook"]
        assert info.source.startswith("guichet-webhook-channel ") and info.hooks == ("guichet_channels",)
        assert host.channel("webhook") is not None and host.channel("webhook").label_fr == "par le service partenaire"  # type: ignore[union-attr]

        async with database.transaction():
            id = await enqueue(
                database,
                keys,
                channel="webhook",
                template="login_code",
                recipient=Recipient(
                    name="Marie DUPONT", email="marie.dupont@exemple.fr", addresses={"identifier": "1850578006084"}
                ),
                payload={"code": "482913", "lifetime_minutes": 15},
                now=T0,
            )
        worker = OutboxWorker(database, keys, host, clock, worker_id="webhook-test")
        assert await worker.run_once() == 1
        t = database.t.OutboxMessage
        [row] = await t.select().where(t.id == id).run()
        assert row["state"] == PENDING and row["last_error"] == "webhook answered 503"
        assert row["next_attempt_at"] == T0 + dt.timedelta(seconds=30)
        clock.advance(seconds=30)
        assert await worker.run_once() == 1

    [row] = await t.select().where(t.id == id).run()
    assert row["state"] == SENT and row["sealed"] == ""
    first, second = receiver.requests
    assert (
        first.headers["Idempotency-Key"]
        == second.headers["Idempotency-Key"]
        == f"test-{id}-{int(T0.timestamp() * 1000)}"
    )
    for request in (first, second):
        assert verify(request.headers["X-Guichet-Signature"], request.body)
    assert not verify(second.headers["X-Guichet-Signature"], second.body.replace(b"482913", b"000000"))
    document = json.loads(second.body)
    assert document["id"] == id and document["template"] == "login_code" and document["caisse"] == "test"
    assert document["payload"] == {"code": "482913", "lifetime_minutes": 15}
    # the channel reaches people by their identifier (its default); the flows narrow a recipient to that
    # address before they enqueue (tests/flows/test_third_party_plugins.py), this test enqueues it whole
    assert document["recipient"]["addresses"] == {"identifier": "1850578006084"}


def test_the_example_is_a_complete_distribution(webhook_example: Path) -> None:
    meta = tomllib.loads((webhook_example / "pyproject.toml").read_text())["project"]
    assert meta["name"] == "guichet-webhook-channel" and meta["entry-points"]["guichet"] == {
        "webhook": "guichet_webhook.hooks"
    }
    package = webhook_example / "src" / "guichet_webhook"
    assert {p.name for p in package.glob("*.py")} == {"__init__.py", "hooks.py", "channel.py", "settings.py"}
    assert (webhook_example / "README.md").is_file()
