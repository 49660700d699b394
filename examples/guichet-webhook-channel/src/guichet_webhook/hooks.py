"""Hook implementations of the webhook channel: the entry point's target."""

from __future__ import annotations

from guichet.core import Channel, PluginContext, hookimpl
from guichet_webhook.channel import WebhookChannel
from guichet_webhook.settings import WebhookSettings


@hookimpl
def guichet_channels(context: PluginContext) -> list[Channel]:
    return [WebhookChannel(context.settings("webhook", WebhookSettings), context)]
