"""EmailChannel: renders a message's templates into a text + HTML email and sends it over SMTP."""

from __future__ import annotations

import email.policy
import email.utils
import re
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib

from guichet.core import (
    CODE,
    EMAIL,
    LETTER,
    NOTICE,
    PASSWORD,
    ConfigError,
    DeliveryError,
    Message,
    PluginContext,
    delivery_key,
)
from guichet.core.delivery_templates import TEMPLATES, render, template_context, template_environment
from guichet.plugins.delivery_email.settings import EmailSettings

BUILTIN_TEMPLATES = Path(__file__).parent / "templates"
_ADDR_SPEC = re.compile(r"^[^@\s<>(),;:\"\\\[\]]{1,64}@[A-Za-z0-9.-]{1,253}$")
# policy.SMTP refuses CR/LF in header values itself; _header() checks before, so the reason is ours
_POLICY = email.policy.SMTP


def _header(value: str, what: str) -> str:
    if "\r" in value or "\n" in value or "\x00" in value:
        raise DeliveryError(f"the {what} header would contain a line break; not sent", permanent=True)
    return value


class EmailChannel:
    """The ``email`` channel."""

    name = "email"
    label_fr = "par e-mail"
    reaches = EMAIL
    carries = frozenset({CODE, PASSWORD, NOTICE, LETTER})

    def __init__(self, settings: EmailSettings, context: PluginContext) -> None:
        self.settings = settings
        self.context = context
        demo = context.demo
        if settings.port == 0:
            if demo is None:
                raise ConfigError(
                    "port 0 (the demo mailbox) needs demo mode with the demo mailbox on",
                    key="$.plugins.settings.delivery_email.port",
                )
            self.host, self.port, self.security = demo.smtp_host, demo.smtp_port, "none"
        else:
            self.host, self.port, self.security = settings.host, settings.port, settings.security
        self.password = settings.password.resolve() if settings.password else None  # at start-up, never logged
        _header(settings.sender, "From")
        self.domain = email.utils.parseaddr(settings.sender)[1].rpartition("@")[2] or "guichet.invalid"
        self.env = template_environment(
            context,
            settings.templates_dir,
            BUILTIN_TEMPLATES,
            setting="$.plugins.settings.delivery_email.templates_dir",
        )
        for template in TEMPLATES:
            for suffix in (".subject.txt", ".txt", ".html"):
                self.env.get_template(template + suffix)  # a missing or broken template stops the start

    def __repr__(self) -> str:
        return f"EmailChannel(host={self.host!r}, port={self.port}, security={self.security!r})"

    def render(self, message: Message) -> tuple[str, str, str]:
        """(subject, text, html) of a message."""
        values = template_context(self.context, message)
        subject, text, html = (
            render(self.env, f"{message.template}{suffix}", values, channel="email")
            for suffix in (".subject.txt", ".txt", ".html")
        )
        return subject.strip(), text.strip() + "\n", html

    def build(self, message: Message) -> EmailMessage:
        """The email, refusing any header that would carry a line break."""
        recipient = message.recipient
        if not recipient.email or not _ADDR_SPEC.match(recipient.email):
            raise DeliveryError("the recipient has no usable email address", permanent=True)
        subject, text, html = self.render(message)
        mail = EmailMessage(policy=_POLICY)
        mail["From"] = _header(self.settings.sender, "From")
        try:
            mail["To"] = Address(display_name=_header(recipient.name, "To"), addr_spec=recipient.email)
        except (ValueError, IndexError):
            raise DeliveryError("the recipient has no usable email address", permanent=True) from None
        if self.settings.reply_to:
            mail["Reply-To"] = _header(self.settings.reply_to, "Reply-To")
        mail["Subject"] = _header(subject, "Subject")
        mail["Date"] = email.utils.format_datetime(self.context.clock.now())
        # the same on every attempt at this message: a copy sent again after a crash reads as one message
        mail["Message-ID"] = f"<{delivery_key(self.context.config.caisse.id, message)}@{self.domain}>"
        mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
        mail.set_content(text)
        mail.add_alternative(html, subtype="html")
        return mail

    async def probe(self) -> str:
        """Reach the SMTP server as a delivery would (TLS, login), send nothing; raise DeliveryError
        when it cannot be reached. ``guichet config check --connect`` calls it."""
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            use_tls=self.security == "tls",
            start_tls=True if self.security == "starttls" else False,
            timeout=self.settings.timeout_seconds,
        )
        try:
            await client.connect()
            if self.settings.username and self.password is not None:
                await client.login(self.settings.username, self.password)
            await client.quit()
        except aiosmtplib.SMTPAuthenticationError:
            raise DeliveryError(f"SMTP server {self.host}:{self.port} refused the login", permanent=True) from None
        except (TimeoutError, aiosmtplib.SMTPTimeoutError):
            raise DeliveryError(f"SMTP server {self.host}:{self.port} timed out", permanent=False) from None
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected) as exc:
            raise DeliveryError(
                f"cannot reach the SMTP server {self.host}:{self.port} ({type(exc).__name__})", permanent=False
            ) from None
        except aiosmtplib.SMTPException as exc:  # the server's own words: "STARTTLS extension not supported"
            raise DeliveryError(
                f"the SMTP server {self.host}:{self.port} answered, but: {str(exc)[:200]}", permanent=False
            ) from None
        except OSError as exc:
            raise DeliveryError(
                f"cannot reach the SMTP server {self.host}:{self.port} ({type(exc).__name__})", permanent=False
            ) from None
        finally:
            client.close()
        return f"SMTP server {self.host}:{self.port} answered" + (" (TLS)" if self.security != "none" else "")

    async def send(self, message: Message) -> None:
        mail = self.build(message)
        try:
            errors, _reply = await aiosmtplib.send(
                mail,
                hostname=self.host,
                port=self.port,
                username=self.settings.username,
                password=self.password,
                use_tls=self.security == "tls",
                start_tls=True if self.security == "starttls" else False,
                timeout=self.settings.timeout_seconds,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            raise _reply_error(max(codes) if codes else 0, "refused the recipient") from None
        except aiosmtplib.SMTPResponseException as exc:
            raise _reply_error(exc.code, "refused the message") from None
        except (TimeoutError, aiosmtplib.SMTPTimeoutError):
            raise DeliveryError(f"SMTP server {self.host}:{self.port} timed out", permanent=False) from None
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, OSError):
            raise DeliveryError(f"cannot reach the SMTP server {self.host}:{self.port}", permanent=False) from None
        except aiosmtplib.SMTPException as exc:
            raise DeliveryError(f"SMTP error ({type(exc).__name__})", permanent=False) from None
        if errors:  # one recipient only: a refusal here is that recipient's
            raise _reply_error(max(r.code for r in errors.values()), "refused the recipient")


def _reply_error(code: int, what: str) -> DeliveryError:
    return DeliveryError(f"SMTP server {what}: reply {code}", permanent=500 <= code < 600)
