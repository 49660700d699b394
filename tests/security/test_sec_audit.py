"""Audit: every kind of security event in core.events.EVENT_KINDS is stored and handed to the
guichet_event observers, with the NIR masked and no secret in any event, page, header or URL;
``guichet audit tail`` prints them."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from guichet.cli import main as guichet
from guichet.core import hookimpl
from guichet.core.events import EVENT_KINDS
from guichet.core.flows.common import SLOW_DOWN
from guichet.core.identifiers import nir_key
from guichet.core.ratelimit import RedisCounters
from guichet.core.structs import AuditEvent
from guichet.core.third_party import approve_request, reject_request
from tests.conftest import Portal, free_port, portal_config_text
from tests.security.support import (
    PASSWORD,
    SECRETS,
    UNKNOWN_NIR,
    assert_audit_clean,
    audit_rows,
    find_leaks,
    kinds,
    login,
    make_account,
    messages,
    password_step,
    person,
    register,
    remember,
    set_cookie,
    where,
)

pytestmark = pytest.mark.asyncio
MASKED = re.compile(r"^([0-9]{3}\*+[0-9A-Z]{3})?$")


class Observer:
    """A guichet_event plugin, as an audit shipper or a SIEM connector would be."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    @hookimpl
    def guichet_event(self, event: AuditEvent) -> None:
        self.events.append(event)


class Recorder:
    """Every answer a browser receives, to look for secrets in pages, headers and redirects."""

    def __init__(self) -> None:
        self.answers: list[tuple[str, str, str]] = []

    def attach(self, portal: Portal) -> Portal:
        async def keep(response: httpx.Response) -> None:
            await response.aread()
            headers = " ".join(f"{k}: {v}" for k, v in response.headers.items() if k.lower() != "set-cookie")
            self.answers.append((str(response.request.url), headers, response.text))

        portal.client.event_hooks["response"].append(keep)
        return portal


