"""After login: forced personalisation, contact confirmation, Mon compte (email, password, browsers)."""

from __future__ import annotations

from typing import Any

from guichet.core.errors import CounterStoreError, StepError
from guichet.core.flows.common import (
    CLOSED,
    SLOW_DOWN,
    UNAVAILABLE,
    account_by_id,
    account_recipient,
    check_code,
    last_delivery,
    limit_unavailable,
    mobile_regions,
    notify,
    password_context,
    send_code,
    settle_tries,
    subject_of,
    undelivered_message,
)
from guichet.core.flows.engine import StepResult
from guichet.core.identifiers import mask_email, mask_phone, parse_code, parse_email, parse_mobile, parse_phone
from guichet.core.keys import new_token
from guichet.core.outbox import FAILED
from guichet.core.passwords import MAX_PASSWORD_LENGTH, PolicyCheck
from guichet.core.ratelimit import Settlement
from guichet.core.services import Services
from guichet.core.sessions import Session
from guichet.core.structs import EMAIL, MOBILE, Recipient

WRONG_CURRENT = "Le mot de passe actuel est incorrect."
CONTACT_FIELDS = {
    "email": "adresse email",
    "mobile": "numéro de téléphone portable",
    "landline": "numéro de téléphone fixe",
    "fax": "numéro de fax",
}


async def current_account(services: Services, session: Session) -> dict[str, Any] | None:
    if session.data is None or session.data.account_id is None:
        return None
    return await account_by_id(services, session.data.account_id)


def strength(services: Services, account: dict[str, Any], password: str) -> PolicyCheck:
    return services.passwords.check(password[: MAX_PASSWORD_LENGTH * 2], password_context(services, account))


async def verify_current(services: Services, account: dict[str, Any], password: str, *, client: str) -> str | None:
    """The current password (Mon compte), under the same per-identifier limit as the login form: a
    stolen session cannot guess it faster, nor in parallel (the try is counted before the verify).
    None when it is right, else the message to show."""
    identifier = account["identifier"]
    tried = (services.limits.login_identifier, identifier)
    try:
        [verdict] = await services.limiter.reserve([tried], services.now())
    except CounterStoreError:
        await limit_unavailable(
            services, "current_password", account_id=account["id"], subject=subject_of(identifier), client=client
        )
        return UNAVAILABLE
    if verdict.allowed and await services.passwords.verify(account["password_hash"], password):
        await settle_tries(services, Settlement(clear=(tried,)))  # as a right password at login does
        return None
    await services.audit(
        "login.failed",
        account_id=account["id"],
        subject=subject_of(identifier),
        client=client,
        reason="current_password" if verdict.allowed else "slowed",
    )
    return WRONG_CURRENT if verdict.allowed else SLOW_DOWN


async def change_password(
    services: Services,
    session: Session,
    account: dict[str, Any],
    form: dict[str, str],
    *,
    client: str,
    require_current: bool,
) -> StepResult:
    """Personalisation (no current password: the temporary one was just typed) or a change from Mon compte."""
    new = form.get("new_password", "")
    confirm = form.get("confirm_password", "")
    errors: dict[str, str] = {}
    if require_current:
        refusal = await verify_current(services, account, form.get("current_password", ""), client=client)
        if refusal:
            errors["current_password"] = refusal
    check = strength(services, account, new)
    if not new:
        errors["new_password"] = "Veuillez saisir votre nouveau mot de passe."
    elif not check.ok:
        errors["new_password"] = "\n".join(check.errors)  # one rule a line, listed as the meter lists them
    elif not errors and await services.passwords.verify(account["password_hash"], new):
        # only once the current password is proven: else this comparison is an unthrottled guess
        errors["new_password"] = "Votre nouveau mot de passe doit être différent de l'actuel."
    if not errors.get("new_password") and new != confirm:
        errors["confirm_password"] = "Les deux mots de passe ne sont pas identiques."
    if errors:
        return StepResult(step="mot-de-passe", errors=errors)
    password_hash = await services.passwords.hash(new)
    t = services.database.t.Account
    b = services.database.t.TrustedBrowser
    now = services.now()
    async with services.database.transaction():
        rows = await (
            t.update(
                {
                    t.password_hash: password_hash,
                    t.password_is_temporary: False,
                    t.temporary_expires_at: None,
                    t.password_changed_at: now,
                    t.credentials_version: t.credentials_version + 1,
                }
            )
            .where((t.id == account["id"]) & (t.credentials_version == account["credentials_version"]))
            .returning(t.credentials_version)
            .run()
        )
        if not rows:
            return StepResult(
                step="mot-de-passe", errors={"new_password": "Votre compte a changé entre-temps. Veuillez recommencer."}
            )
        await b.update({b.revoked_at: now}).where((b.account_id == account["id"]) & b.revoked_at.is_null()).run()
        if not account["password_is_temporary"]:  # a personalisation tells nobody: the person just got the password
            await notify(
                services, template="password_changed_notice", recipient=account_recipient(account), kinds=(EMAIL,)
            )
        await services.audit(
            "password.changed",
            account_id=account["id"],
            subject=subject_of(account["identifier"]),
            client=client,
            personalisation=account["password_is_temporary"],
        )
    assert session.data is not None
    session.data.credentials_version = int(rows[0]["credentials_version"])  # other sessions end, this one goes on
    session.rotate()
    return StepResult(step="mot-de-passe-modifie")


