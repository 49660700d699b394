"""The built-in registry: persons, companies and payments imported from CSV into guichet's tables
(``guichet registry import``, docs/registry.md). A caisse swaps it for a connector to its own
information system by enabling another plugin that implements ``guichet_registry_lookup``.

No settings.
"""
