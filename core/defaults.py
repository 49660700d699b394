"""Fallback hook implementations, all ``trylast``: guichet's own defaults follow ASVS 5.0 L2 / NIST 800-63B."""

from __future__ import annotations

import zxcvbn

from guichet.core import hookimpl
from guichet.core.config import CaisseInfo
from guichet.core.context import PluginContext
from guichet.core.structs import CodePolicy, PasswordContext, PasswordRule, Strength

# part of the plugin API (guichet.core.PUBLIC_MODULES): a plugin may build on the defaults and reuse their wording
__all__ = [
    "CLASSES_MESSAGE",
    "STRENGTH_LABELS",
    "guichet_code_policy",
    "guichet_password_rules",
    "guichet_password_strength",
]

STRENGTH_LABELS = ("faible", "moyen", "fort")


@hookimpl(trylast=True)
def guichet_code_policy(purpose: str, caisse: CaisseInfo) -> CodePolicy:
    """Six digits, ten minutes, three tries (ASVS 6.5.4 / 6.5.5)."""
    return CodePolicy(length=6, lifetime_minutes=10, max_attempts=3, resend_cooldown_seconds=60)


@hookimpl(trylast=True)
def guichet_password_rules(caisse: CaisseInfo, context: PluginContext) -> list[PasswordRule]:
    """Length and blocklists, no composition rules: NIST 800-63B's advice."""
    configured = context.config.passwords
    min_length = configured.min_length or 12
    rules = [
        PasswordRule(
            kind="min_length",
            value=min_length,
            message_fr=f"Votre mot de passe doit contenir au moins {min_length} caractères.",
        ),
        PasswordRule(
            kind="max_length", value=128, message_fr="Votre mot de passe ne doit pas dépasser 128 caractères."
        ),
        PasswordRule(kind="blocklist", message_fr="Ce mot de passe est trop courant. Choisissez-en un autre."),
        PasswordRule(
            kind="context",
            message_fr="Votre mot de passe ne doit pas contenir votre nom, votre prénom, votre numéro "
            "de Sécurité Sociale, votre date de naissance ni le nom de votre caisse.",
        ),
    ]
    if configured.require_classes:
        rules.append(PasswordRule(kind="classes", message_fr=CLASSES_MESSAGE))
    return rules


CLASSES_MESSAGE = (
    "Votre mot de passe doit contenir un minimum de 8 caractères en combinant des chiffres, "
    "des majuscules, des minuscules et des caractères spéciaux"
)


@hookimpl(trylast=True)
def guichet_password_strength(password: str, context: PasswordContext) -> Strength:
    """zxcvbn's score folded into three levels, with the person's own words as a dictionary."""
    if not password:
        return Strength(level=0, label_fr=STRENGTH_LABELS[0])
    score = zxcvbn.zxcvbn(password[:128], user_inputs=[*context.words, context.caisse_name])["score"]
    level = 0 if score <= 1 else 1 if score <= 3 else 2
    return Strength(level=level, label_fr=STRENGTH_LABELS[level])
