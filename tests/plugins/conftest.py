"""Fixtures of the plugin tests."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from guichet.core.sessions import Session
from guichet.testing import PluginSite
from tests.conftest import Portal
from tests.flows.helpers import portal_with
from tests.security.support import make_account


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


# --- the authenticator plugins, on an app's services (both engines, the test's clock) ---------------

AUTHENTICATORS = ("authenticator_totp", "authenticator_recovery")
CLIENT = "203.0.113.7"


@pytest.fixture
async def auth_portal(portal_factory: Callable[..., Any], make_config: Callable[..., Any], db_url: str) -> Portal:
    """An app with both authenticator plugins, every channel, and the registry's demo persons."""
    from guichet.plugins.registry_tables import importer

    portal = await portal_with(portal_factory, make_config, db_url, plugins=AUTHENTICATORS)
    await importer.generate_demo_registry(portal.services.database, count=0, seed=1)
    return portal


@pytest.fixture
async def holder(auth_portal: Portal) -> dict[str, Any]:
    """An account of a demo person whom the registry knows, with an address for letters."""
    return await make_account(auth_portal)


def new_session(services: Any) -> Session:
    session = Session(None, None)
    session.ensure(int(services.now().timestamp() * 1000))
    return session
