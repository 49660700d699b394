"""A web worker loads what it uses: the Redis client only with Redis sessions or counters, httpx
only for a back-channel logout, neither pydantic nor attrs (Litestar's default plugins for them
serve nothing here). Each would cost every worker memory (15–19 MiB for the first two, ≈ 3 MiB for
pydantic; docs/benchmarks.md, "What was changed for efficiency")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from guichet.core.availability import is_store_failure

LAZY = ("redis", "httpx", "rich", "pygments")
ROOT = Path(__file__).resolve().parents[2]


def test_the_web_app_imports_neither_the_redis_client_nor_httpx() -> None:
    code = (
        "import sys, guichet.web.app, guichet.core.availability; "
        f"print(','.join(m for m in {LAZY!r} if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "", f"loaded at import: {loaded}"


def test_the_built_app_loads_neither_pydantic_nor_attrs() -> None:
    # the demo caisse's app, built as a worker builds it; piccolo requires pydantic, so it is
    # installed, and Litestar would load it (and attrs) for plugins guichet does not use
    code = (
        "import sys; from guichet.core.config import load_config; from guichet.web.app import create_app; "
        "app = create_app(load_config('config/demo.toml')); "
        "print(','.join(m for m in ('pydantic', 'attr', 'attrs') if m in sys.modules)); "
        "print(type(app).__name__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    loaded, app_class = done.stdout.split("\n")[:2]
    assert loaded == "", f"loaded by the app: {loaded}"
    assert app_class == "GuichetLitestar"


def test_redis_outages_are_still_outages_once_the_client_is_loaded() -> None:
    redis_errors = pytest.importorskip("redis.exceptions")
    assert is_store_failure(redis_errors.ConnectionError("down"))
    assert is_store_failure(redis_errors.TimeoutError("slow"))
    assert not is_store_failure(redis_errors.ResponseError("a bug, not an outage"))
