"""Hook implementations: the registry facts, the question, the form of its answers, their check."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable
from decimal import Decimal
from typing import Any

from guichet.core import PluginContext, Question, Record, Status, Verdict, hookimpl
from guichet.core.identifiers import parse_amount
from guichet_prime_activite.facts import KEY, facts_for
from guichet_prime_activite.settings import PrimeActiviteSettings

KIND = "prime_activite"
QUESTION = Question(
    kind=KIND,
    label_fr="Le montant de votre dernière prime d'activité",
    hint_fr="En euros et centimes, par exemple 187,45.",
    help_fr="Il figure sur votre relevé de compte bancaire et dans vos décomptes de prestations.",
    input_mode="decimal",
    max_length=20,
)


def _settings(context: PluginContext) -> PrimeActiviteSettings:
    return context.settings(KIND, PrimeActiviteSettings)


def _last_payment(record: Record, context: PluginContext) -> dict[str, str] | None:
    """The newest payment, if it is recent enough to be asked about."""
    payments: list[dict[str, str]] = record.facts.get(KEY) or []
    if not payments:
        return None
    oldest = context.clock.today() - dt.timedelta(days=31 * _settings(context).window_months)
    return payments[0] if dt.date.fromisoformat(payments[0]["paid_on"]) >= oldest else None


@hookimpl
def guichet_registry_facts(record: Record, context: PluginContext) -> Awaitable[dict[str, Any]] | None:
    if record.identifier_kind != "nir":
        return None
    return facts_for(context.config.path(_settings(context).payments_csv), record.identifier)


@hookimpl
def guichet_identity_questions(status: Status, record: Record | None, context: PluginContext) -> list[Question]:
    if KIND not in status.questions:
        return []
    if record is not None and _last_payment(record, context) is None:
        return []  # the person received none lately: this question cannot be theirs
    return [QUESTION]


@hookimpl
def guichet_identity_answer(question: Question, answer: str) -> str | None:
    """An amount in euros and cents; a malformed one is refused before it costs a try."""
    if question.kind != KIND:
        return None
    return str(parse_amount(answer, "answer"))


@hookimpl
def guichet_identity_check(question: Question, answer: str, record: Record, context: PluginContext) -> Verdict | None:
    if question.kind != KIND:
        return None
    last = _last_payment(record, context)
    if last is None:
        return Verdict.WRONG
    return Verdict.RIGHT if Decimal(answer) == Decimal(last["amount"]) else Verdict.WRONG
