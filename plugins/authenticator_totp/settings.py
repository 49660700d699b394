"""The authenticator_totp settings table."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec


class TotpSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    issuer: Annotated[str, msgspec.Meta(min_length=1, max_length=60, pattern=r"^[^:]+$")] | None = None
    digits: Literal[6, 8] = 6
    period: Literal[30, 60] = 30
