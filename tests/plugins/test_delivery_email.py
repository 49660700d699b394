"""delivery_email: rendered templates, real SMTP (aiosmtpd), reply classes, header safety, demo mode."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.policy
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from guichet.core.clock import FrozenClock
from guichet.core.config import CaisseConfig, load_config
from guichet.core.context import DemoEndpoints, PluginContext
from guichet.core.delivery_templates import TEMPLATES
from guichet.core.errors import ConfigError, DeliveryError
from guichet.core.plugins import PluginHost
from guichet.core.structs import Message, Recipient
from guichet.plugins.delivery_email import hooks
from guichet.plugins.delivery_email.channel import EmailChannel
from guichet.plugins.delivery_email.settings import EmailSettings
from guichet.testing import SmtpSink, base_with_plugins, free_port

T0 = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)
RECIPIENT = Recipient(name="Marie DUPONT", email="marie.dupont@exemple.fr")
PAYLOADS: dict[str, dict[str, Any]] = {
    "login_code": {"code": "482913", "lifetime_minutes": 15},
    "registration_code": {"code": "482913", "lifetime_minutes": 10},
    "recovery_code": {"code": "4829", "lifetime_minutes": 30},
    "contact_code": {"code": "482913", "lifetime_minutes": 10},
    "temporary_password": {
        "password": "Ab3#kP9mQw2xZr",
        "expires_on": "31/03/2026",
        "masked_identifier": "185*******123",
    },
    "password_changed_notice": {},
    "email_changed_notice": {"new_email_masked": "j***n@exemple.fr"},
    "mobile_changed_notice": {"new_mobile_masked": "06 xx xx xx 78"},
    "registration_attempt_notice": {},
    "password_reset_notice": {},
    "registration_letter": {"masked_identifier": "185*******123", "registered_on": "02/03/2026"},
    "third_party_password": {
        "password": "Ab3#kP9mQw2xZr",
        "expires_on": "31/03/2026",
        "identifier": "T1234567897",
        "structure_name": "Cabinet Comptable du Béarn",
    },
    "third_party_approved_notice": {"structure_name": "Cabinet Comptable du Béarn", "request_number": 12},
    "third_party_rejected_letter": {
        "structure_name": "Cabinet Comptable du Béarn",
        "request_number": 12,
        "requested_on": "02/03/2026",
        "reason": "Le mandat signé manque.",
    },
    "account_closed_notice": {"masked_identifier": "185*******123", "closed_on": "02/03/2026"},
    "account_closed_letter": {"masked_identifier": "185*******123", "closed_on": "02/03/2026"},
    # the codes go by post only: the email version of the letter shows none (see below)
    "recovery_codes_letter": {},
    "authenticator_changed_notice": {"change": "added", "authenticator": "Codes de secours par courrier"},
}
WORDING_KEYS = {"change"}  # payload keys that choose a wording rather than being shown


def message(
    template: str = "login_code", recipient: Recipient = RECIPIENT, payload: dict[str, Any] | None = None, id: int = 41
) -> Message:
    return Message(
        id=id,
        channel="email",
        template=template,
        recipient=recipient,
        payload=PAYLOADS[template] if payload is None else payload,
        caisse_name="MSA Test",
        created_at=T0,
    )


@pytest.fixture
def context_for(make_config: Callable[..., CaisseConfig]) -> Callable[..., PluginContext]:
    def factory(settings: str, demo: DemoEndpoints | None = None) -> PluginContext:
        config = make_config(f"[plugins.settings.delivery_email]\n{settings}", base=base_with_plugins("delivery_email"))
        return PluginContext(config=config, database=None, clock=FrozenClock(T0), demo=demo)  # type: ignore[arg-type]

    return factory


def settings_for(port: int, **extra: str) -> str:
    values = {
        "host": '"127.0.0.1"',
        "port": str(port),
        "security": '"none"',
        "timeout_seconds": "2",
        "sender": '"MSA Test <ne-pas-repondre@test.invalid>"',
        **extra,
    }
    return "\n".join(f"{key} = {value}" for key, value in values.items())


def channel_for(context: PluginContext) -> EmailChannel:
    [channel] = hooks.guichet_channels(context=context)
    assert isinstance(channel, EmailChannel)
    return channel


def parse(envelope: Any) -> EmailMessage:
    parsed = BytesParser(policy=email.policy.default).parsebytes(envelope.content)
    assert isinstance(parsed, EmailMessage)
    return parsed


async def test_an_email_reaches_the_server_with_headers_and_both_bodies(
    context_for: Callable[..., PluginContext],
) -> None:
    port = free_port()
    channel = channel_for(context_for(settings_for(port, reply_to='"assistance@test.invalid"')))
    with SmtpSink(port) as sink:
        await channel.send(message())
    [envelope] = sink.messages
    assert envelope.mail_from == "ne-pas-repondre@test.invalid" and envelope.rcpt_tos == ["marie.dupont@exemple.fr"]
    mail = parse(envelope)
    assert mail["From"] == "MSA Test <ne-pas-repondre@test.invalid>"
    assert mail["To"] == "Marie DUPONT <marie.dupont@exemple.fr>"
    assert mail["Reply-To"] == "assistance@test.invalid"
    assert mail["Subject"] == "Votre code de sécurité pour vous connecter à Mon espace privé"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["Message-ID"] == f"<test-41-{int(T0.timestamp() * 1000)}@test.invalid>"
    assert email.utils.parsedate_to_datetime(mail["Date"]) == T0
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    for body in (text, html):
        assert "482913" in body and "Bonjour Marie DUPONT," in body and "15 minutes" in body
        assert "01 23 45 67 89" in body and "aide@test.invalid" in body and "MSA Test" in body
    assert html.startswith("<!DOCTYPE html>") and '<html lang="fr">' in html


def test_every_attempt_at_a_message_has_the_same_message_id(context_for: Callable[..., PluginContext]) -> None:
    """At-least-once delivery may send a message twice (a worker killed before recording it): the
    copies carry one Message-ID, so a mail client shows one. Another message has another."""
    channel = channel_for(context_for(settings_for(free_port())))
    first, again, other = channel.build(message(id=41)), channel.build(message(id=41)), channel.build(message(id=42))
    assert first["Message-ID"] == again["Message-ID"] != other["Message-ID"]
    assert "482913" not in first["Message-ID"] and "marie" not in first["Message-ID"]


async def test_html_escapes_values_and_text_keeps_them(context_for: Callable[..., PluginContext]) -> None:
    channel = channel_for(context_for(settings_for(2525)))
    subject, text, html = channel.render(message(recipient=Recipient(name="<b>Eve</b> & co", email="e@x.fr")))
    assert "Bonjour <b>Eve</b> & co," in text
    assert "&lt;b&gt;Eve&lt;/b&gt; &amp; co" in html and "<b>Eve" not in html


@pytest.mark.parametrize("config_file", ["demo.toml", "provence-azur.toml", "sud-aquitaine.toml"])
def test_every_template_renders_for_every_example_caisse(
    config_file: str, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUICHET_SMTP_PASSWORD", "not-used")
    config = load_config(root / "config" / config_file)
    demo = DemoEndpoints(smtp_host="127.0.0.1", smtp_port=2525, sms_url="http://127.0.0.1:1/sms", mailbox_dir="x")
    context = PluginContext(config=config, database=None, clock=FrozenClock(T0), demo=demo)  # type: ignore[arg-type]
    channel = channel_for(context)
    for template in TEMPLATES:
        mail = channel.build(message(template))
        subject = mail["Subject"]
        assert subject and "\n" not in subject and len(subject) <= 78
        text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
        assert config.caisse.name in text and config.caisse.name in html
        for key, value in PAYLOADS[template].items():
            assert key in WORDING_KEYS or (str(value) in text and str(value) in html)


def test_no_line_break_reaches_a_header(context_for: Callable[..., PluginContext], tmp_path: Path) -> None:
    channel = channel_for(context_for(settings_for(2525)))
    with pytest.raises(DeliveryError) as refused:
        channel.build(message(recipient=Recipient(name="Eve\r\nBcc: victim@exemple.fr", email="eve@exemple.fr")))
    assert refused.value.permanent and "line break" in str(refused.value)
    for bad in ("eve@exemple.fr\r\nBcc: x@y.fr", "eve@exemple.fr>, <x@y.fr", "pas-une-adresse", ""):
        with pytest.raises(DeliveryError, match="no usable email address"):
            channel.build(message(recipient=Recipient(name="Eve", email=bad)))
    # a caisse template whose subject spans two lines is refused, not folded into a header
    override = tmp_path / "mes-modeles"
    override.mkdir()
    (override / "login_code.subject.txt").write_text("Votre code\nBcc: x@y.fr\n")
    channel = channel_for(context_for(settings_for(2525, templates_dir=f'"{override}"')))
    with pytest.raises(DeliveryError, match="Subject header would contain a line break"):
        channel.build(message())


def test_the_authenticator_notice_says_what_changed(context_for: Callable[..., PluginContext]) -> None:
    channel = channel_for(context_for(settings_for(2525)))
    for change, said in (("added", "ajouté à"), ("removed", "retiré de")):
        payload = {"change": change, "authenticator": "Codes de secours par courrier"}
        subject, text, html = channel.render(message("authenticator_changed_notice", payload=payload))
        assert said in subject and said in text and said in html
        assert "Codes de secours par courrier" in text and "Codes de secours par courrier" in html
        assert "contactez sans attendre l'assistance" in text


def test_the_recovery_codes_never_go_by_email(context_for: Callable[..., PluginContext]) -> None:
    """Were the letter ever routed to email, the message says the codes go by post and shows none."""
    channel = channel_for(context_for(settings_for(2525)))
    codes = ["ACDEF-34679", "QRTUV-WXY34"]
    subject, text, html = channel.render(message("recovery_codes_letter", payload={"codes": codes}))
    assert "courrier" in subject and "uniquement par courrier" in text
    assert not any(code in text or code in html or code.replace("-", "") in text for code in codes)


def test_a_caisse_folder_overrides_a_template(context_for: Callable[..., PluginContext], tmp_path: Path) -> None:
    (tmp_path / "modeles").mkdir()
    (tmp_path / "modeles" / "login_code.subject.txt").write_text("{{ caisse.name }} : votre code")
    channel = channel_for(context_for(settings_for(2525, templates_dir='"modeles"')))
    subject, text, _html = channel.render(message())
    assert subject == "MSA Test : votre code" and "482913" in text  # the body is still the built-in one
    with pytest.raises(ConfigError, match="templates_dir"):
        channel_for(context_for(settings_for(2525, templates_dir='"absent"')))


def test_unknown_template_or_missing_value_is_permanent(context_for: Callable[..., PluginContext]) -> None:
    channel = channel_for(context_for(settings_for(2525)))
    with pytest.raises(DeliveryError) as unknown:
        channel.build(
            Message(
                id=1,
                channel="email",
                template="newsletter",
                recipient=RECIPIENT,
                payload={},
                caisse_name="",
                created_at=T0,
            )
        )
    assert unknown.value.permanent
    with pytest.raises(DeliveryError) as missing:
        channel.build(message(payload={"lifetime_minutes": 15}))
    assert missing.value.permanent and "needs a value" in str(missing.value)


@pytest.mark.parametrize(
    ("where", "reply", "permanent"),
    [
        ("rcpt", "550 5.1.1 no such user", True),
        ("rcpt", "452 4.2.2 mailbox full", False),
        ("data", "554 5.7.1 rejected as spam", True),
        ("data", "451 4.3.0 try again later", False),
    ],
)
async def test_smtp_replies_4xx_are_temporary_5xx_permanent(
    context_for: Callable[..., PluginContext], where: str, reply: str, permanent: bool
) -> None:
    port = free_port()
    channel = channel_for(context_for(settings_for(port)))
    kwargs = {"rcpt_reply": reply} if where == "rcpt" else {"data_reply": reply}
    with SmtpSink(port, **kwargs):
        with pytest.raises(DeliveryError) as failed:
            await channel.send(message())
    assert failed.value.permanent is permanent and reply[:3] in str(failed.value)
    assert "482913" not in str(failed.value) and "marie" not in str(failed.value)


async def test_server_down_is_temporary(context_for: Callable[..., PluginContext]) -> None:
    channel = channel_for(context_for(settings_for(free_port())))
    with pytest.raises(DeliveryError, match="cannot reach the SMTP server") as failed:
        await channel.send(message())
    assert not failed.value.permanent


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections and never greets: the client must time out."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


async def test_a_timeout_is_temporary(context_for: Callable[..., PluginContext], silent_server: int) -> None:
    channel = channel_for(context_for(settings_for(silent_server, timeout_seconds="0.3")))
    with pytest.raises(DeliveryError, match="timed out") as failed:
        await channel.send(message())
    assert not failed.value.permanent


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_authentication_with_a_secret_from_the_environment(
    context_for: Callable[..., PluginContext], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cr3t-smtp")
    port = free_port()
    context = context_for(settings_for(port, username='"espace-prive"', password='{ env = "TEST_SMTP_PASSWORD" }'))
    channel = channel_for(context)
    assert "s3cr3t" not in repr(channel) and "s3cr3t" not in repr(channel.settings)
    caplog.set_level(logging.DEBUG)
    with SmtpSink(port, credentials=("espace-prive", "s3cr3t-smtp")) as sink:
        await channel.send(message())
    assert len(sink.messages) == 1 and sink.logins == ["espace-prive"]
    assert "s3cr3t" not in caplog.text
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "wrong")
    with SmtpSink(port, credentials=("espace-prive", "s3cr3t-smtp")):
        with pytest.raises(DeliveryError) as refused:
            await channel_for(
                context_for(settings_for(port, username='"espace-prive"', password='{ env = "TEST_SMTP_PASSWORD" }'))
            ).send(message())
    assert refused.value.permanent and "535" in str(refused.value)


def test_a_missing_secret_stops_the_start(
    context_for: Callable[..., PluginContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_SMTP_ABSENT", raising=False)
    with pytest.raises(ConfigError, match="TEST_SMTP_ABSENT"):
        channel_for(context_for(settings_for(2525, password='{ env = "TEST_SMTP_ABSENT" }')))


async def test_demo_mode_sends_to_the_demo_sink(context_for: Callable[..., PluginContext]) -> None:
    port = free_port()
    demo = DemoEndpoints(smtp_host="127.0.0.1", smtp_port=port, sms_url="http://127.0.0.1:1/sms", mailbox_dir="x")
    channel = channel_for(context_for('port = 0\nsecurity = "starttls"\nsender = "Démo <demo@demo.invalid>"', demo))
    with SmtpSink(port) as sink:
        await channel.send(message())
    assert len(sink.messages) == 1
    with pytest.raises(ConfigError, match="demo mode"):
        channel_for(context_for('port = 0\nsender = "Démo <demo@demo.invalid>"'))


def test_hook_guichet_channels_email_direct_and_through_the_host(make_config: Callable[..., CaisseConfig]) -> None:
    config = make_config(
        f"[plugins.settings.delivery_email]\n{settings_for(2525)}", base=base_with_plugins("delivery_email")
    )
    host = PluginHost(config, PluginContext(config=config, database=None, clock=FrozenClock(T0)))  # type: ignore[arg-type]
    assert isinstance(host.channel("email"), EmailChannel) and host.channel("sms") is None
    bad = make_config(
        '[plugins.settings.delivery_email]\nport = "x"\nsender = "a@b.fr"', base=base_with_plugins("delivery_email")
    )
    with pytest.raises(ConfigError, match=r"plugins\.settings\.delivery_email\.port"):
        PluginHost(bad, PluginContext(config=bad, database=None, clock=FrozenClock(T0)))  # type: ignore[arg-type]
    assert isinstance(EmailSettings(sender="a@b.fr"), EmailSettings)


async def test_parallel_sends_share_nothing(context_for: Callable[..., PluginContext]) -> None:
    port = free_port()
    channel = channel_for(context_for(settings_for(port)))
    with SmtpSink(port) as sink:
        await asyncio.gather(*(channel.send(message(id=n)) for n in range(5)))
    assert sorted(parse(e)["Message-ID"].split("-")[1] for e in sink.messages) == sorted(str(n) for n in range(5))


def _parsed_view(mail: EmailMessage) -> dict[str, Any]:
    """What a mail client reads of an email: header values, addresses, and each part's type and text."""
    reparsed = BytesParser(policy=email.policy.default).parsebytes(mail.as_bytes())
    view: dict[str, Any] = {}
    for name in ("From", "To", "Reply-To"):
        header = reparsed[name]
        view[name] = None if header is None else [(a.display_name, a.addr_spec) for a in header.addresses]
    for name in ("Subject", "Message-ID", "Auto-Submitted", "MIME-Version"):
        view[name] = reparsed[name]
    view["Date"] = email.utils.parsedate_to_datetime(reparsed["Date"])
    view["type"] = reparsed.get_content_type()
    view["parts"] = [
        (part.get_content_type(), part.get_content_charset(), part.get_content().replace("\r\n", "\n"))
        for part in reparsed.iter_parts()
    ]
    assert not reparsed.defects and all(not part.defects for part in reparsed.walk())
    return view


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize(
    "recipient",
    [
        RECIPIENT,
        Recipient(name="Hélène d'Arcy-Lefèvre", email="helene@exemple.fr"),
        Recipient(name='Jean "Le Grand", fils', email="jean.o'neil+msa@exemple.fr"),
        Recipient(name="", email="anonyme@exemple.fr"),
        Recipient(name="Ééééééééééééééééééééééééééééééééééééééééé Ààààààààààààààààààà", email="a@b.fr"),
    ],
)
def test_the_fast_path_writes_the_message_the_email_package_writes(
    context_for: Callable[..., PluginContext], template: str, recipient: Recipient
) -> None:
    """send() writes its bytes from a skeleton made at start-up; a mail client must read exactly what
    the email package would have written, for every template."""
    channel = channel_for(
        context_for(
            settings_for(
                2525,
                sender='"Caisse Médicale — Émetteur <ne-pas-repondre@test.invalid>"',
                reply_to='"assistance@test.invalid"',
            )
        )
    )
    sent = message(template, recipient=recipient)
    fast, address = channel.compose(sent)
    assert address == recipient.email
    assert fast.isascii() and all(len(line) <= 78 for line in fast.split(b"\r\n"))  # 7-bit, folded
    assert not any(line.endswith(b"\r") for line in fast.split(b"\r\n"))
    assert _parsed_view(channel.build(sent)) == _parsed_view(channel.build_with_email_package(sent))


