"""The composition rule the MSA guides document."""

from __future__ import annotations

from guichet.core import CaisseInfo, PasswordRule, PluginContext, hookimpl
from guichet.core.defaults import CLASSES_MESSAGE


@hookimpl
def guichet_password_rules(caisse: CaisseInfo, context: PluginContext) -> list[PasswordRule]:
    min_length = context.config.passwords.min_length or 8
    rules = [
        PasswordRule(
            kind="min_length",
            value=min_length,
            message_fr=CLASSES_MESSAGE
            if min_length == 8
            else f"Votre mot de passe doit contenir au moins {min_length} caractères.",
        )
    ]
    if context.config.passwords.require_classes is not False:
        rules.append(PasswordRule(kind="classes", message_fr=CLASSES_MESSAGE))
    return rules
