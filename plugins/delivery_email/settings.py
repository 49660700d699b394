"""The delivery_email settings table."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from guichet.core import SecretRef, SettingsNote, is_loopback_host

SETTINGS_KEY = "$.plugins.settings.delivery_email"


class EmailSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    sender: Annotated[str, msgspec.Meta(min_length=3, max_length=200)]
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 587  # 0: the demo mailbox (demo mode only)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretRef | None = None
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=300)] = 20.0
    reply_to: str | None = None
    templates_dir: str | None = None


def settings_notes(settings: EmailSettings, mode: str) -> list[SettingsNote]:
    """In production, SMTP without TLS is refused (codes, temporary passwords and the SMTP password
    would cross the network in clear), unless the server is a relay on this machine."""
    if mode != "production" or settings.security != "none" or settings.port == 0:
        return []
    if is_loopback_host(settings.host):
        return [
            SettingsNote(
                key=f"{SETTINGS_KEY}.security",
                message=(
                    f"SMTP without TLS to a relay on this machine ({settings.host}): allowed, the relay must use "
                    "TLS towards the internet"
                ),
            )
        ]
    return [
        SettingsNote(
            key=f"{SETTINGS_KEY}.security",
            refused=True,
            message=(
                f"SMTP without TLS to {settings.host} is refused in production: codes, temporary passwords and the "
                'SMTP password would cross the network in clear; set security = "starttls" or "tls" '
                '("none" is allowed only for a relay on this machine: 127.0.0.1, ::1 or localhost)'
            ),
        )
    ]
