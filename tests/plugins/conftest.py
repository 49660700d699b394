"""Fixtures of the plugin tests."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from guichet.testing import PluginSite


@pytest.fixture
def webhook_example(root: Path, guichet_plugin_site: PluginSite) -> Path:
    """examples/guichet-webhook-channel installed the way pip would expose it: a dist-info with the entry
    points its pyproject.toml declares, and its package on sys.path."""
    project = root / "examples" / "guichet-webhook-channel"
    declared = tomllib.loads((project / "pyproject.toml").read_text())["project"]["entry-points"]["guichet"]
    guichet_plugin_site.add_distribution(
        "guichet-webhook-channel", entry_points=declared, package_dirs=(project / "src",)
    )
    return project
