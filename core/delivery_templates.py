"""What the delivery channels share to render a message: the template folders and the values templates see."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from guichet.core.context import PluginContext
from guichet.core.errors import ConfigError, DeliveryError
from guichet.core.structs import Message

# part of the plugin API (guichet.core.PUBLIC_MODULES): channels render the core's messages with these
__all__ = ["SAMPLE_PAYLOAD", "TEMPLATES", "render", "template_context", "template_environment"]

# every message the core sends; each channel ships a template for those it can carry
TEMPLATES = (
    "login_code",
    "registration_code",
    "recovery_code",
    "contact_code",
    "temporary_password",
    "password_changed_notice",
    "email_changed_notice",
    "mobile_changed_notice",
    "registration_attempt_notice",
    "password_reset_notice",
    "registration_letter",
    "third_party_password",
    "third_party_approved_notice",
    "third_party_rejected_letter",
    "account_closed_notice",
    "account_closed_letter",
    "recovery_codes_letter",
    "authenticator_changed_notice",
)
# the longest values the core puts in each payload key, every key at once: a channel renders each of its
# templates with it at start-up to prove the texts fit (one SMS...), and the kit's conformance check sends it
SAMPLE_PAYLOAD: dict[str, Any] = {
    "code": "123456789012",
    "lifetime_minutes": 60,
    "password": "Ab3#kP9mQw2xZr",
    "expires_on": "31/12/2026",
    "masked_identifier": "185*******123",
    "new_email_masked": "j***n@exemple.fr",
    "new_mobile_masked": "06 xx xx xx 78",
    "registered_on": "31/12/2026",
    "identifier": "84216730600021",
    "structure_name": "S" * 120,
    "request_number": 999999,
    "requested_on": "31/12/2026",
    "reason": "R" * 300,
    "closed_on": "31/12/2026",
    "codes": ["ACDEF-34679"] * 10,
    "change": "removed",
    "authenticator": "Code de sécurité par e-mail ou SMS",
}


def template_context(context: PluginContext, message: Message) -> dict[str, Any]:
    """What every template sees: the payload's keys, ``caisse`` and ``recipient_name``."""
    caisse = context.config.caisse
    return {
        **message.payload,
        "caisse": {
            "name": caisse.name,
            "website": caisse.website,
            "colour": caisse.colour,
            "postal_address": list(caisse.postal_address),
            "assistance": {
                "phone": caisse.assistance.phone,
                "hours": caisse.assistance.hours,
                "email": caisse.assistance.email,
            },
        },
        "recipient_name": message.recipient.name,
    }


def template_environment(
    context: PluginContext, templates_dir: str | None, builtin: Path, *, setting: str
) -> jinja2.Environment:
    """The caisse's own folder first, then the built-in one; a value a template uses but lacks is an error.

    Autoescaping is on for ``.html`` templates only.
    """
    folders = []
    if templates_dir:
        override = context.config.path(templates_dir)
        if not override.is_dir():
            raise ConfigError(f"templates_dir {str(override)!r} is not a folder", key=setting)
        folders.append(str(override))
    folders.append(str(builtin))
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(folders),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        auto_reload=False,
    )  # no stat() of each template per message: edits need a restart


def render(env: jinja2.Environment, name: str, values: dict[str, Any], *, channel: str) -> str:
    """Render one template; a missing template or value is a permanent DeliveryError that shows no value."""
    try:
        return env.get_template(name).render(values)
    except jinja2.TemplateNotFound:
        raise DeliveryError(f"no {channel} template {name!r}", permanent=True) from None
    except jinja2.UndefinedError:
        raise DeliveryError(
            f"the {channel} template {name!r} needs a value the message lacks", permanent=True
        ) from None
