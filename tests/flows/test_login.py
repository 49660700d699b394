"""Login over HTTP: one failure answer for every failure, the second factor, trusted browsers."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from tests.conftest import Portal
from tests.flows.helpers import (
    NEW_PASSWORD,
    UNKNOWN_NIR,
    account_of,
    activate,
    field_error,
    login,
    logout,
    more_portals,
    neutral,
    portal_with,
    register,
    share_cookies,
    temporary_password,
    text_of,
)

pytestmark = pytest.mark.asyncio

LOGIN_FAILED = "Identifiant ou mot de passe incorrect."
CODE_DEAD = "Ce code n'est plus valable. Cliquez sur « Recevoir un nouveau code »."
SLOW_DOWN = "Trop de tentatives. Veuillez patienter quelques instants avant de réessayer."


@pytest.fixture
async def julien(portal: Portal, demo_people: Any) -> Any:
    """Julien LEFEBVRE with a personal password (NEW_PASSWORD), logged out."""
    person = demo_people.DEMO_PERSONS["particulier_vitale"]
    await activate(portal, person)
    await logout(portal)
    return person


async def password_step(portal: Portal, identifier: str, password: str) -> Any:
    await portal.get("/connexion")
    return await portal.post("/connexion", {"identifier": identifier, "password": password})


async def code_step(portal: Portal, code: str, **form: str) -> Any:
    await portal.get("/connexion/code")  # the session id changed at the password: a new CSRF token
    return await portal.post("/connexion/code", {"code": code, **form})


async def login_succeeded_count(portal: Portal) -> int:
    t = portal.services.database.t.AuditLog
    return int(await t.count().where(t.kind == "login.succeeded").run())


# --- one failure answer ------------------------------------------------------------------------------


async def test_every_login_failure_gets_the_same_answer(
    portal: Portal, julien: Any, demo_people: Any, portal_factory: Any, clock: Any
) -> None:
    sophie = demo_people.DEMO_PERSONS["particulier_paiement"]
    assert await register(portal, sophie, channel="email") == "termine"
    expired = await temporary_password(portal)
    sophie_account = await account_of(portal, sophie.identifier)
    clock.advance(seconds=(sophie_account["temporary_expires_at"] - clock.now()).total_seconds() + 1)  # type: ignore[index]

    browsers = await more_portals(portal_factory, portal, 4)
    for _ in range(5):  # enough failures on Julien's identifier to be slowed down
        r = await password_step(browsers[3], julien.identifier, "Pas-Le-Bon-1!")
        assert r.status_code == 422
    codes_before = len(await portal.outbox("login_code"))
    attempts = [
        (browsers[0], UNKNOWN_NIR, NEW_PASSWORD),
        (browsers[1], julien.identifier, "Pas-Le-Bon-2!"),
        (browsers[2], sophie.identifier, expired),
        (browsers[3], julien.identifier, NEW_PASSWORD),
    ]
    answers = []
    for browser, identifier, password in attempts:
        r = await password_step(browser, identifier, password)
        assert field_error(r, "password") == LOGIN_FAILED
        assert password not in r.text
        answers.append((r.status_code, neutral(r.text, identifier)))
        r = await browser.get("/connexion/code")
        assert r.headers["location"] == "/connexion"
    assert answers[0][0] == 422
    assert answers[0] == answers[1] == answers[2] == answers[3]
    assert len(await portal.outbox("login_code")) == codes_before

    clock.advance(seconds=5)  # 7 failures: a 4-second pause, then the owner gets in (never locked out)
    r = await password_step(browsers[3], julien.identifier, NEW_PASSWORD)
    assert r.status_code == 303 and r.headers["location"] == "/connexion/code"


async def test_the_same_failure_answer_with_htmx(portal: Portal, julien: Any) -> None:
    await portal.get("/connexion")
    unknown = await portal.post("/connexion", {"identifier": UNKNOWN_NIR, "password": "x"}, htmx=True)
    wrong = await portal.post("/connexion", {"identifier": julien.identifier, "password": "x"}, htmx=True)
    assert unknown.status_code == wrong.status_code == 422
    assert unknown.text.strip().startswith('<section id="step"')
    assert neutral(unknown.text, UNKNOWN_NIR) == neutral(wrong.text, julien.identifier)


async def test_a_temporary_password_works_until_it_expires(portal: Portal, demo_people: Any, clock: Any) -> None:
    sophie = demo_people.DEMO_PERSONS["particulier_paiement"]
    await register(portal, sophie)
    temporary = await temporary_password(portal)
    clock.advance(hours=23)
    r = await password_step(portal, sophie.identifier, temporary)
    assert r.headers.get("location") == "/connexion/code"
    clock.advance(hours=1, seconds=1)
    r = await password_step(portal, sophie.identifier, temporary)
    assert r.status_code == 422 and field_error(r, "password") == LOGIN_FAILED


async def test_the_identifier_may_be_typed_with_its_key_and_spaces(portal: Portal, julien: Any) -> None:
    spaced = " ".join(
        [
            julien.nir_with_key[:1],
            julien.nir_with_key[1:3],
            julien.nir_with_key[3:5],
            julien.nir_with_key[5:7],
            julien.nir_with_key[7:10],
            julien.nir_with_key[10:13],
            julien.nir_with_key[13:],
        ]
    )
    r = await password_step(portal, spaced, NEW_PASSWORD)
    assert r.headers.get("location") == "/connexion/code"


async def test_an_entreprise_logs_in_with_its_siret(portal: Portal, demo_people: Any) -> None:
    company = demo_people.DEMO_PERSONS["entreprise"]
    await activate(portal, company)
    await logout(portal)
    assert await login(portal, "842 167 306 00021", NEW_PASSWORD) == "/espace-prive"
    await logout(portal)
    r = await password_step(portal, "84216730600022", NEW_PASSWORD)  # a SIRET whose check digit is wrong
    assert r.status_code == 422 and field_error(r, "password") == LOGIN_FAILED


# --- the second factor -------------------------------------------------------------------------------


async def test_the_code_page_says_where_the_code_went_and_how_long_it_lives(portal: Portal, julien: Any) -> None:
    r = await password_step(portal, julien.identifier, NEW_PASSWORD)
    assert r.headers["location"] == "/connexion/code"
    r = await portal.get("/connexion/code")
    assert "Un code de sécurité vient de vous être envoyé à l'adresse" in r.text
    assert "j…e@demo.invalid" in r.text and julien.email not in r.text
    assert "Ce code est valable 10 minutes." in r.text
    [message] = (await portal.outbox("login_code"))[-1:]
    assert message["channel"] == "email" and message["recipient"]["email"] == julien.email


async def test_provence_azur_codes_live_15_minutes(
    portal: Portal, julien: Any, portal_factory: Any, make_config: Any, db_url: str, clock: Any
) -> None:
    azur = await portal_with(portal_factory, make_config, db_url, plugins=("caisse_provence_azur",))
    await password_step(azur, julien.identifier, NEW_PASSWORD)
    r = await azur.get("/connexion/code")
    assert "Ce code est valable 15 minutes." in r.text
    clock.advance(minutes=14)
    r = await code_step(azur, await azur.last_code("login_code"))
    assert r.status_code == 303 and r.headers["location"] == "/espace-prive"


async def test_a_new_code_respects_the_cooldown(portal: Portal, julien: Any, clock: Any) -> None:
    await password_step(portal, julien.identifier, NEW_PASSWORD)
    r = await code_step(portal, "", action="renvoyer")
    assert r.status_code == 422
    assert "Vous pourrez en demander un nouveau dans 60 secondes." in field_error(r, "code")
    assert len(await portal.outbox("login_code")) == 2  # the activation's, and this login's
    clock.advance(seconds=61)
    r = await portal.post("/connexion/code", {"action": "renvoyer"})
    assert r.status_code == 200 and "Un nouveau code de sécurité vient de vous être envoyé." in r.text
    assert len(await portal.outbox("login_code")) == 3
    clock.advance(seconds=30)
    r = await portal.post("/connexion/code", {"action": "renvoyer"})
    assert r.status_code == 422 and "dans 30 secondes" in field_error(r, "code")
    assert len(await portal.outbox("login_code")) == 3
    clock.advance(seconds=31)
    r = await portal.post("/connexion/code", {"action": "renvoyer"}, htmx=True)
    assert r.status_code == 200 and "Un nouveau code de sécurité vient de vous être envoyé." in r.text
    assert r.text.strip().startswith('<section id="step"')
    assert len(await portal.outbox("login_code")) == 4


async def test_a_new_code_replaces_the_old_one(portal: Portal, julien: Any, clock: Any) -> None:
    await password_step(portal, julien.identifier, NEW_PASSWORD)
    old = await portal.last_code("login_code")
    clock.advance(seconds=61)
    await code_step(portal, "", action="renvoyer")
    new = await portal.last_code("login_code")
    if new == old:  # one chance in a million: the test would prove nothing
        pytest.skip("the two codes drawn are the same")
    r = await portal.post("/connexion/code", {"code": old})
    assert r.status_code == 422 and "Le code saisi est incorrect." in field_error(r, "code")
    r = await portal.post("/connexion/code", {"code": new})
    assert r.status_code == 303 and r.headers["location"] == "/espace-prive"


async def test_a_new_code_does_not_reset_the_failure_count(
    portal: Portal, julien: Any, demo_people: Any, portal_factory: Any, make_config: Any, db_url: str, clock: Any
) -> None:
    strict = await portal_with(portal_factory, make_config, db_url, extra="[codes]\nfailures_per_day = 3\n")
    await password_step(strict, julien.identifier, NEW_PASSWORD)
    await code_step(strict, "000000")
    await strict.post("/connexion/code", {"code": "000001"})
    clock.advance(seconds=61)
    r = await strict.post("/connexion/code", {"action": "renvoyer"})
    assert "Un nouveau code" in r.text
    r = await strict.post("/connexion/code", {"code": "000002"})
    assert "Il vous reste 2 essais." in field_error(r, "code")  # a fresh code has its own tries...
    clock.advance(minutes=2)
    r = await strict.post("/connexion/code", {"code": await strict.last_code("login_code")})
    assert r.status_code == 422 and field_error(r, "code") == SLOW_DOWN  # ...but the day's failures add up
    assert (await strict.get("/espace-prive")).headers["location"] == "/connexion"


async def test_wrong_code_tells_the_tries_left(portal: Portal, julien: Any) -> None:
    await password_step(portal, julien.identifier, NEW_PASSWORD)
    right = await portal.last_code("login_code")
    wrong = "000000" if right != "000000" else "111111"
    r = await code_step(portal, wrong, trust="oui")
    assert r.status_code == 422
    assert field_error(r, "code") == "Le code saisi est incorrect. Il vous reste 2 essais."
    assert 'name="trust" value="oui" checked' in r.text
    r = await portal.post("/connexion/code", {"code": right})
    assert r.status_code == 303


@pytest.mark.parametrize("typed", ["", "12345", "1234567", "12a456", "１２３４５６"])
async def test_a_malformed_code_is_refused_without_using_a_try(portal: Portal, julien: Any, typed: str) -> None:
    await password_step(portal, julien.identifier, NEW_PASSWORD)
    r = await code_step(portal, typed)
    assert r.status_code == 422 and field_error(r, "code")
    t = portal.services.database.t.OneTimeCode
    [live] = await t.select(t.attempts).where((t.purpose == "login") & t.used_at.is_null()).run()
    assert live["attempts"] == 0


@pytest.mark.parametrize("shared", ["same_portal", "twenty_portals"])
async def test_a_code_is_accepted_once_among_twenty_concurrent_submissions(
    portal: Portal, julien: Any, portal_factory: Any, shared: str
) -> None:
    await password_step(portal, julien.identifier, NEW_PASSWORD)
    await portal.get("/connexion/code")
    code = await portal.last_code("login_code")
    succeeded_before = await login_succeeded_count(portal)
    if shared == "same_portal":
        browsers = [portal] * 20
    else:
        browsers = [portal, *await more_portals(portal_factory, portal, 19)]
        for browser in browsers[1:]:
            share_cookies(portal, browser)
    answers = await asyncio.gather(*(b.post("/connexion/code", {"code": code}) for b in browsers))
    assert all(r.status_code in (303, 422, 403) for r in answers), [r.status_code for r in answers]
    successes = [r for r in answers if r.status_code == 303 and r.headers["location"] != "/connexion"]
    assert len(successes) == 1, [(r.status_code, r.headers.get("location")) for r in answers]
    assert successes[0].headers["location"] == "/espace-prive"
    assert await login_succeeded_count(portal) == succeeded_before + 1
    account = await account_of(portal, julien.identifier)
    assert account is not None
    services = portal.services
    (failures,) = await services.limiter.check_all(
        [(services.limits.code_failures, f"login:{account['id']}")], services.now()
    )
    assert failures.count == 0, "the 19 late copies of the right code do not eat the daily failure budget"


async def test_an_expired_code_is_refused(portal: Portal, julien: Any, clock: Any) -> None:
    await password_step(portal, julien.identifier, NEW_PASSWORD)
    code = await portal.last_code("login_code")
    clock.advance(minutes=10, seconds=1)
    r = await code_step(portal, code)
    assert r.status_code == 422 and field_error(r, "code") == CODE_DEAD
    r = await portal.post("/connexion/code", {"action": "renvoyer"})
    assert r.status_code == 200
    r = await portal.post("/connexion/code", {"code": await portal.last_code("login_code")})
    assert r.status_code == 303 and r.headers["location"] == "/espace-prive"


async def test_a_code_exhausted_by_wrong_tries_is_refused_even_when_right(
    portal: Portal, julien: Any, clock: Any
) -> None:
    await password_step(portal, julien.identifier, NEW_PASSWORD)
    await portal.get("/connexion/code")
    right = await portal.last_code("login_code")
    wrong = [c for c in ("000000", "111111", "222222", "333333") if c != right][:3]
    for typed, left in zip(wrong, ["2 essais", "1 essai", None]):
        r = await portal.post("/connexion/code", {"code": typed})
        assert r.status_code == 422
        assert (f"Il vous reste {left}." if left else CODE_DEAD) in field_error(r, "code")
    clock.advance(seconds=5)  # past the slow-down, still within the code's lifetime
    r = await portal.post("/connexion/code", {"code": right})
    assert r.status_code == 422 and field_error(r, "code") == CODE_DEAD
    assert (await portal.get("/espace-prive")).headers["location"] == "/connexion"


async def test_with_htmx_the_password_step_answers_with_the_code_step(portal: Portal, julien: Any) -> None:
    """A browser running htmx is shown the code step in the answer to its password (one request less);
    the URL it pushes is the code page's, which a reload shows whole."""
    await portal.get("/connexion")
    before = portal.client.cookies.get("guichet_session")
    r = await portal.post("/connexion", {"identifier": julien.identifier, "password": NEW_PASSWORD}, htmx=True)
    assert r.status_code == 200 and "hx-redirect" not in r.headers
    assert r.headers["hx-push-url"] == "/connexion/code"
    assert r.text.strip().startswith('<section id="step"') and "<html" not in r.text
    assert "Un code de sécurité vient de vous être envoyé à l'adresse" in r.text
    assert "j…e@demo.invalid" in r.text and julien.email not in r.text
    assert "Ce code est valable 10 minutes." in r.text
    after = portal.client.cookies.get("guichet_session")
    assert after and after != before  # the session id changed at the password, as without htmx
    # the fragment's forms carry the token of the new session: the code goes through with it alone
    r = await portal.post("/connexion/code", {"code": await portal.last_code("login_code")}, htmx=True)
    assert r.status_code == 200 and r.headers["hx-push-url"] == "/espace-prive"
    # a reload of the pushed URL after a new password step shows the whole page
    await logout(portal)
    await password_step(portal, julien.identifier, NEW_PASSWORD)
    page = await portal.get("/connexion/code")
    assert page.status_code == 200 and "<html" in page.text and "j…e@demo.invalid" in page.text


