"""Forgotten password: identifier, channel, confirmation code, temporary password on that channel.

An unknown identifier sees the same pages and causes the same database work (a code nobody
receives), and nothing is sent. Nothing changes on the account until a valid code is given.
"""

from __future__ import annotations

import secrets
from typing import Any

from guichet.core.errors import CounterStoreError, StepError
from guichet.core.flows.common import (
    NO_OTHER_CHANNEL,
    SLOW_DOWN,
    UNAVAILABLE,
    account_by_identifier,
    account_recipient,
    channel_label,
    check_code,
    french_date,
    last_delivery,
    limit_unavailable,
    notify,
    password_context,
    proven_kinds,
    reaches,
    send_code,
    subject_of,
    temporary_expiry,
    undelivered_message,
)
from guichet.core.flows.engine import FlowState, StepResult, advance
from guichet.core.flows.login import parse_login_identifier
from guichet.core.identifiers import mask_identifier, parse_code
from guichet.core.outbox import FAILED
from guichet.core.services import Services
from guichet.core.structs import EMAIL, MOBILE

KIND = "recovery"
STEPS = ["identifiant", "canal", "code", "confirmation"]


def channels(services: Services) -> list[str]:
    """Every channel the caisse allows for recovery: the same list for every identifier."""
    return [c.name for c in services.host.channels_for("recovery")]


def _limit_subject(identifier: str) -> str:
    """Code sends and failures count per identifier, whether it has an account or not: counted per
    account for some and per flow for others, the limits would tell a stranger which is which."""
    return f"recovery:{identifier}"


async def submit_identifier(services: Services, state: FlowState, form: dict[str, str], client: str) -> StepResult:
    raw = form.get("identifier", "")
    try:
        identifier = parse_login_identifier(raw)
    except StepError as error:
        return StepResult(step="identifiant", errors={"identifier": error.message_fr}, values={"identifier": raw})
    state.data = {"identifier": identifier}
    advance(state, "identifiant", "canal", STEPS)
    return StepResult(step=state.step)


async def submit_channel(
    services: Services, state: FlowState, form: dict[str, str], flow_id: str, client: str
) -> StepResult:
    channel = form.get("channel", "")
    if channel not in channels(services):
        return StepResult(
            step="canal", errors={"channel": "Veuillez choisir comment recevoir votre mot de passe temporaire."}
        )
    identifier = state.data["identifier"]
    now = services.now()
    try:
        for limit, subject in (
            (services.limits.recovery_identifier, identifier),
            (services.limits.recovery_client, client or "-"),
        ):
            verdict = await services.limiter.take(limit, subject, now)
            if not verdict.allowed:
                await services.audit("limit.reached", subject=subject_of(identifier), client=client, limit=limit.name)
                return StepResult(step="canal", errors={"channel": SLOW_DOWN}, values={"channel": channel})
    except CounterStoreError:
        await limit_unavailable(services, "recovery", subject=subject_of(identifier), client=client)
        return StepResult(step="canal", errors={"channel": UNAVAILABLE}, values={"channel": channel})
    state.data["channel"] = channel
    account, reachable, error = await _send_recovery_code(services, state, flow_id, client=client)
    if error:
        return StepResult(step="canal", errors={"channel": error}, values={"channel": channel})
    await services.audit(
        "recovery.requested",
        account_id=account["id"] if account else None,
        subject=subject_of(identifier),
        client=client,
        channel=channel,
        reachable=reachable,
    )
    advance(state, "canal", "code", STEPS)
    return StepResult(step=state.step)


async def _send_recovery_code(
    services: Services,
    state: FlowState,
    flow_id: str,
    *,
    client: str,
    channel: str | None = None,
    after_failure: bool = False,
) -> tuple[dict[str, Any] | None, bool, str | None]:
    """Issue a code bound to the flow; only an account with a contact on that channel receives it."""
    identifier = state.data["identifier"]
    channel = channel or state.data.get("channel", "")
    account = await account_by_identifier(services, identifier)
    # only an address the person proved (with a code, or the caisse's own systems): a mistyped email
    # is a stranger's, who would then receive the temporary password
    kind = reaches(services, channel)
    reachable = bool(account and kind in proven_kinds(account) and account_recipient(account).reachable_by(kind))
    error = await send_code(
        services,
        purpose="recovery",
        binding=flow_id,
        channel=channel,
        recipient=account_recipient(account) if account else account_recipient({}),
        account_id=account["id"] if account else None,
        template="recovery_code",
        deliver=reachable,
        limit_subject=_limit_subject(identifier),
        after_failure=after_failure,
        client=client,
    )
    return account, reachable, error


