"""guichet's pytest plugin, registered by the ``pytest11`` entry point: fixtures for plugin authors.

Importing it costs nothing: every fixture imports what it needs when a test asks for it, so a project
with guichet installed collects its tests as fast as without.

``guichet_config(extra="", *, enabled=None, database_url=None, base=BASE_CONFIG)``
    A validated CaisseConfig of a small test caisse, with ``extra`` TOML (your plugin's settings) and
    ``enabled`` plugins; its SQLite database and relative paths are in the test's ``tmp_path``.
``guichet_clock``
    A ``FrozenClock`` at the current time that moves only when told (``advance(minutes=10)``).
``guichet_context(extra="", *, enabled=None, config=None, demo=None)``
    A PluginContext on such a config, with ``guichet_clock`` and a database (not connected: ``await
    context.database.connect()`` then ``await context.database.upgrade()`` to use it).
``guichet_host(extra="", *, enabled=None, config=None, channels=True)``
    A PluginHost (the only caller of hooks) on such a context.
``guichet_smtp_sink`` / ``guichet_http_sink``
    A started ``SmtpSink`` / ``HttpSink``, stopped after the test.
``guichet_plugin_site``
    A ``PluginSite``: distributions installed for this test only (entry points without pip).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from guichet.core.clock import FrozenClock
    from guichet.core.config import CaisseConfig
    from guichet.core.context import PluginContext
    from guichet.core.plugins import PluginHost
    from guichet.testing.dists import PluginSite
    from guichet.testing.sinks import HttpSink, SmtpSink


@pytest.fixture
def guichet_config(tmp_path: Path) -> Callable[..., CaisseConfig]:
    from guichet.testing.config import caisse_config

    def factory(extra: str = "", **options: Any) -> CaisseConfig:
        return caisse_config(tmp_path, extra, **options)

    return factory


@pytest.fixture
def guichet_clock() -> FrozenClock:
    from guichet.core.clock import FrozenClock

    return FrozenClock()


@pytest.fixture
def guichet_context(
    guichet_config: Callable[..., CaisseConfig], guichet_clock: FrozenClock
) -> Callable[..., PluginContext]:
    from guichet.core.context import PluginContext
    from guichet.core.database import Database

    def factory(
        extra: str = "", *, enabled: list[str] | None = None, config: CaisseConfig | None = None, demo: Any = None
    ) -> PluginContext:
        config = config or guichet_config(extra, enabled=enabled)
        return PluginContext(config=config, database=Database.from_config(config), clock=guichet_clock, demo=demo)

    return factory


@pytest.fixture
def guichet_host(guichet_context: Callable[..., PluginContext]) -> Callable[..., PluginHost]:
    from guichet.core.plugins import PluginHost

    def factory(
        extra: str = "", *, enabled: list[str] | None = None, config: CaisseConfig | None = None, channels: bool = True
    ) -> PluginHost:
        context = guichet_context(extra, enabled=enabled, config=config)
        return PluginHost(context.config, context, channels=channels)

    return factory


@pytest.fixture
def guichet_smtp_sink() -> Iterator[SmtpSink]:
    from guichet.testing.sinks import SmtpSink

    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def guichet_http_sink() -> Iterator[HttpSink]:
    from guichet.testing.sinks import HttpSink

    with HttpSink() as sink:
        yield sink


@pytest.fixture
def guichet_plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PluginSite]:
    from guichet.testing.dists import PluginSite

    site = PluginSite(tmp_path / "site", monkeypatch)
    yield site
    site.close()
