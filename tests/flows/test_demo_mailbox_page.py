"""The demo mailbox page: what every channel delivered, through the real plugins and local sinks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from guichet.core.config import CaisseConfig
from guichet.core.outbox_worker import OutboxWorker
from tests.conftest import Portal, portal_config_text
from tests.flows.helpers import register

pytestmark = pytest.mark.asyncio

MAILBOX_CONFIG = """
[demo]
mailbox = true
mailbox_dir = "mailbox"
"""


async def deliver_all(portal: Portal) -> None:
    services = portal.services
    worker = OutboxWorker(services.database, services.keys, services.host, services.clock, worker_id="test")
    while await worker.run_once():
        pass


async def test_mailbox_lists_emails_and_letters(
    make_config: Callable[..., CaisseConfig], db_url: str, portal_factory: Callable[..., Any], demo_people: Any
) -> None:
    text = (
        portal_config_text()
        .replace("port = 2525", "port = 0")
        .replace('url = "http://127.0.0.1:9/sms"', 'url = "demo"')
    )
    portal = await portal_factory(make_config(database_url=db_url, base=text + MAILBOX_CONFIG))
    from guichet.plugins.registry_tables import importer as registry_import

    await registry_import.generate_demo_registry(portal.services.database, count=0, seed=1)
    person = registry_import.DEMO_PERSONS["particulier_vitale"]
    await register(portal, person, channel="email")
    await deliver_all(portal)
    page = await portal.get("/demo/boite-aux-lettres")
    assert page.status_code == 200
    assert person.email in page.text and "mot de passe temporaire" in page.text
    email_id = page.text.split('href="/demo/emails/')[1].split('"')[0]
    rendered = await portal.get(f"/demo/emails/{email_id}")
    assert rendered.headers["content-type"] == "text/html; charset=utf-8"
    assert rendered.status_code == 200 and "<html" in rendered.text.lower()
    assert rendered.headers["content-security-policy"].startswith("sandbox")
    assert "/demo/lettres/letter-" in page.text  # the confirmation letter
    letter = page.text.split('href="/demo/lettres/')[1].split('"')[0]
    pdf = await portal.get(f"/demo/lettres/{letter}")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert (await portal.get("/demo/lettres/..%2Fguichet.sqlite")).status_code == 404


async def test_mailbox_does_not_exist_without_the_demo(portal: Portal) -> None:
    assert (await portal.get("/demo/boite-aux-lettres")).status_code == 404
    assert (await portal.get("/demo/lettres/letter-1.pdf")).status_code == 404
    assert (await portal.get("/demo/emails/x.eml")).status_code == 404