async def test_with_htmx_the_pre_login_token_does_not_carry_over(portal: Portal, julien: Any) -> None:
    """The token of the page the password was typed on is bound to the session id the password step
    replaced: a request sending only that one (a forged form) is refused and changes nothing."""
    await portal.get("/connexion")
    stale = portal.csrf
    logins = await login_succeeded_count(portal)
    r = await portal.post("/connexion", {"identifier": julien.identifier, "password": NEW_PASSWORD}, htmx=True)
    assert r.status_code == 200
    code = await portal.last_code("login_code")
    refused = await portal.post("/connexion/code", {"code": code, "csrf_token": stale}, htmx=True)
    assert refused.status_code == 403
    assert await login_succeeded_count(portal) == logins
    r = await portal.post("/connexion/code", {"code": code}, htmx=True)
    assert r.headers["hx-push-url"] == "/espace-prive"


async def test_with_htmx_the_code_step_answers_with_mon_espace_prive(portal: Portal, julien: Any) -> None:
    """A login done with htmx ends in the code step's answer: the whole page of Mon espace privé
    (banner with its menu included) swapped in place of the body, its address pushed; no second
    request. Its forms carry the token of the session the login made, and nothing else is let in."""
    await portal.get("/connexion")
    r = await portal.post("/connexion", {"identifier": julien.identifier, "password": NEW_PASSWORD}, htmx=True)
    code_step_token = portal.csrf
    r = await portal.post("/connexion/code", {"code": await portal.last_code("login_code")}, htmx=True)
    assert r.status_code == 200 and "hx-redirect" not in r.headers
    assert (r.headers["hx-push-url"], r.headers["hx-retarget"], r.headers["hx-reswap"]) == (
        "/espace-prive",
        "body",
        "innerHTML",
    )
    assert r.headers["cache-control"] == "no-store" and "HX-Request" in r.headers["vary"]
    page = text_of(r)
    assert "<html" in page and "<title>Mon espace privé — " in page
    assert f"Bonjour {julien.first_name} {julien.last_name}." in page
    assert 'action="/deconnexion"' in page and ">Se déconnecter<" in page  # the banner's menu
    # the session was renewed by the login: the code page's token is worth nothing now
    assert portal.csrf and portal.csrf != code_step_token
    assert (await portal.post("/deconnexion", {"csrf_token": code_step_token})).status_code == 403
    assert (await portal.get("/espace-prive")).status_code == 200
    # the token the page carries ends the session
    assert (await portal.post("/deconnexion", {})).status_code == 303
    assert (await portal.get("/espace-prive")).headers["location"] == "/connexion"


