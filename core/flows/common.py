"""Pieces several flows share: messages, code sending, account lookups, temporary passwords."""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any

from guichet.core.channels import destination_fr
from guichet.core.clock import PARIS
from guichet.core.codes import CodeCheck, CodeOutcome, CodeStillLive
from guichet.core.errors import CounterStoreError
from guichet.core.identifiers import FRENCH_REGIONS, mask_identifier
from guichet.core.outbox import Delivery, latest_delivery, sent_for_digest
from guichet.core.ratelimit import Settlement
from guichet.core.services import Services
from guichet.core.statements import fetch, select_one
from guichet.core.structs import EMAIL, IDENTIFIER, MOBILE, NOTICE, POSTAL, AuditEvent, PasswordContext, Recipient

log = logging.getLogger("guichet.flows")

CLOSED = "closed"  # the identifier_kind of a closed account's tombstone row (account.close_account)
UNAVAILABLE = "Le service est momentanément indisponible. Veuillez réessayer dans quelques minutes."
SLOW_DOWN = "Trop de tentatives. Veuillez patienter quelques instants avant de réessayer."
CODE_WRONG = "Le code saisi est incorrect."
CODE_DEAD = "Ce code n'est plus valable. Cliquez sur « Recevoir un nouveau code »."
NO_OTHER_CHANNEL = "Vous ne pouvez pas recevoir le code autrement. Veuillez contacter l'assistance."
# a temporary password lives a day, three weeks by post (temporary_lifetime_hours sets it per channel)
TEMPORARY_HOURS, POSTAL_TEMPORARY_HOURS = 24, 24 * 21
# the contacts a person types and proves with a code: address kind -> the account's column (and its
# ``<column>_verified`` flag)
TYPED_CONTACTS = {EMAIL: "email", MOBILE: "mobile"}


def mobile_regions(services: Services) -> tuple[str, ...]:
    """Where a mobile may be: France and its overseas departments, and the countries the caisse lists."""
    return FRENCH_REGIONS + services.config.security.foreign_mobile_regions


def code_error(check: CodeCheck) -> str:
    if check.outcome is CodeOutcome.WRONG:
        left = check.attempts_left
        return f"{CODE_WRONG} Il vous reste {left} essai{'s' if left > 1 else ''}."
    if check.outcome in (CodeOutcome.EXPIRED, CodeOutcome.EXHAUSTED):
        return CODE_DEAD
    return CODE_WRONG


# --- contacts, and the channels that reach them -----------------------------------------------------


def proven_kinds(account: dict[str, Any]) -> frozenset[str]:
    """The kinds of address a code may go to for this account: the typed contacts it proved with a
    code, and its identifier (the caisse's own systems know the person by it)."""
    kinds = {
        kind for kind, column in TYPED_CONTACTS.items() if account.get(column) and account.get(f"{column}_verified")
    }
    return frozenset(kinds | {IDENTIFIER})


def reaches(services: Services, channel: str) -> str:
    """The kind of address a loaded channel delivers to ("" for a channel this caisse has not loaded)."""
    found = services.host.channel(channel)
    return found.reaches if found is not None else ""


def channel_label(services: Services, channel: str) -> str:
    """How pages name a channel: "par e-mail", "par SMS", "dans votre messagerie MSA"..."""
    found = services.host.channel(channel)
    return found.label_fr if found is not None else ""


def masked_destination(services: Services, channel: str, recipient: Recipient) -> str:
    """Where a message on ``channel`` goes, as a page shows it: "j…e@exemple.fr", "06 xx xx xx 01"."""
    found = services.host.channel(channel)
    return destination_fr(found, recipient) if found is not None else ""


def reach_phrase(services: Services, channel: str, destination: str = "") -> str:
    """ "par SMS au 06 xx xx xx 01", "par e-mail à l'adresse j…e@exemple.fr", or the channel's own label."""
    kind, label = reaches(services, channel), channel_label(services, channel)
    if not destination:
        return label
    if kind == MOBILE:
        return f"{label} au {destination}"
    if kind == EMAIL:
        return f"{label} à l'adresse {destination}"
    return f"{label} ({destination})"


