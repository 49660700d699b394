"""Runs last in tests/security: every log record written so far in this test session holds no code,
password, token or full NIR. (tests/security/conftest.py checks the whole run again at the end.)"""

from __future__ import annotations

import logging

from tests.security.support import LOG, SECRETS, application_lines, find_leaks


def test_the_scanner_finds_each_kind_of_secret() -> None:
    known = {"123456", "1850578006084", "Vert-Galet-42-Nuage!", "hi9EIip3sbX9NL0AVb869rhqfugLSm2WmCHuUPqUxUI"}
    lines = [
        ("a", logging.INFO, "code=123456 sent"),
        ("b", logging.DEBUG, "nir 1 85 05 78 006 084"),
        ("c", logging.ERROR, "password Vert-Galet-42-Nuage! refused"),
        ("d", logging.INFO, "cookie=hi9EIip3sbX9NL0AVb869rhqfugLSm2WmCHuUPqUxUI"),
        ("e", logging.INFO, "audit login.failed subject=185*******084 code=1234567"),
    ]
    leaks = find_leaks(lines, known)
    assert len(leaks) == 4 and all("<SECRET>" in leak or "NIR" in leak for leak in leaks)
    assert not any(secret in leak for leak in leaks for secret in known), "a leak report repeats the secret"


def test_the_scanner_finds_a_password_by_its_character_set() -> None:
    """A PDF library that logs a font subset's glyph names spells a password's characters out of order."""
    known = {"Xk7#pQ2!zr"}
    glyphs = (
        "Glyph names: ['.notdef', '.null', 'Q', 'X', 'exclam', 'k', 'numbersign', 'p', 'r', 'seven', 'space', "
        "'two', 'z']"
    )
    leaks = find_leaks([("fontTools.subset", logging.INFO, glyphs)], known)
    assert len(leaks) == 1 and "character set" in leaks[0]
    assert find_leaks([("fontTools.subset", logging.INFO, "Glyph names: ['.notdef', 'Q', 'X', 'k']")], known) == []


def test_no_log_line_of_this_session_holds_a_secret() -> None:
    if not any(name == "guichet.audit" for name, _, _ in LOG):
        import pytest

        pytest.skip("run with the rest of tests/security: no security test ran before this one")
    assert any(s.isdigit() and len(s) == 6 for s in SECRETS), "no code was recorded: the capture is broken"
    assert any(not s.isdigit() and not s.isalnum() for s in SECRETS), "no password was recorded"
    assert any(level == logging.DEBUG for _, level, _ in LOG), "DEBUG records are not captured"
    leaks = find_leaks(application_lines(LOG), SECRETS)
    assert not leaks, f"{len(leaks)} log lines hold a secret:\n" + "\n".join(leaks[:30])
