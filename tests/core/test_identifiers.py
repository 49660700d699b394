"""Strict parsing of what citizens type: NIR, SIRET, emails, mobiles, amounts, birth dates."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from stdnum.fr import nir as stdnum_nir

from guichet.core.errors import StepError
from guichet.core.identifiers import (
    mask_email,
    mask_identifier,
    nir_key,
    parse_amount,
    parse_birth_date,
    parse_code,
    parse_email,
    parse_mobile,
    parse_nir,
    parse_phone,
    parse_siret,
)

NIR = "1850578006084"
KEY = "91"  # 97 - (1850578006084 mod 97)
TODAY = dt.date(2026, 3, 15)


# --- NIR ---------------------------------------------------------------------------------------------


def test_nir_key_is_97_minus_the_number_mod_97() -> None:
    assert nir_key(NIR) == KEY == f"{97 - int(NIR) % 97:02d}"
    assert nir_key("185052A123456") == f"{97 - int('1850519123456') % 97:02d}"  # 2A counts as 19
    assert nir_key("185052B123456") == f"{97 - int('1850518123456') % 97:02d}"  # 2B counts as 18


@pytest.mark.parametrize(
    "typed",
    [NIR, NIR + KEY, "1 85 05 78 006 084", "1 85 05 78 006 084 91", "1.85.05.78.006.084", f"\u00a0{NIR}\u202f{KEY} "],
)
def test_nir_accepted_forms(typed: str) -> None:
    assert parse_nir(typed) == NIR


@pytest.mark.parametrize("number", ["185052A123456", "285112B045012", "185052a123456"])
def test_nir_corsica(number: str) -> None:
    expected = number.upper()
    assert parse_nir(number) == expected
    assert parse_nir(number + nir_key(expected)) == expected
    assert stdnum_nir.is_valid(expected + nir_key(expected))
    wrong = f"{(int(nir_key(expected)) % 97) + 1:02d}"
    with pytest.raises(StepError, match="clé"):
        parse_nir(expected + wrong)


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        (NIR + "92", "La clé du numéro de Sécurité Sociale ne correspond pas"),
        (NIR + "9", "13 caractères (ou 15 avec la clé)"),  # 14 characters
        (NIR[:12], "13 caractères"),
        ("1850578OO6084", "uniquement des chiffres"),  # letters O for zeros
        ("１８５０５７８００６０８４", "uniquement des chiffres"),  # full-width digits: int() would accept them
        ("١٨٥٠٥٧٨٠٠٦٠٨٤", "uniquement des chiffres"),  # Arabic-Indic digits
        ("3850578006084", "doit commencer par 1 ou 2"),
        ("0850578006084", "doit commencer par 1 ou 2"),
        ("1851378006084", "mois de naissance"),
        ("1850078006084", "mois de naissance"),
        ("18505A2123456", "uniquement des chiffres"),  # A must follow 2, at the department's place
        ("185052C123456", "uniquement des chiffres"),
        ("", "Veuillez saisir"),
    ],
)
def test_nir_refused(typed: str, message: str) -> None:
    with pytest.raises(StepError) as caught:
        parse_nir(typed, "identifier")
    assert caught.value.field == "identifier"
    assert message in caught.value.message_fr


def test_nir_pseudo_months_only_behind_the_setting() -> None:
    with pytest.raises(StepError):
        parse_nir("1852578006084")
    assert parse_nir("1852578006084", allow_pseudo_months=True) == "1852578006084"


def test_mask_identifier_hides_the_middle() -> None:
    assert mask_identifier(NIR) == "185*******084"


# --- SIRET -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("typed", ["84216730600021", "842 167 306 00021", "842.167.306.00021"])
def test_siret_accepted(typed: str) -> None:
    assert parse_siret(typed) == "84216730600021"


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("84216730600022", "n'est pas valide"),  # Luhn
        ("8421673060002", "14 chiffres"),
        ("８４２１６７３０６０００２１", "14 chiffres"),
        ("8421673060002A", "14 chiffres"),
        ("", "Veuillez saisir"),
    ],
)
def test_siret_refused(typed: str, message: str) -> None:
    with pytest.raises(StepError, match=message):
        parse_siret(typed)


# --- email -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("jean.dupont@exemple.fr", "jean.dupont@exemple.fr"),
        (
            "  Jean.Dupont@EXEMPLE.FR ",
            "Jean.Dupont@exemple.fr",
        ),  # the domain is case-insensitive, the local part is not
        ("ｊｅａｎ@exemple.fr", "jean@exemple.fr"),  # NFKC folds full-width letters
        ("jean@exemple.fr.", "jean@exemple.fr"),
        ("jean@élysée.fr", "jean@xn--lyse-9oad.fr"),  # IDNA
        ("jean+msa@sub.exemple.fr", "jean+msa@sub.exemple.fr"),
    ],
)
def test_email_accepted(typed: str, expected: str) -> None:
    assert parse_email(typed) == expected


@pytest.mark.parametrize(
    "typed",
    [
        "jean@exemple.fr\r\nBcc: victim@exemple.fr",
        "jean@exem\nple.fr",
        "jean\r@exemple.fr",
        "jean@exemple",
        "jean@@exemple.fr",
        "jean",
        "@exemple.fr",
        "jean.@exemple.fr",
        "je..an@exemple.fr",
        "jean@-exemple.fr",
        "jean dupont@exemple.fr",
        "jéan@exemple.fr",
        "x" * 65 + "@exemple.fr",
        "jean@" + "a" * 250 + ".fr",
        "jean@exemple.fr\x00",
    ],
)
def test_email_refused(typed: str) -> None:
    with pytest.raises(StepError) as caught:
        parse_email(typed)
    assert caught.value.field == "email"


def test_email_optional_and_required() -> None:
    assert parse_email("  ", required=False) is None
    with pytest.raises(StepError, match="Veuillez saisir"):
        parse_email("")


def test_mask_email() -> None:
    assert mask_email("jean.dupont@gmail.com") == "j…t@gmail.com"


# --- phone numbers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("06 12 34 56 78", "+33612345678"),
        ("0756123456", "+33756123456"),
        ("06.12.34.56.78", "+33612345678"),
        ("+33 6 12 34 56 78", "+33612345678"),
        ("0690 30 12 34", "+590690301234"),  # Guadeloupe
        ("0692 61 23 45", "+262692612345"),  # La Réunion
        ("0696 12 34 56", "+596696123456"),  # Martinique
        ("+262 692 61 23 45", "+262692612345"),
    ],
)
def test_mobile_accepted(typed: str, expected: str) -> None:
    assert parse_mobile(typed) == expected


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("01 23 45 67 89", "n'est pas un numéro de téléphone mobile"),  # a landline
        ("0590 12 34 56", "n'est pas un numéro de téléphone mobile"),  # a Guadeloupe landline
        ("06 12 34", "n'est pas valide"),
        ("٠٦١٢٣٤٥٦٧٨", "valide"),  # Arabic-Indic digits: the ASCII pattern refuses them
        ("０６１２３４５６７８", "valide"),  # full-width digits: refused, as in a NIR or a code
        ("06 12\n34 56 78", "valide"),
        ("tel: 0612345678", "valide"),
    ],
)
def test_mobile_refused(typed: str, message: str) -> None:
    with pytest.raises(StepError, match=message):
        parse_mobile(typed)


def test_mobile_optional_and_landline_allowed_elsewhere() -> None:
    assert parse_mobile("") is None
    with pytest.raises(StepError, match="Veuillez saisir"):
        parse_mobile(" ", required=True)
    assert parse_phone("01 23 45 67 89", "landline") == "+33123456789"


# --- amounts -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("1 234,50", "1234.50"),
        ("1234.50", "1234.50"),
        ("1234,5", "1234.5"),
        ("1234", "1234"),
        ("1\u00a0234,50", "1234.50"),
        ("1\u202f234,50 €", "1234.50"),
        ("1 234 567,89", "1234567.89"),
        ("0,10", "0.10"),
        ("412,37", "412.37"),
    ],
)
def test_amount_accepted(typed: str, expected: str) -> None:
    value = parse_amount(typed)
    assert isinstance(value, Decimal) and value == Decimal(expected)


@pytest.mark.parametrize(
    "typed",
    [
        "-12,50",
        "NaN",
        "nan",
        "Infinity",
        "1e3",
        "1E3",
        "9" * 40,
        "1234.567",
        "12,3,4",
        "1 23,50",
        "１２３４",
        "٣",
        "12 34",
        "1.234,50",
        "",
        "€",
        "0x10",
        "1_000",
    ],
)
def test_amount_refused(typed: str) -> None:
    with pytest.raises(StepError):
        parse_amount(typed)


# --- birth dates and codes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("14/05/1985", dt.date(1985, 5, 14)),
        ("1985-05-14", dt.date(1985, 5, 14)),
        ("4/5/1985", dt.date(1985, 5, 4)),
        ("14.05.1985", dt.date(1985, 5, 14)),
        ("15/03/2026", TODAY),
    ],
)
def test_birth_date_accepted(typed: str, expected: dt.date) -> None:
    assert parse_birth_date(typed, TODAY) == expected


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("16/03/2026", "futur"),
        ("2030-01-01", "futur"),
        ("31/02/1985", "JJ/MM/AAAA"),
        ("1985/05/14", "JJ/MM/AAAA"),
        ("14/05/85", "JJ/MM/AAAA"),
        ("１４/05/1985", "JJ/MM/AAAA"),
        ("01/01/1890", "pas plausible"),
        ("", "Veuillez"),
    ],
)
def test_birth_date_refused(typed: str, message: str) -> None:
    with pytest.raises(StepError, match=message):
        parse_birth_date(typed, TODAY)


def test_code_is_exactly_length_ascii_digits() -> None:
    assert parse_code(" 12 34 ", 4) == "1234"
    for bad in ("123", "12345", "１２３４", "12a4", ""):
        with pytest.raises(StepError):
            parse_code(bad, 4)