async def code_delivery(services: Services, state: FlowState, flow_id: str | None) -> dict[str, str]:
    """For the code page: whether the server refused the code for good, and the other channel.

    Only a code sent to an account's own contact can be refused, so this tells whoever typed the
    identifier that it has an account whose address refuses mail: no address is shown, and the
    person who needs to know is the one who typed it (docs/security.md, known limits).
    """
    delivery = await last_delivery(services, purpose="recovery", binding=flow_id) if flow_id else None
    if delivery is None or delivery.state != FAILED:
        return {}
    info = {"undelivered": undelivered_message(services, delivery.channel, "")}
    other = next((c for c in channels(services) if c != delivery.channel), None)
    if other:
        info.update(other_channel=other, other_label=channel_label(services, other))
    return info


async def switch_channel(services: Services, state: FlowState, flow_id: str, *, client: str = "") -> StepResult:
    """The code again on the other channel, once the last one could not be delivered."""
    delivery = await last_delivery(services, purpose="recovery", binding=flow_id)
    other = (
        next((c for c in channels(services) if c != delivery.channel), None)
        if delivery and delivery.state == FAILED
        else None
    )
    if other is None:
        return StepResult(step="code", errors={"code": NO_OTHER_CHANNEL})
    _account, _reachable, error = await _send_recovery_code(
        services, state, flow_id, channel=other, after_failure=True, client=client
    )
    if error:
        return StepResult(step="code", errors={"code": error})
    state.data["channel"] = other  # the temporary password follows on this channel
    return StepResult(
        step="code",
        notice=f"Un nouveau code de confirmation vient de vous être envoyé {channel_label(services, other)}.",
    )


async def resend_code(services: Services, state: FlowState, flow_id: str, *, client: str = "") -> StepResult:
    _account, _reachable, error = await _send_recovery_code(services, state, flow_id, client=client)
    if error:
        return StepResult(step="code", errors={"code": error})
    return StepResult(step="code", notice="Un nouveau code de confirmation vient de vous être envoyé.")


async def submit_code(
    services: Services, state: FlowState, form: dict[str, str], flow_id: str, client: str
) -> StepResult:
    policy = services.host.code_policy("recovery")
    try:
        code = parse_code(form.get("code", ""), policy.length)
    except StepError as error:
        return StepResult(step="code", errors={"code": error.message_fr})
    account = await account_by_identifier(services, state.data["identifier"])
    check, message = await check_code(
        services,
        purpose="recovery",
        binding=flow_id,
        code=code,
        account_id=account["id"] if account else None,
        limit_subject=_limit_subject(state.data["identifier"]),
        client=client,
    )
    if message or check is None or account is None or check.account_id != account["id"]:
        return StepResult(step="code", errors={"code": message or "Le code saisi est incorrect."})
    await reset_password(services, account, channel=state.data["channel"], client=client)
    # whose logins the reset ended: the web layer ends what they reached at the services too
    state.data["reset_account_id"] = account["id"]
    advance(state, "code", "confirmation", STEPS)
    return StepResult(step=state.step)


async def reset_password(services: Services, account: dict[str, object], *, channel: str, client: str) -> None:
    """A temporary password on ``channel``; sessions end and trusted browsers are revoked; a notice elsewhere."""
    temporary = services.passwords.temporary_password(password_context(services, account))  # type: ignore[arg-type]
    password_hash = await services.passwords.hash(temporary)
    now = services.now()
    expires = temporary_expiry(services, channel)
    t = services.database.t.Account
    b = services.database.t.TrustedBrowser
    recipient = account_recipient(account)  # type: ignore[arg-type]
    kind = reaches(services, channel)
    async with services.database.transaction():
        changes: dict[Any, Any] = {
            t.password_hash: password_hash,
            t.password_is_temporary: True,
            t.temporary_expires_at: expires,
            t.password_changed_at: now,
            t.credentials_version: t.credentials_version + 1,
        }
        if services.config.citizen.confirm_contacts_after_recovery:
            # seed 002, steps 5-6: after the personalisation the person confirms their contacts again
            changes[t.contacts_confirmed_at] = None
        await t.update(changes).where(t.id == account["id"]).run()
        await b.update({b.revoked_at: now}).where((b.account_id == account["id"]) & b.revoked_at.is_null()).run()
        await services.enqueue(
            channel=channel,
            template="temporary_password",
            recipient=recipient.only(kind),
            payload={
                "password": temporary,
                "expires_on": french_date(expires),
                "masked_identifier": mask_identifier(str(account["identifier"])),
            },
            expires_at=expires,
        )
        # the person's other proven contacts hear of it: a reset they did not ask for is seen at once
        await notify(
            services,
            template="password_reset_notice",
            recipient=recipient,
            kinds=tuple(k for k in (EMAIL, MOBILE) if k != kind and k in proven_kinds(account)),
        )  # type: ignore[arg-type]
        await services.audit(
            "password.reset",
            account_id=int(account["id"]),  # type: ignore[call-overload]
            subject=subject_of(str(account["identifier"])),
            client=client,
            channel=channel,
        )


def new_flow_secret() -> str:
    return secrets.token_urlsafe(32)
