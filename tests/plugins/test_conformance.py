"""The test kit's conformance checks: every built-in plugin and the webhook example pass them, and each check
fails, with its reason, on a plugin or a channel that breaks the rule it checks."""

from __future__ import annotations

import email.policy
import importlib
from collections.abc import Callable
from email.parser import BytesParser
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from guichet.core import DeliveryError, Message, PostalAddress, Recipient
from guichet.core.channels import TEMPLATE_CARRIES
from guichet.core.config import CaisseConfig
from guichet.core.plugins import BUILTIN_PLUGINS, PluginHost
from guichet.testing import (
    HttpSink,
    PluginSite,
    SmtpSink,
    assert_channel_conforms,
    assert_plugin_conforms,
)

PERSON = Recipient(
    name="Marie DUPONT",
    email="marie.dupont@exemple.fr",
    mobile="06 12 34 56 78",
    address=PostalAddress(lines=("12 chemin des Écoliers", "40000 MONT-DE-MARSAN")),
    addresses={"identifier": "2920633123045"},
)
SMTP_PASSWORD = "smtp-password-for-tests-7c1f"
SMS_TOKEN = "sms-gateway-token-for-tests-91aa"
WEBHOOK_SECRET = "webhook-shared-secret-for-tests"
SETTINGS = {
    "delivery_email": '[plugins.settings.delivery_email]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
    'sender = "MSA Test <ne-pas-repondre@test.invalid>"\nusername = "guichet"\n'
    f'password = {{{{ value = "{SMTP_PASSWORD}" }}}}\ntimeout_seconds = 5\n',
    "delivery_sms": f'[plugins.settings.delivery_sms]\nurl = "{{url}}"\nauth = {{{{ value = "{SMS_TOKEN}" }}}}\n'
    "timeout_seconds = 5\n",
    "delivery_postal": '[plugins.settings.delivery_postal]\nspool_dir = "{spool}"\n',
}


# --- every built-in plugin, and the example, conform ------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BUILTIN_PLUGINS))
def test_every_built_in_plugin_conforms(name: str, guichet_config: Callable[..., CaisseConfig]) -> None:
    settings = SETTINGS.get(name, "").format(port=2525, url="http://127.0.0.1:9/sms", spool="spool")
    info = assert_plugin_conforms(name, config=guichet_config(settings, enabled=[name]) if settings else None)
    assert info.name == name and info.source == "builtin" and info.hooks
    module = importlib.import_module(BUILTIN_PLUGINS[name])
    assert assert_plugin_conforms(module, config=guichet_config(settings, enabled=[name]) if settings else None) == info


def test_the_webhook_example_conforms(webhook_example: Path, guichet_config: Callable[..., CaisseConfig]) -> None:
    config = guichet_config(
        f'[plugins.settings.webhook]\nurl = "http://127.0.0.1:9/x"\nsecret = {{ value = "{WEBHOOK_SECRET}" }}\n',
        enabled=["webhook"],
    )
    info = assert_plugin_conforms("webhook", config=config)
    assert info.source.startswith("guichet-webhook-channel ") and info.hooks == ("guichet_channels",)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # loopback only
async def test_the_email_channel_conforms(guichet_host: Callable[..., PluginHost]) -> None:
    with (
        SmtpSink(credentials=("guichet", SMTP_PASSWORD)) as smtp,
        SmtpSink(credentials=("guichet", SMTP_PASSWORD), data_reply="451 4.3.0 try later") as busy,
    ):
        channel = guichet_host(SETTINGS["delivery_email"].format(port=smtp.port), enabled=["delivery_email"]).channel(
            "email"
        )
        failing = guichet_host(SETTINGS["delivery_email"].format(port=busy.port), enabled=["delivery_email"]).channel(
            "email"
        )
        assert channel is not None and failing is not None
        sent = await assert_channel_conforms(channel, PERSON, failing=failing, secrets=[SMTP_PASSWORD])
    # one email per template the channel carries, each to the person, each logged in with the secret
    assert len(sent) == len(smtp.messages) == len(TEMPLATE_CARRIES) and smtp.logins == ["guichet"] * len(sent)
    subjects = [BytesParser(policy=email.policy.default).parsebytes(m.content)["Subject"] for m in smtp.messages]
    assert all(subjects) and {tuple(m.rcpt_tos) for m in smtp.messages} == {("marie.dupont@exemple.fr",)}


async def test_the_sms_channel_conforms(guichet_host: Callable[..., PluginHost]) -> None:
    with HttpSink() as gateway, HttpSink(always=(503, {"Retry-After": "30"})) as down:
        channel = guichet_host(SETTINGS["delivery_sms"].format(url=gateway.url), enabled=["delivery_sms"]).channel(
            "sms"
        )
        failing = guichet_host(SETTINGS["delivery_sms"].format(url=down.url), enabled=["delivery_sms"]).channel("sms")
        assert channel is not None and failing is not None
        sent = await assert_channel_conforms(channel, PERSON, failing=failing, secrets=[SMS_TOKEN])
    assert [m.template for m in sent] == [t for t, what in TEMPLATE_CARRIES.items() if what != "letter"]
    assert len(gateway.requests) == len(sent) and len(down.requests) == 1
    assert {r.json()["to"] for r in gateway.requests} == {"+33612345678"}
    assert {r.headers["Authorization"] for r in gateway.requests} == {f"Bearer {SMS_TOKEN}"}


