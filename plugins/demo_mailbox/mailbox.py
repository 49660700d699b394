"""The demo mailbox: local sinks that keep every email and SMS, and the list of everything delivered.

In demo mode (``[demo] mailbox = true``) nothing leaves the machine: the email channel sends to a
local SMTP server (aiosmtpd, the ``demo`` extra) and the SMS channel to a local HTTP endpoint, both
started here in threads of their own so they run before, and independently of, any event loop.
Each message is kept as a file in ``demo.mailbox_dir``; postal letters are already files in the
postal spool. ``list_mailbox`` reads them all back for the demo mailbox page, newest first.
``LocalMailbox`` is what the plugin offers core (``guichet_demo_mailbox``).
"""

from __future__ import annotations

import datetime as dt
import email.policy
import json
import logging
import os
import re
import secrets
import socket
import threading
from collections.abc import Callable
from email.message import EmailMessage
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from guichet.core import CaisseConfig, ConfigError, DemoEndpoints, MailboxItem

log = logging.getLogger("guichet.demo")

UTC = dt.UTC
_STAMP = "%Y%m%dT%H%M%S%fZ"
_FILE_RE = re.compile(r"^(?P<stamp>[0-9]{8}T[0-9]{12}Z)-(?P<kind>email|sms)-[0-9a-f]{8}\.(?:eml|json)$")
_LETTER_RE = re.compile(r"^letter-[0-9]{1,18}\.pdf$")
MAX_SMS_BODY = 64 * 1024


class DemoSinks:
    """The running sinks; ``stop()`` shuts both down (idempotent)."""

    def __init__(self, endpoints: DemoEndpoints, stoppers: list[Callable[[], None]]) -> None:
        self.endpoints = endpoints
        self._stoppers = stoppers

    def stop(self) -> None:
        while self._stoppers:
            try:
                self._stoppers.pop()()
            except Exception:  # pragma: no cover - shutting down anyway
                log.exception("demo sink did not stop cleanly")


def _write_atomically(folder: Path, kind: str, suffix: str, data: bytes) -> Path:
    """Write a new mailbox file so that a reader never sees it half written."""
    name = f"{dt.datetime.now(UTC).strftime(_STAMP)}-{kind}-{secrets.token_hex(4)}.{suffix}"
    temporary = folder / f".{name}.tmp"
    temporary.write_bytes(data)
    os.replace(temporary, folder / name)
    return folder / name


class _SmtpHandler:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        data = content if isinstance(content, bytes) else str(content).encode("utf-8")
        _write_atomically(self.folder, "email", "eml", data)
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _check_free(port: int) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's server will
        sock.bind(("127.0.0.1", port))


def _sms_fields(body: bytes, content_type: str) -> dict[str, str]:
    """``to`` and ``text`` from whatever body template the caisse configured (JSON or a form)."""
    text = body.decode("utf-8", errors="replace")
    fields: dict[str, Any] = {}
    if "json" in content_type or text.lstrip().startswith("{"):
        try:
            decoded = json.loads(text)
            fields = decoded if isinstance(decoded, dict) else {}
        except ValueError:
            fields = {}
    elif "=" in text:
        fields = {key: values[0] for key, values in parse_qs(text).items()}

    def pick(*names: str) -> str:
        for name in names:
            if isinstance(fields.get(name), (str, int)):
                return str(fields[name])
        return ""

    return {
        "to": pick("to", "recipient", "number", "msisdn", "destination"),
        "text": pick("text", "message", "body", "content") or (text if not fields else ""),
        "sender": pick("from", "sender", "originator"),
    }


