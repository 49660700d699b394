"""The two example distributions (examples/, installed as packages by ``make install-test``) end to end in
Chromium, with and without JavaScript, on SQLite and on PostgreSQL: a real ``guichet serve`` on the demo
caisse with the plugin enabled by name and configured as a caisse would, and nothing else changed.

- guichet-webhook-channel, as the caisse's secure messaging ("messagerie", a channel of its own that
  reaches people by their identifier), chosen for the login and the recovery codes: the person reads
  each code (and the temporary password) where the messaging service receives it, a local HTTP sink;
- guichet-prime-activite, its question offered for the "particulier" status, answered with the amount
  of the last payment in the caisse's export (a CSV of registry facts the plugin reads).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from guichet.testing import HttpSink
from tests.browser.flows import choose_code_channel, confirm_contacts, login_code, login_password, personalise, register
from tests.browser.support import LiveServer, People, Person, PostgresDatabase, new_password, start_server
from tests.conftest import POSTGRES_URL, service_missing

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest) -> Iterator[Callable[[], str | None]]:
    """Gives each server its database URL: None for a SQLite file in its folder, else a PostgreSQL
    database of its own (each server loads the demo registry and hands out its people from the first)."""
    made: list[PostgresDatabase] = []

    def database_url() -> str | None:
        if request.param == "sqlite":
            return None
        if not POSTGRES_URL:
            service_missing("PostgreSQL (GUICHET_TEST_POSTGRES)")
        made.append(PostgresDatabase(POSTGRES_URL))
        return made[-1].url

    yield database_url
    for database in made:
        database.drop()


def serve(workdir: Path, engine: Callable[[], str | None], plugin: str, extra: dict[str, Any]) -> LiveServer:
    server = start_server("demo", workdir, database_url=engine(), plugins=(plugin,), extra=extra)
    server.people = People()  # type: ignore[attr-defined]
    return server


# --- the secure messaging: a channel of its own for the login and the recovery codes ----------------------


@pytest.fixture(scope="module")
def messaging(playwright_browser: Any) -> Iterator[HttpSink]:
    """The secure messaging service's endpoint, which files each message in the inbox of a NIR."""
    with HttpSink() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def messagerie(
    tmp_path_factory: pytest.TempPathFactory, engine: Callable[[], str | None], messaging: HttpSink
) -> Iterator[LiveServer]:
    server = serve(
        tmp_path_factory.mktemp("messagerie"),
        engine,
        "webhook",
        {
            "plugins": {
                "settings": {
                    "webhook": {
                        "url": messaging.url,
                        "secret": {"value": "messagerie-shared-secret-for-tests"},
                        "channel": "messagerie",
                        "label_fr": "dans votre messagerie MSA",
                        "destination_fr": "votre messagerie sécurisée MSA",
                    }
                }
            },
            "codes": {
                "login": {"channels": ["messagerie", "email"]},
                "recovery": {"channels": ["messagerie", "email"]},
            },
        },
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("server", "name", "source", "module"),
    [
        ("messagerie", "webhook", "guichet-webhook-channel 0.1.0", "guichet_webhook.hooks"),
        ("prime", "prime_activite", "guichet-prime-activite 0.1.0", "guichet_prime_activite.hooks"),
    ],
)
def test_the_servers_run_the_examples_as_installed_distributions(
    server: str, name: str, source: str, module: str, engine: Any, request: pytest.FixtureRequest
) -> None:
    """What ``guichet plugins`` says of the config each server runs: the plugin comes from its
    distribution's entry point, as on a caisse's machine after ``pip install``."""
    live: LiveServer = request.getfixturevalue(server)
    shown = subprocess.run(
        [sys.executable, "-m", "guichet.cli", "plugins", "--json", "--config", str(live.config_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    [plugin] = [row for row in json.loads(shown) if row["name"] == name]
    assert plugin["source"] == source and plugin["module"] == module, shown


def received(endpoint: HttpSink, person: Person, template: str, *, after: int, timeout: float = 10.0) -> dict[str, Any]:
    """The message of ``template`` the messaging service received for ``person`` (by NIR) after the
    ``after`` first requests; polls, as the outbox worker delivers on its own."""
    deadline = time.monotonic() + timeout
    while True:
        for request in endpoint.requests[after:]:
            document: dict[str, Any] = json.loads(request.body)
            if document["template"] == template and document["recipient"]["addresses"] == {"identifier": person.nir}:
                return document
        if time.monotonic() > deadline:
            raise AssertionError(f"no {template} for this person reached the secure messaging within {timeout:.0f} s")
        time.sleep(0.1)


def test_login_and_recovery_codes_come_by_the_secure_messaging(
    messagerie: LiveServer, messaging: HttpSink, open_browser: Any, js: bool
) -> None:
    server = messagerie
    person = server.people.take("particulier_vitale")
    b = open_browser(server, js=js)
    page, step = b.page, b.page.locator("#step")

    # registered as everywhere (codes to the address typed, proven); then the login code is the messaging's
    temporary = register(b, person, channel="email", mistakes=False)
    seen = len(messaging.requests)
    mark = login_password(b, person.nir, temporary, state="messagerie-connexion")
    expect(step).to_contain_text("Un code de sécurité vient de vous être envoyé dans votre messagerie MSA")
    expect(step).to_contain_text("votre messagerie sécurisée MSA")
    message = received(messaging, person, "login_code", after=seen)
    assert message["recipient"]["email"] is None and message["recipient"]["mobile"] is None, (
        "the messaging gets the identifier only, never the other addresses"
    )
    b.fill("code", message["payload"]["code"])
    b.click_button("Valider", "messagerie-connexion-code", h1="Changement de votre mot de passe", swap=False)
    assert not [i for i in server.mailbox.items() if i.id not in mark and "code" in i.subject.lower()], (
        "no login code went by email"
    )
    password = new_password(person)
    personalise(b, password, mistakes=False)
    b.act(
        page.get_by_role("link", name="Continuer >"),
        "messagerie-coordonnees",
        h1="Confirmation de vos coordonnées",
        swap=False,
    )
    confirm_contacts(b, person, mistakes=False)
    b.click_button("Se déconnecter", "messagerie-deconnexion", h1="Mon espace privé", swap=False)

    # the forgotten password: the code and the temporary password both by the messaging
    b.goto("/connexion", "messagerie-oubli-connexion", h1="Je me connecte à Mon espace privé")
    b.act(
        page.get_by_role("link", name="> J'ai oublié mon mot de passe"),
        "messagerie-oubli-identifiant",
        h1="Vérification de votre identité",
        swap=False,
    )
    b.fill("identifier", person.nir_with_key)
    b.click_button("Suivant >", "messagerie-oubli-canal", h1="Demande d'un nouveau mot de passe", swap=True)
    choice = page.locator("input[name=channel][value=messagerie]")
    expect(page.locator(f"label[for='{choice.get_attribute('id')}']")).to_contain_text("dans votre messagerie MSA")
    choice.check()
    seen = len(messaging.requests)
    b.click_button("Suivant >", "messagerie-oubli-code", h1="Demande d'un nouveau mot de passe", swap=True)
    expect(step).to_contain_text("dans votre messagerie MSA")
    b.fill("code", received(messaging, person, "recovery_code", after=seen)["payload"]["code"])
    b.click_button("Suivant >", "messagerie-oubli-confirmation", h1="Confirmation", swap=True)
    expect(step).to_contain_text("Un mot de passe temporaire vous a été envoyé dans votre messagerie MSA.")
    temporary = received(messaging, person, "temporary_password", after=seen)["payload"]["password"]

    b.act(
        page.get_by_role("link", name="Accéder à Mon espace privé"),
        "messagerie-connexion-2",
        swap=False,
        h1="Je me connecte à Mon espace privé",
    )
    seen = len(messaging.requests)
    login_password(b, person.nir, temporary, state="messagerie-connexion-temporaire")
    b.fill("code", received(messaging, person, "login_code", after=seen)["payload"]["code"])
    b.click_button("Valider", "messagerie-connexion-code-2", h1="Changement de votre mot de passe", swap=False)
    personalise(b, password[::-1], mistakes=False)
    # seed 002, steps 5-6: after a recovery, the contacts are confirmed before the private space
    b.act(
        page.get_by_role("link", name="Continuer >"),
        "messagerie-coordonnees-2",
        h1="Confirmation de vos coordonnées",
        swap=False,
    )
    confirm_contacts(b, person, mistakes=False)


# --- the last prime d'activité: an identity question of its own, with its registry facts ------------------


@pytest.fixture(scope="module")
def prime(
    tmp_path_factory: pytest.TempPathFactory, engine: Callable[[], str | None], playwright_browser: Any
) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("prime")
    export = workdir / "prime-activite.csv"
    export.write_text("nir;paid_on;amount\n", encoding="utf-8")  # each test adds its person's payments
    server = serve(
        workdir,
        engine,
        "prime_activite",
        {
            "plugins": {"settings": {"prime_activite": {"payments_csv": str(export)}}},
            "statuses": {"particulier": {"questions": ["vitale", "prime_activite", "payment"]}},
        },
    )
    server.export = export  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()


def paid(server: LiveServer, person: Person, *payments: tuple[int, str]) -> None:
    """Add the person's payments (days ago, amount as the export writes it) to the caisse's export."""
    today = dt.date.today()
    with server.export.open("a", encoding="utf-8") as export:  # type: ignore[attr-defined]
        for days, amount in payments:
            export.write(f"{person.nir_with_key};{today - dt.timedelta(days=days)};{amount}\n")


def amount_of(person: Person) -> str:
    """An amount of the person's own, French notation: no two tests answer the same."""
    return f"{100 + int(person.nir[-3:]) % 400},{person.nir[-2:]}"


def check_question_page(b: Any, state: str) -> None:
    """The question page as the plugin words it, placed where the caisse lists it."""
    if state != "inscription-question":
        return
    page = b.page
    kinds = [radio.get_attribute("value") for radio in page.locator("input[name=question]").all()]
    assert kinds[:3] == ["vitale", "prime_activite", "payment"], kinds
    expect(page.locator("#step")).to_contain_text("Le montant de votre dernière prime d'activité")
    expect(page.locator("#step")).to_contain_text("En euros et centimes, par exemple 187,45.")
    b.checked_question_page = True


def test_register_with_the_last_prime_d_activite_then_log_in(prime: LiveServer, open_browser: Any, js: bool) -> None:
    person = prime.people.take("particulier_vitale")
    paid(prime, person, (50, "99,00"), (12, amount_of(person)))
    b = open_browser(prime, js=js)
    b.on_state = check_question_page
    # register() chooses the question, checks that only its field shows, and types the answer
    asking = dataclasses.replace(person, question="prime_activite", answer=amount_of(person))
    temporary = register(b, asking, channel="email", mistakes=False)  # the right amount: the password by email
    assert getattr(b, "checked_question_page", False)
    mark = login_password(b, person.nir, temporary)
    login_code(b, person, mark, next_h1="Changement de votre mot de passe", state="prime-connexion-code")


def test_an_older_payment_is_a_wrong_answer_and_the_password_comes_by_post(
    prime: LiveServer, open_browser: Any, js: bool
) -> None:
    person = prime.people.take("particulier_vitale")
    paid(prime, person, (45, "180,00"), (15, amount_of(person)))
    b = open_browser(prime, js=js)
    asking = dataclasses.replace(person, question="prime_activite")
    temporary = register(b, asking, answer="180,00", mistakes=False)  # reads the letter's temporary password
    login_password(b, person.nir, temporary)
    mark = choose_code_channel(b, "email")
    login_code(b, person, mark, next_h1="Changement de votre mot de passe", state="prime-connexion-courrier")
