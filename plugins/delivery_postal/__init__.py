"""Postal delivery: one PDF letter per message in a spool folder that the caisse's mail room prints.

The channel is named ``postal``. Settings, ``[plugins.settings.delivery_postal]``:

``spool_dir``
    Where letters are written, relative to the project folder (default ``<server.spool_dir>/letters``).
    Each letter is ``letter-<message id>.pdf``; ``index.jsonl`` has one JSON line per letter
    (``message_id``, ``template``, ``file``, ``created``, ``pages``, ``recipient_name``, ``subject``,
    ``address_truncated``). Writing is idempotent per message id: a second delivery of the same
    message writes no second file and no second index line, even after the mail room has taken the
    letter away: ``.written/<message id>`` records each letter written (leave that folder in place;
    it costs one small file per letter and spares reading the whole index for every new letter).
``templates_dir``
    A folder of the caisse's own ``<template>.txt`` letters, searched before the built-in ones.
``font_dir``
    A folder with DejaVuSans.ttf, DejaVuSans-Bold.ttf and DejaVuSansMono.ttf (Debian's
    fonts-dejavu-core, the default folder). Without them the PDF core fonts are used and the text
    is reduced to Latin-1 (œ → oe, ’ → ').
``city``
    Written before the date ("Marseille, le 3 mars 2026"); empty by default ("Le 3 mars 2026").

A letter template is text: the first line is ``Objet : ...``, paragraphs are separated by a
blank line, and a line ``[[ value ]]`` is shown in a monospace box (the temporary password).
Built-in letters: ``temporary_password`` and ``registration_letter``. The recipient's known
postal address (at most 6 lines of 38 characters, AFNOR NF Z10-011) is placed for a DL window
envelope; a message without an address fails permanently.
"""