async def test_with_htmx_a_login_that_owes_something_first_still_leaves_the_page(
    portal: Portal, demo_people: Any
) -> None:
    """A temporary password to personalise is not skipped by the answer in place: the code step sends
    the browser to the personalisation, and Mon espace privé stays shut until it is done."""
    person = demo_people.DEMO_PERSONS["particulier_vitale"]
    assert await register(portal, person) == "termine"
    temporary = await temporary_password(portal)
    await portal.get("/connexion")
    r = await portal.post("/connexion", {"identifier": person.identifier, "password": temporary}, htmx=True)
    assert r.headers["hx-push-url"] == "/connexion/code", r.text
    r = await portal.post("/connexion/code", {"code": await portal.last_code("login_code")}, htmx=True)
    assert r.status_code == 200 and r.headers["hx-redirect"].startswith("/changement-mot-de-passe")
    assert "hx-retarget" not in r.headers and "Bonjour" not in r.text
    assert (await portal.get("/espace-prive")).headers["location"].startswith("/changement-mot-de-passe")


async def test_with_htmx_an_account_with_nothing_proven_is_asked_where_the_code_goes(
    portal: Portal, demo_people: Any
) -> None:
    """Registered by post (a wrong amount): no contact proven, so nothing is sent before the person
    picks one they recognise, on the code step shown in the same answer."""
    person = demo_people.DEMO_PERSONS["particulier_paiement"]
    assert await register(portal, person, answer="412,38") == "termine"
    password = await temporary_password(portal)
    await portal.get("/connexion")
    r = await portal.post("/connexion", {"identifier": person.identifier, "password": password}, htmx=True)
    assert r.status_code == 200 and r.headers["hx-push-url"] == "/connexion/code", r.text
    assert r.text.strip().startswith('<section id="step"')
    assert "Choisissez une coordonnée que vous reconnaissez" in r.text
    assert await portal.outbox("login_code") == []


