"""Hook implementations of delivery_email."""
from __future__ import annotations

from guichet.core import Channel, PluginContext, hookimpl
from guichet.plugins.delivery_email.channel import EmailChannel
from guichet.plugins.delivery_email.settings import EmailSettings


@hookimpl
def guichet_channels(context: PluginContext) -> list[Channel]:
    return [EmailChannel(context.settings("delivery_email", EmailSettings), context)]
