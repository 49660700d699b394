"""The citizen's side, as the seeds word it: the small things a person reads on each page (issue 14)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import Portal
from tests.flows.helpers import NEW_PASSWORD, activate, logout, portal_with, visible_text

pytestmark = pytest.mark.asyncio

HELP_URL = "https://www.example.fr/tuto-connexion"


async def to_code_page(portal: Portal, person: Any) -> Any:
    await portal.get("/connexion")
    await portal.post("/connexion", {"identifier": person.identifier, "password": NEW_PASSWORD})
    return await portal.get("/connexion/code")


# --- seed wording -------------------------------------------------------------------------------------


async def test_the_recovery_confirmation_says_mon_espace_prive_msa(portal: Portal, demo_people: Any) -> None:
    person = demo_people.DEMO_PERSONS["particulier_vitale"]
    await activate(portal, person)
    await logout(portal)
    await portal.get("/mot-de-passe-oublie/identifiant")
    await portal.post("/mot-de-passe-oublie/identifiant", {"identifier": person.identifier})
    await portal.post("/mot-de-passe-oublie/canal", {"channel": "email"})
    await portal.post("/mot-de-passe-oublie/code", {"code": await portal.last_code("recovery_code")})
    r = await portal.get("/mot-de-passe-oublie/confirmation")
    assert "Vous pourrez le modifier après vous être connecté à Mon espace privé MSA." in visible_text(r)


async def test_mon_compte_has_the_account_settings_with_the_email_and_password_block(
    portal: Portal, demo_people: Any
) -> None:
    person = demo_people.DEMO_PERSONS["particulier_vitale"]
    await activate(portal, person)
    home = visible_text(await portal.get("/espace-prive"))
    assert "paramètres du compte" in home
    r = await portal.get("/mon-compte")
    text = visible_text(r)
    assert (
        'id="parametres-du-compte"' in r.text
        and 'href="/mon-compte#parametres-du-compte"' in (await portal.get("/espace-prive")).text
    )
    settings = text[text.index("Paramètres du compte") :]
    block = settings[settings.index("Email et mot de passe") :]
    assert f"Email : {person.email}" in block
    assert block.index("> modifier cet email") < block.index("> modifier mon mot de passe")


async def test_the_code_page_has_no_help_link_unless_the_caisse_sets_one(portal: Portal, demo_people: Any) -> None:
    person = demo_people.DEMO_PERSONS["particulier_vitale"]
    await activate(portal, person)
    await logout(portal)
    r = await to_code_page(portal, person)
    assert "Tuto vidéo" not in r.text and "Un code de sécurité vient de vous être envoyé" in r.text


async def test_the_code_page_shows_the_caisse_help_link(
    portal_factory: Any, make_config: Any, db_url: str, demo_people: Any
) -> None:
    portal = await portal_with(portal_factory, make_config, db_url, extra=f'[citizen]\ncode_help_url = "{HELP_URL}"\n')
    person = demo_people.DEMO_PERSONS["particulier_vitale"]
    await activate(portal, person)
    await logout(portal)
    r = await to_code_page(portal, person)
    assert f'<a href="{HELP_URL}"' in r.text and "Tuto vidéo" in visible_text(r)


# --- stumbles -----------------------------------------------------------------------------------------


async def test_password_rule_errors_are_listed_one_a_line(portal: Portal, demo_people: Any) -> None:
    person = demo_people.DEMO_PERSONS["particulier_vitale"]
    await activate(portal, person)
    await portal.get("/mon-compte/mot-de-passe")
    r = await portal.post(
        "/mon-compte/mot-de-passe",
        {"current_password": NEW_PASSWORD, "new_password": "lefebvre", "confirm_password": "lefebvre"},
    )
    assert r.status_code == 422
    field = r.text.split('id="f-new_password-error"', 1)[1].split("</div>", 1)[0]
    rules = re.findall(r"<li>(.*?)</li>", field)
    assert len(rules) >= 2, field
    assert all(rule.strip() and "<" not in rule for rule in rules)
    summary = r.text.split('class="alert"', 1)[1].split("</div>", 1)[0]
    assert summary.count("<br>") == len(rules) - 1


async def test_without_javascript_the_meter_and_the_voir_buttons_are_hidden(portal: Portal, demo_people: Any) -> None:
    """They need the script; the page says hidden, and the style keeps them hidden (not display:inline-flex)."""
    person = demo_people.DEMO_PERSONS["particulier_vitale"]
    await activate(portal, person)
    r = await portal.get("/mon-compte/mot-de-passe")
    assert re.search(r'<div class="meter-live"[^>]* hidden>', r.text)
    assert r.text.count('class="toggle"') == r.text.count('class="toggle" data-toggle="f-') == 3
    assert all(tag.endswith(" hidden>") for tag in re.findall(r'<button type="button" class="toggle"[^>]*>', r.text))


async def test_the_private_space_title_says_mon_espace_prive_once(portal: Portal, demo_people: Any) -> None:
    await activate(portal, demo_people.DEMO_PERSONS["particulier_vitale"])
    r = await portal.get("/espace-prive")
    title = re.search(r"<title>(.*?)</title>", r.text).group(1)  # type: ignore[union-attr]
    assert title.count("Mon espace privé") == 1, title


async def test_a_logout_is_confirmed(portal: Portal, demo_people: Any) -> None:
    await activate(portal, demo_people.DEMO_PERSONS["particulier_vitale"])
    r = await portal.post("/deconnexion", {})
    assert r.status_code == 303
    page = await portal.get(r.headers["location"])
    assert "Vous êtes déconnecté de Mon espace privé." in visible_text(page)
    assert 'role="status"' in page.text
    assert "déconnecté" not in visible_text(await portal.get("/"))  # only right after a logout


async def test_the_code_page_has_precedent_and_abandonner(portal: Portal, demo_people: Any) -> None:
    person = demo_people.DEMO_PERSONS["particulier_vitale"]
    await activate(portal, person)
    await logout(portal)
    r = await to_code_page(portal, person)
    assert 'href="/connexion"' in r.text and "&lt; Précédent" in r.text
    assert re.search(r'<button[^>]*formaction="/deconnexion"[^>]*>Abandonner</button>', r.text)
    r = await portal.post("/deconnexion", {})
    assert (await portal.get("/connexion/code")).headers.get("location") == "/connexion"


async def test_a_header_link_says_why_the_password_comes_first(portal: Portal, demo_people: Any) -> None:
    from tests.flows.helpers import login, register, temporary_password

    person = demo_people.DEMO_PERSONS["particulier_vitale"]
    assert await register(portal, person) == "termine"
    assert await login(portal, person.identifier, await temporary_password(portal)) == "/changement-mot-de-passe"
    r = await portal.get("/mon-compte")
    assert r.status_code == 303
    page = await portal.get(r.headers["location"])
    assert "Votre mot de passe est temporaire : personnalisez-le avant d'accéder à Mon espace privé." in visible_text(
        page
    )
    assert "personnalisez-le avant" not in visible_text(await portal.get("/changement-mot-de-passe"))


async def test_the_example_nir_is_fictitious_and_from_the_config(
    portal_factory: Any, make_config: Any, db_url: str, portal: Portal, demo_people: Any
) -> None:
    from guichet.core.config import FICTITIOUS_NIR_EXAMPLE

    await portal.post("/inscription/statut", {"status": "particulier"})
    page = visible_text(await portal.get("/inscription/identifiant"))
    assert f"par exemple {FICTITIOUS_NIR_EXAMPLE}" in page  # its spaces do not break: non-breaking
    example = FICTITIOUS_NIR_EXAMPLE.replace(" ", "")
    assert example[5:10] == "99999"  # born abroad (99) in country 999, a code INSEE never assigned
    from guichet.plugins.registry_tables.tables import tables_of

    t = tables_of(portal.services.database).RegistryPerson
    assert await t.count().where(t.nir == example).run() == 0
    assert "1 85 05 78 006" not in page  # Julien LEFEBVRE's, a demo person's
    other = await portal_with(
        portal_factory, make_config, db_url, extra='[citizen]\nexample_nir = "2 99 12 99 999 999"\n'
    )
    await other.post("/inscription/statut", {"status": "particulier"})
    assert "par exemple 2 99 12 99 999 999" in visible_text(await other.get("/inscription/identifiant"))


async def test_names_follow_one_rule_in_every_message(portal: Portal, demo_people: Any) -> None:
    """Typed "Lefebvre", registered as LEFEBVRE: every message names "Julien LEFEBVRE"."""
    from tests.flows.helpers import register

    person = demo_people.DEMO_PERSONS["particulier_vitale"]
    assert await register(portal, person, last_name=person.last_name.title(), first_name="julien") == "termine"
    names = {(m["template"], m["recipient"]["name"]) for m in await portal.outbox()}
    assert {name for _template, name in names} == {"Julien LEFEBVRE"}, names
    assert {"registration_code", "temporary_password"} <= {template for template, _name in names}


async def test_amounts_do_not_break_and_emails_break_only_at_their_at_or_dots(portal: Portal, demo_people: Any) -> None:
    person = demo_people.DEMO_PERSONS["exploitant"]
    await portal.post("/inscription/statut", {"status": person.status})
    await portal.post("/inscription/identifiant", {"identifier": person.nir_with_key})
    from tests.flows.helpers import contact_form

    await portal.post("/inscription/coordonnees", contact_form(person))
    page = (await portal.get("/inscription/question")).text
    assert "par exemple 1\u00a0234,50." in page and "1 234,50" not in page
    r = await portal.post("/inscription/question", {"question": "payment", "answer-payment": "douze euros"})
    assert r.status_code == 422 and "par exemple 1\u00a0234,50." in r.text
    assert 'href="mailto:aide@test.invalid">aide@<wbr>test<wbr>.invalid</a>' in page
