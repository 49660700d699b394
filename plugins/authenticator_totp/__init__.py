"""Authenticator app (TOTP, RFC 6238): a six-digit code that an app on the person's phone shows and
changes every 30 seconds.

The authenticator is named ``totp`` ("Application d'authentification"). A person adds one from Mon
compte: the page shows a QR code (inline SVG, drawn on the server: no external call) and the key as
text for whoever cannot scan, then asks for the first code, which proves the app holds the key. A
person may add several (two phones), each with a name of theirs. The key is kept sealed in the
credential store; each code is accepted once, within one time step either side of the server's
clock (database time), and never a code older than the last one used. Core counts every try
against the login's rate limits, audits it and sends the notices.

Settings, ``[plugins.settings.authenticator_totp]`` (all optional):

``issuer``
    The name the app shows above the code; the caisse's name by default.
``digits``
    6 (default) or 8. Most apps show 6 whatever the QR code says: change it only for an app that
    is known to follow it.
``period``
    The time step in seconds: 30 (default) or 60, with the same caveat.
"""
