"""The webhook settings table."""
from __future__ import annotations

from typing import Annotated

import msgspec

from guichet.core.config import SecretRef


class WebhookSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    url: Annotated[str, msgspec.Meta(pattern=r"^https?://.+")]
    secret: SecretRef
    channel: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{1,31}$")] = "webhook"
    label_fr: str = "service partenaire"
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=120)] = 10.0
