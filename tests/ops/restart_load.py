"""A restart of ``guichet serve`` behind Debian's nginx under continuous POST load, and what it lost.

Used by tests/ops/test_restart.py (the documented settings lose nothing) and by
bench/restart_loss.py (the figures before and after, in docs/deploy.md). The nginx settings
under test are ``GUICHET_LOCATION`` and ``GUICHET_UPSTREAM``, the same text docs/deploy.md shows.

A request is lost when the browser does not get the app's own answer: a connection error, or a
502/503/504 made by nginx because the upstream closed, refused or timed out.
"""

from __future__ import annotations

import asyncio
import collections
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.ops.serving import GUICHET, ROOT, Served, free_port

# --- the settings docs/deploy.md recommends (tests/ops/test_restart.py checks the page shows them) ----

GUICHET_UPSTREAM = """\
upstream guichet {
    server 127.0.0.1:8000 max_fails=0;
    # the same server again: nginx's one retry of a request whose connection failed goes to it
    server 127.0.0.1:8000 max_fails=0 backup;
}"""

GUICHET_LOCATION = """\
    location / {
        proxy_pass http://guichet;
        proxy_http_version 1.1;
        proxy_set_header Connection close;             # one connection per request: none is idle
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $remote_addr;   # replace, do not append a client's own value
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Request-Id $request_id;       # the same id in nginx's and guichet's logs
        proxy_connect_timeout 5s;
        proxy_read_timeout 30s;
        # a connection refused or reset before any answer is tried once more, POSTs included;
        # never a timeout (the request may be running) nor an answer of the app
        proxy_next_upstream error non_idempotent;
        proxy_next_upstream_tries 2;
    }"""

# What the deployment had: keep-alive connections to uvicorn, no retry (nginx's default).
KEEPALIVE_UPSTREAM = """\
upstream guichet {
    server 127.0.0.1:8000;
    keepalive 32;
}"""

KEEPALIVE_LOCATION = """\
    location / {
        proxy_pass http://guichet;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_read_timeout 30s;
    }"""


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)


