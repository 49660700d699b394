"""A software passkey for tests: what a phone's authenticator and its browser hand back to the site
(``credential.toJSON()``), built with ``cryptography`` (EC P-256, ES256) and ``cbor2``, with a
"none" attestation, the flags and the signature counter under the test's control."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SoftPasskey:
    """One discoverable credential. ``counting=False`` behaves as synced passkeys do (counter always 0)."""

    def __init__(self, origin: str, rp_id: str | None = None, *, counting: bool = True, synced: bool = True) -> None:
        self.origin = origin
        self.rp_id = rp_id or (origin.split("//", 1)[1].split(":", 1)[0])
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.id = os.urandom(32)
        self.counting = counting
        self.synced = synced
        self.counter = 0
        self.user_handle = b""

    def _cose(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})

    def _flags(self, verified: bool) -> int:
        return UP | (UV if verified else 0) | ((BE | BS) if self.synced else 0)

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": origin or self.origin, "crossOrigin": False}
        ).encode()

    def create(
        self, options: dict[str, Any], *, verified: bool = True, origin: str | None = None, rp_id: str | None = None
    ) -> str:
        """navigator.credentials.create() with these options (the JSON the server sent): the JSON to post."""
        self.user_handle = unb64url(options["user"]["id"])
        rp_hash = hashlib.sha256((rp_id or self.rp_id).encode()).digest()
        attested = bytes(16) + len(self.id).to_bytes(2, "big") + self.id + self._cose()
        auth_data = rp_hash + bytes([self._flags(verified) | AT]) + self.counter.to_bytes(4, "big") + attested
        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return json.dumps(
            {
                "id": b64url(self.id),
                "rawId": b64url(self.id),
                "type": "public-key",
                "authenticatorAttachment": "platform",
                "clientExtensionResults": {},
                "response": {
                    "clientDataJSON": b64url(client_data),
                    "attestationObject": b64url(attestation),
                    "transports": ["internal", "hybrid"],
                },
            }
        )

    def get(
        self,
        options: dict[str, Any],
        *,
        verified: bool = True,
        origin: str | None = None,
        rp_id: str | None = None,
        counter: int | None = None,
    ) -> str:
        """navigator.credentials.get() with these options: the JSON to post (the counter moves up first)."""
        if counter is not None:
            self.counter = counter
        elif self.counting:
            self.counter += 1
        rp_hash = hashlib.sha256((rp_id or self.rp_id).encode()).digest()
        auth_data = rp_hash + bytes([self._flags(verified)]) + self.counter.to_bytes(4, "big")
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        return json.dumps(
            {
                "id": b64url(self.id),
                "rawId": b64url(self.id),
                "type": "public-key",
                "authenticatorAttachment": "platform",
                "clientExtensionResults": {},
                "response": {
                    "clientDataJSON": b64url(client_data),
                    "authenticatorData": b64url(auth_data),
                    "signature": b64url(signature),
                    "userHandle": b64url(self.user_handle),
                },
            }
        )
