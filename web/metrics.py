"""Prometheus metrics: requests, step outcomes, codes, the outbox, rate limits, argon2 timings.

The web layer's own plugin, ``metrics`` (``guichet plugins`` lists it): what core observes reaches it
through the observer hooks, ``guichet_event`` (security events, codes) and ``guichet_measure``
(argon2, rate limits, the outbox's duplicate window); requests are counted by the ASGI wrapper
below, step outcomes and deliveries by the web layer itself. ``web/app.py`` registers it in every
app (``APP_PLUGINS``), and ``guichet outbox work`` in its worker process.

Series (all prefixed ``guichet_``):

* ``http_requests_total{method,route,status}`` and ``http_request_duration_seconds{method,route}``:
  by route template (``/inscription/{step:str}``), never by raw path; ``http_requests_in_progress``.
* ``step_outcomes_total{flow,step,outcome}``: each submitted step, ``ok`` or ``invalid`` (a 422).
* ``security_events_total{kind}``: the audit events (``login.failed``, ``code.sent`` …).
* ``codes_sent_total{purpose,channel}`` and ``codes_failed_total{purpose,outcome}``.
* ``outbox_deliveries_total{channel,outcome}``: what the outbox worker inside this process did.
* ``outbox_unrecorded_seconds``: for each message sent, the time between the channel accepting it
  and its ``sent`` state being stored: a worker killed within that window sends it again.
* ``outbox_messages{channel,state}`` and ``outbox_oldest_age_seconds{channel,state}``: read from
  the database at scrape time (pending, sending, failed), so they hold for every worker process.
* ``rate_limit_hits_total{limit}`` (tries counted) and ``rate_limit_refusals_total{limit}``.
* ``argon2_seconds{operation}`` (hash, verify: the time in the hashing thread),
  ``argon2_cpu_seconds_total{operation}`` (that thread's CPU time: against the process's own CPU,
  the share spent hashing; per operation, what a hash costs on this machine under this load; only
  with ``argon2.parallelism = 1``, the shipped profiles: more lanes run in argon2's own threads) and
  ``argon2_wait_seconds`` (waiting for a hashing slot: a full slot pool means too few cores).

One registry per process. With ``guichet serve --workers N`` (N > 1) the series of every worker
are summed through prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by
``guichet serve``); ``/metrics`` is then the same whichever worker answers.

``/metrics`` answers only to the addresses in ``[metrics] allowed_clients`` (loopback by
default), and never to a request that came through a proxy (one with X-Forwarded-For or
Forwarded): a reverse proxy on the same host cannot expose it by accident.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

from guichet.core import AuditEvent, Measurement, hookimpl
from guichet.core.logs import accepted_request_id, request_id_var

if TYPE_CHECKING:
    from guichet.core.database import Database

log = logging.getLogger("guichet.access")

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series: half the lines, nothing a dashboard uses
REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "guichet_http_requests",
    "HTTP requests by route template, method and status",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "guichet_http_request_duration_seconds",
    "Time to answer, by route template",
    ["method", "route"],
    registry=REGISTRY,
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
IN_PROGRESS = Gauge(
    "guichet_http_requests_in_progress", "Requests being answered", registry=REGISTRY, multiprocess_mode="livesum"
)
STEP_OUTCOMES = Counter(
    "guichet_step_outcomes",
    "Submitted steps: ok, or invalid (shown again with errors)",
    ["flow", "step", "outcome"],
    registry=REGISTRY,
)
EVENTS = Counter("guichet_security_events", "Audit events by kind", ["kind"], registry=REGISTRY)
CODES_SENT = Counter(
    "guichet_codes_sent", "Security codes issued and queued, per channel", ["purpose", "channel"], registry=REGISTRY
)
CODES_FAILED = Counter(
    "guichet_codes_failed", "Security codes typed wrong, expired or used up", ["purpose", "outcome"], registry=REGISTRY
)
DELIVERIES = Counter(
    "guichet_outbox_deliveries",
    "Outbox deliveries by this process's worker, per outcome",
    ["channel", "outcome"],
    registry=REGISTRY,
)
OUTBOX_UNRECORDED = Histogram(
    "guichet_outbox_unrecorded_seconds",
    "Time between a channel accepting a message and its outcome being stored (the duplicate window: "
    "a worker that dies within it sends the message again)",
    registry=REGISTRY,
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
RATE_LIMIT_HITS = Counter("guichet_rate_limit_hits", "Tries counted against a rate limit", ["limit"], registry=REGISTRY)
RATE_LIMIT_REFUSALS = Counter(
    "guichet_rate_limit_refusals", "Tries refused or slowed down by a rate limit", ["limit"], registry=REGISTRY
)
ARGON2 = Histogram(
    "guichet_argon2_seconds",
    "argon2id time in the hashing thread",
    ["operation"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5),
)
ARGON2_CPU = Counter(
    "guichet_argon2_cpu_seconds",
    "argon2id CPU time of the hashing threads",
    ["operation"],
    registry=REGISTRY,
)
ARGON2_WAIT = Histogram(
    "guichet_argon2_wait_seconds",
    "Time waiting for a free hashing slot",
    registry=REGISTRY,
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

_CODE_FAILURES = {"code.failed": "wrong", "code.expired": "expired", "code.locked": "locked"}


@hookimpl
def guichet_event(event: AuditEvent) -> None:
    """Count an audit event, and the codes sent and failed among them."""
    EVENTS.labels(event.kind).inc()
    details = event.details
    if event.kind == "code.sent":
        CODES_SENT.labels(str(details.get("purpose", "")), str(details.get("channel", ""))).inc()
    elif event.kind in _CODE_FAILURES:
        CODES_FAILED.labels(
            str(details.get("purpose", "")), str(details.get("outcome", _CODE_FAILURES[event.kind]))
        ).inc()


@hookimpl
def guichet_measure(measurement: Measurement) -> None:
    """Record what core measured (core.structs.Measurement lists the names); others are ignored."""
    name, labels = measurement.name, measurement.labels
    if name == "rate_limit_hit":
        RATE_LIMIT_HITS.labels(labels.get("limit", "")).inc()
    elif name == "rate_limit_refusal":
        RATE_LIMIT_REFUSALS.labels(labels.get("limit", "")).inc()
    elif name == "argon2_seconds":
        ARGON2.labels(labels.get("operation", "")).observe(measurement.value)
    elif name == "argon2_cpu_seconds":
        ARGON2_CPU.labels(labels.get("operation", "")).inc(measurement.value)
    elif name == "argon2_wait_seconds":
        ARGON2_WAIT.observe(measurement.value)
    elif name == "outbox_unrecorded_seconds":
        OUTBOX_UNRECORDED.observe(measurement.value)


def step(flow: str, step_name: str, ok: bool) -> None:
    STEP_OUTCOMES.labels(flow, step_name, "ok" if ok else "invalid").inc()


# --- the outbox, read at scrape time ----------------------------------------------------------------


def _as_datetime(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value if isinstance(value, dt.datetime) else None


async def outbox_families(database: "Database", now: dt.datetime) -> list[GaugeMetricFamily]:
    """Depth and oldest age of the outbox per channel and state (pending, sending, failed)."""
    table = database.t.OutboxMessage._meta.tablename
    rows = await database.t.OutboxMessage.raw(
        f"SELECT channel, state, COUNT(*) AS n, MIN(created_at) AS oldest FROM {table} "
        "WHERE state IN ('pending', 'sending', 'failed') GROUP BY channel, state"
    ).run()
    depth = GaugeMetricFamily(
        "guichet_outbox_messages", "Outbox messages waiting, being sent or failed", labels=["channel", "state"]
    )
    age = GaugeMetricFamily(
        "guichet_outbox_oldest_age_seconds",
        "Age of the oldest message per channel and state",
        labels=["channel", "state"],
    )
    seen = set()
    for row in rows:
        key = (str(row["channel"]), str(row["state"]))
        seen.add(key)
        depth.add_metric(list(key), float(row["n"]))
        oldest = _as_datetime(row["oldest"])
        age.add_metric(list(key), max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
    for state in ("pending", "sending", "failed"):  # the series exist even when the outbox is empty
        if not any(k[1] == state for k in seen):
            depth.add_metric(["", state], 0.0)
            age.add_metric(["", state], 0.0)
    return [depth, age]


class _Families:
    def __init__(self, families: Iterable[Any]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Any]:
        return self.families


async def exposition(database: "Database | None", now: dt.datetime) -> bytes:
    """The text format: this process's (or every worker's) series, then the outbox read now."""
    if os.environ.get(MULTIPROCESS_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    if database is not None:
        scrape = CollectorRegistry(auto_describe=False)
        try:
            scrape.register(_Families(await outbox_families(database, now)))  # type: ignore[arg-type]
        except Exception as exc:  # the database is down: the other series still matter
            log.warning("metrics: outbox not readable (%s)", type(exc).__name__)
        else:
            body += generate_latest(scrape)
    return body


CONTENT_TYPE = CONTENT_TYPE_LATEST


def process_ended() -> None:
    """In multiprocess mode, drop this process's live gauges (call at shutdown)."""
    directory = os.environ.get(MULTIPROCESS_ENV)
    if directory:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]


