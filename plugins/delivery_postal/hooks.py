"""Hook implementations of delivery_postal."""

from __future__ import annotations

from guichet.core import Channel, PluginContext, hookimpl
from guichet.plugins.delivery_postal.channel import PostalChannel
from guichet.plugins.delivery_postal.settings import PostalSettings


@hookimpl
def guichet_channels(context: PluginContext) -> list[Channel]:
    return [PostalChannel(context.settings("delivery_postal", PostalSettings), context)]
