"""guichet: the plugin API. Plugins import ``hookimpl`` and the Structs from here."""
import pluggy

from guichet.core.context import PluginContext
from guichet.core.errors import ConfigError, DeliveryError, GuichetError, PluginError, StepError
from guichet.core.outbox import delivery_key
from guichet.core.structs import (
    CODE,
    EMAIL,
    IDENTIFIER,
    LETTER,
    MOBILE,
    NOTICE,
    PASSWORD,
    POSTAL,
    AuditEvent,
    Channel,
    CodePolicy,
    Message,
    PasswordContext,
    PasswordRule,
    Payment,
    PostalAddress,
    Question,
    Recipient,
    Record,
    Registry,
    SettingsNote,
    Status,
    Strength,
    Verdict,
)

hookimpl = pluggy.HookimplMarker("guichet")

__all__ = [
    "CODE", "EMAIL", "IDENTIFIER", "LETTER", "MOBILE", "NOTICE", "PASSWORD", "POSTAL", "AuditEvent", "Channel",
    "CodePolicy", "ConfigError", "DeliveryError", "GuichetError", "Message", "PasswordContext", "PasswordRule",
    "Payment", "PluginContext", "PluginError", "PostalAddress", "Question", "Recipient", "Record", "Registry",
    "SettingsNote", "Status", "StepError", "Strength", "Verdict", "delivery_key", "hookimpl",
]
