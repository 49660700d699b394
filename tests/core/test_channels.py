"""Channels by capability: a channel with a name of its own is chosen by config, and a config whose
purposes cannot be served refuses to start (``guichet serve``, the outbox worker, ``guichet config check``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from guichet.core.channels import carries, destination_fr
from guichet.core.clock import FrozenClock
from guichet.core.config import CaisseConfig
from guichet.core.context import PluginContext
from guichet.core.errors import ConfigError
from guichet.core.plugins import PluginHost
from guichet.core.structs import CODE, LETTER, NOTICE, PASSWORD, Recipient
from tests.conftest import portal_config_text

# a channel of its own: it reaches people by a kind of address its registry connector provides
MESSAGING = """
from guichet.core import CODE, PASSWORD, hookimpl

class MessagingChannel:
    name = "messagerie"
    label_fr = "dans votre messagerie MSA"
    reaches = "msa_inbox"
    carries = frozenset({CODE, PASSWORD})

    def destination_fr(self, recipient):
        return "votre messagerie sécurisée" if recipient.addresses.get("msa_inbox") else ""

    async def send(self, message):
        pass

@hookimpl
def guichet_channels(context):
    return [MessagingChannel()]
"""
NO_REACH = """
from guichet.core import hookimpl

class Vague:
    name = "vague"
    label_fr = "quelque part"

    async def send(self, message):
        pass

@hookimpl
def guichet_channels(context):
    return [Vague()]
