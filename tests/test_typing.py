"""Type hints everywhere: mypy --strict (configured in pyproject.toml) on guichet.core, .plugins, .web and .testing.

The folders core/, plugins/ and web/ are installed as guichet.core, guichet.plugins and guichet.web;
mypy does not follow an editable install's import hook, so it reads them through a tree of links that
has the installed shape.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_mypy_strict_is_clean(tmp_path: Path) -> None:
    package = tmp_path / "guichet"
    package.mkdir()
    for own in (ROOT / "src" / "guichet").iterdir():  # __init__, __main__, the test kit...
        if own.name != "__pycache__":
            (package / own.name).symlink_to(own, target_is_directory=own.is_dir())
    for part in ("core", "plugins", "web"):
        (package / part).symlink_to(ROOT / part, target_is_directory=True)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(tmp_path / ".mypy_cache"),
            "-p",
            "guichet",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
