"""The limits guichet applies, from the caisse config; docs/security.md documents them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from guichet.core.config import CaisseConfig
from guichet.core.ratelimit import CounterStore, DatabaseCounters, Limit, RedisCounters

if TYPE_CHECKING:
    from guichet.core.database import Database

DAY = 24 * 3600
# Not in the caisse config: a caisse has no reason to loosen these (docs/security.md, "Limits")
SMS_CODES_PER_NUMBER_PER_DAY = 5  # toll fraud: premium numbers typed into a form cost the caisse
REGISTRATION_NOTICES_PER_DAY = 1  # "someone tried to register with your identifier", per identifier


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    login_identifier: Limit  # wrong passwords per identifier: progressive delays, never a lockout
    login_client: Limit  # password attempts per client address
    code_failures: Limit  # wrong codes per account (or flow) per day: a new code does not reset it
    code_sends: Limit  # codes sent per account (or flow) per hour
    identity_answers: Limit  # identity answers per identifier, then only the postal path
    registration_client: Limit  # registrations started per client address
    recovery_identifier: Limit  # recovery requests per identifier
    recovery_client: Limit
    sms_destination: Limit  # codes by SMS to one mobile number, whatever the account or flow
    registration_notice: Limit  # notices to the holder of an identifier someone tries to register again
    sms_budget: Limit  # per caisse, counted per delivery attempt by the outbox worker
    letter_budget: Limit  # per caisse


def limits_from_config(config: CaisseConfig) -> Limits:
    security = config.security
    return Limits(
        login_identifier=Limit(
            name="login-id",
            window_seconds=DAY,
            max_count=10_000,
            delay_after=security.login_failures_before_delay,
            max_delay_seconds=security.max_delay_seconds,
        ),
        login_client=Limit(
            name="login-ip",
            window_seconds=3600,
            max_count=security.per_client_attempts_per_hour,
            delay_after=security.per_client_attempts_per_hour // 3,
            max_delay_seconds=security.max_delay_seconds,
            per_client=True,
        ),
        code_failures=Limit(
            name="code-fail",
            window_seconds=DAY,
            max_count=config.codes.failures_per_day,
            delay_after=3,
            max_delay_seconds=security.max_delay_seconds,
        ),
        code_sends=Limit(name="code-send", window_seconds=3600, max_count=6),
        identity_answers=Limit(
            name="identity", window_seconds=30 * DAY, max_count=security.identity_answers_per_identifier
        ),
        registration_client=Limit(name="register-ip", window_seconds=3600, max_count=30, per_client=True),
        recovery_identifier=Limit(name="recover-id", window_seconds=DAY, max_count=5),
        recovery_client=Limit(name="recover-ip", window_seconds=3600, max_count=30, per_client=True),
        sms_destination=Limit(name="sms-to", window_seconds=DAY, max_count=SMS_CODES_PER_NUMBER_PER_DAY),
        registration_notice=Limit(name="notice-dup", window_seconds=DAY, max_count=REGISTRATION_NOTICES_PER_DAY),
        sms_budget=Limit(name="budget-sms", window_seconds=3600, max_count=security.sms_per_hour),
        letter_budget=Limit(name="budget-letter", window_seconds=3600, max_count=security.letters_per_hour),
    )


def counter_store_for(config: CaisseConfig, database: "Database") -> CounterStore:
    """Where the rate-limit and budget counters live: Redis when configured, else the database.

    Every process of a caisse (web and outbox workers) counts in the same place, so a budget is
    one budget whatever process spends it.
    """
    if config.rate_limits.store == "redis" and config.redis is not None:
        password = config.redis.password.resolve() if config.redis.password else None
        return RedisCounters(
            config.redis.url,
            f"guichet:{config.caisse.id}",
            password=password,
            timeout_seconds=config.redis.timeout_seconds,
        )
    return DatabaseCounters(database)
