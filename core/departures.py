"""Where a caisse config may depart from the seeds (the MSA guides that specify guichet's pages).

One list, read by ``guichet config check`` (each key with this config's value) and written out as
docs/seed-departures.md; tests/core/test_departures.py fails when the page or the config drifts from it.
"""

from __future__ import annotations

import msgspec

from guichet.core.config import CaisseConfig

DOC_PATH = "docs/seed-departures.md"


class Departure(msgspec.Struct, frozen=True, kw_only=True):
    """One config key whose value can make the pages differ from what a seed shows."""

    key: str
    default: str  # guichet's default, when the key is left out
    seed: str  # what the seed says, and where


DEPARTURES: tuple[Departure, ...] = (
    Departure(
        key="citizen.confirm_contacts_after_recovery",
        default="true",
        seed='002, steps 5-6: after a recovery and the personalisation, "Confirmation de vos coordonnées"',
    ),
    Departure(key="citizen.code_help_url", default='"" (no link)', seed='000, the code page\'s "Tuto vidéo" link'),
    Departure(key="citizen.code_help_label", default='"Tuto vidéo"', seed="000, the code page's help link"),
    Departure(
        key="citizen.example_nir",
        default='"1 80 01 99 999 999" (fictitious: department 99, country 999)',
        seed='000, "Votre identifiant" (the guide shows a real person\'s card)',
    ),
    Departure(
        key="codes.login.length / lifetime_minutes / channels",
        default="6 digits, 10 minutes, email then SMS",
        seed="000: a code by email valid 15 minutes",
    ),
    Departure(
        key="codes.recovery.length / lifetime_minutes / channels",
        default="6 digits, 10 minutes, email, SMS",
        seed="002: 4 digits valid 30 minutes, by SMS or email",
    ),
    Departure(
        key="codes.registration.*, codes.contact_change.*",
        default="6 digits, 10 minutes",
        seed="000: a security code by email or SMS (length and lifetime not given)",
    ),
    Departure(
        key="passwords.min_length / require_classes",
        default="12 characters, no classes",
        seed="002: at least 8 characters mixing digits, upper and lower case and specials",
    ),
    Departure(
        key="statuses.<code>.questions",
        default="the status plugin's questions",
        seed="002: particulier: carte Vitale or a benefit in the last 6 months; exploitant: a contributions "
        "invoice in the last 12 months; entreprise, employeur de jardinier: salary contributions",
    ),
    Departure(
        key="security.identity_answers_per_identifier",
        default="3",
        seed="002: a wrong answer sends the password by post (no count given)",
    ),
    Departure(key="security.trusted_browser_days", default="30", seed='000: "navigateur de confiance" (no duration)'),
    Departure(
        key="passwords.temporary_lifetime_hours.<channel>",
        default="the channel's default",
        seed="000, 002: a temporary password (no lifetime given)",
    ),
    Departure(
        key="caisse.assistance",
        default="none (the block is hidden)",
        seed="000, 002: the Assistance Internet's phone, hours and email",
    ),
)


def citizen_values(config: CaisseConfig) -> list[tuple[str, str]]:
    """This config's ``[citizen]`` values, as ``config check`` prints them."""
    citizen = config.citizen
    return [
        ("citizen.confirm_contacts_after_recovery", "on" if citizen.confirm_contacts_after_recovery else "off"),
        ("citizen.code_help_url", citizen.code_help_url or "(none: the link is hidden)"),
        ("citizen.code_help_label", citizen.code_help_label),
        ("citizen.example_nir", citizen.example_nir),
    ]
