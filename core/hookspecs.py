"""Every hook a guichet plugin can implement: the one file a plugin author must read.

Implementations are plain ``def`` functions marked with ``core.hookimpl``, never ``async def``:
pluggy does not await, and a coroutine would always win a firstresult hook. Hooks that need I/O
return objects with async methods (a Channel) or an awaitable, and ``core.plugins.PluginHost``
does all the awaiting. A hook implementation may accept any subset of a spec's arguments.

The hook API has a version of its own, ``HOOK_API_VERSION``: each spec says in which version it
was added (``.. versionadded::``), a minor version adds hooks or optional behaviour, and only a
major version removes a hook, after a deprecation (``core.errors.hook_deprecation``;
docs/plugins/deprecation.md).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import click
import pluggy

from guichet.core.config import CaisseConfig, CaisseInfo
from guichet.core.context import DemoMailbox, PluginContext
from guichet.core.credentials import CredentialStore
from guichet.core.structs import (
    AuditEvent,
    Authenticator,
    Channel,
    CodePolicy,
    Measurement,
    PasswordContext,
    PasswordRule,
    Question,
    Record,
    SettingsNote,
    Status,
    Strength,
    Verdict,
)

hookspec = pluggy.HookspecMarker("guichet")

HOOK_API_VERSION = "1.2"
# what each version of the hook API changed, newest last (docs/plugins/hooks.md shows it)
HOOK_API_CHANGES = {
    "1.0": "The hooks as first shipped.",
    "1.1": "New hooks: `guichet_identity_answer` (a question's plugin checks the form of its answers) and "
    "`guichet_registry_facts` (other sources add facts to a registry record). An `async def` "
    "implementation is refused when the plugin loads, on every hook (it used to load, then win every "
    "first-result hook with a coroutine and do nothing on the others). A retired hook or hook argument "
    "warns its implementers with `GuichetDeprecationWarning` (docs/plugins/deprecation.md). New hook "
    "`guichet_commands`: a plugin adds its own commands to the `guichet` command (the built-in registry "
    "brings `guichet registry`). New hook `guichet_measure`: observers receive what core measures (argon2 "
    "times, rate-limit hits, the outbox's duplicate window), as the metrics plugin of the web layer does. "
    "New hook `guichet_demo_mailbox`: the demo mailbox (its local sinks and what they kept) is a plugin.",
    "1.2": "New hook `guichet_authenticators`: second factors and whole logins (passkeys, authenticator apps, "
    "recovery codes by post) are plugins; the codes by email and SMS are one more implementation of the "
    "same contract. A credential store (`core.credentials.CredentialStore`) keeps what they enrol.",
}


# --- Who can register --------------------------------------------------------------------------


@hookspec
def guichet_statuses() -> list[Status]:
    """The statuses ("Vous êtes...") this plugin offers on the first registration step.

    Called when the plugin host starts; the answers are flattened in plugin order and a status
    code offered twice is a configuration error.

    Return a list of :class:`core.structs.Status`; return an empty list to offer none.

    .. versionadded:: 1.0
    """


# --- Identity questions ------------------------------------------------------------------------


@hookspec
def guichet_identity_questions(status: Status, record: Record | None, context: PluginContext) -> list[Question]:
    """The identity questions this plugin can ask a person of ``status``.

    Called twice per registration: with ``record=None`` to build the question page (the same
    page for every identifier, so the page never tells whether the registry knows the person),
    and with the registry record to decide whether the chosen question can be answered by them;
    and once per status at start-up, with ``record=None``, to check the caisse's
    ``[statuses.<code>] questions``. ``status.questions`` holds the kinds the caisse offers for this
    status, in its order (its config, else the status's own): offer a question only if its kind
    is there.

    Return a list of :class:`core.structs.Question`; return an empty list to abstain.

    :param status: the status chosen on the first step.
    :param record: what the registry knows of the person, or None to describe the page.
    :param context: the deployment (config, database, clock).

    .. versionadded:: 1.0
    """


@hookspec(firstresult=True)
def guichet_identity_check(question: Question, answer: str, record: Record, context: PluginContext) -> Verdict | None:
    """Check an identity answer against the registry record.

    Called when a person answers the question of ``question.kind``; a plugin that raises gives
    ``Verdict.UNVERIFIABLE`` (the temporary password then goes by post).

    Return a :class:`core.structs.Verdict`; return None to abstain (another plugin's question).
    First result wins; later plugins are not called.

    :param question: the question that was asked.
    :param answer: the answer as ``guichet_identity_answer`` returned it (else as typed, trimmed).
    :param record: the registry record of the identifier.
    :param context: the deployment (config, database, clock).

    .. versionadded:: 1.0
    """


@hookspec(firstresult=True)
def guichet_identity_answer(question: Question, answer: str, context: PluginContext) -> str | None:
    """Check the form of an answer to a question this plugin offers, before it is judged.

    Called when a person submits the question page, before the answer counts as one of the
    identifier's tries: a malformed answer (letters in a serial number, an amount without euros
    and cents) is refused with a precise French message and costs no try.

    Return the answer normalised (what ``guichet_identity_check`` receives); raise
    :class:`core.errors.StepError` with ``field="answer"`` and the French message when it is
    malformed; return None to abstain (another plugin's question). When every plugin abstains,
    the trimmed answer is used, refused only when empty or longer than ``question.max_length``.
    First result wins; later plugins are not called.

    :param question: the question the person chose.
    :param answer: the answer as typed, trimmed.
    :param context: the deployment (config, database, clock).

    .. versionadded:: 1.1
    """


# --- The registry ------------------------------------------------------------------------------


@hookspec(firstresult=True)
def guichet_registry_lookup(
    identifier_kind: str, identifier: str, context: PluginContext
) -> Awaitable[Record | None] | None:
    """Find what the caisse knows of an identifier (a person by NIR, a company by SIRET).

    Called on registration, after the contact step, to choose the questions and the postal
    address; the core reads the registry only through this hook.

    Return an awaitable resolving to a :class:`core.structs.Record`, or to None when the
    identifier is unknown; return None (not an awaitable) to abstain, for example for an
    identifier kind the plugin does not serve.
    First result wins; later plugins are not called.

    :param identifier_kind: "nir" (13 characters, no key) or "siret" (14 digits).
    :param identifier: the normalised identifier.
    :param context: the deployment (config, database, clock).

    .. versionadded:: 1.0
    """


@hookspec
def guichet_registry_facts(record: Record, context: PluginContext) -> Awaitable[dict[str, Any]] | None:
    """Facts another source knows of a person the registry found, for identity questions to read.

    Called after ``guichet_registry_lookup`` found a record, in plugin order; the facts are added
    to ``record.facts`` (a key already there is kept: the registry, then earlier plugins, win).
    Core never reads them: the connector and the identity question plugin agree on the keys.

    Return an awaitable resolving to a dict of JSON-like values (an empty dict when the source
    knows nothing of this person); return None to abstain. A plugin that raises adds nothing (the
    person's answers to its questions are then judged unverifiable).

    :param record: what the registry found.
    :param context: the deployment (config, database, clock).

    .. versionadded:: 1.1
    """


# --- Delivery ----------------------------------------------------------------------------------


@hookspec
def guichet_channels(context: PluginContext) -> list[Channel]:
    """The channels (email, SMS, post, or a third party's) this plugin delivers through.

    Called once when the plugin host starts; a channel name offered twice is a configuration
    error. The outbox worker calls ``await channel.send(message)``, never a request handler.

    Return a list of objects following :class:`core.structs.Channel`; return an empty list to abstain.

    :param context: the deployment (config, database, clock).

    .. versionadded:: 1.0
    """


@hookspec
def guichet_settings_notes(context: PluginContext) -> list[SettingsNote]:
    """What this plugin says of its own settings for this deployment, such as a channel without
    TLS in production mode.

    Called when the plugin host starts, before any channel is built, and by ``guichet config
    check``; a refused note stops the start (a configuration error naming its key), the others
    are logged and printed by ``guichet config check``. Secrets are not resolved yet: judge the
    settings, not the secrets' values.

    Return a list of :class:`core.structs.SettingsNote`; return an empty list to abstain.

    :param context: the deployment (config, database, clock); ``context.settings()`` decodes the table.

    .. versionadded:: 1.0
    """


@hookspec
def guichet_authenticators(context: PluginContext, store: CredentialStore) -> list[Authenticator]:
    """The authenticators this plugin offers: second factors after the password (an authenticator
    app, recovery codes by post) or whole logins (a passkey with user verification).

    Called once when the plugin host starts; a name offered twice is a configuration error. Core
    calls their async methods from the login and Mon compte pages, counts every try against the
    rate limits, audits it, keeps the ``state`` of a challenge sealed in the session and sends the
    notices: an authenticator only enrols, lists, judges and removes.

    Return a list of objects following :class:`core.structs.Authenticator`; return an empty list to
    abstain.

    :param context: the deployment (config, database, clock); ``context.settings()`` decodes the table.
    :param store: where to keep what is enrolled (sealed secrets, counters that only move up).

    .. versionadded:: 1.2
    """


# --- Policies ----------------------------------------------------------------------------------


@hookspec(firstresult=True)
def guichet_code_policy(purpose: str, caisse: CaisseInfo) -> CodePolicy | None:
    """The one-time code policy of a caisse for one purpose.

    Called once per purpose when the plugin host starts; a key set in the TOML ``[codes.<purpose>]``
    table then overrides the answer. A plugin that raises stops the start (fail closed).

    Return a :class:`core.structs.CodePolicy`; return None to abstain.
    First result wins; later plugins are not called.

    :param purpose: "login", "recovery", "registration" or "contact_change".
    :param caisse: the caisse's identity from its config.

    .. versionadded:: 1.0
    """


@hookspec
def guichet_password_rules(caisse: CaisseInfo, context: PluginContext) -> list[PasswordRule]:
    """Rules every new password must follow, with their French wording.

    Called once when the plugin host starts; rules of every plugin apply together. A plugin
    that raises stops the start (fail closed).

    Return a list of :class:`core.structs.PasswordRule`; return an empty list to abstain.

    :param caisse: the caisse's identity from its config.
    :param context: the deployment (config, database, clock).

    .. versionadded:: 1.0
    """


@hookspec(firstresult=True)
def guichet_password_strength(password: str, context: PasswordContext) -> Strength | None:
    """Estimate a password's strength for the "faible / moyen / fort" meter.

    Called as the person types (on the server) and on submit. A plugin that raises gives
    "faible" (fail closed).

    Return a :class:`core.structs.Strength`; return None to abstain.
    First result wins; later plugins are not called.

    :param password: the candidate password; never log it.
    :param context: the person's own words and the caisse's name.

    .. versionadded:: 1.0
    """


# --- Observers ---------------------------------------------------------------------------------


@hookspec
def guichet_event(event: AuditEvent) -> None:
    """Observe a security event (audit log shipping, metrics, webhooks, SIEM).

    Called after the event is stored, in the same order as plugins are enabled; an observer
    that raises is logged and skipped.

    Return None.

    :param event: the event; it holds no code, password, token or full NIR.

    .. versionadded:: 1.0
    """


@hookspec
def guichet_measure(measurement: Measurement) -> None:
    """Observe a number core measured (metrics): a hash's time, a rate-limit hit, the outbox's
    duplicate window (:class:`core.structs.Measurement` lists the names).

    Called as the measure is taken, sometimes in a hashing thread: return at once and never block;
    an observer that raises is logged and skipped.

    Return None.

    :param measurement: the name, value and labels; it holds no code, password, token or identifier.

    .. versionadded:: 1.1
    """


# --- Demo mode ---------------------------------------------------------------------------------


@hookspec(firstresult=True)
def guichet_demo_mailbox(config: CaisseConfig) -> DemoMailbox | None:
    """The demo mailbox: local sinks that keep what the channels send in demo mode, and what they kept.

    Called when an app or an outbox worker process starts with ``[demo] mailbox = true`` (before
    the channels are built: they send to the sinks it starts), and by the demo mailbox page to
    read the messages back. A config with ``[demo] mailbox = true`` and no answer does not start.

    Return an object following :class:`core.context.DemoMailbox`; return None to abstain.
    First result wins; later plugins are not called.

    :param config: the caisse's config (``demo.mailbox_dir``, ``demo.smtp_port``).

    .. versionadded:: 1.1
    """


# --- The command line --------------------------------------------------------------------------


@hookspec
def guichet_commands(cli: click.Group) -> None:
    """Add this plugin's commands to the ``guichet`` command (as pytest, datasette and llm let
    plugins add options and commands).

    Called once when the ``guichet`` command starts, before its arguments are read, on every
    built-in plugin and every installed ``guichet`` entry point (a command exists before the
    config that names the caisse's plugins is read). A command works on the caisse given by its
    ``--config`` option (``guichet.cli.config_option``); a plugin that raises is logged and its
    commands are missing.

    Return None; add commands with ``cli.add_command(...)`` or ``@cli.command()``.

    :param cli: the ``guichet`` click group (rich-click).

    .. versionadded:: 1.1
    """
