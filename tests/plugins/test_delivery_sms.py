"""delivery_sms: GSM-7 texts of one SMS, E.164 numbers, a real local HTTP gateway, retries through the outbox."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from guichet.core.clock import FrozenClock
from guichet.core.config import CaisseConfig, load_config
from guichet.core.context import DemoEndpoints, PluginContext
from guichet.core.database import Database
from guichet.core.delivery_templates import SAMPLE_PAYLOAD, TEMPLATES
from guichet.core.errors import ConfigError, DeliveryError
from guichet.core.keys import Keys
from guichet.core.outbox import FAILED, PENDING, SENT, enqueue
from guichet.core.outbox_worker import OutboxWorker
from guichet.core.plugins import PluginHost
from guichet.core.structs import Message, Recipient
from guichet.plugins.delivery_sms import hooks
from guichet.plugins.delivery_sms.channel import SmsChannel, build_body
from guichet.plugins.delivery_sms.gsm import BASIC, ONE_SMS, septets, to_gsm7
from guichet.plugins.delivery_sms.settings import SmsSettings
from guichet.testing import HttpSink, base_with_plugins

T0 = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)
RECIPIENT = Recipient(name="Marie DUPONT", mobile="06 12 34 56 78")
DEMO = DemoEndpoints(smtp_host="127.0.0.1", smtp_port=2525, sms_url="http://127.0.0.1:1/sms", mailbox_dir="x")


def message(template: str = "login_code", recipient: Recipient = RECIPIENT, id: int = 7, **payload: Any) -> Message:
    return Message(
        id=id,
        channel="sms",
        template=template,
        recipient=recipient,
        payload=payload or {"code": "482913", "lifetime_minutes": 15},
        caisse_name="MSA Test",
        created_at=T0,
    )


@pytest.fixture
def channel_for(make_config: Callable[..., CaisseConfig]) -> Callable[..., SmsChannel]:
    def factory(settings: str, demo: DemoEndpoints | None = None, clock: FrozenClock | None = None) -> SmsChannel:
        config = make_config(f"[plugins.settings.delivery_sms]\n{settings}", base=base_with_plugins("delivery_sms"))
        context = PluginContext(config=config, database=None, clock=clock or FrozenClock(T0), demo=demo)  # type: ignore[arg-type]
        [channel] = hooks.guichet_channels(context=context)
        assert isinstance(channel, SmsChannel)
        return channel

    return factory


# --- texts -------------------------------------------------------------------------------------------


def test_gsm7_conversion_of_french_text() -> None:
    assert (
        to_gsm7("Œuvre d’art « garçon » – là-bas… où ? ê î ô û ç")
        == 'OEuvre d\'art " garcon " - là-bas... où ? e i o u c'
    )
    assert to_gsm7("prix 10\u00a0€ [ok]") == "prix 10 € [ok]"
    assert septets("prix 10 € [ok]") == 14 + 3  # €, [ and ] take two septets each
    assert to_gsm7("emoji 🙂 ñ Ā") == "emoji ? ñ A"
    with pytest.raises(ValueError):
        septets("ê")


@pytest.mark.parametrize("config_file", ["demo.toml", "provence-azur.toml", "sud-aquitaine.toml"])
def test_every_template_fits_one_gsm7_sms(config_file: str, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUICHET_SMS_TOKEN", "not-used")
    config = load_config(root / "config" / config_file)
    context = PluginContext(config=config, database=None, clock=FrozenClock(T0), demo=DEMO)  # type: ignore[arg-type]
    [channel] = hooks.guichet_channels(context=context)
    assert isinstance(channel, SmsChannel)
    for template in TEMPLATES:
        text = channel.text(message(template, **SAMPLE_PAYLOAD))
        assert all(char in BASIC for char in text), text  # no escape characters either
        assert septets(text) <= ONE_SMS, (template, septets(text), text)
        assert text.startswith(config.caisse.name) or text.startswith(to_gsm7(config.caisse.name))
        for key in ("code", "password", "masked_identifier"):
            if f"{{{{ {key}" in (Path("plugins/delivery_sms/templates") / f"{template}.txt").read_text():
                assert str(SAMPLE_PAYLOAD[key]) in text


def test_a_long_caisse_name_still_fits(make_config: Callable[..., CaisseConfig]) -> None:
    config = make_config(
        '[plugins.settings.delivery_sms]\nurl = "https://sms.example/send"', base=base_with_plugins("delivery_sms")
    )
    config = msgspec.structs.replace(
        config, caisse=msgspec.structs.replace(config.caisse, name="MSA Dordogne, Lot et Garonne")
    )
    SmsChannel(
        SmsSettings(url="https://sms.example/send"),
        PluginContext(
            config=config,
            database=None,  # type: ignore[arg-type]
            clock=FrozenClock(T0),
        ),
    )


def test_a_caisse_template_longer_than_one_sms_is_refused(
    channel_for: Callable[..., SmsChannel], tmp_path: Path
) -> None:
    (tmp_path / "sms").mkdir()
    (tmp_path / "sms" / "login_code.txt").write_text("{{ caisse.name }} : " + "très long " * 20 + "{{ code }}")
    with pytest.raises(ConfigError, match="login_code.*more than one SMS"):
        channel_for('url = "https://sms.example/send"\ntemplates_dir = "sms"')


# --- the request ---------------------------------------------------------------------------------------


async def test_the_gateway_gets_json_with_e164_number_and_bearer_auth(
    channel_for: Callable[..., SmsChannel], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_SMS_TOKEN", "tok-123")
    with HttpSink() as gateway:
        channel = channel_for(f'url = "{gateway.url}"\nsender = "MSA"\nauth = {{ env = "TEST_SMS_TOKEN" }}')
        assert "tok-123" not in repr(channel)
        await channel.send(message())
    [request] = gateway.requests
    assert request.method == "POST" and request.path == "/send"
    assert request.headers["Authorization"] == "Bearer tok-123"
    assert request.headers["Content-Type"].startswith("application/json")
    body = request.json()
    assert body["to"] == "+33612345678" and body["from"] == "MSA"
    assert body["text"] == "MSA Test : votre code de sécurité est 482913, valable 15 min. Ne le communiquez à personne."


async def test_custom_headers_form_body_and_overseas_numbers(channel_for: Callable[..., SmsChannel]) -> None:
    with HttpSink() as gateway:
        channel = channel_for(
            f'url = "{gateway.url}"\nmethod = "PUT"\nauth = {{ value = "k" }}\n'
            'headers = { "X-Api-Key" = "{auth}", "X-Client" = "guichet" }\n'
            'body_format = "form"\nbody_template = "dest={to}&msg={text}"'
        )
        await channel.send(message(recipient=Recipient(mobile="0690 12 34 56")))  # Guadeloupe
    [request] = gateway.requests
    assert request.method == "PUT" and request.headers["X-Api-Key"] == "k" and "Authorization" not in request.headers
    assert request.headers["X-Client"] == "guichet"
    from urllib.parse import parse_qs

    form = parse_qs(request.body.decode())
    assert form["dest"] == ["+590690123456"] and "482913" in form["msg"][0]


def test_json_body_escapes_values_safely() -> None:
    tricky = 'il a dit "stop" \\ {to} \n fin'
    for template in ('{"to": {to}, "text": {text}, "from": {sender}}', '{"to": "{to}", "text": "{text}"}'):
        body = build_body(
            SmsSettings(url="https://x.fr", body_template=template, sender='M"SA'), "+33612345678", tricky
        )
        decoded = json.loads(body)
        assert decoded["text"] == tricky and decoded["to"] == "+33612345678"


def test_a_body_template_that_is_not_json_is_refused(channel_for: Callable[..., SmsChannel]) -> None:
    with pytest.raises(ConfigError, match="body_template"):
        channel_for('url = "https://sms.example/send"\nbody_template = "{to}: {text}"')


@pytest.mark.parametrize("mobile", [None, "01 23 45 67 89", "pas un numéro"])
async def test_no_valid_mobile_is_permanent(channel_for: Callable[..., SmsChannel], mobile: str | None) -> None:
    channel = channel_for('url = "https://sms.example/send"')
    with pytest.raises(DeliveryError, match="no valid mobile") as failed:
        await channel.send(message(recipient=Recipient(mobile=mobile)))
    assert failed.value.permanent


@pytest.mark.parametrize(
    ("status", "permanent"),
    [(400, True), (401, True), (404, True), (408, False), (429, False), (500, False), (503, False)],
)
async def test_gateway_statuses(channel_for: Callable[..., SmsChannel], status: int, permanent: bool) -> None:
    with HttpSink(script=[(status, {})]) as gateway:
        with pytest.raises(DeliveryError) as failed:
            await channel_for(f'url = "{gateway.url}"').send(message())
    assert failed.value.permanent is permanent and str(status) in str(failed.value)
    assert "482913" not in str(failed.value)


async def test_gateway_down_is_temporary(channel_for: Callable[..., SmsChannel]) -> None:
    with HttpSink() as gateway:
        url = gateway.url
    with pytest.raises(DeliveryError, match="cannot reach") as failed:
        await channel_for(f'url = "{url}"\ntimeout_seconds = 1').send(message())
    assert not failed.value.permanent


async def test_demo_url_sends_to_the_demo_endpoint(channel_for: Callable[..., SmsChannel]) -> None:
    with HttpSink() as gateway:
        demo = DemoEndpoints(smtp_host="127.0.0.1", smtp_port=1, sms_url=gateway.url, mailbox_dir="x")
        await channel_for('url = "demo"', demo=demo).send(message())
    assert len(gateway.requests) == 1
    with pytest.raises(ConfigError, match="demo mode"):
        channel_for('url = "demo"')


# --- through the outbox ----------------------------------------------------------------------------------


async def _worker_setup(
    make_config: Callable[..., CaisseConfig], database: Database, db_url: str, url: str
) -> tuple[OutboxWorker, FrozenClock, int]:
    config = make_config(
        f'[plugins.settings.delivery_sms]\nurl = "{url}"\nsender = "MSA"',
        database_url=db_url,
        base=base_with_plugins("delivery_sms"),
    )
    clock = FrozenClock(T0)
    keys = Keys.from_config(config)
    host = PluginHost(config, PluginContext(config=config, database=database, clock=clock))
    async with database.transaction():
        id = await enqueue(
            database,
            keys,
            channel="sms",
            template="login_code",
            recipient=RECIPIENT,
            payload={"code": "482913", "lifetime_minutes": 15},
            now=T0,
            expires_at=T0 + dt.timedelta(minutes=15),
        )
    return OutboxWorker(database, keys, host, clock, worker_id="sms-test"), clock, id


async def _row(database: Database, id: int) -> dict[str, Any]:
    t = database.t.OutboxMessage
    return (await t.select().where(t.id == id).run())[0]


async def test_500_then_200_is_delivered_once(
    make_config: Callable[..., CaisseConfig], database: Database, db_url: str
) -> None:
    with HttpSink(script=[(500, {})]) as gateway:
        worker, clock, id = await _worker_setup(make_config, database, db_url, gateway.url)
        assert await worker.run_once() == 1
        row = await _row(database, id)
        assert row["state"] == PENDING and "answered 500" in row["last_error"]
        clock._now = row["next_attempt_at"]
        assert await worker.run_once() == 1
        clock.advance(hours=1)
        assert await worker.run_once() == 0
    assert len(gateway.requests) == 2 and all(r.json()["to"] == "+33612345678" for r in gateway.requests)
    row = await _row(database, id)
    assert row["state"] == SENT and row["attempts"] == 2 and row["sealed"] == ""


async def test_429_retry_after_is_honoured(
    make_config: Callable[..., CaisseConfig], database: Database, db_url: str
) -> None:
    with HttpSink(script=[(429, {"Retry-After": "120"})]) as gateway:
        worker, clock, id = await _worker_setup(make_config, database, db_url, gateway.url)
        assert await worker.run_once() == 1
        row = await _row(database, id)
        assert row["state"] == PENDING and row["next_attempt_at"] == T0 + dt.timedelta(seconds=120)
        clock.advance(seconds=119)
        assert await worker.run_once() == 0
        clock.advance(seconds=1)
        assert await worker.run_once() == 1
    assert len(gateway.requests) == 2 and (await _row(database, id))["state"] == SENT


async def test_a_refusal_is_recorded_as_failed(
    make_config: Callable[..., CaisseConfig], database: Database, db_url: str
) -> None:
    with HttpSink(script=[(422, {})]) as gateway:
        worker, _clock, id = await _worker_setup(make_config, database, db_url, gateway.url)
        assert await worker.run_once() == 1
    row = await _row(database, id)
    assert row["state"] == FAILED and row["last_error"] == "the SMS gateway refused the message: 422"


def test_hook_guichet_channels_sms_direct_and_through_the_host(make_config: Callable[..., CaisseConfig]) -> None:
    config = make_config(
        '[plugins.settings.delivery_sms]\nurl = "https://sms.example/send"', base=base_with_plugins("delivery_sms")
    )
    context = PluginContext(config=config, database=None, clock=FrozenClock(T0))  # type: ignore[arg-type]
    [direct] = hooks.guichet_channels(context=context)
    assert direct.name == "sms" and direct.label_fr == "par SMS"
    host = PluginHost(config, context)
    assert isinstance(host.channel("sms"), SmsChannel) and set(host.channels()) == {"sms"}
    bad = make_config('[plugins.settings.delivery_sms]\nurl = "ftp://x"', base=base_with_plugins("delivery_sms"))
    with pytest.raises(ConfigError, match=r"plugins\.settings\.delivery_sms\.url"):
        PluginHost(bad, PluginContext(config=bad, database=None, clock=FrozenClock(T0)))  # type: ignore[arg-type]


# --- nothing billed twice: a stable idempotency key, bounded retries when the outcome is unknown ------


async def _outbox_sms(
    make_config: Callable[..., CaisseConfig], database: Database, db_url: str, url: str, settings: str = ""
) -> tuple[OutboxWorker, FrozenClock, int]:
    config = make_config(
        f'[plugins.settings.delivery_sms]\nurl = "{url}"\nsender = "MSA"\n{settings}',
        database_url=db_url,
        base=base_with_plugins("delivery_sms"),
    )
    clock = FrozenClock(T0)
    keys = Keys.from_config(config)
    host = PluginHost(config, PluginContext(config=config, database=database, clock=clock))
    async with database.transaction():
        id = await enqueue(
            database,
            keys,
            channel="sms",
            template="login_code",
            recipient=RECIPIENT,
            payload={"code": "482913", "lifetime_minutes": 15},
            now=T0,
            expires_at=T0 + dt.timedelta(days=1),
        )
    return OutboxWorker(database, keys, host, clock, worker_id="sms-test"), clock, id


async def _attempts(worker: OutboxWorker, clock: FrozenClock, database: Database, id: int, most: int) -> dict[str, Any]:
    """Run the worker at each retry's due time until the message is final (or ``most`` attempts)."""
    for _ in range(most):
        assert await worker.run_once() == 1
        row = await _row(database, id)
        if row["state"] != PENDING:
            return row
        clock._now = row["next_attempt_at"]
    return await _row(database, id)


