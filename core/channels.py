"""Channels by capability: what a channel reaches and carries, and what each purpose needs of them.

Flows never choose a channel by its name: they ask which loaded channels can reach a recipient's
address for what a message carries (a code, a temporary password, a notice, a letter). A caisse
lists channel names per purpose (``[codes.<purpose>] channels``); the plugin host checks, once the
plugins are loaded, that every name is a loaded channel able to carry what the purpose sends, and
that every purpose has a channel at all (``PURPOSE_NEEDS``): a config that cannot deliver what its
flows need does not start.
"""

from __future__ import annotations

import inspect
from typing import Any

from guichet.core.errors import ConfigError
from guichet.core.identifiers import mask_email, mask_phone
from guichet.core.structs import CODE, EMAIL, LETTER, MOBILE, NOTICE, PASSWORD, POSTAL, Channel, Recipient

CARRIED = frozenset({CODE, PASSWORD, NOTICE, LETTER})
_DEFAULT_CARRIES = {POSTAL: frozenset({PASSWORD, LETTER})}
_DEFAULT = frozenset({CODE, PASSWORD, NOTICE})

# the messages core sends, and what each one carries (a channel must carry it to be given it)
TEMPLATE_CARRIES = {
    "login_code": CODE,
    "registration_code": CODE,
    "recovery_code": CODE,
    "contact_code": CODE,
    "temporary_password": PASSWORD,
    "password_changed_notice": NOTICE,
    "email_changed_notice": NOTICE,
    "mobile_changed_notice": NOTICE,
    "registration_attempt_notice": NOTICE,
    "password_reset_notice": NOTICE,
    "registration_letter": LETTER,
    "third_party_password": PASSWORD,
    "third_party_approved_notice": NOTICE,
    "third_party_rejected_letter": LETTER,
    "account_closed_notice": NOTICE,
    "account_closed_letter": LETTER,
    "recovery_codes_letter": LETTER,
    "authenticator_changed_notice": NOTICE,
}
# the kinds of address a person types (and proves with a code); every other kind comes from the registry
TYPED_KINDS = frozenset({EMAIL, MOBILE})
# The "what" of each purpose's messages: a code, then (registration, recovery) the temporary
# password on the same channel; contact changes prove a typed email or mobile.
PURPOSE_NEEDS: dict[str, tuple[frozenset[str], frozenset[str] | None]] = {
    "login": (frozenset({CODE}), None),
    "recovery": (frozenset({CODE, PASSWORD}), None),
    "registration": (frozenset({CODE, PASSWORD}), TYPED_KINDS),
    "contact_change": (frozenset({CODE}), TYPED_KINDS),
}
_WHAT = {CODE: "a security code", PASSWORD: "a temporary password", NOTICE: "a notice", LETTER: "a letter"}


def carries(channel: Channel) -> frozenset[str]:
    """What a channel delivers: its own ``carries``, or the default for the kind it reaches."""
    declared = getattr(channel, "carries", None)
    if declared is None:
        return _DEFAULT_CARRIES.get(channel.reaches, _DEFAULT)
    return frozenset(declared)


def destination_fr(channel: Channel, recipient: Recipient) -> str:
    """The masked destination a page shows for a message on ``channel`` ("j…e@exemple.fr")."""
    own = getattr(channel, "destination_fr", None)
    if callable(own):
        return str(own(recipient))
    if channel.reaches == EMAIL and recipient.email:
        return mask_email(recipient.email)
    if channel.reaches == MOBILE and recipient.mobile:
        return mask_phone(recipient.mobile)
    return ""


def check_channel(channel: Any, plugin: str) -> None:
    """Refuse, at start-up, a channel object that does not follow the Channel contract."""
    problems = []
    for attribute in ("name", "label_fr", "reaches"):
        if not isinstance(getattr(channel, attribute, None), str) or not getattr(channel, attribute):
            problems.append(f"{attribute} (a non-empty string)")
    if not inspect.iscoroutinefunction(getattr(channel, "send", None)):
        problems.append("send (an async method)")
    declared = getattr(channel, "carries", None)
    if declared is not None and not (isinstance(declared, (set, frozenset)) and set(declared) <= CARRIED):
        problems.append(f"carries (a frozenset of {', '.join(sorted(CARRIED))})")
    if problems:
        name = getattr(channel, "name", type(channel).__name__)
        raise ConfigError(
            f"plugin {plugin!r}: the channel {name!r} lacks {'; '.join(problems)} "
            "(see the Channel protocol in core/structs.py)",
            key="$.plugins.enabled",
        )


def purpose_problem(purpose: str, names: list[str], loaded: dict[str, Channel], *, explicit: bool) -> str | None:
    """Why the channels listed for ``purpose`` cannot serve it, or None when they can."""
    needed, kinds = PURPOSE_NEEDS[purpose]
    what = " and ".join(_WHAT[n] for n in sorted(needed))
    for name in names:
        channel = loaded.get(name)
        if channel is None:
            if explicit:
                return (
                    f"{purpose} lists the channel {name!r}, which no enabled plugin offers "
                    f"(loaded channels: {', '.join(sorted(loaded)) or 'none'})"
                )
            continue
        if explicit and not needed <= carries(channel):
            return f"{purpose} lists the channel {name!r}, which cannot carry {what}"
        if explicit and kinds is not None and channel.reaches not in kinds:
            return (
                f"{purpose} lists the channel {name!r}, which reaches {channel.reaches!r} addresses; "
                f"{purpose} codes go to an address the person types ({', '.join(sorted(kinds))})"
            )
    usable = [
        n
        for n in names
        if n in loaded and needed <= carries(loaded[n]) and (kinds is None or loaded[n].reaches in kinds)
    ]
    if not usable:
        return (
            f"{purpose} has no channel that can carry {what}"
            + (f" to an address the person types ({', '.join(sorted(kinds))})" if kinds else "")
            + f"; listed: {', '.join(names) or 'none'}; loaded channels: {', '.join(sorted(loaded)) or 'none'}"
        )
    return None
