"""Hook implementations of authenticator_totp."""

from __future__ import annotations

from guichet.core import Authenticator, CredentialStore, PluginContext, hookimpl
from guichet.plugins.authenticator_totp.authenticator import TotpAuthenticator
from guichet.plugins.authenticator_totp.settings import TotpSettings


@hookimpl
def guichet_authenticators(context: PluginContext, store: CredentialStore) -> list[Authenticator]:
    return [TotpAuthenticator(context.settings("authenticator_totp", TotpSettings), context, store)]
