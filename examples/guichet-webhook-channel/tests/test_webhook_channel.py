"""guichet-webhook-channel's own tests, as its CI runs them: guichet's test kit only (the ``guichet``
pytest plugin's fixtures and ``guichet.testing``), real local HTTP receivers, the plugin found by the
entry point this distribution declares (``pip install -e .`` first)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from guichet.core import ConfigError, DeliveryError, Recipient
from guichet.testing import DEFAULT_PLUGINS, HttpSink, assert_channel_conforms, assert_plugin_conforms, sample_message

SECRET = "webhook-shared-secret-for-tests"
NIR = "1850578006084"
MARIE = Recipient(
    name="Marie DUPONT", email="marie.dupont@exemple.fr", mobile="+33612345678", addresses={"identifier": NIR}
)


def settings(url: str, **extra: str) -> str:
    """The caisse's [plugins.settings.webhook] table."""
    lines = "".join(f"{key} = {json.dumps(value, ensure_ascii=False)}\n" for key, value in extra.items())
    return f'[plugins.settings.webhook]\nurl = "{url}"\nsecret = {{ value = "{SECRET}" }}\n{lines}'


def verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """The receiver's check, exactly as the README gives it."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    timestamp = int(fields["t"])
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return abs(time.time() - timestamp) <= tolerance and hmac.compare_digest(expected, fields["v1"])


def test_the_plugin_conforms(guichet_config: Callable[..., Any]) -> None:
    info = assert_plugin_conforms(
        "webhook", config=guichet_config(settings("http://127.0.0.1:9/x"), enabled=["webhook"])
    )
    assert info.source.startswith("guichet-webhook-channel ") and info.module == "guichet_webhook.hooks"
    assert info.hooks == ("guichet_channels",)


async def test_the_channel_conforms_and_the_receiver_can_trust_what_arrives(guichet_host: Callable[..., Any]) -> None:
    with HttpSink() as receiver, HttpSink(always=(503, {"Retry-After": "30"})) as down:
        channel = guichet_host(settings(receiver.url), enabled=["webhook"]).channel("webhook")
        failing = guichet_host(settings(down.url), enabled=["webhook"]).channel("webhook")
        sent = await assert_channel_conforms(channel, MARIE, failing=failing, secrets=[SECRET])
    assert len(receiver.requests) == len(sent) and len(down.requests) == 1
    assert {m.template for m in sent} >= {"login_code", "recovery_code", "temporary_password"}
    for message, request in zip(sent, receiver.requests, strict=True):
        assert request.method == "POST" and request.headers["Content-Type"] == "application/json"
        assert verify(SECRET, request.headers["X-Guichet-Signature"], request.body)
        assert not verify("another-secret", request.headers["X-Guichet-Signature"], request.body)
        assert not verify(
            SECRET, request.headers["X-Guichet-Signature"], request.body.replace(b'"template"', b'"templatE"')
        )
        document = request.json()
        assert document["id"] == message.id and document["template"] == message.template
        assert document["caisse"] == "test" and document["payload"] == json.loads(json.dumps(message.payload))
        assert request.headers["Idempotency-Key"].startswith(f"test-{message.id}-")
    assert len({r.headers["Idempotency-Key"] for r in receiver.requests}) == len(sent)


async def test_a_retry_carries_the_same_idempotency_key(guichet_host: Callable[..., Any]) -> None:
    with HttpSink(script=[(503, {"Retry-After": "30"})]) as receiver:
        channel = guichet_host(settings(receiver.url), enabled=["webhook"]).channel("webhook")
        message = sample_message("login_code", MARIE, channel="webhook", id=42)
        with pytest.raises(DeliveryError) as refused:
            await channel.send(message)
        assert not refused.value.permanent and refused.value.retry_after == 30
        assert str(refused.value) == "webhook answered 503"
        await channel.send(message)
    first, second = receiver.requests
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]


@pytest.mark.parametrize(
    ("answer", "permanent"),
    [
        ((400, {}), True),
        ((404, {}), True),
        ((410, {}), True),
        ((408, {}), False),
        ((429, {}), False),
        ((500, {}), False),
    ],
)
async def test_what_the_receiver_answers_decides_whether_guichet_retries(
    guichet_host: Callable[..., Any], answer: tuple[int, dict[str, str]], permanent: bool
) -> None:
    with HttpSink(always=answer) as receiver:
        channel = guichet_host(settings(receiver.url), enabled=["webhook"]).channel("webhook")
        with pytest.raises(DeliveryError) as refused:
            await channel.send(sample_message("recovery_code", MARIE, channel="webhook"))
    assert refused.value.permanent is permanent and str(answer[0]) in str(refused.value)


async def test_a_receiver_that_does_not_answer_in_time_is_retried_later(guichet_host: Callable[..., Any]) -> None:
    with HttpSink(script=[(200, {}, 2)]) as slow:
        channel = guichet_host(settings(slow.url, timeout_seconds=0.3), enabled=["webhook"]).channel("webhook")
        message = sample_message("login_code", MARIE, channel="webhook")
        with pytest.raises(DeliveryError) as refused:
            await channel.send(message)
    assert not refused.value.permanent and "timeout" in str(refused.value).lower()
    assert message.payload["code"] not in str(refused.value)


async def test_the_message_carries_only_the_address_the_channel_reaches(guichet_host: Callable[..., Any]) -> None:
    """The outbox narrows the recipient (``Recipient.only``) before a channel sees it: the body then
    holds the NIR the secure messaging files the message under, and no email or mobile."""
    with HttpSink() as receiver:
        channel = guichet_host(settings(receiver.url), enabled=["webhook"]).channel("webhook")
        await channel.send(sample_message("login_code", MARIE.only(channel.reaches), channel="webhook"))
    [request] = receiver.requests
    recipient = request.json()["recipient"]
    assert recipient["addresses"] == {"identifier": NIR} and recipient["email"] is None and recipient["mobile"] is None


# --- a channel of its own name, chosen by the caisse for its login and recovery codes ---------------------

MESSAGERIE = dict(
    channel="messagerie", label_fr="dans votre messagerie MSA", destination_fr="votre messagerie sécurisée MSA"
)
CODES = """
[codes.login]
channels = ["messagerie"]

