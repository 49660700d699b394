"""authenticator_totp: enrolment with a QR code and the key as text, each code once, ±1 time step, the key
sealed, nothing secret in the logs; on SQLite and PostgreSQL, with the clock under the test's control."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyotp
import pytest

from guichet.core.clock import FrozenClock
from guichet.core.config import CaisseConfig
from guichet.core.context import PluginContext
from guichet.core.credentials import CredentialStore
from guichet.core.errors import ConfigError
from guichet.core.flows import authenticate
from guichet.core.structs import AccountRef, Authenticator
from guichet.plugins.authenticator_totp import authenticator as totp_module
from guichet.plugins.authenticator_totp import hooks
from guichet.plugins.authenticator_totp.authenticator import ALREADY_USED, TotpAuthenticator
from guichet.testing import base_with_plugins
from tests.conftest import Portal
from tests.plugins.conftest import CLIENT, new_session
from tests.security.support import make_account, remember


def totp_of(portal: Portal) -> Authenticator:
    found = portal.services.host.authenticator("totp")
    assert found is not None
    return found  # type: ignore[no-any-return]


def step_now(clock: FrozenClock) -> int:
    return int(clock.now().timestamp()) // 30


def code(key: str, step: int) -> str:
    return pyotp.TOTP(key).generate_otp(step)


def to_step_start(clock: FrozenClock, seconds_in: int = 1) -> None:
    """Move the clock to ``seconds_in`` seconds into the next time step."""
    clock.advance(seconds=30 - clock.now().timestamp() % 30 + seconds_in)


async def enrol(portal: Portal, account: dict[str, Any], label: str = "Téléphone de Julien") -> tuple[str, int]:
    """Add an authenticator app through core (re-authentication aside), as Mon compte will: (key, id)."""
    services, totp = portal.services, totp_of(portal)
    session = new_session(services)
    challenge = await authenticate.begin_enrolment(services, session, totp, account)
    key = challenge.prompt.key_text.replace(" ", "")
    remember(key, challenge.prompt.key_text)
    first = code(key, step_now(services.clock))
    check, message = await authenticate.finish_enrolment(
        services, session, totp, account, {"code": first, "label": label}, client=CLIENT
    )
    assert check.ok and message == "" and check.enrolment_id is not None, message
    return key, check.enrolment_id


async def log_in(portal: Portal, account: dict[str, Any], typed: str) -> tuple[bool, str]:
    """The login's second step with an authenticator app, through core (rate limits, audit)."""
    services, totp = portal.services, totp_of(portal)
    session = new_session(services)
    await authenticate.start(services, session, totp, account)
    check, message = await authenticate.verify(services, session, totp, account, {"code": typed}, client=CLIENT)
    return check.ok, message


async def judge(portal: Portal, account: dict[str, Any], typed: str) -> bool:
    """The plugin alone: no rate limit in the way of a test that tries many codes."""
    totp = totp_of(portal)
    ref = authenticate.account_ref(portal.services, account)
    state = (await totp.challenge(ref)).state
    return (await totp.verify(ref, state, {"code": typed})).ok


# --- enrolment ---------------------------------------------------------------------------------------


