"""What one login sends to the database, request by request: a count, never a time.

Each statement is a round trip (on SQLite a hop to the pool's thread): the login's overhead beside
its argon2id hash is mostly these (docs/benchmarks.md, bench/login_trace.py). The budgets below are
what the login needs today; a change that adds a statement to a step fails here and must say why.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from guichet.core.statements import POINT_READ
from tests.conftest import Portal
from tests.flows.helpers import NEW_PASSWORD, activate, logout, portal_with

pytestmark = pytest.mark.asyncio


class Statements:
    """Every query the app's database engine runs, by the table it names first."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def tables(self) -> collections.Counter[str]:
        counts: collections.Counter[str] = collections.Counter()
        for text in self.texts:
            words = text.replace('"', " ").split()
            table = next((w for w in words if w.startswith("guichet_")), "?")
            counts[table] += 1
        return counts


@contextmanager
def counting(portal: Portal) -> Iterator[Statements]:
    """Both ways a statement reaches the engine: piccolo's queries and the compiled statements of
    core/statements.py."""
    engine = portal.services.database.engine
    original = engine.run_querystring
    original_statement = engine.run_statement  # type: ignore[attr-defined]
    seen = Statements()

    async def run_querystring(querystring: Any, *args: Any, **kwargs: Any) -> Any:
        seen.texts.append(str(querystring))
        return await original(querystring, *args, **kwargs)

    async def run_statement(query: str, args: list[Any]) -> Any:
        seen.texts.append(query)
        return await original_statement(query, args)

    engine.run_querystring = run_querystring  # type: ignore[method-assign]
    engine.run_statement = run_statement  # type: ignore[attr-defined]
    try:
        yield seen
    finally:
        del engine.run_querystring
        del engine.run_statement  # type: ignore[attr-defined]


async def htmx_login(portal: Portal, person: Any) -> dict[str, Statements]:
    """The login of a browser running JavaScript; the statements of each request."""
    by_request: dict[str, Statements] = {}
    with counting(portal) as seen:
        await portal.get("/connexion")
    by_request["GET /connexion"] = seen
    with counting(portal) as seen:
        r = await portal.post("/connexion", {"identifier": person.identifier, "password": NEW_PASSWORD}, htmx=True)
    assert r.status_code == 200 and r.headers["hx-push-url"] == "/connexion/code", r.text
    by_request["POST /connexion"] = seen
    code = await portal.last_code("login_code")
    with counting(portal) as seen:
        r = await portal.post("/connexion/code", {"code": code}, htmx=True)
    # Mon espace privé comes in the code step's answer: the login is three requests
    assert r.headers["hx-push-url"] == "/espace-prive" and "Bonjour" in r.text
    by_request["POST /connexion/code"] = seen
    return by_request


# the seeds' login: password, code by email, Mon espace privé (database sessions and counters)
BUDGET = {"GET /connexion": 0, "POST /connexion": 7, "POST /connexion/code": 8}


async def test_a_login_sends_no_more_statements_than_it_needs(portal: Portal, demo_people: Any) -> None:
    person = demo_people.DEMO_PERSONS["particulier_vitale"]
    await activate(portal, person)
    await logout(portal)
    counts = {request: len(seen.texts) for request, seen in (await htmx_login(portal, person)).items()}
    assert all(counts[r] <= BUDGET[r] for r in BUDGET), counts
    # the account is read once a request: the steps judge what the person holds from that row
    statements = await htmx_login(portal, person)
    account_reads = {request: reads_of("guichet_account", seen) for request, seen in statements.items()}
    assert all(len(reads) <= 1 for reads in account_reads.values()), account_reads
    # the password step and the code step each read it (so the filter above does find the reads)
    assert [len(account_reads[r]) for r in ("POST /connexion", "POST /connexion/code")] == [1, 1], account_reads


def reads_of(table: str, seen: Statements) -> list[str]:
    """The SELECTs of ``table``, point reads (their text starts with a comment) included."""
    return [t for t in seen.texts if t.removeprefix(POINT_READ).lstrip().upper().startswith("SELECT") and table in t]


