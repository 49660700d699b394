"""Audit events: stored in the caller's transaction, then passed to the guichet_event observers."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import msgspec

from guichet.core.statements import fetch, insert_rows
from guichet.core.structs import AuditEvent

if TYPE_CHECKING:
    from guichet.core.database import Database
    from guichet.core.plugins import PluginHost

log = logging.getLogger("guichet.audit")

# the kinds guichet emits; docs/security.md lists them
EVENT_KINDS = frozenset(
    {
        "login.succeeded",
        "login.failed",
        "login.password_ok",
        "code.sent",
        "code.failed",
        "code.expired",
        "code.locked",
        "code.succeeded",
        "password.changed",
        "password.reset",
        "trusted_browser.added",
        "trusted_browser.revoked",
        "trusted_browser.used",
        "limit.reached",
        "identity.failed",
        "identity.succeeded",
        "registration.completed",
        "registration.duplicate",
        "registration.unknown",
        "recovery.requested",
        "email.changed",
        "mobile.changed",
        "contacts.confirmed",
        "logout",
        "logout.failed",
        "third_party.requested",
        "session.expired",
        "budget.exhausted",
        "limit.unavailable",
        "third_party.approved",
        "third_party.rejected",
        "account.exported",
        "account.closed",
        # authenticators (core/flows/authenticate.py): an authenticator app, recovery codes, passkeys...
        "authenticator.verified",
        "authenticator.failed",
        "authenticator.enrolled",
        "authenticator.enrolment_failed",
        "authenticator.removed",
        # the OpenID Connect provider (web/oidc)
        "oidc.authorized",
        "oidc.token_issued",
        "oidc.refused",
        "oidc.revoked",
        "oidc.consent",
        "oidc.consent_refused",
        "oidc.logout",
    }
)


_AUDIT_COLUMNS = ("at", "kind", "account_id", "subject", "client", "details")


class Auditor:
    """Writes events to the audit table; ``flush`` hands them to observers once the transaction is done."""

    def __init__(self, database: "Database", host: "PluginHost | None" = None) -> None:
        self.database = database
        self.host = host

    async def record(self, event: AuditEvent) -> AuditEvent:
        await self.record_many([event])
        return event

    async def record_many(self, events: list[AuditEvent]) -> None:
        """Events in one statement, in their order (two that one step makes together: one round trip)."""
        for event in events:
            if event.kind not in EVENT_KINDS:
                raise ValueError(f"unknown audit event kind {event.kind!r}")
        t = self.database.t.AuditLog
        values: list[Any] = []
        for event in events:
            values += [
                event.at,
                event.kind,
                event.account_id,
                event.subject,
                event.client[:64],
                msgspec.json.encode(event.details).decode(),
            ]
        await fetch(t, insert_rows(t, _AUDIT_COLUMNS, len(events)), *values)
        for event in events:
            log.info("audit %s account=%s subject=%s", event.kind, event.account_id, event.subject)

    def publish(self, events: list[AuditEvent]) -> None:
        if self.host is not None:
            for event in events:
                self.host.emit(event)

    async def tail(self, limit: int = 50) -> list[dict[str, Any]]:
        t = self.database.t.AuditLog
        rows = await t.select().order_by(t.id, ascending=False).limit(limit).run()
        return list(reversed(rows))