# --- who may read /metrics ----------------------------------------------------------------------------

_FORWARDING_HEADERS = (b"x-forwarded-for", b"forwarded", b"x-real-ip")


class ClientFilter:
    """Addresses and networks allowed to read /metrics; a proxied request is always refused."""

    def __init__(self, allowed: Iterable[str]) -> None:
        self.networks = [ipaddress.ip_network(a, strict=False) for a in allowed]

    def allows(self, peer: str, headers: Iterable[tuple[bytes, bytes]]) -> bool:
        if any(name.lower() in _FORWARDING_HEADERS for name, _ in headers):
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)


# --- the ASGI wrapper: request id, request metrics, access log ------------------------------------------


class Instrumented:
    """Wraps the app's ASGI handler (outside routing, so 404s count too)."""

    def __init__(self, app: Callable[..., Awaitable[None]], *, access_log: bool = False) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = accepted_request_id(incoming)
        token = request_id_var.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        header = (b"x-request-id", request_id.encode("latin-1"))

        async def send_with_id(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.get("headers")
                if headers is None:
                    message["headers"] = [header]
                elif isinstance(headers, list):
                    headers.append(header)
                else:
                    message["headers"] = [*headers, header]
            await send(message)

        start = time.perf_counter()
        IN_PROGRESS.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            IN_PROGRESS.dec()
            elapsed = time.perf_counter() - start
            path = scope.get("path", "")
            route = scope.get("path_template") or ("/static/{name}" if path.startswith("/static/") else "unmatched")
            method = scope.get("method", "GET")
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_DURATION.labels(method, route).observe(elapsed)
            if self.access_log:
                log.info(
                    "%s %s %s",
                    method,
                    path,
                    status,
                    extra={"route": route, "status": status, "duration_ms": round(elapsed * 1000, 2)},
                )
            request_id_var.reset(token)


def app_plugins() -> dict[str, ModuleType]:
    """The web layer's own plugins (this module, as ``metrics``): every app and ``guichet outbox work``
    register them whatever the config enables, and ``guichet plugins`` lists them."""
    return {"metrics": sys.modules[__name__]}
