"""Login: identifier and password, then a code on every login unless the browser is trusted.

Every failure gets the same message and the same status: unknown identifier, wrong password,
expired temporary password, or slowed down.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec

from guichet.core.errors import CounterStoreError, StepError
from guichet.core.flows.common import (
    UNAVAILABLE,
    account_by_id,
    account_by_identifier,
    account_recipient,
    check_code,
    limit_unavailable,
    masked_destination,
    send_code,
    settle_tries,
    subject_of,
)
from guichet.core.flows.engine import StepResult
from guichet.core.identifiers import parse_code, parse_nir, parse_siret
from guichet.core.keys import new_token, token_digest
from guichet.core.ratelimit import Settlement
from guichet.core.services import Services
from guichet.core.sessions import FULL, PASSWORD, Session

LOGIN_FAILED = "Identifiant ou mot de passe incorrect."


class LoginOutcome(msgspec.Struct, frozen=True, kw_only=True):
    result: StepResult
    next_url: str = ""  # where to go once the step is done
    set_trusted_cookie: str = ""  # a new trusted-browser token for the cookie


def parse_login_identifier(raw: str) -> str:
    """A NIR (13 or 15 characters) for persons, a SIRET (14 digits) for companies."""
    compact = "".join(raw.split())
    if len(compact) == 14 and compact.isascii() and compact.isdigit():
        return parse_siret(compact)
    return parse_nir(compact)


def next_url_for(account: dict[str, Any]) -> str:
    if account["password_is_temporary"]:
        return "/changement-mot-de-passe"
    if account["contacts_confirmed_at"] is None:
        return "/confirmation-coordonnees"
    return "/espace-prive"


def login_channel(services: Services, account: dict[str, Any]) -> str | None:
    """The first channel of the caisse's login policy that the account has a verified-or-known contact for."""
    for channel in services.host.code_policy("login").channels:
        if services.host.channel(channel) is None:
            continue
        # SMS only to a number proven by a code (NIST 800-63B restricts SMS as an authenticator)
        if channel == "email" and account.get("email") or channel == "sms" and account.get("mobile_verified"):
            return channel
    return None


async def submit_password(services: Services, session: Session, form: dict[str, str], *, client: str,
                          trusted_token: str | None) -> LoginOutcome:
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
        await limit_unavailable(services, "login", subject=subject_of(identifier) if identifier else "",
                                client=client)
        return LoginOutcome(result=StepResult(step="connexion", errors={"password": UNAVAILABLE}, values=values))
    account = await account_by_identifier(services, identifier) if identifier else None
    slowed = not all(verdict.allowed for verdict in verdicts)
    # one argon2 verification for every try let through: an unknown identifier costs what a wrong
    # password costs (a slowed try is refused unverified, whoever the identifier belongs to)
    verified = not slowed and await services.passwords.verify(account["password_hash"] if account else None,
                                                              password)
    expired = bool(account and account["password_is_temporary"] and account["temporary_expires_at"]
                   and account["temporary_expires_at"] <= now)
    if slowed or not verified or expired or not password:
        reason = "slowed" if slowed else "expired" if expired and verified else "bad_credentials"
        await services.audit("login.failed", account_id=account["id"] if account else None,
                             subject=subject_of(identifier) if identifier else "", client=client, reason=reason)
        return fail
    assert account is not None
    # The right password: earlier failures no longer slow the owner down, and the address gets its
    # try back (many people log in from one address). Sent with the code's own counts when one goes out.
    right = Settlement(clear=((limits.login_identifier, identifier),),
                       give_back=((limits.login_client, client or "-"),), reserved_at=now)
    if services.passwords.needs_rehash(account["password_hash"]):
        t = services.database.t.Account
        await t.update({t.password_hash: await services.passwords.hash(password)}).where(t.id == account["id"]).run()
    data = session.ensure(int(now.timestamp() * 1000))
    data.account_id = account["id"]
    data.level = PASSWORD
    data.credentials_version = account["credentials_version"]
    data.login_binding = new_token()
    session.rotate()
    await services.audit("login.password_ok", account_id=account["id"], subject=subject_of(identifier), client=client)
    trusted = bool(trusted_token) and await _trusted(services, account, trusted_token or "")
    channel = None if trusted else login_channel(services, account)
    if channel is None:
        await settle_tries(services, right)
        if trusted:
            return await _complete(services, session, account, client, via="trusted_browser")
        return LoginOutcome(result=StepResult(step="connexion", errors={"password": UNAVAILABLE}, values=values))
    error = await send_code(services, purpose="login", binding=data.login_binding, channel=channel,
                            recipient=account_recipient(account), account_id=account["id"], template="login_code",
                            new_binding=True, client=client, settle=right)
    if error:
        return LoginOutcome(result=StepResult(step="code", errors={"code": error}))
    return LoginOutcome(result=StepResult(step="code"))