async def test_the_code_page_needs_the_password_first(portal: Portal, julien: Any) -> None:
    r = await portal.get("/connexion/code")
    assert r.headers["location"] == "/connexion"
    r = await portal.post("/connexion/code", {"code": "123456"})
    assert r.headers["location"] == "/connexion"
    r = await portal.post("/connexion/code", {"action": "renvoyer"})
    assert r.headers["location"] == "/connexion"


async def test_the_session_id_changes_at_the_password_and_at_the_code(
    portal: Portal, julien: Any, portal_factory: Any
) -> None:
    await portal.get("/connexion")
    r = await password_step(portal, julien.identifier, NEW_PASSWORD)
    after_password = portal.client.cookies.get("guichet_session")
    r = await code_step(portal, await portal.last_code("login_code"))
    assert r.status_code == 303
    after_code = portal.client.cookies.get("guichet_session")
    assert after_password and after_code and after_password != after_code
    [stale] = await more_portals(portal_factory, portal, 1)
    stale.client.cookies.set("guichet_session", after_password)
    assert (await stale.get("/espace-prive")).headers["location"] == "/connexion"


# --- trusted browsers ----------------------------------------------------------------------------------


def trusted_cookie(portal: Portal) -> str | None:
    return portal.client.cookies.get("guichet_trusted")


