"""Scale-out: two ``guichet serve`` processes on one PostgreSQL database and one Redis.

A flow started on one finishes on the other (a login's code step, a registration's steps in
turn), and a rate limit counts on both: wrong passwords split across the two processes trigger
the slow-down. Needs GUICHET_TEST_POSTGRES and GUICHET_TEST_REDIS (skipped without them, unless
GUICHET_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from guichet.core.config import load_config
from guichet.core.database import Database
from tests.conftest import _reset_postgres, portal_config_text, postgres_url, redis_url
from tests.ops.invariants import check_invariants
from tests.ops.serving import Served

pytestmark = pytest.mark.faults

PASSWORD = "Ocre-Falaise-31-Marée!"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def config_text(caisse_id: str, database_url: str, redis: str) -> str:
    """The portal config, its state in PostgreSQL and Redis, the codes read from the outbox."""
    extra = f"""
[rate_limits]
store = "redis"

[redis]
url = "{redis}"

[database]
url = "{database_url}"

[logging]
format = "text"
"""
    return (
        portal_config_text(extra)
        .replace('id = "test"', f'id = "{caisse_id}"', 1)
        .replace("secure_cookies = false\n", 'secure_cookies = false\nstore = "redis"\n', 1)
        .replace(
            'mode = "demo"\n', 'mode = "demo"\noutbox_worker = false   # the test reads the codes from the outbox\n', 1
        )
    )


async def _prepare(config_path: Path) -> None:
    """An empty schema, the demo registry and one account with a known password."""
    from guichet.core.passwords import Passwords
    from guichet.plugins.registry_tables import importer as registry_import

    config = load_config(config_path)
    database = Database.from_config(config)
    await database.connect()
    try:
        await _reset_postgres(database)
        await registry_import.generate_demo_registry(database, count=0, seed=1)
        hasher = Passwords(config.passwords.argon2, host=None)  # type: ignore[arg-type]
        t = database.t.Account
        now = dt.datetime.now(dt.UTC)
        for identifier, email in (("2920633123045", "sophie@test.invalid"), ("1680764445012", "pierre@test.invalid")):
            await t.insert(
                t(
                    identifier_kind="nir",
                    identifier=identifier,
                    status="particulier",
                    last_name="TEST",
                    first_name="Test",
                    email=email,
                    email_verified=True,
                    password_hash=await hasher.hash(PASSWORD),
                    password_is_temporary=False,
                    password_changed_at=now,
                    contacts_confirmed_at=now,
                    credentials_version=1,
                    created_at=now,
                )
            ).run()
    finally:
        await database.close()


async def _last_code(config_path: Path, template: str) -> str:
    from guichet.core.keys import Keys
    from guichet.core.outbox import open_sealed

    config = load_config(config_path)
    database = Database.from_config(config)
    await database.connect()
    try:
        t = database.t.OutboxMessage
        rows = await t.select(t.sealed).where(t.template == template).order_by(t.id, ascending=False).limit(1).run()
        assert rows, f"no {template} message was queued"
        return str(open_sealed(Keys.from_config(config), rows[0]["sealed"]).payload["code"])
    finally:
        await database.close()


async def _clear_redis(url: str, caisse_id: str) -> None:
    import redis.asyncio as redis

    client = redis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"guichet:{caisse_id}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture(scope="module")
def two_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Served, Path]]:
    """Started once for the module: each test uses identifiers of its own."""
    database_url = postgres_url()
    redis = redis_url()
    caisse_id = f"ops-{secrets.token_hex(4)}"
    config_path = tmp_path_factory.mktemp("scale-out") / "caisse.toml"
    config_path.write_text(config_text(caisse_id, database_url, redis), encoding="utf-8")
    asyncio.run(_prepare(config_path))
    first, second = Served(config_path), Served(config_path)
    try:
        first.start()
        second.start()
        yield first, second, config_path
    finally:
        codes = [first.stop(), second.stop()]
        asyncio.run(_clear_redis(redis, caisse_id))
    assert codes == [0, 0], (
        f"a server did not stop cleanly: {codes}\n{first.output()[-2000:]}\n{second.output()[-2000:]}"
    )


def _token(response: httpx.Response) -> str:
    found = CSRF.search(response.text)
    assert found, f"no CSRF token on {response.request.url}: {response.status_code}"
    return found.group(1)


def test_a_login_started_on_one_process_finishes_on_the_other(two_servers: tuple[Served, Served, Path]) -> None:
    first, second, config_path = two_servers
    with httpx.Client(timeout=30) as browser:  # one cookie jar for both: cookies do not depend on the port
        token = _token(browser.get(f"{first.url}/connexion"))
        r = browser.post(
            f"{first.url}/connexion", data={"identifier": "2920633123045", "password": PASSWORD, "csrf_token": token}
        )
        assert r.status_code == 303 and r.headers["location"] == "/connexion/code", r.text[:500]
        token = _token(browser.get(f"{second.url}/connexion/code"))  # the session is in Redis
        code = asyncio.run(_last_code(config_path, "login_code"))
        r = browser.post(f"{second.url}/connexion/code", data={"code": code, "csrf_token": token})
        assert r.status_code == 303 and r.headers["location"] == "/espace-prive", r.text[:500]
        r = browser.get(f"{first.url}/espace-prive")
        assert r.status_code == 200 and "Bonjour" in r.text, r.text[:300]


def test_registration_steps_alternate_between_the_processes(two_servers: tuple[Served, Served, Path]) -> None:
    from guichet.plugins.registry_tables.importer import DEMO_PERSONS

    first, second, config_path = two_servers
    person = DEMO_PERSONS["particulier_vitale"]
    servers = [first, second]
    steps: list[tuple[str, dict[str, str]]] = [
        ("statut", {"status": person.status}),
        ("identifiant", {"identifier": person.nir_with_key}),
        (
            "coordonnees",
            {
                "last_name": person.last_name,
                "first_name": person.first_name,
                "birth_date": person.birth_date.strftime("%d/%m/%Y") if person.birth_date else "",
                "email": person.email,
                "mobile": person.mobile,
            },
        ),
        ("question", {"question": person.question, "answer": person.answer}),
        ("canal", {"channel": "email"}),
    ]
    with httpx.Client(timeout=30) as browser:
        for n, (step, form) in enumerate(steps):
            server = servers[n % 2]
            token = _token(browser.get(f"{server.url}/inscription/{step}"))
            r = browser.post(f"{server.url}/inscription/{step}", data={**form, "csrf_token": token})
            assert r.status_code == 303, f"step {step} on {server.url}: {r.status_code} {r.text[:300]}"
        server = servers[len(steps) % 2]
        token = _token(browser.get(f"{server.url}/inscription/code"))
        code = asyncio.run(_last_code(config_path, "registration_code"))
        r = browser.post(f"{server.url}/inscription/code", data={"code": code, "csrf_token": token})
        assert r.status_code == 303 and r.headers["location"] == "/inscription/termine", r.text[:300]
        r = browser.get(f"{servers[(len(steps) + 1) % 2].url}/inscription/termine")
        assert r.status_code == 200 and "Un mot de passe temporaire vous a été envoyé par e-mail." in r.text


def test_login_failures_on_both_processes_share_one_slow_down(two_servers: tuple[Served, Served, Path]) -> None:
    first, second, _config_path = two_servers
    identifier = "1680764445012"
    with httpx.Client(timeout=30) as browser:
        for n in range(5):  # login_failures_before_delay = 5: three on one process, two on the other
            server = first if n % 2 == 0 else second
            token = _token(browser.get(f"{server.url}/connexion"))
            r = browser.post(
                f"{server.url}/connexion",
                data={"identifier": identifier, "password": f"mauvais-{n}", "csrf_token": token},
            )
            assert r.status_code == 422
        # the right password, at once, on either process: slowed down by the failures counted on both
        for server in (first, second):
            token = _token(browser.get(f"{server.url}/connexion"))
            r = browser.post(
                f"{server.url}/connexion", data={"identifier": identifier, "password": PASSWORD, "csrf_token": token}
            )
            assert r.status_code == 422, f"{server.url} let the login through: the limit is not shared"
        # and the counter is Redis's: another identifier is not slowed
        token = _token(browser.get(f"{second.url}/connexion"))
        r = browser.post(
            f"{second.url}/connexion", data={"identifier": "2920633123045", "password": PASSWORD, "csrf_token": token}
        )
        assert r.status_code == 303
    metrics = httpx.get(f"{first.url}/metrics").text + httpx.get(f"{second.url}/metrics").text
    refused = sum(
        float(line.rpartition(" ")[2])
        for line in metrics.splitlines()
        if line.startswith('guichet_rate_limit_refusals_total{limit="login-id"}')
    )
    assert refused >= 2


def test_after_both_processes_the_invariants_hold(two_servers: tuple[Served, Served, Path]) -> None:
    """Last in the module: the state the two processes left is sound (no worker runs here, so the
    queued messages are still pending: the tests read the codes from the outbox)."""
    _first, _second, config_path = two_servers
    config = load_config(config_path)

    async def check() -> None:
        database = Database.from_config(config)
        await database.connect()
        try:
            t = database.t.Account
            seeded = [
                row["id"]
                for row in await t.select(t.id).where(t.identifier.is_in(["2920633123045", "1680764445012"])).run()
            ]
            counted = await check_invariants(
                database,
                config.caisse.id,
                final_states=("pending",),
                seeded_accounts=seeded,
                expect_audit={
                    "login.succeeded": 1,
                    "registration.completed": 1,
                    "code.succeeded": 2,
                    "login.failed": 5,
                },
            )
            assert counted.accounts == 3, "the two seeded accounts and the one registered across both processes"
        finally:
            await database.close()

    asyncio.run(check())
