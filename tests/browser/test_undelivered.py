"""A login code refused by the mail server (550) in a real browser: the code page says so on its
next load, and the code comes by SMS instead.

The server is the demo config with its email going to a real aiosmtpd server that refuses every
recipient; its SMS go to the demo mailbox, read the way a person reads their phone.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import tomllib
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from guichet.testing import SmtpSink
from tests.browser.flows import login_password
from tests.browser.support import (
    CONFIG_DIR,
    LiveServer,
    People,
    Person,
    code_in,
    derive_config,
    new_password,
    toml_dumps,
)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def refusing_server(tmp_path_factory: pytest.TempPathFactory, playwright_browser: Any) -> Iterator[LiveServer]:
    with SmtpSink(rcpt_reply="550 5.1.1 <destinataire> : adresse inconnue") as sink:
        workdir = tmp_path_factory.mktemp("refusing")
        path = derive_config(CONFIG_DIR / "demo.toml", workdir)
        table = tomllib.loads(path.read_text(encoding="utf-8"))
        table["plugins"]["settings"]["delivery_email"].update(port=sink.port)
        path.write_text(toml_dumps(table), encoding="utf-8")
        server = LiveServer(config_path=path, workdir=workdir).start()
        server.people = People()  # type: ignore[attr-defined]
        try:
            yield server
        finally:
            server.stop()


def account_with_both_contacts_proven(server: LiveServer) -> tuple[Person, str]:
    """An account made straight in the server's database: its email and mobile both verified."""
    from guichet.core.config import load_config
    from guichet.core.database import Database
    from guichet.core.identifiers import parse_mobile
    from guichet.core.passwords import Passwords

    person = server.people.take("particulier_vitale")  # type: ignore[attr-defined]
    password = new_password(person)
    config = load_config(server.config_path)

    async def make() -> None:
        database = Database.from_config(config)
        await database.connect()
        hasher = Passwords(config.passwords.argon2, host=None)  # type: ignore[arg-type]
        try:
            now = dt.datetime.now(dt.UTC)
            t = database.t.Account
            await t.insert(
                t(
                    identifier_kind="nir",
                    identifier=person.nir,
                    status="particulier",
                    last_name=person.last_name,
                    first_name=person.first_name,
                    email=person.email,
                    email_verified=True,
                    mobile=parse_mobile(person.mobile),
                    mobile_verified=True,
                    password_hash=await hasher.hash(password),
                    password_is_temporary=False,
                    password_changed_at=now,
                    contacts_confirmed_at=now,
                    credentials_version=1,
                    created_at=now,
                )
            ).run()
        finally:
            hasher.close()
            await database.close()

    with concurrent.futures.ThreadPoolExecutor(1) as thread:  # Playwright's own loop runs in this one
        thread.submit(asyncio.run, make()).result()
    return person, password


def test_a_login_code_the_mail_server_refuses_is_told_and_comes_by_sms(
    refusing_server: LiveServer, open_browser: Any, js: bool
) -> None:
    person, password = account_with_both_contacts_proven(refusing_server)
    b = open_browser(refusing_server, js=js)
    page = b.page
    login_password(b, person.nir, password)
    masked = f"{person.email[0]}…{person.email.split('@')[0][-1]}@{person.email.split('@')[1]}"
    box = page.locator(".undelivered")
    # the worker inside the server tries the email, and the server refuses it: a reload shows it
    for _ in range(100):
        page.goto(refusing_server.url + "/connexion/code")
        if box.count():
            break
        page.wait_for_timeout(100)
    b.goto("/connexion/code", "connexion-code-non-remis", h1="Authentification à 2 facteurs")
    expect(box).to_contain_text(f"Le message n'a pas pu être remis à l'adresse {masked}.")
    expect(box).to_have_attribute("role", "alert")
    expect(page.locator("#step")).not_to_contain_text("vient de vous être envoyé")
    mark = b.mailbox_mark()
    b.click_button(
        f"Recevoir le code par SMS au {person.mobile_display[:2]} xx xx xx {person.mobile_display[-2:]}",
        "connexion-code-par-sms",
        h1="Authentification à 2 facteurs",
        swap=True,
    )
    expect(page.locator(".notice")).to_have_text("Un nouveau code de sécurité vient de vous être envoyé par SMS.")
    expect(box).to_have_count(0)
    expect(page.locator("#step")).to_contain_text("Un code de sécurité vient de vous être envoyé par SMS au :")
    sms = refusing_server.mailbox.sms_to(person.mobile, contains="code", after=mark)
    b.fill("code", code_in(sms.text))
    b.click_button("Valider", "espace-prive", h1="Mon espace privé", swap="body")
    expect(page.locator("#step")).to_contain_text(f"Bonjour {person.first_name} {person.last_name}")
