"""Strict parsing of what citizens type: NIR, SIRET, codes, amounts, dates, emails, phone numbers.

Every parser takes the raw text and returns the normalised value or raises StepError with a
French message. Digits are ASCII only: ``int("１２３４")`` is 1234 in Python and ``\\d`` matches
other scripts' digits unless re.ASCII is set.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation

import phonenumbers
from stdnum import luhn
from stdnum.exceptions import ValidationError as StdnumError
from stdnum.fr import nir as stdnum_nir
from stdnum.fr import siret as stdnum_siret

from guichet.core.errors import StepError

# part of the plugin API (guichet.core.PUBLIC_MODULES): a question or channel plugin parses with these
__all__ = [
    "FRENCH_REGIONS",
    "fold_name",
    "format_phone",
    "mask_email",
    "mask_identifier",
    "mask_phone",
    "nir_key",
    "parse_amount",
    "parse_birth_date",
    "parse_code",
    "parse_email",
    "parse_identifier",
    "parse_mobile",
    "parse_name",
    "parse_nir",
    "parse_phone",
    "parse_siret",
]

ASCII_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_SPACES = re.compile(r"[\s\u00a0\u202f.\-]+")


def _squeeze(raw: str) -> str:
    return _SPACES.sub("", raw.strip())


def parse_nir(raw: str, field: str = "identifier", *, allow_pseudo_months: bool = False) -> str:
    """A NIR of 13 characters, or 15 with its key checked; returns the 13 characters."""
    text = _squeeze(raw).upper()
    if not text:
        raise StepError(field, "Veuillez saisir votre numéro de Sécurité Sociale.")
    # the department sits at positions 6-7: digits, or 2A / 2B for Corsica
    if not re.fullmatch(r"[0-9]{5}([0-9]{2}|2[AB])[0-9]{6}([0-9]{2})?", text, re.ASCII):
        raise StepError(
            field,
            "Le numéro de Sécurité Sociale comporte 13 caractères (ou 15 avec la clé), "
            "uniquement des chiffres, sauf 2A ou 2B pour la Corse.",
        )
    if text[0] not in "12":
        raise StepError(field, "Le numéro de Sécurité Sociale doit commencer par 1 ou 2.")
    month = int(text[3:5])
    if not (1 <= month <= 12 or (allow_pseudo_months and 20 <= month <= 99)):
        raise StepError(field, "Le mois de naissance indiqué dans le numéro de Sécurité Sociale n'est pas valide.")
    if ("A" in text or "B" in text) and text[5:7] not in ("2A", "2B"):
        raise StepError(field, "Le numéro de Sécurité Sociale n'est pas valide.")
    if len(text) == 15:
        try:
            stdnum_nir.validate(text)
        except StdnumError:
            raise StepError(
                field,
                "La clé du numéro de Sécurité Sociale ne correspond pas. "
                "Vérifiez le numéro ou saisissez seulement les 13 premiers caractères.",
            ) from None
    return text[:13]


def nir_key(nir13: str) -> str:
    return stdnum_nir.calc_check_digits(nir13)


def parse_siret(raw: str, field: str = "identifier") -> str:
    text = _squeeze(raw)
    if not text:
        raise StepError(field, "Veuillez saisir votre numéro SIRET.")
    if not re.fullmatch(r"[0-9]{14}", text, re.ASCII):
        raise StepError(field, "Le numéro SIRET comporte 14 chiffres.")
    try:
        stdnum_siret.validate(text)
    except StdnumError:
        raise StepError(field, "Ce numéro SIRET n'est pas valide : vérifiez les chiffres saisis.") from None
    return text


# A login identifier the caisse issues to a third party ("Autre") when its SIRET cannot be one: "T"
# and 10 digits, the last a Luhn check digit. A NIR starts with 1 or 2 and a SIRET is 14 digits, so
# neither can be read as one of these, nor these as either.
ISSUED_PREFIX = "T"
ISSUED_KIND = "tiers"


def new_issued_identifier() -> str:
    """A fresh caisse-issued identifier (its uniqueness is the account table's unique index)."""
    import secrets

    body = f"{secrets.randbelow(10**9):09d}"
    return ISSUED_PREFIX + body + luhn.calc_check_digit(body)


def parse_issued(raw: str, field: str = "identifier") -> str:
    text = _squeeze(raw).upper()
    if not re.fullmatch(r"T[0-9]{10}", text, re.ASCII):
        raise StepError(field, "L'identifiant délivré par la caisse comporte la lettre T suivie de 10 chiffres.")
    if not luhn.is_valid(text[1:]):
        raise StepError(field, "Cet identifiant n'est pas valide : vérifiez les chiffres saisis.")
    return text


def parse_identifier(kind: str, raw: str, field: str = "identifier") -> str:
    return parse_siret(raw, field) if kind == "siret" else parse_nir(raw, field)


def mask_identifier(identifier: str) -> str:
    """Enough to recognise one's own, not enough to use: '1 85 ** ** *** 123'."""
    if len(identifier) < 6:
        return "*" * len(identifier)
    return identifier[:3] + "*" * (len(identifier) - 6) + identifier[-3:]


def parse_code(raw: str, length: int, field: str = "code") -> str:
    text = _squeeze(raw)
    if not text:
        raise StepError(field, "Veuillez saisir le code reçu.")
    if not re.fullmatch(rf"[0-9]{{{length}}}", text, re.ASCII):
        raise StepError(field, f"Le code comporte {length} chiffres.")
    return text


def parse_amount(raw: str, field: str = "answer") -> Decimal:
    """An amount in French ("1 234,50") or plain ("1234.50") notation, never through float."""
    text = raw.strip().replace("\u00a0", " ").replace("\u202f", " ").removesuffix("€").strip()
    if not text:
        raise StepError(field, "Veuillez saisir un montant.")
    if re.fullmatch(r"[0-9]{1,3}( [0-9]{3})+(,[0-9]{1,2})?", text, re.ASCII):
        text = text.replace(" ", "")
    if not re.fullmatch(r"[0-9]{1,9}([.,][0-9]{1,2})?", text, re.ASCII):
        raise StepError(field, "Saisissez le montant en euros, par exemple 1\u00a0234,50.")
    try:
        return Decimal(text.replace(",", "."))
    except InvalidOperation:  # pragma: no cover - the pattern above already excludes it
        raise StepError(field, "Saisissez le montant en euros, par exemple 1\u00a0234,50.") from None


def parse_birth_date(raw: str, today: dt.date, field: str = "birth_date") -> dt.date:
    """JJ/MM/AAAA as typed, or AAAA-MM-JJ from a date input."""
    text = raw.strip()
    if not text:
        raise StepError(field, "Veuillez saisir votre date de naissance.")
    match = re.fullmatch(r"([0-9]{1,2})[/.\- ]([0-9]{1,2})[/.\- ]([0-9]{4})", text, re.ASCII)
    iso = re.fullmatch(r"([0-9]{4})-([0-9]{2})-([0-9]{2})", text, re.ASCII)
    try:
        if match:
            value = dt.date(int(match[3]), int(match[2]), int(match[1]))
        elif iso:
            value = dt.date(int(iso[1]), int(iso[2]), int(iso[3]))
        else:
            raise ValueError
    except ValueError:
        raise StepError(field, "Saisissez votre date de naissance sous la forme JJ/MM/AAAA.") from None
    if value > today:
        raise StepError(field, "La date de naissance ne peut pas être dans le futur.")
    if value.year < today.year - 130:
        raise StepError(field, "Cette date de naissance n'est pas plausible.")
    return value


_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}", re.ASCII)


