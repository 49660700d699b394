"""Real local servers that keep what a channel sends: an SMTP sink (aiosmtpd) and a scripted HTTP sink
(an SMS gateway, a webhook receiver). Each runs in a thread of its own, so the test's event loop and
the channel's client work as they do in production."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.sink.rcpt_reply:
            return self.sink.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.sink.data_reply:
            return self.sink.data_reply
        with self.sink.lock:
            self.sink.arrived.append(envelope)
        while self.sink.hold is not None and not self.sink.hold.is_set():
            await asyncio.sleep(0.02)  # the message is held, its client waiting for the reply
        with self.sink.lock:  # taken in: a real server delivers it now, even if its reply never arrives
            self.sink.messages.append(envelope)
            self.sink.logins.append(getattr(session, "auth_data", None))
        if self.sink.before_reply is not None:  # in a thread of its own: it may run an event loop
            await asyncio.get_running_loop().run_in_executor(None, self.sink.before_reply, envelope)
        if self.sink.on_message is not None:
            self.sink.on_message(envelope)
        return "250 Message accepted"


class SmtpSink:
    """An aiosmtpd server in its own thread that keeps every envelope (or refuses as told).

    ``with SmtpSink() as smtp:`` then point the channel at ``127.0.0.1:smtp.port``; ``smtp.messages``
    holds each envelope taken in (``.content`` is the raw message, ``.rcpt_tos`` the recipients).
    ``rcpt_reply``/``data_reply`` (such as ``"550 no such user"``) refuse every recipient or message;
    ``credentials`` requires AUTH with that login and password. aiosmtpd is a test dependency
    (``pip install "guichet-auth[testing]"``), imported only when a sink is made.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        rcpt_reply: str = "",
        data_reply: str = "",
        credentials: tuple[str, str] | None = None,
        on_message: Callable[[Any], None] | None = None,
        hold: threading.Event | None = None,
        before_reply: Callable[[Any], None] | None = None,
    ) -> None:
        """``hold``: every message's DATA is answered only once the event is set (``arrived`` lists
        them as they come); ``before_reply`` runs on each message once it is taken in (in
        ``messages``), before its 250 is sent: what it does (kill the client, break its database)
        happens in the window where a message is delivered but its sender does not know it yet."""
        try:
            from aiosmtpd.controller import Controller
            from aiosmtpd.smtp import AuthResult
        except ImportError:
            raise ImportError(
                'SmtpSink needs aiosmtpd, a test dependency: pip install "guichet-auth[testing]"'
            ) from None
        self.port = port or free_port()
        self.rcpt_reply = rcpt_reply
        self.data_reply = data_reply
        self.on_message = on_message
        self.hold = hold
        self.before_reply = before_reply
        self.arrived: list[Any] = []
        self.messages: list[Any] = []
        self.logins: list[Any] = []
        self.lock = threading.Lock()
        kwargs: dict[str, Any] = {}
        if credentials is not None:

            def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
                ok = (auth_data.login.decode(), auth_data.password.decode()) == credentials
                return AuthResult(success=ok, handled=False, auth_data=auth_data.login.decode() if ok else None)

            kwargs = {"authenticator": authenticator, "auth_required": True, "auth_require_tls": False}
        logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs message lines at DEBUG
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port, **kwargs)

    def __enter__(self) -> SmtpSink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


@dataclass
class Recorded:
    """One request the HTTP sink received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpSink:
    """A local HTTP server that answers from a script (then 200) and records every request.

    ``with HttpSink(script=[(503, {"Retry-After": "30"})]) as gateway:`` then point the channel at
    ``gateway.url``. A script entry is ``(status, headers)`` or ``(status, headers, then)``: ``then`` is
    seconds to wait before answering (a gateway that outlasts its client's timeout) or ``"drop"`` (the
    connection closed without an answer). Every request the server accepts (a status below 300) reaches
    ``delivered`` (the phone), once per ``honour_key`` header value when that is set: a gateway that
    honours idempotency keys. ``always`` answers every request past the script the same way.
    """

    script: list[tuple[Any, ...]] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    delivered: list[Recorded] = field(default_factory=list)
    honour_key: str = ""
    always: tuple[Any, ...] = (200, {})

    def __post_init__(self) -> None:
        sink = self
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorded = Recorded(self.command, self.path, dict(self.headers.items()), body)
                with lock:
                    sink.requests.append(recorded)
                    entry = sink.script.pop(0) if sink.script else sink.always
                    status, headers = entry[0], entry[1]
                    key = self.headers.get(sink.honour_key, "") if sink.honour_key else ""
                    if status < 300 and not (
                        key and any(r.headers.get(sink.honour_key) == key for r in sink.delivered)
                    ):
                        sink.delivered.append(recorded)
                then = entry[2] if len(entry) > 2 else None
                if then == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if then:
                    time.sleep(float(then))
                payload = b'{"ok": true}' if status < 300 else b'{"error": "scripted"}'
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the client gave up waiting
                    self.close_connection = True

            do_POST = do_PUT = do_GET = _answer

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/send"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> HttpSink:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
