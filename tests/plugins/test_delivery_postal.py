"""delivery_postal: PDF letters read back with pypdf, the spool index, idempotence, addresses, fonts."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from guichet.core.clock import FrozenClock
from guichet.core.config import CaisseConfig
from guichet.core.context import PluginContext
from guichet.core.database import Database
from guichet.core.errors import DeliveryError
from guichet.core.keys import Keys
from guichet.core.outbox import FAILED, SENT, enqueue
from guichet.core.outbox_worker import OutboxWorker
from guichet.core.plugins import PluginHost
from guichet.core.structs import Message, PostalAddress, Recipient
from guichet.plugins.delivery_postal import hooks
from guichet.plugins.delivery_postal.channel import PostalChannel, address_lines, french_date, parse_letter
from guichet.testing import base_with_plugins

T0 = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)
ADDRESS = PostalAddress(
    lines=("Madame Marie-Hélène DUPONT", "Lieu-dit Les Œillets", "12 chemin des Écoliers", "40000 MONT-DE-MARSAN")
)
RECIPIENT = Recipient(name="Madame Marie-Hélène DUPONT", address=ADDRESS)
PASSWORD_PAYLOAD = {"password": "Ab3#kP9mQw2xZr", "expires_on": "31/03/2026", "masked_identifier": "185*******123"}


def message(
    template: str = "temporary_password",
    recipient: Recipient = RECIPIENT,
    payload: dict[str, Any] | None = None,
    id: int = 12,
) -> Message:
    return Message(
        id=id,
        channel="postal",
        template=template,
        recipient=recipient,
        payload=PASSWORD_PAYLOAD if payload is None else payload,
        caisse_name="MSA Test",
        created_at=T0,
    )


@pytest.fixture
def channel_for(make_config: Callable[..., CaisseConfig], tmp_path: Path) -> Callable[..., PostalChannel]:
    def factory(settings: str = 'spool_dir = "spool"') -> PostalChannel:
        config = make_config(
            f"[plugins.settings.delivery_postal]\n{settings}", base=base_with_plugins("delivery_postal")
        )
        context = PluginContext(config=config, database=None, clock=FrozenClock(T0))  # type: ignore[arg-type]
        [channel] = hooks.guichet_channels(context=context)
        assert isinstance(channel, PostalChannel)
        return channel

    return factory


def pdf_text(path: Path) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(path).pages)


def index_lines(spool: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (spool / "index.jsonl").read_text().splitlines()]


async def test_temporary_password_letter(channel_for: Callable[..., PostalChannel], tmp_path: Path) -> None:
    channel = channel_for()
    await channel.send(message())
    spool = tmp_path / "spool"
    assert channel.spool == spool
    text = pdf_text(spool / "letter-12.pdf")
    lines = text.splitlines()
    # the letterhead, then the address block in the window, in that order
    head = lines.index("MSA Test")
    assert lines[head : head + 3] == ["MSA Test", "1 rue de la Paix", "75002 PARIS"]
    start = lines.index("Madame Marie-Hélène DUPONT")
    assert lines[start : start + 4] == list(ADDRESS.lines)
    assert "Le 1er mars 2026" in lines and "Réf. : 12" in lines
    assert "Objet : votre mot de passe temporaire pour Mon espace privé" in lines
    assert "Ab3#kP9mQw2xZr" in lines  # alone on its line: the boxed password
    assert "185*******123" in text and "31/03/2026" in text and "01 23 45 67 89" in text
    [entry] = index_lines(spool)
    assert entry == {
        "message_id": 12,
        "template": "temporary_password",
        "file": "letter-12.pdf",
        "created": T0.isoformat(),
        "pages": 1,
        "recipient_name": "Madame Marie-Hélène DUPONT",
        "subject": "votre mot de passe temporaire pour Mon espace privé",
        "address_truncated": False,
    }


async def test_the_address_sits_in_the_dl_window(channel_for: Callable[..., PostalChannel], tmp_path: Path) -> None:
    await channel_for().send(message())
    page = PdfReader(tmp_path / "spool" / "letter-12.pdf").pages[0]
    height = float(page.mediabox.height)
    found: dict[str, tuple[float, float]] = {}

    def visit(text: str, cm: Any, tm: Any, font: Any, size: Any) -> None:
        if text.strip():
            found.setdefault(text.strip(), (tm[4] / 72 * 25.4, (height - tm[5]) / 72 * 25.4))

    page.extract_text(visitor_text=visit)
    x, y = found["Madame Marie-Hélène DUPONT"]
    assert 108 <= x <= 112 and 44 <= y <= 52  # mm from the left and from the top
    last_x, last_y = found["40000 MONT-DE-MARSAN"]
    assert last_x == pytest.approx(x) and last_y - y == pytest.approx(15, abs=0.5)


async def test_registration_letter(channel_for: Callable[..., PostalChannel], tmp_path: Path) -> None:
    await channel_for().send(
        message(
            "registration_letter", payload={"masked_identifier": "185*******123", "registered_on": "01/03/2026"}, id=13
        )
    )
    text = pdf_text(tmp_path / "spool" / "letter-13.pdf")
    assert "Objet : confirmation de votre inscription à Mon espace privé" in text
    assert "01/03/2026" in text and "185*******123" in text


async def test_idempotent_by_message_id(channel_for: Callable[..., PostalChannel], tmp_path: Path) -> None:
    channel = channel_for()
    await channel.send(message())
    first = (tmp_path / "spool" / "letter-12.pdf").read_bytes()
    await channel.send(message())
    await asyncio.gather(channel.send(message(id=14)), channel.send(message(id=14)))
    assert [e["message_id"] for e in index_lines(tmp_path / "spool")] == [12, 14]
    assert sorted(p.name for p in (tmp_path / "spool").iterdir()) == [
        ".written",
        "index.jsonl",
        "letter-12.pdf",
        "letter-14.pdf",
    ]
    assert (tmp_path / "spool" / "letter-12.pdf").read_bytes() == first


async def test_idempotence_does_not_read_the_index_and_survives_the_mail_room(
    channel_for: Callable[..., PostalChannel], tmp_path: Path
) -> None:
    """A letter's marker says it was written: the index, which grows with every letter, is not read
    for a new one (an index line alone does not stop it); a letter the mail room has collected is
    not written again."""
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "index.jsonl").write_text('{"message_id": 12, "file": "letter-12.pdf"}\n')
    channel = channel_for()
    await channel.send(message())
    assert [e["message_id"] for e in index_lines(spool)] == [12, 12]
    (spool / "letter-12.pdf").unlink()  # printed and taken away
    await channel.send(message())
    assert not (spool / "letter-12.pdf").exists() and len(index_lines(spool)) == 2


async def test_a_crash_after_the_index_line_writes_no_second_line(
    channel_for: Callable[..., PostalChannel], tmp_path: Path
) -> None:
    channel = channel_for()
    await channel.send(message())
    written = next((tmp_path / "spool").glob(".written/*"))
    written.write_text("pending")  # as if the process died between the index line and the marker
    await channel.send(message())
    assert [e["message_id"] for e in index_lines(tmp_path / "spool")] == [12]
    assert written.read_text() == "done"


async def test_without_dejavu_the_core_fonts_are_used(
    channel_for: Callable[..., PostalChannel], tmp_path: Path
) -> None:
    channel = channel_for(f'spool_dir = "spool"\nfont_dir = "{tmp_path / "no-fonts"}"')
    assert not channel.unicode_fonts
    await channel.send(message())
    text = pdf_text(tmp_path / "spool" / "letter-12.pdf")
    assert "Lieu-dit Les OEillets" in text and "Marie-Hélène" in text and "Ab3#kP9mQw2xZr" in text


def test_address_rules() -> None:
    lines, truncated = address_lines(
        message(
            recipient=Recipient(
                name="Jean MARTIN",
                address=PostalAddress(
                    lines=(
                        "  12  rue   des Lilas ",
                        "",
                        "Résidence des Grands Chênes de la Forêt Domaniale",
                        "33000 BORDEAUX",
                    )
                ),
            )
        )
    )
    assert lines == ["Jean MARTIN", "12 rue des Lilas", "Résidence des Grands Chênes de la Forê", "33000 BORDEAUX"]
    assert truncated and all(len(line) <= 38 for line in lines)
    with pytest.raises(DeliveryError, match="no known postal address") as missing:
        address_lines(message(recipient=Recipient(name="Jean MARTIN")))
    assert missing.value.permanent
    with pytest.raises(DeliveryError, match="no known postal address"):
        address_lines(message(recipient=Recipient(name="Jean MARTIN", address=PostalAddress(lines=("", " ")))))
    with pytest.raises(DeliveryError, match="7 lines, more than 6") as too_long:
        address_lines(message(recipient=Recipient(name="X", address=PostalAddress(lines=tuple("abcdef")))))
    assert too_long.value.permanent


async def test_a_truncated_address_is_flagged_for_the_mail_room(
    channel_for: Callable[..., PostalChannel], tmp_path: Path
) -> None:
    long = Recipient(
        name="Jean MARTIN",
        address=PostalAddress(lines=("Bâtiment B escalier 4 appartement 1207 bis", "33000 BORDEAUX")),
    )
    await channel_for().send(message(recipient=long))
    [entry] = index_lines(tmp_path / "spool")
    assert entry["address_truncated"] is True and entry["recipient_name"] == "Jean MARTIN"


def test_letter_templates_and_dates() -> None:
    letter = parse_letter("Objet : un test\n\nPremier\nparagraphe.\n\n[[ Xy#12 ]]\nSuite.")
    assert letter.subject == "un test"
    assert letter.blocks == [("text", "Premier paragraphe."), ("box", "Xy#12"), ("text", "Suite.")]
    with pytest.raises(DeliveryError, match="Objet"):
        parse_letter("Bonjour")
    assert french_date(dt.date(2026, 3, 1)) == "1er mars 2026" and french_date(dt.date(2026, 8, 15)) == "15 août 2026"


async def test_only_letters_go_by_post(channel_for: Callable[..., PostalChannel]) -> None:
    with pytest.raises(DeliveryError) as failed:
        await channel_for().send(message("login_code", payload={"code": "123456", "lifetime_minutes": 15}))
    assert failed.value.permanent


async def test_an_unwritable_spool_is_temporary(channel_for: Callable[..., PostalChannel], tmp_path: Path) -> None:
    (tmp_path / "blocked").write_text("a file where the folder should be")
    with pytest.raises(DeliveryError, match="spool folder") as failed:
        await channel_for('spool_dir = "blocked/letters"').send(message())
    assert not failed.value.permanent


async def test_through_the_outbox(
    make_config: Callable[..., CaisseConfig], database: Database, db_url: str, tmp_path: Path
) -> None:
    config = make_config(
        '[plugins.settings.delivery_postal]\nspool_dir = "courrier"',
        database_url=db_url,
        base=base_with_plugins("delivery_postal"),
    )
    clock = FrozenClock(T0)
    keys = Keys.from_config(config)
    host = PluginHost(config, PluginContext(config=config, database=database, clock=clock))
    async with database.transaction():
        good = await enqueue(
            database,
            keys,
            channel="postal",
            template="temporary_password",
            recipient=RECIPIENT,
            payload=PASSWORD_PAYLOAD,
            now=T0,
        )
        nowhere = await enqueue(
            database,
            keys,
            channel="postal",
            template="registration_letter",
            recipient=Recipient(name="Jean MARTIN", address=PostalAddress(lines=())),
            payload={"masked_identifier": "185*******123", "registered_on": "01/03/2026"},
            now=T0,
        )
    assert await OutboxWorker(database, keys, host, clock, worker_id="post").run_once() == 2
    t = database.t.OutboxMessage
    rows = {row["id"]: row for row in await t.select().run()}
    assert rows[good]["state"] == SENT and rows[good]["sealed"] == ""
    assert (
        rows[nowhere]["state"] == FAILED and rows[nowhere]["last_error"] == "the recipient has no known postal address"
    )
    assert "Ab3#kP9mQw2xZr" in pdf_text(tmp_path / "courrier" / f"letter-{good}.pdf")
    assert [e["message_id"] for e in index_lines(tmp_path / "courrier")] == [good]


def test_hook_guichet_channels_postal_direct_and_through_the_host(
    make_config: Callable[..., CaisseConfig], tmp_path: Path
) -> None:
    config = make_config("", base=base_with_plugins("delivery_postal"))  # no settings: every default
    context = PluginContext(config=config, database=None, clock=FrozenClock(T0))  # type: ignore[arg-type]
    [direct] = hooks.guichet_channels(context=context)
    assert isinstance(direct, PostalChannel) and direct.label_fr == "par courrier"
    assert direct.spool == tmp_path / "var/spool/letters" and not direct.spool.exists()  # made at the first letter
    host = PluginHost(config, context)
    assert isinstance(host.channel("postal"), PostalChannel) and set(host.channels()) == {"postal"}
