"""``guichet serve`` as a subprocess for the operations tests: start, wait until ready, stop
(SIGTERM, a timeout, then SIGKILL: a server that hangs on exit never hangs the test run)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
GUICHET = [str(BIN / "guichet")] if (BIN / "guichet").exists() else [sys.executable, "-m", "guichet.cli"]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Served:
    """One ``guichet serve`` process on a loopback port; its output goes to a file for the failure message."""

    def __init__(
        self, config: Path, *, port: int | None = None, workers: int = 1, env: dict[str, str] | None = None
    ) -> None:
        self.config = config
        self.port = port or free_port()
        self.workers = workers
        self.log = config.parent / f"serve-{self.port}.log"
        self.env = env or {}
        self.proc: subprocess.Popen[Any] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def start(self, timeout: float = 60) -> "Served":
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [
                *GUICHET,
                "serve",
                "--config",
                str(self.config),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"guichet serve exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/sante", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"guichet serve was not ready in {timeout} s:\n{self.output()[-3000:]}")

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 25) -> int:
        """The exit code; SIGKILL after ``timeout`` (and the test then fails on the code, -9)."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return -9

    def stop(self, timeout: float = 25) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.terminate()
        return self.wait(timeout)

    def __enter__(self) -> "Served":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class OutboxProcess:
    """One ``guichet outbox work`` process; its output goes to a file for the failure message."""

    def __init__(self, config: Path, *, name: str = "worker", env: dict[str, str] | None = None) -> None:
        self.config = config
        self.log = config.parent / f"{name}.log"
        self.env = env or {}
        self.proc: subprocess.Popen[Any] | None = None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def start(self) -> "OutboxProcess":
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [*GUICHET, "outbox", "work", "--config", str(self.config)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
        )
        return self

    def wait_for_output(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"the worker exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the worker never printed {text!r} in {timeout} s:\n{self.output()[-3000:]}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no graceful stop, leases left behind."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self, timeout: float = 25) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return -9

    def __enter__(self) -> "OutboxProcess":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def faketime(offset: str) -> dict[str, str]:
    """The environment that runs a process with its clock moved by ``offset`` ("+90s", "-31m").

    libfaketime (Debian's faketime package) is preloaded into the process itself: the ``faketime``
    command would run it as a child that a SIGTERM or SIGKILL to the command never reaches. Skips
    with a clear line when it is missing (fails where services are required).
    """
    import glob

    import pytest

    found = sorted(
        glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1") + glob.glob("/usr/lib/faketime/libfaketimeMT.so.1")
    )
    if not found:
        message = "libfaketime (Debian package faketime) is needed to run a process with a skewed clock"
        if os.environ.get("GUICHET_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{message}; it is required here (GUICHET_REQUIRE_SERVICES=1)")
        pytest.skip(f"{message}: apt-get install faketime")
    return {"LD_PRELOAD": found[0], "FAKETIME": offset, "FAKETIME_DONT_RESET": "1"}
