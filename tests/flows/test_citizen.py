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
        portal: Portal, demo_people: Any) -> None:
    person = demo_people.DEMO_PERSONS["particulier_vitale"]
    await activate(portal, person)
    home = visible_text(await portal.get("/espace-prive"))
    assert "paramètres du compte" in home
    r = await portal.get("/mon-compte")
    text = visible_text(r)
    assert 'id="parametres-du-compte"' in r.text and 'href="/mon-compte#parametres-du-compte"' in (
        await portal.get("/espace-prive")).text
    settings = text[text.index("Paramètres du compte"):]
    block = settings[settings.index("Email et mot de passe"):]
    assert f"Email : {person.email}" in block
    assert block.index("> modifier cet email") < block.index("> modifier mon mot de passe")


async def test_the_code_page_has_no_help_link_unless_the_caisse_sets_one(portal: Portal, demo_people: Any) -> None:
    person = demo_people.DEMO_PERSONS["particulier_vitale"]
    await activate(portal, person)
    await logout(portal)
    r = await to_code_page(portal, person)
    assert "Tuto vidéo" not in r.text and "Un code de sécurité vient de vous être envoyé" in r.text


async def test_the_code_page_shows_the_caisse_help_link(portal_factory: Any, make_config: Any, db_url: str,
                                                        demo_people: Any) -> None:
    portal = await portal_with(portal_factory, make_config, db_url,
                               extra=f'[citizen]\ncode_help_url = "{HELP_URL}"\n')
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
    r = await portal.post("/mon-compte/mot-de-passe", {"current_password": NEW_PASSWORD, "new_password": "lefebvre",
                                                       "confirm_password": "lefebvre"})
    assert r.status_code == 422
    field = r.text.split('id="f-new_password-error"', 1)[1].split("</div>", 1)[0]
    rules = re.findall(r"<li>(.*?)</li>", field)
    assert len(rules) >= 2, field
    assert all(rule.strip() and "<" not in rule for rule in rules)
    summary = r.text.split('class="alert"', 1)[1].split("</div>", 1)[0]
    assert summary.count("<br>") == len(rules) - 1


async def test_without_javascript_the_meter_and_the_voir_buttons_are_hidden(portal: Portal,
                                                                             demo_people: Any) -> None:
    """They need the script; the page says hidden, and the style keeps them hidden (not display:inline-flex)."""
    person = demo_people.DEMO_PERSONS["particulier_vitale"]
    await activate(portal, person)
    r = await portal.get("/mon-compte/mot-de-passe")
    assert re.search(r'<div class="meter-live"[^>]* hidden>', r.text)
    assert r.text.count('class="toggle"') == r.text.count('class="toggle" data-toggle="f-') == 3
    assert all(tag.endswith(" hidden>") for tag in re.findall(r'<button type="button" class="toggle"[^>]*>', r.text))