async def test_every_event_kind_is_stored_and_observed_without_secrets(
    portal_factory: Callable[..., Any], make_config: Callable[..., Any], db_url: str, clock: Any, tmp_path: Path
) -> None:
    config = make_config(
        database_url=db_url, base=portal_config_text().replace("[security]\n", "[security]\nsms_per_hour = 1\n", 1)
    )
    recorder = Recorder()
    portal = recorder.attach(await portal_factory(config))
    observer = Observer()
    portal.services.host.pm.register(observer)

    async def browser() -> Portal:
        return recorder.attach(await portal_factory(config))

    from guichet.plugins.registry_tables import importer as registry_import

    await registry_import.generate_demo_registry(portal.services.database, count=0, seed=1)
    who = person("particulier_vitale")
    # registration: completed, then a duplicate, an unknown identifier, a third party's request
    await register(portal, who)
    await register(await browser(), who, answer="0000000000")
    stranger = person("particulier_paiement")
    await register(await browser(), stranger, answer="999,99", identifier=UNKNOWN_NIR + nir_key(UNKNOWN_NIR))
    other = await browser()
    await other.get("/inscription/statut")
    await other.post("/inscription/statut", {"status": "autre"})
    await other.post("/inscription/structure", {"structure": "tiers_declarant"})
    r = await other.post(
        "/inscription/demande",
        {
            "structure_name": "Cabinet Comptable",
            "siret": "84216730600021",
            "contact_name": "Marie Martin",
            "email": "cabinet@demo.invalid",
            "phone": "",
            "address_street": "1 rue Haute",
            "postal_code": "64000",
            "city": "Pau",
        },
    )
    assert where(r) == "/inscription/demande-envoyee", messages(r)
    [request] = await portal.services.database.t.ThirdPartyRequest.select().run()
    assert (await approve_request(portal.services, request["id"], note="Kbis reçu")).done
    await other.post("/inscription/abandon", {})
    await other.post("/inscription/statut", {"status": "autre"})
    await other.post("/inscription/structure", {"structure": "tiers_declarant"})
    await other.post(
        "/inscription/demande",
        {
            "structure_name": "Cabinet Comptable",
            "siret": "84216730600021",
            "contact_name": "Marie Martin",
            "email": "cabinet@demo.invalid",
            "phone": "",
            "address_street": "1 rue Haute",
            "postal_code": "64000",
            "city": "Pau",
        },
    )
    rows = await portal.services.database.t.ThirdPartyRequest.select().run()
    assert (await reject_request(portal.services, rows[-1]["id"], reason="Pièces manquantes")).done
    # first login: wrong codes until the code is locked, a resend, an expired code, then the right one
    [temporary] = await portal.outbox("temporary_password")
    r = await password_step(portal, who.identifier, temporary["payload"]["password"])
    await portal.get("/connexion/code")
    for guess in ("000000", "111111", "222222"):
        await portal.post("/connexion/code", {"code": guess})
    clock.advance(seconds=61)
    await portal.post("/connexion/code", {"action": "renvoyer"})
    clock.advance(minutes=11)
    await portal.post("/connexion/code", {"code": await portal.last_code("login_code")})
    await portal.post("/connexion/code", {"action": "renvoyer"})
    clock.advance(seconds=10)  # past the pause that four failures brought
    r = await portal.post("/connexion/code", {"code": await portal.last_code("login_code"), "trust": "oui"})
    assert where(r) == "/changement-mot-de-passe", messages(r)
    # personalisation, contact confirmation, a new email and a new mobile, each with its code
    await portal.get("/changement-mot-de-passe")
    await portal.post("/changement-mot-de-passe", {"new_password": PASSWORD, "confirm_password": PASSWORD})
    await portal.get("/confirmation-coordonnees")
    await portal.post("/confirmation-coordonnees", {"action": "confirmer"})
    await portal.get("/mon-compte/email")
    await portal.post("/mon-compte/email", {"current_password": PASSWORD, "value": "julien.nouveau@demo.invalid"})
    r = await portal.post("/mon-compte/email", {"action": "code", "code": await portal.last_code("contact_code")})
    assert "Votre adresse email a été modifiée." in r.text
    await portal.get("/mon-compte/coordonnees")
    await portal.post(
        "/mon-compte/coordonnees",
        {"action": "modifier", "field": "mobile", "value": "06 12 34 56 78", "current_password": PASSWORD},
    )
    r = await portal.post("/mon-compte/coordonnees", {"action": "code", "code": await portal.last_code("contact_code")})
    assert r.status_code == 200, messages(r)
    # a browser trusted (the first one went with the password change), used, then revoked; a failed login
    await portal.post("/deconnexion", {})
    await login(portal, who.identifier, PASSWORD, trust=True)
    await portal.get("/espace-prive")
    await portal.post("/deconnexion", {})
    r = await password_step(portal, who.identifier, PASSWORD)
    assert where(r) == "/espace-prive"
    await portal.get("/mon-compte")
    t = portal.services.database.t.TrustedBrowser
    [trusted] = await t.select().where(t.revoked_at.is_null()).run()
    await portal.post(f"/mon-compte/navigateurs/{trusted['id']}/revoquer", {})
    await portal.post("/deconnexion", {})
    await password_step(portal, who.identifier, "Pas-Le-Bon-1!")
    # recovery: the SMS budget is spent (the attempt to text the mobile's code), so by email; then a reset
    await portal.services.outbox_worker("audit").drain()
    sms = await browser()
    await sms.post("/mot-de-passe-oublie/identifiant", {"identifier": who.identifier})
    r = await sms.post("/mot-de-passe-oublie/canal", {"channel": "sms"})
    assert r.status_code == 503  # the budget is spent: "momentanément indisponible"
    mail = await browser()
    await mail.post("/mot-de-passe-oublie/identifiant", {"identifier": who.identifier})
    await mail.post("/mot-de-passe-oublie/canal", {"channel": "email"})
    r = await mail.post("/mot-de-passe-oublie/code", {"code": await portal.last_code("recovery_code")})
    assert where(r) == "/mot-de-passe-oublie/confirmation", messages(r)
    # a limit reached (recoveries of one identifier), and a session that times out
    for _ in range(portal.services.limits.recovery_identifier.max_count + 1):
        flood = await browser()
        await flood.post("/mot-de-passe-oublie/identifiant", {"identifier": UNKNOWN_NIR})
        await flood.post("/mot-de-passe-oublie/canal", {"channel": "email"})
    idle = await browser()
    await make_account(idle, "exploitant")
    await login(idle, person("exploitant").identifier)
    clock.advance(minutes=portal.services.config.sessions.idle_minutes + 1)
    await idle.get("/espace-prive")
    # Mes données: the JSON file downloaded, then the online account closed (the password again)
    closer = await browser()
    await login(closer, person("exploitant").identifier)
    await closer.get("/mon-compte/mes-donnees.json")
    await closer.get("/mon-compte/fermeture")
    r = await closer.post("/mon-compte/fermeture", {"current_password": PASSWORD})
    assert where(r) == "/espace-ferme", messages(r)
    # a logout the session store cannot take (sessions in a Redis that does not answer): logout.failed
    down_config = make_config(
        database_url=db_url,
        base=portal_config_text(f'\n[redis]\nurl = "redis://127.0.0.1:{free_port()}/0"\n').replace(
            "[sessions]\n", '[sessions]\nstore = "redis"\n', 1
        ),
    )
    down = recorder.attach(await portal_factory(down_config))
    down.services.host.pm.register(observer)
    await down.get("/")
    set_cookie(down, "session", "a-session-in-the-store-that-is-down-0123456789")
    r = await down.post("/deconnexion", {})
    assert r.status_code == 503
    # a login refused while the counter store is down: a Redis that nobody listens for
    limiter = portal.services.limiter
    working, limiter.store = limiter.store, RedisCounters(f"redis://127.0.0.1:{free_port()}/0", "down")
    try:
        r = await password_step(await browser(), who.identifier, PASSWORD)
        assert r.status_code == 503  # an outage, not bad input
    finally:
        await limiter.store.close()
        limiter.store = working

    rows = await audit_rows(portal)
    stored = {row["kind"] for row in rows}
    observed = {event.kind for event in observer.events}
    # the provider's events need a caisse with services: tests/oidc proves those; the authenticators' ones
    # need authenticator plugins: tests/flows/test_authenticators.py, tests/flows/test_passkey.py and
    # tests/plugins/test_authenticator_*.py
    expected = {kind for kind in EVENT_KINDS if not kind.startswith(("oidc.", "authenticator."))}
    assert stored == expected, f"never stored: {sorted(expected - stored)}"
    assert observed == stored, f"stored but not observed: {sorted(stored - observed)}"
    assert [(r["kind"], r["account_id"], r["subject"]) for r in rows] == [
        (e.kind, e.account_id, e.subject) for e in observer.events
    ], "observers saw other events than stored"
    for row in rows:
        assert MASKED.match(row["subject"]), f"{row['kind']}: unmasked subject {row['subject']!r}"
    await assert_audit_clean(portal)
    # no code, password or token in a page, a header or a URL (the typed NIR is the person's own input)
    nirs = {p for p in SECRETS if p.isdigit() and len(p) >= 13}
    leaks = find_leaks(
        [(url, 0, f"{url}\n{headers}\n{body}") for url, headers, body in recorder.answers], SECRETS - nirs
    )
    assert not leaks, "secrets in answers:\n" + "\n".join(leaks)
    assert not find_leaks([(url, 0, url) for url, _, _ in recorder.answers], SECRETS), "a secret in a URL"

    # guichet audit tail prints them, masked
    config_file = tmp_path / "caisse.toml"
    config_file.write_text(portal_config_text() + f'\n[database]\nurl = "{db_url}"\n')
    out = io.StringIO()

    def tail(*extra: str) -> int:
        with contextlib.redirect_stdout(out):
            return guichet(["audit", "tail", "--config", str(config_file), "-n", "500", *extra])

    assert await asyncio.to_thread(tail) == 0
    printed = out.getvalue().splitlines()
    assert printed[0].split() == ["At", "(UTC)", "Event", "Account", "Subject", "Client", "Details"]
    assert len(printed) == len(rows) + 1  # a table: the headers, then one line per event
    assert {line.split()[2] for line in printed[1:]} == stored
    assert not find_leaks([("tail", 0, line) for line in printed], SECRETS)
    assert any("185*******084" in line for line in printed)
    out.seek(0)
    out.truncate()
    assert await asyncio.to_thread(tail, "--json") == 0
    listed = json.loads(out.getvalue())
    assert len(listed) == len(rows) and {row["kind"] for row in listed} == stored
    assert any(row["subject"] == "185*******084" for row in listed)
    assert not find_leaks([("tail --json", 0, out.getvalue())], SECRETS)


