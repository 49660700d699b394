"""Account enumeration: at login, registration and recovery, a stranger learns nothing from the
message, the status code or the time an answer takes (argon2 dominates: the unknown identifier
hashes too). Timing compares medians of a few runs with a wide tolerance, never an absolute time."""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from guichet.core.flows.common import SLOW_DOWN
from guichet.core.flows.login import LOGIN_FAILED
from guichet.core.identifiers import nir_key
from tests.conftest import Portal
from tests.security.support import (
    PASSWORD,
    UNKNOWN_NIR,
    expect_event,
    make_account,
    messages,
    password_step,
    person,
    remember,
    reset_counters,
    where,
)

pytestmark = pytest.mark.asyncio
RUNS = 5
_CSRF = re.compile(r'(name="csrf_token" value="|"X-CSRF-Token": ")[^"]+"')


def neutral(response: httpx.Response, *typed: str) -> str:
    text = _CSRF.sub(r'\1CSRF"', response.text)
    for value in sorted((v for v in typed if v), key=len, reverse=True):
        text = text.replace(value, "TYPED")
    return text


def unknown_nirs(count: int) -> list[str]:
    """Well-formed NIRs that no demo person has."""
    found = [f"1{70 + i:02d}0575{100 + i:03d}{200 + i:03d}" for i in range(count)]
    remember(*found, *(n + nir_key(n) for n in found))
    return found


class CountingHasher:
    """The argon2 hasher, counting its calls: the unknown identifier must cost what a known one costs."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = {"hash": 0, "verify": 0}

    def hash(self, *args: Any, **kwargs: Any) -> Any:
        self.calls["hash"] += 1
        return self.inner.hash(*args, **kwargs)

    def verify(self, *args: Any, **kwargs: Any) -> Any:
        self.calls["verify"] += 1
        return self.inner.verify(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def count_hashing(portal: Portal) -> CountingHasher:
    counting = CountingHasher(portal.services.passwords.hasher)
    portal.services.passwords.hasher = counting
    return counting


async def interleaved_medians(
    first: Callable[[], Awaitable[Any]], second: Callable[[], Awaitable[Any]], before: Callable[[], Awaitable[Any]]
) -> tuple[float, float]:
    """Medians of RUNS timings of each, taken in turn so that a busy machine slows both alike."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(RUNS):
        for run, into in ((first, times[0]), (second, times[1])):
            await before()
            start = time.perf_counter()
            await run()
            into.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def assert_similar(a: float, b: float, what: str) -> None:
    """Within a factor of two: a skipped argon2 (tens of milliseconds) shows as a factor of three or more."""
    assert 0.5 < a / b < 2.0, f"{what}: medians {a * 1000:.1f} ms and {b * 1000:.1f} ms"


# --- login ---------------------------------------------------------------------------------------------


async def test_every_login_failure_looks_the_same(portal: Portal, clock: Any, demo_people: Any) -> None:
    vitale = person("particulier_vitale")
    account = await make_account(portal)
    await make_account(portal, "particulier_paiement", temporary=True)
    await (
        portal.services.database.t.Account.update(
            {portal.services.database.t.Account.temporary_expires_at: clock.now()}
        )
        .where(portal.services.database.t.Account.identifier == person("particulier_paiement").identifier)
        .run()
    )
    attempts = [
        (UNKNOWN_NIR, PASSWORD),  # nobody
        (vitale.identifier, "Pas-Le-Bon-1!"),  # a wrong password
        (vitale.identifier, ""),  # no password
        ("12AB", PASSWORD),  # not an identifier at all
        (person("particulier_paiement").identifier, PASSWORD),  # an expired temporary password
    ]
    pages = []
    for identifier, password in attempts:
        r = await password_step(portal, identifier, password)
        assert r.status_code == 422 and messages(r) == [LOGIN_FAILED], (identifier, messages(r))
        pages.append(neutral(r, identifier))
    for _ in range(portal.services.config.security.login_failures_before_delay):
        await password_step(portal, vitale.identifier, "Pas-Le-Bon-1!")
    r = await password_step(portal, vitale.identifier, PASSWORD)  # the right one, while slowed down
    assert r.status_code == 422 and messages(r) == [LOGIN_FAILED]
    pages.append(neutral(r, vitale.identifier))
    assert all(page == pages[0] for page in pages), "a login failure page differs from the others"
    await expect_event(portal, "login.failed", account_id=None, reason="bad_credentials")
    await expect_event(portal, "login.failed", account_id=account["id"], reason="slowed")
    await expect_event(portal, "login.failed", reason="expired")


