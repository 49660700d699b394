"""Real servers a fault test starts, breaks and brings back: a PostgreSQL cluster of its own, a
redis-server, and the app itself over HTTP (in the test's event loop).

Each server lives in a temporary folder, on a free port, and is always stopped at the end; when
what it needs is missing (not root, no initdb, no redis-server) the test is skipped with a clear
line, or fails under GUICHET_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from guichet.core.config import CaisseConfig
from tests.conftest import Portal, free_port, service_missing


def _wait_for_port(port: int, proc: subprocess.Popen[Any] | None, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not listen on port {port} in {timeout} s")


class RedisServer:
    """``redis-server`` on a free loopback port, without persistence (as docs/deploy.md allows)."""

    def __init__(self) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            service_missing("redis-server (apt-get install redis-server)")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="guichet-redis-"))
        self.proc: subprocess.Popen[Any] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        assert self.binary is not None
        log = (self.dir / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=log,
            stderr=log,
        )
        _wait_for_port(self.port, self.proc, "redis-server")
        return self

    def kill(self) -> None:
        """Gone at once (SIGKILL): connections refused from now on."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def pause(self) -> None:
        """Hung (SIGSTOP): connections accepted by the kernel, never answered."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresServer:
    """A throwaway PostgreSQL cluster (initdb, pg_ctl as the postgres user) on a free port."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            service_missing("PostgreSQL server binaries (apt-get install postgresql)")
        if os.geteuid() != 0 or shutil.which("runuser") is None:
            service_missing("root, to run initdb and pg_ctl as the postgres user")
        self.bin = Path(found[-1]).parent
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="guichet-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self._as_postgres(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"
        )

    def _as_postgres(self, *args: str) -> None:
        done = subprocess.run(["runuser", "-u", "postgres", "--", *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise AssertionError(f"{args[0]} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> "PostgresServer":
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.dir / "log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        return self

    def stop(self) -> None:
        """A fast shutdown: sessions are ended, as in a restart or a failover."""
        if (self.data / "postmaster.pid").exists():
            self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class HashingHeld:
    """Every argon2id thread busy until released: a request that needs one waits, as under load."""

    def __init__(self, portal: Portal) -> None:
        self.pool = portal.services.passwords._threads
        self.release = threading.Event()
        running = threading.Semaphore(0)

        def hold() -> None:
            running.release()
            self.release.wait()

        self.blockers = [self.pool.submit(hold) for _ in range(self.pool._max_workers)]
        # until every thread runs a blocker, the blockers themselves sit in the queue and would look
        # like a request waiting for a thread
        for _ in self.blockers:
            if not running.acquire(timeout=10):
                raise AssertionError("the hashing threads did not start")

    async def until_a_request_waits(self) -> None:
        for _ in range(2000):
            if self.pool._work_queue.qsize() > 0:
                return
            await asyncio.sleep(0.005)
        raise AssertionError("the slow request never asked for a hashing thread")

    def let_go(self) -> None:
        self.release.set()


@contextlib.asynccontextmanager
async def running_portal(config: CaisseConfig, clock: Any) -> AsyncIterator[Portal]:
    """The app on ``config`` (lifespan entered, schema created), with a Portal driving it over HTTP."""
    from guichet.web.app import create_app

    app = create_app(config, clock=clock, run_outbox_worker=False)
    started, stop = asyncio.Event(), asyncio.Event()

    async def run_lifespan() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(run_lifespan())
    await asyncio.wait([task, asyncio.create_task(started.wait())], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    await app.state.services.database.upgrade()
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("203.0.113.7", 40000)),
        base_url="http://127.0.0.1:8000",
        follow_redirects=False,
    )
    try:
        yield Portal(app, client)
    finally:
        await client.aclose()
        stop.set()
        await task


def another_client(portal: Portal) -> Portal:
    """A second browser on the same app."""
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=portal.app, client=("203.0.113.8", 40000)),
        base_url="http://127.0.0.1:8000",
        follow_redirects=False,
    )
    return Portal(portal.app, client)
