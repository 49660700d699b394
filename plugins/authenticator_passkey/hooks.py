"""Hook implementations of authenticator_passkey."""

from __future__ import annotations

from guichet.core import Authenticator, CredentialStore, PluginContext, SettingsNote, hookimpl
from guichet.plugins.authenticator_passkey.passkey import Passkey
from guichet.plugins.authenticator_passkey.settings import PasskeySettings, relying_party, settings_notes


@hookimpl
def guichet_authenticators(context: PluginContext, store: CredentialStore) -> list[Authenticator]:
    settings = context.settings("authenticator_passkey", PasskeySettings)
    return [Passkey(store, relying_party(settings, context.config), context.clock, settings.timeout_seconds)]


@hookimpl
def guichet_settings_notes(context: PluginContext) -> list[SettingsNote]:
    return settings_notes(context.settings("authenticator_passkey", PasskeySettings), context.config)