async def test_connections_are_reused_and_the_local_name_looked_up_once(
    context_for: Callable[..., PluginContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups: list[str] = []  # aiosmtplib's own lookup (getfqdn in a thread), per connection
    connects: list[int] = []
    real_connect = aiosmtplib.SMTP.connect

    async def counted_lookup(self: aiosmtplib.SMTP) -> str:
        lookups.append("aiosmtplib")
        return "localhost"

    async def counted_connect(self: aiosmtplib.SMTP, *args: Any, **kwargs: Any) -> Any:
        connects.append(1)
        return await real_connect(self, *args, **kwargs)

    monkeypatch.setattr(aiosmtplib.SMTP, "_get_default_local_hostname", counted_lookup)
    monkeypatch.setattr(aiosmtplib.SMTP, "connect", counted_connect)
    port = free_port()
    channel = channel_for(context_for(settings_for(port)))
    with SmtpSink(port) as sink:
        for n in range(3):
            await channel.send(message(id=n))
        assert len(sink.messages) == 3 and len(connects) == 1 and channel._local_hostname
        await asyncio.gather(*(channel.send(message(id=n)) for n in range(3, 6)))  # at once: more connections
        assert len(sink.messages) == 6
    # the server went away with the connections open: the next send opens a new one, or fails as temporary
    with SmtpSink(port) as sink:
        await channel.send(message(id=9))
    assert len(sink.messages) == 1
    with pytest.raises(DeliveryError) as failed:
        await channel.send(message(id=10))
    assert not failed.value.permanent and lookups == []
