"""The exception tree of guichet."""

from __future__ import annotations


class GuichetError(Exception):
    """Base of every error guichet raises on purpose."""


class ConfigError(GuichetError):
    """A caisse config that cannot be used; the message names the file and the key path."""

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None) -> None:
        self.path = path
        self.key = key
        where = ": ".join(part for part in (path, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


class PluginError(GuichetError):
    """A plugin failed; names the plugin and the hook, never the hook's arguments."""

    def __init__(self, plugin: str, hook: str, reason: str) -> None:
        self.plugin = plugin
        self.hook = hook
        super().__init__(f"plugin {plugin!r} failed in {hook}: {reason}")


class DeliveryError(GuichetError):
    """A channel could not deliver a message.

    ``outcome_unknown``: the request may have reached the server (a timeout or a dropped connection
    after it was sent), so the message may have been delivered, and billed: the worker retries such
    a message a bounded number of times only (``RetryPolicy.max_unknown_retries``).
    """

    def __init__(
        self, reason: str, *, permanent: bool, retry_after: float | None = None, outcome_unknown: bool = False
    ) -> None:
        self.permanent = permanent
        self.retry_after = retry_after
        self.outcome_unknown = outcome_unknown
        super().__init__(reason)


class StepError(GuichetError):
    """Bad input on a step: rendered as a 422 step with the French message tied to its field."""

    def __init__(self, field: str, message_fr: str) -> None:
        self.field = field
        self.message_fr = message_fr
        super().__init__(f"{field}: {message_fr}")


class CounterStoreError(GuichetError):
    """The rate-limit counter store failed: codes and passwords are refused, never checked unlimited."""


class StoreUnavailable(GuichetError):
    """A store the app needs (the database, Redis) did not answer: the request is answered 503, never 500."""


class GuichetDeprecationWarning(DeprecationWarning):
    """A plugin implements a deprecated hook, or a deprecated argument of a hook: it still works until
    the version the message names. Issued when the plugin loads, at the implementation's file and line."""


def hook_deprecation(what: str, *, since: str, removed_in: str, instead: str) -> GuichetDeprecationWarning:
    """The warning a retired hook (``@hookspec(warn_on_impl=...)``) or hook argument
    (``warn_on_impl_args={name: ...}``) gives the plugins that implement it.

    :param what: the hook or argument, such as ``"guichet_statuses"``.
    :param since: the hook API version that deprecated it.
    :param removed_in: the major version that removes it.
    :param instead: what to implement instead, as a sentence.
    """
    return GuichetDeprecationWarning(
        f"{what} is deprecated since guichet hook API {since} and is removed in {removed_in}: {instead}"
    )