async def test_a_trusted_browser_skips_the_code_but_not_the_password(
    portal: Portal, julien: Any, portal_factory: Any
) -> None:
    assert trusted_cookie(portal) is None
    assert await login(portal, julien.identifier, NEW_PASSWORD, trust=True) == "/espace-prive"
    assert trusted_cookie(portal)
    await logout(portal)
    codes_before = len(await portal.outbox("login_code"))

    r = await password_step(portal, julien.identifier, NEW_PASSWORD)
    assert r.status_code == 303 and r.headers["location"] == "/espace-prive"
    assert (await portal.get("/espace-prive")).status_code == 200
    assert len(await portal.outbox("login_code")) == codes_before
    await logout(portal)

    r = await password_step(portal, julien.identifier, "Pas-Le-Bon-1!")
    assert r.status_code == 422 and field_error(r, "password") == LOGIN_FAILED
    assert (await portal.get("/espace-prive")).headers["location"] == "/connexion"

    [other] = await more_portals(portal_factory, portal, 1)  # another browser still gets the code
    r = await password_step(other, julien.identifier, NEW_PASSWORD)
    assert r.headers["location"] == "/connexion/code"


async def test_the_trusted_cookie_is_httponly_strict_and_tied_to_the_account(
    portal: Portal, julien: Any, demo_people: Any, portal_factory: Any
) -> None:
    await password_step(portal, julien.identifier, NEW_PASSWORD)
    r = await code_step(portal, await portal.last_code("login_code"), trust="oui")
    cookie = next(v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith("guichet_trusted="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    token = trusted_cookie(portal)
    await logout(portal)
    sophie = demo_people.DEMO_PERSONS["particulier_paiement"]
    [other] = await more_portals(portal_factory, portal, 1)
    await activate(other, sophie)
    await logout(other)
    other.client.cookies.set("guichet_trusted", token or "")  # Julien's token does not trust Sophie's login
    r = await password_step(other, sophie.identifier, NEW_PASSWORD)
    assert r.headers["location"] == "/connexion/code"


async def test_a_revoked_trusted_browser_gets_the_code_again(portal: Portal, julien: Any) -> None:
    await login(portal, julien.identifier, NEW_PASSWORD, trust=True)
    r = await portal.get("/mon-compte")
    assert "Navigateurs de confiance" in r.text
    [browser_id] = re.findall(r'action="/mon-compte/navigateurs/(\d+)/revoquer"', r.text)
    r = await portal.post(f"/mon-compte/navigateurs/{browser_id}/revoquer", {})
    assert r.status_code == 200 and "Ce navigateur n'est plus un navigateur de confiance." in text_of(r)
    assert "/revoquer" not in r.text
    await logout(portal)
    r = await password_step(portal, julien.identifier, NEW_PASSWORD)
    assert r.headers["location"] == "/connexion/code"


async def test_trust_ends_after_the_configured_days(portal: Portal, julien: Any, clock: Any) -> None:
    await login(portal, julien.identifier, NEW_PASSWORD, trust=True)
    await logout(portal)
    clock.advance(days=29)
    r = await password_step(portal, julien.identifier, NEW_PASSWORD)
    assert r.headers["location"] == "/espace-prive"
    await logout(portal)
    clock.advance(days=1, seconds=1)
    r = await password_step(portal, julien.identifier, NEW_PASSWORD)
    assert r.headers["location"] == "/connexion/code"


async def test_a_password_reset_ends_the_trust(portal: Portal, julien: Any) -> None:
    await login(portal, julien.identifier, NEW_PASSWORD, trust=True)
    await logout(portal)
    await portal.get("/mot-de-passe-oublie/identifiant")
    await portal.post("/mot-de-passe-oublie/identifiant", {"identifier": julien.identifier})
    await portal.post("/mot-de-passe-oublie/canal", {"channel": "email"})
    r = await portal.post("/mot-de-passe-oublie/code", {"code": await portal.last_code("recovery_code")})
    assert r.headers["location"] == "/mot-de-passe-oublie/confirmation"
    temporary = await temporary_password(portal)
    r = await password_step(portal, julien.identifier, temporary)
    assert r.headers["location"] == "/connexion/code"
    r = await portal.get("/mon-compte")
    assert r.headers["location"] == "/connexion"


async def test_logout_ends_the_session(portal: Portal, julien: Any, portal_factory: Any) -> None:
    await login(portal, julien.identifier, NEW_PASSWORD)
    sid = portal.client.cookies.get("guichet_session")
    await logout(portal)
    assert (await portal.get("/espace-prive")).headers["location"] == "/connexion"
    [stale] = await more_portals(portal_factory, portal, 1)
    stale.client.cookies.set("guichet_session", sid or "")
    assert (await stale.get("/espace-prive")).headers["location"] == "/connexion"
