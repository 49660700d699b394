"""Registration ("Créer mon espace privé"): status, identifier, contact details, identity question,
channel, security code, confirmation; or, for "Autre", a request the caisse handles by hand.

The screens, statuses and database work are the same whether the identifier is unknown, known
to the registry or already has an account: only the outbox differs.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from typing import Any

from guichet.core.database import INTEGRITY_ERRORS
from guichet.core.errors import CounterStoreError, StepError
from guichet.core.flows.common import (
    NO_OTHER_CHANNEL,
    UNAVAILABLE,
    account_by_identifier,
    account_recipient,
    channel_label,
    check_code,
    french_date,
    full_name,
    last_delivery,
    letter_channel,
    limit_unavailable,
    mobile_regions,
    notify,
    proven_kinds,
    reach_phrase,
    reaches,
    send_code,
    subject_of,
    temporary_expiry,
    undelivered_message,
    within_budget,
)
from guichet.core.flows.engine import FlowState, StepResult, advance
from guichet.core.identifiers import (
    fold_name,
    format_phone,
    mask_identifier,
    parse_birth_date,
    parse_code,
    parse_email,
    parse_identifier,
    parse_mobile,
    parse_name,
    parse_phone,
    parse_siret,
)
from guichet.core.outbox import FAILED
from guichet.core.services import Services
from guichet.core.structs import (
    EMAIL,
    IDENTIFIER,
    LETTER,
    MOBILE,
    PASSWORD,
    POSTAL,
    PasswordContext,
    PostalAddress,
    Recipient,
    Record,
    Status,
    Verdict,
)

KIND = "registration"
PERSON_STEPS = ["statut", "identifiant", "coordonnees", "question", "canal", "code", "termine"]
THIRD_PARTY_STEPS = ["statut", "structure", "demande", "demande-envoyee"]
NO_ANSWER = "aucune"


def steps_for(state: FlowState) -> list[str]:
    return THIRD_PARTY_STEPS if state.data.get("third_party") else PERSON_STEPS


def current_status(services: Services, state: FlowState) -> Status | None:
    code = state.data.get("status")
    return services.host.status(code) if isinstance(code, str) else None


def _fail(step: str, error: StepError, values: dict[str, str]) -> StepResult:
    return StepResult(step=step, errors={error.field: error.message_fr}, values=values)


# --- step 1: "Vous êtes..." ------------------------------------------------------------------------


async def submit_status(services: Services, state: FlowState, form: dict[str, str], client: str) -> StepResult:
    code = form.get("status", "")
    status = services.host.status(code)
    if status is None:
        return StepResult(step="statut", errors={"status": "Veuillez choisir ce que vous êtes."})
    if "started" not in state.data:
        try:
            allowed = await services.limiter.take(services.limits.registration_client, client or "-", services.now())
        except CounterStoreError:
            await limit_unavailable(services, "registration", client=client)
            return StepResult(step="statut", errors={"status": UNAVAILABLE})
        if not allowed.allowed:
            await services.audit("limit.reached", client=client, limit="registration_client")
            return StepResult(step="statut", errors={"status": UNAVAILABLE})
    if state.data.get("status") != code:
        state.data = {"status": code, "third_party": status.third_party, "started": True}
        state.drafts = {}
    advance(state, "statut", "structure" if status.third_party else "identifiant", steps_for(state))
    return StepResult(step=state.step)


# --- step 2: "Votre identifiant" -------------------------------------------------------------------


async def submit_identifier(services: Services, state: FlowState, form: dict[str, str]) -> StepResult:
    status = current_status(services, state)
    assert status is not None
    raw = form.get("identifier", "")
    try:
        identifier = parse_identifier(status.identifier_kind, raw)
    except StepError as error:
        return _fail("identifiant", error, {"identifier": raw})
    if state.data.get("identifier") != identifier:
        state.data = {k: v for k, v in state.data.items() if k in ("status", "third_party", "started")}
    state.data["identifier"] = identifier
    advance(state, "identifiant", "coordonnees", PERSON_STEPS)
    return StepResult(step=state.step)


# --- step 3: "Vos coordonnées" ---------------------------------------------------------------------


async def submit_contact(services: Services, state: FlowState, form: dict[str, str]) -> StepResult:
    status = current_status(services, state)
    assert status is not None
    is_company = status.identifier_kind == "siret"
    values = {k: form.get(k, "") for k in ("last_name", "first_name", "birth_date", "email", "mobile")}
    errors: dict[str, str] = {}
    parsed: dict[str, Any] = {}
    checks: list[tuple[str, Any]] = [
        ("last_name", lambda: parse_name(values["last_name"], "last_name", "raison sociale" if is_company else "nom")),
        ("email", lambda: parse_email(values["email"], "email")),
        ("mobile", lambda: parse_mobile(values["mobile"], "mobile", regions=mobile_regions(services))),
    ]
    if not is_company:
        checks += [
            ("first_name", lambda: parse_name(values["first_name"], "first_name", "prénom")),
            ("birth_date", lambda: parse_birth_date(values["birth_date"], services.clock.today(), "birth_date")),
        ]
    for field, parse in checks:
        try:
            parsed[field] = parse()
        except StepError as error:
            errors[error.field] = error.message_fr
    if errors:
        return StepResult(step="coordonnees", errors=errors, values=values)
    record = await services.host.registry_lookup(status.identifier_kind, state.data["identifier"])
    state.data.update(
        {
            "last_name": parsed["last_name"],
            "first_name": parsed.get("first_name", ""),
            "birth_date": parsed["birth_date"].isoformat() if "birth_date" in parsed else "",
            "email": parsed["email"],
            "mobile": parsed["mobile"],
            # whether the registry knows this person as typed; never shown, only steers the outbox
            "matched": record is not None and _matches(record, parsed),
        }
    )
    advance(state, "coordonnees", "question", PERSON_STEPS)
    return StepResult(step=state.step)


def _matches(record: Record, parsed: dict[str, Any]) -> bool:
    if fold_name(record.last_name) != fold_name(parsed["last_name"]):
        return False
    return "birth_date" not in parsed or record.birth_date == parsed["birth_date"]


# --- step 4: the identity question -----------------------------------------------------------------


def questions_for(services: Services, state: FlowState) -> list[Any]:
    """The same questions for every identifier of a status: the page tells nothing of the registry."""
    status = current_status(services, state)
    return services.host.identity_questions(status, None) if status else []


def answer_field(kind: str) -> str:
    """Each question has its own answer field (its label, hint and keyboard), named after its kind."""
    return f"answer-{kind}"


async def submit_question(services: Services, state: FlowState, form: dict[str, str], client: str) -> StepResult:
    status = current_status(services, state)
    assert status is not None
    kind = form.get("question", "")
    field = answer_field(kind)
    answer = (form[field] if field in form else form.get("answer", "")).strip()  # "answer": a client of the old page
    values = {"question": kind, field: answer}
    questions = {q.kind: q for q in questions_for(services, state)}
    if kind != NO_ANSWER and kind not in questions:
        return StepResult(
            step="question",
            errors={"question": "Veuillez choisir une question, ou « Je ne peux pas répondre »."},
            values=values,
        )
    if kind != NO_ANSWER:
        try:  # the question's plugin checks the form first: a malformed answer costs no try
            answer = services.host.identity_answer(questions[kind], answer)
        except StepError as error:
            return StepResult(step="question", errors={field: error.message_fr}, values=values)
    identifier = state.data["identifier"]
    verdict = Verdict.WRONG
    try:
        if kind != NO_ANSWER:
            allowed = await services.limiter.take(services.limits.identity_answers, identifier, services.now())
            if not allowed.allowed:
                await services.audit("limit.reached", subject=subject_of(identifier), client=client, limit="identity")
            else:
                verdict = await _verdict(services, state, status, questions[kind], answer)
    except CounterStoreError:
        await limit_unavailable(services, "identity", subject=subject_of(identifier), client=client)
        return StepResult(step="question", errors={field: UNAVAILABLE}, values=values)
    state.data["verdict"] = verdict.value
    state.data["question_kind"] = kind
    if verdict is Verdict.RIGHT:
        await services.audit("identity.succeeded", subject=subject_of(identifier), client=client, question=kind)
        advance(state, "question", "canal", PERSON_STEPS)
        return StepResult(step=state.step)
    if kind != NO_ANSWER:
        await services.audit(
            "identity.failed", subject=subject_of(identifier), client=client, question=kind, verdict=verdict.value
        )
    return await _finish(services, state, channel=letter_channel(services, PASSWORD), client=client)


async def _verdict(services: Services, state: FlowState, status: Status, question: Any, answer: str) -> Verdict:
    if not state.data.get("matched"):
        return Verdict.WRONG
    record = await services.host.registry_lookup(status.identifier_kind, state.data["identifier"])
    if record is None:
        return Verdict.WRONG
    answerable = {q.kind for q in services.host.identity_questions(status, record)}
    if question.kind not in answerable:
        return Verdict.WRONG
    return services.host.identity_check(question, answer, record)


# --- step 5: the channel ---------------------------------------------------------------------------


def channels_for(services: Services, state: FlowState) -> list[str]:
    """The caisse's registration channels that reach a contact typed in this flow."""
    typed = _typed_recipient(state)
    return [c.name for c in services.host.channels_for("registration") if typed.reachable_by(c.reaches)]


