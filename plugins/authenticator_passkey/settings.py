"""The authenticator_passkey settings table, and the relying party it gives for a deployment."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

import msgspec

from guichet.core import CaisseConfig, SettingsNote

SETTINGS_KEY = "$.plugins.settings.authenticator_passkey"
LOCALHOST = "localhost"


class PasskeySettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # the domain passkeys are bound to ("monespace.msa.fr"); by default the host of server.public_url
    rp_id: str = ""
    # the addresses the pages are served from ("https://monespace.msa.fr"); by default server.public_url's
    origins: list[str] = []
    # what the passkey manager shows next to the person's name; by default the caisse's name
    rp_name: str = ""
    # how long the browser's dialog waits for the person
    timeout_seconds: Annotated[int, msgspec.Meta(ge=30, le=600)] = 300


@dataclass(frozen=True)
class RelyingParty:
    """Who the passkeys are for: the WebAuthn RP ID and the origins a ceremony may come from.

    ``any_local_port``: neither ``origins`` nor ``server.public_url`` is set and the RP ID is
    ``localhost`` (the demo, ``make run``), so ``http://localhost`` on any port is accepted: the port
    given to ``guichet serve --port`` is not in the config. Browsers refuse an IP address as an RP ID,
    so the demo is opened at http://localhost:8000 rather than http://127.0.0.1:8000 to use passkeys.
    """

    id: str
    name: str
    origins: tuple[str, ...]
    any_local_port: bool = False

    def accepts(self, origin: str) -> bool:
        if origin in self.origins:
            return True
        if not self.any_local_port:
            return False
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.hostname == LOCALHOST and parts.path == ""


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` as a browser writes it in clientDataJSON's origin."""
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    port = f":{parts.port}" if parts.port and parts.port != default else ""
    return f"{parts.scheme}://{(parts.hostname or '').lower()}{port}"


def relying_party(settings: PasskeySettings, config: CaisseConfig) -> RelyingParty:
    public_url = config.server.public_url
    rp_id = (settings.rp_id or urlsplit(public_url).hostname or LOCALHOST).lower()
    origins = tuple(origin_of(o) for o in settings.origins) or ((origin_of(public_url),) if public_url else ())
    return RelyingParty(
        id=rp_id,
        name=settings.rp_name or config.caisse.name,
        origins=origins,
        any_local_port=not origins and rp_id == LOCALHOST,
    )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def settings_notes(settings: PasskeySettings, config: CaisseConfig) -> list[SettingsNote]:
    """Refused: an IP address as RP ID (browsers refuse it), an origin outside the RP ID's domain (no
    passkey would ever work there), and in production an origin that is not https (except
    localhost) or no origin at all."""
    party = relying_party(settings, config)
    notes = []
    if _is_ip(party.id):
        notes.append(
            SettingsNote(
                key=f"{SETTINGS_KEY}.rp_id",
                refused=True,
                message=(
                    f"the passkeys' RP ID {party.id!r} is an IP address, which browsers refuse: set rp_id to the "
                    'site\'s domain (or "localhost" for a local demo, opened at http://localhost:PORT)'
                ),
            )
        )
    for i, origin in enumerate(party.origins):
        host = urlsplit(origin).hostname or ""
        key = f"{SETTINGS_KEY}.origins[{i}]" if settings.origins else "$.server.public_url"
        if host != party.id and not host.endswith("." + party.id):
            notes.append(
                SettingsNote(
                    key=key,
                    refused=True,
                    message=f"the origin {origin!r} is not on the passkeys' domain {party.id!r}: no passkey would work there",
                )
            )
        elif config.server.mode == "production" and not origin.startswith("https://") and host != LOCALHOST:
            notes.append(
                SettingsNote(
                    key=key,
                    refused=True,
                    message=(
                        f"the origin {origin!r} is not https: passkeys (and every login) need https in production "
                        "(only localhost may use http)"
                    ),
                )
            )
    if config.server.mode == "production" and not party.origins:
        notes.append(
            SettingsNote(
                key=f"{SETTINGS_KEY}.origins",
                refused=True,
                message="passkeys need the site's address in production: set server.public_url or origins",
            )
        )
    return notes
