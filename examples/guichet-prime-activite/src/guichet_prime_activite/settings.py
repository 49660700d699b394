"""The settings table of the prime d'activité question."""

from __future__ import annotations

from typing import Annotated

import msgspec


class PrimeActiviteSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    payments_csv: str
    window_months: Annotated[int, msgspec.Meta(ge=1, le=12)] = 3