async def test_login_takes_as_long_for_an_unknown_identifier(portal: Portal, demo_people: Any) -> None:
    account = await make_account(portal)
    counting = count_hashing(portal)
    await password_step(portal, UNKNOWN_NIR, "Pas-Le-Bon-1!")
    assert counting.calls == {"hash": 0, "verify": 1}, "the unknown identifier skipped argon2"
    known, unknown = await interleaved_medians(
        lambda: password_step(portal, person().identifier, "Pas-Le-Bon-1!"),
        lambda: password_step(portal, UNKNOWN_NIR, "Pas-Le-Bon-1!"),
        lambda: reset_counters(portal),
    )
    assert counting.calls == {"hash": 0, "verify": 2 * RUNS + 1}
    assert_similar(unknown, known, "login, unknown vs known identifier")
    await expect_event(portal, "login.failed", count=RUNS, account_id=account["id"])
    await expect_event(portal, "login.failed", count=RUNS + 1, account_id=None)


# --- registration --------------------------------------------------------------------------------------


async def registration_pages(portal: Portal, identifier: str, who: Any) -> list[tuple[int, str]]:
    """Every answer of a registration with a wrong identity answer, neutralised."""
    birth = who.birth_date.strftime("%d/%m/%Y")
    steps = [
        ("/inscription/statut", {"status": who.status}),
        ("/inscription/identifiant", {"identifier": identifier}),
        (
            "/inscription/coordonnees",
            {
                "last_name": who.last_name,
                "first_name": who.first_name,
                "birth_date": birth,
                "email": who.email,
                "mobile": who.mobile,
            },
        ),
        ("/inscription/question", {"question": "payment", "answer": "999,99"}),
    ]
    seen = []
    for path, data in steps:
        r = await portal.post(path, data)
        seen.append((r.status_code, where(r)))
        r = await portal.get(where(r))
        seen.append((r.status_code, neutral(r, identifier)))
    return seen


async def test_registration_answers_the_same_whoever_the_identifier_is(
    portal: Portal, portal_factory: Callable[..., Any], demo_people: Any
) -> None:
    who = person("particulier_paiement")
    existing = person("particulier_vitale")
    await make_account(portal, "particulier_vitale")
    outcomes = {}
    for label, identifier in (
        ("unknown", UNKNOWN_NIR),
        ("known", who.nir_with_key),
        ("has an account", existing.nir_with_key),
    ):
        browser = await portal_factory(portal.services.config)
        outcomes[label] = await registration_pages(browser, identifier, who)
    assert outcomes["unknown"] == outcomes["known"] == outcomes["has an account"]
    await expect_event(portal, "registration.unknown")
    await expect_event(portal, "registration.completed", channel="postal")
    await expect_event(portal, "registration.duplicate")


async def test_registration_takes_as_long_whoever_the_identifier_is(
    portal: Portal, portal_factory: Callable[..., Any], demo_people: Any
) -> None:
    """The identity answer step ends the registration: create an account, or hash as if."""
    await make_account(portal, "particulier_vitale")
    counting = count_hashing(portal)
    unknown = iter(unknown_nirs(RUNS))
    known_people = iter(["particulier_paiement", "exploitant", "employeur_jardinier"])

    async def until_question(identifier: str, who: Any) -> Portal:
        await reset_counters(portal)
        browser = await portal_factory(portal.services.config)
        await browser.post("/inscription/statut", {"status": who.status})
        await browser.post("/inscription/identifiant", {"identifier": identifier})
        await browser.post(
            "/inscription/coordonnees",
            {
                "last_name": who.last_name,
                "first_name": who.first_name,
                "birth_date": who.birth_date.strftime("%d/%m/%Y"),
                "email": who.email,
                "mobile": "",
            },
        )
        return browser

    async def timed(identifier: str, who: Any) -> float:
        browser = await until_question(identifier, who)
        start = time.perf_counter()
        r = await browser.post("/inscription/question", {"question": "payment", "answer": "999,99"})
        elapsed = time.perf_counter() - start
        assert where(r) == "/inscription/termine"
        return elapsed

    times: dict[str, list[float]] = {"unknown": [], "known": [], "has an account": []}
    for _ in range(3):
        times["unknown"].append(await timed(next(unknown), person("particulier_paiement")))
        who = person(next(known_people))
        times["known"].append(await timed(who.nir_with_key, who))
        times["has an account"].append(
            await timed(person("particulier_vitale").nir_with_key, person("particulier_vitale"))
        )
    assert counting.calls["hash"] == 9, f"{counting.calls}: every outcome hashes once"
    medians = {k: statistics.median(v) for k, v in times.items()}
    assert_similar(medians["unknown"], medians["known"], "registration, unknown vs known")
    assert_similar(medians["has an account"], medians["known"], "registration, account vs known")
    await expect_event(portal, "registration.unknown", count=3)
    await expect_event(portal, "registration.duplicate", count=3)
    await expect_event(portal, "registration.completed", count=3, channel="postal")


# --- recovery ------------------------------------------------------------------------------------------


