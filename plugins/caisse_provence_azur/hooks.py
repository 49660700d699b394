"""MSA Provence Azur's code policies, from its guide "Mon espace privé : inscription et connexion"."""

from __future__ import annotations

from guichet.core import CaisseInfo, CodePolicy, hookimpl


@hookimpl
def guichet_code_policy(purpose: str, caisse: CaisseInfo) -> CodePolicy | None:
    if purpose == "login":
        # "Un code de sécurité vient de vous être envoyé à l'adresse ... Ce code est valable 15 minutes."
        return CodePolicy(
            length=6, lifetime_minutes=15, max_attempts=3, resend_cooldown_seconds=60, channels=("email",)
        )
    return None
