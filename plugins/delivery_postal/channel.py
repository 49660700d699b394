"""PostalChannel: a PDF letter per message, for a DL window envelope, in the mail room's spool folder."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, TextIO

import msgspec

from guichet.core import LETTER, PARIS, PASSWORD, POSTAL, DeliveryError, Message, PluginContext
from guichet.core.delivery_templates import render, template_context, template_environment
from guichet.plugins.delivery_postal.settings import PostalSettings

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: one worker per spool folder
    fcntl = None  # type: ignore[assignment]

BUILTIN_TEMPLATES = Path(__file__).parent / "templates"
LETTERS = (
    "temporary_password",
    "registration_letter",
    "third_party_password",
    "third_party_rejected_letter",
    "account_closed_letter",
    "recovery_codes_letter",
)
MAX_LINES, MAX_LINE_LENGTH = 6, 38  # AFNOR NF Z10-011: what a window envelope and La Poste's sorting read
MONTHS = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)
_BOX = re.compile(r"^\[\[\s*(?P<value>.*?)\s*\]\]$")
_LATIN1 = str.maketrans(
    {
        "’": "'",
        "‘": "'",
        "“": '"',
        "”": '"',
        "œ": "oe",
        "Œ": "OE",
        "…": "...",
        "–": "-",
        "—": "-",
        "€": "EUR",
        "\u202f": " ",
        "\u2009": " ",
        "•": "-",
    }
)


WRITTEN_DIR = ".written"  # the mail room leaves it alone: one small marker per letter written
PENDING, DONE = "pending", "done"


def _durable_write(path: Path, text: str) -> None:
    with open(path, "w", encoding="ascii") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())


def _indexed(index: TextIO, message_id: int) -> bool:
    index.seek(0)
    for line in index:
        try:
            if json.loads(line).get("message_id") == message_id:
                return True
        except ValueError:
            continue
    return False


class IndexEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One line of index.jsonl: what the mail room needs to print and post a letter."""

    message_id: int
    template: str
    file: str
    created: str
    pages: int
    recipient_name: str
    subject: str
    address_truncated: bool = False


class Letter(msgspec.Struct, frozen=True, kw_only=True):
    subject: str
    blocks: list[tuple[str, str]]  # ("text" | "box", content)


def french_date(day: dt.date) -> str:
    return f"{'1er' if day.day == 1 else day.day} {MONTHS[day.month - 1]} {day.year}"


def address_lines(message: Message) -> tuple[list[str], bool]:
    """The window block: the recipient's name, then the known address; (lines, truncated)."""
    address = message.recipient.address
    lines = [" ".join(line.split()) for line in (address.lines if address else ())]
    lines = [line for line in lines if line]
    if not lines:
        raise DeliveryError("the recipient has no known postal address", permanent=True)
    name = " ".join(message.recipient.name.split())
    if name and name.casefold() != lines[0].casefold():
        lines.insert(0, name)
    if len(lines) > MAX_LINES:
        raise DeliveryError(f"the postal address has {len(lines)} lines, more than {MAX_LINES}", permanent=True)
    truncated = any(len(line) > MAX_LINE_LENGTH for line in lines)
    return [line[:MAX_LINE_LENGTH] for line in lines], truncated


def parse_letter(text: str) -> Letter:
    """``Objet : ...`` first, then paragraphs separated by blank lines; ``[[ x ]]`` lines become boxes."""
    lines = text.strip().splitlines()
    if not lines or not lines[0].startswith("Objet"):
        raise DeliveryError("a letter template must start with 'Objet : ...'", permanent=True)
    subject = lines[0].partition(":")[2].strip() or lines[0]
    blocks: list[tuple[str, str]] = []
    paragraph: list[str] = []
    for line in lines[1:] + [""]:
        stripped = line.strip()
        box = _BOX.match(stripped)
        if box or not stripped:
            if paragraph:
                blocks.append(("text", " ".join(paragraph)))
                paragraph = []
            if box:
                blocks.append(("box", box["value"]))
        else:
            paragraph.append(stripped)
    return Letter(subject=subject, blocks=blocks)


