"""The webhook settings table."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from guichet.core import SecretRef


class WebhookSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    url: Annotated[str, msgspec.Meta(pattern=r"^https?://.+")]
    secret: SecretRef
    channel: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{1,31}$")] = "webhook"
    label_fr: str = "par le service partenaire"  # "Recevoir le code ...", "... vous a été envoyé ..."
    # the kind of address the receiver delivers to: "identifier" for a system of the caisse that knows
    # its people by their NIR or SIRET (a secure messaging), "email", "mobile"...
    reaches: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{1,31}$")] = "identifier"
    carries: frozenset[Literal["code", "password", "notice", "letter"]] = frozenset({"code", "password", "notice"})
    destination_fr: str = ""  # what the code page shows as the destination ("votre messagerie MSA")
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=120)] = 10.0
