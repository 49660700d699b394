"""Every form, fuzzed with hypothesis: whatever is typed, never a 500, and a refused submission
changes nothing (accounts, codes used or superseded, outbox, trusted browsers, requests, the flow's
step and data, the session's level). Bounded: 30 examples per form and database."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Portal
from tests.security.support import (
    PASSWORD,
    assert_audit_clean,
    audit_rows,
    cookie,
    login,
    make_account,
    password_step,
    person,
    snapshot,
)

pytestmark = pytest.mark.asyncio

NASTY = [
    "",
    " ",
    "\x00",
    "\r\n",
    "\t",
    "<script>alert(1)</script>",
    '" hx-get="/deconnexion" hx-trigger="load',
    "' hx-on::before-request='alert(1)",
    "１２３４５６",
    "٠١٢٣٤٥",
    "⁰¹²³⁴⁵",
    "1850578006084",
    "185057800608423",
    "2A",
    "ﬁ",
    "\u202e",
    "../../etc/passwd",
    "%00",
    "' OR 1=1 --",
    "{{7*7}}",
    "a" * 3000,
    "é" * 600,
    "06 12 34 56 78",
    "+33612345678",
    "julien@dеmo.invalid",
    "a@b",
    "412,37",
    "1 875,40",
    "000000",
    "-1",
    "1e309",
    "NaN",
    "31/02/1985",
    "0000-00-00",
    "particulier",
    "autre",
    "email",
    "sms",
    "postal",
    "vitale",
    "payment",
    "aucune",
    "oui",
    "renvoyer",
    "precedent",
    "confirmer",
    "modifier",
    "code",
    "Vert-Galet-42-Nuage!",
]
VALUE = st.one_of(
    st.sampled_from(NASTY),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80),
    st.from_regex(r"[0-9 .\-]{0,20}", fullmatch=True),
)


@dataclass
class Form:
    path: str
    fields: tuple[str, ...]
    prepare: Callable[[Portal, Callable[..., Any]], Awaitable[Portal]]  # a browser at this form
    flow: str = ""  # the flow kind whose state a refusal must leave alone


async def anonymous(portal: Portal, factory: Callable[..., Any]) -> Portal:
    browser = await factory(portal.services.config)
    await browser.get("/connexion")
    return browser  # type: ignore[no-any-return]


async def at_login_code(portal: Portal, factory: Callable[..., Any]) -> Portal:
    browser = await factory(portal.services.config)
    await password_step(browser, person().identifier, PASSWORD)
    await browser.get("/connexion/code")
    return browser  # type: ignore[no-any-return]


def registration_until(step: str) -> Callable[[Portal, Callable[..., Any]], Awaitable[Portal]]:
    who = person("particulier_vitale")
    steps = [
        ("/inscription/statut", {"status": who.status}),
        ("/inscription/identifiant", {"identifier": who.nir_with_key}),
        (
            "/inscription/coordonnees",
            {
                "last_name": who.last_name,
                "first_name": who.first_name,
                "birth_date": "14/05/1985",
                "email": who.email,
                "mobile": who.mobile,
            },
        ),
        ("/inscription/question", {"question": who.question, "answer": who.answer}),
        ("/inscription/canal", {"channel": "email"}),
    ]
    third_party = [
        ("/inscription/statut", {"status": "autre"}),
        ("/inscription/structure", {"structure": "tiers_declarant"}),
    ]

    async def prepare(portal: Portal, factory: Callable[..., Any]) -> Portal:
        browser = await factory(portal.services.config)
        await browser.get("/inscription/statut")
        path = f"/inscription/{step}"
        for done, form in third_party if step in ("structure", "demande") else steps:
            if done == path:
                break
            await browser.post(done, form)
        return browser  # type: ignore[no-any-return]

    return prepare


def recovery_until(step: str) -> Callable[[Portal, Callable[..., Any]], Awaitable[Portal]]:
    async def prepare(portal: Portal, factory: Callable[..., Any]) -> Portal:
        browser = await factory(portal.services.config)
        await browser.get("/mot-de-passe-oublie/identifiant")
        for done, form in (("identifiant", {"identifier": person().identifier}), ("canal", {"channel": "email"})):
            if done == step:
                break
            await browser.post(f"/mot-de-passe-oublie/{done}", form)
        return browser  # type: ignore[no-any-return]

    return prepare


def logged_in(
    page: str, *, temporary: bool = False, confirmed: bool = True
) -> Callable[[Portal, Callable[..., Any]], Awaitable[Portal]]:
    async def prepare(portal: Portal, factory: Callable[..., Any]) -> Portal:
        t = portal.services.database.t
        await t.Account.delete(force=True).run()
        await t.RateCounter.delete(force=True).run()
        await make_account(portal, temporary=temporary, confirmed=confirmed and not temporary)
        browser = await factory(portal.services.config)
        await login(browser, person().identifier)
        await browser.get(page)
        return browser  # type: ignore[no-any-return]

    return prepare


FORMS = {
    "login": Form("/connexion", ("identifier", "password"), anonymous),
    "login code": Form("/connexion/code", ("code", "trust", "action"), at_login_code),
    **{
        f"registration {step}": Form(f"/inscription/{step}", fields, registration_until(step), "registration")
        for step, fields in (
            ("statut", ("status",)),
            ("identifiant", ("identifier",)),
            ("coordonnees", ("last_name", "first_name", "birth_date", "email", "mobile")),
            ("question", ("question", "answer")),
            ("canal", ("channel",)),
            ("code", ("code", "action")),
            ("structure", ("structure",)),
            ("demande", ("structure_name", "siret", "contact_name", "email", "phone")),
        )
    },
    **{
        f"recovery {step}": Form(f"/mot-de-passe-oublie/{step}", fields, recovery_until(step), "recovery")
        for step, fields in (("identifiant", ("identifier",)), ("canal", ("channel",)), ("code", ("code", "action")))
    },
    "personalisation": Form(
        "/changement-mot-de-passe",
        ("new_password", "confirm_password"),
        logged_in("/changement-mot-de-passe", temporary=True),
    ),
    "password meter": Form("/mot-de-passe/force", ("new_password",), logged_in("/mon-compte/mot-de-passe")),
    "contacts": Form(
        "/mon-compte/coordonnees",
        ("action", "field", "value", "current_password", "code"),
        logged_in("/mon-compte/coordonnees"),
    ),
    "contacts confirmation": Form(
        "/confirmation-coordonnees",
        ("action", "field", "value", "current_password", "code"),
        logged_in("/confirmation-coordonnees", confirmed=False),
    ),
    "password change": Form(
        "/mon-compte/mot-de-passe",
        ("current_password", "new_password", "confirm_password"),
        logged_in("/mon-compte/mot-de-passe"),
    ),
    "email change": Form(
        "/mon-compte/email", ("current_password", "value", "action", "code"), logged_in("/mon-compte/email")
    ),
}


async def flow_state(portal: Portal, browser: Portal, kind: str) -> Any:
    if not kind:
        return None
    state = await portal.services.flows.load(kind, cookie(browser, f"flow_{kind}"), portal.services.now())
    if state is None or (not state.done and not state.data):  # a flow opened by a refused first step is empty
        return None
    return msgspec.to_builtins(state)


async def session_level(portal: Portal, browser: Portal) -> Any:
    session = await portal.services.sessions.load(cookie(browser, "session"), portal.services.now())
    return (session.data.level, session.data.account_id) if session.data else None


@pytest.mark.parametrize("name", sorted(FORMS))
@settings(
    max_examples=30,
    deadline=None,
    database=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_a_fuzzed_form_never_fails_and_a_refusal_changes_nothing(
    portal: Portal, portal_factory: Callable[..., Any], name: str, data: st.DataObject
) -> None:
    form = FORMS[name]
    ready: dict[str, Any] = portal.__dict__.setdefault("fuzz", {})
    if "demo" not in ready:
        from guichet.plugins.registry_tables import importer as registry_import

        await registry_import.generate_demo_registry(portal.services.database, count=0, seed=1)
        if not name.startswith(("personalisation", "password", "contacts", "email")):
            await make_account(portal)
        ready["demo"] = True
    if ready.get("browser") is None:
        ready["browser"] = await form.prepare(portal, portal_factory)
    browser: Portal = ready["browser"]
    values = data.draw(st.fixed_dictionaries({}, optional={f: VALUE for f in form.fields}), label="form")
    htmx = data.draw(st.booleans(), label="htmx")
    before = (
        await snapshot(portal),
        await flow_state(portal, browser, form.flow),
        await session_level(portal, browser),
    )
    r = await browser.post(form.path, values, htmx=htmx)
    assert r.status_code < 500, f"{name}: {r.status_code} for {values!r}"
    assert r.status_code in (200, 303, 413, 422), f"{name}: {r.status_code}"
    if r.status_code in (413, 422):
        after = (
            await snapshot(portal),
            await flow_state(portal, browser, form.flow),
            await session_level(portal, browser),
        )
        if form.flow and before[1] and after[1]:  # the drafts of a refused step are kept, by design
            before[1].pop("drafts", None)
            after[1].pop("drafts", None)
        assert after == before, f"{name}: a refused submission changed something ({values!r})"
    else:
        ready["browser"] = None  # accepted: the next example starts again from a fresh browser
    await assert_audit_clean(portal)
    if name == "login" and r.status_code == 422:
        assert (await audit_rows(portal))[-1]["kind"] == "login.failed", "a refused login was not audited"
