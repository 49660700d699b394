"""The Redis client of the session and counter stores, with the timeout that says Redis is down."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis.asyncio as redis


def redis_client(url: str, *, password: str | None, timeout_seconds: float) -> redis.Redis:
    """A client whose connect and each command's reply time out after ``timeout_seconds``: an outage."""
    import redis.asyncio as redis  # only where Redis is used: the client costs a worker about 19 MiB

    return redis.Redis.from_url(
        url, password=password, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds
    )