class Nginx:
    """nginx in the foreground on a free port, its files in a folder of its own."""

    def __init__(
        self, upstream_port: int, *, upstream: str = GUICHET_UPSTREAM, location: str = GUICHET_LOCATION
    ) -> None:
        binary = nginx_binary()
        assert binary is not None
        self.binary = binary
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="guichet-nginx-"))
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.dir / sub).mkdir()
        user = "user root;" if os.geteuid() == 0 else ""
        upstream = upstream.replace("127.0.0.1:8000", f"127.0.0.1:{upstream_port}")
        conf = f"""
{user}
worker_processes 1;
daemon off;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {self.dir}/access.log;
    client_body_temp_path {self.dir}/body;
    proxy_temp_path {self.dir}/proxy;
    fastcgi_temp_path {self.dir}/fastcgi;
    uwsgi_temp_path {self.dir}/uwsgi;
    scgi_temp_path {self.dir}/scgi;
{textwrap.indent(upstream, "    ")}
    server {{
        listen 127.0.0.1:{self.port};
        client_max_body_size 64k;
{location}
    }}
}}
"""
        (self.dir / "nginx.conf").write_text(conf)
        self.proc: subprocess.Popen[Any] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def errors(self) -> str:
        path = self.dir / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> "Nginx":
        check = subprocess.run(
            [
                self.binary,
                "-t",
                "-p",
                str(self.dir),
                "-c",
                str(self.dir / "nginx.conf"),
                "-e",
                str(self.dir / "error.log"),
            ],
            capture_output=True,
            text=True,
        )
        assert check.returncode == 0, f"nginx -t: {check.stderr}"
        self.proc = subprocess.Popen(
            [self.binary, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"), "-e", str(self.dir / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # listening: nothing is sent upstream to find out
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise AssertionError(f"nginx did not start:\n{self.errors()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


# --- the app ------------------------------------------------------------------------------------------


def app_config(folder: Path) -> Path:
    """The demo caisse on a SQLite file of its own, schema made before the workers start."""
    from tests.conftest import TEST_SECRET

    path = folder / "caisse.toml"
    path.write_text(f"""
[caisse]
id = "restart"
name = "MSA Test"
postal_address = ["MSA Test", "1 rue de la Paix", "75002 PARIS"]

[plugins]
enabled = ["statuses_msa", "registry_tables", "identity_vitale", "identity_payment", "delivery_email",
           "delivery_postal", "password_msa"]

[plugins.settings.delivery_email]
host = "127.0.0.1"
port = 9
security = "none"
sender = "MSA Test <ne-pas-repondre@test.invalid>"

[plugins.settings.delivery_postal]
spool_dir = "{folder / "letters"}"

[security]
secret_key = {{ value = "{TEST_SECRET}" }}
trusted_proxies = ["127.0.0.1"]

[sessions]
secure_cookies = false

[database]
url = "sqlite:///{folder / "guichet.sqlite"}"

[server]
mode = "demo"
outbox_worker = false

[logging]
format = "text"
""")
    subprocess.run([*GUICHET, "db", "upgrade", "--config", str(path)], cwd=ROOT, check=True, capture_output=True)
    return path


def worker_pids(parent: int) -> set[int]:
    """The uvicorn workers of a ``guichet serve`` process (its spawned children)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"spawn_main" in cmdline:
            found.add(int(entry.name))
    return found


def restart_by_sighup(served: Served, workers: int, timeout: float = 120) -> None:
    """``systemctl reload guichet``: each worker replaced by a new one, started first, the socket kept."""
    assert served.proc is not None
    before = worker_pids(served.proc.pid)
    assert len(before) == workers, before
    served.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = worker_pids(served.proc.pid)
        if not (now & before) and len(now) == workers:
            return
        time.sleep(0.05)
    raise AssertionError(f"the workers were not all replaced in {timeout} s:\n{served.output()[-3000:]}")


def restart_by_stop_and_start(served: Served, timeout: float = 120) -> None:
    """``systemctl restart guichet``: the process stops (SIGTERM), then a new one starts on the port."""
    code = served.stop()
    assert code == 0, f"guichet serve exited with {code}"
    served.start(timeout)


# --- the load -----------------------------------------------------------------------------------------

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Tally:
    answered: int = 0
    lost: collections.Counter[str] = field(default_factory=collections.Counter)
    during_restart: int = 0  # requests sent while the restart was under way

    @property
    def sent(self) -> int:
        return self.answered + sum(self.lost.values())


async def post_loop(url: str, tally: Tally, stop: asyncio.Event, restarting: asyncio.Event) -> None:
    """One browser: its own cookies and CSRF token, POSTs one after the other until told to stop."""
    async with httpx.AsyncClient(base_url=url, timeout=60, follow_redirects=False) as client:
        page = await client.get("/connexion")
        token = CSRF.search(page.text)
        assert token, page.text[:500]
        while not stop.is_set():
            during = restarting.is_set()
            try:
                r = await client.post("/deconnexion", data={"csrf_token": token.group(1)})
                if r.status_code == 303:  # the app's own answer (a logout without a session: back home)
                    tally.answered += 1
                else:
                    tally.lost[f"HTTP {r.status_code}"] += 1
            except httpx.HTTPError as exc:
                tally.lost[type(exc).__name__] += 1
            if during:
                tally.during_restart += 1


async def restart_under_load(url: str, restart: Any, *, browsers: int = 8, settle: int = 200) -> Tally:
    """POSTs from ``browsers`` browsers before, during and after ``restart()`` (run in a thread)."""
    tally = Tally()
    stop, restarting = asyncio.Event(), asyncio.Event()
    loops = [asyncio.create_task(post_loop(url, tally, stop, restarting)) for _ in range(browsers)]
    try:
        while tally.sent < settle:  # warm: every browser is posting
            await asyncio.sleep(0.05)
        restarting.set()
        await asyncio.to_thread(restart)
        restarting.clear()
        target = tally.sent + settle  # and after: the new workers answer
        while tally.sent < target:
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*loops, return_exceptions=True)
    for task in loops:
        if task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    return tally
