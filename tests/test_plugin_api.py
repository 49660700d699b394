"""The plugin API is listed in one place (``guichet.core.__all__`` and ``PUBLIC_MODULES``) and is all that the
built-in plugins and the examples import of guichet; core, plugins and web keep the four import rules.

Imports are read with ``ast`` (every ``import`` and ``from ... import``, at any depth, relative ones resolved,
and ``importlib.import_module("...")`` with a literal name). A module named in a string for another purpose,
as ``BUILTIN_PLUGINS`` names the plugins that core loads by name, is not an import.
"""

from __future__ import annotations

import ast
import datetime as dt
import email.utils
import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import guichet.core
from guichet.core import retry_after_seconds
from tests.conftest import ROOT

Import = tuple[int, str, tuple[str, ...]]  # line, module, names imported from it ("" for `import module`)


def module_name(path: Path) -> str:
    """The dotted name a source file is imported as: core/x.py is guichet.core.x; an example's
    src/pkg/x.py is pkg.x; a test file is its own top-level module."""
    relative = path.relative_to(ROOT)
    parts = list(relative.with_suffix("").parts)
    if parts[0] in ("core", "plugins", "web"):
        parts = ["guichet", *parts]
    elif parts[0] == "examples":
        parts = parts[3:] if parts[2] == "src" else parts[-1:]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(source: str, module: str, *, is_package: bool = False) -> Iterator[Import]:
    """Every import in ``source``, as absolute module names."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            yield node.lineno, base, tuple(alias.name for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__"))
            )
        ):
            yield node.lineno, node.args[0].value, ()


def public_names(module: str) -> set[str]:
    return set(getattr(importlib.import_module(module), "__all__", ()))


def outside_the_api(source: str, module: str, own: str, *, is_package: bool = False) -> list[str]:
    """The imports of guichet that the API does not list; ``own`` is the plugin's own package."""
    public = {"guichet.core": public_names("guichet.core")} | {m: public_names(m) for m in guichet.core.PUBLIC_MODULES}
    found = []
    for line, name, names in imports(source, module, is_package=is_package):
        if name.split(".")[0] != "guichet" or name == own or name.startswith(own + "."):
            continue
        if name in public and all(n in public[name] or f"{name}.{n}" in public for n in names):
            continue
        listed = sorted(n for n in names if n not in public[name]) if name in public else []
        found.append(f"line {line}: {name}" + (f" ({', '.join(listed)})" if listed else ""))
    return found


def _sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def _own_package(path: Path) -> str:
    relative = path.relative_to(ROOT).parts
    if relative[0] == "plugins":
        return f"guichet.plugins.{relative[1]}" if len(relative) > 2 else "guichet.plugins"
    if relative[0] == "examples" and relative[2] == "src":
        return relative[3]
    return module_name(path)


PLUGIN_AND_EXAMPLE_FILES = _sources("plugins", "examples")


# --- the API, in one place ---------------------------------------------------------------------------------


def test_every_listed_name_exists() -> None:
    for module in ("guichet.core", *guichet.core.PUBLIC_MODULES):
        imported = importlib.import_module(module)
        names = getattr(imported, "__all__", None)
        assert names, f"{module} lists its public names in __all__"
        assert [n for n in names if not hasattr(imported, n)] == [], module
        assert len(names) == len(set(names)), module


def test_the_api_page_tells_every_listed_name() -> None:
    page = (ROOT / "docs" / "plugins" / "api.md").read_text(encoding="utf-8")
    for module in ("guichet.core", *guichet.core.PUBLIC_MODULES):
        assert f"## `{module}`" in page, module
        missing = [n for n in public_names(module) if not re.search(rf"`{re.escape(n)}[`(]", page)]
        assert missing == [], f"docs/plugins/api.md does not tell {module}'s {', '.join(missing)}"


