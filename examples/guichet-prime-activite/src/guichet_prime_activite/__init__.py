"""An identity question of its own: « Le montant de votre dernière prime d'activité ».

The amounts come from a file the caisse's information system exports (``payments_csv``: one line per
payment, ``nir;paid_on;amount``), read as registry facts (``guichet_registry_facts``) under the key
``prime_activite``; the question is offered for the statuses whose ``[statuses.<code>] questions``
list ``prime_activite``. Settings, ``[plugins.settings.prime_activite]``:

- ``payments_csv``: the export, relative to the caisse config's folder or absolute;
- ``window_months`` (default 3): how old the last payment may be to be asked about.
"""