# --- contact details (confirmation after first login, and edits) -----------------------------------

# the contacts that receive codes and recovery: changing one takes the current password, so a stolen
# session cannot move the account (a code to a thief's address, then "mot de passe oublié")
PROVEN_CONTACTS = ("email", "mobile")
NEEDS_PASSWORD = "Pour modifier cette coordonnée, saisissez votre mot de passe actuel."


def confirmation_due(account: dict[str, Any]) -> bool:
    """The contact confirmation page is open only while the account must confirm its contacts."""
    return account["contacts_confirmed_at"] is None


async def start_contact_change(
    services: Services,
    session: Session,
    account: dict[str, Any],
    field: str,
    raw: str,
    *,
    client: str,
    current_password: str | None,
) -> StepResult:
    """Landline and fax change at once; a new email or mobile needs the current password, then waits for
    the code sent to it."""
    if field not in CONTACT_FIELDS:
        return StepResult(step="coordonnees", errors={"field": "Cette coordonnée ne peut pas être modifiée."})
    try:
        if field == "email":
            value = parse_email(raw, "value")
        elif field == "mobile":
            value = parse_mobile(raw, "value", required=True, regions=mobile_regions(services))
        else:
            value = parse_phone(raw, "value", CONTACT_FIELDS[field])
    except StepError as error:
        return StepResult(step="coordonnees", errors={field: error.message_fr}, values={field: raw})
    t = services.database.t.Account
    if field not in PROVEN_CONTACTS:
        await t.update({getattr(t, field): value}).where(t.id == account["id"]).run()
        return StepResult(step="coordonnees", notice="Votre coordonnée a été enregistrée.")
    if value == account[field] and account[f"{field}_verified"]:
        return StepResult(step="coordonnees", notice="Cette coordonnée est déjà la vôtre.")
    # the same value not proven yet (typed at registration, another channel chosen): a code proves it
    if not current_password:
        return StepResult(step="coordonnees", errors={"current_password": NEEDS_PASSWORD}, values={field: raw})
    refusal = await verify_current(services, account, current_password, client=client)
    if refusal:
        return StepResult(step="coordonnees", errors={"current_password": refusal}, values={field: raw})
    assert session.data is not None and value is not None
    binding = f"{new_token()}:{field}"  # kept in this session only: never the session id, which the data would reveal
    recipient = Recipient(
        name=account_recipient(account).name,
        email=value if field == "email" else None,
        mobile=value if field == "mobile" else None,
    )
    proving = next((c.name for c in services.host.channels_for("contact_change") if c.reaches == field), None)
    if proving is None:
        return StepResult(step="coordonnees", errors={field: UNAVAILABLE}, values={field: raw})
    refusal = await send_code(
        services,
        purpose="contact_change",
        binding=binding,
        channel=proving,
        recipient=recipient,
        account_id=account["id"],
        template="contact_code",
        client=client,
    )
    if refusal:
        return StepResult(step="coordonnees", errors={field: refusal}, values={field: raw})
    session.data.pending_contact = {"field": field, "value": value, "binding": binding}
    session.dirty = True
    return StepResult(step="coordonnees-code")


