"""The delivery_sms settings table."""
from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from guichet.core.config import SecretRef

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
    templates_dir: str | None = None
