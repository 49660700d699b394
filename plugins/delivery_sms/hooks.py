"""Hook implementations of delivery_sms."""
from __future__ import annotations

from guichet.core import Channel, PluginContext, hookimpl
from guichet.plugins.delivery_sms.channel import SmsChannel
from guichet.plugins.delivery_sms.settings import SmsSettings


@hookimpl
def guichet_channels(context: PluginContext) -> list[Channel]:
    return [SmsChannel(context.settings("delivery_sms", SmsSettings), context)]
