"""Per-status payment question settings."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

PaymentKind = Literal["benefit", "contributions_invoice", "salary_contributions"]


class PaymentQuestionSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    kind: PaymentKind
    window_months: Annotated[int, msgspec.Meta(ge=1, le=36)]
    tolerance: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,6}(\.[0-9]{1,2})?$")] = "0"


DEFAULTS: dict[str, PaymentQuestionSettings] = {
    "particulier": PaymentQuestionSettings(kind="benefit", window_months=6),
    "exploitant": PaymentQuestionSettings(kind="contributions_invoice", window_months=12),
    "cotisant_solidarite": PaymentQuestionSettings(kind="contributions_invoice", window_months=12),
    "entreprise": PaymentQuestionSettings(kind="salary_contributions", window_months=12),
    "employeur_jardinier": PaymentQuestionSettings(kind="salary_contributions", window_months=12),
}

LABELS = {
    "benefit": "Le montant d'un paiement MSA reçu dans les {months} derniers mois",
    "contributions_invoice": "Le montant d'une facture de cotisations payée au cours des {months} derniers mois",
    "salary_contributions": "Le montant des cotisations sur salaires payées au cours des {months} derniers mois",
}

HELP = {
    "benefit": "Une prestation versée par la MSA (allocation, pension, remboursement...) : son montant figure "
    "sur votre relevé de compte bancaire ou dans vos décomptes.",
    "contributions_invoice": "Le montant payé figure sur votre avis d'échéance ou votre relevé de compte cotisant.",
    "salary_contributions": "Le montant figure sur votre déclaration ou sur le relevé de vos paiements à la MSA.",
}