async def submit_channel(
    services: Services, state: FlowState, form: dict[str, str], flow_id: str, *, client: str = ""
) -> StepResult:
    channel = form.get("channel", "")
    if channel not in channels_for(services, state):
        return StepResult(step="canal", errors={"channel": "Veuillez choisir comment recevoir votre code de sécurité."})
    state.data["channel"] = channel
    error = await _send_code(services, state, flow_id, channel, client=client)
    if error:
        return StepResult(step="canal", errors={"channel": error}, values={"channel": channel})
    advance(state, "canal", "code", PERSON_STEPS)
    return StepResult(step=state.step)


async def code_delivery(services: Services, state: FlowState, flow_id: str | None) -> dict[str, str]:
    """For the code page: whether the server refused the code for good, and the other typed contact."""
    delivery = await last_delivery(services, purpose="registration", binding=flow_id) if flow_id else None
    if delivery is None or delivery.state != FAILED:
        return {}
    # the contact as typed in this flow, shown in full as the page shows it: a typo is seen at once
    info = {
        "undelivered": undelivered_message(services, delivery.channel, typed_contact(services, state, delivery.channel))
    }
    other = _other_channel(services, state, delivery.channel)
    if other:
        info.update(
            other_channel=other, other_label=reach_phrase(services, other, typed_contact(services, state, other))
        )
    return info