def channel_view(services: Services, channel: str, recipient: Recipient | None = None) -> dict[str, str]:
    """What a template needs of a channel: its name, label, kind of address and the masked destination."""
    return {
        "name": channel,
        "label_fr": channel_label(services, channel),
        "reaches": reaches(services, channel),
        "destination": masked_destination(services, channel, recipient) if recipient else "",
    }


def temporary_expiry(services: Services, channel: str) -> dt.datetime:
    default = POSTAL_TEMPORARY_HOURS if reaches(services, channel) == POSTAL else TEMPORARY_HOURS
    hours = services.config.passwords.temporary_lifetime_hours.get(channel, default)
    return services.now() + dt.timedelta(hours=hours)


def letter_channel(services: Services, carrying: str) -> str:
    """The channel that carries ``carrying`` (a temporary password, a letter) by post: one exists,
    or the caisse would not have started (PluginHost.check_deliveries)."""
    return services.host.channels_reaching(POSTAL, carrying)[0].name


async def notify(
    services: Services,
    *,
    template: str,
    recipient: Recipient,
    kinds: tuple[str, ...],
    payload: dict[str, Any] | None = None,
    first_only: bool = False,
) -> None:
    """Queue a notice to each of ``kinds`` the recipient has, on the first channel that carries notices
    there (call it in the transaction of the change it tells of); ``first_only``: to the first kind only."""
    for kind in kinds:
        channels = services.host.channels_reaching(kind, NOTICE)
        if channels and recipient.reachable_by(kind):
            await services.enqueue(
                channel=channels[0].name, template=template, recipient=recipient.only(kind), payload=payload or {}
            )
            if first_only:
                return


def french_date(moment: dt.datetime) -> str:
    return moment.astimezone(PARIS).strftime("%d/%m/%Y")


def password_context(services: Services, account: dict[str, Any]) -> PasswordContext:
    words = [str(account.get(k) or "") for k in ("last_name", "first_name", "identifier")]
    birth = account.get("birth_date")
    if birth:
        words += [birth.strftime("%d%m%Y"), birth.strftime("%Y"), birth.strftime("%d%m%y")]
    return PasswordContext(words=tuple(w for w in words if w), caisse_name=services.config.caisse.name)


async def account_by_identifier(services: Services, identifier: str) -> dict[str, Any] | None:
    t = services.database.t.Account
    rows = await fetch(t, select_one(t, "identifier"), identifier)
    return rows[0] if rows else None


async def account_by_id(services: Services, account_id: int) -> dict[str, Any] | None:
    t = services.database.t.Account
    rows = await fetch(t, select_one(t, "id"), account_id)
    return rows[0] if rows else None


def full_name(first_name: str | None, last_name: str | None) -> str:
    """A person's name as every message and page writes it, typed or from the registry: "Julien LEFEBVRE".

    The last name in capitals, as the registry and the MSA's letters write it; a first name typed all
    in lower or upper case gets its capitals (jean-pierre: Jean-Pierre), one typed with care stays.
    """
    first = (first_name or "").strip()
    if first and (first.islower() or first.isupper()):
        first = re.sub(r"[^\W\d_]+", lambda m: m.group(0).capitalize(), first)
    return " ".join(p for p in (first, (last_name or "").strip().upper()) if p)


def account_recipient(account: dict[str, Any]) -> Recipient:
    name = full_name(account.get("first_name"), account.get("last_name"))
    identifier = account.get("identifier")
    return Recipient(
        name=name,
        email=account.get("email"),
        mobile=account.get("mobile"),
        addresses={IDENTIFIER: str(identifier)} if identifier else {},
    )


async def within_budget(services: Services, channel: str) -> bool:
    """SMS and letters cost money: an hourly budget per caisse.

    An SMS is counted by the outbox worker, once per delivery attempt (a retry costs money too):
    here a spent budget only refuses early, without counting. A letter is counted here.
    """
    limit = {"sms": services.limits.sms_budget, "postal": services.limits.letter_budget}.get(channel)
    if limit is None:
        return True
    if channel == "sms":
        verdict = await services.limiter.check(limit, services.config.caisse.id, services.now())
    else:
        verdict = await services.limiter.take(limit, services.config.caisse.id, services.now())
    if not verdict.allowed:
        await services.audit("budget.exhausted", channel=channel)
    return verdict.allowed


def cooldown_message(wait: int) -> str:
    return f"Un code vient d'être envoyé. Vous pourrez en demander un nouveau dans {wait} secondes."


