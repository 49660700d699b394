"""What the flow tests share: registering, logging in, reading accounts and flows, comparing pages."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

import httpx

from guichet.core.flows.engine import FlowState
from tests.conftest import ALL_PLUGINS, Portal, portal_config_text

NEW_PASSWORD = "Vert-Galet-42-Nuage!"
UNKNOWN_NIR = "1990175123456"  # a well-formed NIR nobody in the demo registry has

_CSRF = re.compile(r'(name="csrf_token" value="|"X-CSRF-Token": ")[^"]+"')


# --- configs ----------------------------------------------------------------------------------------


def config_text(*, security: str = "", plugins: tuple[str, ...] = (), extra: str = "") -> str:
    """portal_config_text() with lines added to [security], more plugins enabled, and extra tables."""
    text = portal_config_text(extra)
    if plugins:
        enabled = ALL_PLUGINS.removesuffix("]") + "".join(f', "{p}"' for p in plugins) + "]"
        text = text.replace(ALL_PLUGINS, enabled)
    if security:
        text = text.replace("[security]\n", "[security]\n" + security.strip() + "\n", 1)
    return text


async def portal_with(
    portal_factory: Callable[..., Any], make_config: Callable[..., Any], db_url: str, **options: str | tuple[str, ...]
) -> Portal:
    """A Portal on an app built from config_text(**options), on the test's database and clock."""
    config = make_config(database_url=db_url, base=config_text(**options))  # type: ignore[arg-type]
    return await portal_factory(config)  # type: ignore[no-any-return]


async def more_portals(portal_factory: Callable[..., Any], portal: Portal, count: int) -> list[Portal]:
    """Other browsers on the same app as ``portal``."""
    config = portal.services.config
    return [await portal_factory(config) for _ in range(count)]


def share_cookies(source: Portal, target: Portal) -> None:
    """``target`` becomes the same browser as ``source`` (same session, same CSRF seed)."""
    for cookie in source.client.cookies.jar:
        target.client.cookies.set(cookie.name, cookie.value or "", domain=cookie.domain, path=cookie.path)
    target.csrf = source.csrf


# --- reading responses --------------------------------------------------------------------------------


def where(response: httpx.Response) -> str:
    """Where a step sends the browser: the 303's Location, htmx's HX-Redirect or HX-Push-Url."""
    for header in ("location", "hx-redirect", "hx-push-url"):
        if header in response.headers:
            return response.headers[header]
    return ""


def field_error(response: httpx.Response, field: str) -> str:
    """The message shown next to one field ("" when there is none)."""
    found = re.search(
        rf'<(?:p|div) class="error" id="f-{re.escape(field)}-error">(.*?)</(?:p|div)>', response.text, re.S
    )
    text = found.group(1).replace("</li><li>", "\n") if found else ""  # several rules: one a line
    return html.unescape(re.sub(r"<[^>]+>", "", text)).replace("Erreur : ", "").strip()


def neutral(text: str, *variable: str) -> str:
    """A page with its CSRF tokens and the given variable strings (typed data) replaced."""
    text = _CSRF.sub(r'\1CSRF"', text)
    for value in sorted((v for v in variable if v), key=len, reverse=True):
        text = text.replace(value, "VARIABLE")
    return text


def is_full_page(response: httpx.Response) -> bool:
    text = response.text.lstrip()
    return (
        text.lower().startswith("<!doctype html>")
        and '<header class="banner">' in text
        and '<section id="step"' in text
    )


def is_partial(response: httpx.Response) -> bool:
    text = response.text.strip()
    return text.startswith('<section id="step"') and text.endswith("</section>") and "<html" not in text


# --- the database ---------------------------------------------------------------------------------------


async def account_of(portal: Portal, identifier: str) -> dict[str, Any] | None:
    t = portal.services.database.t.Account
    rows = await t.select().where(t.identifier == identifier).run()
    return rows[0] if rows else None


async def account_count(portal: Portal) -> int:
    return int(await portal.services.database.t.Account.count().run())


async def flow_of(portal: Portal, kind: str) -> FlowState | None:
    flow_id = portal.client.cookies.get(f"guichet_flow_{kind}")
    return await portal.services.flows.load(kind, flow_id, portal.services.now())  # type: ignore[no-any-return]


async def codes_of(portal: Portal, purpose: str) -> list[dict[str, Any]]:
    t = portal.services.database.t.OneTimeCode
    return await t.select().where(t.purpose == purpose).order_by(t.id).run()  # type: ignore[no-any-return]


# --- registration ---------------------------------------------------------------------------------------


def contact_form(person: Any, **changes: str) -> dict[str, str]:
    """The "Vos coordonnées" form as the person fills it in."""
    form = {"last_name": person.last_name, "email": person.email, "mobile": person.mobile}
    if person.identifier_kind == "nir":
        form.update(first_name=person.first_name, birth_date=person.birth_date.strftime("%d/%m/%Y"))
    form.update(changes)
    return form