def typed_contact(services: Services, state: FlowState, channel: str) -> str:
    """The contact typed in this flow that ``channel`` reaches, in full (a typo is seen at once)."""
    kind = reaches(services, channel)
    if kind == MOBILE:
        return format_phone(str(state.data.get("mobile") or ""))
    return str(state.data.get("email") or "") if kind == EMAIL else ""


def _other_channel(services: Services, state: FlowState, failed: str) -> str | None:
    return next((c for c in channels_for(services, state) if c != failed), None)


async def switch_channel(services: Services, state: FlowState, flow_id: str, *, client: str = "") -> StepResult:
    """The code again on the other typed contact, once the last one could not be delivered."""
    delivery = await last_delivery(services, purpose="registration", binding=flow_id)
    other = _other_channel(services, state, delivery.channel) if delivery and delivery.state == FAILED else None
    if other is None:
        return StepResult(step="code", errors={"code": NO_OTHER_CHANNEL})
    error = await _send_code(services, state, flow_id, other, client=client, after_failure=True)
    if error:
        return StepResult(step="code", errors={"code": error})
    state.data["channel"] = other  # the code that finishes the registration proves this contact now
    return StepResult(
        step="code", notice=f"Un nouveau code de sécurité vient de vous être envoyé {channel_label(services, other)}."
    )


async def _send_code(
    services: Services, state: FlowState, flow_id: str, channel: str, *, client: str, after_failure: bool = False
) -> str | None:
    """The registration code, bound to this flow, to the contact typed on "Vos coordonnées"."""
    return await send_code(
        services,
        purpose="registration",
        binding=flow_id,
        channel=channel,
        recipient=_typed_recipient(state),
        account_id=None,
        template="registration_code",
        after_failure=after_failure,
        client=client,
    )


def _typed_recipient(state: FlowState) -> Recipient:
    # the code goes to the contact typed in this flow: the code proves the person controls it
    name = full_name(state.data.get("first_name"), state.data.get("last_name"))
    return Recipient(name=name, email=state.data.get("email"), mobile=state.data.get("mobile"))


# --- step 6: the security code ---------------------------------------------------------------------


async def resend_code(services: Services, state: FlowState, flow_id: str, *, client: str = "") -> StepResult:
    channel = state.data.get("channel", "")
    error = await _send_code(services, state, flow_id, channel, client=client)
    if error:
        return StepResult(step="code", errors={"code": error})
    return StepResult(step="code", notice="Un nouveau code de sécurité vient de vous être envoyé.")


