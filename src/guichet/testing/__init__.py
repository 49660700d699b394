"""guichet's test kit for plugin authors: fixtures (the ``guichet`` pytest plugin, registered on install),
real local sinks for channels, configs, and the conformance checks guichet's own built-in plugins pass.

    from guichet.testing import HttpSink, assert_channel_conforms, assert_plugin_conforms

Nothing here is imported until used: the pytest plugin loads in every pytest run where guichet is
installed, and aiosmtpd (a test dependency) is imported only when an ``SmtpSink`` is made.
docs/plugins/testing.md shows a whole test module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from guichet.core.clock import FrozenClock
    from guichet.testing.config import (
        BASE_CONFIG,
        DEFAULT_PLUGINS,
        TEST_SECRET,
        base_with_plugins,
        caisse_config,
        config_text,
        with_enabled,
    )
    from guichet.testing.conformance import assert_channel_conforms, assert_plugin_conforms, sample_message
    from guichet.testing.dists import PluginSite
    from guichet.testing.sinks import HttpSink, Recorded, SmtpSink, free_port

_WHERE = {
    "FrozenClock": "guichet.core.clock",
    **dict.fromkeys(
        (
            "BASE_CONFIG",
            "DEFAULT_PLUGINS",
            "TEST_SECRET",
            "base_with_plugins",
            "caisse_config",
            "config_text",
            "with_enabled",
        ),
        "guichet.testing.config",
    ),
    **dict.fromkeys(
        ("assert_channel_conforms", "assert_plugin_conforms", "sample_message"), "guichet.testing.conformance"
    ),
    "PluginSite": "guichet.testing.dists",
    **dict.fromkeys(("HttpSink", "Recorded", "SmtpSink", "free_port"), "guichet.testing.sinks"),
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value