async def test_the_postal_channel_conforms(guichet_host: Callable[..., PluginHost], tmp_path: Path) -> None:
    (tmp_path / "not-a-folder").write_text("")  # the spool cannot be written: a temporary failure
    channel = guichet_host(SETTINGS["delivery_postal"].format(spool="spool"), enabled=["delivery_postal"]).channel(
        "postal"
    )
    failing = guichet_host(
        SETTINGS["delivery_postal"].format(spool="not-a-folder/spool"), enabled=["delivery_postal"]
    ).channel("postal")
    assert channel is not None and failing is not None
    sent = await assert_channel_conforms(channel, PERSON, failing=failing)
    assert [m.template for m in sent] == [
        "temporary_password",
        "registration_letter",
        "third_party_password",
        "third_party_rejected_letter",
        "account_closed_letter",
        "recovery_codes_letter",
    ]
    assert {p.name for p in (tmp_path / "spool").glob("*.pdf")} == {f"letter-{m.id}.pdf" for m in sent}


async def test_the_webhook_example_channel_conforms(
    webhook_example: Path, guichet_host: Callable[..., PluginHost]
) -> None:
    settings = f'[plugins.settings.webhook]\nurl = "{{url}}"\nsecret = {{{{ value = "{WEBHOOK_SECRET}" }}}}\n'
    with HttpSink() as receiver, HttpSink(always=(500, {})) as broken:
        channel = guichet_host(settings.format(url=receiver.url), enabled=["webhook"]).channel("webhook")
        failing = guichet_host(settings.format(url=broken.url), enabled=["webhook"]).channel("webhook")
        assert channel is not None and failing is not None
        sent = await assert_channel_conforms(channel, PERSON, failing=failing, secrets=[WEBHOOK_SECRET])
    assert [r.json()["template"] for r in receiver.requests] == [m.template for m in sent]


# --- each channel check fails on the channel that breaks it ----------------------------------------------


class Courier:
    """A channel whose faults each test switches on."""

    name = "courier"
    label_fr = "par coursier"
    reaches = "email"

    def __init__(self, *, fault: str = "", secret: str = "") -> None:
        self.fault = fault
        self.secret = secret
        self.sent: list[Message] = []

    def __repr__(self) -> str:
        return f"Courier({self.secret})" if self.fault == "repr" else "Courier()"

    async def send(self, message: Message) -> None:
        if self.fault == "down":
            raise DeliveryError(
                f"courier down while sending {message.payload['code']}"
                if message.payload.get("code")
                else "courier down",
                permanent=False,
            )
        if self.fault == "crash":
            raise RuntimeError("boom")
        if not message.recipient.email:
            if self.fault == "lenient":
                return
            raise DeliveryError(
                "the recipient has no email address"
                + (f" ({message.recipient.name})" if self.fault == "chatty" else ""),
                permanent=self.fault != "temporary",
            )
        if self.fault == "template" and message.template == "password_reset_notice":
            raise DeliveryError("no courier template 'password_reset_notice'", permanent=True)
        self.sent.append(message)


@pytest.mark.parametrize(
    ("channel", "failing", "reason"),
    [
        (Courier(), None, None),
        (Courier(fault="lenient"), None, "accepted a message for a recipient without a 'email' address"),
        (Courier(fault="temporary"), None, "a recipient without a 'email' address can never be reached"),
        (
            Courier(fault="template"),
            None,
            "refused a password_reset_notice message (notice) for a recipient it reaches",
        ),
        (Courier(fault="repr", secret="s3cret-value"), None, "shows a secret in its repr"),
        (Courier(), Courier(fault="down"), "a failing server: the DeliveryError's reason shows a payload value"),
        (Courier(), Courier(fault="crash"), "a failing server made send() raise RuntimeError"),
        (Courier(), Courier(), "send() returned through a failing server"),
    ],
)
async def test_the_channel_check_fails_on_a_broken_channel(
    channel: Courier, failing: Courier | None, reason: str | None
) -> None:
    if reason is None:
        sent = await assert_channel_conforms(channel, PERSON, secrets=["s3cret-value"])
        assert channel.sent == sent and len(sent) == sum(w != "letter" for w in TEMPLATE_CARRIES.values())
        return
    with pytest.raises(AssertionError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        await assert_channel_conforms(channel, PERSON, failing=failing, secrets=["s3cret-value"])


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"name": "Courier"}, "the channel name 'Courier' is what a caisse writes in its TOML"),
        ({"label_fr": ""}, "lacks label_fr"),
        ({"carries": frozenset({"parcel"})}, "lacks carries"),
        ({"carries": frozenset()}, "carries nothing core sends"),
    ],
)
async def test_the_channel_check_fails_on_wrong_attributes(change: dict[str, Any], reason: str) -> None:
    channel = Courier()
    for attribute, value in change.items():
        setattr(channel, attribute, value)
    with pytest.raises(AssertionError, match=reason):
        await assert_channel_conforms(channel, PERSON)


