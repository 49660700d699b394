"""SMS delivery through an HTTP gateway; each text fits one GSM-7 SMS (160 characters).

The channel is named ``sms``. Settings, ``[plugins.settings.delivery_sms]``:

``url``
    The gateway's endpoint; ``"demo"`` sends to the demo mailbox's SMS endpoint (demo mode only).
    Production refuses ``http://`` unless the gateway is on this machine.
``method``
    ``"POST"`` (default) or ``"PUT"``.
``headers``
    Extra request headers. A value may contain ``{auth}``, replaced by the ``auth`` secret
    (e.g. ``Authorization = "Basic {auth}"`` or ``X-Api-Key = "{auth}"``).
``auth``
    A secret (``{ env = "..." }``, ``{ file = "..." }``, ``{ value = "..." }`` in demo configs),
    sent as ``Authorization: Bearer <secret>`` unless a header uses ``{auth}``.
``body_format``, ``body_template``
    ``"json"`` (default): ``{to}``, ``{text}`` and ``{sender}`` in the template are replaced by JSON
    strings (quotes included, safely escaped); default ``{"to": {to}, "text": {text}, "from": {sender}}``.
    ``"form"``: the template is a form body (``to={to}&text={text}``) and the values are URL-encoded.
``sender``
    The sender name or number the gateway shows.
``timeout_seconds``
    Default 10.
``idempotency_header``
    The request header that carries the message's idempotency key (default ``Idempotency-Key``;
    ``""`` sends none). The key is the same on every attempt at one message (the caisse id, the
    outbox id and its creation time: ``core.delivery_key``), never derived from the text; the
    gateway must send at most one SMS per key (docs/delivery.md).
``templates_dir``
    A folder of the caisse's own ``<template>.txt`` files, searched before the built-in ones.

Numbers are normalised to E.164 (French mobiles and the overseas departments). Texts are
converted to GSM-7 (œ → oe, typographic apostrophes → ') and every template is checked at
start-up to fit one SMS. HTTP 408, 429 and 5xx are temporary failures (``Retry-After`` is
honoured, in seconds or as an HTTP date); other 4xx are permanent. A gateway that cannot be
reached is retried as usual; a request sent but not answered (a timeout after sending, a dropped
connection) has an unknown outcome, and is tried at most twice more.
"""
