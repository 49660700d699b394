"""Real local servers for the delivery tests: an SMTP sink (aiosmtpd) and a scripted HTTP endpoint."""
from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult



def _top_conftest() -> Any:
    """tests/conftest.py as loaded by pytest; found by path, since another folder's conftest may hold the name."""
    path = str(Path(__file__).with_name("conftest.py"))
    for module in list(sys.modules.values()):
        if getattr(module, "__file__", None) == path:
            return module
    spec = importlib.util.spec_from_file_location("guichet_tests_top_conftest", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BASE_CONFIG: str = _top_conftest().BASE_CONFIG
DEFAULT_ENABLED = '["statuses_msa", "registry_tables", "identity_vitale", "identity_payment", "password_msa"]'


def base_with_plugins(*names: str) -> str:
    """BASE_CONFIG with these plugins enabled as well."""
    enabled = DEFAULT_ENABLED[:-1] + "".join(f', "{name}"' for name in names) + "]"
    assert DEFAULT_ENABLED in BASE_CONFIG
    return BASE_CONFIG.replace(DEFAULT_ENABLED, enabled)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Handler:
    def __init__(self, sink: "SmtpSink") -> None:
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
    """An aiosmtpd server in its own thread that keeps every envelope (or refuses as told)."""

    def __init__(self, port: int | None = None, *, rcpt_reply: str = "", data_reply: str = "",
                 credentials: tuple[str, str] | None = None,
                 on_message: Callable[[Any], None] | None = None, hold: threading.Event | None = None,
                 before_reply: Callable[[Any], None] | None = None) -> None:
        """``hold``: every message's DATA is answered only once the event is set (``arrived`` lists
        them as they come); ``before_reply`` runs on each message once it is taken in (in
        ``messages``), before its 250 is sent: what it does (kill the client, break its database)
        happens in the window where a message is delivered but its sender does not know it yet."""
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
            def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
                ok = (auth_data.login.decode(), auth_data.password.decode()) == credentials
                return AuthResult(success=ok, handled=False, auth_data=auth_data.login.decode() if ok else None)

            kwargs = {"authenticator": authenticator, "auth_required": True, "auth_require_tls": False}
        logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs message lines at DEBUG
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port, **kwargs)

    def __enter__(self) -> "SmtpSink":
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpEndpoint:
    """A local HTTP server that answers from a script (then 200) and records every request.

    A script entry is ``(status, headers)`` or ``(status, headers, then)``: ``then`` is seconds to
    wait before answering (a gateway that outlasts its client's timeout) or ``"drop"`` (the
    connection closed without an answer). Every request the gateway accepts reaches ``delivered``
    (the phone), once per ``honour_key`` header value when that is set: a gateway that honours
    idempotency keys. ``always`` answers every request past the script the same way.
    """

    script: list[tuple[Any, ...]] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    delivered: list[Recorded] = field(default_factory=list)
    honour_key: str = ""
    always: tuple[Any, ...] = (200, {})

    def __post_init__(self) -> None:
        endpoint = self
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorded = Recorded(self.command, self.path, dict(self.headers.items()), body)
                with lock:
                    endpoint.requests.append(recorded)
                    entry = endpoint.script.pop(0) if endpoint.script else endpoint.always
                    status, headers = entry[0], entry[1]
                    key = self.headers.get(endpoint.honour_key, "") if endpoint.honour_key else ""
                    if status < 300 and not (key and any(r.headers.get(endpoint.honour_key) == key
                                                         for r in endpoint.delivered)):
                        endpoint.delivered.append(recorded)
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

            do_POST = do_PUT = _answer

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/send"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> "HttpEndpoint":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def install_fake_dist(monkeypatch: Any, folder: Any, *, dist: str, entry_points: dict[str, str],
                      package_dirs: tuple[Any, ...] = ()) -> None:
    """Make a distribution visible to importlib.metadata without pip: a dist-info folder on sys.path.

    ``entry_points`` maps plugin names to modules (group ``guichet``); ``package_dirs`` are folders
    holding the plugin's package, put on sys.path too.
    """
    info = Path(folder) / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "".join(f"{name} = {module}\n" for name, module in entry_points.items())
    (info / "entry_points.txt").write_text(f"[guichet]\n{lines}")
    for package_dir in package_dirs:
        monkeypatch.syspath_prepend(str(package_dir))
    monkeypatch.syspath_prepend(str(folder))
