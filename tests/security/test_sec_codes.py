"""One-time codes under attack: brute force, resends, reuse, superseded codes, codes carried to another
purpose, account or browser, concurrent submissions and guesses, expiry, look-alike digits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from guichet.core.flows.common import CODE_DEAD, SLOW_DOWN
from tests.conftest import Portal
from tests.security.support import (
    PASSWORD,
    another_browser,
    audit_rows,
    expect_event,
    make_account,
    messages,
    password_step,
    person,
    snapshot,
    where,
)

pytestmark = pytest.mark.asyncio


async def at_code_step(portal: Portal, key: str = "particulier_vitale") -> str:
    """Password step done for a demo person's account; returns the code that was sent."""
    r = await password_step(portal, person(key).identifier, PASSWORD)
    assert where(r) == "/connexion/code", messages(r)
    await portal.get("/connexion/code")
    return await portal.last_code("login_code")


def wrong(code: str, shift: int = 1) -> str:
    return "".join(str((int(c) + shift) % 10) for c in code)


async def codes(portal: Portal, purpose: str = "login") -> list[dict[str, Any]]:
    t = portal.services.database.t.OneTimeCode
    return await t.select().where(t.purpose == purpose).order_by(t.id).run()  # type: ignore[no-any-return]


async def logged_in(portal: Portal) -> bool:
    r = await portal.get("/espace-prive")
    return r.status_code == 200


async def test_brute_force_of_a_login_code_stops_after_max_attempts(portal: Portal, demo_people: Any) -> None:
    account = await make_account(portal)
    code = await at_code_step(portal)
    shown = []
    for shift in (1, 2, 3):
        r = await portal.post("/connexion/code", {"code": wrong(code, shift)})
        assert r.status_code == 422
        shown += messages(r)
    assert shown[0].endswith("Il vous reste 2 essais.") and shown[1].endswith("Il vous reste 1 essai.")
    assert shown[2] == CODE_DEAD
    r = await portal.post("/connexion/code", {"code": code})
    assert r.status_code == 422 and not await logged_in(portal), "the right code worked after max_attempts"
    [row] = await codes(portal)
    assert row["attempts"] == 3 and row["used_at"] is None
    await expect_event(portal, "code.failed", count=2, account_id=account["id"], outcome="wrong")
    await expect_event(portal, "code.locked", account_id=account["id"], purpose="login")


async def test_resends_do_not_reset_the_daily_failure_count(portal: Portal, clock: Any, demo_people: Any) -> None:
    account = await make_account(portal)
    code = await at_code_step(portal)
    failures = 0
    while failures < portal.services.config.codes.failures_per_day:
        for _ in range(3):
            clock.advance(seconds=65)  # past the progressive pause, within the code's 10 minutes
            r = await portal.post("/connexion/code", {"code": wrong(code)})
            assert r.status_code == 422 and SLOW_DOWN not in messages(r)
            failures += 1
            if failures == portal.services.config.codes.failures_per_day:
                break
        clock.advance(seconds=65)
        r = await portal.post("/connexion/code", {"action": "renvoyer"})
        assert "Un nouveau code de sécurité vient de vous être envoyé." in r.text, messages(r)
        code = await portal.last_code("login_code")
    clock.advance(seconds=65)
    r = await portal.post("/connexion/code", {"code": code})
    assert r.status_code == 422 and messages(r) == [SLOW_DOWN]
    assert not await logged_in(portal)
    compared = sum(row["attempts"] for row in await codes(portal))
    assert compared == portal.services.config.codes.failures_per_day, "more guesses compared than the daily limit"
    await expect_event(portal, "limit.reached", account_id=account["id"], limit="code_failures")


async def test_a_used_code_cannot_be_used_again(portal: Portal, demo_people: Any) -> None:
    account = await make_account(portal)
    code = await at_code_step(portal)
    r = await portal.post("/connexion/code", {"code": code})
    assert where(r) == "/espace-prive"
    await portal.post("/deconnexion", {})
    fresh = await at_code_step(portal)
    if fresh == code:
        pytest.skip("the new code happens to equal the old one (one chance in a million)")
    r = await portal.post("/connexion/code", {"code": code})
    assert r.status_code == 422 and not await logged_in(portal)
    await expect_event(portal, "code.failed", account_id=account["id"], outcome="wrong")