async def register(
    portal: Portal,
    person: Any,
    *,
    answer: str | None = None,
    question: str | None = None,
    channel: str = "email",
    htmx: bool = False,
    identifier: str | None = None,
    **contact: str,
) -> str:
    """Go through registration; returns the step it ended on ("termine", or where it stopped).

    With a right answer the identity step leads to the channel and the code; a wrong answer, no
    answer ("aucune") or an unknown person ends at once, with the password sent by post.
    """
    steps = [
        ("statut", {"status": person.status}),
        ("identifiant", {"identifier": identifier or person.nir_with_key}),
        ("coordonnees", contact_form(person, **contact)),
        ("question", {"question": question or person.question, "answer": person.answer if answer is None else answer}),
    ]
    if portal.client.cookies.get("guichet_flow_registration"):  # a new registration, not the last one's end
        await portal.post("/inscription/abandon", {})
    for (step, form), following in zip(steps, ["identifiant", "coordonnees", "question", None]):
        r = await portal.post(f"/inscription/{step}", form, htmx=htmx)
        assert r.status_code in (200, 303), (step, r.status_code, field_errors(r))
        assert following is None or where(r) == f"/inscription/{following}", (step, where(r))
    if where(r) != "/inscription/canal":
        return where(r).rsplit("/", 1)[-1]
    r = await portal.post("/inscription/canal", {"channel": channel}, htmx=htmx)
    assert r.status_code in (200, 303), field_errors(r)
    code = await portal.last_code("registration_code")
    r = await portal.post("/inscription/code", {"code": code}, htmx=htmx)
    assert r.status_code in (200, 303), field_errors(r)
    return where(r).rsplit("/", 1)[-1]


def field_errors(response: httpx.Response) -> dict[str, str]:
    return {
        m.group(1): html.unescape(re.sub(r"<[^>]+>", "", m.group(2).replace("</li><li>", "\n")))
        .replace("Erreur : ", "")
        .strip()
        for m in re.finditer(r'<(?:p|div) class="error" id="f-([^"]+)-error">(.*?)</(?:p|div)>', response.text, re.S)
    }


async def temporary_password(portal: Portal) -> str:
    messages = await portal.outbox("temporary_password")
    assert messages, "no temporary password was queued"
    return str(messages[-1]["payload"]["password"])


# --- login and the pages after it -----------------------------------------------------------------------


async def login(portal: Portal, identifier: str, password: str, *, trust: bool = False) -> str:
    """Identifier, password and, when asked, the code; returns where the browser is sent at the end."""
    await portal.get("/connexion")
    r = await portal.post("/connexion", {"identifier": identifier, "password": password})
    assert r.status_code == 303, field_errors(r)
    if r.headers["location"] != "/connexion/code":
        return r.headers["location"]
    await portal.get("/connexion/code")  # the session id changed: a new CSRF token
    code = await portal.last_code("login_code")
    form = {"code": code, "trust": "oui"} if trust else {"code": code}
    r = await portal.post("/connexion/code", form)
    assert r.status_code == 303, field_errors(r)
    return r.headers["location"]


async def personalise(portal: Portal, password: str = NEW_PASSWORD) -> None:
    await portal.get("/changement-mot-de-passe")
    r = await portal.post("/changement-mot-de-passe", {"new_password": password, "confirm_password": password})
    assert r.status_code == 303 and r.headers["location"] == "/mot-de-passe-modifie", field_errors(r)


async def activate(
    portal: Portal, person: Any, *, password: str = NEW_PASSWORD, channel: str = "email", trust: bool = False
) -> dict[str, Any]:
    """Register, log in with the temporary password, personalise, confirm the contacts; logged in at the end."""
    assert await register(portal, person, channel=channel) == "termine"
    temporary = await temporary_password(portal)
    assert await login(portal, person.identifier, temporary, trust=trust) == "/changement-mot-de-passe"
    await personalise(portal, password)
    await portal.get("/confirmation-coordonnees")
    r = await portal.post("/confirmation-coordonnees", {"action": "confirmer"})
    assert r.headers["location"] == "/espace-prive"
    account = await account_of(portal, person.identifier)
    assert account is not None
    return account


async def prove_mobile(portal: Portal, person: Any, password: str = NEW_PASSWORD) -> None:
    """A logged-in person proves the mobile typed at registration (Mes coordonnées, the password, the SMS code)."""
    await portal.get("/mon-compte/coordonnees")
    r = await portal.post(
        "/mon-compte/coordonnees",
        {"action": "modifier", "field": "mobile", "value": person.mobile, "current_password": password},
    )
    assert r.status_code == 200 and "Vérification de votre nouvelle coordonnée" in r.text, field_errors(r)
    [*_, sms] = await portal.outbox("contact_code")
    r = await portal.post("/mon-compte/coordonnees", {"action": "code", "code": sms["payload"]["code"]})
    assert r.status_code == 200 and "Votre coordonnée a été vérifiée et enregistrée." in r.text, field_errors(r)


async def logout(portal: Portal) -> None:
    await portal.get("/")
    r = await portal.post("/deconnexion", {})
    assert r.status_code == 303
    await portal.get("/")  # a new CSRF token for the session-less browser


def text_of(response: httpx.Response) -> str:
    """The page's text with HTML entities decoded (Jinja writes ' as &#39;) and <wbr> (a line-break
    opportunity inside an email address) dropped."""
    return html.unescape(response.text.replace("<wbr>", ""))


def visible_text(response: httpx.Response) -> str:
    """What a person reads: the page without its tags, entities decoded, whitespace folded."""
    words = response.text.replace("<wbr>", "")  # a line-break opportunity, nothing a person reads
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", words)))