async def test_every_attempt_carries_the_same_idempotency_key(
    make_config: Callable[..., CaisseConfig], database: Database, db_url: str
) -> None:
    from guichet.core.outbox import delivery_key

    with HttpSink(script=[(503, {}), (500, {})]) as gateway:
        worker, clock, id = await _outbox_sms(make_config, database, db_url, gateway.url)
        row = await _attempts(worker, clock, database, id, most=5)
    assert row["state"] == SENT and len(gateway.requests) == 3
    keys = {r.headers.get("Idempotency-Key") for r in gateway.requests}
    assert keys == {f"test-{id}-{int(T0.timestamp() * 1000)}"}
    sent = message(id=id)
    assert delivery_key("test", sent) == keys.pop()  # the caisse, the id, the creation time: never the content


async def test_the_idempotency_header_name_is_configurable(channel_for: Callable[..., SmsChannel]) -> None:
    with HttpSink() as gateway:
        await channel_for(f'url = "{gateway.url}"\nidempotency_header = "X-Request-Id"').send(message(id=41))
        await channel_for(f'url = "{gateway.url}"\nidempotency_header = ""').send(message(id=42))
    first, second = gateway.requests
    assert first.headers["X-Request-Id"] == f"test-41-{int(T0.timestamp() * 1000)}"
    assert "Idempotency-Key" not in first.headers and "X-Request-Id" not in second.headers
    assert "Idempotency-Key" not in second.headers


