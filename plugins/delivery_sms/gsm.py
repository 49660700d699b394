"""GSM 03.38 (GSM-7): what fits one SMS, and French text made to fit it."""

from __future__ import annotations

import unicodedata

BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
EXTENDED = set("^{}\\[~]|€\f")  # each one costs two septets (escape + character)
ONE_SMS = 160

# French letters and typography outside GSM-7; anything else loses its accent or becomes "?"
_REPLACE = {
    "œ": "oe",
    "Œ": "OE",
    "ç": "c",
    "â": "a",
    "ê": "e",
    "î": "i",
    "ô": "o",
    "û": "u",
    "ë": "e",
    "ï": "i",
    "ÿ": "y",
    "À": "A",
    "Â": "A",
    "È": "E",
    "Ê": "E",
    "Ë": "E",
    "Î": "I",
    "Ï": "I",
    "Ô": "O",
    "Ù": "U",
    "Û": "U",
    "Ÿ": "Y",
    "’": "'",
    "‘": "'",
    "‚": "'",
    "´": "'",
    "`": "'",
    "“": '"',
    "”": '"',
    "„": '"',
    "«": '"',
    "»": '"',
    "–": "-",
    "—": "-",
    "‐": "-",
    "‑": "-",
    "…": "...",
    "•": "-",
    "·": ".",
    "\u00a0": " ",
    "\u202f": " ",
    "\u2009": " ",
    "\u2007": " ",
    "\t": " ",
    "°": "o",
}


def to_gsm7(text: str) -> str:
    """The text with every character GSM-7 can carry; French accents kept where GSM-7 has them."""
    out = []
    for char in text:
        if char in BASIC or char in EXTENDED:
            out.append(char)
        elif char in _REPLACE:
            out.append(_REPLACE[char])
        else:
            stripped = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
            out.append(stripped if stripped and all(c in BASIC for c in stripped) else "?")
    return "".join(out)


def septets(text: str) -> int:
    """The length in GSM-7 septets; raises ValueError on a character GSM-7 cannot carry."""
    total = 0
    for char in text:
        if char in BASIC:
            total += 1
        elif char in EXTENDED:
            total += 2
        else:
            raise ValueError(f"not a GSM-7 character: U+{ord(char):04X}")
    return total
