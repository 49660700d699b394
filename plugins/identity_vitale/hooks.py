"""The carte Vitale serial number question and its check."""
from __future__ import annotations

import hmac
import re

from guichet.core import Question, Record, Status, Verdict, hookimpl

VITALE_QUESTION = Question(
    kind="vitale",
    label_fr="Le numéro de série de votre carte Vitale",
    hint_fr="Si vous avez une carte Vitale et êtes affilié à la MSA pour votre santé : "
            "le numéro inscrit au dos de la carte, sous la puce.",
    input_mode="numeric",
)


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
def guichet_identity_check(question: Question, answer: str, record: Record) -> Verdict | None:
    if question.kind != "vitale":
        return None
    if not (record.health_affiliated and record.vitale_serial):
        return Verdict.WRONG
    typed = _normalise(answer)
    if not re.fullmatch(r"[0-9A-Z]{6,20}", typed, re.ASCII):
        return Verdict.WRONG
    return Verdict.RIGHT if hmac.compare_digest(typed, _normalise(record.vitale_serial)) else Verdict.WRONG