async def test_a_superseded_code_is_refused(portal: Portal, clock: Any, demo_people: Any) -> None:
    account = await make_account(portal)
    first = await at_code_step(portal)
    clock.advance(seconds=61)
    r = await portal.post("/connexion/code", {"action": "renvoyer"})
    assert r.status_code == 200, messages(r)
    second = await portal.last_code("login_code")
    if first == second:
        pytest.skip("the new code happens to equal the old one")
    r = await portal.post("/connexion/code", {"code": first})
    assert r.status_code == 422 and not await logged_in(portal)
    rows = await codes(portal)
    assert rows[0]["superseded_at"] is not None and rows[0]["attempts"] == 0
    r = await portal.post("/connexion/code", {"code": second})
    assert where(r) == "/espace-prive"
    await expect_event(portal, "code.sent", count=2, account_id=account["id"])


async def test_a_resend_waits_for_the_cooldown(portal: Portal, demo_people: Any) -> None:
    account = await make_account(portal)
    await at_code_step(portal)
    r = await portal.post("/connexion/code", {"action": "renvoyer"})
    assert r.status_code == 422 and "Vous pourrez en demander un nouveau dans" in messages(r)[0]
    assert len(await codes(portal)) == 1
    await expect_event(portal, "code.sent", count=1, account_id=account["id"])


async def test_a_registration_code_is_useless_for_a_login(
    portal: Portal, portal_factory: Callable[..., Any], demo_people: Any
) -> None:
    account = await make_account(portal)
    login_code = await at_code_step(portal)
    registering = await another_browser(portal_factory, portal)
    who = person("particulier_paiement")
    await registering.post("/inscription/statut", {"status": who.status})
    await registering.post("/inscription/identifiant", {"identifier": who.nir_with_key})
    await registering.post(
        "/inscription/coordonnees",
        {
            "last_name": who.last_name,
            "first_name": who.first_name,
            "birth_date": who.birth_date.strftime("%d/%m/%Y"),
            "email": who.email,
            "mobile": who.mobile,
        },
    )
    await registering.post("/inscription/question", {"question": who.question, "answer": who.answer})
    await registering.post("/inscription/canal", {"channel": "email"})
    registration_code = await registering.last_code("registration_code")
    if registration_code != login_code:
        r = await portal.post("/connexion/code", {"code": registration_code})
        assert r.status_code == 422 and not await logged_in(portal)
        await expect_event(portal, "code.failed", account_id=account["id"], purpose="login")
        r = await registering.post("/inscription/code", {"code": login_code})
        assert r.status_code == 422
        await expect_event(portal, "code.failed", purpose="registration")
    t = portal.services.database.t.Account
    assert await t.count().run() == 1, "an account was created with a login code"


async def test_a_code_is_useless_for_another_account(
    portal: Portal, portal_factory: Callable[..., Any], demo_people: Any
) -> None:
    alice = await make_account(portal, "particulier_vitale")
    await make_account(portal, "particulier_paiement")
    await at_code_step(portal, "particulier_vitale")
    bob = await another_browser(portal_factory, portal)
    bob_code = await at_code_step(bob, "particulier_paiement")
    alice_code = [
        m for m in await portal.outbox("login_code") if m["recipient"]["email"] == person("particulier_vitale").email
    ][-1]["payload"]["code"]
    if alice_code == bob_code:
        pytest.skip("both codes happen to be equal")
    r = await portal.post("/connexion/code", {"code": bob_code})
    assert r.status_code == 422 and not await logged_in(portal)
    await expect_event(portal, "code.failed", account_id=alice["id"], outcome="wrong")


async def test_a_code_is_useless_in_another_browser_of_the_same_account(
    portal: Portal, portal_factory: Callable[..., Any], demo_people: Any
) -> None:
    account = await make_account(portal)
    first = await at_code_step(portal)
    other = await another_browser(portal_factory, portal)
    second = await at_code_step(other)
    if first == second:
        pytest.skip("both codes happen to be equal")
    r = await other.post("/connexion/code", {"code": first})
    assert r.status_code == 422 and not await logged_in(other)
    r = await portal.post("/connexion/code", {"code": first})
    assert where(r) == "/espace-prive", "the first browser's own code still works"
    await expect_event(portal, "code.failed", account_id=account["id"], outcome="wrong")


async def test_an_expired_code_is_refused(portal: Portal, clock: Any, demo_people: Any) -> None:
    account = await make_account(portal)
    code = await at_code_step(portal)
    clock.advance(minutes=portal.services.host.code_policy("login").lifetime_minutes, seconds=1)
    r = await portal.post("/connexion/code", {"code": code})
    assert r.status_code == 422 and messages(r) == [CODE_DEAD] and not await logged_in(portal)
    await expect_event(portal, "code.expired", account_id=account["id"], outcome="expired")


