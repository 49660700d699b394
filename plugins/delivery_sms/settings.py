"""The delivery_sms settings table."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

import msgspec

from guichet.core import SecretRef, SettingsNote, is_loopback_host

SETTINGS_KEY = "$.plugins.settings.delivery_sms"

DEFAULT_BODY = '{"to": {to}, "text": {text}, "from": {sender}}'


class SmsSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    url: Annotated[str, msgspec.Meta(pattern=r"^(demo|https?://.+)$")]
    method: Literal["POST", "PUT"] = "POST"
    headers: dict[str, str] = {}
    auth: SecretRef | None = None
    body_format: Literal["json", "form"] = "json"
    body_template: str = DEFAULT_BODY
    sender: Annotated[str, msgspec.Meta(max_length=20)] = ""
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=120)] = 10.0
    # the header that carries each message's idempotency key ("" sends none): the gateway must
    # send one SMS per key (docs/delivery.md)
    idempotency_header: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9-]{0,64}$")] = "Idempotency-Key"
    templates_dir: str | None = None


def settings_notes(settings: SmsSettings, mode: str) -> list[SettingsNote]:
    """In production, a gateway over plain http is refused (the token, the numbers and the codes
    would cross the network in clear), unless it runs on this machine."""
    parts = urlsplit(settings.url)
    if mode != "production" or parts.scheme != "http":
        return []
    host = parts.hostname or ""
    if is_loopback_host(host):
        return [
            SettingsNote(
                key=f"{SETTINGS_KEY}.url",
                message=(
                    f"SMS gateway over plain http on this machine ({host}): allowed, it must use TLS towards the "
                    "operator"
                ),
            )
        ]
    carrying = " and the auth token" if settings.auth is not None else ""
    return [
        SettingsNote(
            key=f"{SETTINGS_KEY}.url",
            refused=True,
            message=(
                f"an SMS gateway over plain http ({host}) is refused in production: the numbers, the codes{carrying} "
                "would cross the network in clear; use an https:// url (http:// is allowed only for a gateway on "
                "this machine: 127.0.0.1, ::1 or localhost)"
            ),
        )
    ]
