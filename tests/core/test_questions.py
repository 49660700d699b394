"""Identity questions own their contract: which a status offers is caisse configuration, each question
brings its wording and answer field, and a config that offers a question nobody asks does not start."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from guichet.core.clock import FrozenClock
from guichet.core.config import CaisseConfig
from guichet.core.context import PluginContext
from guichet.core.errors import ConfigError
from guichet.core.plugins import PluginHost
from tests.conftest import Portal, portal_config_text

pytestmark = pytest.mark.asyncio


def host_for(config: CaisseConfig) -> PluginHost:
    return PluginHost(config, PluginContext(config=config, database=None, clock=FrozenClock()))  # type: ignore[arg-type]


def kinds(host: PluginHost, status: str) -> list[str]:
    found = host.status(status)
    assert found is not None
    return [q.kind for q in host.identity_questions(found, None)]


async def test_the_msa_statuses_are_the_preset(make_config: Callable[..., CaisseConfig]) -> None:
    host = host_for(make_config(base=portal_config_text()))
    host.check_can_serve()
    assert kinds(host, "particulier") == ["vitale", "payment"]
    assert kinds(host, "exploitant") == ["payment"]


async def test_a_caisse_chooses_the_questions_of_a_status_and_their_order(
    make_config: Callable[..., CaisseConfig],
) -> None:
    host = host_for(
        make_config(
            '[statuses.particulier]\nquestions = ["payment", "vitale"]\n[statuses.exploitant]\nquestions = []\n',
            base=portal_config_text(),
        )
    )
    host.check_can_serve()
    assert kinds(host, "particulier") == ["payment", "vitale"]
    assert kinds(host, "exploitant") == []  # no question: the temporary password always goes by post


async def test_a_question_no_plugin_asks_stops_the_start(make_config: Callable[..., CaisseConfig]) -> None:
    with pytest.raises(ConfigError) as refused:
        host_for(
            make_config('[statuses.exploitant]\nquestions = ["payment", "birthday"]\n', base=portal_config_text())
        ).check_can_serve()
    assert (
        "$.statuses.exploitant.questions: the status 'exploitant' offers the identity question 'birthday', "
        "which no enabled plugin asks for it (asked: payment)" in str(refused.value)
    )
    without_vitale = portal_config_text().replace('"identity_vitale", ', "")
    with pytest.raises(ConfigError) as refused:
        host_for(make_config(base=without_vitale)).check_can_serve()
    assert "$.plugins.enabled: the status 'particulier' offers the identity question 'vitale'" in str(refused.value)


async def test_an_unknown_status_is_refused_with_the_known_ones(make_config: Callable[..., CaisseConfig]) -> None:
    with pytest.raises(ConfigError) as refused:
        host_for(make_config("[statuses.retraite]\nquestions = []\n", base=portal_config_text()))
    assert "$.statuses.retraite: no enabled plugin offers the status 'retraite' (statuses: exploitant" in str(
        refused.value
    )


async def test_each_question_brings_its_own_answer_field(portal: Portal, demo_people: Any) -> None:
    """The page shows, under each question, its own field: label, hint, keyboard and length."""
    who = demo_people.DEMO_PERSONS["particulier_vitale"]
    await portal.post("/inscription/statut", {"status": "particulier"})
    await portal.post("/inscription/identifiant", {"identifier": who.nir_with_key})
    await portal.post(
        "/inscription/coordonnees",
        {
            "last_name": who.last_name,
            "first_name": who.first_name,
            "birth_date": "14/05/1985",
            "email": who.email,
            "mobile": "",
        },
    )
    page = (await portal.get("/inscription/question")).text
    assert 'name="answer-vitale"' in page and 'name="answer-payment"' in page
    assert (
        'id="f-answer-vitale" name="answer-vitale" type="text" value="" maxlength="30" autocomplete="off" '
        'inputmode="numeric"' in page
    )
    assert 'inputmode="decimal"' in page and "En euros et centimes, par exemple 1\u00a0234,50." in page
    assert "au dos de la carte, sous la puce" in page


async def test_an_exploitant_is_not_told_of_a_carte_vitale(portal: Portal, demo_people: Any) -> None:
    """Hints come from the questions offered: an exploitant is not offered the carte Vitale."""
    who = demo_people.DEMO_PERSONS["exploitant"]
    await portal.post("/inscription/statut", {"status": "exploitant"})
    await portal.post("/inscription/identifiant", {"identifier": who.nir_with_key})
    await portal.post(
        "/inscription/coordonnees",
        {
            "last_name": who.last_name,
            "first_name": who.first_name,
            "birth_date": who.birth_date.strftime("%d/%m/%Y"),
            "email": who.email,
            "mobile": "",
        },
    )
    page = (await portal.get("/inscription/question")).text
    assert "Vitale" not in page and 'name="answer-payment"' in page
