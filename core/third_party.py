"""Third parties' requests ("Autre" on "Vous êtes..."): stored, then approved or rejected by hand.

A tiers déclarant, a tiers de paiement or a partner of the action sociale does not get an account
online: it leaves a request, the caisse checks the documents it asks for, and an agent decides with
``guichet requests approve|reject N``. An approval creates the account (its identifier is the
SIRET, or one the caisse issues), sends the temporary password by post to the structure's address
and tells the contact by email; the first login then goes as everyone's (personalisation, contact
confirmation). A rejection sends a letter with the reason.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from guichet.core.errors import StepError
from guichet.core.identifiers import parse_email, parse_name, parse_phone, parse_siret

if TYPE_CHECKING:  # annotations only
    from guichet.core.database import Database
    from guichet.core.services import Services

STATES = ("pending", "approved", "rejected")


class StructureKind(msgspec.Struct, frozen=True, kw_only=True):
    """A kind of third-party structure, with what the caisse will ask of it (French, shown on the page)."""

    code: str
    label_fr: str
    instructions_fr: str


STRUCTURE_KINDS: dict[str, StructureKind] = {
    kind.code: kind
    for kind in (
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
    )
}


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
    address: tuple[str, ...] = ()
    account_id: int | None = None


ADDRESS_LINE = 38  # what a window envelope shows per line (delivery_postal checks it again)


def _address_line(raw: str, field: str, label: str, *, required: bool) -> str:
    text = unicodedata.normalize("NFC", " ".join(raw.split()))
    if not text:
        if required:
            raise StepError(field, "Veuillez saisir l'adresse de la structure (numéro et voie).")
        return ""
    if any(unicodedata.category(c)[0] == "C" for c in text):
        raise StepError(field, f"Le {label} contient des caractères non autorisés.")
    if len(text) > ADDRESS_LINE:
        raise StepError(field, f"Le {label} ne doit pas dépasser {ADDRESS_LINE} caractères, comme sur une enveloppe.")
    return text


def _postal_code(raw: str) -> str:
    code = "".join(raw.split())
    if not re.fullmatch(r"[0-9]{5}", code, re.ASCII):
        raise StepError("postal_code", "Le code postal comporte 5 chiffres.")
    return code


def _city(raw: str) -> str:
    town = unicodedata.normalize("NFC", " ".join(raw.split())).upper()
    if not town:
        raise StepError("city", "Veuillez saisir la ville.")
    if any(unicodedata.category(c)[0] == "C" for c in town) or len(town) > ADDRESS_LINE - 6:
        raise StepError("city", f"La ville ne doit pas dépasser {ADDRESS_LINE - 6} caractères.")
    return town


def parse_postal_address(
    street: str, extra: str, postal_code: str, city: str
) -> tuple[tuple[str, ...], dict[str, str]]:
    """The structure's address as a window envelope prints it (complement, street, "CODE VILLE"), and
    the French error of each field at fault.

    The approval's letter carries a password: an address that would be cut or misread is refused
    when typed, not at the mail room.
    """
    errors: dict[str, str] = {}
    values: dict[str, str] = {}
    parsers: tuple[tuple[str, Callable[[], str]], ...] = (
        ("address_extra", lambda: _address_line(extra, "address_extra", "complément d'adresse", required=False)),
        ("address_street", lambda: _address_line(street, "address_street", "adresse", required=True)),
        ("postal_code", lambda: _postal_code(postal_code)),
        ("city", lambda: _city(city)),
    )
    for field, parse in parsers:
        try:
            values[field] = parse()
        except StepError as error:
            errors[error.field] = error.message_fr
    if errors:
        return (), errors
    lines = [values["address_extra"], values["address_street"], f"{values['postal_code']} {values['city']}"]
    return tuple(line for line in lines if line), {}


def _text(raw: str, field: str, label: str, limit: int) -> str:
    text = parse_name(raw, field, label)
    if len(text) > limit:
        raise StepError(field, f"Ce champ ne doit pas dépasser {limit} caractères.")
    return text


async def create_request(
    database: "Database",
    *,
    structure_kind: str,
    structure_name: str,
    siret: str,
    contact_name: str,
    email: str,
    phone: str,
    now: dt.datetime,
    address: tuple[str, ...] = (),
) -> int:
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
        address="\n".join(address),
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
    return [
        ThirdPartyRequestView(
            id=row["id"],
            state=row["state"],
            created_at=row["created_at"],
            structure_kind=row["structure_kind"],
            structure_name=row["structure_name"],
            siret=row["siret"],
            contact_name=row["contact_name"],
            email=row["email"],
            phone=row["phone"],
            note=row["note"],
            decided_at=row["decided_at"],
            address=tuple(line for line in (row["address"] or "").split("\n") if line),
            account_id=row["account_id"],
        )
        for row in await query.run()
    ]


# --- the decision, carried through -------------------------------------------------------------------


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """What ``approve_request`` or ``reject_request`` did; ``refused`` (English, for the agent) when nothing."""

    done: bool
    refused: str = ""
    account_id: int | None = None
    identifier: str = ""


NOT_PENDING = "is not pending (already decided, or no such request)"


async def _pending(services: "Services", id: int) -> dict[str, Any] | None:
    t = services.database.t.ThirdPartyRequest
    rows = await t.select().where((t.id == id) & (t.state == "pending")).run()
    return rows[0] if rows else None


def _letter_recipient(row: dict[str, Any]) -> Any:
    from guichet.core.structs import PostalAddress, Recipient

    lines = tuple(line for line in (row["address"] or "").split("\n") if line)
    return Recipient(name=row["structure_name"], address=PostalAddress(lines=lines))


async def approve_request(services: "Services", id: int, *, note: str = "") -> Decision:
    """Approve a pending request: its account, the temporary password by post, an email, the audit.

    Everything happens in one transaction that starts with the conditional state change, so two
    agents approving at once (or one twice) create one account and send one letter. The identifier
    is the SIRET when the caisse says so and no account holds it yet (a company may also be an
    employer with its own account); otherwise one the caisse issues (``T`` and 10 digits).
    """
    from guichet.core.database import INTEGRITY_ERRORS
    from guichet.core.flows.common import account_by_identifier, french_date, letter_channel, notify, temporary_expiry
    from guichet.core.identifiers import ISSUED_KIND, mask_identifier, new_issued_identifier
    from guichet.core.structs import EMAIL, PASSWORD, PasswordContext, Recipient

    row = await _pending(services, id)
    if row is None:
        return Decision(done=False, refused=NOT_PENDING)
    if not (row["address"] or "").strip():
        return Decision(
            done=False,
            refused="has no postal address: the temporary password cannot be sent "
            "(ask the structure to make a new request)",
        )
    status = next((s for s in services.host.statuses() if s.third_party), None)
    if status is None:
        return Decision(done=False, refused="no status of this caisse is for third parties")
    channel = letter_channel(services, PASSWORD)
    context = PasswordContext(
        words=(row["structure_name"], row["siret"], row["contact_name"]), caisse_name=services.config.caisse.name
    )
    temporary = services.passwords.temporary_password(context)
    password_hash = await services.passwords.hash(temporary)
    use_siret = (
        services.config.third_parties.identifier == "siret"
        and await account_by_identifier(services, row["siret"]) is None
    )
    for attempt in range(5):
        identifier, kind = (
            (row["siret"], "siret") if use_siret and attempt == 0 else (new_issued_identifier(), ISSUED_KIND)
        )
        now = services.now()
        expires = temporary_expiry(services, channel)
        t, a = services.database.t.ThirdPartyRequest, services.database.t.Account
        try:
            async with services.database.transaction():
                claimed = await (
                    t.update({t.state: "approved", t.decided_at: now, t.note: note[:300]})
                    .where((t.id == id) & (t.state == "pending"))
                    .returning(t.id)
                    .run()
                )
                if not claimed:
                    return Decision(done=False, refused=NOT_PENDING)
                rows = (
                    await a.insert(
                        a(
                            identifier_kind=kind,
                            identifier=identifier,
                            status=status.code,
                            last_name=row["structure_name"],
                            first_name="",
                            email=row["email"],
                            email_verified=False,
                            landline=row["phone"] or None,
                            password_hash=password_hash,
                            password_is_temporary=True,
                            temporary_expires_at=expires,
                            credentials_version=1,
                            created_at=now,
                        )
                    )
                    .returning(a.id)
                    .run()
                )
                account_id = int(rows[0]["id"])
                await t.update({t.account_id: account_id}).where(t.id == id).run()
                # the identifier in full: a caisse-issued one is known from this letter only
                await services.enqueue(
                    channel=channel,
                    template="third_party_password",
                    recipient=_letter_recipient(row),
                    expires_at=expires,
                    payload={
                        "password": temporary,
                        "expires_on": french_date(expires),
                        "identifier": identifier,
                        "structure_name": row["structure_name"],
                    },
                )
                await notify(
                    services,
                    template="third_party_approved_notice",
                    recipient=Recipient(name=row["contact_name"], email=row["email"]),
                    kinds=(EMAIL,),
                    payload={"structure_name": row["structure_name"], "request_number": id},
                )
                await services.audit(
                    "third_party.approved",
                    account_id=account_id,
                    subject=mask_identifier(row["siret"]),
                    client="cli",
                    request=id,
                    identifier_kind=kind,
                )
        except INTEGRITY_ERRORS:
            continue  # the identifier was taken a moment ago (a registration, a parallel issue): another
        return Decision(done=True, account_id=account_id, identifier=identifier)
    return Decision(done=False, refused="no free identifier could be issued; try again")


async def reject_request(services: "Services", id: int, *, reason: str) -> Decision:
    """Reject a pending request and send the structure a letter with ``reason``; audited."""
    from guichet.core.flows.common import french_date, letter_channel
    from guichet.core.identifiers import mask_identifier
    from guichet.core.structs import LETTER

    reason = " ".join(reason.split())
    if not reason:
        return Decision(done=False, refused="needs a reason (--note), which the letter gives")
    row = await _pending(services, id)
    if row is None:
        return Decision(done=False, refused=NOT_PENDING)
    has_address = bool((row["address"] or "").strip())
    t = services.database.t.ThirdPartyRequest
    async with services.database.transaction():
        claimed = await (
            t.update({t.state: "rejected", t.decided_at: services.now(), t.note: reason[:300]})
            .where((t.id == id) & (t.state == "pending"))
            .returning(t.id)
            .run()
        )
        if not claimed:
            return Decision(done=False, refused=NOT_PENDING)
        if has_address:
            await services.enqueue(
                channel=letter_channel(services, LETTER),
                template="third_party_rejected_letter",
                recipient=_letter_recipient(row),
                payload={
                    "reason": reason[:300],
                    "request_number": id,
                    "requested_on": french_date(row["created_at"]),
                    "structure_name": row["structure_name"],
                },
            )
        await services.audit(
            "third_party.rejected", subject=mask_identifier(row["siret"]), client="cli", request=id, letter=has_address
        )
    return Decision(done=True)
