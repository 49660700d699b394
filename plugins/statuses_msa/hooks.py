"""The six statuses of the MSA's registration page."""

from __future__ import annotations

from guichet.core import Status, hookimpl

MSA_STATUSES = [
    Status(code="exploitant", label_fr="Exploitant agricole", identifier_kind="nir", questions=("payment",)),
    Status(code="entreprise", label_fr="Entreprise", identifier_kind="siret", questions=("payment",)),
    Status(
        code="particulier",
        label_fr="Particulier",
        hint_fr="salarié, retraité, collaborateur, ayant-droit, demandeur d'emploi, sans emploi...",
        identifier_kind="nir",
        questions=("vitale", "payment"),
    ),
    Status(
        code="employeur_jardinier",
        label_fr="Employeur de jardinier",
        hint_fr="en tant que particulier",
        identifier_kind="nir",
        questions=("payment",),
    ),
    Status(
        code="cotisant_solidarite", label_fr="Cotisant de solidarité", identifier_kind="nir", questions=("payment",)
    ),
    Status(
        code="autre",
        label_fr="Autre ...",
        hint_fr="tiers déclarants, tiers de paiement, partenaires de l'action sociale",
        identifier_kind="siret",
        third_party=True,
    ),
]


@hookimpl
def guichet_statuses() -> list[Status]:
    return list(MSA_STATUSES)