async def test_what_a_person_holds_is_read_once_a_step_whatever_the_plugins(
    portal_factory: Callable[..., Any], make_config: Callable[..., Any], db_url: str, demo_people: Any
) -> None:
    """With three authenticator plugins enabled (the person holds none of them: the codes go on), their
    credentials are one query a step, not one each."""
    site = await portal_with(
        portal_factory,
        make_config,
        db_url,
        plugins=("authenticator_totp", "authenticator_recovery", "authenticator_passkey"),
    )
    person = demo_people.DEMO_PERSONS["particulier_vitale"]
    await activate(site, person)
    await logout(site)
    credential_reads = {
        request: reads_of("guichet_credential", seen) for request, seen in (await htmx_login(site, person)).items()
    }
    assert all(len(reads) <= 1 for reads in credential_reads.values()), credential_reads
    assert any(credential_reads.values()), "the steps judge what the person holds: some step reads it"


async def test_a_passkey_page_reads_what_the_person_holds_once(
    portal_factory: Callable[..., Any], make_config: Callable[..., Any], db_url: str
) -> None:
    """The second step's passkey page: the offers and the passkey's own list from one credential query."""
    from tests.flows.test_passkey import ORIGIN, log_out
    from tests.flows.test_passkey_policy import add_passkey, passkey_portal
    from tests.plugins.softkey import SoftPasskey
    from tests.security.support import PASSWORD, login, make_account, password_step, person

    portal = await passkey_portal(portal_factory, make_config, db_url, "passwordless = true")
    await make_account(portal)
    await login(portal, person().identifier)
    await add_passkey(portal, SoftPasskey(ORIGIN))
    await log_out(portal)
    r = await password_step(portal, person().identifier, PASSWORD)
    assert r.headers["location"] == "/connexion/methode/passkey"
    with counting(portal) as seen:
        page = await portal.get("/connexion/methode/passkey")
    assert page.status_code == 200 and "data-webauthn-options" in page.text
    assert len(reads_of("guichet_credential", seen)) == 1, seen.tables()


async def test_forward_auth_reads_the_session_and_the_account_and_nothing_else(
    portal_factory: Callable[..., Any], make_config: Callable[..., Any], db_url: str, tmp_path: Any, demo_people: Any
) -> None:
    """On every page view of a caisse's services: the subject and the signing key are known after
    the first check (a subject never changes; the active key is read again every 30 s)."""
    from tests.conftest import portal_config_text
    from tests.oidc.support import oidc_extra

    site = await portal_factory(make_config(database_url=db_url, base=portal_config_text(oidc_extra(tmp_path))))
    person = demo_people.DEMO_PERSONS["particulier_vitale"]
    await activate(site, person)
    assert (await site.client.get("/auth/verifier")).status_code == 200
    with counting(site) as seen:
        r = await site.client.get("/auth/verifier")
    assert r.status_code == 200 and r.headers["x-guichet-jeton"]
    assert sorted(seen.tables().elements()) == ["guichet_account", "guichet_session"], seen.texts


async def test_userinfo_reads_the_token_with_its_grant_and_the_account(
    portal_factory: Callable[..., Any], make_config: Callable[..., Any], db_url: str, tmp_path: Any, demo_people: Any
) -> None:
    """On every call of a service: the access token and its grant in one read, then the account."""
    from tests.conftest import portal_config_text
    from tests.oidc.support import authorize_url, exchange, oidc_extra, pkce, query_of

    site = await portal_factory(make_config(database_url=db_url, base=portal_config_text(oidc_extra(tmp_path))))
    person = demo_people.DEMO_PERSONS["particulier_vitale"]
    await activate(site, person)
    verifier, challenge = pkce()
    code = query_of((await site.get(authorize_url(challenge=challenge))).headers["location"])["code"]
    bearer = {"authorization": f"Bearer {(await exchange(site, code, verifier)).json()['access_token']}"}
    assert (await site.client.get("/oidc/userinfo", headers=bearer)).status_code == 200
    with counting(site) as seen:
        r = await site.client.get("/oidc/userinfo", headers=bearer)
    assert r.status_code == 200 and r.json()["family_name"]
    assert len(seen.texts) == 2, seen.texts
    assert sorted(seen.tables().elements()) == ["guichet_account", "guichet_oidc_token"]
    assert "JOIN" in seen.texts[0] and "guichet_oidc_grant" in seen.texts[0]  # the token with its grant
