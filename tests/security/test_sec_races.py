"""Limits under real concurrency: bursts of parallel requests (asyncio.gather over the HTTP portal)
against the password step, the current password in Mon compte, code checks, resends, the
registration notice to an existing holder and the SMS sent to one number. Each try is counted
before it is judged, so N parallel requests cost N tries, with the counters in the database
(SQLite, PostgreSQL) and in Redis."""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from guichet.core.config import CaisseConfig
from guichet.core.flows.common import SLOW_DOWN
from guichet.core.flows.login import LOGIN_FAILED
from guichet.core.logs import scrub
from tests.conftest import Portal, portal_config_text, redis_url
from tests.security.support import (
    OTHER_PASSWORD,
    PASSWORD,
    UNKNOWN_NIR,
    audit_rows,
    expect_event,
    login,
    make_account,
    messages,
    password_step,
    person,
    text,
    where,
)
from tests.security.test_sec_enumeration import count_hashing, neutral, unknown_nirs

pytestmark = pytest.mark.asyncio
COOLDOWN_SAID = "Un code vient d'être envoyé. Vous pourrez en demander un nouveau dans"
SHARED_MOBILE = "+33600000199"


@pytest.fixture(params=["database", "redis"])
async def race_config(
    request: pytest.FixtureRequest, make_config: Callable[..., CaisseConfig], db_url: str
) -> AsyncIterator[Callable[..., CaisseConfig]]:
    """Configs whose counters are in the database (the default) or in Redis."""
    extra = ""
    client = None
    if request.param == "redis":
        import redis.asyncio as redis

        url = redis_url()
        extra = f'\n[rate_limits]\nstore = "redis"\n\n[redis]\nurl = "{url}"\n'
        client = redis.Redis.from_url(url)
        for key in await client.keys("guichet:test:*"):
            await client.delete(key)

    def build(security: str = "") -> CaisseConfig:
        base = portal_config_text(extra).replace("[security]\n", "[security]\n" + security.strip() + "\n", 1)
        return make_config(database_url=db_url, base=base)

    try:
        yield build
    finally:
        if client is not None:
            for key in await client.keys("guichet:test:*"):
                await client.delete(key)
            await client.aclose()


async def crowd(portal_factory: Callable[..., Any], portal: Portal, count: int, path: str) -> list[Portal]:
    """``count`` browsers on the same app, each with the page at ``path`` read (its CSRF token)."""
    browsers = []
    for _ in range(count):
        browser = await portal_factory(portal.services.config)
        await browser.get(path)
        browsers.append(browser)
    return browsers


async def counted(portal: Portal, limit_name: str, subject: str) -> int:
    limit = getattr(portal.services.limits, limit_name)
    [verdict] = await portal.services.limiter.check_all([(limit, subject)], portal.services.now())
    return verdict.count


def answered(answers: list[Any], caplog: pytest.LogCaptureFixture) -> str:
    """What a burst was answered, counted, and what the app logged at warning level or above: a
    compact failure message that says which store failed (the full list of 40 answers would not)."""
    counts = collections.Counter((r.status_code, " ".join(messages(r))) for r in answers)
    logged = collections.Counter(  # scrubbed as the app's log lines are: what a log would show, nothing more
        f"{record.levelname} {record.name}: {scrub(record.getMessage())}"
        for record in caplog.records
        if record.levelno >= logging.WARNING
    )
    return f"answers {dict(counts)}; logged {dict(logged) or 'nothing'}"


async def live_codes(portal: Portal, purpose: str) -> list[dict[str, Any]]:
    t = portal.services.database.t.OneTimeCode
    return await t.select().where((t.purpose == purpose) & t.used_at.is_null() & t.superseded_at.is_null()).run()  # type: ignore[no-any-return]