async def submit_code(
    services: Services, state: FlowState, form: dict[str, str], flow_id: str, client: str
) -> StepResult:
    policy = services.host.code_policy("registration")
    try:
        code = parse_code(form.get("code", ""), policy.length)
    except StepError as error:
        return StepResult(step="code", errors={"code": error.message_fr})
    _check, error_message = await check_code(
        services, purpose="registration", binding=flow_id, code=code, account_id=None, client=client
    )
    if error_message:
        return StepResult(step="code", errors={"code": error_message})
    return await _finish(services, state, channel=state.data["channel"], client=client)


# --- the end: an account, a temporary password, a confirmation letter -------------------------------


async def _finish(services: Services, state: FlowState, *, channel: str, client: str) -> StepResult:
    """Create the account when the registry knows the person; otherwise change nothing. Same screen."""
    status = current_status(services, state)
    assert status is not None
    identifier = state.data["identifier"]
    state.data["outcome_channel"] = channel
    record = (
        await services.host.registry_lookup(status.identifier_kind, identifier) if state.data.get("matched") else None
    )
    existing = await account_by_identifier(services, identifier)
    subject = subject_of(identifier)
    if existing is not None:
        await _notify_existing(services, existing, client)
        await _same_work(services)
    elif record is None:
        await _notice_allowed(services, identifier)  # the counting a known identifier's notice costs
        await services.audit("registration.unknown", subject=subject, client=client)
        await _same_work(services)
    elif reaches(services, channel) == POSTAL and (
        record.address is None or not await within_budget(services, channel)
    ):
        await _notice_allowed(services, identifier)
        await services.audit("registration.unknown", subject=subject, client=client, reason="no_letter")
        await _same_work(services)
    else:
        created = await _create_account(services, state, status, record, channel, client)
        if not created:  # someone registered the same identifier a moment ago
            existing = await account_by_identifier(services, identifier)
            if existing is not None:
                await _notify_existing(services, existing, client)
    state.data = {
        k: v
        for k, v in state.data.items()
        if k in ("status", "third_party", "started", "outcome_channel", "email", "mobile")
    }
    advance(state, state.step, "termine", PERSON_STEPS)
    state.done = list(PERSON_STEPS[:-1])
    return StepResult(step="termine")


async def _same_work(services: Services) -> None:
    """Hash as account creation does, so the answer takes as long whatever the registry holds."""
    await services.passwords.hash(secrets.token_urlsafe(12))


async def _notice_allowed(services: Services, identifier: str) -> bool:
    """At most ``REGISTRATION_NOTICES_PER_DAY`` notices per identifier: one tells the holder, more
    would only flood them. Counted for every registration that creates nothing, so an identifier
    without an account costs the same work. A counter store that fails lets the notice go."""
    try:
        [verdict] = await services.limiter.reserve([(services.limits.registration_notice, identifier)], services.now())
    except CounterStoreError:
        return True
    return verdict.allowed


async def _notify_existing(services: Services, account: dict[str, Any], client: str) -> None:
    allowed = await _notice_allowed(services, account["identifier"])
    async with services.database.transaction():
        if allowed:  # to the first contact the holder proved (an email typed by a stranger would tell them)
            await notify(
                services,
                template="registration_attempt_notice",
                recipient=account_recipient(account),
                kinds=tuple(k for k in (EMAIL, MOBILE, IDENTIFIER) if k in proven_kinds(account)),
                first_only=True,
            )
        await services.audit(
            "registration.duplicate",
            account_id=account["id"],
            subject=subject_of(account["identifier"]),
            client=client,
            notified=allowed,
        )


