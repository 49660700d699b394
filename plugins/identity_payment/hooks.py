"""The payment amount question: a payment of the status's kind within its window, to the cent."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import msgspec

from guichet.core import PluginContext, Question, Record, Status, StepError, Verdict, hookimpl
from guichet.core.identifiers import parse_amount
from guichet.plugins.identity_payment.settings import DEFAULTS, HELP, LABELS, PaymentQuestionSettings


def _settings(status: Status, context: PluginContext) -> PaymentQuestionSettings | None:
    table = context.config.plugin_settings("identity_payment")
    if status.code in table:
        return msgspec.convert(table[status.code], PaymentQuestionSettings)
    return DEFAULTS.get(status.code)


def _months_ago(today: dt.date, months: int) -> dt.date:
    year, month = divmod(today.year * 12 + today.month - 1 - months, 12)
    return dt.date(year, month + 1, min(today.day, 28))


@hookimpl
def guichet_identity_questions(status: Status, record: Record | None, context: PluginContext) -> list[Question]:
    if "payment" not in status.questions:
        return []
    settings = _settings(status, context)
    if settings is None:
        return []
    return [
        Question(
            kind="payment",
            label_fr=LABELS[settings.kind].format(months=settings.window_months),
            hint_fr="En euros et centimes, par exemple 1\u00a0234,50.",
            help_fr=HELP[settings.kind],
            input_mode="decimal",
            max_length=20,
            params={"status": status.code},
        )
    ]


@hookimpl
def guichet_identity_answer(question: Question, answer: str, context: PluginContext) -> str | None:
    """An amount in euros: a malformed one is refused (the parser says how to write it) before it costs a try."""
    if question.kind != "payment":
        return None
    return str(parse_amount(answer, "answer"))


@hookimpl
def guichet_identity_check(question: Question, answer: str, record: Record, context: PluginContext) -> Verdict | None:
    if question.kind != "payment":
        return None
    status = Status(code=str(question.params.get("status", "")), label_fr="", questions=("payment",))
    settings = _settings(status, context)
    if settings is None:
        return Verdict.UNVERIFIABLE
    try:
        amount = parse_amount(answer)
    except StepError:
        return Verdict.WRONG
    since = _months_ago(context.clock.today(), settings.window_months)
    tolerance = Decimal(settings.tolerance)
    for payment in record.payments:
        if payment.kind == settings.kind and payment.date >= since and abs(payment.amount - amount) <= tolerance:
            return Verdict.RIGHT
    return Verdict.WRONG
