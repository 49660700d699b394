"""Hook implementations of authenticator_recovery."""

from __future__ import annotations

from guichet.core import Authenticator, CredentialStore, PluginContext, hookimpl
from guichet.plugins.authenticator_recovery.authenticator import RecoveryCodes


@hookimpl
def guichet_authenticators(context: PluginContext, store: CredentialStore) -> list[Authenticator]:
    return [RecoveryCodes(store)]
