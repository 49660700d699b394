"""A web worker loads what it uses: the Redis client only with Redis sessions or counters, httpx
only for a back-channel logout. Each would cost every worker 15–19 MiB of memory
(docs/benchmarks.md, "What was changed for efficiency")."""

from __future__ import annotations

import subprocess
import sys

import pytest

from guichet.core.availability import is_store_failure

LAZY = ("redis", "httpx", "rich", "pygments")


def test_the_web_app_imports_neither_the_redis_client_nor_httpx() -> None:
    code = (
        "import sys, guichet.web.app, guichet.core.availability; "
        f"print(','.join(m for m in {LAZY!r} if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "", f"loaded at import: {loaded}"


def test_redis_outages_are_still_outages_once_the_client_is_loaded() -> None:
    redis_errors = pytest.importorskip("redis.exceptions")
    assert is_store_failure(redis_errors.ConnectionError("down"))
    assert is_store_failure(redis_errors.TimeoutError("slow"))
    assert not is_store_failure(redis_errors.ResponseError("a bug, not an outage"))
