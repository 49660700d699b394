"""Keys derived from the caisse's secret key, one per use, with the previous keys kept for rotation."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from guichet.core.config import CaisseConfig


@functools.lru_cache(maxsize=128)
def _derive(secret: str, purpose: str) -> bytes:  # cached: HKDF on every CSRF token and HMAC cost ~1.5 % of a request
    return HKDF(algorithm=SHA256(), length=32, salt=b"guichet", info=purpose.encode()).derive(secret.encode())


class Keys:
    """HMAC and encryption keys: the current one signs, every known one verifies or decrypts."""

    def __init__(self, secret: str, previous: list[str] | None = None) -> None:
        if len(secret) < 32:
            raise ValueError("the secret key must be at least 32 characters")
        self._secrets = [secret, *(previous or [])]

    @classmethod
    def from_config(cls, config: CaisseConfig) -> "Keys":
        return cls(config.security.secret_key.resolve(), [r.resolve() for r in config.security.previous_secret_keys])

    def hmacs(self, purpose: str, message: str) -> list[str]:
        """The HMAC of ``message`` under every known key, the current key first."""
        return [hmac.new(_derive(s, purpose), message.encode(), hashlib.sha256).hexdigest() for s in self._secrets]

    def hmac(self, purpose: str, message: str) -> str:
        return self.hmacs(purpose, message)[0]

    def matches(self, purpose: str, message: str, expected: str) -> bool:
        """Constant-time comparison against every known key."""
        return any(hmac.compare_digest(candidate, expected) for candidate in self.hmacs(purpose, message))

    def seal(self, plaintext: bytes, purpose: str = "outbox") -> str:
        """AES-GCM under a key of its own per purpose: what is sealed for one use opens for no other."""
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(_derive(self._secrets[0], purpose)).encrypt(nonce, plaintext, f"guichet-{purpose}".encode())
        return base64.urlsafe_b64encode(nonce + sealed).decode()

    def unseal(self, token: str, purpose: str = "outbox") -> bytes:
        raw = base64.urlsafe_b64decode(token.encode())
        for secret in self._secrets:
            try:
                return AESGCM(_derive(secret, purpose)).decrypt(raw[:12], raw[12:], f"guichet-{purpose}".encode())
            except InvalidTag:
                continue
        raise ValueError("no known key opens this message")


def token_digest(token: str) -> str:
    """What the database keeps of a session, flow or browser token: its SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """128 random bits and more: 32 bytes, URL-safe."""
    return secrets.token_urlsafe(32)
