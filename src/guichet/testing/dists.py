"""Plugins installed for one test without pip: a dist-info folder with its entry points on sys.path,
which is all ``importlib.metadata`` (and so guichet's plugin loader) reads."""

from __future__ import annotations

import importlib
import secrets
import sys
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

    from guichet.core.structs import Record


class PluginSite:
    """A folder put first on sys.path (undone with the test's ``monkeypatch``) where plugin
    distributions are installed; ``close()`` forgets the modules imported from it."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.monkeypatch = monkeypatch
        self.packages: list[str] = []
        monkeypatch.syspath_prepend(str(folder))

    def add_distribution(
        self, dist: str, *, entry_points: Mapping[str, str], package_dirs: Iterable[Path] = (), version: str = "0.1"
    ) -> None:
        """A distribution named ``dist`` whose ``guichet`` entry points map plugin names to modules;
        ``package_dirs`` are folders holding its packages (an example's ``src``), put on sys.path too."""
        info = self.folder / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = "".join(f"{name} = {module}\n" for name, module in entry_points.items())
        (info / "entry_points.txt").write_text(f"[guichet]\n{lines}")
        for package_dir in package_dirs:
            self.monkeypatch.syspath_prepend(str(package_dir))
        importlib.invalidate_caches()  # importlib.metadata caches directory listings

    def add_module(self, name: str, source: str, *, target: str = "hooks") -> str:
        """A plugin named ``name`` made of one module, ``source`` (dedented), in a package of a unique
        name, which is returned; its distribution has that name too, version 1.0. ``target`` is what
        the entry point names in the package (``"hooks:Plugin"`` for an object in it)."""
        package = f"guichet_test_{name}_{secrets.token_hex(3)}"
        (self.folder / package).mkdir()
        (self.folder / package / "__init__.py").write_text("")
        (self.folder / package / "hooks.py").write_text(textwrap.dedent(source))
        self.add_distribution(package, entry_points={name: f"{package}.{target}"}, version="1.0")
        self.packages.append(package)
        return package

    def add_registry(self, name: str, records: Iterable[Record]) -> str:
        """A registry connector named ``name`` that knows exactly these records, by their
        ``(identifier_kind, identifier)`` (``guichet_registry_lookup``; an identifier it does not know
        is unknown, not abstained on): the registry an identity question's tests register people
        against, so that ``await host.registry_lookup(...)`` returns a record with the facts every
        enabled ``guichet_registry_facts`` adds. Returns the package's name, as ``add_module`` does."""
        import msgspec

        encoded = msgspec.json.encode(list(records)).decode()
        source = f"""
            from collections.abc import Awaitable

            import msgspec

            from guichet.core import PluginContext, Record, hookimpl

            RECORDS = {{(r.identifier_kind, r.identifier): r
                       for r in msgspec.json.decode({encoded!r}, type=list[Record])}}


            async def _found(key: tuple[str, str]) -> Record | None:
                return RECORDS.get(key)


            @hookimpl
            def guichet_registry_lookup(identifier_kind: str, identifier: str,
                                        context: PluginContext) -> Awaitable[Record | None] | None:
                return _found((identifier_kind, identifier))
        """
        return self.add_module(name, source)

    def close(self) -> None:
        for package in self.packages:
            for module in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
                del sys.modules[module]