async def confirm_contact_change(
    services: Services, session: Session, account: dict[str, Any], form: dict[str, str], *, client: str
) -> StepResult:
    assert session.data is not None
    pending = session.data.pending_contact
    if not pending:
        return StepResult(step="coordonnees")
    policy = services.host.code_policy("contact_change")
    try:
        code = parse_code(form.get("code", ""), policy.length)
    except StepError as error:
        return StepResult(step="coordonnees-code", errors={"code": error.message_fr})
    _check, message = await check_code(
        services,
        purpose="contact_change",
        binding=pending["binding"],
        code=code,
        account_id=account["id"],
        client=client,
    )
    if message:
        return StepResult(step="coordonnees-code", errors={"code": message})
    field, value = pending["field"], pending["value"]
    t = services.database.t.Account
    async with services.database.transaction():
        await (
            t.update({getattr(t, field): value, getattr(t, f"{field}_verified"): True})
            .where(t.id == account["id"])
            .run()
        )
        await _notify_contact_change(services, account, field, value)
        await services.audit(
            "email.changed" if field == "email" else "mobile.changed",
            account_id=account["id"],
            subject=subject_of(account["identifier"]),
            client=client,
        )
    session.data.pending_contact = {}
    session.dirty = True
    return StepResult(step="coordonnees", notice="Votre coordonnée a été vérifiée et enregistrée.")


async def _notify_contact_change(services: Services, account: dict[str, Any], field: str, value: str) -> None:
    """The old address or number hears of the change (and, for a mobile, the email too): a stolen
    session cannot move the account silently. The new value is masked."""
    old = account_recipient(account)
    if field == EMAIL:
        await notify(
            services,
            template="email_changed_notice",
            recipient=old,
            kinds=(EMAIL,),
            payload={"new_email_masked": mask_email(value)},
        )
    else:
        await notify(
            services,
            template="mobile_changed_notice",
            recipient=old,
            kinds=(MOBILE, EMAIL),
            payload={"new_mobile_masked": mask_phone(value)},
        )


async def contact_code_delivery(services: Services, session: Session) -> dict[str, str]:
    """For the page waiting for a new contact's code: whether the server refused it for good."""
    pending = session.data.pending_contact if session.data else {}
    if not pending:
        return {}
    delivery = await last_delivery(services, purpose="contact_change", binding=pending["binding"])
    if delivery is None or delivery.state != FAILED:
        return {}
    value = pending["value"]
    shown = mask_email(value) if pending["field"] == EMAIL else mask_phone(value)
    return {"undelivered": undelivered_message(services, delivery.channel, shown)}


async def confirm_contacts(services: Services, account: dict[str, Any], *, client: str) -> None:
    t = services.database.t.Account
    async with services.database.transaction():
        await t.update({t.contacts_confirmed_at: services.now()}).where(t.id == account["id"]).run()
        await services.audit(
            "contacts.confirmed", account_id=account["id"], subject=subject_of(account["identifier"]), client=client
        )


# --- trusted browsers ------------------------------------------------------------------------------


async def trusted_browsers(services: Services, account: dict[str, Any]) -> list[dict[str, Any]]:
    t = services.database.t.TrustedBrowser
    now = services.now()
    return await (
        t.select(t.id, t.label, t.created_at, t.last_used_at, t.expires_at)
        .where(
            (t.account_id == account["id"])
            & t.revoked_at.is_null()
            & (t.expires_at > now)
            & (t.credentials_version == account["credentials_version"])
        )
        .order_by(t.created_at, ascending=False)
        .run()
    )


async def revoke_browser(services: Services, account: dict[str, Any], browser_id: int, *, client: str) -> bool:
    t = services.database.t.TrustedBrowser
    async with services.database.transaction():
        rows = await (
            t.update({t.revoked_at: services.now()})
            .where((t.id == browser_id) & (t.account_id == account["id"]) & t.revoked_at.is_null())
            .returning(t.id)
            .run()
        )
        if rows:
            await services.audit("trusted_browser.revoked", account_id=account["id"], client=client)
    return bool(rows)