async def test_enrolment_shows_a_qr_code_and_the_key_and_keeps_it_on_the_first_right_code(
    auth_portal: Portal, holder: dict[str, Any], clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    services, totp = auth_portal.services, totp_of(auth_portal)
    uris: list[str] = []
    make = totp_module.segno.make
    monkeypatch.setattr(totp_module.segno, "make", lambda content, **kw: uris.append(content) or make(content, **kw))
    ref = authenticate.account_ref(services, holder)
    challenge = await totp.begin_enrolment(ref)
    prompt, key = challenge.prompt, challenge.state
    assert prompt.widget == "setup" and prompt.ask_label and prompt.field_label_fr
    assert prompt.qr_svg.startswith("<svg") and "<title>" in prompt.qr_svg and "otpauth" not in prompt.qr_svg
    assert len(key) == 32 and key == key.upper() and key.isalnum()  # 160 bits of base32
    assert prompt.key_text == " ".join(key[i : i + 4] for i in range(0, 32, 4))
    assert any("scanne" in p for p in prompt.text_fr) and any("saisir une clé" in p for p in prompt.text_fr)
    # the app shows the caisse and the person's name; never the NIR
    [uri] = uris
    assert uri.startswith("otpauth://totp/MSA%20Test:Julien%20LEFEBVRE?") and f"secret={key}" in uri
    assert "issuer=MSA%20Test" in uri and holder["identifier"] not in uri
    # a wrong first code keeps nothing
    wrong = f"{(int(code(key, step_now(clock))) + 1) % 1_000_000:06d}"
    refused = await totp.finish_enrolment(ref, key, {"code": wrong, "label": "x"})
    assert not refused.ok and "ne correspond pas" in refused.message_fr
    assert not (await totp.finish_enrolment(ref, key, {"code": "12"})).ok
    assert await totp.enrolments(ref) == []
    # the right one keeps it, named by the person, its step used
    done = await totp.finish_enrolment(ref, key, {"code": code(key, step_now(clock)), "label": "  Mon   téléphone "})
    assert done.ok and done.account_id == holder["id"]
    [enrolment] = await totp.enrolments(ref)
    assert enrolment.id == done.enrolment_id and enrolment.label == "Mon téléphone" and enrolment.remaining is None
    [stored] = await services.host.credentials.of_account(holder["id"], "totp")
    assert stored.counter == step_now(clock)


async def test_an_enrolment_through_core_is_audited_and_told(
    auth_portal: Portal, holder: dict[str, Any], clock: FrozenClock
) -> None:
    await enrol(auth_portal, holder)
    [notice] = await auth_portal.outbox("authenticator_changed_notice")
    assert notice["channel"] == "email"
    assert notice["payload"] == {"change": "added", "authenticator": "Application d'authentification"}
    t = auth_portal.services.database.t.AuditLog
    kinds = [r["kind"] for r in await t.select(t.kind).where(t.account_id == holder["id"]).run()]
    assert "authenticator.enrolled" in kinds


# --- codes -------------------------------------------------------------------------------------------


async def test_a_code_logs_in_once(auth_portal: Portal, holder: dict[str, Any], clock: FrozenClock) -> None:
    to_step_start(clock)
    key, _ = await enrol(auth_portal, holder)
    # the enrolment's own code is used: it does not log in right afterwards
    assert await log_in(auth_portal, holder, code(key, step_now(clock))) == (False, ALREADY_USED)
    clock.advance(seconds=30)
    right = code(key, step_now(clock))
    assert await log_in(auth_portal, holder, right) == (True, "")
    assert await log_in(auth_portal, holder, right) == (False, ALREADY_USED)  # replayed
    clock.advance(seconds=10)  # still the same step: still the same code, still used
    assert await log_in(auth_portal, holder, right) == (False, ALREADY_USED)
    ok, message = await log_in(auth_portal, holder, "000000" if right != "000000" else "111111")
    assert not ok and "ne correspond pas" in message
    t = auth_portal.services.database.t.AuditLog
    rows = await t.select(t.kind).where(t.account_id == holder["id"]).order_by(t.id).run()
    assert [r["kind"] for r in rows].count("authenticator.verified") == 1
    assert [r["kind"] for r in rows].count("authenticator.failed") == 4


async def test_an_earlier_step_is_refused_after_a_later_one(
    auth_portal: Portal, holder: dict[str, Any], clock: FrozenClock
) -> None:
    key, _ = await enrol(auth_portal, holder)
    clock.advance(minutes=10)
    now = step_now(clock)
    assert await judge(auth_portal, holder, code(key, now + 1))  # the phone is a little ahead
    assert not await judge(auth_portal, holder, code(key, now))  # now's code is older than the last one used
    assert not await judge(auth_portal, holder, code(key, now - 1))
    clock.advance(seconds=60)
    assert await judge(auth_portal, holder, code(key, now + 3))


async def test_one_step_either_side_is_accepted_two_are_not(
    auth_portal: Portal, holder: dict[str, Any], clock: FrozenClock
) -> None:
    key, _ = await enrol(auth_portal, holder)
    clock.advance(minutes=10)
    to_step_start(clock, seconds_in=15)
    now = step_now(clock)
    # in order, so that no accepted step is earlier than the last one used
    accepted = {offset: await judge(auth_portal, holder, code(key, now + offset)) for offset in (-2, -1, 0, 1, 2)}
    assert accepted == {-2: False, -1: True, 0: True, 1: True, 2: False}
    # the edges of a step: a code of the step before is accepted until the step after begins
    clock.advance(minutes=5)
    to_step_start(clock, seconds_in=29)
    now = step_now(clock)
    earlier = code(key, now - 1)
    clock.advance(seconds=1)  # now + 1 begins: now - 1 is two steps away
    assert not await judge(auth_portal, holder, earlier)
    assert await judge(auth_portal, holder, code(key, now + 2))  # one step ahead of the new now


async def test_two_parallel_answers_with_one_code_let_one_in(
    auth_portal: Portal, holder: dict[str, Any], clock: FrozenClock
) -> None:
    key, _ = await enrol(auth_portal, holder)
    clock.advance(seconds=30)
    typed = code(key, step_now(clock))
    results = await asyncio.gather(*(judge(auth_portal, holder, typed) for _ in range(6)))
    assert sorted(results) == [False] * 5 + [True]


async def test_two_phones_each_named_each_removable(
    auth_portal: Portal, holder: dict[str, Any], clock: FrozenClock
) -> None:
    services, totp = auth_portal.services, totp_of(auth_portal)
    first_key, first_id = await enrol(auth_portal, holder, "Téléphone")
    clock.advance(seconds=30)
    second_key, second_id = await enrol(auth_portal, holder, "Tablette")
    assert first_key != second_key
    ref = authenticate.account_ref(services, holder)
    assert [e.label for e in await totp.enrolments(ref)] == ["Téléphone", "Tablette"]
    clock.advance(seconds=30)
    assert await judge(auth_portal, holder, code(first_key, step_now(clock)))
    assert await judge(auth_portal, holder, code(second_key, step_now(clock)))
    # somebody else cannot remove them
    other = await make_account(auth_portal, "exploitant")
    assert not await totp.remove(authenticate.account_ref(services, other), first_id)
    assert await authenticate.remove(services, totp, holder, first_id, client=CLIENT)
    assert not await totp.remove(ref, first_id)  # already gone
    clock.advance(seconds=30)
    assert not await judge(auth_portal, holder, code(first_key, step_now(clock)))
    assert await judge(auth_portal, holder, code(second_key, step_now(clock)))
    assert [n["payload"]["change"] for n in await auth_portal.outbox("authenticator_changed_notice")] == [
        "added",
        "added",
        "removed",
    ]


async def test_another_accounts_challenge_answers_for_no_one(
    auth_portal: Portal, holder: dict[str, Any], clock: FrozenClock
) -> None:
    key, _ = await enrol(auth_portal, holder)
    clock.advance(seconds=30)
    totp, services = totp_of(auth_portal), auth_portal.services
    other = authenticate.account_ref(services, await make_account(auth_portal, "exploitant"))
    ref = authenticate.account_ref(services, holder)
    other_state = (await totp.challenge(other)).state
    assert not (await totp.verify(ref, other_state, {"code": code(key, step_now(clock))})).ok
    assert not (await totp.verify(None, "", {"code": code(key, step_now(clock))})).ok  # no whole login
    assert not (await totp.verify(other, other_state, {"code": code(key, step_now(clock))})).ok


# --- what is kept, what is logged ----------------------------------------------------------------------


async def test_the_key_is_sealed_in_the_table(auth_portal: Portal, holder: dict[str, Any], tmp_path: Path) -> None:
    key, enrolment_id = await enrol(auth_portal, holder)
    database = auth_portal.services.database
    rows = await database.t.Credential.raw("SELECT * FROM guichet_credential").run()
    [row] = rows
    assert row["kind"] == "totp" and row["secret"] and row["lookup"] == ""
    raw = repr(row)
    for shown in (key, key.lower(), key[:16], key[16:]):
        assert shown not in raw
    if database.is_sqlite:
        files = b"".join(p.read_bytes() for p in tmp_path.glob("guichet.sqlite*"))
        assert files and key.encode() not in files and key[:16].encode() not in files
    [stored] = await auth_portal.services.host.credentials.of_account(holder["id"], "totp")
    assert auth_portal.services.host.credentials.secret(stored) == key.encode()


async def test_no_key_or_code_in_any_log_line(
    auth_portal: Portal, holder: dict[str, Any], clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key, _ = await enrol(auth_portal, holder)
    typed = []
    for _ in range(3):
        clock.advance(seconds=30)
        typed.append(code(key, step_now(clock)))
        assert (await log_in(auth_portal, holder, typed[-1]))[0]
        assert not (await log_in(auth_portal, holder, typed[-1]))[0]
    remember(*typed)
    assert caplog.records and any(r.name.startswith("guichet") for r in caplog.records)
    lines = [r.getMessage() for r in caplog.records] + [caplog.text]
    for secret in (key, key.lower(), " ".join(key[i : i + 4] for i in range(0, 32, 4)), *typed):
        assert not any(secret in line for line in lines), secret
    t = auth_portal.services.database.t.AuditLog
    audit = repr(await t.select().run())
    assert "authenticator.verified" in audit and not any(s in audit for s in (key, *typed))


async def test_a_key_no_caisse_key_opens_is_skipped_quietly(
    auth_portal: Portal, holder: dict[str, Any], clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    key, enrolment_id = await enrol(auth_portal, holder)
    t = auth_portal.services.database.t.Credential
    await t.update({t.secret: "AAAA" * 20}).where(t.id == enrolment_id).run()
    clock.advance(seconds=30)
    assert not await judge(auth_portal, holder, code(key, step_now(clock)))
    assert f"authenticator app {enrolment_id} cannot be opened" in caplog.text and key not in caplog.text


# --- settings ------------------------------------------------------------------------------------------


def test_settings_name_the_issuer_and_are_checked(
    make_config: Callable[..., CaisseConfig], clock: FrozenClock, tmp_path: Path
) -> None:
    def built(settings: str) -> TotpAuthenticator:
        config = make_config(
            f"[plugins.settings.authenticator_totp]\n{settings}", base=base_with_plugins("authenticator_totp")
        )
        context = PluginContext(config=config, database=None, clock=clock)  # type: ignore[arg-type]
        [found] = hooks.guichet_authenticators(context=context, store=CredentialStore(None, config, clock))  # type: ignore[arg-type]
        assert isinstance(found, TotpAuthenticator)
        return found

    default = built("")
    assert (default.issuer, default.digits, default.period) == ("MSA Test", 6, 30)
    assert "6 chiffres" in default.description_fr and "30 secondes" in default.description_fr
    own = built('issuer = "Mon espace MSA"\ndigits = 8\nperiod = 60')
    assert (own.issuer, own.digits, own.period) == ("Mon espace MSA", 8, 60)
    assert "8 chiffres" in own.description_fr
    for bad in ("digits = 7", "period = 45", 'issuer = "a:b"', "colour = 1"):
        with pytest.raises(ConfigError, match=r"plugins\.settings\.authenticator_totp"):
            built(bad)


async def test_eight_digits_every_sixty_seconds(clock: FrozenClock, make_config: Callable[..., CaisseConfig]) -> None:
    config = make_config("[plugins.settings.authenticator_totp]\ndigits = 8\nperiod = 60")
    context = PluginContext(config=config, database=None, clock=clock)  # type: ignore[arg-type]
    totp = TotpAuthenticator(
        context.settings("authenticator_totp", totp_module.TotpSettings),
        context,
        CredentialStore(None, config, clock),  # type: ignore[arg-type]
    )
    ref = AccountRef(id=1, name="Julien LEFEBVRE", handle="h")
    challenge = await totp.begin_enrolment(ref)
    step = int(clock.now().timestamp()) // 60
    typed = pyotp.TOTP(challenge.state, digits=8, interval=60).generate_otp(step)
    assert len(typed) == 8 and totp._step_of(challenge.state, typed) == step
    assert (await totp.challenge(ref)).prompt.field_label_fr == "Code à 8 chiffres"
