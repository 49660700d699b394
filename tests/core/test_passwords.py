"""Password hashing: argon2id in a bounded pool of threads of its own, equal work for unknown accounts."""

from __future__ import annotations

import asyncio
import threading

import pytest

from guichet.core.config import Argon2Config
from guichet.core.passwords import Passwords

FAST = Argon2Config(memory_kib=1024, time_cost=1, parallelism=1)  # the real parameters are the benches' business


def hashing_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("argon2")}


async def test_hashes_run_in_at_most_max_concurrent_threads_of_their_own() -> None:
    before = hashing_threads()
    passwords = Passwords(FAST, host=None, max_concurrent=2)  # type: ignore[arg-type]
    try:
        stored = await passwords.hash("Vert-Galet-42-Nuage!")
        results = await asyncio.gather(
            *(passwords.verify(stored, "Vert-Galet-42-Nuage!" if n % 2 else "faux") for n in range(12))
        )
        assert results == [bool(n % 2) for n in range(12)]
        # each hashing thread keeps its argon2id block: the pool's size bounds that memory
        assert len(hashing_threads() - before) == 2
    finally:
        passwords.close()


async def test_a_missing_or_broken_hash_verifies_false_after_the_same_work() -> None:
    passwords = Passwords(FAST, host=None, max_concurrent=1)  # type: ignore[arg-type]
    try:
        assert await passwords.verify(None, "anything") is False
        assert await passwords.verify("not-an-argon2-hash", "anything") is False
        assert await passwords.verify(await passwords.hash("x"), "y") is False
    finally:
        passwords.close()


async def test_a_closed_pool_refuses_new_work() -> None:
    passwords = Passwords(FAST, host=None, max_concurrent=1)  # type: ignore[arg-type]
    passwords.close()
    with pytest.raises(RuntimeError):
        await passwords.hash("x")
