"""A guichet delivery channel that posts each message as JSON to a webhook, signed with HMAC-SHA256.

Enable it with ``plugins.enabled = [..., "webhook"]``. Settings, ``[plugins.settings.webhook]``:

``url``
    The receiver (``https://...``; ``http://`` only for a local test).
``secret``
    The shared signing secret: ``{ env = "..." }`` or ``{ file = "..." }``.
``channel``
    The channel's name, used in the outbox (default ``"webhook"``).
``label_fr``
    How the pages name it (default ``"service partenaire"``).
``timeout_seconds``
    Default 10.

Each request carries ``X-Guichet-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">``
and ``Idempotency-Key: <caisse id>-<message id>``: the same key on every retry of one message.
"""
