"""Passwords: argon2id hashing off the event loop, the policy from the password hooks, temporary passwords."""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import secrets
import string
import time
import unicodedata
from typing import TYPE_CHECKING

import msgspec
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from zxcvbn.matching import RANKED_DICTIONARIES

from guichet.core.identifiers import fold_name
from guichet.core.structs import Measurement, PasswordContext, PasswordRule, Strength

if TYPE_CHECKING:
    from collections.abc import Callable

    from guichet.core.config import Argon2Config
    from guichet.core.plugins import PluginHost

# French-flavoured additions to zxcvbn's 30,000 most common passwords
_FRENCH_COMMON = frozenset(
    (
        "azerty",
        "azertyuiop",
        "motdepasse",
        "soleil",
        "doudou",
        "bonjour",
        "chouchou",
        "loulou",
        "marseille",
        "toulouse",
        "nicolas",
        "julien",
        "camille",
        "123soleil",
        "jetaime",
        "coucou",
    )
)
# the strength meter's own ranked dictionary of zxcvbn's 30,000 most common passwords: a frozenset
# copy of it would cost another 2 MiB per worker
_ZXCVBN_COMMON = RANKED_DICTIONARIES["passwords"]


def is_common(word: str) -> bool:
    return word in _ZXCVBN_COMMON or word in _FRENCH_COMMON


SPECIALS = "!#$%&()*+,-./:;<=>?@[]_{}~"
MAX_PASSWORD_LENGTH = 128


def normalise(password: str) -> str:
    """NFKC, so the same password typed on two keyboards gives the same bytes (SP 800-63B-4 §3.1.1.2)."""
    return unicodedata.normalize("NFKC", password)


class PolicyCheck(msgspec.Struct, frozen=True, kw_only=True):
    errors: tuple[str, ...]
    strength: Strength

    @property
    def ok(self) -> bool:
        return not self.errors


def _has_classes(password: str) -> bool:
    return (
        any(c.isdigit() for c in password)
        and any(c.isupper() for c in password)
        and any(c.islower() for c in password)
        and any(not c.isalnum() for c in password)
    )


def _stripped_core(password: str) -> str:
    """'Soleil2024!' -> 'soleil': catches a common word dressed up with digits and symbols."""
    return re.sub(r"[^a-z]", "", password.lower())


def _violates(rule: PasswordRule, password: str, context: PasswordContext) -> bool:
    if rule.kind == "min_length":
        return len(password) < rule.value
    if rule.kind == "max_length":
        return len(password) > (rule.value or MAX_PASSWORD_LENGTH)
    if rule.kind == "classes":
        return not _has_classes(password)
    if rule.kind == "blocklist":
        lowered = password.lower()
        core_word = _stripped_core(password)
        return is_common(lowered) or (
            len(core_word) >= 4 and is_common(core_word) and len(core_word) >= len(password) - 5
        )
    if rule.kind == "context":
        folded = fold_name(password)
        words = [fold_name(w) for w in (*context.words, context.caisse_name)]
        parts = [p for w in words for p in re.split(r"\s+", w) if p] + words
        return any(len(p) >= 4 and p in folded for p in parts)
    return False


class Passwords:
    """Hashing in a small pool of its own threads, and the caisse's policy.

    argon2id needs ``memory_kib`` of fresh memory per hash (19 MiB by default). The pool has
    exactly ``max_concurrent`` long-lived threads: glibc keeps each thread's block in that thread's
    arena and reuses it, so memory stays bounded at ``max_concurrent`` blocks and a hash never
    pays to fault 19 MiB of new pages in (about 5 ms of kernel time per hash, measured in
    docs/benchmarks.md). asyncio's default executor would spread hashes over many threads, each
    keeping a block of its own.
    """

    def __init__(self, params: "Argon2Config", host: "PluginHost", *, max_concurrent: int = 2) -> None:
        self.hasher = PasswordHasher(
            time_cost=params.time_cost, memory_cost=params.memory_kib, parallelism=params.parallelism
        )
        self.host = host
        self._threads = concurrent.futures.ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="argon2")
        # verified against when the identifier is unknown, so both cost the same time
        self._dummy_hash = self.hasher.hash(secrets.token_urlsafe(16))

    async def _in_pool(self, operation: str, function: "Callable[..., object]", *args: str) -> object:
        queued = time.perf_counter()

        measure = self.host.measure if self.host is not None else None  # None: a bare hasher (tests, tools)

        # one lane runs in this thread; with more, argon2's own threads do the work, which this
        # thread's CPU time would not show: no figure rather than a wrong one
        one_lane = self.hasher.parallelism == 1

        def run() -> object:
            start = time.perf_counter()
            if measure is not None:
                measure(Measurement(name="argon2_wait_seconds", value=start - queued))
            start_cpu = time.thread_time()  # after the hooks: their work is not the hash's
            try:
                return function(*args)
            finally:
                took_cpu, took = time.thread_time() - start_cpu, time.perf_counter() - start
                if measure is not None:
                    labels = {"operation": operation}
                    measure(Measurement(name="argon2_seconds", value=took, labels=labels))
                    if one_lane:  # this thread's own CPU: what the hash cost, beside the process's other work
                        measure(Measurement(name="argon2_cpu_seconds", value=took_cpu, labels=labels))

        return await asyncio.get_running_loop().run_in_executor(self._threads, run)

    async def hash(self, password: str) -> str:
        return str(await self._in_pool("hash", self.hasher.hash, normalise(password)))

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """Constant work whether or not there is a hash; never raises on a bad hash."""
        candidate = normalise(password)[: MAX_PASSWORD_LENGTH * 4]
        try:
            matched = await self._in_pool("verify", self.hasher.verify, stored_hash or self._dummy_hash, candidate)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return bool(matched) and stored_hash is not None

    def close(self) -> None:
        """Let the hashing threads end (a hash under way finishes first)."""
        self._threads.shutdown(wait=False, cancel_futures=True)

    def needs_rehash(self, stored_hash: str) -> bool:
        try:
            return self.hasher.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True

    def check(self, password: str, context: PasswordContext) -> PolicyCheck:
        """Every rule's message that the password breaks, and the meter's level."""
        password = normalise(password)
        errors = tuple(
            dict.fromkeys(rule.message_fr for rule in self.host.password_rules() if _violates(rule, password, context))
        )
        strength = self.host.password_strength(password[:MAX_PASSWORD_LENGTH], context)
        if errors and strength.level == 2:
            strength = Strength(level=1, label_fr="moyen")
        return PolicyCheck(errors=errors, strength=strength)

    def temporary_password(self, context: PasswordContext) -> str:
        """14 characters from ``secrets`` with every class, avoiding look-alikes; satisfies any shipped policy."""
        alphabet = "".join(c for c in string.ascii_letters + string.digits if c not in "Il1O0o")
        specials = "#%+-=?@"
        required = max((r.value for r in self.host.password_rules() if r.kind == "min_length"), default=0)
        length = max(14, required + 2)
        while True:
            chars = [secrets.choice(alphabet) for _ in range(length - 3)]
            chars += [
                secrets.choice(string.digits[2:]),
                secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ"),
                secrets.choice(specials),
            ]
            secrets.SystemRandom().shuffle(chars)
            candidate = "".join(chars)
            if self.check(candidate, context).ok:
                return candidate