def _sms_handler(folder: Path) -> type[BaseHTTPRequestHandler]:
    class SmsHandler(BaseHTTPRequestHandler):
        def _accept(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_SMS_BODY:
                self.send_error(413)
                return
            body = self.rfile.read(length)
            record = {
                "received_at": dt.datetime.now(UTC).isoformat(),
                **_sms_fields(body, self.headers.get("Content-Type", "")),
            }
            _write_atomically(folder, "sms", "json", json.dumps(record, ensure_ascii=False).encode("utf-8"))
            answer = b'{"status": "accepted"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        do_POST = _accept
        do_PUT = _accept

        def log_message(self, format: str, *args: Any) -> None:  # the text holds codes: never log requests
            return

    return SmsHandler


def demo_endpoints(config: CaisseConfig) -> DemoEndpoints:
    """Where the sinks will listen: ports chosen now (free ones unless [demo] smtp_port), nothing
    started, so that building an app (which `litestar routes` does too) has no side effect."""
    folder = config.path(config.demo.mailbox_dir)
    return DemoEndpoints(
        smtp_host="127.0.0.1",
        smtp_port=config.demo.smtp_port or _free_port(),
        sms_url=f"http://127.0.0.1:{_free_port()}/sms",
        mailbox_dir=str(folder),
    )


def start_demo_sinks(config: CaisseConfig, endpoints: DemoEndpoints | None = None) -> DemoSinks:
    """Start the demo SMTP server and SMS endpoint on 127.0.0.1 (on ``endpoints``' ports, or free
    ones), each in its own thread; return at once."""
    try:
        from aiosmtpd.controller import Controller
    except ImportError:
        raise ConfigError(
            "the demo mailbox needs aiosmtpd: install guichet with the demo extra (pip install 'guichet-auth[demo]')",
            key="$.demo.mailbox",
        ) from None
    endpoints = endpoints or demo_endpoints(config)
    folder = Path(endpoints.mailbox_dir)
    folder.mkdir(parents=True, exist_ok=True)
    # aiosmtpd logs every DATA line at DEBUG: the codes and passwords of the messages
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    stoppers: list[Callable[[], None]] = []

    smtp_port = endpoints.smtp_port
    controller = Controller(_SmtpHandler(folder), hostname="127.0.0.1", port=smtp_port)
    try:
        _check_free(smtp_port)  # aiosmtpd would only tell after its ready timeout
        controller.start()
    except OSError as exc:
        raise ConfigError(
            f"the demo SMTP port {smtp_port} cannot be used ({exc.strerror or exc}); set "
            "[demo] smtp_port = 0 for a free port",
            key="$.demo.smtp_port",
        ) from None
    stoppers.append(controller.stop)

    try:
        http = ThreadingHTTPServer(("127.0.0.1", urlsplit(endpoints.sms_url).port or 0), _sms_handler(folder))
    except OSError:
        controller.stop()
        raise
    http.daemon_threads = True
    thread = threading.Thread(
        target=http.serve_forever, kwargs={"poll_interval": 0.1}, name="guichet-demo-sms", daemon=True
    )
    thread.start()

    def stop_http() -> None:
        http.shutdown()
        http.server_close()
        thread.join(timeout=5)

    stoppers.append(stop_http)
    log.info("demo mailbox: SMTP on 127.0.0.1:%s, SMS on %s, kept in %s", smtp_port, endpoints.sms_url, folder)
    return DemoSinks(endpoints, stoppers)


# --- reading the mailbox back ------------------------------------------------------------------------


def letters_dir(config: CaisseConfig) -> Path:
    """The postal spool folder, as the delivery_postal plugin resolves it."""
    configured = config.plugin_settings("delivery_postal").get("spool_dir")
    return config.path(str(configured) if configured else f"{config.server.spool_dir}/letters")


def mailbox_dirs(config: CaisseConfig) -> tuple[Path, Path]:
    """(mailbox folder, letters spool folder) for ``list_mailbox``."""
    return config.path(config.demo.mailbox_dir), letters_dir(config)


def _read_email(path: Path, when: dt.datetime) -> MailboxItem:
    message = BytesParser(policy=email.policy.default).parse(path.open("rb"))
    assert isinstance(message, EmailMessage)
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    return MailboxItem(
        id=path.name,
        kind="email",
        when=when,
        to=str(message.get("To", "")),
        subject=str(message.get("Subject", "")),
        text=text_part.get_content() if isinstance(text_part, EmailMessage) else "",
        html=html_part.get_content() if isinstance(html_part, EmailMessage) else "",
    )


def _read_sms(path: Path, when: dt.datetime) -> MailboxItem:
    record = json.loads(path.read_text(encoding="utf-8"))
    return MailboxItem(
        id=path.name,
        kind="sms",
        when=when,
        to=str(record.get("to", "")),
        subject=str(record.get("sender", "")),
        text=str(record.get("text", "")),
    )


def _read_letters(spool_dir: Path) -> list[MailboxItem]:
    index = spool_dir / "index.jsonl"
    if not index.exists():
        return []
    items = []
    for line in index.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
            file = str(entry["file"])
            when = dt.datetime.fromisoformat(entry["created"])
        except (ValueError, KeyError, TypeError):
            continue  # a line the mail room edited by hand: skip it, show the rest
        if not _LETTER_RE.match(file):
            continue
        items.append(
            MailboxItem(
                id=file,
                kind="letter",
                when=when,
                to=str(entry.get("recipient_name", "")),
                subject=str(entry.get("subject", "")),
                file=file,
                text=f"{entry.get('pages', 1)} page(s), modèle {entry.get('template', '')}",
            )
        )
    return items


def list_mailbox(
    mailbox_dir: str | os.PathLike[str], spool_dir: str | os.PathLike[str] | None = None
) -> list[MailboxItem]:
    """Every email, SMS and letter delivered in demo mode, newest first."""
    items: list[MailboxItem] = []
    folder = Path(mailbox_dir)
    if folder.is_dir():
        for path in folder.iterdir():
            match = _FILE_RE.match(path.name)
            if not match:
                continue
            when = dt.datetime.strptime(match["stamp"], _STAMP).replace(tzinfo=UTC)
            try:
                items.append(_read_email(path, when) if match["kind"] == "email" else _read_sms(path, when))
            except (OSError, ValueError):
                log.warning("demo mailbox: %s could not be read", path.name)
    if spool_dir is not None:
        items.extend(_read_letters(Path(spool_dir)))
    return sorted(items, key=lambda item: (item.when, item.id), reverse=True)


def letter_path(spool_dir: str | os.PathLike[str], file: str) -> Path | None:
    """The PDF of a letter by its file name, or None: only ``letter-<id>.pdf`` names, never a path."""
    if not _LETTER_RE.match(file):
        return None
    path = Path(spool_dir) / file
    return path if path.is_file() else None


class LocalMailbox:
    """The demo mailbox of one caisse config: ``start`` its sinks, read back what they kept."""

    def __init__(self, config: CaisseConfig) -> None:
        self.config = config
        self._sinks: DemoSinks | None = None
        self._endpoints: DemoEndpoints | None = None

    def endpoints(self) -> DemoEndpoints:
        if self._endpoints is None:
            self._endpoints = demo_endpoints(self.config)
        return self._endpoints

    def start(self) -> DemoEndpoints:
        if self._sinks is None:
            self._sinks = start_demo_sinks(self.config, self.endpoints())
        return self._sinks.endpoints

    def stop(self) -> None:
        if self._sinks is not None:
            self._sinks.stop()
            self._sinks = None

    def items(self) -> list[MailboxItem]:
        return list_mailbox(*mailbox_dirs(self.config))

    def letter(self, name: str) -> Path | None:
        return letter_path(mailbox_dirs(self.config)[1], name)
