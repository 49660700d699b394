"""Passkeys over HTTP (plain form POSTs, as without htmx), with the software passkey of
tests/plugins/softkey.py, on SQLite and PostgreSQL: each page hands the browser its options, each answer
is judged by the plugin through core, and every step is audited (``authenticator.*``)."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from guichet.plugins.authenticator_passkey import passkey as messages
from tests.conftest import Portal, error_messages, portal_config_text
from tests.plugins.softkey import SoftPasskey
from tests.security.support import PASSWORD, audit_rows, login, make_account, password_step, person

pytestmark = pytest.mark.asyncio
ORIGIN = "http://localhost:8000"  # neither public_url nor origins: the RP ID is localhost, on any port


async def log_out(portal: Portal) -> None:
    await portal.get("/espace-prive")  # the page's own CSRF token, as a browser sends it
    r = await portal.post("/deconnexion", {})
    assert r.status_code == 303, r.status_code


def errors(response: Any) -> list[str]:
    return [html.unescape(m) for m in error_messages(response)]


def options_of(page: str) -> dict[str, Any]:
    found = re.search(r'data-webauthn-options="([^"]*)"', page)
    assert found, "no passkey form on the page"
    return dict(json.loads(html.unescape(found.group(1))))


async def test_a_passkey_over_http_every_step_audited(
    portal_factory: Callable[..., Any], make_config: Callable[..., Any], db_url: str
) -> None:
    base = portal_config_text("\n[authentication]\npasswordless = true\n").replace(
        '"password_msa"]', '"password_msa", "authenticator_passkey"]'
    )
    portal: Portal = await portal_factory(make_config(database_url=db_url, base=base))
    account = await make_account(portal)
    await login(portal, person().identifier)
    key = SoftPasskey(ORIGIN)

    r = await portal.get("/mon-compte/securite/passkey/ajouter")
    assert r.status_code == 303 and r.headers["location"].startswith("/mon-compte/securite/confirmer")
    await portal.get(r.headers["location"])
    r = await portal.post(
        "/mon-compte/securite/confirmer",
        {"current_password": PASSWORD, "suite": "/mon-compte/securite/passkey/ajouter"},
    )
    assert r.status_code == 303
    page = await portal.get("/mon-compte/securite/passkey/ajouter")
    r = await portal.post(  # the phone did not check who holds it
        "/mon-compte/securite/passkey/ajouter", {"credential": key.create(options_of(page.text), verified=False)}
    )
    assert r.status_code == 422 and messages.NOT_CREATED in errors(r)
    r = await portal.post(
        "/mon-compte/securite/passkey/ajouter", {"credential": key.create(options_of(r.text)), "label": "Mon téléphone"}
    )
    assert r.status_code == 200 and "Mon téléphone" in r.text, error_messages(r)
    await log_out(portal)

    # the second factor: the password step leads to the passkey, which completes the login
    r = await password_step(portal, person().identifier, PASSWORD)
    assert r.status_code == 303 and r.headers["location"] == "/connexion/methode/passkey"
    page = await portal.get("/connexion/methode/passkey")
    r = await portal.post("/connexion/methode/passkey", {"credential": key.get(options_of(page.text))})
    assert r.status_code == 303 and r.headers["location"] == "/espace-prive", error_messages(r)
    await log_out(portal)

    # the whole login: a clone refused, then the real one
    page = await portal.get("/connexion/sans-mot-de-passe/passkey")
    r = await portal.post(
        "/connexion/sans-mot-de-passe/passkey", {"credential": key.get(options_of(page.text), counter=1)}
    )
    assert r.status_code == 422 and messages.CLONED in errors(r)
    r = await portal.post("/connexion/sans-mot-de-passe/passkey", {"credential": key.get(options_of(r.text))})
    assert r.status_code == 303 and r.headers["location"] == "/espace-prive", error_messages(r)

    # removed after the password again
    [stored] = await portal.services.host.credentials.of_account(account["id"], "passkey")
    await portal.get("/mon-compte/securite/confirmer")
    await portal.post("/mon-compte/securite/confirmer", {"current_password": PASSWORD, "suite": "/mon-compte/securite"})
    r = await portal.post(f"/mon-compte/securite/passkey/{stored.id}/supprimer", {})
    assert r.status_code == 200 and "suppression enregistrée" in r.text
    assert await portal.services.host.credentials.of_account(account["id"], "passkey") == []

    kinds = [
        (row["kind"], row["details"].get("reason"))
        for row in await audit_rows(portal)
        if row["kind"].startswith("authenticator.")
    ]
    assert kinds == [
        ("authenticator.enrolment_failed", "wrong"),
        ("authenticator.enrolled", None),
        ("authenticator.verified", None),
        ("authenticator.failed", "cloned"),  # the clone is told apart in the audit
        ("authenticator.verified", None),
        ("authenticator.removed", None),
    ]
