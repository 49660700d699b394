"""Registration in a real browser, on every shipped config, with and without JavaScript; every state checked."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.flows import choose_code_channel, login_code, login_password, register
from tests.browser.support import LiveServer

pytestmark = pytest.mark.browser


def test_particulier_with_vitale_by_email(caisse_server: LiveServer, open_browser: Any, js: bool) -> None:
    person = caisse_server.people.take("particulier_vitale")
    b = open_browser(caisse_server, js=js)
    password = register(b, person, channel="email")
    assert len(password) >= 12
    # the temporary password works: the login asks for the code
    mark = login_password(b, person.nir, password)
    login_code(b, person, mark, next_h1="Changement de votre mot de passe")


def test_particulier_with_a_wrong_amount_gets_a_letter(caisse_server: LiveServer, open_browser: Any, js: bool) -> None:
    person = caisse_server.people.take("particulier_paiement")
    b = open_browser(caisse_server, js=js)
    password = register(b, person, answer="999,99", mistakes=False)
    login_password(b, person.nir_with_key, password)
    # the password came by post: no contact is proven yet, the person picks where the code goes
    mark = choose_code_channel(b, "email")
    login_code(b, person, mark, next_h1="Changement de votre mot de passe")


def test_exploitant_with_an_invoice_amount_by_sms(caisse_server: LiveServer, open_browser: Any, js: bool) -> None:
    person = caisse_server.people.take("exploitant")
    b = open_browser(caisse_server, js=js)
    password = register(b, person, channel="sms", mistakes=False)
    assert len(password) >= 12