# --- Mes données: the export, and the closure of the online account ----------------------------------

CLOSED_ALREADY = "Votre espace privé est déjà fermé."
CLOSE_NEEDS_PASSWORD = "Pour fermer votre espace privé, saisissez votre mot de passe actuel."


async def export_data(services: Services, account: dict[str, Any], *, client: str) -> bytes:
    """The JSON file of ``Mes données`` (audited: a stolen session downloading it is on the record)."""
    import msgspec

    from guichet.core.account_data import account_data

    data = await account_data(services, account)
    await services.audit(
        "account.exported", account_id=account["id"], subject=subject_of(account["identifier"]), client=client
    )
    return msgspec.json.format(msgspec.json.encode(data), indent=2)


async def close_account(
    services: Services, session: Session, account: dict[str, Any], password: str, *, client: str
) -> StepResult:
    """Close the online account once its current password is typed again: its identity, contacts,
    password, trusted browsers and live codes go; the registry and the security journal stay; a notice
    goes by email and a letter by post. The identifier is free again: the person can register later.

    The row stays as an empty tombstone rather than being deleted: its id is never given to a new
    account (SQLite reuses the highest rowid), so the journal's rows and any session still naming it
    can never point at someone else. Its credentials version moves on, which ends every session.
    One conditional UPDATE on the account as this session knows it: of parallel closures one closes
    and notifies, and a session older than a password change closes nothing.
    """
    from guichet.core.account_data import postal_address
    from guichet.core.flows.common import french_date, letter_channel
    from guichet.core.identifiers import mask_identifier
    from guichet.core.structs import LETTER, PostalAddress

    if not password:
        return StepResult(step="fermeture", errors={"current_password": CLOSE_NEEDS_PASSWORD})
    refusal = await verify_current(services, account, password, client=client)
    if refusal:
        return StepResult(step="fermeture", errors={"current_password": refusal})
    address = await postal_address(services, account)
    now = services.now()
    masked = mask_identifier(account["identifier"])
    payload = {"masked_identifier": masked, "closed_on": french_date(now)}
    t, b, c = services.database.t.Account, services.database.t.TrustedBrowser, services.database.t.OneTimeCode
    async with services.database.transaction():
        gone = await (
            t.update(
                {
                    t.identifier: f"closed-{account['id']}",
                    t.identifier_kind: CLOSED,
                    t.last_name: "",
                    t.first_name: "",
                    t.birth_date: None,
                    t.email: None,
                    t.email_verified: False,
                    t.mobile: None,
                    t.mobile_verified: False,
                    t.landline: None,
                    t.fax: None,
                    t.password_hash: "!",
                    t.password_is_temporary: False,
                    t.temporary_expires_at: None,
                    t.credentials_version: t.credentials_version + 1,
                }
            )
            .where(
                (t.id == account["id"])
                & (t.credentials_version == account["credentials_version"])
                & (t.identifier_kind != CLOSED)
            )
            .returning(t.id)
            .run()
        )
        if not gone:
            return StepResult(step="fermeture", errors={"current_password": CLOSED_ALREADY})
        await b.delete().where(b.account_id == account["id"]).run()
        await c.delete().where(c.account_id == account["id"]).run()
        await services.host.credentials.remove_all(account["id"])  # passkeys, authenticator apps, recovery codes
        await notify(
            services,
            template="account_closed_notice",
            recipient=account_recipient(account),
            kinds=(EMAIL,),
            payload=payload,
        )
        if address:
            recipient = Recipient(name=account_recipient(account).name, address=PostalAddress(lines=address))
            await services.enqueue(
                channel=letter_channel(services, LETTER),
                template="account_closed_letter",
                recipient=recipient,
                payload=payload,
            )
        await services.audit(
            "account.closed", account_id=account["id"], subject=masked, client=client, letter=bool(address)
        )
    session.clear()
    return StepResult(step="fermee")
