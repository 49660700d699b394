"""docs/security.md names the tests that prove each control: every test it names exists, and every
control names at least one."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "security.md"
REFERENCE = re.compile(r"\btests/[\w/]+\.py(?:::\w+)?")
GENERATED = re.compile(r"<!-- BEGIN generated: deviations.*?<!-- END generated: deviations -->", re.S)


def missing_references(text: str, root: Path = ROOT) -> list[str]:
    """Every ``tests/....py`` or ``tests/....py::name`` in ``text`` whose file or test is not there."""
    missing = []
    for reference in sorted(set(REFERENCE.findall(text))):
        path, _, name = reference.partition("::")
        file = root / path
        if not file.is_file():
            missing.append(f"{reference}: no such file")
        elif name and not re.search(
            rf"^\s*(?:async\s+def|def|class)\s+{name}\b", file.read_text(encoding="utf-8"), re.M
        ):
            missing.append(f"{reference}: no test of that name in {path}")
    return missing


def controls_without_proof(text: str) -> list[str]:
    """Rows of the "Controls" table whose "proved by" cell names no test file."""
    section = text.split("\n## Controls\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    assert rows and rows[0].rstrip(" |").endswith("proved by"), "the Controls table has no 'proved by' column"
    bad = []
    for row in rows[2:]:
        cells = [cell.strip() for cell in row.strip().strip("|").split(" | ")]
        refs = REFERENCE.findall(cells[-1]) if len(cells) == 3 else []
        if not refs or not all(Path(ref.partition("::")[0]).name.startswith("test_") for ref in refs):
            bad.append(cells[0][:80])
    return bad


def hand_written() -> str:
    return GENERATED.sub("", DOC.read_text(encoding="utf-8"))


def test_every_test_the_page_names_exists() -> None:
    text = hand_written()
    assert len(set(REFERENCE.findall(text))) >= 40
    assert missing_references(text) == []


def test_every_control_names_the_tests_that_prove_it() -> None:
    text = hand_written()
    assert controls_without_proof(text) == []
    assert "\n## Known limits\n" in text


def test_the_check_finds_a_test_that_is_gone_and_a_control_without_proof() -> None:
    text = (
        "`tests/security/test_sec_codes.py::test_a_used_code_cannot_be_used_again`, "
        "`tests/security/test_sec_codes.py::test_a_code_that_was_renamed`, `tests/security/test_gone.py`"
    )
    assert missing_references(text) == [
        "tests/security/test_gone.py: no such file",
        "tests/security/test_sec_codes.py::test_a_code_that_was_renamed: no test of that name in "
        "tests/security/test_sec_codes.py",
    ]
    table = (
        "\n## Controls\n\n| control | where | proved by |\n| --- | --- | --- |\n"
        "| a control | `core/x.py` | `tests/security/test_sec_codes.py` |\n"
        "| an unproved control | `core/y.py` | `core/y.py` |\n\n## Limits\n"
    )
    assert controls_without_proof(table) == ["an unproved control"]
