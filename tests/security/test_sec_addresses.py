"""Client addresses: trusted proxies as networks, never as strings that silently match nothing, and
IPv6 clients limited per /64 (a whole /64 is one subscriber or host), with the full address kept in
the audit trail."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from guichet.core.addresses import AddressSet, client_subject
from guichet.core.config import CaisseConfig
from guichet.core.errors import ConfigError
from tests.conftest import Portal, portal_config_text
from tests.security.support import (
    PASSWORD,
    UNKNOWN_NIR,
    audit_rows,
    expect_event,
    make_account,
    password_step,
    person,
    where,
)

WRONG = "Pas-Le-Bon-1!"


def config_with(make_config: Callable[..., CaisseConfig], db_url: str, trusted: list[str]) -> CaisseConfig:
    security = f"trusted_proxies = {json.dumps(trusted)}\nper_client_attempts_per_hour = 10\n"
    return make_config(
        database_url=db_url, base=portal_config_text().replace("[security]\n", "[security]\n" + security, 1)
    )


def browser_at(portal: Portal, address: str) -> Portal:
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=portal.app, client=(address, 40000)),
        base_url="http://127.0.0.1:8000",
        follow_redirects=False,
    )
    return Portal(portal.app, client)


@pytest.mark.parametrize("bad", ["not-an-address", "10.0.0.0/33", "203.0.113.7:8080", "2001:db8::/129", ""])
def test_a_trusted_proxy_that_is_not_an_address_or_network_is_refused(
    make_config: Callable[..., CaisseConfig], bad: str
) -> None:
    trusted = json.dumps(["127.0.0.1", bad])
    with pytest.raises(ConfigError, match=r"\$\.security\.trusted_proxies\[1\]") as refused:
        make_config(base=portal_config_text().replace("[security]\n", f"[security]\ntrusted_proxies = {trusted}\n", 1))
    assert "not an address or a network" in str(refused.value)


def test_addresses_and_networks_are_matched_as_addresses() -> None:
    trusted = AddressSet(["10.0.0.0/8", "::1", "2001:db8:aa::/48", "192.0.2.10"])
    assert "10.200.3.4" in trusted and "::ffff:10.1.1.1" in trusted and "::1" in trusted
    assert "2001:db8:aa:ffff::1" in trusted and "192.0.2.10" in trusted
    assert "11.0.0.1" not in trusted and "2001:db8:ab::1" not in trusted and "10.0.0.0/8" not in trusted
    assert "garbage" not in trusted and "" not in trusted


def test_the_subject_of_an_ipv6_client_is_its_64() -> None:
    assert (
        client_subject("2001:db8:1:2:aaaa:bbbb:cccc:dddd") == client_subject("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    )
    assert client_subject("2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert client_subject("203.0.113.7") == "203.0.113.7" and client_subject("::ffff:203.0.113.7") == "203.0.113.7"
    assert client_subject("-") == "-"


async def test_a_proxy_listed_as_a_network_is_trusted(
    portal_factory: Callable[..., Any], make_config: Callable[..., CaisseConfig], db_url: str, demo_people: Any
) -> None:
    portal = await portal_factory(config_with(make_config, db_url, ["203.0.113.0/24"]))  # the peer is .7
    account_row = await make_account(portal)
    r = await password_step(portal, person().identifier, PASSWORD, headers={"X-Forwarded-For": "198.51.100.20"})
    assert where(r) == "/connexion/code"
    row = await expect_event(portal, "login.password_ok", account_id=account_row["id"])
    assert row["client"] == "198.51.100.20", "the network did not match the proxy's address"


@pytest.mark.parametrize("through_proxy", [False, True])
async def test_ipv6_clients_of_one_64_share_one_budget(
    portal_factory: Callable[..., Any],
    make_config: Callable[..., CaisseConfig],
    db_url: str,
    through_proxy: bool,
    demo_people: Any,
) -> None:
    portal = await portal_factory(config_with(make_config, db_url, ["203.0.113.0/24"]))
    account_row = await make_account(portal)

    async def attempt(address: str, password: str, identifier: str = UNKNOWN_NIR) -> httpx.Response:
        if through_proxy:
            return await password_step(portal, identifier, password, headers={"X-Forwarded-For": address})
        browser = browser_at(portal, address)
        async with browser.client:
            return await password_step(browser, identifier, password)

    # per_client_attempts_per_hour = 10: the client is slowed after 10 // 3 failures
    for n in range(1, 5):  # a fresh /128 each time, all in 2001:db8:1:2::/64
        r = await attempt(f"2001:db8:1:2::{n:x}", WRONG)
        assert r.status_code == 422
    r = await attempt("2001:db8:1:2:ffff::99", PASSWORD, person().identifier)
    assert r.status_code == 422, "a fresh address in the same /64 got a fresh per-client budget"
    r = await attempt("2001:db8:1:3::1", PASSWORD, person().identifier)
    assert where(r) == "/connexion/code", "another /64 is another client"
    clients = {row["client"] for row in await audit_rows(portal, "login.failed")}
    assert "2001:db8:1:2::1" in clients and "2001:db8:1:2:ffff::99" in clients, "the audit keeps the full address"
    await expect_event(portal, "login.password_ok", account_id=account_row["id"])
