"""A cross-site request is refused even with a valid CSRF token: SameSite cookies are not the only
line. Every state-changing request is judged on Sec-Fetch-Site (the browser's own verdict), else on
Origin against the request's host and ``server.public_url``; an old browser that sends neither
still gets through with its token. Generated from the app's route table."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from guichet.core.config import CaisseConfig
from tests.conftest import Portal, portal_config_text
from tests.security.support import (
    PASSWORD,
    concrete_paths,
    expect_event,
    kinds,
    login,
    make_account,
    person,
    route_table,
    snapshot,
    where,
)

POST_PATHS = [p for template, methods in route_table() if "POST" in methods for p in concrete_paths(template)]
CROSS_SITE = [
    pytest.param({"Sec-Fetch-Site": "cross-site", "Origin": "https://attaquant.example"}, id="cross-site"),
    pytest.param({"Sec-Fetch-Site": "same-site", "Origin": "https://autre.msa-exemple.fr"}, id="same-site"),
    pytest.param({"Origin": "https://attaquant.example"}, id="origin-only"),
    pytest.param({"Origin": "null"}, id="origin-null"),
    pytest.param({"Origin": "http://127.0.0.1:8000.attaquant.example"}, id="origin-lookalike"),
]


async def logged_in(portal: Portal) -> dict[str, Any]:
    row = await make_account(portal)
    await login(portal, person().identifier)
    await portal.get("/espace-prive")
    return row


def refused(r: httpx.Response) -> bool:
    page = html.unescape(r.text)
    return r.status_code == 403 and "Requête refusée" in page and "depuis une page de ce site" in page


@pytest.mark.parametrize("path", POST_PATHS)
async def test_every_post_route_refuses_a_cross_site_request_with_a_valid_token(
    portal: Portal, path: str, demo_people: Any
) -> None:
    account_row = await logged_in(portal)
    events = await kinds(portal)
    before = await snapshot(portal)
    form = {
        "identifier": person().identifier,
        "password": PASSWORD,
        "code": "123456",
        "action": "confirmer",
        "status": "particulier",
        "csrf_token": portal.csrf,
    }
    for headers in (
        {"Sec-Fetch-Site": "cross-site", "Origin": "https://attaquant.example"},
        {"Origin": "https://attaquant.example"},
    ):
        for htmx in (False, True):
            extra = {"HX-Request": "true", "X-CSRF-Token": portal.csrf} if htmx else {}
            r = await portal.client.post(path, data=form, headers={**headers, **extra})
            assert refused(r), f"{path} {headers} htmx={htmx}: {r.status_code}"
            assert await snapshot(portal) == before and await kinds(portal) == events, f"{path} changed"
    assert (await portal.get("/espace-prive")).status_code == 200, "still logged in"
    await expect_event(portal, "login.succeeded", account_id=account_row["id"])


@pytest.mark.parametrize("headers", CROSS_SITE)
async def test_a_cross_site_logout_or_login_does_nothing(
    portal: Portal, headers: dict[str, str], demo_people: Any
) -> None:
    account_row = await logged_in(portal)
    r = await portal.post("/deconnexion", {}, headers=headers)
    assert refused(r)
    assert (await portal.get("/espace-prive")).status_code == 200, "a forged logout logged out"
    r = await portal.post("/connexion", {"identifier": person().identifier, "password": PASSWORD}, headers=headers)
    assert refused(r)
    assert (await kinds(portal)).count("login.password_ok") == 1, "a forged login was tried"
    await expect_event(portal, "login.succeeded", account_id=account_row["id"], count=1)


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="an-old-browser"),
        pytest.param({"Sec-Fetch-Site": "same-origin", "Origin": "http://127.0.0.1:8000"}, id="same-origin"),
        pytest.param({"Sec-Fetch-Site": "none"}, id="typed-by-the-person"),
        pytest.param({"Origin": "http://127.0.0.1:8000"}, id="origin-of-the-host"),
        pytest.param({"Origin": "https://127.0.0.1:8000"}, id="origin-of-the-host-behind-tls"),
    ],
)
async def test_this_site_and_old_browsers_pass(portal: Portal, headers: dict[str, str], demo_people: Any) -> None:
    account_row = await logged_in(portal)
    r = await portal.post("/deconnexion", {}, headers=headers)
    assert where(r) == "/?deconnexion=faite", (r.status_code, r.text[:200])
    await expect_event(portal, "logout", account_id=account_row["id"])


async def test_the_public_url_is_this_site_behind_a_proxy(
    portal_factory: Callable[..., Any], make_config: Callable[..., CaisseConfig], db_url: str, demo_people: Any
) -> None:
    """nginx passes Host as it is, but the public address is also accepted as the Origin."""
    config = make_config(
        database_url=db_url,
        base=portal_config_text().replace(
            '[server]\nmode = "demo"', '[server]\nmode = "demo"\npublic_url = "https://monespace.msa-exemple.fr/"', 1
        ),
    )
    portal = await portal_factory(config)
    account_row = await logged_in(portal)
    r = await portal.post("/deconnexion", {}, headers={"Origin": "https://monespace.msa-exemple.fr:8443"})
    assert refused(r), "another port is another origin"
    r = await portal.post("/deconnexion", {}, headers={"Origin": "https://monespace.msa-exemple.fr"})
    assert where(r) == "/?deconnexion=faite"
    await expect_event(portal, "logout", account_id=account_row["id"])


@pytest.mark.parametrize(
    "bad", ["monespace.msa-exemple.fr", "ftp://monespace.msa-exemple.fr", "https://monespace.msa-exemple.fr/espace"]
)
def test_a_public_url_that_is_not_a_site_address_is_a_config_error(
    make_config: Callable[..., CaisseConfig], bad: str
) -> None:
    from guichet.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\$\.server\.public_url"):
        make_config(
            base=portal_config_text().replace(
                '[server]\nmode = "demo"', f'[server]\nmode = "demo"\npublic_url = "{bad}"', 1
            )
        )