async def limit_unavailable(
    services: Services, step: str, *, account_id: int | None = None, subject: str = "", client: str = ""
) -> None:
    """Audit a refusal because the counter store failed. With Redis down the database still takes
    the row; with the database down too, the refusal is only logged and the person still gets the
    "momentanément indisponible" page, never an error."""
    try:
        await services.audit("limit.unavailable", account_id=account_id, subject=subject, client=client, step=step)
    except Exception as exc:
        log.error("audit of a refusal (%s, counter store down) failed: %s", step, type(exc).__name__)


async def send_code(
    services: Services,
    *,
    purpose: str,
    binding: str,
    channel: str,
    recipient: Recipient,
    account_id: int | None,
    template: str,
    deliver: bool = True,
    limit_subject: str | None = None,
    new_binding: bool = False,
    client: str = "",
    settle: Settlement | None = None,
    after_failure: bool = False,
    held: list[AuditEvent] | None = None,
) -> str | None:
    """Issue a code and queue it in one transaction; returns an error message or None.

    ``deliver=False`` issues a code nobody receives: an unknown identifier goes through the same
    steps and the same database work as a known one. ``limit_subject`` counts the sends under
    another subject than the account (recovery counts per identifier, known or not).
    ``new_binding``: the binding was drawn in this request, so no code can exist for it yet (no
    resend cooldown to read, nothing to supersede). ``settle`` goes to the counter store with this
    send's own counts, in the same round trip (a right password resets its counters there).
    ``after_failure``: the last code for this binding could not be delivered (``undelivered``), so
    no resend cooldown applies. ``held``: the caller's events, stored with ``code.sent`` in the
    code's transaction (one statement), or on their own whenever no code goes out.

    The sends are counted before the code is issued, and a binding holds one live code at most
    (``Codes.issue``): of parallel resends inside the cooldown, one sends a code.
    """
    pending = list(held or ())  # emptied once stored with the code
    try:
        policy = services.host.code_policy(purpose)
        now = services.now()
        sends_subject = limit_subject or f"{purpose}:{account_id or binding}"
        tries = [(services.limits.code_sends, sends_subject)]
        if reaches(services, channel) == MOBILE:
            # per number, whatever the account or flow; a code nobody receives counts under a stand-in,
            # so that an identifier without a number meets the limit where one with a number would
            tries.append(
                (
                    services.limits.sms_destination,
                    recipient.mobile if deliver and recipient.mobile else f"nobody:{sends_subject}",
                )
            )
        try:
            wait = (
                0
                if new_binding or after_failure
                else await services.codes.cooldown_left(purpose=purpose, binding=binding, policy=policy, now=now)
            )
            if wait > 0:
                if settle:
                    await services.limiter.settle(settle)
                return cooldown_message(wait)
            verdicts = await services.limiter.reserve(tries, now, settle=settle)
            refused = [(limit, subject) for (limit, subject), verdict in zip(tries, verdicts) if not verdict.allowed]
            if refused:
                # only a code sent counts as one: the other counters get their try back
                await services.limiter.settle(
                    Settlement(give_back=tuple(t for t in tries if t not in refused), reserved_at=now)
                )
                for limit, _subject in refused:
                    await services.audit(
                        "limit.reached",
                        account_id=account_id,
                        client=client,
                        limit="code_sends" if limit is services.limits.code_sends else "sms_destination",
                    )
                return SLOW_DOWN
            if deliver and not await within_budget(services, channel):
                return UNAVAILABLE
        except CounterStoreError:
            await limit_unavailable(services, "code_send", account_id=account_id, client=client)
            return UNAVAILABLE
        try:
            async with services.database.transaction(brief=True):
                issued = await services.codes.issue(
                    purpose=purpose,
                    binding=binding,
                    policy=policy,
                    channel=channel,
                    account_id=account_id,
                    now=now,
                    supersede=not new_binding,
                    cooldown=not after_failure,
                )
                if deliver:  # the message carries the one address its channel delivers to, not the others
                    await services.enqueue(
                        channel=channel,
                        template=template,
                        recipient=recipient.only(reaches(services, channel)),
                        payload={"code": issued.code, "lifetime_minutes": policy.lifetime_minutes},
                        expires_at=issued.expires_at,
                        sent_for=sent_for_digest(purpose, binding),
                    )
                events = [
                    *pending,
                    services.event("code.sent", account_id=account_id, client=client, purpose=purpose, channel=channel),
                ]
                await services.auditor.record_many(events)
            pending.clear()  # stored for good: the transaction committed
            services.auditor.publish(events)  # observers hear of what was committed, once
        except CodeStillLive:  # a parallel request sent one a moment ago: this one sends nothing
            await settle_tries(services, Settlement(give_back=tuple(tries), reserved_at=now))
            wait = await services.codes.cooldown_left(purpose=purpose, binding=binding, policy=policy, now=now)
            return cooldown_message(max(1, wait))
        return None
    finally:
        if pending:  # no code went out (refused, or a failure on the way): the events on their own
            await services.audit_all(pending)