@pytest.mark.parametrize("then", [1.0, "drop"], ids=["timeout-after-sending", "connection-dropped-after-sending"])
async def test_an_unknown_outcome_is_retried_twice_then_failed(
    make_config: Callable[..., CaisseConfig], database: Database, db_url: str, then: Any
) -> None:
    """The gateway got the request each time and may have sent the SMS: 3 requests at most, not 10."""
    with HttpSink(always=(200, {}, then)) as gateway:
        worker, clock, id = await _outbox_sms(make_config, database, db_url, gateway.url, "timeout_seconds = 0.3")
        row = await _attempts(worker, clock, database, id, most=12)
    assert row["state"] == FAILED, row["last_error"]
    assert len(gateway.requests) == 3 and row["unknown_outcomes"] == 2
    assert row["last_error"].startswith("outcome unknown 3 times, not sent again (it may have been delivered)")
    assert len({r.headers["Idempotency-Key"] for r in gateway.requests}) == 1
    assert row["sealed"] != ""  # kept for `guichet outbox retry` once the gateway is checked


async def test_a_gateway_that_honours_the_key_texts_the_phone_once(
    make_config: Callable[..., CaisseConfig], database: Database, db_url: str
) -> None:
    """The gateway sends the SMS, then answers too late twice; the retries carry the same key, and it
    answers them without sending again."""
    with HttpSink(script=[(200, {}, 1.0), (200, {}, 1.0)], honour_key="Idempotency-Key") as gateway:
        worker, clock, id = await _outbox_sms(make_config, database, db_url, gateway.url, "timeout_seconds = 0.3")
        row = await _attempts(worker, clock, database, id, most=5)
    assert row["state"] == SENT and len(gateway.requests) == 3 and len(gateway.delivered) == 1


