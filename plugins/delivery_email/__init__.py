"""Email delivery: French text and HTML bodies from Jinja templates, sent with aiosmtplib.

The channel is named ``email``. Settings, ``[plugins.settings.delivery_email]``:

``host``, ``port``
    The SMTP server. ``port = 0`` is only for demo mode: the message then goes to the demo
    mailbox's own SMTP server.
``security``
    ``"starttls"`` (default, usually port 587), ``"tls"`` (implicit TLS, usually 465) or ``"none"``;
    production refuses ``"none"`` unless ``host`` is this machine (a local relay).
``username``, ``password``
    SMTP authentication; ``password`` is a secret: ``{ env = "..." }``, ``{ file = "..." }``
    (``{ value = "..." }`` only in demo configs). Resolved at start-up.
``timeout_seconds``
    For the connection and each SMTP command (default 20).
``sender``, ``reply_to``
    ``From`` (required, e.g. ``"MSA Sud Aquitaine <ne-pas-repondre@...>"``) and an optional ``Reply-To``.
``templates_dir``
    A folder of the caisse's own templates, searched before the built-in ones: for each message
    ``<template>.subject.txt``, ``<template>.txt`` and ``<template>.html`` (which may extend
    ``_layout.html``); ``_footer.txt`` is the text signature.

Templates see ``caisse`` (``name``, ``website``, ``colour``, ``assistance.phone/hours/email``),
``recipient_name`` and the message's payload keys. A 4xx SMTP reply, a connection error or a
timeout is a temporary failure (retried); a 5xx reply is permanent.
"""
