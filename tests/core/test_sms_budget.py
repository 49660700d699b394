"""The caisse's hourly SMS budget is counted per delivery attempt (a retry costs what a first
attempt costs), by the outbox worker; the request only refuses early once it is spent, without
counting. A real HTTP gateway, both databases."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from guichet.core.clock import FrozenClock
from guichet.core.config import CaisseConfig
from guichet.core.database import Database
from guichet.core.flows.common import UNAVAILABLE, send_code
from guichet.core.keys import new_token
from guichet.core.outbox import EXPIRED, PENDING, SENT
from guichet.core.outbox_worker import BUDGET_WAIT, run_worker_process
from guichet.core.services import Services, build_services
from guichet.core.structs import Recipient
from guichet.testing import HttpSink, base_with_plugins

T0 = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)
RECIPIENT = Recipient(name="Marie DUPONT", mobile="06 12 34 56 78")


def sms_config(make_config: Callable[..., CaisseConfig], db_url: str, url: str, per_hour: int) -> CaisseConfig:
    base = base_with_plugins("delivery_sms", "delivery_postal").replace(
        "[security]\n", f"[security]\nsms_per_hour = {per_hour}\n", 1
    )
    return make_config(
        f'[plugins.settings.delivery_sms]\nurl = "{url}"\nsender = "MSA"', database_url=db_url, base=base
    )


async def queue_sms(services: Services, *, lifetime: dt.timedelta = dt.timedelta(hours=2)) -> int:
    async with services.database.transaction():
        return await services.enqueue(
            channel="sms",
            template="login_code",
            recipient=RECIPIENT,
            payload={"code": "482913", "lifetime_minutes": 15},
            expires_at=services.now() + lifetime,
        )


async def row(database: Database, id: int) -> dict[str, Any]:
    t = database.t.OutboxMessage
    return (await t.select().where(t.id == id).run())[0]


async def budget_events(services: Services) -> list[dict[str, Any]]:
    t = services.database.t.AuditLog
    rows = await t.select(t.details).where(t.kind == "budget.exhausted").order_by(t.id).run()
    return [msgspec.json.decode(r["details"]) for r in rows]


@pytest.fixture
async def services_for(make_config: Callable[..., CaisseConfig], database: Database, db_url: str) -> Any:
    made: list[Services] = []

    def factory(url: str, per_hour: int) -> Services:
        services = build_services(
            sms_config(make_config, db_url, url, per_hour), clock=FrozenClock(T0), database=database
        )
        made.append(services)
        return services

    yield factory
    for services in made:
        services.passwords.close()


async def test_every_attempt_costs_one_sms_and_a_spent_budget_makes_the_message_wait(
    services_for: Callable[..., Services],
) -> None:
    """Budget 2 an hour: a message that fails twice (the gateway answers 500) has spent it; its third
    attempt waits for the next hour rather than being sent, and is not counted as an attempt."""
    with HttpSink(script=[(500, {}), (500, {})]) as gateway:
        services = services_for(gateway.url, 2)
        clock: FrozenClock = services.clock  # type: ignore[assignment]
        id = await queue_sms(services)
        worker = services.outbox_worker("budget")
        for _ in range(2):
            assert await worker.run_once() == 1
            clock._now = (await row(services.database, id))["next_attempt_at"]
        assert await worker.run_once() == 1
        waiting = await row(services.database, id)
        assert len(gateway.requests) == 2, "the third attempt went out past the budget"
        assert waiting["state"] == PENDING and waiting["attempts"] == 2 and waiting["last_error"] == BUDGET_WAIT
        assert waiting["next_attempt_at"] == clock.now() + dt.timedelta(seconds=60)
        clock._now = waiting["next_attempt_at"]
        assert await worker.run_once() == 1  # still the same hour: it waits again, audited once
        clock.advance(hours=1)
        assert await worker.run_once() == 1
    assert len(gateway.requests) == 3
    sent = await row(services.database, id)
    assert sent["state"] == SENT and sent["attempts"] == 3
    assert await budget_events(services) == [{"channel": "sms", "stage": "delivery", "outcome": "waiting"}]


async def test_a_message_the_budget_holds_past_its_lifetime_expires_with_its_content(
    services_for: Callable[..., Services],
) -> None:
    with HttpSink() as gateway:
        services = services_for(gateway.url, 1)
        first = await queue_sms(services)
        second = await queue_sms(services, lifetime=dt.timedelta(seconds=30))
        assert await services.outbox_worker("budget").drain() == 2
    assert len(gateway.requests) == 1
    assert (await row(services.database, first))["state"] == SENT
    expired = await row(services.database, second)
    assert expired["state"] == EXPIRED and expired["sealed"] == "" and expired["last_error"] == f"expired {BUDGET_WAIT}"
    assert await budget_events(services) == [{"channel": "sms", "stage": "delivery", "outcome": "expired"}]


async def test_a_code_request_checks_the_budget_without_spending_it(services_for: Callable[..., Services]) -> None:
    """Budget 1 an hour: two codes asked for before any delivery are both queued (the request only
    looks); the worker texts one and holds the other; a third request is refused early."""
    with HttpSink() as gateway:
        services = services_for(gateway.url, 1)

        async def ask() -> str | None:
            return await send_code(
                services,
                purpose="login",
                binding=new_token(),
                channel="sms",
                recipient=RECIPIENT,
                account_id=None,
                template="login_code",
                new_binding=True,
            )

        assert await ask() is None and await ask() is None
        assert await services.outbox_worker("budget").drain() == 2
        assert len(gateway.requests) == 1
        assert await ask() == UNAVAILABLE
    t = services.database.t.OutboxMessage
    assert sorted(r["state"] for r in await t.select(t.state).run()) == [PENDING, SENT]
    events = await budget_events(services)
    assert events == [{"channel": "sms", "stage": "delivery", "outcome": "waiting"}, {"channel": "sms"}]


async def test_the_worker_process_counts_the_budget(
    make_config: Callable[..., CaisseConfig], database: Database, db_url: str
) -> None:
    """`guichet outbox work` counts in the caisse's counters (here the database's), as `guichet serve` does."""
    with HttpSink() as gateway:
        config = sms_config(make_config, db_url, gateway.url, 1)
        services = build_services(config, database=database)
        try:
            ids = [await queue_sms(services) for _ in range(2)]
            assert await run_worker_process(config, once=True) == 0
        finally:
            services.passwords.close()
    assert len(gateway.requests) == 1
    assert sorted([(await row(database, id))["state"] for id in ids]) == [PENDING, SENT]