async def test_a_gateway_never_reached_is_retried_as_usual(
    make_config: Callable[..., CaisseConfig], database: Database, db_url: str
) -> None:
    """Nothing was sent: no doubt, so the usual 10 attempts."""
    worker, clock, id = await _outbox_sms(make_config, database, db_url, "http://127.0.0.1:9/sms")
    row = await _attempts(worker, clock, database, id, most=12)
    assert row["state"] == FAILED and row["attempts"] == 10 and row["unknown_outcomes"] == 0
    assert row["last_error"].startswith("gave up after 10 attempts")


async def test_channel_errors_tell_a_request_never_sent_from_one_whose_outcome_is_unknown(
    channel_for: Callable[..., SmsChannel],
) -> None:
    with pytest.raises(DeliveryError) as refused:
        await channel_for('url = "http://127.0.0.1:9/sms"').send(message())
    assert not refused.value.outcome_unknown and not refused.value.permanent
    with HttpSink(always=(200, {}, "drop")) as gateway, pytest.raises(DeliveryError) as dropped:
        await channel_for(f'url = "{gateway.url}"').send(message())
    assert dropped.value.outcome_unknown and not dropped.value.permanent
    with HttpSink(always=(200, {}, 1.0)) as gateway, pytest.raises(DeliveryError) as late:
        await channel_for(f'url = "{gateway.url}"\ntimeout_seconds = 0.3').send(message())
    assert late.value.outcome_unknown and str(late.value) == "the SMS gateway did not answer in time (outcome unknown)"
