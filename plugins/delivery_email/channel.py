"""EmailChannel: renders a message's templates into a text + HTML email and sends it over SMTP.

The email is written as bytes from a skeleton made once per channel (the fixed headers folded by
the ``email`` package at start-up, the MIME structure, the part headers): the package's header
objects and generator cost more CPU per message than the rest of a delivery. ``build_with_email_package``
is the reference the tests hold the fast path to. Sends reuse open SMTP connections.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.policy
import email.utils
import re
import secrets
import socket
import time
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
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
_ATEXT_PHRASE = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]+$")  # a display name that needs no quoting
_DOT_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_WORD_BYTES = 39  # UTF-8 bytes per encoded word: "Subject: " + one 64-character word fits in 78
_SUBJECTS_KEPT = 256  # encoded subjects kept per channel (one or two per template)
_IDLE_CONNECTIONS = 8  # the outbox worker's default concurrency
_IDLE_SECONDS = 30.0  # an open connection unused this long is closed rather than reused


def _header_line(name: str, value: str) -> bytes:
    """One header folded by the email package's SMTP policy (at start-up only)."""
    mail = EmailMessage(policy=_POLICY)
    mail[name] = value
    return bytes(mail).split(b"\r\n\r\n", 1)[0] + b"\r\n"


def _encoded_words(text: str) -> str:
    """RFC 2047 base64 encoded words, cut on character boundaries, joined by folding whitespace."""
    words: list[bytes] = []
    chunk = b""
    for char in text:
        encoded = char.encode()
        if len(chunk) + len(encoded) > _WORD_BYTES:
            words.append(chunk)
            chunk = b""
        chunk += encoded
    if chunk:
        words.append(chunk)
    return "\r\n ".join(f"=?utf-8?b?{base64.b64encode(word).decode()}?=" for word in words)


def _unstructured(text: str) -> str:
    """An unstructured header value (Subject): as is when it is short plain ASCII, else encoded words."""
    if text.isascii() and text.isprintable() and len(text) <= 68 and "=?" not in text and text == text.strip():
        return text
    return _encoded_words(text)


def _to_line(name: str, addr_spec: str) -> bytes:
    """The To header: ``name <addr>``, quoted or encoded as RFC 5322 and 2047 want. A name too long
    for one line or one encoded word (rare) is left to the email package, whose folding mail
    clients read back unchanged; Python's parser, for one, puts a space between encoded words."""
    local, _, domain = addr_spec.rpartition("@")
    if not _DOT_ATOM.match(local):
        local = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
    address = f"{local}@{domain}"
    if not name:
        line = f"To: {address}"
    elif name.isascii() and name.isprintable() and "=?" not in name and name == name.strip():
        if _ATEXT_PHRASE.match(name):
            line = f"To: {name} <{address}>"
        else:
            line = 'To: "' + name.replace("\\", "\\\\").replace('"', '\\"') + f'" <{address}>'
    elif len(name.encode()) <= _WORD_BYTES:
        line = f"To: =?utf-8?b?{base64.b64encode(name.encode()).decode()}?=\r\n <{address}>"
    else:
        line = ""
    if line and all(len(part) <= 78 for part in line.split("\r\n")):
        return line.encode() + b"\r\n"
    try:
        return _header_line("To", Address(display_name=name, addr_spec=addr_spec))  # type: ignore[arg-type]
    except (ValueError, IndexError):
        raise DeliveryError("the recipient has no usable email address", permanent=True) from None


