"""Hook implementations of delivery_email."""

from __future__ import annotations

from guichet.core import Channel, PluginContext, SettingsNote, hookimpl
from guichet.plugins.delivery_email.channel import EmailChannel
from guichet.plugins.delivery_email.settings import EmailSettings, settings_notes


@hookimpl
def guichet_channels(context: PluginContext) -> list[Channel]:
    return [EmailChannel(context.settings("delivery_email", EmailSettings), context)]


@hookimpl
def guichet_settings_notes(context: PluginContext) -> list[SettingsNote]:
    return settings_notes(context.settings("delivery_email", EmailSettings), context.config.server.mode)
