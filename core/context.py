"""What a plugin's hooks may use at run time: the config, the database and the clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import msgspec

from guichet.core.clock import Clock
from guichet.core.config import CaisseConfig
from guichet.core.errors import ConfigError
from guichet.core.structs import MailboxItem

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


class DemoMailbox(Protocol):
    """What a demo mailbox plugin offers (``guichet_demo_mailbox``): local sinks that keep every
    message the channels send in demo mode, and what they kept, for the demo mailbox page."""

    def endpoints(self) -> DemoEndpoints:
        """Where the sinks will listen, which the delivery plugins read from ``PluginContext.demo``:
        chosen without starting anything (an app is built by tools that never serve it)."""
        ...

    def start(self) -> DemoEndpoints:
        """Start the sinks on ``endpoints()`` (threads of their own, so they run whatever the event
        loop); return where they listen."""
        ...

    def stop(self) -> None:
        """Stop the sinks (idempotent)."""
        ...

    def items(self) -> list[MailboxItem]:
        """Every email, SMS and letter delivered, newest first (a mailbox not started reads them too)."""
        ...

    def letter(self, name: str) -> Path | None:
        """A letter's PDF by its file name, or None: never a path outside the spool."""
        ...


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
