"""The carte Vitale serial number question: its wording, the form of an answer, and its check."""

from __future__ import annotations

import hmac
import re

from guichet.core import PluginContext, Question, Record, Status, StepError, Verdict, hookimpl

VITALE_QUESTION = Question(
    kind="vitale",
    label_fr="Le numéro de série de votre carte Vitale",
    hint_fr="Uniquement des chiffres, par exemple 2345678901.",
    help_fr="Si vous avez une carte Vitale et êtes affilié à la MSA pour votre santé : "
    "le numéro inscrit au dos de la carte, sous la puce.",
    input_mode="numeric",
    max_length=30,
)
MIN_DIGITS, MAX_DIGITS = 8, 20


def _normalise(serial: str) -> str:
    return re.sub(r"[\s\u00a0.\-]", "", serial).upper()


@hookimpl
def guichet_identity_questions(status: Status, record: Record | None) -> list[Question]:
    if "vitale" not in status.questions:
        return []
    if record is not None and not (record.health_affiliated and record.vitale_serial):
        return []
    return [VITALE_QUESTION]


@hookimpl
def guichet_identity_answer(question: Question, answer: str, context: PluginContext) -> str | None:
    """Digits only, spaces and dots allowed: a serial with letters is refused before it costs a try."""
    if question.kind != "vitale":
        return None
    if not answer:
        raise StepError(
            "answer",
            "Veuillez saisir le numéro de série de votre carte Vitale, ou choisir « Je ne peux pas répondre ».",
        )
    typed = _normalise(answer)
    if not re.fullmatch(r"[0-9]+", typed, re.ASCII):
        raise StepError(
            "answer", "Le numéro de série de la carte Vitale ne comporte que des chiffres (les espaces sont acceptés)."
        )
    if not MIN_DIGITS <= len(typed) <= MAX_DIGITS:
        raise StepError(
            "answer",
            f"Le numéro de série de la carte Vitale comporte de {MIN_DIGITS} à {MAX_DIGITS} "
            f"chiffres : vous en avez saisi {len(typed)}.",
        )
    return typed


@hookimpl
def guichet_identity_check(question: Question, answer: str, record: Record) -> Verdict | None:
    if question.kind != "vitale":
        return None
    if not (record.health_affiliated and record.vitale_serial):
        return Verdict.WRONG
    typed = _normalise(answer)
    return (
        Verdict.RIGHT
        if hmac.compare_digest(typed.encode(), _normalise(record.vitale_serial).encode())
        else Verdict.WRONG
    )
