"""Authenticators in the login and in Mon compte, whatever their plugin.

Core does here what no authenticator may skip: it offers a person only what they hold, the strongest
first, within what the caisse requires of their status; it counts every try against the same limits
as the password before the plugin judges it; it keeps each challenge's state sealed in the session
and uses it once; it audits every try, enrolment and removal; it sends a notice on every change; and
it asks for the password again before one.
"""

from __future__ import annotations

import contextlib
from typing import Any

import msgspec

from guichet.core.errors import CounterStoreError
from guichet.core.flows.common import (
    SLOW_DOWN,
    UNAVAILABLE,
    account_by_id,
    account_recipient,
    full_name,
    limit_unavailable,
    notify,
    settle_tries,
    subject_of,
)
from guichet.core.flows.contact_codes import ContactCodes
from guichet.core.ratelimit import Settlement
from guichet.core.services import Services
from guichet.core.sessions import Session
from guichet.core.structs import (
    EMAIL,
    LETTER,
    MOBILE,
    NOTICE,
    POSTAL,
    AccountRef,
    Authenticator,
    Challenge,
    Check,
    Delivery,
    Enrolment,
    Recipient,
)

# the codes by email and SMS: the authenticator everyone holds who proved a contact (core/flows/contact_codes.py)
CONTACT_CODES = "code"
STATE_PURPOSE = "authenticator-state"
WRONG_ANSWER = "La vérification n'a pas abouti. Veuillez réessayer."
NOT_OFFERED = "Cette méthode de connexion n'est pas disponible pour votre compte."


class Offer(msgspec.Struct, frozen=True, kw_only=True):
    """An authenticator a person may use, with what they hold of it."""

    authenticator: Any  # an Authenticator (a Protocol: msgspec cannot type it)
    enrolments: list[Enrolment]


def account_ref(services: Services, account: dict[str, Any]) -> AccountRef:
    # the handle is opaque and the same for every authenticator of the account: no NIR in a passkey manager
    handle = services.keys.hmac("authenticator-user", f"{services.config.caisse.id}:{account['id']}")
    return AccountRef(
        id=account["id"], name=full_name(account["first_name"], account["last_name"]) or "Compte", handle=handle
    )


def phishing_resistance_required(services: Services, account: dict[str, Any]) -> bool:
    return account["status"] in services.config.authentication.phishing_resistant_statuses


async def holdings(services: Services, account: dict[str, Any]) -> list[Offer]:
    """Every enabled authenticator with what this person holds of it, the strongest first.

    Asked at every login step, so it costs one statement at most: the codes by email and SMS are
    judged from the account row the caller holds, and the plugins' credentials are read in one
    query for all of them (``CredentialStore.read_once``)."""
    everyone = services.host.authenticators()
    plugins = [a for a in everyone if not isinstance(a, ContactCodes)]
    ref = account_ref(services, account) if plugins else None
    reading = services.host.credentials.read_once(account["id"]) if plugins else contextlib.nullcontext()
    offers = []
    async with reading:
        for a in everyone:
            if isinstance(a, ContactCodes):
                enrolments = a.enrolments_of(account)
            else:
                assert ref is not None
                enrolments = await a.enrolments(ref)
            offers.append(Offer(authenticator=a, enrolments=enrolments))
    return offers


async def login_offers(services: Services, account: dict[str, Any]) -> list[Offer]:
    """What the login's second step offers this person, the strongest first.

    Only what they hold; where their status requires a phishing-resistant factor and they hold one,
    nothing else; the codes by email and SMS last, when the caisse keeps them as a fallback or when
    the person holds nothing else (they are then asked to enrol before anything else, if required).
    """
    held = [o for o in await holdings(services, account) if o.enrolments and usable(o)]
    others = [o for o in held if o.authenticator.name != CONTACT_CODES]
    codes = [o for o in held if o.authenticator.name == CONTACT_CODES]
    if phishing_resistance_required(services, account):
        resistant = [o for o in others if o.authenticator.assurance.phishing_resistant]
        if resistant:
            return resistant
    if not others or services.config.authentication.code_fallback:
        return others + codes
    return others


def usable(offer: Offer) -> bool:
    """Whether something enrolled can still answer (a set of recovery codes with none left cannot)."""
    return any(e.remaining is None or e.remaining > 0 for e in offer.enrolments)


def seal_state(services: Services, state: str) -> str:
    return services.keys.seal(state.encode(), STATE_PURPOSE) if state else ""


def open_state(services: Services, sealed: str) -> str:
    if not sealed:
        return ""
    try:
        return services.keys.unseal(sealed, STATE_PURPOSE).decode()
    except ValueError:  # a key rotated since: the challenge is simply over
        return ""


async def start(
    services: Services, session: Session, authenticator: Authenticator, account: dict[str, Any] | None
) -> Challenge:
    """A new challenge of ``authenticator``'s for this session (any earlier one is over)."""
    assert session.data is not None
    challenge = await authenticator.challenge(account_ref(services, account) if account else None)
    session.data.auth_name = authenticator.name
    session.data.auth_state = seal_state(services, challenge.state)
    session.dirty = True
    return challenge