def parse_email(raw: str, field: str = "email", *, required: bool = True) -> str | None:
    """An email normalised with NFKC and IDNA; refuses anything a mail header could be abused with."""
    text = unicodedata.normalize("NFKC", raw).strip()
    if not text:
        if required:
            raise StepError(field, "Veuillez saisir votre adresse email.")
        return None
    message = "Saisissez une adresse email valide, par exemple nom@exemple.fr."
    if len(text) > 254 or text.count("@") != 1 or any(c.isspace() or ord(c) < 32 for c in text):
        raise StepError(field, message)
    local, domain = text.split("@")
    if not _EMAIL_LOCAL.fullmatch(local) or local.startswith(".") or local.endswith(".") or ".." in local:
        raise StepError(field, message)
    try:
        ascii_domain = domain.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise StepError(field, message) from None
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", lab, re.ASCII) for lab in labels):
        raise StepError(field, message)
    return f"{local}@{ascii_domain}"


def mask_email(email: str) -> str:
    """x…x@gmail.com: the first and last letters of the local part."""
    local, _, domain = email.partition("@")
    shown = local[0] + "…" + local[-1] if len(local) > 2 else local[0] + "…"
    return f"{shown}@{domain}"


MOBILE_TYPES = (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE)
FRENCH_REGIONS = ("FR", "GP", "MQ", "GF", "RE", "YT", "PM", "BL", "MF")


