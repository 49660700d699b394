"""Hook implementations of delivery_sms."""

from __future__ import annotations

from guichet.core import Channel, PluginContext, SettingsNote, hookimpl
from guichet.plugins.delivery_sms.channel import SmsChannel
from guichet.plugins.delivery_sms.settings import SmsSettings, settings_notes


@hookimpl
def guichet_channels(context: PluginContext) -> list[Channel]:
    return [SmsChannel(context.settings("delivery_sms", SmsSettings), context)]


@hookimpl
def guichet_settings_notes(context: PluginContext) -> list[SettingsNote]:
    return settings_notes(context.settings("delivery_sms", SmsSettings), context.config.server.mode)
