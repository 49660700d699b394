"""What an online account holds, for its holder (RGPD articles 15 and 20), and its closure (article 17
as it applies to a public body: the online account goes, the caisse's registry and the security
journal stay).

The export is built field by field from an allow-list: a column added to a table later never leaks
into it (no password hash, code, token or credentials counter, whatever the tables hold).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import msgspec

from guichet.core.clock import PARIS
from guichet.core.identifiers import format_phone

if TYPE_CHECKING:  # annotations only
    from guichet.core.services import Services

RECENT_EVENTS = 50

# what the security journal's events mean to the person; an event without a label is not shown
EVENT_LABELS_FR = {
    "login.succeeded": "Connexion réussie",
    "login.failed": "Connexion refusée (identifiant ou mot de passe incorrect)",
    "code.sent": "Code de sécurité envoyé",
    "code.failed": "Code de sécurité incorrect",
    "code.expired": "Code de sécurité expiré",
    "code.locked": "Code de sécurité bloqué après trop d'essais",
    "password.changed": "Mot de passe modifié",
    "password.reset": "Mot de passe temporaire envoyé (mot de passe oublié)",
    "trusted_browser.added": "Navigateur de confiance ajouté",
    "trusted_browser.revoked": "Navigateur de confiance retiré",
    "trusted_browser.used": "Connexion depuis un navigateur de confiance",
    "registration.completed": "Espace privé créé",
    "registration.duplicate": "Nouvelle tentative d'inscription avec votre identifiant",
    "recovery.requested": "Mot de passe oublié : demande de code",
    "email.changed": "Adresse email modifiée",
    "mobile.changed": "Numéro de téléphone portable modifié",
    "contacts.confirmed": "Coordonnées confirmées",
    "logout": "Déconnexion",
    "third_party.approved": "Demande d'accès acceptée, espace privé créé",
    "account.exported": "Mes données téléchargées",
    "authenticator.verified": "Connexion confirmée par un moyen de connexion (clé d'accès, application…)",
    "authenticator.failed": "Moyen de connexion refusé",
    "authenticator.enrolled": "Moyen de connexion ajouté",
    "authenticator.removed": "Moyen de connexion supprimé",
}


class IdentityData(msgspec.Struct, frozen=True, kw_only=True):
    identifier: str
    identifier_kind: str  # "nir", "siret" or "tiers" (issued by the caisse)
    status: str
    last_name: str
    first_name: str
    birth_date: dt.date | None
    postal_address: list[str]  # as the caisse's registry knows it, where letters go


class ContactData(msgspec.Struct, frozen=True, kw_only=True):
    email: str | None
    email_verified: bool
    mobile: str | None
    mobile_verified: bool
    landline: str | None
    fax: str | None


class BrowserData(msgspec.Struct, frozen=True, kw_only=True):
    label: str
    added_at: dt.datetime
    last_used_at: dt.datetime | None
    expires_at: dt.datetime


class AuthenticatorData(msgspec.Struct, frozen=True, kw_only=True):
    """A passkey, an authenticator app, a set of recovery codes: what it is, never its secret."""

    kind: str  # its label: "Clé d'accès"
    label: str
    added_at: dt.datetime
    last_used_at: dt.datetime | None


class EventData(msgspec.Struct, frozen=True, kw_only=True):
    at: dt.datetime
    kind: str
    label_fr: str
    client_address: str


class AccountData(msgspec.Struct, frozen=True, kw_only=True):
    """The export: ``Mes données`` as a page and as a JSON file."""

    caisse: str
    exported_at: dt.datetime
    identity: IdentityData
    contacts: ContactData
    account_created_at: dt.datetime
    password_changed_at: dt.datetime | None
    password_is_temporary: bool
    contacts_confirmed_at: dt.datetime | None
    trusted_browsers: list[BrowserData]
    authenticators: list[AuthenticatorData]
    recent_security_events: list[EventData]


async def postal_address(services: "Services", account: dict[str, Any]) -> tuple[str, ...]:
    """Where letters to this account go: the registry's address, or for a third party the address
    of the request that created it."""
    if account["identifier_kind"] in ("nir", "siret"):
        record = await services.host.registry_lookup(account["identifier_kind"], account["identifier"])
        if record is not None and record.address is not None:
            return tuple(record.address.lines)
    t = services.database.t.ThirdPartyRequest
    rows = await t.select(t.address).where(t.account_id == account["id"]).limit(1).run()
    return tuple(line for line in (rows[0]["address"] if rows else "").split("\n") if line)


async def account_data(services: "Services", account: dict[str, Any]) -> AccountData:
    """Everything the account holds, as its holder may read it."""
    status = services.host.status(account["status"])
    b = services.database.t.TrustedBrowser
    now = services.now()
    browsers = await (
        b.select(b.label, b.created_at, b.last_used_at, b.expires_at)
        .where(
            (b.account_id == account["id"])
            & b.revoked_at.is_null()
            & (b.expires_at > now)
            & (b.credentials_version == account["credentials_version"])
        )
        .order_by(b.created_at, ascending=False)
        .run()
    )
    a = services.database.t.AuditLog
    events = await (
        a.select(a.at, a.kind, a.client)
        .where(a.account_id == account["id"])
        .order_by(a.id, ascending=False)
        .limit(RECENT_EVENTS * 2)
        .run()
    )
    shown = [
        EventData(at=e["at"], kind=e["kind"], label_fr=EVENT_LABELS_FR[e["kind"]], client_address=e["client"])
        for e in events
        if e["kind"] in EVENT_LABELS_FR
    ][:RECENT_EVENTS]
    return AccountData(
        caisse=services.config.caisse.name,
        exported_at=now,
        identity=IdentityData(
            identifier=account["identifier"],
            identifier_kind=account["identifier_kind"],
            status=status.label_fr if status else account["status"],
            last_name=account["last_name"],
            first_name=account["first_name"],
            birth_date=account["birth_date"],
            postal_address=list(await postal_address(services, account)),
        ),
        contacts=ContactData(
            email=account["email"],
            email_verified=bool(account["email_verified"]),
            mobile=account["mobile"],
            mobile_verified=bool(account["mobile_verified"]),
            landline=account["landline"],
            fax=account["fax"],
        ),
        account_created_at=account["created_at"],
        password_changed_at=account["password_changed_at"],
        password_is_temporary=bool(account["password_is_temporary"]),
        contacts_confirmed_at=account["contacts_confirmed_at"],
        trusted_browsers=[
            BrowserData(
                label=r["label"], added_at=r["created_at"], last_used_at=r["last_used_at"], expires_at=r["expires_at"]
            )
            for r in browsers
        ],
        authenticators=await _authenticators(services, account),
        recent_security_events=shown,
    )


async def _authenticators(services: "Services", account: dict[str, Any]) -> list[AuthenticatorData]:
    from guichet.core.flows.authenticate import CONTACT_CODES, holdings  # flows import this module's callers

    return [
        AuthenticatorData(
            kind=offer.authenticator.label_fr, label=e.label, added_at=e.created_at, last_used_at=e.last_used_at
        )
        for offer in await holdings(services, account)
        if offer.authenticator.name != CONTACT_CODES
        for e in offer.enrolments
    ]


def french_moment(moment: dt.datetime | None) -> str:
    """ "06/12/2026 à 19:05" in Paris time, for the page."""
    return moment.astimezone(PARIS).strftime("%d/%m/%Y à %H:%M") if moment else ""


def shown_phone(value: str | None) -> str:
    return format_phone(value) if value else ""