def _parse_phone(raw: str, field: str, label: str) -> phonenumbers.PhoneNumber:
    text = raw.strip()  # no NFKC here: full-width or other scripts' digits are refused, as for a NIR
    if not re.fullmatch(r"\+?[0-9 .\-()]{6,20}", text, re.ASCII):
        raise StepError(field, f"Saisissez un {label} valide, par exemple 06 12 34 56 78.")
    # a national number like 0690... belongs to an overseas department, not to metropolitan France
    for region in FRENCH_REGIONS:
        try:
            number = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            raise StepError(field, f"Saisissez un {label} valide, par exemple 06 12 34 56 78.") from None
        if phonenumbers.is_valid_number(number):
            return number
        if text.startswith("+"):
            break
    raise StepError(field, f"Ce {label} n'est pas valide.")


def parse_mobile(
    raw: str, field: str = "mobile", *, required: bool = False, regions: Iterable[str] = FRENCH_REGIONS
) -> str | None:
    """A mobile number in E.164, of one of ``regions`` (ISO codes): by default French mobiles and the
    overseas departments' (codes go by SMS there; another country's number is a toll-fraud target)."""
    if not raw.strip():
        if required:
            raise StepError(field, "Veuillez saisir votre numéro de téléphone mobile.")
        return None
    number = _parse_phone(raw, field, "numéro de téléphone mobile")
    if phonenumbers.number_type(number) not in MOBILE_TYPES:
        raise StepError(field, "Ce numéro n'est pas un numéro de téléphone mobile.")
    if phonenumbers.region_code_for_number(number) not in set(regions):
        raise StepError(
            field,
            "Seuls les numéros de mobile français (métropole et outre-mer) sont acceptés."
            if set(regions) <= set(FRENCH_REGIONS)
            else "Les numéros de mobile de ce pays ne sont pas acceptés.",
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def parse_phone(raw: str, field: str, label: str = "numéro de téléphone") -> str | None:
    """Any valid phone number (landline, fax) in E.164, or None when left empty."""
    if not raw.strip():
        return None
    number = _parse_phone(raw, field, label)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def format_phone(e164: str) -> str:
    try:
        return phonenumbers.format_number(phonenumbers.parse(e164, "FR"), phonenumbers.PhoneNumberFormat.NATIONAL)
    except phonenumbers.NumberParseException:
        return e164


def mask_phone(e164: str) -> str:
    national = format_phone(e164)
    digits = [i for i, c in enumerate(national) if c.isdigit()]
    keep = set(digits[:2] + digits[-2:])
    return "".join(c if (not c.isdigit() or i in keep) else "x" for i, c in enumerate(national))


def parse_name(raw: str, field: str, label: str) -> str:
    text = unicodedata.normalize("NFC", " ".join(raw.split()))
    if not text:
        raise StepError(field, f"Veuillez saisir votre {label}.")
    if len(text) > 100:
        raise StepError(field, f"Votre {label} ne doit pas dépasser 100 caractères.")
    if any(unicodedata.category(c)[0] == "C" for c in text):
        raise StepError(field, f"Votre {label} contient des caractères non autorisés.")
    return text


def fold_name(text: str) -> str:
    """For comparing names: no accents, no case, no punctuation."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if c.isalnum() and not unicodedata.combining(c)).casefold()
