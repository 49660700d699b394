"""What a plugin's hooks may use at run time: the config, the database and the clock."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from guichet.core.clock import Clock
from guichet.core.config import CaisseConfig
from guichet.core.errors import ConfigError

if TYPE_CHECKING:  # only for annotations read by mypy, never by msgspec or Litestar
    from guichet.core.database import Database

SettingsT = TypeVar("SettingsT")


@dataclass(frozen=True)
class DemoEndpoints:
    """Where the demo mailbox's local sinks listen (demo mode only)."""

    smtp_host: str
    smtp_port: int
    sms_url: str
    mailbox_dir: str


@dataclass(frozen=True)
class PluginContext:
    """Passed to hooks that need the deployment; plugins keep no state of their own elsewhere."""

    config: CaisseConfig
    database: "Database"
    clock: Clock
    demo: DemoEndpoints | None = None  # set in demo mode: delivery plugins send to the local sinks
    _settings_cache: dict[tuple[str, type], Any] = field(default_factory=dict, compare=False, repr=False)

    def settings(self, plugin: str, kind: type[SettingsT]) -> SettingsT:
        """The plugin's ``[plugins.settings.<name>]`` table decoded into its Settings Struct (cached)."""
        key = (plugin, kind)
        if key not in self._settings_cache:
            try:
                self._settings_cache[key] = msgspec.convert(self.config.plugin_settings(plugin), kind)
            except msgspec.ValidationError as exc:
                text = str(exc).replace("`$", f"`$.plugins.settings.{plugin}")
                raise ConfigError(text, path=self.config.source or None, key=f"$.plugins.settings.{plugin}") from None
        return self._settings_cache[key]  # type: ignore[no-any-return]