"""


@pytest.fixture
def config_with(make_config: Callable[..., CaisseConfig], tmp_path: Path) -> Callable[..., CaisseConfig]:
    def factory(extra: str = "", *, plugins: tuple[str, ...] = ()) -> CaisseConfig:
        base = portal_config_text()
        if plugins:
            base = base.replace('"password_msa"]', '"password_msa", ' + ", ".join(f'"{p}"' for p in plugins) + "]")
        return make_config(extra, base=base)

    return factory


def host_for(config: CaisseConfig) -> PluginHost:
    return PluginHost(config, PluginContext(config=config, database=None, clock=FrozenClock()))  # type: ignore[arg-type]


def refusal(config: CaisseConfig) -> str:
    with pytest.raises(ConfigError) as refused:
        host_for(config).check_deliveries()
    return str(refused.value)


def test_the_shipped_channels_declare_what_they_reach_and_carry(config_with: Callable[..., CaisseConfig]) -> None:
    host = host_for(config_with())
    host.check_deliveries()
    email, sms, postal = (host.channel(n) for n in ("email", "sms", "postal"))
    assert email is not None and sms is not None and postal is not None
    assert (email.reaches, sms.reaches, postal.reaches) == ("email", "mobile", "postal")
    assert carries(postal) == {PASSWORD, LETTER} and CODE in carries(sms) and NOTICE in carries(email)
    recipient = Recipient(email="julien.lefebvre@demo.invalid", mobile="+33600000101")
    assert destination_fr(email, recipient) == "j…e@demo.invalid"
    assert destination_fr(sms, recipient) == "06 xx xx xx 01"
    assert [c.name for c in host.channels_for("login")] == ["email", "sms"]
    assert [c.name for c in host.channels_for("recovery")] == ["email", "sms"]


def test_a_channel_of_its_own_serves_login_and_recovery(
    config_with: Callable[..., CaisseConfig], installed_plugin: Callable[[str, str], None]
) -> None:
    installed_plugin("messagerie_msa", MESSAGING)
    config = config_with(
        '[codes.login]\nchannels = ["messagerie", "email"]\n[codes.recovery]\nchannels = ["messagerie"]\n',
        plugins=("messagerie_msa",),
    )
    host = host_for(config)
    host.check_deliveries()
    [messaging, email] = host.channels_for("login")
    assert (messaging.name, messaging.label_fr, email.name) == ("messagerie", "dans votre messagerie MSA", "email")
    assert [c.name for c in host.channels_for("recovery")] == ["messagerie"]
    assert destination_fr(messaging, Recipient(addresses={"msa_inbox": "BAL-123"})) == "votre messagerie sécurisée"
    assert Recipient(addresses={"msa_inbox": "BAL-123"}).reachable_by("msa_inbox")


def test_an_unknown_channel_name_is_refused_with_the_loaded_ones(config_with: Callable[..., CaisseConfig]) -> None:
    message = refusal(config_with('[codes.login]\nchannels = ["webhook"]\n'))
    assert (
        "test.toml: $.codes.login.channels: login lists the channel 'webhook', which no enabled plugin offers"
        in message
    )
    assert "loaded channels: email, postal, sms" in message


def test_a_channel_that_cannot_carry_a_code_is_refused(config_with: Callable[..., CaisseConfig]) -> None:
    message = refusal(config_with('[codes.login]\nchannels = ["postal"]\n'))
    assert "$.codes.login.channels: login lists the channel 'postal', which cannot carry a security code" in message


def test_registration_codes_go_to_a_typed_address(
    config_with: Callable[..., CaisseConfig], installed_plugin: Callable[[str, str], None]
) -> None:
    installed_plugin("messagerie_msa", MESSAGING)
    message = refusal(config_with('[codes.registration]\nchannels = ["messagerie"]\n', plugins=("messagerie_msa",)))
    assert "registration lists the channel 'messagerie', which reaches 'msa_inbox' addresses" in message


def test_without_a_postal_channel_registration_cannot_serve(make_config: Callable[..., CaisseConfig]) -> None:
    config = make_config(base=portal_config_text().replace('"delivery_postal", ', ""))
    message = refusal(config)
    assert (
        "$.plugins.enabled: registration sends the temporary password after a wrong or missing identity "
        "answer and the registration confirmation letter by post" in message
    )


def test_a_purpose_with_no_channel_at_all_cannot_serve(make_config: Callable[..., CaisseConfig]) -> None:
    message = refusal(make_config())  # no delivery plugin at all
    assert (
        "$.codes.login.channels: login has no channel that can carry a security code; listed: email, sms; "
        "loaded channels: none" in message
    )


def test_a_lifetime_for_an_unknown_channel_is_refused(config_with: Callable[..., CaisseConfig]) -> None:
    message = refusal(config_with("[passwords.temporary_lifetime_hours]\npigeon = 3\n"))
    assert "$.passwords.temporary_lifetime_hours: no enabled channel is named 'pigeon'" in message


def test_a_channel_that_does_not_say_what_it_reaches_is_refused_at_load(
    config_with: Callable[..., CaisseConfig], installed_plugin: Callable[[str, str], None]
) -> None:
    installed_plugin("vague", NO_REACH)
    with pytest.raises(ConfigError) as refused:
        host_for(config_with(plugins=("vague",)))
    assert "plugin 'vague': the channel 'vague' lacks reaches (a non-empty string)" in str(refused.value)


def test_serve_and_config_check_refuse_a_config_that_cannot_serve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from guichet.cli import main

    text = portal_config_text('[codes.login]\nchannels = ["webhook"]\n').replace("[server]\n", "[server]\nport = 1\n")
    path = tmp_path / "caisse.toml"
    path.write_text(text + f'\n[database]\nurl = "sqlite:///{tmp_path / "x.sqlite"}"\n')
    assert main(["config", "check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "Ready to serve: no" in out and "login lists the channel 'webhook', which no enabled plugin offers" in out
    assert main(["serve", "--config", str(path)]) == 2
    assert "login lists the channel 'webhook'" in capsys.readouterr().err


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], None]:
    """A third-party plugin module made importable and registered under the entry point group."""

    def install(name: str, source: str) -> None:
        folder = tmp_path / "site"
        folder.mkdir(exist_ok=True)
        (folder / f"{name}_plugin.py").write_text(source)
        info = folder / f"{name}_plugin-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}-plugin\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[guichet]\n{name} = {name}_plugin\n")
        monkeypatch.syspath_prepend(str(folder))

    return install
