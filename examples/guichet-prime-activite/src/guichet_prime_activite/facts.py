"""The payments of the prime d'activité, read from the caisse's export, as facts of a registry record."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import logging
from pathlib import Path
from typing import Any

from guichet.core import StepError
from guichet.core.identifiers import parse_amount, parse_nir

log = logging.getLogger("guichet.prime_activite")
KEY = "prime_activite"  # the facts' key: the question reads what the connector writes there


def _payments_of(path: Path, nir: str) -> list[dict[str, str]]:
    """The person's payments, newest first: ``{"paid_on": "2026-11-05", "amount": "187.45"}``."""
    found, skipped = [], 0
    with path.open(encoding="utf-8", newline="") as export:
        for row in csv.DictReader(export, delimiter=";"):
            try:
                if parse_nir(row.get("nir", "")) != nir:
                    continue
                paid_on = dt.date.fromisoformat((row.get("paid_on") or "").strip())
                amount = parse_amount(row.get("amount") or "")
            except (StepError, ValueError):
                skipped += 1
                continue
            found.append({"paid_on": paid_on.isoformat(), "amount": str(amount)})
    if skipped:
        log.warning("%s line(s) of the prime d'activité export could not be read", skipped)
    return sorted(found, key=lambda payment: payment["paid_on"], reverse=True)


async def facts_for(path: Path, nir: str) -> dict[str, Any]:
    """``{"prime_activite": [...]}`` when the export knows payments of this person, else nothing."""
    payments = await asyncio.to_thread(_payments_of, path, nir)
    return {KEY: payments} if payments else {}
