"""The demo mailbox offered to core."""

from __future__ import annotations

from guichet.core import CaisseConfig, DemoMailbox, hookimpl


@hookimpl
def guichet_demo_mailbox(config: CaisseConfig) -> DemoMailbox | None:
    if not config.demo.mailbox:
        return None
    from guichet.plugins.demo_mailbox.mailbox import LocalMailbox

    return LocalMailbox(config)
