"""The one import package, guichet, maps the source tree's folders: nothing is left out, nothing else leaks."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from tests.conftest import ROOT


def test_every_package_folder_is_listed_in_pyproject() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = (
        {"guichet"}
        | {
            "guichet." + ".".join(init.parent.relative_to(ROOT).parts).replace("config", "configs", 1)
            for part in ("core", "plugins", "web", "config")
            for init in (ROOT / part).rglob("__init__.py")
            if "__pycache__" not in init.parts
        }
        | {
            ".".join(init.parent.relative_to(ROOT / "src").parts)
            for init in (ROOT / "src" / "guichet").rglob("__init__.py")
        }
    )
    assert set(setuptools["packages"]) == on_disk


def test_importing_the_app_brings_no_generic_top_level_module() -> None:
    """Only ``guichet.*``: a module named ``core``, ``web`` or ``plugins`` would clash in a shared environment."""
    code = (
        "import sys, guichet.web.app, guichet.cli; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('core', 'web', 'plugins')))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
