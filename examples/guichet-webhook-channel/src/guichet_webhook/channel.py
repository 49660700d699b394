"""WebhookChannel: one signed JSON POST per message."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import httpx
import msgspec

from guichet.core import DeliveryError, Message, PluginContext, Recipient, delivery_key, retry_after_seconds
from guichet_webhook.settings import WebhookSettings


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Guichet-Signature value; a receiver recomputes it and compares in constant time."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class WebhookChannel:
    """Posts ``{id, template, caisse, created_at, recipient, payload}`` to the configured URL."""

    def __init__(self, settings: WebhookSettings, context: PluginContext) -> None:
        self.name = settings.channel
        self.label_fr = settings.label_fr
        self.reaches = settings.reaches
        self.carries = frozenset(settings.carries)
        self.settings = settings
        self.context = context
        self._secret = settings.secret.resolve()  # at start-up: a missing secret stops the app, not a delivery

    def __repr__(self) -> str:
        return f"WebhookChannel(url={self.settings.url!r})"

    def destination_fr(self, recipient: Recipient) -> str:
        """What a page shows as the destination: the receiver's own name for it, when the person has one."""
        return self.settings.destination_fr if recipient.reachable_by(self.reaches) else ""

    def body(self, message: Message) -> bytes:
        document: dict[str, Any] = {
            "id": message.id,
            "template": message.template,
            "caisse": self.context.config.caisse.id,
            "created_at": message.created_at,
            "recipient": message.recipient,
            "payload": message.payload,
        }
        return msgspec.json.encode(document)

    async def send(self, message: Message) -> None:
        if not message.recipient.reachable_by(self.reaches):  # the receiver could not deliver it either
            raise DeliveryError(f"the recipient has no {self.reaches} address", permanent=True)
        body = self.body(message)
        timestamp = int(self.context.clock.now().timestamp())
        headers = {
            "Content-Type": "application/json",
            "X-Guichet-Signature": signature(self._secret, timestamp, body),
            "Idempotency-Key": delivery_key(self.context.config.caisse.id, message),
        }
        try:
            async with httpx.AsyncClient(timeout=self.settings.timeout_seconds) as client:
                response = await client.post(self.settings.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            # the exception's text is not used: never risk echoing the payload into last_error
            raise DeliveryError(f"webhook unreachable ({type(exc).__name__})", permanent=False) from None
        status = response.status_code
        if 200 <= status < 300:
            return
        if status in (408, 429) or status >= 500:
            raise DeliveryError(
                f"webhook answered {status}",
                permanent=False,
                retry_after=retry_after_seconds(response.headers.get("Retry-After"), self.context.clock.now()),
            )
        raise DeliveryError(f"webhook refused the message: {status}", permanent=True)
