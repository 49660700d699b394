"""The delivery_email settings table."""
from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from guichet.core.config import SecretRef


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
