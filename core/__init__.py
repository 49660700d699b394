"""guichet's plugin API: what a plugin may import, listed in one place.

A plugin imports ``hookimpl``, the Structs, the errors and the helpers below from ``guichet.core``
(the names in ``__all__``), and the names in the ``__all__`` of the modules in ``PUBLIC_MODULES``;
nothing else of guichet. ``tests/test_plugin_api.py`` holds the built-in plugins and the examples to
it, and docs/plugins/api.md says what each name is for.
"""

import pluggy

from guichet.core.addresses import is_loopback_host
from guichet.core.clock import PARIS, Clock
from guichet.core.config import CaisseConfig, CaisseInfo, SecretRef
from guichet.core.context import DemoEndpoints, DemoMailbox, PluginContext
from guichet.core.credentials import CredentialStore, StoredCredential
from guichet.core.database import Database
from guichet.core.errors import (
    ConfigError,
    DeliveryError,
    GuichetDeprecationWarning,
    GuichetError,
    PluginError,
    StepError,
)
from guichet.core.hookspecs import HOOK_API_VERSION
from guichet.core.outbox import delivery_key, retry_after_seconds
from guichet.core.structs import (
    CODE,
    EMAIL,
    IDENTIFIER,
    LETTER,
    MOBILE,
    NOTICE,
    PASSWORD,
    POSTAL,
    AccountRef,
    Assurance,
    AuditEvent,
    Authenticator,
    Challenge,
    Channel,
    Check,
    CodePolicy,
    Delivery,
    Enrolment,
    MailboxItem,
    Measurement,
    Message,
    PasswordContext,
    PasswordRule,
    Payment,
    PostalAddress,
    Prompt,
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
    "CODE",
    "EMAIL",
    "HOOK_API_VERSION",
    "IDENTIFIER",
    "LETTER",
    "MOBILE",
    "NOTICE",
    "PARIS",
    "PASSWORD",
    "POSTAL",
    "AccountRef",
    "Assurance",
    "AuditEvent",
    "Authenticator",
    "CaisseConfig",
    "CaisseInfo",
    "Challenge",
    "Channel",
    "Check",
    "Clock",
    "CodePolicy",
    "ConfigError",
    "CredentialStore",
    "Database",
    "Delivery",
    "DeliveryError",
    "DemoEndpoints",
    "DemoMailbox",
    "Enrolment",
    "GuichetDeprecationWarning",
    "GuichetError",
    "MailboxItem",
    "Measurement",
    "Message",
    "PasswordContext",
    "PasswordRule",
    "Payment",
    "PluginContext",
    "PluginError",
    "PostalAddress",
    "Prompt",
    "Question",
    "Recipient",
    "Record",
    "Registry",
    "SecretRef",
    "SettingsNote",
    "Status",
    "StepError",
    "StoredCredential",
    "Strength",
    "Verdict",
    "delivery_key",
    "hookimpl",
    "is_loopback_host",
    "retry_after_seconds",
]

# Modules whose own __all__ is part of the API: message rendering for channels, the strict parsers of what
# people type, the fallback implementations and their wording, the test kit, and the helpers of the
# ``guichet`` command for the commands a plugin adds (guichet_commands).
PUBLIC_MODULES = (
    "guichet.core.delivery_templates",
    "guichet.core.identifiers",
    "guichet.core.defaults",
    "guichet.testing",
    "guichet.cli",
)
