"""MSA Sud Aquitaine's code policies, from its forgotten-password guide."""

from __future__ import annotations

from guichet.core import CaisseInfo, CodePolicy, hookimpl


@hookimpl
def guichet_code_policy(purpose: str, caisse: CaisseInfo) -> CodePolicy | None:
    if purpose == "recovery":
        # "Vous recevez un code de sécurité à 4 chiffres (valable 30mn)"
        return CodePolicy(
            length=4, lifetime_minutes=30, max_attempts=3, resend_cooldown_seconds=60, channels=("sms", "email")
        )
    return None
