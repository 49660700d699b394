"""Third parties' requests ("Autre" on "Vous êtes..."): stored, then approved or rejected by hand.

A tiers déclarant, a tiers de paiement or a partner of the action sociale does not get an account
online: it leaves a request, the caisse checks the documents it asks for, and an agent decides with
``guichet requests approve|reject N``.
"""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import msgspec

from guichet.core.clock import Clock
from guichet.core.errors import StepError
from guichet.core.identifiers import parse_email, parse_name, parse_phone, parse_siret

if TYPE_CHECKING:  # annotations only
    from guichet.core.database import Database
    from guichet.core.events import Auditor

STATES = ("pending", "approved", "rejected")


class StructureKind(msgspec.Struct, frozen=True, kw_only=True):
    """A kind of third-party structure, with what the caisse will ask of it (French, shown on the page)."""

    code: str
    label_fr: str
    instructions_fr: str


STRUCTURE_KINDS: dict[str, StructureKind] = {kind.code: kind for kind in (
    StructureKind(
        code="tiers_declarant",
        label_fr="Tiers déclarant (centre de gestion, expert-comptable...)",
        instructions_fr=(
            "Vous déclarez et payez les cotisations pour le compte de vos clients. Après l'envoi de votre "
            "demande, la caisse vous contactera à l'adresse email indiquée et vous demandera : un extrait "
            "Kbis de moins de 3 mois (ou l'avis de situation au répertoire SIRENE) de votre structure, la "
            "liste des adhérents pour lesquels vous intervenez, et le mandat signé par chacun d'eux. Votre "
            "accès est ouvert une fois ces pièces vérifiées."
        ),
    ),
    StructureKind(
        code="tiers_paiement",
        label_fr="Tiers de paiement",
        instructions_fr=(
            "Vous recevez des paiements de la caisse pour le compte d'assurés (établissement de santé, "
            "pharmacie, bailleur...). Après l'envoi de votre demande, la caisse vous contactera à l'adresse "
            "email indiquée et vous demandera : un extrait Kbis de moins de 3 mois ou l'avis de situation "
            "SIRENE, un relevé d'identité bancaire au nom de la structure, et, le cas échéant, la convention "
            "de tiers payant signée avec la caisse. Votre accès est ouvert une fois ces pièces vérifiées."
        ),
    ),
    StructureKind(
        code="partenaire_action_sociale",
        label_fr="Partenaire de l'action sociale (structure d'aide à la personne, conseil départemental...)",
        instructions_fr=(
            "Vous accompagnez des adhérents de la MSA dans le cadre de l'action sociale. Après l'envoi de "
            "votre demande, la caisse vous contactera à l'adresse email indiquée et vous demandera : la "
            "convention de partenariat signée avec la caisse (ou, à défaut, l'agrément ou l'autorisation de "
            "votre structure), et la désignation de la personne habilitée à utiliser l'accès. Votre accès est "
            "ouvert une fois ces pièces vérifiées."
        ),
    ),
)}


class ThirdPartyRequestView(msgspec.Struct, frozen=True, kw_only=True):
    """One stored request, as ``guichet requests list`` shows it."""

    id: int
    state: str
    created_at: dt.datetime
    structure_kind: str
    structure_name: str
    siret: str
    contact_name: str
    email: str
    phone: str
    note: str
    decided_at: dt.datetime | None = None


def _text(raw: str, field: str, label: str, limit: int) -> str:
    text = parse_name(raw, field, label)
    if len(text) > limit:
        raise StepError(field, f"Ce champ ne doit pas dépasser {limit} caractères.")
    return text


async def create_request(database: "Database", *, structure_kind: str, structure_name: str, siret: str,
                         contact_name: str, email: str, phone: str, now: dt.datetime) -> int:
    """Store a pending request and return its number; every field is parsed here, StepError on bad input.

    :param structure_kind: a key of :data:`STRUCTURE_KINDS`.
    :param phone: optional; an empty string stores none.
    """
    if structure_kind not in STRUCTURE_KINDS:
        raise StepError("structure_kind", "Choisissez le type de votre structure.")
    row = dict(
        structure_kind=structure_kind,
        structure_name=_text(structure_name, "structure_name", "nom de structure", 120),
        siret=parse_siret(siret, "siret"),
        contact_name=_text(contact_name, "contact_name", "nom", 120),
        email=parse_email(email, "email", required=True) or "",
        phone=parse_phone(phone, "phone") or "",
        state="pending",
        created_at=now,
    )
    t = database.t.ThirdPartyRequest
    rows = await t.insert(t.from_dict(row)).returning(t.id).run()
    return int(rows[0]["id"])


async def list_requests(database: "Database", *, state: str | None) -> list[ThirdPartyRequestView]:
    """Requests in arrival order, all or those in one state."""
    if state is not None and state not in STATES:
        raise ValueError(f"unknown state {state!r}, expected one of {', '.join(STATES)}")
    t = database.t.ThirdPartyRequest
    query = t.select().order_by(t.id)
    if state is not None:
        query = query.where(t.state == state)
    return [ThirdPartyRequestView(id=row["id"], state=row["state"], created_at=row["created_at"],
                                  structure_kind=row["structure_kind"], structure_name=row["structure_name"],
                                  siret=row["siret"], contact_name=row["contact_name"], email=row["email"],
                                  phone=row["phone"], note=row["note"], decided_at=row["decided_at"])
            for row in await query.run()]


async def decide_request(database: "Database", id: int, *, approve: bool, note: str,
                         now: dt.datetime | None = None, auditor: "Auditor | None" = None) -> bool:
    """Approve or reject a pending request; False when it does not exist or was already decided.

    One conditional UPDATE: two agents deciding at once cannot both succeed. With an ``auditor``,
    the decision is stored as a ``third_party.decided`` event and passed to the observers.
    """
    at = now or Clock().now()
    t = database.t.ThirdPartyRequest
    rows = await (t.update({t.state: "approved" if approve else "rejected", t.decided_at: at, t.note: note[:300]})
                  .where((t.id == id) & (t.state == "pending"))
                  .returning(t.id, t.siret).run())
    if rows and auditor is not None:
        from guichet.core.identifiers import mask_identifier
        from guichet.core.structs import AuditEvent

        event = AuditEvent(kind="third_party.decided", at=at, subject=mask_identifier(str(rows[0]["siret"])),
                           details={"request": id, "decision": "approved" if approve else "rejected"})
        await auditor.record(event)
        auditor.publish([event])
    return len(rows) == 1