def take_state(services: Services, session: Session, name: str) -> str | None:
    """The state of this session's challenge of ``name``, used once: None when there is none."""
    assert session.data is not None
    if session.data.auth_name != name or not session.data.auth_state:
        return None
    state = open_state(services, session.data.auth_state)
    session.data.auth_state = ""
    session.dirty = True
    return state or None


class _Try:
    """One answer to an authenticator, as core counts and audits it."""

    def __init__(
        self,
        services: Services,
        authenticator: Authenticator,
        *,
        failed: str,
        counted: list[tuple[Any, str]],
        account_id: int | None,
        subject: str,
        client: str,
    ) -> None:
        self.services, self.authenticator, self.failed, self.counted = services, authenticator, failed, counted
        self.account_id, self.subject, self.client = account_id, subject, client
        self.reserved_at = services.now()  # when the try is counted (refusal), for give_back

    async def refusal(self) -> str | None:
        """Count the try before anything is judged; the message to show when it may not be judged now."""
        try:
            verdicts = await self.services.limiter.reserve(self.counted, self.reserved_at)
        except CounterStoreError:
            await limit_unavailable(
                self.services,
                self.authenticator.name,
                account_id=self.account_id,
                subject=self.subject,
                client=self.client,
            )
            return UNAVAILABLE
        if not all(v.allowed for v in verdicts):
            await self.audit(self.failed, reason="slowed")
            return SLOW_DOWN
        return None

    async def audit(self, kind: str, account_id: int | None = None, **details: str) -> None:
        await self.services.audit(
            kind,
            account_id=self.account_id or account_id,
            subject=self.subject,
            client=self.client,
            authenticator=self.authenticator.name,
            **details,
        )

    async def settle(self) -> None:
        """A right answer: the failures counted so far no longer slow the owner down."""
        await settle_tries(self.services, Settlement(clear=tuple(self.counted)))

    async def give_back(self) -> None:
        """A right answer counted per address: the address gets its try back, as after a right
        password (many people log in from one address); its wrong answers stay counted."""
        await settle_tries(self.services, Settlement(give_back=tuple(self.counted), reserved_at=self.reserved_at))


async def verify(
    services: Services,
    session: Session,
    authenticator: Authenticator,
    account: dict[str, Any] | None,
    form: dict[str, str],
    *,
    client: str,
) -> tuple[Check, str]:
    """An answer to this session's challenge, counted first: per identifier (as the password is) for a
    second factor, per address for a whole login. Returns the plugin's check and the message to show
    ("" when it is right). The challenge is used once, right or wrong."""
    limits = services.limits
    state = take_state(services, session, authenticator.name)
    attempt = _Try(
        services,
        authenticator,
        failed="authenticator.failed",
        counted=[(limits.login_identifier, account["identifier"])]
        if account
        else [(limits.login_client, client or "-")],
        account_id=account["id"] if account else None,
        subject=subject_of(account["identifier"]) if account else "",
        client=client,
    )
    refusal = await attempt.refusal()
    if refusal:
        return Check(ok=False), refusal
    if state is None:
        check = Check(ok=False, message_fr=WRONG_ANSWER)
    else:
        check = await authenticator.verify(account_ref(services, account) if account else None, state, form)
    if account is None and check.ok and check.account_id is None:
        check = Check(ok=False, message_fr=WRONG_ANSWER)  # a whole login must say whose it was
    if not check.ok:
        await attempt.audit("authenticator.failed", check.account_id, reason=check.reason or "wrong")
        return check, check.message_fr or WRONG_ANSWER
    if account is not None:
        await attempt.settle()
    else:
        await attempt.give_back()
    await attempt.audit("authenticator.verified", check.account_id)
    return check, ""


def amr_of(authenticator: Authenticator, *, with_password: bool) -> list[str]:
    """A login's ``amr``: the password's, the authenticator's, and "mfa" when two factors were proven."""
    values = (["pwd"] if with_password else []) + list(authenticator.assurance.amr)
    if with_password or authenticator.assurance.replaces_password:
        values.append("mfa")
    return list(dict.fromkeys(values))


# --- Mon compte: adding and removing, after the password again ---------------------------------


def recently_reauthenticated(services: Services, session: Session) -> bool:
    assert session.data is not None
    window = services.config.authentication.reauthentication_minutes * 60_000
    return session.data.reauth_ms > 0 and services.now().timestamp() * 1000 - session.data.reauth_ms <= window


def mark_reauthenticated(services: Services, session: Session) -> None:
    assert session.data is not None
    session.data.reauth_ms = int(services.now().timestamp() * 1000)
    session.dirty = True