[codes.recovery]
channels = ["messagerie"]
"""


def test_a_caisse_chooses_the_channel_by_its_own_name_for_the_login_and_recovery_codes(
    guichet_host: Callable[..., Any],
) -> None:
    host = guichet_host(settings("http://127.0.0.1:9/x", **MESSAGERIE) + CODES, enabled=[*DEFAULT_PLUGINS, "webhook"])
    channel = host.channel("messagerie")
    assert channel is not None and host.channel("webhook") is None
    assert channel.label_fr == "dans votre messagerie MSA" and channel.reaches == "identifier"
    assert host.channels_for("login") == [channel] and host.channels_for("recovery") == [channel]
    assert channel.destination_fr(MARIE) == "votre messagerie sécurisée MSA"
    assert channel.destination_fr(Recipient(name="Marie DUPONT", email="m@exemple.fr")) == ""


def test_a_caisse_that_misspells_the_channel_is_told_which_exist(guichet_host: Callable[..., Any]) -> None:
    host = guichet_host(
        settings("http://127.0.0.1:9/x", **MESSAGERIE) + CODES.replace('["messagerie"]', '["messagrie"]', 1),
        enabled=[*DEFAULT_PLUGINS, "webhook"],
    )
    with pytest.raises(ConfigError) as refused:
        host.check_deliveries()
    assert "'messagrie'" in str(refused.value) and "messagerie" in str(refused.value).split("loaded channels:")[1]


def test_the_settings_refuse_what_cannot_work(guichet_host: Callable[..., Any]) -> None:
    with pytest.raises(ConfigError, match="url"):
        guichet_host(settings("ftp://partenaire.example/x"), enabled=["webhook"])
    with pytest.raises(ConfigError, match="channel"):
        guichet_host(settings("http://127.0.0.1:9/x", channel="Messagerie sécurisée"), enabled=["webhook"])


def test_the_secret_is_never_shown(guichet_host: Callable[..., Any]) -> None:
    channel = guichet_host(settings("http://127.0.0.1:9/x"), enabled=["webhook"]).channel("webhook")
    assert SECRET not in repr(channel) and SECRET not in str(channel)
