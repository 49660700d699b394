"""Type hints everywhere: mypy --strict (configured in pyproject.toml) on core, plugins and web."""
from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_mypy_strict_is_clean() -> None:
    result = subprocess.run([sys.executable, "-m", "mypy", "core", "plugins", "web"], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