def _quoted_printable(text: str) -> bytes:
    """A text body as quoted-printable with CRLF line ends (binascii: C code); like the email package,
    a body always ends with a line break."""
    if not text.endswith("\n"):
        text += "\n"
    data = text.replace("\r\n", "\n").replace("\n", "\r\n").encode()
    return binascii.b2a_qp(data, istext=True)


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
        self.envelope_sender = email.utils.parseaddr(settings.sender)[1]
        # the skeleton: every header and MIME line that does not change from one message to the next
        fixed = _header_line("From", settings.sender)
        if settings.reply_to:
            fixed += _header_line("Reply-To", _header(settings.reply_to, "Reply-To"))
        # RFC 3834: no vacation replies
        self._fixed_headers = fixed + b"Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\n"
        self._part_text = (
            b'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
        )
        self._part_html = (
            b'Content-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
        )
        self._subjects: dict[str, bytes] = {}
        self._local_hostname: str | None = None  # looked up once, at the first connection
        self._idle: list[tuple[aiosmtplib.SMTP, asyncio.AbstractEventLoop, float]] = []

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

    def compose(self, message: Message) -> tuple[bytes, str]:
        """(the email as bytes, the recipient's address), refusing any header that would carry a line break."""
        recipient = message.recipient
        if not recipient.email or not _ADDR_SPEC.match(recipient.email) or not recipient.email.isascii():
            raise DeliveryError("the recipient has no usable email address", permanent=True)
        subject, text, html = self.render(message)
        encoded_subject = self._subjects.get(subject)
        if encoded_subject is None:
            encoded_subject = f"Subject: {_unstructured(_header(subject, 'Subject'))}\r\n".encode()
            if len(self._subjects) < _SUBJECTS_KEPT:
                self._subjects[subject] = encoded_subject
        to = _to_line(_header(recipient.name, "To"), recipient.email)
        # the same on every attempt at this message: a copy sent again after a crash reads as one message
        message_id = f"<{delivery_key(self.context.config.caisse.id, message)}@{self.domain}>"
        if not message_id.isascii():
            raise DeliveryError("the Message-ID would not be ASCII; not sent", permanent=True)
        boundary = f"=_guichet_{secrets.token_hex(12)}".encode()  # "=_" never occurs in quoted-printable
        head = (
            self._fixed_headers
            + to
            + encoded_subject
            + f"Date: {email.utils.format_datetime(self.context.clock.now())}\r\nMessage-ID: {message_id}\r\n".encode()
            + b'Content-Type: multipart/alternative;\r\n boundary="'
            + boundary
            + b'"\r\n\r\n'
        )
        mail = b"".join(
            (
                head,
                b"--" + boundary + b"\r\n",
                self._part_text,
                _quoted_printable(text),
                b"\r\n--" + boundary + b"\r\n",
                self._part_html,
                _quoted_printable(html),
                b"\r\n--" + boundary + b"--\r\n",
            )
        )
        return mail, recipient.email

    def build(self, message: Message) -> EmailMessage:
        """The email that ``send`` delivers, parsed back into an EmailMessage (for tests and tools)."""
        mail, _ = self.compose(message)
        parsed = BytesParser(policy=_POLICY).parsebytes(mail)
        assert isinstance(parsed, EmailMessage)
        return parsed

    def build_with_email_package(self, message: Message) -> EmailMessage:
        """The same email written by the ``email`` package: the reference ``compose`` is tested against."""
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

    async def _connection(self) -> tuple[aiosmtplib.SMTP, bool]:
        """An open SMTP connection of this event loop (reused when one is idle), and whether it is reused."""
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        while self._idle:
            client, owner, since = self._idle.pop()
            if owner is loop and client.is_connected and now - since < _IDLE_SECONDS:
                return client, True
            if owner is loop:
                client.close()
        if self._local_hostname is None:
            # aiosmtplib would call getfqdn (in a thread) for every connection
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            username=self.settings.username,
            password=self.password,
            use_tls=self.security == "tls",
            start_tls=True if self.security == "starttls" else False,
            timeout=self.settings.timeout_seconds,
            local_hostname=self._local_hostname,
        )
        try:
            await client.connect()
        except BaseException:
            client.close()
            raise
        return client, False

    async def send(self, message: Message) -> None:
        mail, recipient = self.compose(message)
        client: aiosmtplib.SMTP | None = None
        try:
            client, reused = await self._connection()
            try:
                errors, _reply = await client.sendmail(self.envelope_sender, [recipient], mail)
            except aiosmtplib.SMTPServerDisconnected:
                if not reused:
                    raise
                # most likely closed by the server while it sat idle, before MAIL FROM; at worst a copy
                # goes twice, with one Message-ID (the outbox is at-least-once anyway)
                client.close()
                client, _ = await self._connection()
                errors, _reply = await client.sendmail(self.envelope_sender, [recipient], mail)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            self._keep(client)
            raise _reply_error(max(codes) if codes else 0, "refused the recipient") from None
        except aiosmtplib.SMTPResponseException as exc:
            self._keep(client)
            raise _reply_error(exc.code, "refused the message") from None
        except (TimeoutError, aiosmtplib.SMTPTimeoutError):
            self._drop(client)
            raise DeliveryError(f"SMTP server {self.host}:{self.port} timed out", permanent=False) from None
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, OSError):
            self._drop(client)
            raise DeliveryError(f"cannot reach the SMTP server {self.host}:{self.port}", permanent=False) from None
        except aiosmtplib.SMTPException as exc:
            self._drop(client)
            raise DeliveryError(f"SMTP error ({type(exc).__name__})", permanent=False) from None
        except BaseException:  # cancelled (the worker's deadline): the session is in an unknown state
            self._drop(client)
            raise
        self._keep(client)
        if errors:  # one recipient only: a refusal here is that recipient's
            raise _reply_error(max(r.code for r in errors.values()), "refused the recipient")

    def _keep(self, client: aiosmtplib.SMTP | None) -> None:
        """Put a connection whose last transaction ended cleanly (delivered, or refused and reset) back."""
        if client is None:
            return
        if client.is_connected and len(self._idle) < _IDLE_CONNECTIONS:
            self._idle.append((client, asyncio.get_running_loop(), time.monotonic()))
        else:
            client.close()

    @staticmethod
    def _drop(client: aiosmtplib.SMTP | None) -> None:
        if client is not None:
            client.close()


def _reply_error(code: int, what: str) -> DeliveryError:
    return DeliveryError(f"SMTP server {what}: reply {code}", permanent=500 <= code < 600)