async def test_concurrent_submissions_of_the_right_login_code_log_in_once(portal: Portal, demo_people: Any) -> None:
    account = await make_account(portal)
    code = await at_code_step(portal)
    token = portal.csrf
    answers = await asyncio.gather(
        *(portal.client.post("/connexion/code", data={"code": code, "csrf_token": token}) for _ in range(4))
    )
    assert all(r.status_code < 500 for r in answers)
    assert sum(where(r) == "/espace-prive" for r in answers) == 1, [r.status_code for r in answers]
    [row] = await codes(portal)
    assert row["used_at"] is not None
    await expect_event(portal, "login.succeeded", count=1, account_id=account["id"])


async def test_concurrent_submissions_of_the_right_registration_code_create_one_account(
    portal: Portal, demo_people: Any
) -> None:
    who = person("particulier_vitale")
    await portal.post("/inscription/statut", {"status": who.status})
    await portal.post("/inscription/identifiant", {"identifier": who.nir_with_key})
    await portal.post(
        "/inscription/coordonnees",
        {
            "last_name": who.last_name,
            "first_name": who.first_name,
            "birth_date": who.birth_date.strftime("%d/%m/%Y"),
            "email": who.email,
            "mobile": who.mobile,
        },
    )
    await portal.post("/inscription/question", {"question": who.question, "answer": who.answer})
    await portal.post("/inscription/canal", {"channel": "email"})
    code = await portal.last_code("registration_code")
    token = portal.csrf
    answers = await asyncio.gather(
        *(portal.client.post("/inscription/code", data={"code": code, "csrf_token": token}) for _ in range(4))
    )
    assert all(r.status_code < 500 for r in answers), [r.status_code for r in answers]
    assert await portal.services.database.t.Account.count().run() == 1
    assert len(await portal.outbox("temporary_password")) == 1
    await expect_event(portal, "registration.completed", count=1)
    await expect_event(portal, "code.succeeded", count=1, purpose="registration")


async def test_concurrent_submissions_of_the_right_recovery_code_reset_once(portal: Portal) -> None:
    account_row = await make_account(portal)
    await portal.get("/mot-de-passe-oublie/identifiant")
    await portal.post("/mot-de-passe-oublie/identifiant", {"identifier": person().identifier})
    await portal.post("/mot-de-passe-oublie/canal", {"channel": "email"})
    code = await portal.last_code("recovery_code")
    token = portal.csrf
    answers = await asyncio.gather(
        *(portal.client.post("/mot-de-passe-oublie/code", data={"code": code, "csrf_token": token}) for _ in range(4))
    )
    assert all(r.status_code < 500 for r in answers), [r.status_code for r in answers]
    assert len(await portal.outbox("temporary_password")) == 1
    await expect_event(portal, "password.reset", count=1, account_id=account_row["id"])


async def test_concurrent_wrong_guesses_never_compare_more_than_max_attempts(portal: Portal, demo_people: Any) -> None:
    account = await make_account(portal)
    code = await at_code_step(portal)
    token = portal.csrf
    guesses = [wrong(code, shift) for shift in range(1, 10)] * 2
    answers = await asyncio.gather(
        *(portal.client.post("/connexion/code", data={"code": g, "csrf_token": token}) for g in guesses)
    )
    assert all(r.status_code == 422 for r in answers), [r.status_code for r in answers]
    [row] = await codes(portal)
    assert row["attempts"] == row["max_attempts"] == 3, f"{row['attempts']} guesses compared"
    r = await portal.post("/connexion/code", {"code": code})
    assert r.status_code == 422 and not await logged_in(portal)
    wrong_events = await audit_rows(portal, "code.failed")
    assert sum(e["details"].get("outcome") == "wrong" for e in wrong_events) <= 2
    await expect_event(portal, "code.locked", account_id=account["id"])


@pytest.mark.parametrize(
    "digits",
    ["０１２３４５６７８９", "٠١٢٣٤٥٦٧٨٩", "०१२३४५६७८९", "⁰¹²³⁴⁵⁶⁷⁸⁹"],
    ids=["fullwidth", "arabic-indic", "devanagari", "superscript"],
)
async def test_look_alike_digits_in_a_code_are_refused_without_using_a_try(
    portal: Portal, digits: str, demo_people: Any
) -> None:
    account = await make_account(portal)
    code = await at_code_step(portal)
    look_alike = code.translate(str.maketrans("0123456789", digits))
    before = await snapshot(portal)
    r = await portal.post("/connexion/code", {"code": look_alike})
    assert r.status_code == 422 and messages(r) == ["Le code comporte 6 chiffres."]
    [row] = await codes(portal)
    assert row["attempts"] == 0 and await snapshot(portal) == before
    r = await portal.post("/connexion/code", {"code": code})
    assert where(r) == "/espace-prive"
    await expect_event(portal, "code.succeeded", account_id=account["id"], purpose="login")
