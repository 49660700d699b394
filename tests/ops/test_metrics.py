"""/metrics: the listed series after a login; who may read it; the request id; logs without secrets."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from guichet.core.config import CaisseConfig
from guichet.core.logs import JsonFormatter, accepted_request_id, scrub
from tests.conftest import Portal, portal_config_text

PASSWORD = "Ocre-Falaise-31-Marée!"
IDENTIFIER = "1850578006084"  # LEFEBVRE Julien, a demo registry person
OTHER = "2920633123045"
SERIES = (
    "guichet_http_requests_total",
    "guichet_http_request_duration_seconds_bucket",
    "guichet_http_requests_in_progress",
    "guichet_step_outcomes_total",
    "guichet_security_events_total",
    "guichet_codes_sent_total",
    "guichet_codes_failed_total",
    "guichet_outbox_deliveries_total",
    "guichet_outbox_messages",
    "guichet_outbox_oldest_age_seconds",
    "guichet_rate_limit_hits_total",
    "guichet_rate_limit_refusals_total",
    "guichet_argon2_seconds_bucket",
    "guichet_argon2_cpu_seconds_total",
    "guichet_argon2_wait_seconds_bucket",
)


def metrics_client(portal: Portal, host: str = "127.0.0.1") -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=portal.app, client=(host, 50000)), base_url="http://127.0.0.1:8000"
    )


def value(text: str, name: str, **labels: str) -> float:
    """The sample of ``name`` whose labels include ``labels`` (summed when several match)."""
    total, found = 0.0, False
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, number = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(number)
            found = True
    assert found, f"no sample {name}{labels}"
    return total


async def make_account(portal: Portal, identifier: str, email: str) -> None:
    services = portal.services
    t = services.database.t.Account
    now = dt.datetime.now(dt.UTC)
    await t.insert(
        t(
            identifier_kind="nir",
            identifier=identifier,
            status="particulier",
            last_name="LEFEBVRE",
            first_name="Julien",
            email=email,
            email_verified=True,
            password_hash=await services.passwords.hash(PASSWORD),
            password_is_temporary=False,
            password_changed_at=now,
            contacts_confirmed_at=now,
            credentials_version=1,
            created_at=now,
        )
    ).run()


@pytest.fixture
async def logged_in(portal: Portal) -> Portal:
    """A login with one wrong code first, and six wrong passwords on another account (a slow-down)."""
    await make_account(portal, IDENTIFIER, "julien@test.invalid")
    await make_account(portal, OTHER, "sophie@test.invalid")
    for _ in range(6):
        await portal.get("/connexion")
        await portal.post("/connexion", {"identifier": OTHER, "password": "pas-le-bon-mot-de-passe"})
    await portal.get("/connexion")
    r = await portal.post("/connexion", {"identifier": IDENTIFIER, "password": PASSWORD})
    assert r.status_code == 303 and r.headers["location"] == "/connexion/code"
    await portal.get("/connexion/code")
    code = await portal.last_code("login_code")
    wrong = "000000" if code != "000000" else "111111"
    r = await portal.post("/connexion/code", {"code": wrong})
    assert r.status_code == 422
    r = await portal.post("/connexion/code", {"code": code})
    assert r.status_code == 303 and r.headers["location"] == "/espace-prive"
    return portal


async def test_metrics_expose_the_listed_series_after_a_login(logged_in: Portal) -> None:
    async with metrics_client(logged_in) as client:
        r = await client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain") and r.headers["content-type"].count("charset") == 1
    text = r.text
    for name in SERIES:
        assert re.search(rf"^{name}[{{ ]", text, re.M) or f"# TYPE {name.removesuffix('_total')}" in text, name
    assert value(text, "guichet_http_requests_total", method="POST", route="/connexion", status="303") >= 1
    assert value(text, "guichet_http_request_duration_seconds_count", method="POST", route="/connexion/code") >= 2
    assert value(text, "guichet_step_outcomes_total", flow="login", step="connexion", outcome="ok") >= 1
    assert value(text, "guichet_step_outcomes_total", flow="login", step="connexion", outcome="invalid") >= 6
    assert value(text, "guichet_step_outcomes_total", flow="login", step="code", outcome="invalid") >= 1
    assert value(text, "guichet_step_outcomes_total", flow="login", step="code", outcome="ok") >= 1
    assert value(text, "guichet_security_events_total", kind="login.succeeded") >= 1
    assert value(text, "guichet_codes_sent_total", purpose="login", channel="email") >= 1
    assert value(text, "guichet_codes_failed_total", purpose="login") >= 1
    assert value(text, "guichet_outbox_messages", channel="email", state="pending") == 1  # this database only
    assert value(text, "guichet_outbox_oldest_age_seconds", channel="email", state="pending") >= 0
    assert value(text, "guichet_rate_limit_hits_total", limit="login-id") >= 6
    assert value(text, "guichet_rate_limit_refusals_total", limit="login-id") >= 1
    # seven passwords typed; a try the slow-down refuses is never hashed (how many depends on timing)
    refused = value(text, "guichet_rate_limit_refusals_total", limit="login-id")
    assert value(text, "guichet_argon2_seconds_count", operation="verify") >= 7 - refused
    assert value(text, "guichet_argon2_seconds_count", operation="hash") >= 2
    # the hashing threads' CPU: spent, and within the time the hashes took (one lane each, p=1)
    for operation in ("verify", "hash"):
        cpu = value(text, "guichet_argon2_cpu_seconds_total", operation=operation)
        took = value(text, "guichet_argon2_seconds_sum", operation=operation)
        assert 0 < cpu <= took, (operation, cpu, took)
    # never a raw path or an identifier as a label value
    assert IDENTIFIER not in text and OTHER not in text and "@test.invalid" not in text


async def test_metrics_answer_only_allowed_addresses_and_never_through_a_proxy(portal: Portal) -> None:
    async with metrics_client(portal, "203.0.113.7") as client:
        assert (await client.get("/metrics")).status_code == 404
    async with metrics_client(portal, "::1") as client:
        assert (await client.get("/metrics")).status_code == 200
    async with metrics_client(portal) as client:
        assert (await client.get("/metrics")).status_code == 200
        assert (await client.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"})).status_code == 404
        assert (await client.get("/metrics", headers={"Forwarded": "for=127.0.0.1"})).status_code == 404


async def test_metrics_allowed_network_and_switched_off(
    portal_factory: Callable[..., Any], make_config: Callable[..., CaisseConfig], db_url: str
) -> None:
    config = make_config(
        database_url=db_url, base=portal_config_text('\n[metrics]\nallowed_clients = ["203.0.113.0/24"]\n')
    )
    portal = await portal_factory(config)
    async with metrics_client(portal, "203.0.113.7") as client:
        assert (await client.get("/metrics")).status_code == 200
    async with metrics_client(portal) as client:
        assert (await client.get("/metrics")).status_code == 404
    off = await portal_factory(
        make_config(database_url=db_url, base=portal_config_text("\n[metrics]\nenabled = false\n"))
    )
    async with metrics_client(off) as client:
        assert (await client.get("/metrics")).status_code == 404


def test_a_bad_metrics_address_is_a_config_error(make_config: Callable[..., CaisseConfig]) -> None:
    from guichet.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"metrics.allowed_clients\[0\]"):
        make_config(base=portal_config_text('\n[metrics]\nallowed_clients = ["localhost"]\n'))


async def test_every_response_carries_a_request_id(portal: Portal) -> None:
    r = await portal.get("/")
    first = r.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{16}", first)
    assert (await portal.get("/")).headers["x-request-id"] != first
    r = await portal.client.get("/sante", headers={"X-Request-Id": "proxy-id-1234"})
    assert r.headers["x-request-id"] == "proxy-id-1234"
    r = await portal.client.get("/page-inconnue", headers={"X-Request-Id": "bad id\twith tab"})
    assert r.status_code == 404 and re.fullmatch(r"[0-9a-f]{16}", r.headers["x-request-id"])
    assert accepted_request_id("x" * 65) != "x" * 65


async def test_health_endpoints(portal: Portal) -> None:
    """Readiness under real outages (PostgreSQL stopped, Redis killed, SQLite full): tests/ops/test_outages.py."""
    r = await portal.get("/sante")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = await portal.get("/sante/pret")
    assert r.status_code == 200 and r.json() == {"status": "ok", "database": "ok"}
    assert "set-cookie" not in r.headers  # probes never make sessions
    assert await portal.services.database.t.Session.count().run() == 0, "the write probe is rolled back"


async def test_json_logs_carry_the_request_id_and_no_secret(portal: Portal, demo_people: Any) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    person = demo_people.DEMO_PERSONS["particulier_vitale"]
    try:
        await make_account(portal, person.identifier, person.email)
        await portal.get("/connexion")
        await portal.post("/connexion", {"identifier": person.identifier, "password": "mauvais-mot-de-passe-1"})
        r = await portal.post("/connexion", {"identifier": person.identifier, "password": PASSWORD})
        request_id = r.headers["x-request-id"]
        await portal.get("/connexion/code")
        code = await portal.last_code("login_code")
        await portal.post("/connexion/code", {"code": code})
        logging.getLogger("guichet.test").warning(
            "password=%s sent to %s for %s", PASSWORD, person.email, person.identifier
        )
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert any(line.get("request_id") == request_id for line in lines), "no line of the login carries its id"
    text = stream.getvalue()
    for secret in (PASSWORD, "mauvais-mot-de-passe-1", person.identifier, person.email, code):
        assert secret not in text, f"{secret!r} found in the logs"


def test_scrub_masks_secrets_and_identifiers() -> None:
    assert scrub("password=hunter2 code=123456 token=abc") == "password=*** code=*** token=***"
    assert scrub('{"password": "a b", "code": 123456}') == '{"password": "***", "code": "***"}'
    assert scrub("postgresql://guichet:s3cret@db/guichet") == "postgresql://guichet:***@db/guichet"
    assert scrub("NIR 185052A006084 and 185057800608412, SIRET 84216730600021") == "NIR <nir> and <nir>, SIRET <siret>"
    assert scrub("to julien.lefebvre@demo.invalid") == "to ***@demo.invalid"
    assert scrub("Authorization: Bearer abcdef.ghijkl") == "Authorization: Bearer ***"
    assert scrub("outbox message 12 sent, status code: 200") == "outbox message 12 sent, status code: 200"