async def last_delivery(services: Services, *, purpose: str, binding: str) -> Delivery | None:
    """The last code message queued for this binding (its channel and state): one indexed read."""
    return await latest_delivery(services.database, sent_for_digest(purpose, binding))


def undelivered_message(services: Services, channel: str, destination: str) -> str:
    """What a person waiting for a code reads when the server refused it for good."""
    kind = reaches(services, channel)
    if kind not in TYPED_CONTACTS:
        return f"Le message envoyé {channel_label(services, channel)} n'a pas pu être remis."
    if kind == MOBILE:
        where = f"au numéro {destination}" if destination else "à votre numéro de téléphone portable"
    else:
        where = f"à l'adresse {destination}" if destination else "à votre adresse email"
    return f"Le message n'a pas pu être remis {where}."


async def settle_tries(services: Services, settlement: Settlement) -> None:
    """Undo counted tries that succeeded (``Limiter.reserve``). A store that fails here costs the
    person a try, or a pause next time, at worst: the answer already given stands."""
    try:
        await services.limiter.settle(settlement)
    except CounterStoreError:
        log.error("counted tries could not be settled")


async def check_code(
    services: Services,
    *,
    purpose: str,
    binding: str,
    code: str,
    account_id: int | None,
    limit_subject: str | None = None,
    client: str = "",
    held: list[AuditEvent] | None = None,
) -> tuple[CodeCheck | None, str | None]:
    """Check a code under the per-account daily failure limit; a new code does not reset that count.

    The try is counted before the comparison (so parallel guesses are judged one by one) and given
    back when the code was right: accepted, or already used by a parallel request (a double click).
    ``held``: the ``code.succeeded`` event goes there instead of being stored, for the caller to
    store with what the right code leads to (the login's own event: one statement).
    """
    now = services.now()
    subject = limit_subject or f"{purpose}:{account_id or binding}"
    tried = (services.limits.code_failures, subject)
    try:
        [verdict] = await services.limiter.reserve([tried], now)
    except CounterStoreError:
        await limit_unavailable(services, "code_check", account_id=account_id, client=client)
        return None, UNAVAILABLE
    if not verdict.allowed:
        # a code refused unseen is no failure: the try goes back, so the count holds the codes compared
        await settle_tries(services, Settlement(give_back=(tried,), reserved_at=now))
        await services.audit("limit.reached", account_id=account_id, client=client, limit="code_failures")
        return None, SLOW_DOWN
    check = await services.codes.check(purpose=purpose, binding=binding, code=code, now=now)
    if check.outcome is CodeOutcome.ACCEPTED or check.matched:  # the right code is no guess
        await settle_tries(services, Settlement(give_back=(tried,), reserved_at=now))
    if check.outcome is not CodeOutcome.ACCEPTED:
        kind = "code.expired" if check.outcome is CodeOutcome.EXPIRED else "code.failed"
        await services.audit(kind, account_id=account_id, client=client, purpose=purpose, outcome=check.outcome.value)
        if check.locked:  # the last try on this code failed: only a new code can be used now
            await services.audit("code.locked", account_id=account_id, client=client, purpose=purpose)
        return check, code_error(check)
    if held is not None:
        held.append(services.event("code.succeeded", account_id=account_id, client=client, purpose=purpose))
    else:
        await services.audit("code.succeeded", account_id=account_id, client=client, purpose=purpose)
    return check, None


def subject_of(identifier: str) -> str:
    return mask_identifier(identifier)