@functools.cache
def _pdf_class() -> type[Any]:
    """fpdf2 (and Pillow, fontTools) imported at the first letter: ~30 MiB a web process never needs."""
    # fontTools logs a font subset's glyph names at INFO: for the temporary password's letter, that is the
    # password's character set. These libraries speak only of trouble, whatever level the root logger has.
    for name in ("fontTools", "fpdf", "PIL"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from fpdf import FPDF

    class _Pdf(FPDF):  # type: ignore[misc]
        footer_text = ""
        sans = "Helvetica"

        def footer(self) -> None:
            if not self.footer_text:
                return
            self.set_y(-18)
            self.set_font(self.sans, "", 8)
            self.set_text_color(90, 90, 90)
            self.multi_cell(0, 3.5, self.footer_text, align="C")
            self.set_text_color(0, 0, 0)

    return _Pdf


class PostalChannel:
    """The ``postal`` channel."""

    name = "postal"
    label_fr = "par courrier"
    reaches = POSTAL
    carries = frozenset({PASSWORD, LETTER})

    def __init__(self, settings: PostalSettings, context: PluginContext) -> None:
        self.settings = settings
        self.context = context
        config = context.config
        self.spool = config.path(settings.spool_dir or f"{config.server.spool_dir}/letters")  # made at first letter
        self.env = template_environment(
            context,
            settings.templates_dir,
            BUILTIN_TEMPLATES,
            setting="$.plugins.settings.delivery_postal.templates_dir",
        )
        for template in LETTERS:
            self.env.get_template(f"{template}.txt")
        fonts = Path(settings.font_dir)
        self.fonts = {
            style: fonts / name
            for style, name in (("", "DejaVuSans.ttf"), ("B", "DejaVuSans-Bold.ttf"), ("mono", "DejaVuSansMono.ttf"))
        }
        self.unicode_fonts = all(path.is_file() for path in self.fonts.values())

    def __repr__(self) -> str:
        return f"PostalChannel(spool={str(self.spool)!r})"

    def _text(self, value: str) -> str:
        if self.unicode_fonts:
            return value
        # the PDF core fonts only know Latin-1
        return value.translate(_LATIN1).encode("latin-1", "replace").decode("latin-1")

    def render_pdf(self, message: Message, letter: Letter, address: list[str]) -> tuple[bytes, int]:
        """The letter's PDF bytes and page count."""
        from fpdf.enums import XPos, YPos

        caisse = self.context.config.caisse
        pdf = _pdf_class()(orientation="P", unit="mm", format="A4")
        if self.unicode_fonts:
            pdf.add_font("DejaVu", "", str(self.fonts[""]))
            pdf.add_font("DejaVu", "B", str(self.fonts["B"]))
            pdf.add_font("DejaVuMono", "", str(self.fonts["mono"]))
            sans, mono = "DejaVu", "DejaVuMono"
        else:
            sans, mono = "Helvetica", "Courier"
        pdf.sans = sans
        assistance = caisse.assistance
        pdf.footer_text = self._text(
            " - ".join(
                part
                for part in (
                    f"Assistance Internet : {assistance.phone}" if assistance.phone else "",
                    assistance.hours,
                    assistance.email,
                )
                if part
            )
        )
        pdf.set_title(self._text(letter.subject))
        pdf.set_author(self._text(caisse.name))
        pdf.set_creator("guichet")
        now = self.context.clock.now()
        pdf.set_creation_date(now)
        pdf.set_margins(20, 15, 20)
        pdf.set_auto_page_break(auto=True, margin=25)
        pdf.add_page()

        # letterhead, top left
        pdf.set_xy(20, 15)
        head = list(caisse.postal_address) or [caisse.name]
        for index, line in enumerate(head):
            pdf.set_font(sans, "B" if index == 0 else "", 11 if index == 0 else 9)
            pdf.cell(90, 5 if index == 0 else 4.2, self._text(line), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

        # the recipient, where a DL window envelope shows it (right side, 45 mm from the top)
        pdf.set_font(sans, "", 10.5)
        pdf.set_xy(110, 45)
        for line in address:
            pdf.set_x(110)
            pdf.cell(88, 5, self._text(line), new_x=XPos.LEFT, new_y=YPos.NEXT)

        day = now.astimezone(PARIS).date()
        place = f"{self.settings.city}, le " if self.settings.city else "Le "
        pdf.set_font(sans, "", 10)
        pdf.set_xy(110, 88)
        pdf.cell(88, 5, self._text(place + french_date(day)), new_x=XPos.LEFT, new_y=YPos.NEXT)
        pdf.set_font(sans, "", 8)
        pdf.cell(88, 4, self._text(f"Réf. : {message.id}"))

        pdf.set_xy(20, 105)
        pdf.set_font(sans, "B", 11)
        pdf.multi_cell(
            170, 5.5, self._text(f"Objet : {letter.subject}"), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT
        )
        pdf.ln(4)
        for kind, content in letter.blocks:
            if kind == "box":
                pdf.ln(1)
                pdf.set_font(mono, "", 16)
                width = max(pdf.get_string_width(content) + 16, 70)
                pdf.set_x((210 - width) / 2)
                pdf.cell(width, 13, self._text(content), border=1, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
                pdf.ln(4)
            else:
                pdf.set_font(sans, "", 10.5)
                pdf.multi_cell(170, 5.2, self._text(content), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
                pdf.ln(3)
        return bytes(pdf.output()), pdf.pages_count

    def _write(self, message: Message, letter: Letter, address: list[str], truncated: bool) -> None:
        self.spool.mkdir(parents=True, exist_ok=True)
        written = self.spool / WRITTEN_DIR
        written.mkdir(exist_ok=True)
        file = f"letter-{message.id}.pdf"
        # One marker per message says how far its writing went. It is what makes a second delivery
        # write nothing, without reading the index (which grows with every letter) and whether or
        # not the mail room has already taken the letter away.
        marker = written / str(message.id)
        with open(self.spool / "index.jsonl", "a+", encoding="utf-8") as index:
            if fcntl is not None:
                fcntl.flock(index, fcntl.LOCK_EX)  # several workers may share one spool folder
            state = marker.read_text() if marker.exists() else ""
            if state == DONE:
                return  # already written: a retry after a crash, or a second delivery
            if state == PENDING and _indexed(index, message.id):  # died after its index line: rare
                _durable_write(marker, DONE)
                return
            data, pages = self.render_pdf(message, letter, address)
            temporary = self.spool / f".{file}.tmp"
            temporary.write_bytes(data)
            os.replace(temporary, self.spool / file)  # the mail room never sees half a letter
            entry = IndexEntry(
                message_id=message.id,
                template=message.template,
                file=file,
                created=self.context.clock.now().isoformat(),
                pages=pages,
                recipient_name=message.recipient.name or address[0],
                subject=letter.subject,
                address_truncated=truncated,
            )
            _durable_write(marker, PENDING)
            index.seek(0, os.SEEK_END)
            index.write(msgspec.json.encode(entry).decode() + "\n")
            index.flush()
            os.fsync(index.fileno())
            _durable_write(marker, DONE)

    async def send(self, message: Message) -> None:
        address, truncated = address_lines(message)
        letter = parse_letter(
            render(self.env, f"{message.template}.txt", template_context(self.context, message), channel="postal")
        )
        try:
            await asyncio.to_thread(self._write, message, letter, address, truncated)
        except OSError as exc:
            raise DeliveryError(f"cannot write to the spool folder ({exc.strerror})", permanent=False) from None
