"""Login: identifier and password, then a code on every login unless the browser is trusted.

Every failure gets the same message and the same status: unknown identifier, wrong password,
expired temporary password, or slowed down.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

import msgspec

from guichet.core.channels import carries
from guichet.core.errors import CounterStoreError, StepError
from guichet.core.flows import authenticate
from guichet.core.flows.common import (
    CLOSED,
    NO_OTHER_CHANNEL,
    TYPED_CONTACTS,
    UNAVAILABLE,
    account_by_id,
    account_by_identifier,
    account_recipient,
    channel_label,
    channel_view,
    check_code,
    last_delivery,
    limit_unavailable,
    masked_destination,
    proven_kinds,
    reach_phrase,
    reaches,
    send_code,
    settle_tries,
    subject_of,
    undelivered_message,
)
from guichet.core.flows.engine import StepResult
from guichet.core.identifiers import parse_code, parse_issued, parse_nir, parse_siret
from guichet.core.keys import new_token, token_digest
from guichet.core.outbox import FAILED
from guichet.core.ratelimit import Settlement
from guichet.core.services import Services
from guichet.core.sessions import FULL, PASSWORD, Session, SessionData
from guichet.core.structs import CODE, AuditEvent, Authenticator, Prompt

LOGIN_FAILED = "Identifiant ou mot de passe incorrect."
METHOD_URL = "/connexion/methode"  # the second step with an authenticator other than the codes
PASSWORDLESS_URL = "/connexion/sans-mot-de-passe"  # a whole login with an authenticator that replaces the password
SECURITY_URL = "/mon-compte/securite"  # where a person adds and removes authenticators


class LoginOutcome(msgspec.Struct, frozen=True, kw_only=True):
    result: StepResult
    next_url: str = ""  # where to go once the step is done
    set_trusted_cookie: str = ""  # a new trusted-browser token for the cookie
    chosen_channel: str = ""  # the channel the right code came by: this browser's first choice next time
    code_page: dict[str, Any] | None = None  # the code page's content, when asked for with the password step
    account: dict[str, Any] | None = None  # the account of a login just done: its landing page needs no new read


def parse_login_identifier(raw: str) -> str:
    """A NIR (13 or 15 characters) for persons, a SIRET (14 digits) for companies, "T" and 10
    digits for a third party whose identifier the caisse issued."""
    compact = "".join(raw.split())
    if compact[:1] in ("T", "t"):
        return parse_issued(compact)
    if len(compact) == 14 and compact.isascii() and compact.isdigit():
        return parse_siret(compact)
    return parse_nir(compact)


def next_url_for(account: dict[str, Any]) -> str:
    if account["password_is_temporary"]:
        return "/changement-mot-de-passe"
    if account["contacts_confirmed_at"] is None:
        return "/confirmation-coordonnees"
    return "/espace-prive"


def next_url_of(account: dict[str, Any], data: SessionData) -> str:
    """Where a logged-in session goes before anything else: what the account needs (``next_url_for``),
    then the enrolment its login left due (a recovery code, or a status that requires a
    phishing-resistant factor); "/espace-prive" when nothing is."""
    next_url = next_url_for(account)
    return SECURITY_URL if next_url == "/espace-prive" and data.must_enrol else next_url


CHOOSE_CHANNEL = "Veuillez choisir où recevoir votre code de sécurité."
NO_CONTACT = (
    "Aucune coordonnée ne permet de vous envoyer un code de sécurité. "
    "Veuillez contacter l'assistance Internet de votre MSA."
)


def proven_channels(services: Services, account: dict[str, Any]) -> list[str]:
    """Where a login code may go: an address the person proved with a code (or that the caisse's own
    systems know them by), never one only typed.

    The caisse's login channels come first, in its order. A person who proved only a contact those
    channels do not reach (registered by SMS where logins go by email) still gets the code on a
    channel that reaches it: sending it to an unproven address would hand it to whoever owns that
    address (a mistyped email is a stranger's).
    """
    kinds, recipient = proven_kinds(account), account_recipient(account)
    preferred = [
        c.name for c in services.host.channels_for("login") if c.reaches in kinds and recipient.reachable_by(c.reaches)
    ]
    if preferred:
        return preferred
    return [
        c.name
        for c in services.host.channels().values()
        if c.reaches in TYPED_CONTACTS
        and c.reaches in kinds
        and CODE in carries(c)
        and recipient.reachable_by(c.reaches)
    ]


def unproven_choices(services: Services, account: dict[str, Any]) -> list[str]:
    """For an account that has proven nothing yet (its password came by post): the contacts typed at
    registration, for the person to pick the one they recognise; the code sent there then proves it."""
    if proven_channels(services, account):
        return []
    recipient = account_recipient(account)
    return [
        c.name
        for c in services.host.channels_for("login")
        if c.reaches in TYPED_CONTACTS and recipient.reachable_by(c.reaches)
    ]


def channel_options(services: Services, account: dict[str, Any]) -> list[str]:
    """Every channel this person may ask a login code on: proven ones, or the typed ones before any proof."""
    return proven_channels(services, account) or unproven_choices(services, account)


async def submit_password(
    services: Services,
    session: Session,
    form: dict[str, str],
    *,
    client: str,
    trusted_token: str | None,
    return_to: str = "",
    trust_browser: bool = True,
    preferred_channel: str = "",
    with_code_page: bool = False,
) -> LoginOutcome:
    """The password step. ``return_to`` (a path the caller checked) is where the login goes once
    done; ``trust_browser=False`` asks for a code even from a trusted browser; ``preferred_channel``
    (the browser's last proven channel) only reorders the person's own proven channels;
    ``with_code_page``: when the next step is the code page, its content comes with the outcome (a
    browser running htmx is shown it in the same response)."""
    identifier_raw = form.get("identifier", "")
    password = form.get("password", "")
    values = {"identifier": identifier_raw}
    fail = LoginOutcome(result=StepResult(step="connexion", errors={"password": LOGIN_FAILED}, values=values))
    now = services.now()
    try:
        identifier = parse_login_identifier(identifier_raw)
    except StepError:
        identifier = ""
    limits = services.limits
    # The try is counted before the password is verified, per address and per identifier, in one
    # round trip: of N parallel tries each has its place, and those past a pause are refused unverified.
    tries = [(limits.login_client, client or "-")] + ([(limits.login_identifier, identifier)] if identifier else [])
    try:
        verdicts = await services.limiter.reserve(tries, now)
    except CounterStoreError:
        await limit_unavailable(services, "login", subject=subject_of(identifier) if identifier else "", client=client)
        return LoginOutcome(result=StepResult(step="connexion", errors={"password": UNAVAILABLE}, values=values))
    account = await account_by_identifier(services, identifier) if identifier else None
    slowed = not all(verdict.allowed for verdict in verdicts)
    # one argon2 verification for every try let through: an unknown identifier costs what a wrong
    # password costs (a slowed try is refused unverified, whoever the identifier belongs to)
    verified = not slowed and await services.passwords.verify(account["password_hash"] if account else None, password)
    expired = bool(
        account
        and account["password_is_temporary"]
        and account["temporary_expires_at"]
        and account["temporary_expires_at"] <= now
    )
    if slowed or not verified or expired or not password:
        reason = "slowed" if slowed else "expired" if expired and verified else "bad_credentials"
        await services.audit(
            "login.failed",
            account_id=account["id"] if account else None,
            subject=subject_of(identifier) if identifier else "",
            client=client,
            reason=reason,
        )
        return fail
    assert account is not None
    # The right password: earlier failures no longer slow the owner down, and the address gets its
    # try back (many people log in from one address). Sent with the code's own counts when one goes out.
    right = Settlement(
        clear=((limits.login_identifier, identifier),),
        give_back=((limits.login_client, client or "-"),),
        reserved_at=now,
    )
    if services.passwords.needs_rehash(account["password_hash"]):
        t = services.database.t.Account
        await t.update({t.password_hash: await services.passwords.hash(password)}).where(t.id == account["id"]).run()
    data = session.ensure(int(now.timestamp() * 1000))
    data.account_id = account["id"]
    data.level = PASSWORD
    data.credentials_version = account["credentials_version"]
    data.login_binding = new_token()
    session.rotate()
    # stored with what the step does next (the code sent, the login done), in that one statement
    held = [
        services.event("login.password_ok", account_id=account["id"], subject=subject_of(identifier), client=client)
    ]
    data.return_to = return_to
    offers: list[authenticate.Offer] | None = None
    try:
        trusted = trust_browser and bool(trusted_token) and await _trusted(services, account, trusted_token or "", held)
        if not trusted:
            offers = await authenticate.login_offers(services, account)
    except Exception:
        with contextlib.suppress(Exception):  # the right password is on record if the store lets us
            await services.audit_all(held)
        raise
    if not trusted:
        assert offers is not None
        first = offers[0].authenticator if offers else None
        if first is not None and first.name != authenticate.CONTACT_CODES:
            # the strongest authenticator the person holds comes first: no code is sent unless asked for
            await settle_tries(services, right)
            await services.audit_all(held)
            return LoginOutcome(result=StepResult(step="methode"), next_url=f"{METHOD_URL}/{first.name}")
    proven = [] if trusted else proven_channels(services, account)
    if preferred_channel in proven:
        # the channel this person chose last time on this browser: only ever one of their proven ones
        proven.remove(preferred_channel)
        proven.insert(0, preferred_channel)
    if not proven:
        await settle_tries(services, right)
        if trusted:
            return await _complete(services, session, account, client, via="trusted_browser", held=held)
        await services.audit_all(held)
        if not unproven_choices(services, account):
            return LoginOutcome(result=StepResult(step="connexion", errors={"password": NO_CONTACT}, values=values))
        # nothing proven yet: the person picks a contact on the code page before anything is sent
        page = await code_page(services, session, account=account, offers=offers) if with_code_page else None
        return LoginOutcome(result=StepResult(step="code"), code_page=page)
    data.login_channel = proven[0]
    error = await send_code(
        services,
        purpose="login",
        binding=data.login_binding,
        channel=proven[0],
        recipient=account_recipient(account),
        account_id=account["id"],
        template="login_code",
        new_binding=True,
        client=client,
        settle=right,
        held=held,
    )
    if error:
        return LoginOutcome(result=StepResult(step="code", errors={"code": error}))
    page = (
        await code_page(services, session, account=account, offers=offers, just_sent=True) if with_code_page else None
    )
    return LoginOutcome(result=StepResult(step="code"), code_page=page)


async def _trusted(services: Services, account: dict[str, Any], token: str, held: list[AuditEvent]) -> bool:
    """Whether ``token`` is one of this account's trusted browsers; its use joins the ``held`` events."""
    t = services.database.t.TrustedBrowser
    now = services.now()
    rows = await (
        t.update({t.last_used_at: now})
        .where(
            (t.token_hash == token_digest(token))
            & (t.account_id == account["id"])
            & t.revoked_at.is_null()
            & (t.expires_at > now)
            & (t.credentials_version == account["credentials_version"])
        )
        .returning(t.id)
        .run()
    )
    if rows:
        held.append(services.event("trusted_browser.used", account_id=account["id"]))
    return bool(rows)


async def codes_offered(services: Services, account: dict[str, Any]) -> bool:
    """Whether this login may go on with a code by email or SMS: not for whoever holds a stronger
    authenticator where the caisse keeps no fallback, nor where their status requires a
    phishing-resistant one they hold (``authenticate.login_offers``). Whoever holds nothing else
    (contacts typed but not proven yet included) gets codes."""
    names = [o.authenticator.name for o in await authenticate.login_offers(services, account)]
    return authenticate.CONTACT_CODES in names or not names


async def code_page(
    services: Services,
    session: Session,
    *,
    account: dict[str, Any] | None = None,
    offers: list[authenticate.Offer] | None = None,
    just_sent: bool = False,
) -> dict[str, Any]:
    """What the code page says: where the code went and how long it lives, where else it may go, and
    whether it could not be delivered (then the other channel, when the person has one).

    ``account`` and ``offers``: the session's account row and what it may log in with, when the
    caller holds them; ``just_sent``: the code was queued in this very request, so there is no
    delivery outcome to read yet. Empty, with the session cleared, once the login is over."""
    if account is None:
        account = await _password_step_account(services, session)
    if account is None or session.data is None:  # gone, or its password changed since: this login is over
        session.clear()
        return {}
    recipient = account_recipient(account)
    channel = session.data.login_channel
    options = [channel_view(services, c, recipient) for c in channel_options(services, account)]
    info: dict[str, Any] = {
        "channel": channel_view(services, channel, recipient) if channel else None,
        "destination": masked_destination(services, channel, recipient) if channel else "",
        "options": options,
        "proven": bool(proven_channels(services, account)),
        "methods": [
            {"name": o.authenticator.name, "label": o.authenticator.label_fr, "url": _method_url(o.authenticator.name)}
            for o in (offers if offers is not None else await authenticate.login_offers(services, account))
            if o.authenticator.name != authenticate.CONTACT_CODES
        ],
        "lifetime_minutes": services.host.code_policy("login").lifetime_minutes,
        "length": services.host.code_policy("login").length,
    }
    delivery = (
        await last_delivery(services, purpose="login", binding=session.data.login_binding)
        if channel and session.data.login_binding and not just_sent
        else None
    )
    if delivery is not None and delivery.state == FAILED:
        info["undelivered"] = undelivered_message(services, delivery.channel, info["destination"])
        other = other_login_channel(services, account, delivery.channel)
        if other:
            info["other_channel"] = other
            info["other_label"] = reach_phrase(services, other, masked_destination(services, other, recipient))
    return info


def other_login_channel(services: Services, account: dict[str, Any], failed: str) -> str | None:
    """Where a login code can go once it could not be delivered on ``failed``: another of the person's options."""
    return next((c for c in channel_options(services, account) if c != failed), None)


async def resend_other(services: Services, session: Session, *, client: str = "") -> StepResult:
    """The code again, on the other channel, once the last one could not be delivered."""
    assert session.data is not None and session.data.account_id is not None
    account = await _password_step_account(services, session)
    if account is None:  # its password changed since the password step: this login is over
        session.clear()
        return StepResult(step="connexion")
    if not await codes_offered(services, account):
        return StepResult(step="code", errors={"code": authenticate.NOT_OFFERED})
    delivery = await last_delivery(services, purpose="login", binding=session.data.login_binding)
    other = (
        other_login_channel(services, account, delivery.channel)
        if account is not None and delivery is not None and delivery.state == FAILED
        else None
    )
    if account is None or other is None:
        return StepResult(step="code", errors={"code": NO_OTHER_CHANNEL})
    error = await send_code(
        services,
        purpose="login",
        binding=session.data.login_binding,
        channel=other,
        recipient=account_recipient(account),
        account_id=account["id"],
        template="login_code",
        after_failure=True,
        client=client,
    )
    if error:
        return StepResult(step="code", errors={"code": error})
    session.data.login_channel = other
    session.dirty = True
    return StepResult(
        step="code", notice=f"Un nouveau code de sécurité vient de vous être envoyé {channel_label(services, other)}."
    )


async def resend(services: Services, session: Session, channel: str = "", *, client: str = "") -> StepResult:
    """A new code, on the channel asked for (one of the person's options) or on the current one."""
    assert session.data is not None and session.data.account_id is not None
    account = await _password_step_account(services, session)
    if account is None:  # gone, or its password changed since the password step: this login is over
        session.clear()
        return StepResult(step="connexion")
    if not await codes_offered(services, account):
        return StepResult(step="code", errors={"code": authenticate.NOT_OFFERED})
    options = channel_options(services, account)
    wanted = channel or session.data.login_channel
    if not wanted:
        return StepResult(step="code", errors={"channel": CHOOSE_CHANNEL})
    if wanted not in options:
        return StepResult(step="code", errors={"channel": CHOOSE_CHANNEL if channel else UNAVAILABLE})
    error = await send_code(
        services,
        purpose="login",
        binding=session.data.login_binding,
        channel=wanted,
        recipient=account_recipient(account),
        account_id=account["id"],
        template="login_code",
        client=client,
    )
    if error:
        return StepResult(step="code", errors={"code": error})
    first = not session.data.login_channel
    session.data.login_channel = wanted
    session.dirty = True
    return StepResult(
        step="code",
        notice="Un code de sécurité vient de vous être envoyé."
        if first
        else "Un nouveau code de sécurité vient de vous être envoyé.",
    )


async def submit_code(services: Services, session: Session, form: dict[str, str], *, client: str) -> LoginOutcome:
    assert session.data is not None and session.data.account_id is not None
    policy = services.host.code_policy("login")
    trust = form.get("trust") == "oui"
    try:
        code = parse_code(form.get("code", ""), policy.length)
    except StepError as error:
        return LoginOutcome(
            result=StepResult(step="code", errors={"code": error.message_fr}, values={"trust": "oui" if trust else ""})
        )
    if not session.data.login_channel:
        return LoginOutcome(result=StepResult(step="code", errors={"channel": CHOOSE_CHANNEL}))
    # the account as the password step left it: one whose password changed since (from the owner's
    # own session, say) is not logged in by a code sent to whoever typed the old one
    account = await _password_step_account(services, session)
    if account is None:
        session.clear()
        return LoginOutcome(result=StepResult(step="connexion", errors={"password": LOGIN_FAILED}))
    if not await codes_offered(services, account):
        return LoginOutcome(result=StepResult(step="code", errors={"code": authenticate.NOT_OFFERED}))
    held: list[AuditEvent] = []  # code.succeeded, stored with login.succeeded
    check, message = await check_code(
        services,
        purpose="login",
        binding=session.data.login_binding,
        code=code,
        account_id=session.data.account_id,
        client=client,
        held=held,
    )
    if message or check is None:
        return LoginOutcome(
            result=StepResult(
                step="code", errors={"code": message or UNAVAILABLE}, values={"trust": "oui" if trust else ""}
            )
        )
    contact = TYPED_CONTACTS.get(reaches(services, check.channel))
    if contact and not account[f"{contact}_verified"]:  # the code reached this contact: it is proven now
        t = services.database.t.Account
        await t.update({getattr(t, f"{contact}_verified"): True}).where(t.id == account["id"]).run()
        account = {**account, f"{contact}_verified": True}
    outcome = await _complete(services, session, account, client, via="code", held=held)
    token = await add_trusted_browser(services, account, form.get("user_agent", "")) if trust else ""
    return LoginOutcome(
        result=outcome.result,
        next_url=outcome.next_url,
        set_trusted_cookie=token,
        chosen_channel=check.channel,
        account=outcome.account,
    )


async def _complete(
    services: Services,
    session: Session,
    account: dict[str, Any],
    client: str,
    *,
    via: str,
    authenticator: Authenticator | None = None,
    with_password: bool = True,
    held: list[AuditEvent] | None = None,
) -> LoginOutcome:
    """The login is done: the session's level, assurance and id; ``held`` events are stored with
    ``login.succeeded``, in one statement."""
    assert session.data is not None
    session.data.level = FULL
    session.data.login_binding = ""
    session.data.auth_ms = int(services.now().timestamp() * 1000)
    session.data.auth_via = via
    if via == "trusted_browser":  # the browser stands for the second factor: the password alone was proven now
        session.data.amr, session.data.aal, session.data.phishing_resistant = ["pwd"], 1, False
    else:
        authenticator = authenticator or services.host.authenticator(authenticate.CONTACT_CODES)
        assert authenticator is not None
        session.data.amr = authenticate.amr_of(authenticator, with_password=with_password)
        session.data.aal = authenticator.assurance.aal
        session.data.phishing_resistant = authenticator.assurance.phishing_resistant
        # a status that requires a phishing-resistant factor: whoever has none adds one before anything else
        session.data.must_enrol = authenticate.phishing_resistance_required(services, account) and not (
            authenticator.assurance.phishing_resistant
        )
    session.data.login_ref = new_token()
    session.rotate()
    succeeded = services.event(
        "login.succeeded", account_id=account["id"], subject=subject_of(account["identifier"]), client=client, via=via
    )
    await services.audit_all([*(held or []), succeeded])
    next_url = next_url_of(account, session.data)
    if next_url == "/espace-prive" and session.data.return_to:  # nothing forced first: straight back
        next_url, session.data.return_to = session.data.return_to, ""
    return LoginOutcome(result=StepResult(step="done"), next_url=next_url, account=account)


# --- the second step with another authenticator than the codes, and the whole login -------------


class MethodPage(msgspec.Struct, frozen=True, kw_only=True):
    """What the page of one authenticator shows during a login."""

    name: str
    label: str
    prompt: Prompt
    others: list[dict[str, str]]  # the person's other ways: name, label, url


async def _password_step_account(services: Services, session: Session) -> dict[str, Any] | None:
    """The account of a session past the password step (and no further), still at its credentials."""
    data = session.data
    if data is None or data.account_id is None or data.level != PASSWORD:
        return None
    account = await account_by_id(services, data.account_id)
    if account is None or account["credentials_version"] != data.credentials_version:
        return None
    return account


def _method_url(name: str) -> str:
    return "/connexion/code" if name == authenticate.CONTACT_CODES else f"{METHOD_URL}/{name}"


async def method_page(services: Services, session: Session, name: str) -> MethodPage | None:
    """A new challenge of ``name`` for this login, when the person holds it; None otherwise."""
    account = await _password_step_account(services, session)
    if account is None:
        return None
    # what the person holds is read once, for the offers and for the challenge (a passkey's list)
    async with services.host.credentials.read_once(account["id"]):
        offers = await authenticate.login_offers(services, account)
        chosen = next((o.authenticator for o in offers if o.authenticator.name == name), None)
        if chosen is None or name == authenticate.CONTACT_CODES:
            return None
        challenge = await authenticate.start(services, session, chosen, account)
    others = [
        {"name": o.authenticator.name, "label": o.authenticator.label_fr, "url": _method_url(o.authenticator.name)}
        for o in offers
        if o.authenticator.name != name
    ]
    return MethodPage(name=name, label=chosen.label_fr, prompt=challenge.prompt, others=others)


async def submit_method(
    services: Services, session: Session, name: str, form: dict[str, str], *, client: str
) -> LoginOutcome:
    """The answer to ``name``'s challenge: right, the login completes (a recovery code then asks for a
    new authenticator); wrong, the page shows why and a new challenge."""
    account = await _password_step_account(services, session)
    offers = await authenticate.login_offers(services, account) if account is not None else []
    chosen = next((o.authenticator for o in offers if o.authenticator.name == name), None)
    if account is None or chosen is None or name == authenticate.CONTACT_CODES:
        return LoginOutcome(result=StepResult(step="connexion", errors={"password": authenticate.NOT_OFFERED}))
    check, message = await authenticate.verify(services, session, chosen, account, form, client=client)
    if message:
        return LoginOutcome(result=StepResult(step="methode", errors={"code": message}))
    outcome = await _complete(services, session, account, client, via=name, authenticator=chosen)
    if check.then_enrol:
        assert session.data is not None
        session.data.must_enrol = True
        session.data.return_to = ""
        outcome = LoginOutcome(
            result=outcome.result, next_url=next_url_for(account).replace("/espace-prive", SECURITY_URL)
        )
    token = (
        await add_trusted_browser(services, account, form.get("user_agent", "")) if form.get("trust") == "oui" else ""
    )
    return LoginOutcome(
        result=outcome.result, next_url=outcome.next_url, set_trusted_cookie=token, account=outcome.account
    )


def passwordless_authenticator(services: Services, name: str) -> Authenticator | None:
    """The authenticator that logs in alone under ``name``, when the caisse allows such logins."""
    found = services.host.authenticator(name)
    if not services.config.authentication.passwordless or found is None or not found.assurance.replaces_password:
        return None
    return found


def passwordless_offers(services: Services) -> list[dict[str, str]]:
    """The whole logins the login page offers ("Se connecter avec une clé d'accès")."""
    if not services.config.authentication.passwordless:
        return []
    return [
        {"name": a.name, "label": a.label_fr, "url": f"{PASSWORDLESS_URL}/{a.name}"}
        for a in services.host.authenticators()
        if a.assurance.replaces_password
    ]


async def passwordless_page(services: Services, session: Session, name: str) -> Prompt | None:
    chosen = passwordless_authenticator(services, name)
    if chosen is None:
        return None
    session.ensure(int(services.now().timestamp() * 1000))
    return (await authenticate.start(services, session, chosen, None)).prompt


async def submit_passwordless(
    services: Services, session: Session, name: str, form: dict[str, str], *, client: str, return_to: str = ""
) -> LoginOutcome:
    """A whole login: the authenticator says whose it is and proves both factors at once."""
    chosen = passwordless_authenticator(services, name)
    if chosen is None or session.data is None:
        return LoginOutcome(result=StepResult(step="sans-mot-de-passe", errors={"code": authenticate.NOT_OFFERED}))
    check, message = await authenticate.verify(services, session, chosen, None, form, client=client)
    account = await authenticate.account_of_check(services, check) if not message else None
    if account is None or account["identifier_kind"] == CLOSED:
        return LoginOutcome(
            result=StepResult(step="sans-mot-de-passe", errors={"code": message or authenticate.WRONG_ANSWER})
        )
    data = session.data
    data.account_id = account["id"]
    data.level = PASSWORD
    data.credentials_version = account["credentials_version"]
    data.return_to = return_to
    return await _complete(services, session, account, client, via=name, authenticator=chosen, with_password=False)


async def add_trusted_browser(services: Services, account: dict[str, Any], label: str) -> str:
    token = new_token()
    now = services.now()
    t = services.database.t.TrustedBrowser
    async with services.database.transaction():
        await t.insert(
            t(
                account_id=account["id"],
                token_hash=token_digest(token),
                label=_browser_label(label),
                credentials_version=account["credentials_version"],
                created_at=now,
                expires_at=now + dt.timedelta(days=services.config.security.trusted_browser_days),
            )
        ).run()
        await services.audit("trusted_browser.added", account_id=account["id"])
    return token


def _browser_label(user_agent: str) -> str:
    ua = user_agent.lower()
    browser = next(
        (
            name
            for key, name in (
                ("firefox", "Firefox"),
                ("edg", "Edge"),
                ("chrome", "Chrome"),
                ("chromium", "Chromium"),
                ("safari", "Safari"),
            )
            if key in ua
        ),
        "Navigateur",
    )
    system = next(
        (
            name
            for key, name in (
                ("android", "Android"),
                ("iphone", "iPhone"),
                ("ipad", "iPad"),
                ("windows", "Windows"),
                ("mac os", "macOS"),
                ("linux", "Linux"),
            )
            if key in ua
        ),
        "",
    )
    return f"{browser} sur {system}" if system else browser