@pytest.mark.parametrize("path", PLUGIN_AND_EXAMPLE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_and_examples_import_only_the_api(path: Path) -> None:
    found = outside_the_api(
        path.read_text(encoding="utf-8"), module_name(path), _own_package(path), is_package=path.name == "__init__.py"
    )
    assert found == [], (
        f"{path.relative_to(ROOT)} imports what guichet.core does not list for plugins "
        "(add it to guichet.core.__all__ or a PUBLIC_MODULES __all__, or do without): " + "; ".join(found)
    )


def test_the_files_checked_include_every_built_in_plugin_and_example() -> None:
    checked = {p.relative_to(ROOT).parts[1] for p in PLUGIN_AND_EXAMPLE_FILES}
    plugins = {p.name for p in (ROOT / "plugins").iterdir() if (p / "__init__.py").exists()}
    examples = {p.name for p in (ROOT / "examples").iterdir() if (p / "pyproject.toml").exists()}
    assert plugins and examples and plugins | examples <= checked


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from guichet.core import hookimpl, Channel", []),
        ("from guichet.core.delivery_templates import render", []),
        ("from guichet.core import delivery_templates", []),
        ("from guichet.plugins.delivery_sms.gsm import septets", []),  # its own package
        ("from .gsm import septets", []),
        ("import httpx\nfrom msgspec import Struct", []),
        ("from guichet.core.config import SecretRef", ["line 1: guichet.core.config"]),
        ("from guichet.core import hookimpl, Keys", ["line 1: guichet.core (Keys)"]),
        ("from guichet.core.delivery_templates import jinja2", ["line 1: guichet.core.delivery_templates (jinja2)"]),
        ("import guichet.core.outbox_worker", ["line 1: guichet.core.outbox_worker"]),
        ("from guichet.plugins.delivery_email import hooks", ["line 1: guichet.plugins.delivery_email"]),
        ("from guichet.web.http import render", ["line 1: guichet.web.http"]),
        ("from ..delivery_email.channel import EmailChannel", ["line 1: guichet.plugins.delivery_email.channel"]),
        ("def f():\n    from guichet.core.store import Store", ["line 2: guichet.core.store"]),
        ("importlib.import_module('guichet.core.keys')", ["line 1: guichet.core.keys"]),
    ],
)
def test_the_contract_check_sees_what_it_must(source: str, expected: list[str]) -> None:
    assert outside_the_api(source, "guichet.plugins.delivery_sms.channel", "guichet.plugins.delivery_sms") == expected


# --- the four import rules --------------------------------------------------------------------------------

RULES = {"core": ("web", "plugins"), "plugins": ("web",), "web": ("plugins",)}


def _crossings(folder: str) -> list[str]:
    forbidden = RULES[folder]
    found = []
    for path in _sources(folder):
        for line, name, _names in imports(
            path.read_text(encoding="utf-8"), module_name(path), is_package=path.name == "__init__.py"
        ):
            parts = name.split(".")
            part = parts[1] if parts[0] == "guichet" and len(parts) > 1 else parts[0]
            if part in forbidden:
                found.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return found


@pytest.mark.parametrize("folder", sorted(RULES))
def test_import_rules(folder: str) -> None:
    """core imports neither web nor plugins, plugins do not import web, web does not import plugins
    (src/guichet, the command line and the test kit, may import everything)."""
    assert _crossings(folder) == []


def test_the_import_rules_see_a_crossing(tmp_path: Path) -> None:
    assert list(imports("from ..web import app", "guichet.core.outbox")) == [(1, "guichet.web", ("app",))]
    assert list(imports("from . import x", "guichet.core", is_package=True)) == [(1, "guichet.core", ("x",))]
    assert list(imports("import importlib\nimportlib.import_module('guichet.web.app')", "m"))[1] == (
        2,
        "guichet.web.app",
        (),
    )


# --- the helpers the API adds -----------------------------------------------------------------------------

T0 = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after_seconds("120", T0) == 120 and retry_after_seconds(" 30 ", T0) == 30
    assert retry_after_seconds(email.utils.format_datetime(T0 + dt.timedelta(minutes=5), usegmt=True), T0) == 300
    assert retry_after_seconds(email.utils.format_datetime(T0 - dt.timedelta(minutes=5), usegmt=True), T0) == 0
    assert retry_after_seconds("Mon, 02 Mar 2026 09:31:00 -0000", T0) == 60  # no zone given: UTC
    for unreadable in ("bientôt", "", None, "²", "１２", "-5", "1.5"):
        assert retry_after_seconds(unreadable, T0) is None, unreadable
