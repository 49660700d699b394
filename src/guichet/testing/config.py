"""Caisse configs for tests: a small valid caisse, with the plugins and the extra TOML a test needs."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from guichet.core.config import CaisseConfig

TEST_SECRET = "test-secret-key-0123456789abcdef0123456789"
# the statuses, the registry, the two MSA questions and the MSA password rule: a caisse that registers people
DEFAULT_PLUGINS = ("statuses_msa", "registry_tables", "identity_vitale", "identity_payment", "password_msa")

BASE_CONFIG = f"""
[caisse]
id = "test"
name = "MSA Test"
postal_address = ["MSA Test", "1 rue de la Paix", "75002 PARIS"]
assistance = {{ phone = "01 23 45 67 89", hours = "du lundi au vendredi", email = "aide@test.invalid" }}

[plugins]
enabled = [{", ".join(f'"{name}"' for name in DEFAULT_PLUGINS)}]

[security]
secret_key = {{ value = "{TEST_SECRET}" }}

[sessions]
secure_cookies = false

[server]
mode = "demo"
"""
_ENABLED = re.compile(r"^enabled = \[.*\]$", re.MULTILINE)


def with_enabled(names: Iterable[str], base: str = BASE_CONFIG) -> str:
    """``base`` with exactly these plugins enabled, in this order."""
    line = "enabled = [" + ", ".join(f'"{name}"' for name in names) + "]"
    replaced, count = _ENABLED.subn(lambda _match: line, base, count=1)
    if count != 1:
        raise ValueError("the base config has no `enabled = [...]` line of its own to replace")
    return replaced


def base_with_plugins(*names: str) -> str:
    """BASE_CONFIG with these plugins enabled after the default ones."""
    return with_enabled([*DEFAULT_PLUGINS, *names])


def config_text(
    extra: str = "", *, database_url: str, enabled: Iterable[str] | None = None, base: str = BASE_CONFIG
) -> str:
    """The TOML of a test caisse: ``base`` (its plugins replaced by ``enabled`` when given), then
    ``extra`` (dedented), then the database."""
    text = base if enabled is None else with_enabled(enabled, base)
    return text + "\n" + textwrap.dedent(extra) + f'\n[database]\nurl = "{database_url}"\n'


def caisse_config(
    directory: Path,
    extra: str = "",
    *,
    database_url: str | None = None,
    enabled: Iterable[str] | None = None,
    base: str = BASE_CONFIG,
) -> CaisseConfig:
    """A validated CaisseConfig whose relative paths (spool folders, templates) and SQLite database
    (``guichet.sqlite``, unless ``database_url`` is given) are in ``directory``."""
    from guichet.core.config import decode_config

    url = database_url or f"sqlite:///{directory / 'guichet.sqlite'}"
    return decode_config(
        config_text(extra, database_url=url, enabled=enabled, base=base), source="test.toml", base_dir=str(directory)
    )
