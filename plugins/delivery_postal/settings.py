"""The delivery_postal settings table."""

from __future__ import annotations

import msgspec

DEJAVU_DIR = "/usr/share/fonts/truetype/dejavu"


class PostalSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    spool_dir: str | None = None  # default: <server.spool_dir>/letters
    templates_dir: str | None = None
    font_dir: str = DEJAVU_DIR
    city: str = ""