async def recovery_pages(portal: Portal, identifier: str) -> list[tuple[int, str]]:
    seen = []
    for path, data in (
        ("/mot-de-passe-oublie/identifiant", {"identifier": identifier}),
        ("/mot-de-passe-oublie/canal", {"channel": "email"}),
        ("/mot-de-passe-oublie/code", {"code": "000000"}),
        ("/mot-de-passe-oublie/code", {"code": "111111"}),
    ):
        r = await portal.post(path, data)
        seen.append((r.status_code, neutral(r, identifier) if r.status_code != 303 else where(r)))
        if r.status_code == 303:
            r = await portal.get(where(r))
            seen.append((r.status_code, neutral(r, identifier)))
    return seen


async def test_recovery_answers_the_same_whoever_the_identifier_is(
    portal: Portal, portal_factory: Callable[..., Any], demo_people: Any
) -> None:
    account = await make_account(portal)
    known = await recovery_pages(portal, person().identifier)
    stranger = await portal_factory(portal.services.config)
    unknown = await recovery_pages(stranger, UNKNOWN_NIR)
    sent = await portal.outbox("recovery_code")
    assert len(sent) == 1 and sent[0]["recipient"]["email"] == person().email
    if sent[0]["payload"]["code"] in ("000000", "111111"):
        pytest.skip("the drawn code is one of the guesses")
    assert known == unknown
    await expect_event(portal, "recovery.requested", account_id=account["id"], reachable=True)
    await expect_event(portal, "recovery.requested", account_id=None, reachable=False)


async def test_recovery_takes_as_long_whoever_the_identifier_is(
    portal: Portal, portal_factory: Callable[..., Any], demo_people: Any
) -> None:
    await make_account(portal)

    times: dict[str, list[float]] = {"known": [], "unknown": []}
    for _ in range(RUNS):
        for label, identifier in (("known", person().identifier), ("unknown", UNKNOWN_NIR)):
            await reset_counters(portal)
            browser = await portal_factory(portal.services.config)
            await browser.post("/mot-de-passe-oublie/identifiant", {"identifier": identifier})
            start = time.perf_counter()
            r = await browser.post("/mot-de-passe-oublie/canal", {"channel": "email"})
            times[label].append(time.perf_counter() - start)
            assert where(r) == "/mot-de-passe-oublie/code"
    known, unknown = statistics.median(times["known"]), statistics.median(times["unknown"])
    # no argon2 on this step, and no delivery (the outbox is written in both cases or neither matters):
    # a few queries each; the floor absorbs a busy machine, an SMTP call or a hash would exceed it
    assert abs(known - unknown) < max(0.5 * max(known, unknown), 0.03), (known, unknown)
    await expect_event(portal, "recovery.requested", count=RUNS, reachable=False)
    await expect_event(portal, "code.sent", count=2 * RUNS, purpose="recovery")


async def test_recovery_code_failures_count_per_identifier_known_or_not(
    portal: Portal, portal_factory: Callable[..., Any], demo_people: Any
) -> None:
    """Three wrong codes, then a new flow: a known account must not be slowed where an unknown one is not."""
    await make_account(portal)
    answers = {}
    for label, identifier in (("known", person().identifier), ("unknown", UNKNOWN_NIR)):
        first = await portal_factory(portal.services.config)
        await first.post("/mot-de-passe-oublie/identifiant", {"identifier": identifier})
        await first.post("/mot-de-passe-oublie/canal", {"channel": "email"})
        for guess in ("000000", "111111", "222222"):
            await first.post("/mot-de-passe-oublie/code", {"code": guess})
        second = await portal_factory(portal.services.config)
        await second.post("/mot-de-passe-oublie/identifiant", {"identifier": identifier})
        await second.post("/mot-de-passe-oublie/canal", {"channel": "email"})
        r = await second.post("/mot-de-passe-oublie/code", {"code": "333333"})
        answers[label] = (r.status_code, messages(r))
    assert answers["known"] == answers["unknown"] == (422, [SLOW_DOWN]), answers
    await expect_event(portal, "limit.reached", limit="code_failures", count=2)


async def test_recovery_code_sends_count_per_identifier_known_or_not(
    portal: Portal, clock: Any, portal_factory: Callable[..., Any], demo_people: Any
) -> None:
    await make_account(portal)
    answers = {}
    for label, identifier in (("known", person().identifier), ("unknown", UNKNOWN_NIR)):
        first = await portal_factory(portal.services.config)
        await first.post("/mot-de-passe-oublie/identifiant", {"identifier": identifier})
        await first.post("/mot-de-passe-oublie/canal", {"channel": "email"})
        for _ in range(portal.services.limits.code_sends.max_count - 1):
            clock.advance(seconds=61)
            r = await first.post("/mot-de-passe-oublie/code", {"action": "renvoyer"})
            assert r.status_code == 200, messages(r)
        second = await portal_factory(portal.services.config)
        await second.post("/mot-de-passe-oublie/identifiant", {"identifier": identifier})
        r = await second.post("/mot-de-passe-oublie/canal", {"channel": "email"})
        answers[label] = (r.status_code, messages(r))
    assert answers["known"] == answers["unknown"] == (422, [SLOW_DOWN]), answers
    await expect_event(portal, "limit.reached", limit="code_sends", count=2)
