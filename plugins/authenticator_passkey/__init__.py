"""Passkeys (WebAuthn): the person's phone or computer proves it is them, unlocked by the fingerprint,
face or code they already use. A second factor after the password, and, when the caisse sets
``[authentication] passwordless = true``, a whole login ("Se connecter avec une clé d'accès"): user
verification is required every time, so the passkey alone is two factors, and phishing-resistant
(the browser binds it to the caisse's domain). Synced passkeys are accepted: no attestation is asked
for and the backup flags refuse nothing; signature counters are checked (one that does not go up is
refused as a cloned authenticator).

The authenticator is named ``passkey``. Settings, ``[plugins.settings.authenticator_passkey]``, all
optional:

``rp_id``
    The domain passkeys are bound to (WebAuthn's RP ID), e.g. ``"monespace.msa.fr"``; by default the
    host of ``server.public_url``, else ``"localhost"``. Browsers refuse an IP address: the demo
    (``make run``) is opened at http://localhost:8000 to use passkeys, not at http://127.0.0.1:8000.
``origins``
    The addresses the pages are served from, e.g. ``["https://monespace.msa.fr"]``; by default
    ``server.public_url``'s. With neither, and the RP ID ``localhost``, any ``http://localhost:PORT``
    is accepted (demo and development only: production refuses to start without an origin, and
    refuses an origin that is not https, except localhost).
``rp_name``
    What the passkey manager shows beside the person's name; by default the caisse's name.
``timeout_seconds``
    How long the browser's dialog waits (default 300).

What is kept per passkey (``guichet_credential``, kind ``passkey``): its id, public key, transports,
whether it is synced, the account's opaque WebAuthn user handle, and its signature counter. Nothing
biometric ever leaves the person's device.
"""