async def begin_enrolment(
    services: Services, session: Session, authenticator: Authenticator, account: dict[str, Any]
) -> Challenge:
    """A new enrolment of ``authenticator``'s; the whole challenge (its prompt too: a QR code to show
    again after a mistyped first code) is kept sealed in the session until the enrolment succeeds."""
    assert session.data is not None
    challenge = await authenticator.begin_enrolment(account_ref(services, account))
    session.data.auth_name = f"+{authenticator.name}"  # an enrolment's state never answers a login's challenge
    session.data.auth_state = services.keys.seal(msgspec.json.encode(challenge), STATE_PURPOSE)
    session.dirty = True
    return challenge


def enrolment_under_way(services: Services, session: Session, name: str) -> Challenge | None:
    """The enrolment of ``name`` this session started, as it was begun; None when there is none."""
    data = session.data
    if data is None or data.auth_name != f"+{name}" or not data.auth_state:
        return None
    try:
        return msgspec.json.decode(services.keys.unseal(data.auth_state, STATE_PURPOSE), type=Challenge)
    except (ValueError, msgspec.DecodeError):  # a key rotated since: the enrolment starts over
        return None


async def finish_enrolment(
    services: Services,
    session: Session,
    authenticator: Authenticator,
    account: dict[str, Any],
    form: dict[str, str],
    *,
    client: str,
) -> tuple[Check, str]:
    """The answer to an enrolment's prompt (a first TOTP code, a new passkey), counted as a code is;
    once right: audited, a notice sent and the letter queued in one transaction, and the enrolment
    over. A wrong answer leaves it under way (the same QR code for the next try)."""
    under_way = enrolment_under_way(services, session, authenticator.name)
    attempt = _Try(
        services,
        authenticator,
        failed="authenticator.enrolment_failed",
        counted=[(services.limits.login_identifier, account["identifier"])],
        account_id=account["id"],
        subject=subject_of(account["identifier"]),
        client=client,
    )
    refusal = await attempt.refusal()
    if refusal:
        return Check(ok=False), refusal
    ref = account_ref(services, account)
    async with services.database.transaction():
        check = (
            await authenticator.finish_enrolment(ref, under_way.state, form)
            if under_way is not None
            else Check(ok=False, message_fr=WRONG_ANSWER)
        )
        if not check.ok:
            await attempt.audit("authenticator.enrolment_failed", reason=check.reason or "wrong")
            return check, check.message_fr or WRONG_ANSWER
        if check.delivery is not None:
            await deliver(services, account, check.delivery)
        await attempt.audit("authenticator.enrolled")
        await tell_owner(services, account, authenticator, "added")
    await attempt.settle()
    assert session.data is not None
    session.data.must_enrol = False
    session.data.auth_name = session.data.auth_state = ""
    session.dirty = True
    return check, ""


async def remove(
    services: Services, authenticator: Authenticator, account: dict[str, Any], enrolment_id: int, *, client: str
) -> bool:
    """Remove one of the person's own (a stranger's id removes nothing); audited, the owner told."""
    async with services.database.transaction():
        removed = await authenticator.remove(account_ref(services, account), enrolment_id)
        if removed:
            await services.audit(
                "authenticator.removed",
                account_id=account["id"],
                subject=subject_of(account["identifier"]),
                client=client,
                authenticator=authenticator.name,
            )
            await tell_owner(services, account, authenticator, "removed")
    return removed


async def tell_owner(services: Services, account: dict[str, Any], authenticator: Authenticator, change: str) -> None:
    """The notice of a change to how one logs in, to every address the person proved (SP 800-63B-4 §4.6):
    whoever holds one of them hears of it; never to a number only typed, which may be a stranger's."""
    proven = tuple(kind for kind in (EMAIL, MOBILE) if account[f"{kind}_verified"])
    await notify(
        services,
        template="authenticator_changed_notice",
        recipient=account_recipient(account),
        kinds=proven or (EMAIL,),
        payload={"change": change, "authenticator": authenticator.label_fr},
    )


async def letter_recipient(services: Services, account: dict[str, Any]) -> Recipient | None:
    """Where a letter to this person goes: their address in the caisse's registry, never a typed one."""
    record = await services.host.registry_lookup(account["identifier_kind"], account["identifier"])
    if record is None or record.address is None or not record.address.lines:
        return None
    return Recipient(name=account_recipient(account).name, address=record.address)


async def deliver(services: Services, account: dict[str, Any], delivery: Delivery) -> None:
    """Queue an authenticator's message (recovery codes by post) to the person's address of its kind."""
    if delivery.kind == POSTAL:
        recipient = await letter_recipient(services, account)
        letters = services.host.channels_reaching(POSTAL, LETTER)
        channel = letters[0].name if letters else ""
    else:
        recipient = account_recipient(account).only(delivery.kind)
        found = services.host.channels_reaching(delivery.kind, NOTICE)
        channel = found[0].name if found else ""
    if recipient is None or not channel or not recipient.reachable_by(delivery.kind):
        raise LookupError(f"no channel reaches this account's {delivery.kind} address")
    await services.enqueue(channel=channel, template=delivery.template, recipient=recipient, payload=delivery.payload)


async def account_of_check(services: Services, check: Check) -> dict[str, Any] | None:
    return await account_by_id(services, check.account_id) if check.account_id is not None else None
