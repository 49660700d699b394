"""Preset of MSA Provence Azur: the login code goes by email and is valid 15 minutes.

No settings; a ``[codes.login]`` key in the TOML still overrides a value.
"""
