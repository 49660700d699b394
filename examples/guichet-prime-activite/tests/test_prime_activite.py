"""guichet-prime-activite's own tests, as its CI runs them: guichet's test kit only (the ``guichet``
pytest plugin's fixtures and ``guichet.testing``), the plugin found by the entry point this
distribution declares (``pip install -e .`` first), loaded with the plugins a caisse runs it with.

The registry is the kit's (``guichet_plugin_site.add_registry``): it knows a person, and this plugin
adds, from the caisse's export, what the registry never names."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from guichet.core import ConfigError, Record, StepError, Verdict
from guichet.testing import assert_plugin_conforms

NIR = "1850578006084"
NIR_KEY = "1850578006084" + "97"  # the 15-character form some exports use; any key will do for a foreign line
OTHER = "2920375112233"
MARIE = Record(identifier_kind="nir", identifier=NIR, last_name="DUPONT", first_name="Marie")
JULIEN = Record(identifier_kind="nir", identifier=OTHER, last_name="MARTIN", first_name="Julien")
SETTINGS = """
[plugins.settings.prime_activite]
payments_csv = "exports/prime-activite.csv"

[statuses.particulier]
questions = ["vitale", "prime_activite", "payment"]
"""
# the MSA statuses and their two questions, this plugin, and a registry
PLUGINS = ["statuses_msa", "identity_vitale", "identity_payment", "prime_activite"]


@pytest.fixture
def export(tmp_path: Path, guichet_clock: Any) -> Callable[..., Path]:
    """Write the caisse's export (in the test caisse's folder, where its relative paths point)."""

    def write(*lines: str) -> Path:
        path = tmp_path / "exports" / "prime-activite.csv"
        path.parent.mkdir(exist_ok=True)
        path.write_text("nir;paid_on;amount\n" + "".join(f"{line}\n" for line in lines), encoding="utf-8")
        return path

    return write


@pytest.fixture
def host(guichet_host: Callable[..., Any], guichet_plugin_site: Any) -> Callable[..., Any]:
    """A plugin host as a running caisse loads it, with a registry that knows Marie and Julien."""
    guichet_plugin_site.add_registry("test_registry", [MARIE, JULIEN])

    def make(extra: str = SETTINGS, enabled: list[str] | None = None) -> Any:
        return guichet_host(extra, enabled=enabled or [*PLUGINS, "test_registry"])

    return make


def days_ago(clock: Any, days: int) -> str:
    return (clock.today() - dt.timedelta(days=days)).isoformat()


def test_the_plugin_conforms(guichet_config: Callable[..., Any], export: Callable[..., Path]) -> None:
    export()
    info = assert_plugin_conforms("prime_activite", config=guichet_config(SETTINGS, enabled=PLUGINS))
    assert info.source.startswith("guichet-prime-activite ") and info.module == "guichet_prime_activite.hooks"
    assert info.hooks == (
        "guichet_identity_answer",
        "guichet_identity_check",
        "guichet_identity_questions",
        "guichet_registry_facts",
    )


async def test_the_registry_record_gets_the_payments_of_the_export(
    host: Callable[..., Any], export: Callable[..., Path], guichet_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    export(
        f"{NIR};{days_ago(guichet_clock, 50)};180,00",
        f"{NIR_KEY[:13]};{days_ago(guichet_clock, 20)};1 187,45",
        f"{OTHER};{days_ago(guichet_clock, 10)};99.90",
        f"{NIR};yesterday;12",
        f"not-a-nir;{days_ago(guichet_clock, 5)};12",
    )
    with caplog.at_level(logging.WARNING):
        record = await host().registry_lookup("nir", NIR)
    assert record is not None and record.last_name == "DUPONT", "the registry's own record, facts added"
    assert record.facts == {
        "prime_activite": [
            {"paid_on": days_ago(guichet_clock, 20), "amount": "1187.45"},
            {"paid_on": days_ago(guichet_clock, 50), "amount": "180.00"},
        ]
    }
    assert "2 line(s) of the prime d'activité export could not be read" in caplog.text
    assert NIR not in caplog.text and "yesterday" not in caplog.text, "the log says how many, never which"


async def test_someone_the_export_does_not_know_gets_no_facts(
    host: Callable[..., Any], export: Callable[..., Path]
) -> None:
    export(f"{NIR};2026-01-05;187,45")
    record = await host().registry_lookup("nir", OTHER)
    assert record is not None and record.facts == {}


def test_the_caisse_places_the_question_among_its_own(host: Callable[..., Any], export: Callable[..., Path]) -> None:
    export()
    h = host()
    page = h.identity_questions(h.status("particulier"), None)
    assert [q.kind for q in page] == ["vitale", "prime_activite", "payment"]
    [question] = [q for q in page if q.kind == "prime_activite"]
    assert question.label_fr == "Le montant de votre dernière prime d'activité"
    assert question.input_mode == "decimal" and "187,45" in question.hint_fr
    assert "prime_activite" not in [q.kind for q in h.identity_questions(h.status("exploitant"), None)]
    h.check_questions()


def test_a_caisse_that_does_not_list_it_does_not_offer_it(
    host: Callable[..., Any], export: Callable[..., Path]
) -> None:
    export()
    h = host(SETTINGS.split("[statuses.particulier]")[0])
    assert "prime_activite" not in [q.kind for q in h.identity_questions(h.status("particulier"), None)]


def test_a_caisse_that_lists_it_without_the_plugin_cannot_start(host: Callable[..., Any]) -> None:
    h = host(
        SETTINGS.split('[plugins.settings.prime_activite]\npayments_csv = "exports/prime-activite.csv"\n')[1],
        enabled=["statuses_msa", "identity_vitale", "identity_payment", "test_registry"],
    )
    with pytest.raises(ConfigError) as refused:
        h.check_questions()
    assert "'prime_activite'" in str(refused.value) and "particulier" in str(refused.value)


@pytest.mark.parametrize(
    ("typed", "kept"), [("187,45", "187.45"), ("1 187,45", "1187.45"), ("187.45 €", "187.45"), ("187", "187")]
)
def test_an_amount_is_read_as_people_type_it(
    host: Callable[..., Any], export: Callable[..., Path], typed: str, kept: str
) -> None:
    export()
    h = host()
    [question] = [q for q in h.identity_questions(h.status("particulier"), None) if q.kind == "prime_activite"]
    assert h.identity_answer(question, typed) == kept


@pytest.mark.parametrize("typed", ["beaucoup", "187,456", "-12", "1e3", "١٨٧"])
def test_a_malformed_amount_is_refused_in_french_before_it_costs_a_try(
    host: Callable[..., Any], export: Callable[..., Path], typed: str
) -> None:
    export()
    h = host()
    [question] = [q for q in h.identity_questions(h.status("particulier"), None) if q.kind == "prime_activite"]
    with pytest.raises(StepError) as refused:
        h.identity_answer(question, typed)
    assert refused.value.field == "answer" and "Saisissez le montant en euros" in refused.value.message_fr


async def test_the_last_payment_is_the_right_answer(
    host: Callable[..., Any], export: Callable[..., Path], guichet_clock: Any
) -> None:
    export(f"{NIR};{days_ago(guichet_clock, 50)};180,00", f"{NIR};{days_ago(guichet_clock, 20)};187,45")
    h = host()
    record = await h.registry_lookup("nir", NIR)
    [question] = [q for q in h.identity_questions(h.status("particulier"), record) if q.kind == "prime_activite"]
    assert h.identity_check(question, h.identity_answer(question, "187,45"), record) is Verdict.RIGHT
    assert h.identity_check(question, h.identity_answer(question, "180,00"), record) is Verdict.WRONG, "an older one"
    assert h.identity_check(question, h.identity_answer(question, "187,46"), record) is Verdict.WRONG


async def test_a_payment_too_old_to_remember_is_not_asked_about(
    host: Callable[..., Any], export: Callable[..., Path], guichet_clock: Any
) -> None:
    export(f"{NIR};{days_ago(guichet_clock, 20)};187,45")
    h = host()
    record = await h.registry_lookup("nir", NIR)
    assert "prime_activite" in [q.kind for q in h.identity_questions(h.status("particulier"), record)]
    guichet_clock.advance(days=31 * 3)  # window_months = 3 by default
    offered = [q.kind for q in h.identity_questions(h.status("particulier"), record)]
    assert "prime_activite" not in offered, "for this person the question is dropped (the page still shows it)"
    question = next(q for q in h.identity_questions(h.status("particulier"), None) if q.kind == "prime_activite")
    assert h.identity_check(question, "187.45", record) is Verdict.WRONG


async def test_without_a_payment_every_answer_is_wrong(host: Callable[..., Any], export: Callable[..., Path]) -> None:
    """The page is the same for everyone (it tells nothing of the export); the answer of someone the
    export does not know is judged wrong, so the password goes by post."""
    export(f"{NIR};2026-01-05;187,45")
    h = host()
    julien = await h.registry_lookup("nir", OTHER)
    question = next(q for q in h.identity_questions(h.status("particulier"), None) if q.kind == "prime_activite")
    assert h.identity_check(question, "187.45", julien) is Verdict.WRONG


async def test_an_export_that_cannot_be_read_adds_nothing(host: Callable[..., Any]) -> None:
    """No file: the registry still answers, the question is not offered to the person."""
    h = host()
    record = await h.registry_lookup("nir", NIR)
    assert record == MARIE
    assert "prime_activite" not in [q.kind for q in h.identity_questions(h.status("particulier"), record)]
