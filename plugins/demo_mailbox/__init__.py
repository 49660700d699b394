"""The demo mailbox: in demo mode (``[demo] mailbox = true``) local sinks receive every email and SMS
the real channels send (an SMTP server and an SMS gateway endpoint on 127.0.0.1), and the demo
mailbox page (``/demo/boite-aux-lettres``) shows them with the letters of the postal spool.

Enabled by ``[demo] mailbox = true`` (which also enables this plugin when ``plugins.enabled`` does
not list it); needs the ``demo`` extra (aiosmtpd). Settings: ``[demo] mailbox_dir`` and
``smtp_port`` in the caisse config; no table of its own.
"""
