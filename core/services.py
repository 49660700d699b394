"""Everything a flow needs, built once per app from the caisse config."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from guichet.core.clock import Clock, DatabaseClock
from guichet.core.codes import Codes
from guichet.core.config import CaisseConfig
from guichet.core.context import DemoEndpoints, PluginContext
from guichet.core.database import Database
from guichet.core.events import Auditor
from guichet.core.flows.engine import Flows
from guichet.core.keys import Keys
from guichet.core.limits import Limits, counter_store_for, limits_from_config
from guichet.core.outbox import enqueue
from guichet.core.passwords import Passwords
from guichet.core.plugins import PluginHost
from guichet.core.ratelimit import CounterStore, Limiter
from guichet.core.sessions import DatabaseSessions, RedisSessions, SessionBackend, SessionManager
from guichet.core.structs import AuditEvent, Recipient

if TYPE_CHECKING:
    from guichet.core.outbox_worker import OutboxWorker

# The SQLite driver's DEBUG lines print every query with its parameters: full NIRs, flow and session
# tokens. guichet's logs never carry those, whatever level the operator sets: cap that logger at INFO.
logging.getLogger("aiosqlite").setLevel(logging.INFO)


@dataclass
class Services:
    config: CaisseConfig
    database: Database
    clock: Clock
    keys: Keys
    host: PluginHost
    codes: Codes
    passwords: Passwords
    limiter: Limiter
    limits: Limits
    auditor: Auditor
    flows: Flows
    sessions: SessionManager
    counter_store: CounterStore
    session_backend: SessionBackend

    def now(self) -> dt.datetime:
        return self.clock.now()

    async def enqueue(
        self,
        *,
        channel: str,
        template: str,
        recipient: Recipient,
        payload: dict[str, Any],
        expires_at: dt.datetime | None = None,
        sent_for: str = "",
    ) -> int:
        return await enqueue(
            self.database,
            self.keys,
            channel=channel,
            template=template,
            recipient=recipient,
            payload=payload,
            now=self.now(),
            expires_at=expires_at,
            sent_for=sent_for,
        )

    def outbox_worker(self, worker_id: str, **options: Any) -> "OutboxWorker":
        """An outbox worker on this app's database, clock and plugins, counting the caisse's budgets."""
        from guichet.core.outbox_worker import DeliveryBudgets, OutboxWorker

        budgets = DeliveryBudgets.for_caisse(self.limiter, self.limits, self.config.caisse.id)
        return OutboxWorker(
            self.database, self.keys, self.host, self.clock, worker_id=worker_id, budgets=budgets, **options
        )

    def event(
        self, kind: str, *, account_id: int | None = None, subject: str = "", client: str = "", **details: Any
    ) -> AuditEvent:
        """An event of now, not stored yet (``audit_all``)."""
        return AuditEvent(
            kind=kind, at=self.now(), account_id=account_id, subject=subject, client=client, details=details
        )

    async def audit(
        self, kind: str, *, account_id: int | None = None, subject: str = "", client: str = "", **details: Any
    ) -> AuditEvent:
        """Store an event (in the caller's transaction) and hand it to observers."""
        event = self.event(kind, account_id=account_id, subject=subject, client=client, **details)
        await self.audit_all([event])
        return event

    async def audit_all(self, events: list[AuditEvent]) -> None:
        """Store events made by one step together (one statement), then hand them to observers."""
        if events:
            await self.auditor.record_many(events)
            self.auditor.publish(events)

    async def close(self) -> None:
        self.passwords.close()
        await self.database.close()
        for store in (self.counter_store, self.session_backend):
            closer = getattr(store, "close", None)
            if closer is not None:
                await closer()


def build_services(
    config: CaisseConfig,
    *,
    clock: Clock | None = None,
    database: Database | None = None,
    demo: DemoEndpoints | None = None,
    extra_plugins: Mapping[str, ModuleType] | None = None,
) -> Services:
    """Everything one app (or one worker process) uses; ``extra_plugins``: the application's own
    plugins, whatever the config enables (the web layer's metrics)."""
    database = database or Database.from_config(config)
    if clock is None:
        # PostgreSQL serves several hosts: all of them judge time on the database's clock (core/clock.py)
        clock = Clock() if database.is_sqlite else DatabaseClock(database.server_time)
    keys = Keys.from_config(config)
    context = PluginContext(config=config, database=database, clock=clock, demo=demo)
    host = PluginHost(config, context, extra=extra_plugins)
    host.check_can_serve()
    namespace = f"guichet:{config.caisse.id}"
    redis_password = config.redis.password.resolve() if config.redis and config.redis.password else None
    counter_store = counter_store_for(config, database)
    session_backend: SessionBackend
    if config.sessions.store == "redis" and config.redis is not None:
        session_backend = RedisSessions(
            config.redis.url,
            namespace,
            password=redis_password,
            clock=clock,
            timeout_seconds=config.redis.timeout_seconds,
        )
    else:
        session_backend = DatabaseSessions(database)
    services = Services(
        config=config,
        database=database,
        clock=clock,
        keys=keys,
        host=host,
        codes=Codes(database, keys),
        passwords=Passwords(config.passwords.argon2, host, max_concurrent=config.passwords.max_concurrent_hashes),
        limiter=Limiter(counter_store, keys, host.measure),
        limits=limits_from_config(config),
        auditor=Auditor(database, host),
        flows=Flows(database),
        sessions=SessionManager(
            session_backend, idle_minutes=config.sessions.idle_minutes, absolute_hours=config.sessions.absolute_hours
        ),
        counter_store=counter_store,
        session_backend=session_backend,
    )
    from guichet.core.flows.contact_codes import ContactCodes  # flows import this module

    host.add_authenticator(ContactCodes(services), plugin="core")
    return services
