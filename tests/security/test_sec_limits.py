"""Rate limits and budgets: progressive slow-downs per identifier and per client, identity answers,
registrations, recoveries, code sends, the hourly SMS and letter budgets; counters in the database
or in Redis; and a counter store that fails refuses codes and passwords instead of checking them."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from guichet.core.config import CaisseConfig
from guichet.core.flows.common import SLOW_DOWN, UNAVAILABLE
from guichet.core.flows.login import LOGIN_FAILED
from guichet.core.ratelimit import RedisCounters
from tests.conftest import Portal, free_port, portal_config_text, redis_url
from tests.security.support import (
    LOG,
    OTHER_PASSWORD,
    PASSWORD,
    audit_rows,
    expect_event,
    kinds,
    login,
    make_account,
    messages,
    password_step,
    person,
    register,
    remember,
    reset_counters,
    snapshot,
    text,
    where,
)
from tests.security.test_sec_enumeration import count_hashing, unknown_nirs

pytestmark = pytest.mark.asyncio


def config_with(
    make_config: Callable[..., CaisseConfig], db_url: str, *, security: str = "", extra: str = ""
) -> CaisseConfig:
    base = portal_config_text(extra).replace("[security]\n", "[security]\n" + security.strip() + "\n", 1)
    return make_config(database_url=db_url, base=base)


def from_address(portal: Portal, address: str) -> Portal:
    """Another browser, at another client address, on the same app."""
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=portal.app, client=(address, 40000)),
        base_url="http://127.0.0.1:8000",
        follow_redirects=False,
    )
    return Portal(portal.app, client)


# --- login --------------------------------------------------------------------------------------------


async def test_wrong_passwords_slow_an_identifier_down_progressively_never_locking_it(
    portal: Portal, clock: Any
) -> None:
    account_row = await make_account(portal)
    threshold = portal.services.config.security.login_failures_before_delay
    for _ in range(threshold):
        r = await password_step(portal, person().identifier, "Pas-Le-Bon-1!")
        assert messages(r) == [LOGIN_FAILED]
    r = await password_step(portal, person().identifier, PASSWORD)
    assert r.status_code == 422, "the right password went through during the pause"
    clock.advance(seconds=1)  # the refused try counted too: the pause doubled to 2 s
    r = await password_step(portal, person().identifier, PASSWORD)
    assert r.status_code == 422
    clock.advance(seconds=4)  # and again: 4 s after the last try
    r = await password_step(portal, person().identifier, PASSWORD)
    assert where(r) == "/connexion/code", "the owner is never locked out"
    rows = await audit_rows(portal, "login.failed")
    assert [r["details"]["reason"] for r in rows] == ["bad_credentials"] * threshold + ["slowed", "slowed"]
    await expect_event(portal, "login.password_ok", account_id=account_row["id"])


async def test_the_pause_is_capped_so_the_owner_always_gets_in(portal: Portal, clock: Any) -> None:
    await make_account(portal)
    for _ in range(25):
        await password_step(portal, person().identifier, "Pas-Le-Bon-1!")
        clock.advance(seconds=1)
    clock.advance(seconds=portal.services.config.security.max_delay_seconds)
    r = await password_step(portal, person().identifier, PASSWORD)
    assert where(r) == "/connexion/code"
    await expect_event(portal, "login.failed", reason="slowed")


async def test_a_password_spray_from_one_address_is_slowed_then_stopped(
    portal_factory: Callable[..., Any], make_config: Callable[..., CaisseConfig], db_url: str, clock: Any
) -> None:
    portal = await portal_factory(config_with(make_config, db_url, security="per_client_attempts_per_hour = 10"))
    account_row = await make_account(portal)
    for identifier in unknown_nirs(10):  # one try per identifier: only the per-client limit sees it
        clock.advance(seconds=120)  # past each progressive pause
        await password_step(portal, identifier, "Soleil2024!")
    clock.advance(minutes=20)
    r = await password_step(portal, person().identifier, PASSWORD)
    assert r.status_code == 422, "the per-client limit let a login through"
    elsewhere = from_address(portal, "198.51.100.20")
    try:
        r = await password_step(elsewhere, person().identifier, PASSWORD)
        assert where(r) == "/connexion/code", "another client address is not affected"
    finally:
        await elsewhere.client.aclose()
    clock.advance(hours=1)
    r = await password_step(portal, person().identifier, PASSWORD)
    assert where(r) == "/connexion/code"
    await expect_event(portal, "login.failed", account_id=account_row["id"], reason="slowed")


async def test_wrong_current_passwords_in_mon_compte_are_slowed_down(portal: Portal, clock: Any) -> None:
    account_row = await make_account(portal)
    await login(portal, person().identifier)
    await portal.get("/mon-compte/mot-de-passe")
    for _ in range(portal.services.config.security.login_failures_before_delay):
        r = await portal.post(
            "/mon-compte/mot-de-passe",
            {"current_password": "Pas-Le-Bon-1!", "new_password": OTHER_PASSWORD, "confirm_password": OTHER_PASSWORD},
        )
        assert r.status_code == 422
    counting = count_hashing(portal)
    r = await portal.post(
        "/mon-compte/mot-de-passe",
        {"current_password": PASSWORD, "new_password": OTHER_PASSWORD, "confirm_password": OTHER_PASSWORD},
    )
    assert r.status_code == 422 and SLOW_DOWN in text(r), "a stolen session could guess the password unthrottled"
    assert counting.calls["verify"] == 0
    await portal.get("/mon-compte/email")
    r = await portal.post("/mon-compte/email", {"current_password": PASSWORD, "value": "pirate@attacker.invalid"})
    assert r.status_code == 422 and SLOW_DOWN in text(r)
    assert await portal.outbox("contact_code") == []
    clock.advance(seconds=portal.services.config.security.max_delay_seconds)
    r = await portal.post(
        "/mon-compte/mot-de-passe",
        {"current_password": "Pas-Le-Bon-1!", "new_password": PASSWORD, "confirm_password": PASSWORD},
    )
    assert "différent de l'actuel" not in text(r), "the new password field told whether a guess is the current one"
    await expect_event(portal, "login.failed", account_id=account_row["id"], reason="current_password")
    await expect_event(portal, "login.failed", account_id=account_row["id"], reason="slowed")


# --- registration, identity answers, recovery, resends -----------------------------------------------------


async def test_identity_answers_are_bounded_per_identifier(
    portal: Portal, portal_factory: Callable[..., Any], demo_people: Any
) -> None:
    who = person("particulier_paiement")
    allowed = portal.services.config.security.identity_answers_per_identifier
    for _ in range(allowed):
        browser = await portal_factory(portal.services.config)
        await register(browser, who, answer="999,99")
        await portal.services.database.t.Account.delete(force=True).run()  # start again as a stranger would
    browser = await portal_factory(portal.services.config)
    await register(browser, who, answer=who.answer)  # the right answer, once too many
    assert [m["channel"] for m in await portal.outbox("temporary_password")] == ["postal"] * (allowed + 1)
    assert "identity.succeeded" not in await kinds(portal)
    await expect_event(portal, "identity.failed", count=allowed + 1, question="payment")  # the last one unchecked
    await expect_event(portal, "limit.reached", limit="identity")


async def test_registrations_are_bounded_per_client_address(portal: Portal, portal_factory: Callable[..., Any]) -> None:
    limit = portal.services.limits.registration_client.max_count
    refused_at = None
    for n in range(1, limit + 2):
        browser = await portal_factory(portal.services.config)
        await browser.get("/inscription/statut")
        r = await browser.post("/inscription/statut", {"status": "particulier"})
        if r.status_code == 503:  # "momentanément indisponible", with a Retry-After
            refused_at = n
            assert messages(r) == [UNAVAILABLE] and r.headers["retry-after"]
            break
    assert refused_at == limit + 1, f"registration {refused_at} refused, the limit is {limit}"
    elsewhere = from_address(portal, "198.51.100.30")
    try:
        await elsewhere.get("/inscription/statut")
        r = await elsewhere.post("/inscription/statut", {"status": "particulier"})
        assert where(r) == "/inscription/identifiant"
    finally:
        await elsewhere.client.aclose()
    await expect_event(portal, "limit.reached", count=1, limit="registration_client")


async def test_recoveries_are_bounded_per_identifier(
    portal: Portal, portal_factory: Callable[..., Any], clock: Any
) -> None:
    account_row = await make_account(portal)
    answers = []
    for _ in range(portal.services.limits.recovery_identifier.max_count + 1):
        clock.advance(minutes=2)
        browser = await portal_factory(portal.services.config)
        await browser.post("/mot-de-passe-oublie/identifiant", {"identifier": person().identifier})
        r = await browser.post("/mot-de-passe-oublie/canal", {"channel": "email"})
        answers.append(r.status_code)
    sent = len(await portal.outbox("recovery_code"))
    assert answers == [303] * portal.services.limits.recovery_identifier.max_count + [422]
    assert sent == portal.services.limits.recovery_identifier.max_count
    await expect_event(portal, "limit.reached", limit="recover-id")
    await expect_event(portal, "recovery.requested", count=sent, account_id=account_row["id"])


async def test_login_code_resends_are_bounded(portal: Portal, clock: Any) -> None:
    account_row = await make_account(portal)
    await password_step(portal, person().identifier, PASSWORD)
    await portal.get("/connexion/code")
    for _ in range(portal.services.limits.code_sends.max_count - 1):
        clock.advance(seconds=61)
        r = await portal.post("/connexion/code", {"action": "renvoyer"})
        assert r.status_code == 200, messages(r)
    clock.advance(seconds=61)
    r = await portal.post("/connexion/code", {"action": "renvoyer"})
    assert messages(r) == [SLOW_DOWN]
    assert len(await portal.outbox("login_code")) == portal.services.limits.code_sends.max_count
    await expect_event(portal, "limit.reached", account_id=account_row["id"], limit="code_sends")


# --- budgets ------------------------------------------------------------------------------------------


async def test_the_hourly_sms_budget_holds(
    portal_factory: Callable[..., Any], make_config: Callable[..., CaisseConfig], db_url: str, clock: Any
) -> None:
    portal = await portal_factory(config_with(make_config, db_url, security="sms_per_hour = 1"))
    await make_account(portal, "particulier_vitale", mobile_verified=True)
    await make_account(portal, "particulier_paiement", mobile_verified=True)
    first = await portal_factory(portal.services.config)
    await first.post("/mot-de-passe-oublie/identifiant", {"identifier": person("particulier_vitale").identifier})
    r = await first.post("/mot-de-passe-oublie/canal", {"channel": "sms"})
    assert where(r) == "/mot-de-passe-oublie/code", "a budget of one SMS an hour sends one"
    # the budget is spent by the delivery attempt (the gateway is down here: an attempt costs all the same)
    await portal.services.outbox_worker("budget").drain()
    second = await portal_factory(portal.services.config)
    await second.post("/mot-de-passe-oublie/identifiant", {"identifier": person("particulier_paiement").identifier})
    r = await second.post("/mot-de-passe-oublie/canal", {"channel": "sms"})
    assert r.status_code == 503 and r.headers["retry-after"] and messages(r) == [UNAVAILABLE]
    assert len(await portal.outbox("recovery_code")) == 1
    clock.advance(hours=1, seconds=1)
    third = await portal_factory(portal.services.config)
    await third.post("/mot-de-passe-oublie/identifiant", {"identifier": person("particulier_paiement").identifier})
    r = await third.post("/mot-de-passe-oublie/canal", {"channel": "sms"})
    assert where(r) == "/mot-de-passe-oublie/code", "the budget is per hour"
    await expect_event(portal, "budget.exhausted", count=1, channel="sms")


async def test_the_hourly_letter_budget_holds(
    portal_factory: Callable[..., Any], make_config: Callable[..., CaisseConfig], db_url: str, demo_people: Any
) -> None:
    portal = await portal_factory(config_with(make_config, db_url, security="letters_per_hour = 1"))
    from guichet.plugins.registry_tables import importer as registry_import

    await registry_import.generate_demo_registry(portal.services.database, count=0, seed=1)
    for key in ("particulier_paiement", "exploitant"):
        browser = await portal_factory(portal.services.config)
        await register(browser, person(key), answer="999,99")
    letters = await portal.outbox("temporary_password")
    assert [m["recipient"]["name"] for m in letters] == ["Sophie MOREAU"], "a budget of one letter an hour sends one"
    await expect_event(portal, "budget.exhausted", count=1, channel="postal")
    await expect_event(portal, "registration.unknown", reason="no_letter")


# --- counters: in the database by default, in Redis when configured; a failing store refuses -------------


async def test_counters_live_in_the_database_by_default_keyed_by_hmac(portal: Portal) -> None:
    await make_account(portal)
    await password_step(portal, person().identifier, "Pas-Le-Bon-1!")
    rows = await portal.services.database.t.RateCounter.select().run()
    assert {row["key"].split(":")[0] for row in rows} == {"login-ip", "login-id"}
    assert not any(person().identifier in row["key"] or "203.0.113.7" in row["key"] for row in rows)
    await expect_event(portal, "login.failed", reason="bad_credentials")


class FailingStore:
    """A counter store that is down: what DatabaseCounters and RedisCounters raise then."""

    async def hit(self, *args: Any, **kwargs: Any) -> Any:
        from guichet.core.errors import CounterStoreError

        raise CounterStoreError("the counter store is unavailable")

    update = peek = clear = hit


@pytest.fixture
def store_down(portal: Portal) -> Callable[[], None]:
    def down() -> None:
        portal.services.limiter.store = FailingStore()

    return down


async def test_with_the_counter_store_down_no_password_is_checked(
    portal: Portal, store_down: Callable[[], None]
) -> None:
    await make_account(portal)
    store_down()
    counting = count_hashing(portal)
    r = await password_step(portal, person().identifier, PASSWORD)
    assert r.status_code == 503 and r.headers["retry-after"] and messages(r) == [UNAVAILABLE]
    assert counting.calls == {"hash": 0, "verify": 0}, "a password was checked without a limit"
    assert not {"login.password_ok", "login.succeeded"} & set(await kinds(portal))
    event = await expect_event(portal, "limit.unavailable", count=1, step="login")
    assert (event["subject"], event["client"]) == ("185*******084", "203.0.113.7")


async def test_with_the_counter_store_down_no_code_is_checked(
    portal: Portal, store_down: Callable[[], None], clock: Any
) -> None:
    account_row = await make_account(portal)
    await password_step(portal, person().identifier, PASSWORD)
    await portal.get("/connexion/code")
    code = await portal.last_code("login_code")
    store_down()
    r = await portal.post("/connexion/code", {"code": code})
    assert r.status_code == 503 and r.headers["retry-after"] and messages(r) == [UNAVAILABLE]
    [row] = await portal.services.database.t.OneTimeCode.select().run()
    assert row["attempts"] == 0 and row["used_at"] is None, "a code was compared without a limit"
    clock.advance(seconds=61)  # past the resend cooldown
    r = await portal.post("/connexion/code", {"action": "renvoyer"})
    assert r.status_code == 503 and r.headers["retry-after"] and messages(r) == [UNAVAILABLE]
    assert len(await portal.outbox("login_code")) == 1, "a code was sent without a limit"
    await expect_event(portal, "login.password_ok", account_id=account_row["id"])
    assert "login.succeeded" not in await kinds(portal)
    await expect_event(portal, "limit.unavailable", count=1, account_id=account_row["id"], step="code_check")
    await expect_event(portal, "limit.unavailable", count=1, account_id=account_row["id"], step="code_send")


async def test_with_the_counter_store_down_no_identity_answer_is_checked(
    portal: Portal, demo_people: Any, store_down: Callable[[], None]
) -> None:
    who = person("particulier_vitale")
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
            "mobile": "",
        },
    )
    store_down()
    before = await snapshot(portal)
    r = await portal.post("/inscription/question", {"question": who.question, "answer": who.answer})
    assert r.status_code == 503 and r.headers["retry-after"] and messages(r) == [UNAVAILABLE]
    assert await snapshot(portal) == before
    await portal.post("/mot-de-passe-oublie/identifiant", {"identifier": who.identifier})
    r = await portal.post("/mot-de-passe-oublie/canal", {"channel": "email"})
    assert r.status_code == 503 and r.headers["retry-after"] and messages(r) == [UNAVAILABLE]
    assert not {"identity.succeeded", "identity.failed", "recovery.requested"} & set(await kinds(portal))
    await expect_event(portal, "limit.unavailable", count=1, step="identity")
    await expect_event(portal, "limit.unavailable", count=1, step="recovery")


async def test_a_redis_counter_store_on_a_closed_port_refuses_logins(
    portal_factory: Callable[..., Any], make_config: Callable[..., CaisseConfig], db_url: str
) -> None:
    port = free_port()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "the port is meant to be closed"
    remember("s3cret-redis-pass")  # the store has a password: no failure may log it
    config = config_with(
        make_config,
        db_url,
        extra=f'\n[rate_limits]\nstore = "redis"\n\n[redis]\n'
        f'url = "redis://guichet@127.0.0.1:{port}/0"\n'
        'password = { value = "s3cret-redis-pass" }\n',
    )
    portal = await portal_factory(config)
    assert isinstance(portal.services.limiter.store, RedisCounters)
    await make_account(portal)
    start = len(LOG)
    counting = count_hashing(portal)
    r = await password_step(portal, person().identifier, PASSWORD)
    assert r.status_code == 503 and r.headers["retry-after"] and messages(r) == [UNAVAILABLE]
    assert counting.calls["verify"] == 0
    assert any("rate-limit counter store failed" in line for _, _, line in LOG[start:])
    assert "login.password_ok" not in await kinds(portal)
    await expect_event(portal, "limit.unavailable", count=1, step="login")  # Redis down: the database has it


@pytest.mark.filterwarnings("ignore:.*Unable to connect to database")  # piccolo's, at engine start
@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
async def test_with_the_database_down_too_a_refusal_is_still_no_error(
    engine: str, tmp_path: Any, make_config: Callable[..., CaisseConfig]
) -> None:
    """Counters in the database, and the database gone: the refusal cannot be audited, only logged."""
    from guichet.core.flows.common import check_code, send_code
    from guichet.core.flows.login import submit_password
    from guichet.core.services import build_services
    from guichet.core.sessions import Session
    from guichet.core.structs import Recipient

    if engine == "sqlite":
        broken = tmp_path / "broken.sqlite"
        broken.write_bytes(b"this is not a database file " * 200)
        url = f"sqlite:///{broken}"
    else:
        url = f"postgresql://postgres@127.0.0.1:{free_port()}/gone"
    services = build_services(make_config(database_url=url, base=portal_config_text()))
    start = len(LOG)
    try:
        outcome = await submit_password(
            services,
            Session(None, None),
            {"identifier": person().identifier, "password": PASSWORD},
            client="203.0.113.7",
            trusted_token=None,
        )
        assert outcome.result.errors == {"password": UNAVAILABLE}
        assert await check_code(
            services, purpose="login", binding="b" * 43, code="123456", account_id=1, client="203.0.113.7"
        ) == (None, UNAVAILABLE)
        assert (
            await send_code(
                services,
                purpose="login",
                binding="b" * 43,
                channel="email",
                recipient=Recipient(name="X", email="x@demo.invalid"),
                account_id=1,
                template="login_code",
                new_binding=True,
            )
            == UNAVAILABLE
        )
    finally:
        await services.close()
    failed_audits = [line for _, _, line in LOG[start:] if "audit of a refusal" in line]
    assert len(failed_audits) == 3, failed_audits


async def test_counters_live_in_redis_when_configured(
    portal_factory: Callable[..., Any], make_config: Callable[..., CaisseConfig], db_url: str, clock: Any
) -> None:
    url = redis_url()
    import redis.asyncio as redis

    client = redis.Redis.from_url(url)
    try:
        for key in await client.keys("guichet:test:*"):
            await client.delete(key)
        config = make_config(
            database_url=db_url,
            base=portal_config_text(f'\n[rate_limits]\nstore = "redis"\n\n[redis]\nurl = "{url}"\n').replace(
                "[sessions]\n", '[sessions]\nstore = "redis"\n', 1
            ),
        )
        portal = await portal_factory(config)
        account_row = await make_account(portal)
        threshold = portal.services.config.security.login_failures_before_delay
        for _ in range(threshold):
            await password_step(portal, person().identifier, "Pas-Le-Bon-1!")
        r = await password_step(portal, person().identifier, PASSWORD)
        assert r.status_code == 422, "the Redis counters did not slow the identifier down"
        assert await portal.services.database.t.RateCounter.count().run() == 0
        keys = [k.decode() for k in await client.keys("guichet:test:rl:*")]
        assert keys and not any(person().identifier in k for k in keys)
        await reset_counters(portal)
        for key in keys:
            await client.delete(key)
        await login(portal, person().identifier)
        assert await portal.services.database.t.Session.count().run() == 0
        assert await client.keys("guichet:test:session:*")
        await expect_event(portal, "login.failed", account_id=account_row["id"], reason="slowed")
    finally:
        for key in await client.keys("guichet:test:*"):
            await client.delete(key)
        await client.aclose()


async def test_take_lets_exactly_max_count_through(portal: Portal, clock: Any) -> None:
    """A budget of N an hour sends N; the counter is keyed by an HMAC of the subject."""
    from guichet.core.ratelimit import Limit

    limiter = portal.services.limiter
    budget = Limit(name="t-budget", window_seconds=3600, max_count=3)
    verdicts = [(await limiter.take(budget, "caisse", clock.now())).allowed for _ in range(4)]
    assert verdicts == [True, True, True, False]
    clock.advance(hours=1, seconds=1)
    assert (await limiter.take(budget, "caisse", clock.now())).allowed
    rows = await portal.services.database.t.RateCounter.select().run()
    assert [row["key"].split(":")[0] for row in rows] == ["t-budget"] and "caisse" not in rows[0]["key"]


# --- housekeeping: codes and counters do not pile up --------------------------------------------------


async def test_housekeeping_drops_old_codes_and_spent_counters(portal: Portal, clock: Any) -> None:
    from guichet.web.app import housekeep

    await make_account(portal)
    await login(portal, person().identifier)  # a used code, a counter reset to nothing
    await portal.post("/deconnexion", {})
    await password_step(portal, person().identifier, "Pas-Le-Bon-1!")  # counters with a window
    t = portal.services.database.t
    assert await t.OneTimeCode.count().run() == 1 and await t.RateCounter.count().run() > 0
    clock.advance(hours=2)
    await housekeep(portal.services)
    assert await t.OneTimeCode.count().run() == 1, "a used code is kept a day, to tell a late copy from a guess"
    assert {row["key"].split(":")[0] for row in await t.RateCounter.select(t.RateCounter.key).run()} == {
        "login-id",
        "code-fail",
    }, "the hourly counters (per address, code sends) are over, the daily ones are not"
    clock.advance(days=1)
    await password_step(portal, person().identifier, "Pas-Le-Bon-1!")  # a fresh counter is kept
    await housekeep(portal.services)
    assert await t.OneTimeCode.count().run() == 0
    assert {row["key"].split(":")[0] for row in await t.RateCounter.select(t.RateCounter.key).run()} == {
        "login-id",
        "login-ip",
    }
    await expect_event(portal, "code.succeeded")  # the audit keeps what the code table forgets
