"""Preset of MSA Sud Aquitaine: the recovery code has 4 digits, is valid 30 minutes, and goes by SMS
or email.

No settings; a ``[codes.recovery]`` key in the TOML still overrides a value.
"""