async def _trusted(services: Services, account: dict[str, Any], token: str) -> bool:
    t = services.database.t.TrustedBrowser
    now = services.now()
    rows = await (t.update({t.last_used_at: now})
                  .where((t.token_hash == token_digest(token)) & (t.account_id == account["id"])
                         & t.revoked_at.is_null() & (t.expires_at > now)
                         & (t.credentials_version == account["credentials_version"]))
                  .returning(t.id).run())
    if rows:
        await services.audit("trusted_browser.used", account_id=account["id"])
    return bool(rows)


async def code_page(services: Services, session: Session) -> dict[str, Any]:
    """What the code page says: where the code went and how long it lives."""
    account = await account_by_id(services, session.data.account_id) if session.data and session.data.account_id else None
    if account is None:
        return {}
    channel = login_channel(services, account) or "email"
    return {"channel": channel, "destination": masked_destination(channel, account_recipient(account)),
            "lifetime_minutes": services.host.code_policy("login").lifetime_minutes,
            "length": services.host.code_policy("login").length}


async def resend(services: Services, session: Session, *, client: str = "") -> StepResult:
    assert session.data is not None and session.data.account_id is not None
    account = await account_by_id(services, session.data.account_id)
    channel = login_channel(services, account) if account else None
    if account is None or channel is None:
        return StepResult(step="code", errors={"code": UNAVAILABLE})
    error = await send_code(services, purpose="login", binding=session.data.login_binding, channel=channel,
                            recipient=account_recipient(account), account_id=account["id"], template="login_code",
                            client=client)
    if error:
        return StepResult(step="code", errors={"code": error})
    return StepResult(step="code", notice="Un nouveau code de sécurité vient de vous être envoyé.")


async def submit_code(services: Services, session: Session, form: dict[str, str], *, client: str) -> LoginOutcome:
    assert session.data is not None and session.data.account_id is not None
    policy = services.host.code_policy("login")
    trust = form.get("trust") == "oui"
    try:
        code = parse_code(form.get("code", ""), policy.length)
    except StepError as error:
        return LoginOutcome(result=StepResult(step="code", errors={"code": error.message_fr},
                                              values={"trust": "oui" if trust else ""}))
    _check, message = await check_code(services, purpose="login", binding=session.data.login_binding, code=code,
                                       account_id=session.data.account_id, client=client)
    if message:
        return LoginOutcome(result=StepResult(step="code", errors={"code": message},
                                              values={"trust": "oui" if trust else ""}))
    account = await account_by_id(services, session.data.account_id)
    if account is None:
        session.clear()
        return LoginOutcome(result=StepResult(step="connexion", errors={"password": LOGIN_FAILED}))
    outcome = await _complete(services, session, account, client, via="code")
    if trust:
        token = await add_trusted_browser(services, account, form.get("user_agent", ""))
        return LoginOutcome(result=outcome.result, next_url=outcome.next_url, set_trusted_cookie=token)
    return outcome


async def _complete(services: Services, session: Session, account: dict[str, Any], client: str,
                    *, via: str) -> LoginOutcome:
    assert session.data is not None
    session.data.level = FULL
    session.data.login_binding = ""
    session.rotate()
    await services.audit("login.succeeded", account_id=account["id"], subject=subject_of(account["identifier"]),
                         client=client, via=via)
    return LoginOutcome(result=StepResult(step="done"), next_url=next_url_for(account))


async def add_trusted_browser(services: Services, account: dict[str, Any], label: str) -> str:
    token = new_token()
    now = services.now()
    t = services.database.t.TrustedBrowser
    async with services.database.transaction():
        await t.insert(t(account_id=account["id"], token_hash=token_digest(token), label=_browser_label(label),
                         credentials_version=account["credentials_version"], created_at=now,
                         expires_at=now + dt.timedelta(days=services.config.security.trusted_browser_days))).run()
        await services.audit("trusted_browser.added", account_id=account["id"])
    return token


def _browser_label(user_agent: str) -> str:
    ua = user_agent.lower()
    browser = next((name for key, name in (("firefox", "Firefox"), ("edg", "Edge"), ("chrome", "Chrome"),
                                           ("chromium", "Chromium"), ("safari", "Safari")) if key in ua), "Navigateur")
    system = next((name for key, name in (("android", "Android"), ("iphone", "iPhone"), ("ipad", "iPad"),
                                          ("windows", "Windows"), ("mac os", "macOS"), ("linux", "Linux")) if key in ua),
                  "")
    return f"{browser} sur {system}" if system else browser