async def test_the_channel_check_needs_a_recipient_the_channel_reaches() -> None:
    with pytest.raises(AssertionError, match="the recipient given has no 'email' address"):
        await assert_channel_conforms(Courier(), Recipient(name="Marie DUPONT", mobile="0612345678"))


async def test_a_chatty_refusal_is_caught() -> None:
    """The unreachable recipient keeps its name: a reason that repeats it shows who the message was for."""
    with pytest.raises(AssertionError, match="shows a payload value, an address or a secret"):
        await assert_channel_conforms(
            Courier(fault="chatty"), Recipient(name="Marie DUPONT-LAFARGUE", email="marie@exemple.fr")
        )


# --- each plugin check fails on the plugin that breaks it -------------------------------------------------

GOOD = """
from guichet.core import Status, hookimpl

@hookimpl
def guichet_statuses() -> list[Status]:
    return [Status(code="marin", label_fr="Marin pêcheur")]
"""


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        (GOOD, None),
        ("from guichet.core import hookimpl\n\ndef helper() -> None:\n    pass\n", "implements no hook"),
        (
            GOOD.replace("def guichet_statuses", "def guichet_statuse"),
            "has no hook 'guichet_statuse'; did you mean guichet_statuses?",
        ),
        (
            GOOD.replace("def guichet_statuses", "async def guichet_statuses"),
            "is async: hook implementations are plain def",
        ),
        (GOOD.replace("() -> list[Status]:", "():"), "no type for the return"),
        (GOOD.replace("() -> list[Status]", "(context) -> list[Status]"), "no type for context"),
        (
            GOOD.replace("() -> list[Status]", "(colour: str) -> list[Status]"),
            "takes colour, which guichet_statuses does not pass",
        ),
        (GOOD.replace("@hookimpl\n", ""), "guichet_statuses is not marked with @hookimpl: guichet never calls it"),
        (
            GOOD + "\nfrom guichet.core.defaults import guichet_password_rules\n",
            "guichet_password_rules is guichet.core.defaults's own implementation, imported into the plugin",
        ),
        (GOOD + "\nfrom guichet.core import defaults\n", None),
        (
            GOOD
            + "\n@hookimpl\ndef guichet_code_policy(purpose: str, caisse: object) -> object:\n    raise RuntimeError\n",
            "marins does not load through the plugin host: plugin '[a-z,]*marins' failed in guichet_code_policy: "
            "RuntimeError",
        ),
    ],
)
def test_the_plugin_check_fails_on_a_broken_plugin(
    source: str, reason: str | None, guichet_plugin_site: PluginSite
) -> None:
    package = guichet_plugin_site.add_module("marins", source)
    if reason is None:
        info = assert_plugin_conforms("marins")
        assert (info.name, info.module, info.hooks) == ("marins", f"{package}.hooks", ("guichet_statuses",))
        return
    with pytest.raises(AssertionError, match=reason.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        assert_plugin_conforms("marins")


def test_a_plugin_nobody_can_enable_is_refused(guichet_plugin_site: PluginSite) -> None:
    with pytest.raises(AssertionError, match="no plugin named 'marin': neither built in nor an entry point"):
        assert_plugin_conforms("marin")
    orphan = ModuleType("guichet_orphan")
    with pytest.raises(AssertionError, match=r"no entry point in the group 'guichet' names guichet_orphan: declare it"):
        assert_plugin_conforms(orphan)


def test_a_plugin_of_a_retired_hook_fails_unless_allowed(
    guichet_plugin_site: PluginSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    from guichet.core import hookspecs
    from guichet.core.errors import hook_deprecation

    @hookspecs.hookspec(
        warn_on_impl=hook_deprecation(
            "guichet_greeting", since="1.1", removed_in="2.0", instead="implement guichet_statuses"
        )
    )
    def guichet_greeting() -> list[str]:
        raise NotImplementedError

    monkeypatch.setattr(hookspecs, "guichet_greeting", guichet_greeting, raising=False)
    guichet_plugin_site.add_module(
        "greeter", GOOD + "\n@hookimpl\ndef guichet_greeting() -> list[str]:\n    return ['bonjour']\n"
    )
    with pytest.raises(AssertionError, match="guichet_greeting is deprecated since guichet hook API 1.1"):
        assert_plugin_conforms("greeter")
    assert assert_plugin_conforms("greeter", allow_deprecated=True).hooks == ("guichet_greeting", "guichet_statuses")


def test_a_config_that_does_not_enable_the_plugin_is_refused(guichet_config: Callable[..., CaisseConfig]) -> None:
    with pytest.raises(AssertionError, match="the config given does not enable 'statuses_msa'"):
        assert_plugin_conforms("statuses_msa", config=guichet_config(enabled=["password_msa"]))
