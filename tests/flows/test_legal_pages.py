"""The pages a public service's site owes its users: the RGAA accessibility status in every page's
footer, the accessibility statement, the mentions légales and the données personnelles page, all
from the caisse's config (with defaults that make sense for any caisse)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from guichet.core.config import decode_config
from guichet.core.errors import ConfigError
from tests.conftest import Portal
from tests.flows.helpers import is_full_page, is_partial, portal_with, visible_text

FOOTER = '<a href="/accessibilite">Accessibilité : {} conforme</a>'
LEGAL_CONFIG = """
[legal.accessibility]
compliance = "totalement"
audit_date = "02/10/2026"
audited_by = "Access42"
rate = "100 % des critères du RGAA 4.1 sont respectés"
non_conformities = []
derogations = ["La carte interactive des agences (charge disproportionnée)."]
contact_email = "accessibilite@test.invalid"

[legal.notice]
publication_director = "Mme Jeanne Directrice"
host = ["Hébergeur Souverain SAS", "1 rue du Cloud", "59000 LILLE"]

[legal.privacy]
dpo_email = "dpo@test.invalid"
audit_retention = "18 mois"
"""


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/connexion",
        "/inscription/statut",
        "/mot-de-passe-oublie/identifiant",
        "/aide/identifiant",
        "/page-qui-n-existe-pas",
        "/accessibilite",
    ],
)
async def test_every_page_states_its_accessibility_and_links_the_legal_pages(portal: Portal, path: str) -> None:
    r = await portal.get(path)
    assert FOOTER.format("partiellement") in r.text  # the default: no audit says otherwise
    assert '<a href="/mentions-legales">Mentions légales</a>' in r.text
    assert '<a href="/donnees-personnelles">Données personnelles</a>' in r.text


async def test_the_pages_say_what_the_caisse_config_says(portal_factory: Any, make_config: Any, db_url: str) -> None:
    portal = await portal_with(portal_factory, make_config, db_url, extra=LEGAL_CONFIG)
    r = await portal.get("/accessibilite")
    assert r.status_code == 200 and is_full_page(r)
    text = visible_text(r)
    assert FOOTER.format("totalement") in r.text
    for wanted in (
        "Déclaration d'accessibilité",
        "est totalement conforme avec le référentiel général d'amélioration de l'accessibilité (RGAA 4.1)",
        "L'audit de conformité réalisé le 02/10/2026 par "
        "Access42 révèle que 100 % des critères du RGAA 4.1 sont respectés",
        "Aucune non-conformité n'a été relevée.",
        "La carte interactive des agences",
        "accessibilite@test.invalid",
        "Défenseur des droits",
        "09 69 39 00 00",
        "Libre réponse 71120, 75342 Paris CEDEX 07",
    ):
        assert wanted in text, wanted
    r = await portal.get("/mentions-legales")
    text = visible_text(r)
    for wanted in (
        "Mentions légales",
        "Directeur de la publication",
        "Mme Jeanne Directrice",
        "Hébergeur Souverain SAS",
        "59000 LILLE",
    ):
        assert wanted in text, wanted
    r = await portal.get("/donnees-personnelles")
    text = visible_text(r)
    for wanted in (
        "Données personnelles",
        "dpo@test.invalid",
        "18 mois, y compris après la fermeture",
        "30 jours, ou jusqu'au retrait de la confiance",
        "article 15",
        "article 17",
        "Mes données",
        "Fermer mon espace privé",
        "CNIL",
        "www.cnil.fr/fr/plaintes",
    ):
        assert wanted in text, wanted
    r = await portal.get("/donnees-personnelles", htmx=True)
    assert is_partial(r) and "dpo@test.invalid" in r.text


async def test_without_a_legal_section_the_pages_use_the_caisse_own_details(portal: Portal) -> None:
    text = visible_text(await portal.get("/accessibilite"))
    assert "est partiellement conforme" in text and "Aucun audit de conformité n'a encore été réalisé." in text
    text = visible_text(await portal.get("/mentions-legales"))
    assert f"hébergé par {portal.services.config.caisse.name}" in text
    text = visible_text(await portal.get("/donnees-personnelles"))
    assert (
        f"Le responsable du traitement des données de Mon espace privé est {portal.services.config.caisse.name}" in text
    )
    assert "1 an, y compris après la fermeture de votre espace privé" in text


def test_every_shipped_config_fills_the_legal_pages(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for path in sorted((root / "config").glob("*.toml")):
        config = decode_config(path.read_text(encoding="utf-8"), source=str(path))
        legal = config.legal
        assert legal.accessibility.audit_date and legal.accessibility.statement_date, path.name
        assert legal.privacy.dpo_email and legal.notice.publication_director and legal.notice.host, path.name


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('\n[legal.accessibility]\ncompliance = "presque"\n', "$.legal.accessibility.compliance"),
        ('\n[legal.privacy]\ndpo = "x@y.fr"\n', "$.legal.privacy"),
        ('\n[third_parties]\nidentifier = "nir"\n', "$.third_parties.identifier"),
    ],
)
def test_a_legal_config_typo_is_refused_with_its_path(make_config: Any, extra: str, key: str) -> None:
    from tests.conftest import portal_config_text

    with pytest.raises(ConfigError) as refused:
        make_config(base=portal_config_text(extra))
    assert key in str(refused.value)