async def _create_account(
    services: Services, state: FlowState, status: Status, record: Record, channel: str, client: str
) -> bool:
    data = state.data
    context = PasswordContext(
        words=(
            record.last_name,
            record.first_name,
            record.identifier,
            record.birth_date.strftime("%d%m%Y") if record.birth_date else "",
        ),
        caisse_name=services.config.caisse.name,
    )
    temporary = services.passwords.temporary_password(context)
    password_hash = await services.passwords.hash(temporary)
    now = services.now()
    expires = temporary_expiry(services, channel)
    kind = reaches(services, channel)  # the contact the code proved (none for a password by post)
    t = services.database.t.Account
    typed = _typed_recipient(state)
    letter_recipient = Recipient(
        name=full_name(record.first_name, record.last_name), address=record.address or PostalAddress(lines=())
    )
    try:
        async with services.database.transaction():
            rows = (
                await t.insert(
                    t(
                        identifier_kind=status.identifier_kind,
                        identifier=record.identifier,
                        status=status.code,
                        last_name=record.last_name,
                        first_name=record.first_name,
                        birth_date=record.birth_date,
                        email=data.get("email"),
                        email_verified=kind == EMAIL,
                        mobile=data.get("mobile"),
                        mobile_verified=kind == MOBILE,
                        password_hash=password_hash,
                        password_is_temporary=True,
                        temporary_expires_at=expires,
                        credentials_version=1,
                        created_at=now,
                    )
                )
                .returning(t.id)
                .run()
            )
            account_id = int(rows[0]["id"])
            masked = mask_identifier(record.identifier)
            password_payload = {"password": temporary, "expires_on": french_date(expires), "masked_identifier": masked}
            await services.enqueue(
                channel=channel,
                template="temporary_password",
                recipient=letter_recipient if kind == POSTAL else typed.only(kind),
                payload=password_payload,
                expires_at=expires,
            )
            if record.address is not None:
                await services.enqueue(
                    channel=letter_channel(services, LETTER),
                    template="registration_letter",
                    recipient=letter_recipient,
                    payload={"masked_identifier": masked, "registered_on": french_date(now)},
                )
            await services.audit(
                "registration.completed", account_id=account_id, subject=masked, client=client, channel=channel
            )
    except INTEGRITY_ERRORS:
        return False
    return True


# --- "Autre": third parties ------------------------------------------------------------------------


async def submit_structure(services: Services, state: FlowState, form: dict[str, str]) -> StepResult:
    from guichet.core.third_party import STRUCTURE_KINDS

    kind = form.get("structure", "")
    if kind not in STRUCTURE_KINDS:
        return StepResult(step="structure", errors={"structure": "Veuillez choisir la nature de votre structure."})
    state.data["structure"] = kind
    advance(state, "structure", "demande", THIRD_PARTY_STEPS)
    return StepResult(step=state.step)


REQUEST_FIELDS = (
    "structure_name",
    "siret",
    "address_street",
    "address_extra",
    "postal_code",
    "city",
    "contact_name",
    "email",
    "phone",
)  # in the page's order: the error summary follows it


async def submit_request(services: Services, state: FlowState, form: dict[str, str], client: str) -> StepResult:
    from guichet.core.third_party import create_request, parse_postal_address

    values = {k: form.get(k, "") for k in REQUEST_FIELDS}
    errors: dict[str, str] = {}
    parsed: dict[str, Any] = {}
    parsers: tuple[tuple[str, Callable[[], Any]], ...] = (
        ("structure_name", lambda: parse_name(values["structure_name"], "structure_name", "nom de structure")),
        ("siret", lambda: parse_siret(values["siret"], "siret")),
        ("contact_name", lambda: parse_name(values["contact_name"], "contact_name", "nom")),
        ("email", lambda: parse_email(values["email"], "email")),
        ("phone", lambda: parse_phone(values["phone"], "phone") or ""),
    )
    for field, parse in parsers:
        try:
            parsed[field] = parse()
        except StepError as error:
            errors[error.field] = error.message_fr
    # where the approval's letter (the temporary password) goes: the caisse checks it against the Kbis
    parsed["address"], address_errors = parse_postal_address(
        values["address_street"], values["address_extra"], values["postal_code"], values["city"]
    )
    errors.update(address_errors)
    if errors:
        ordered = {field: errors[field] for field in REQUEST_FIELDS if field in errors}
        return StepResult(step="demande", errors=ordered, values=values)
    # no second count here: the flow's first step took this client's registration_client allowance,
    # and a flow sends one request at most (it ends at "demande-envoyee")
    async with services.database.transaction():
        number = await create_request(
            services.database, structure_kind=state.data["structure"], now=services.now(), **parsed
        )
        await services.audit(
            "third_party.requested",
            subject=mask_identifier(parsed["siret"]),
            client=client,
            structure=state.data["structure"],
            request=number,
        )
    advance(state, "demande", "demande-envoyee", THIRD_PARTY_STEPS)
    return StepResult(step=state.step)


def registered_on(moment: dt.datetime) -> str:
    return french_date(moment)