# --- the password step ----------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["account", "nobody"])
async def test_a_burst_of_parallel_guesses_costs_one_try_each(
    race_config: Callable[..., CaisseConfig],
    portal_factory: Callable[..., Any],
    who: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    portal = await portal_factory(race_config())
    await make_account(portal)
    identifier = person().identifier if who == "account" else UNKNOWN_NIR
    threshold = portal.services.config.security.login_failures_before_delay
    browsers = await crowd(portal_factory, portal, 40, "/connexion")
    counting = count_hashing(portal)
    answers = await asyncio.gather(
        *(
            b.post("/connexion", {"identifier": identifier, "password": f"Pas-Le-Bon-{n}!"})
            for n, b in enumerate(browsers)
        )
    )
    assert [(r.status_code, messages(r)) for r in answers] == [(422, [LOGIN_FAILED])] * 40, answered(answers, caplog)
    assert counting.calls["verify"] == threshold, (
        f"{counting.calls['verify']} passwords verified in a burst; the pause starts after {threshold}"
    )
    r = await password_step(portal, identifier, PASSWORD)
    assert r.status_code == 422 and messages(r) == [LOGIN_FAILED], "the right password went through the pause"
    assert counting.calls["verify"] == threshold, "a try past the pause was verified"
    assert await counted(portal, "login_identifier", identifier) == 41
    reasons = collections.Counter(row["details"]["reason"] for row in await audit_rows(portal, "login.failed"))
    assert reasons == {"bad_credentials": threshold, "slowed": 41 - threshold}


async def test_a_burst_from_one_address_over_many_identifiers_costs_one_try_each(
    race_config: Callable[..., CaisseConfig], portal_factory: Callable[..., Any]
) -> None:
    portal = await portal_factory(race_config("per_client_attempts_per_hour = 12"))
    account_row = await make_account(portal)
    allowed = portal.services.limits.login_client.delay_after
    assert allowed == 4
    browsers = await crowd(portal_factory, portal, 20, "/connexion")
    counting = count_hashing(portal)
    answers = await asyncio.gather(
        *(
            b.post("/connexion", {"identifier": nir, "password": "Soleil2024!"})
            for b, nir in zip(browsers, unknown_nirs(20))
        )
    )
    assert all(r.status_code == 422 for r in answers)
    assert counting.calls["verify"] == allowed, f"{counting.calls['verify']} passwords verified from one address"
    r = await password_step(portal, person().identifier, PASSWORD)
    assert r.status_code == 422, "the per-address pause let a login through"
    await expect_event(portal, "login.failed", account_id=account_row["id"], reason="slowed")


async def test_a_right_password_gives_the_address_its_try_back(
    race_config: Callable[..., CaisseConfig], portal_factory: Callable[..., Any]
) -> None:
    """Many people behind one address (a caisse's counter, an office) log in all day: only failures count."""
    portal = await portal_factory(race_config("per_client_attempts_per_hour = 12"))
    identifiers = unknown_nirs(portal.services.limits.login_client.max_count + 1)
    for identifier in identifiers:
        await make_account(portal, identifier=identifier)
        browser = await portal_factory(portal.services.config)
        r = await password_step(browser, identifier, PASSWORD)
        assert where(r) == "/connexion/code", messages(r)
    assert await counted(portal, "login_client", "203.0.113.7") == 0
    assert await counted(portal, "login_identifier", identifiers[-1]) == 0


async def test_a_burst_of_current_passwords_in_mon_compte_costs_one_try_each(
    race_config: Callable[..., CaisseConfig], portal_factory: Callable[..., Any]
) -> None:
    portal = await portal_factory(race_config())
    account_row = await make_account(portal)
    await login(portal, person().identifier)
    await portal.get("/mon-compte/mot-de-passe")
    threshold = portal.services.config.security.login_failures_before_delay
    counting = count_hashing(portal)
    token = portal.csrf
    answers = await asyncio.gather(
        *(
            portal.client.post(
                "/mon-compte/mot-de-passe",
                data={
                    "current_password": f"Pas-Le-Bon-{n}!",
                    "new_password": OTHER_PASSWORD,
                    "confirm_password": OTHER_PASSWORD,
                    "csrf_token": token,
                },
            )
            for n in range(20)
        )
    )
    assert all(r.status_code == 422 for r in answers)
    assert counting.calls["verify"] == threshold, (
        f"a stolen session had {counting.calls['verify']} current passwords verified in a burst"
    )
    r = await portal.post(
        "/mon-compte/mot-de-passe",
        {"current_password": PASSWORD, "new_password": OTHER_PASSWORD, "confirm_password": OTHER_PASSWORD},
    )
    assert r.status_code == 422 and SLOW_DOWN in text(r)
    assert counting.calls["verify"] == threshold
    await expect_event(portal, "login.failed", account_id=account_row["id"], reason="slowed")


# --- code checks ------------------------------------------------------------------------------------------


def wrong(code: str, shift: int = 1) -> str:
    return "".join(str((int(c) + shift) % 10) for c in code)


async def at_code_step(portal: Portal) -> str:
    r = await password_step(portal, person().identifier, PASSWORD)
    assert where(r) == "/connexion/code", messages(r)
    await portal.get("/connexion/code")
    return await portal.last_code("login_code")


async def test_parallel_code_guesses_are_judged_one_by_one_against_the_daily_count(
    race_config: Callable[..., CaisseConfig], portal_factory: Callable[..., Any], clock: Any
) -> None:
    portal = await portal_factory(race_config())
    account_row = await make_account(portal)
    code = await at_code_step(portal)
    for shift in (1, 2, 3):  # three failures: a pause of 1 s, doubling, comes before each next try
        await portal.post("/connexion/code", {"code": wrong(code, shift)})
    clock.advance(seconds=61)
    r = await portal.post("/connexion/code", {"action": "renvoyer"})
    assert r.status_code == 200, messages(r)
    fresh = await portal.last_code("login_code")
    token = portal.csrf
    answers = await asyncio.gather(
        *(
            portal.client.post("/connexion/code", data={"code": wrong(fresh, shift), "csrf_token": token})
            for shift in (1, 2, 3)
        )
    )
    assert sorted(SLOW_DOWN in messages(r) for r in answers) == [False, True, True]
    [row] = await live_codes(portal, "login")
    assert row["attempts"] == 1, f"{row['attempts']} guesses compared past the pause"
    # the count holds the codes compared: three, then one; the two refused unseen gave their try back
    assert await counted(portal, "code_failures", f"login:{account_row['id']}") == 4
    await expect_event(portal, "limit.reached", count=2, account_id=account_row["id"], limit="code_failures")


async def test_the_right_code_sent_twice_at_once_counts_no_failure(
    race_config: Callable[..., CaisseConfig], portal_factory: Callable[..., Any]
) -> None:
    portal = await portal_factory(race_config())
    account_row = await make_account(portal)
    code = await at_code_step(portal)
    token = portal.csrf
    answers = await asyncio.gather(
        *(portal.client.post("/connexion/code", data={"code": code, "csrf_token": token}) for _ in range(2))
    )
    assert sorted(where(r) for r in answers) == ["", "/espace-prive"]
    assert await counted(portal, "code_failures", f"login:{account_row['id']}") == 0, "a double click counted"
    await expect_event(portal, "code.succeeded", count=1, account_id=account_row["id"])


# --- resends ----------------------------------------------------------------------------------------------


async def _login_at_code(portal: Portal) -> tuple[str, str]:
    await make_account(portal)
    await at_code_step(portal)
    return "/connexion/code", "login"


async def _recovery_at_code(portal: Portal) -> tuple[str, str]:
    await make_account(portal)
    await portal.get("/mot-de-passe-oublie/identifiant")
    await portal.post("/mot-de-passe-oublie/identifiant", {"identifier": person().identifier})
    r = await portal.post("/mot-de-passe-oublie/canal", {"channel": "email"})
    assert where(r) == "/mot-de-passe-oublie/code", messages(r)
    return "/mot-de-passe-oublie/code", "recovery"


async def _registration_at_code(portal: Portal) -> tuple[str, str]:
    from guichet.plugins.registry_tables import importer as registry_import

    await registry_import.generate_demo_registry(portal.services.database, count=0, seed=1)
    who = person("particulier_paiement")
    await portal.get("/inscription/statut")
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
    r = await portal.post("/inscription/canal", {"channel": "email"})
    assert where(r) == "/inscription/code", messages(r)
    return "/inscription/code", "registration"


@pytest.mark.parametrize(
    "flow", [_login_at_code, _recovery_at_code, _registration_at_code], ids=["login", "recovery", "registration"]
)
async def test_parallel_resends_send_exactly_one_code(
    race_config: Callable[..., CaisseConfig],
    portal_factory: Callable[..., Any],
    clock: Any,
    flow: Callable[[Portal], Any],
) -> None:
    portal = await portal_factory(race_config())
    path, purpose = await flow(portal)
    clock.advance(seconds=61)
    await portal.get(path)
    token = portal.csrf
    answers = await asyncio.gather(
        *(portal.client.post(path, data={"action": "renvoyer", "csrf_token": token}) for _ in range(5))
    )
    said = [messages(r) for r in answers]
    assert sum(r.status_code == 200 for r in answers) == 1, said
    assert sum(bool(m) and m[0].startswith(COOLDOWN_SAID) for m in said) == 4, said
    assert len(await live_codes(portal, purpose)) == 1, "a binding has more than one live code"
    assert len(await audit_rows(portal, "code.sent")) == 2
    template = {"login": "login_code", "recovery": "recovery_code", "registration": "registration_code"}[purpose]
    assert len(await portal.outbox(template)) == 2, "parallel resends within the cooldown sent more than one code"


# --- the registration notice to an existing holder --------------------------------------------------------


async def test_registration_attempts_on_an_existing_account_send_one_notice_a_day(
    race_config: Callable[..., CaisseConfig], portal_factory: Callable[..., Any], clock: Any
) -> None:
    portal = await portal_factory(race_config())
    from guichet.plugins.registry_tables import importer as registry_import

    await registry_import.generate_demo_registry(portal.services.database, count=0, seed=1)
    holder = await make_account(portal)
    who = person()
    browsers = await crowd(portal_factory, portal, 8, "/inscription/statut")
    for browser in browsers:
        await browser.post("/inscription/statut", {"status": who.status})
        await browser.post("/inscription/identifiant", {"identifier": who.nir_with_key})
        await browser.post(
            "/inscription/coordonnees",
            {
                "last_name": who.last_name,
                "first_name": who.first_name,
                "birth_date": who.birth_date.strftime("%d/%m/%Y"),
                "email": "intrus@attacker.invalid",
                "mobile": "",
            },
        )
    answers = await asyncio.gather(
        *(b.post("/inscription/question", {"question": who.question, "answer": "0000000000"}) for b in browsers)
    )
    assert {where(r) for r in answers} == {"/inscription/termine"}
    pages = {neutral(await b.get("/inscription/termine")) for b in browsers}
    assert len(pages) == 1, "the holder's notice changed what the stranger sees"
    assert len(await portal.outbox("registration_attempt_notice")) == 1, "the holder was flooded with notices"
    await expect_event(portal, "registration.duplicate", count=8, account_id=holder["id"])
    if portal.services.config.rate_limits.store == "redis":
        return  # a Redis window is a key's time to live, in real time: the test clock cannot end it
    clock.advance(hours=24, seconds=1)
    late = await portal_factory(portal.services.config)
    await late.get("/inscription/statut")
    await late.post("/inscription/statut", {"status": who.status})
    await late.post("/inscription/identifiant", {"identifier": who.nir_with_key})
    await late.post(
        "/inscription/coordonnees",
        {
            "last_name": who.last_name,
            "first_name": who.first_name,
            "birth_date": who.birth_date.strftime("%d/%m/%Y"),
            "email": "intrus@attacker.invalid",
            "mobile": "",
        },
    )
    await late.post("/inscription/question", {"question": who.question, "answer": "0000000000"})
    assert len(await portal.outbox("registration_attempt_notice")) == 2, "a day later the holder hears again"


# --- SMS to one number ------------------------------------------------------------------------------------


async def sms_account(portal: Portal, identifier: str | None = None) -> dict[str, Any]:
    """An account reached by SMS only, on the shared number."""
    extra = {"identifier": identifier} if identifier else {}
    return await make_account(portal, email=None, mobile=SHARED_MOBILE, mobile_verified=True, **extra)


async def test_codes_by_sms_to_one_number_are_limited_per_day(
    race_config: Callable[..., CaisseConfig], portal_factory: Callable[..., Any], clock: Any
) -> None:
    portal = await portal_factory(race_config())
    first = await sms_account(portal)
    per_day = portal.services.limits.sms_destination.max_count
    await at_code_step(portal)
    for _ in range(per_day - 1):
        clock.advance(seconds=61)
        r = await portal.post("/connexion/code", {"action": "renvoyer"})
        assert r.status_code == 200, messages(r)
    clock.advance(seconds=61)
    r = await portal.post("/connexion/code", {"action": "renvoyer"})
    assert r.status_code == 422 and messages(r) == [SLOW_DOWN]
    assert len(await portal.outbox("login_code")) == per_day
    await expect_event(portal, "limit.reached", account_id=first["id"], limit="sms_destination")
    # whatever the account or the flow
    second = await sms_account(portal, unknown_nirs(1)[0])
    other = await portal_factory(portal.services.config)
    r = await password_step(other, second["identifier"], PASSWORD)
    assert messages(r) == [SLOW_DOWN]
    from guichet.plugins.registry_tables import importer as registry_import

    await registry_import.generate_demo_registry(portal.services.database, count=0, seed=1)
    who = person("particulier_paiement")
    registering = await portal_factory(portal.services.config)
    await registering.get("/inscription/statut")
    await registering.post("/inscription/statut", {"status": who.status})
    await registering.post("/inscription/identifiant", {"identifier": who.nir_with_key})
    await registering.post(
        "/inscription/coordonnees",
        {
            "last_name": who.last_name,
            "first_name": who.first_name,
            "birth_date": who.birth_date.strftime("%d/%m/%Y"),
            "email": who.email,
            "mobile": "06 00 00 01 99",
        },
    )
    await registering.post("/inscription/question", {"question": who.question, "answer": who.answer})
    r = await registering.post("/inscription/canal", {"channel": "sms"})
    assert r.status_code == 422 and messages(r) == [SLOW_DOWN]
    assert len([m for m in await portal.outbox() if m["channel"] == "sms"]) == per_day
    await expect_event(portal, "limit.reached", count=3, limit="sms_destination")
    if portal.services.config.rate_limits.store == "redis":
        return  # a Redis window is a key's time to live, in real time: the test clock cannot end it
    clock.advance(hours=24, seconds=1)
    r = await password_step(other, second["identifier"], PASSWORD)
    assert where(r) == "/connexion/code", "the limit is per day"


async def test_parallel_logins_of_accounts_sharing_a_number_send_at_most_the_day_s_sms(
    race_config: Callable[..., CaisseConfig], portal_factory: Callable[..., Any]
) -> None:
    portal = await portal_factory(race_config())
    identifiers = unknown_nirs(8)
    for identifier in identifiers:
        await sms_account(portal, identifier)
    browsers = await crowd(portal_factory, portal, 8, "/connexion")
    answers = await asyncio.gather(
        *(
            b.post("/connexion", {"identifier": identifier, "password": PASSWORD})
            for b, identifier in zip(browsers, identifiers)
        )
    )
    per_day = portal.services.limits.sms_destination.max_count
    assert len(await portal.outbox("login_code")) == per_day
    assert sum(messages(r) == [SLOW_DOWN] for r in answers) == 8 - per_day
    await expect_event(portal, "limit.reached", count=8 - per_day, limit="sms_destination")
