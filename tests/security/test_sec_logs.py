"""Third-party libraries log what they are given: nothing derived from a secret may come out of them.

The postal letter draws the temporary password alone in a monospace font; at level info, the PDF
font subsetter listed the subset's glyph names, that is the password's character set, for every
letter (and some hundred lines per letter). The scanner (tests/security/support.py) now also looks
for a password's character set; the autouse fixture of tests/security/conftest.py runs it on every
line these tests log, with the root logger at DEBUG.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from pypdf import PdfReader

from guichet.core.logs import configure_logging
from guichet.core.structs import Message, PostalAddress, Recipient
from tests.conftest import Portal
from tests.security.support import LOG, remember

TEMPORARY = "Qz7#Kp2!wRx9"


async def test_a_letter_with_a_password_logs_nothing_derived_from_it(portal: Portal, tmp_path: Path) -> None:
    remember(TEMPORARY)
    channel = portal.services.host.channel("postal")
    assert channel is not None
    start = len(LOG)
    await channel.send(
        Message(
            id=41,
            channel="postal",
            template="temporary_password",
            recipient=Recipient(
                name="Julien LEFEBVRE",
                address=PostalAddress(lines=("Julien LEFEBVRE", "1 rue Haute", "13000 MARSEILLE")),
            ),
            payload={"password": TEMPORARY, "expires_on": "31/12/2026", "masked_identifier": "185*******084"},
            caisse_name="MSA Test",
            created_at=dt.datetime(2026, 12, 6, tzinfo=dt.UTC),
        )
    )
    letters = list(Path(portal.services.config.path("spool")).rglob("*.pdf"))
    assert letters and TEMPORARY in "".join(p.extract_text() for p in PdfReader(letters[0]).pages)
    third_party = [line for line in LOG[start:] if not line[0].startswith("guichet")]
    assert not [line for line in third_party if line[1] < logging.WARNING], (
        f"{len(third_party)} third-party lines below WARNING while writing one letter"
    )


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in ("guichet", "fontTools", "uvicorn", "asyncio")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, value in levels.items():
        logging.getLogger(name).setLevel(value)
    import guichet.core.logs

    guichet.core.logs._configured = None


@pytest.mark.parametrize("level", ["debug", "info"])
def test_third_party_loggers_stay_at_warning_whatever_the_level(restore_logging: None, level: str) -> None:
    configure_logging("json", level)
    assert logging.getLogger("guichet.outbox").isEnabledFor(getattr(logging, level.upper()))
    assert logging.getLogger("uvicorn.error").isEnabledFor(logging.INFO)
    for name in ("fontTools.subset", "fpdf.output", "PIL.PngImagePlugin", "asyncio", "httpx", "piccolo.engine.base"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
        assert logging.getLogger(name).isEnabledFor(logging.WARNING), name


async def test_text_lines_keep_the_request_id_and_mask_identifiers_in_the_message() -> None:
    """A proxy's 14-digit request id is not a SIRET: only the message is scrubbed, so the id still
    links the line to the proxy's own logs."""
    from guichet.core.logs import TextFormatter

    record = logging.LogRecord("guichet.web", logging.INFO, __file__, 1, "siret %s refused", ("12345678901234",), None)
    record.request_id = "98765432109876"
    line = TextFormatter().format(record)
    assert "[98765432109876]" in line
    assert "12345678901234" not in line and "siret <siret> refused" in line
