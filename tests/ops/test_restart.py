"""A restart behind nginx loses no request, with the settings docs/deploy.md recommends.

- ``guichet serve`` restarted by SIGHUP (``systemctl reload guichet``) under continuous POSTs from
  several browsers through Debian's nginx: every POST gets the app's own answer.
- nginx's retry policy, against a fake upstream: a POST whose connection was reset before any
  answer is tried once more; an answer of the app (a 503) and a timeout are never retried, since
  the request may have run.

Needs nginx (``apt-get install nginx``): skipped with a clear line without it, a failure under
GUICHET_REQUIRE_SERVICES=1 (CI installs it).
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from guichet.cli import GRACEFUL_SHUTDOWN_SECONDS
from tests.conftest import service_missing
from tests.ops import restart_load

pytestmark = pytest.mark.faults
from tests.ops.restart_load import GUICHET_LOCATION, GUICHET_UPSTREAM, Nginx, worker_pids
from tests.ops.serving import ROOT, Served


@pytest.fixture(autouse=True)
def nginx_installed() -> None:
    if restart_load.nginx_binary() is None:
        service_missing("nginx (apt-get install nginx)")


@pytest.fixture(autouse=True)
def quiet_load_client() -> Iterator[None]:
    """The load's own HTTP client logs every header at DEBUG (thousands of random request ids): not
    the app's lines, and noise for the session's secret scan (tests/security/conftest.py)."""
    loggers = [logging.getLogger(name) for name in ("httpx", "httpcore")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    yield
    for logger, level in zip(loggers, levels):
        logger.setLevel(level)


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_rolling_restart_behind_nginx_loses_no_post(workers: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="guichet-restart-"))
    served = Served(restart_load.app_config(folder), workers=workers).start()
    nginx = Nginx(served.port)
    try:
        nginx.start()
        assert served.proc is not None
        before = worker_pids(served.proc.pid)
        tally = await restart_load.restart_under_load(
            nginx.url, lambda: restart_load.restart_by_sighup(served, workers)
        )
        after = worker_pids(served.proc.pid)
        assert len(after) == workers and not before & after, "the workers were not replaced"
        assert tally.during_restart > 0, "no request was sent while the workers were replaced"
        assert not tally.lost, (
            f"{sum(tally.lost.values())} of {tally.sent} POSTs lost: {dict(tally.lost)}\n{nginx.errors()[-2000:]}"
        )
    finally:
        nginx.stop()
        served.stop()


# --- nginx's retry policy, against an upstream that misbehaves on purpose --------------------------------


class FakeUpstream:
    """Reads each request, then: ``reset`` the first connection (RST, no answer) and answer the next,
    ``answer`` 503 like the app in an outage, or stay ``silent``."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.connections = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            if self.behaviour == "reset" and self.connections == 1:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif self.behaviour == "silent":
                time.sleep(3)
            else:
                status = "503 Service Unavailable" if self.behaviour == "answer" else "303 See Other"
                conn.sendall(
                    f"HTTP/1.1 {status}\r\nLocation: /\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
                )
            conn.close()

    def close(self) -> None:
        # shutdown wakes the accept() under way: a closed descriptor reused by the next fake upstream
        # would otherwise be served (and counted) by this one's thread
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(10)


@pytest.fixture
def upstream(request: pytest.FixtureRequest) -> Iterator[FakeUpstream]:
    fake = FakeUpstream(request.param)
    yield fake
    fake.close()


@pytest.mark.parametrize(
    ("upstream", "status", "connections"),
    [
        pytest.param("reset", 303, 2, id="reset-before-any-answer-is-retried-once"),
        pytest.param("answer", 503, 1, id="an-answer-is-never-retried"),
        pytest.param("silent", 504, 1, id="a-timeout-is-never-retried"),
    ],
    indirect=["upstream"],
)
def test_nginx_retries_a_post_only_when_its_connection_failed(
    upstream: FakeUpstream, status: int, connections: int
) -> None:
    # the documented settings, with a 1 s read timeout instead of 30 s to keep the test short
    location = GUICHET_LOCATION.replace("proxy_read_timeout 30s;", "proxy_read_timeout 1s;")
    assert location != GUICHET_LOCATION
    nginx = Nginx(upstream.port, location=location).start()
    try:
        r = httpx.post(f"{nginx.url}/deconnexion", data={"csrf_token": "x"}, timeout=30)
        assert r.status_code == status
        assert upstream.connections == connections, nginx.errors()[-1500:]
    finally:
        nginx.stop()


def test_the_documented_settings_are_the_tested_ones() -> None:
    page = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert GUICHET_UPSTREAM in page and GUICHET_LOCATION in page, "docs/deploy.md and the tested nginx settings differ"
    read_timeout = int(re.search(r"proxy_read_timeout (\d+)s;", GUICHET_LOCATION).group(1))  # type: ignore[union-attr]
    # a request may outlive nginx's patience during a restart, never the other way round: nginx
    # would see a closed connection after the request ran, and retry it
    assert GRACEFUL_SHUTDOWN_SECONDS > read_timeout
    stop = int(re.search(r"TimeoutStopSec=(\d+)", page).group(1))  # type: ignore[union-attr]
    assert stop > GRACEFUL_SHUTDOWN_SECONDS, "systemd would SIGKILL workers still finishing their requests"
    assert "ExecReload=/bin/kill -HUP $MAINPID" in page