async def test_an_observer_that_fails_does_not_stop_the_login(portal: Portal) -> None:
    class Broken:
        @hookimpl
        def guichet_event(self, event: AuditEvent) -> None:
            raise RuntimeError(f"observer down {event.kind}")

    portal.services.host.pm.register(Broken())
    account_row = await make_account(portal)
    await login(portal, person().identifier)
    kinds_stored = [r["kind"] for r in await audit_rows(portal)]
    assert kinds_stored == ["login.password_ok", "code.sent", "code.succeeded", "login.succeeded"]
    assert (await audit_rows(portal, "login.succeeded"))[0]["account_id"] == account_row["id"]
    remember(person().identifier)


async def test_an_unknown_event_kind_is_refused(portal: Portal) -> None:
    with pytest.raises(ValueError):
        await portal.services.audit("login.maybe")
    assert await audit_rows(portal) == []


async def test_code_events_carry_the_client_address(
    portal: Portal, portal_factory: Callable[..., Any], clock: Any
) -> None:
    account_row = await make_account(portal)
    await password_step(portal, person().identifier, PASSWORD)
    await portal.get("/connexion/code")
    for guess in ("000000", "111111", "222222"):
        await portal.post("/connexion/code", {"code": guess})
    clock.advance(seconds=61)
    await portal.post("/connexion/code", {"action": "renvoyer"})
    clock.advance(minutes=11)
    await portal.post("/connexion/code", {"code": await portal.last_code("login_code")})
    clock.advance(seconds=10)
    await portal.post("/connexion/code", {"action": "renvoyer"})
    r = await portal.post("/connexion/code", {"code": await portal.last_code("login_code")})
    assert where(r) == "/espace-prive", messages(r)
    recovering = await portal_factory(portal.services.config)
    await recovering.post("/mot-de-passe-oublie/identifiant", {"identifier": person().identifier})
    await recovering.post("/mot-de-passe-oublie/canal", {"channel": "email"})
    clock.advance(seconds=61)
    await recovering.post("/mot-de-passe-oublie/code", {"action": "renvoyer"})
    rows = [row for row in await audit_rows(portal) if row["kind"].startswith("code.")]
    assert {row["kind"] for row in rows} == {
        "code.sent",
        "code.failed",
        "code.locked",
        "code.expired",
        "code.succeeded",
    }
    assert {(row["kind"], row["client"]) for row in rows} == {(row["kind"], "203.0.113.7") for row in rows}, (
        "a code event without the client address"
    )
    assert sum(row["kind"] == "code.sent" and row["details"]["purpose"] == "recovery" for row in rows) == 2
    assert any(row["account_id"] == account_row["id"] for row in rows)


async def test_every_right_password_is_audited_once_whether_or_not_a_code_goes_out(portal: Portal, clock: Any) -> None:
    """``login.password_ok`` is stored with the code the step sends (one statement, one moment), and
    on its own when no code can go out (the day's sends used up): never lost, never twice."""
    await make_account(portal)
    await password_step(portal, person().identifier, PASSWORD)
    [right] = await audit_rows(portal, "login.password_ok")
    [sent] = await audit_rows(portal, "code.sent")
    assert sent["id"] == right["id"] + 1
    await portal.get("/connexion/code")
    for _ in range(portal.services.limits.code_sends.max_count - 1):
        clock.advance(seconds=61)
        assert (await portal.post("/connexion/code", {"action": "renvoyer"})).status_code == 200
    clock.advance(seconds=61)
    r = await password_step(portal, person().identifier, PASSWORD)  # a new login: its code is refused
    assert SLOW_DOWN in messages(r)
    assert len(await audit_rows(portal, "login.password_ok")) == 2
    assert len(await audit_rows(portal, "code.sent")) == portal.services.limits.code_sends.max_count
    assert "login.succeeded" not in await kinds(portal)


async def test_a_right_password_stays_on_record_when_the_step_fails_after_it(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store that fails once the password is proven (what the person holds cannot be read): the
    answer is an outage, and the right password is on record all the same."""
    from guichet.core.errors import StoreUnavailable
    from guichet.core.flows import authenticate

    await make_account(portal)

    async def unreadable(*_args: Any, **_kwargs: Any) -> Any:
        raise StoreUnavailable("credential store down")

    monkeypatch.setattr(authenticate, "login_offers", unreadable)
    r = await password_step(portal, person().identifier, PASSWORD)
    assert r.status_code == 503
    assert len(await audit_rows(portal, "login.password_ok")) == 1
    assert not await audit_rows(portal, "code.sent")
