"""Loading the plugins a caisse enables, and PluginHost: the typed facade, the only caller of hooks."""

from __future__ import annotations

import importlib
import inspect
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any, TypeVar

import msgspec
import pluggy

from guichet.core import defaults, hookspecs
from guichet.core.channels import PURPOSE_NEEDS, carries, check_channel, purpose_problem
from guichet.core.config import PURPOSES, CaisseConfig, CodePolicyConfig
from guichet.core.context import DemoMailbox, PluginContext
from guichet.core.credentials import CredentialStore
from guichet.core.errors import ConfigError, PluginError, StepError
from guichet.core.structs import (
    LETTER,
    PASSWORD,
    POSTAL,
    Assurance,
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

log = logging.getLogger("guichet.plugins")

AUTHENTICATOR_METHODS = ("enrolments", "challenge", "verify", "begin_enrolment", "finish_enrolment", "remove")
AUTHENTICATOR_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def check_authenticator(authenticator: Any, plugin: str) -> None:
    """Refuse, at start-up, an authenticator that does not follow the Authenticator contract."""
    problems = []
    name = getattr(authenticator, "name", None)
    if not isinstance(name, str) or not AUTHENTICATOR_NAME.match(name):
        problems.append("name (lower-case letters, digits, - or _: it appears in URLs)")
    for attribute in ("label_fr", "description_fr"):
        if not isinstance(getattr(authenticator, attribute, None), str) or not getattr(authenticator, attribute):
            problems.append(f"{attribute} (a non-empty string)")
    if not isinstance(getattr(authenticator, "assurance", None), Assurance):
        problems.append("assurance (a core.structs.Assurance)")
    if not isinstance(getattr(authenticator, "rank", None), int):
        problems.append("rank (an int)")
    if getattr(authenticator, "enrolment", None) not in ("page", "letter", "contacts"):
        problems.append('enrolment ("page", "letter" or "contacts")')
    problems += [
        f"{m} (an async method)"
        for m in AUTHENTICATOR_METHODS
        if not inspect.iscoroutinefunction(getattr(authenticator, m, None))
    ]
    if problems:
        raise ConfigError(
            f"plugin {plugin!r}: the authenticator {name or type(authenticator).__name__!r} lacks "
            f"{'; '.join(problems)} (see the Authenticator protocol in core/structs.py)",
            key="$.plugins.enabled",
        )


BUILTIN_PLUGINS: dict[str, str] = {
    "statuses_msa": "guichet.plugins.statuses_msa.hooks",
    "registry_tables": "guichet.plugins.registry_tables.hooks",
    "identity_vitale": "guichet.plugins.identity_vitale.hooks",
    "identity_payment": "guichet.plugins.identity_payment.hooks",
    "delivery_email": "guichet.plugins.delivery_email.hooks",
    "delivery_sms": "guichet.plugins.delivery_sms.hooks",
    "delivery_postal": "guichet.plugins.delivery_postal.hooks",
    "password_msa": "guichet.plugins.password_msa.hooks",
    "authenticator_passkey": "guichet.plugins.authenticator_passkey.hooks",
    "demo_mailbox": "guichet.plugins.demo_mailbox.hooks",
    "authenticator_totp": "guichet.plugins.authenticator_totp.hooks",
    "authenticator_recovery": "guichet.plugins.authenticator_recovery.hooks",
    "caisse_provence_azur": "guichet.plugins.caisse_provence_azur.hooks",
    "caisse_sud_aquitaine": "guichet.plugins.caisse_sud_aquitaine.hooks",
}
ENTRY_POINT_GROUP = "guichet"


@dataclass(frozen=True)
class PluginInfo:
    """One loaded plugin, as ``guichet plugins`` shows it."""

    name: str
    source: str  # "builtin" or "<distribution> <version>"
    module: str
    hooks: tuple[str, ...]


def _third_party() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_plugins() -> list[str]:
    return sorted(set(BUILTIN_PLUGINS) | set(_third_party()))


def _import(name: str, source: str | None = None) -> tuple[ModuleType, str]:
    third_party = _third_party()
    if name in BUILTIN_PLUGINS:
        if name in third_party and third_party[name].value != BUILTIN_PLUGINS[name]:
            raise ConfigError(
                f"the plugin name {name!r} is taken by a built-in plugin; rename the entry point",
                path=source,
                key="$.plugins.enabled",
            )
        return importlib.import_module(BUILTIN_PLUGINS[name]), "builtin"
    if name in third_party:
        ep = third_party[name]
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else "entry point"
        loaded = ep.load()
        if not isinstance(loaded, ModuleType):
            raise ConfigError(
                f"the entry point {name!r} must name a module of hook implementations",
                path=source,
                key="$.plugins.enabled",
            )
        return loaded, dist
    raise ConfigError(
        f"unknown plugin {name!r}; available plugins: {', '.join(available_plugins())}",
        path=source,
        key="$.plugins.enabled",
    )


def add_plugin_commands(cli: Any) -> list[str]:
    """Let every available plugin add its commands to the ``guichet`` click group (``guichet_commands``);
    return the names of the plugins that did. Commands exist before a config is read, so every
    built-in plugin and installed entry point is asked, as pytest, datasette and llm do; a plugin
    that cannot be imported or fails is logged and skipped, and the other commands still work."""
    pm = pluggy.PluginManager("guichet")
    pm.add_hookspecs(hookspecs)
    for name in available_plugins():
        try:
            module, _source = _import(name)
        except Exception as exc:
            log.warning("plugin %s could not be imported (%s): its commands are missing", name, type(exc).__name__)
            continue
        pm.register(module, name=name)
    added = []
    for impl in reversed(pm.hook.guichet_commands.get_hookimpls()):
        try:
            impl.function(**{a: cli for a in impl.argnames})
        except Exception as exc:
            log.warning(
                "plugin %s failed in guichet_commands (%s): its commands are missing",
                impl.plugin_name,
                type(exc).__name__,
            )
            continue
        added.append(impl.plugin_name)
    return added


def load_plugins(
    config: CaisseConfig,
    extra: Mapping[str, ModuleType] | None = None,
) -> tuple[pluggy.PluginManager, list[PluginInfo]]:
    """A new PluginManager with the defaults and exactly the enabled plugins, called in config order.

    ``extra``: plugins the application itself brings, whatever the config enables (the web layer's
    metrics); they are called after the enabled ones, and a name clash is a configuration error."""
    pm = pluggy.PluginManager("guichet")
    pm.add_hookspecs(hookspecs)
    pm.register(defaults, name="defaults")
    enabled = list(config.plugins.enabled)
    if config.demo.mailbox and "demo_mailbox" not in enabled:  # [demo] mailbox = true is the switch
        enabled.append("demo_mailbox")
    loaded: list[tuple[str, ModuleType, str]] = [(name, *_import(name, config.source or None)) for name in enabled]
    for name, module in (extra or {}).items():
        if name in config.plugins.enabled:
            raise ConfigError(
                f"the plugin name {name!r} is the application's own plugin; remove it from the list",
                path=config.source or None,
                key="$.plugins.enabled",
            )
        loaded.append((name, module, "builtin"))
    # pluggy calls the last registered first: register in reverse so config order is call order
    for name, module, _source in reversed(loaded):
        pm.register(module, name=name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        unknown = sorted(h.name for h in pm.get_hookcallers(exc.plugin) or [] if not h.has_spec())
        raise ConfigError(
            f"plugin {pm.get_name(exc.plugin)!r} implements an unknown hook: {', '.join(unknown)} "
            "(the hooks are listed in core/hookspecs.py)",
            path=config.source or None,
            key="$.plugins.enabled",
        ) from None
    for name, module, _source in loaded:
        _refuse_coroutines(pm, name, module, config.source or None)
        _log_deprecations(pm, name, module)
    infos = [
        PluginInfo(
            name=name,
            source=source,
            module=module.__name__,
            hooks=tuple(sorted(h.name for h in pm.get_hookcallers(module) or [])),
        )
        for name, module, source in loaded
    ]
    return pm, infos


def demo_mailbox(config: CaisseConfig) -> DemoMailbox | None:
    """The demo mailbox of a config with ``[demo] mailbox = true`` (not started), else None; a
    ConfigError when no enabled plugin offers one (``guichet_demo_mailbox``)."""
    if not config.demo.mailbox:
        return None
    pm, _infos = load_plugins(config)
    return _offered_mailbox(pm, config)


def _offered_mailbox(pm: pluggy.PluginManager, config: CaisseConfig) -> DemoMailbox:
    try:
        found: DemoMailbox | None = pm.hook.guichet_demo_mailbox(config=config)
    except ConfigError:
        raise
    except Exception as exc:
        raise PluginError(_plugin_of(pm, "guichet_demo_mailbox"), "guichet_demo_mailbox", type(exc).__name__) from None
    if found is None:
        raise ConfigError(
            "[demo] mailbox = true, and no enabled plugin offers a demo mailbox (enable demo_mailbox)",
            path=config.source or None,
            key="$.demo.mailbox",
        )
    return found


def _own_impls(pm: pluggy.PluginManager, module: ModuleType) -> list[tuple[str, Any]]:
    return [
        (caller.name, impl)
        for caller in pm.get_hookcallers(module) or []
        for impl in caller.get_hookimpls()
        if impl.plugin is module
    ]


def _refuse_coroutines(pm: pluggy.PluginManager, name: str, module: ModuleType, source: str | None) -> None:
    """pluggy never awaits: an ``async def`` implementation would win every firstresult hook with a
    coroutine and do nothing on the others, so it is refused before anything is called."""
    for hook, impl in _own_impls(pm, module):
        if inspect.iscoroutinefunction(impl.function) or inspect.isasyncgenfunction(impl.function):
            raise ConfigError(
                f"plugin {name!r}: {hook} is an async def; hook implementations are plain def "
                "(return an awaitable, or an object with async methods, and guichet awaits it)",
                path=source,
                key="$.plugins.enabled",
            )


def _log_deprecations(pm: pluggy.PluginManager, name: str, module: ModuleType) -> None:
    """pluggy warns the plugin's author (GuichetDeprecationWarning, at registration); this tells the
    operator, whose logs see no DeprecationWarning."""
    for hook, impl in _own_impls(pm, module):
        spec = getattr(pm.hook, hook).spec
        warned = [spec.warn_on_impl] if spec.warn_on_impl else []
        warned += [w for arg, w in (spec.warn_on_impl_args or {}).items() if arg in impl.argnames]
        for warning in warned:
            log.warning("plugin %s: %s", name, warning)


def _plugin_of(pm: pluggy.PluginManager, hook_name: str) -> str:
    return ",".join(impl.plugin_name for impl in getattr(pm.hook, hook_name).get_hookimpls())


class PluginHost:
    """The only code that calls hooks; it awaits, flattens, checks and contains failing plugins."""

    def __init__(
        self,
        config: CaisseConfig,
        context: PluginContext,
        *,
        channels: bool = True,
        extra: Mapping[str, ModuleType] | None = None,
    ) -> None:
        """``channels=False`` builds no channel: channels resolve their secrets when built, and
        ``guichet config check`` must work where the secrets are not set. ``extra``: the application's
        own plugins (``load_plugins``)."""
        self.config = config
        self.context = context
        self.pm, self.infos = load_plugins(config, extra)
        self._statuses = self._configured_statuses(self._collect_unique("guichet_statuses", lambda s: s.code, {}))
        self.channels_loaded = channels
        if channels:  # a running deployment: what plugins refuse of their settings stops it here
            for note in self.settings_notes():
                if note.refused:
                    raise ConfigError(note.message, path=config.source or None, key=note.key)
                log.warning("%s: %s", note.key, note.message)
        self._channels: dict[str, Channel] = (
            self._collect_unique("guichet_channels", lambda c: c.name, {"context": context}, check=check_channel)
            if channels
            else {}
        )
        self._policies = {purpose: self._code_policy(purpose) for purpose in PURPOSES}
        self._rules = self._password_rules()
        self.credentials = CredentialStore(context.database, config, context.clock)
        self._authenticators: dict[str, Authenticator] = self._collect_unique(
            "guichet_authenticators",
            lambda a: a.name,
            {"context": context, "store": self.credentials},
            check=check_authenticator,
        )

    # -- collecting hooks -------------------------------------------------------------------------

    def _collect_unique(
        self, hook_name: str, key: Any, kwargs: dict[str, Any], check: Callable[[Any, str], None] | None = None
    ) -> dict[str, Any]:
        hook = getattr(self.pm.hook, hook_name)
        found: dict[str, Any] = {}
        for impl in reversed(hook.get_hookimpls()):
            result = impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
            if inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()  # never awaited on purpose: no "never awaited" warning
                raise ConfigError(f"plugin {impl.plugin_name!r}: {hook_name} must be a plain def returning a list")
            for item in result or []:
                if check is not None:
                    check(item, impl.plugin_name)
                name = key(item)
                if name in found:
                    raise ConfigError(
                        f"{hook_name}: {name!r} is offered twice (plugin {impl.plugin_name!r})",
                        path=self.config.source or None,
                        key="$.plugins.enabled",
                    )
                found[name] = item
        return found

    def settings_notes(self) -> list[SettingsNote]:
        """What every plugin says of its own settings (guichet_settings_notes), in call order."""
        notes: list[SettingsNote] = []
        for impl in reversed(self.pm.hook.guichet_settings_notes.get_hookimpls()):
            try:
                said: list[SettingsNote] = impl.function(**{a: {"context": self.context}[a] for a in impl.argnames})  # type: ignore[assignment]
                notes.extend(said or [])
            except ConfigError:
                raise
            except Exception as exc:  # fail closed: a plugin that cannot judge its settings does not start
                raise ConfigError(
                    f"plugin {impl.plugin_name!r} failed in guichet_settings_notes: {type(exc).__name__}",
                    path=self.config.source or None,
                ) from None
        return notes

    def statuses(self) -> list[Status]:
        return list(self._statuses.values())

    def status(self, code: str) -> Status | None:
        return self._statuses.get(code)

    def channels(self) -> dict[str, Channel]:
        return dict(self._channels)

    def authenticators(self) -> list[Authenticator]:
        """Every enabled authenticator, the strongest first (by ``rank``)."""
        return sorted(self._authenticators.values(), key=lambda a: -a.rank)

    def authenticator(self, name: str) -> Authenticator | None:
        return self._authenticators.get(name)

    def add_authenticator(self, authenticator: Authenticator, *, plugin: str) -> None:
        """One of core's own (the codes by email and SMS, which need the services to send)."""
        check_authenticator(authenticator, plugin)
        if authenticator.name in self._authenticators:
            raise ConfigError(
                f"guichet_authenticators: {authenticator.name!r} is offered twice", key="$.plugins.enabled"
            )
        self._authenticators[authenticator.name] = authenticator

    def channel(self, name: str) -> Channel | None:
        return self._channels.get(name)

    def channels_for(self, purpose: str) -> list[Channel]:
        """The loaded channels a purpose's codes may use, in the caisse's order, each able to carry
        what the purpose sends (a code, and for registration and recovery the temporary password)."""
        needed, kinds = PURPOSE_NEEDS[purpose]
        found = [self._channels[n] for n in self._policies[purpose].channels if n in self._channels]
        return [c for c in found if needed <= carries(c) and (kinds is None or c.reaches in kinds)]

    def channels_reaching(self, kind: str, carrying: str) -> list[Channel]:
        """Every loaded channel that delivers ``carrying`` (a notice, a letter...) to addresses of ``kind``,
        in plugin order."""
        return [c for c in self._channels.values() if c.reaches == kind and carrying in carries(c)]

    def check_can_serve(self) -> None:
        """Raise ConfigError when this caisse cannot serve its flows: every process that serves or
        delivers calls it before it starts, as does ``guichet config check``."""
        self.check_deliveries()
        self.check_questions()

    def check_deliveries(self) -> None:
        """Raise ConfigError when a purpose cannot be served by the loaded channels: every process that
        serves or delivers calls it before it starts (a config that cannot deliver what its flows need
        must not start), as does ``guichet config check``."""
        if not self.channels_loaded:
            raise ValueError("check_deliveries needs a host built with its channels")
        source = self.config.source or None
        for purpose in PURPOSES:
            explicit = getattr(self.config.codes, purpose).channels is not None
            problem = purpose_problem(
                purpose, list(self._policies[purpose].channels), self._channels, explicit=explicit
            )
            if problem:
                raise ConfigError(problem, path=source, key=f"$.codes.{purpose}.channels")
        asks_questions = any(not status.third_party for status in self._statuses.values())
        postal = {what: self.channels_reaching(POSTAL, what) for what in (PASSWORD, LETTER)}
        if asks_questions and not all(postal.values()):
            missing = " and ".join(
                what
                for what, found in (
                    ("the temporary password after a wrong or missing identity answer", postal[PASSWORD]),
                    ("the registration confirmation letter", postal[LETTER]),
                )
                if not found
            )
            raise ConfigError(
                f"registration sends {missing} by post, and no enabled channel reaches postal "
                "addresses to carry it (enable delivery_postal, or a postal channel of your own)",
                path=source,
                key="$.plugins.enabled",
            )
        for name in self.config.passwords.temporary_lifetime_hours:
            if name not in self._channels:
                raise ConfigError(
                    f"no enabled channel is named {name!r} (loaded channels: "
                    f"{', '.join(sorted(self._channels)) or 'none'})",
                    path=source,
                    key="$.passwords.temporary_lifetime_hours",
                )

    def _configured_statuses(self, offered: dict[str, Status]) -> dict[str, Status]:
        """The plugins' statuses with the caisse's ``[statuses.<code>] questions`` applied."""
        for code, chosen in self.config.statuses.items():
            if code not in offered:
                raise ConfigError(
                    f"no enabled plugin offers the status {code!r} (statuses: {', '.join(offered)})",
                    path=self.config.source or None,
                    key=f"$.statuses.{code}",
                )
            if chosen.questions is not None:
                offered[code] = _replace(offered[code], questions=tuple(chosen.questions))
        return offered

    def check_questions(self) -> None:
        """Raise ConfigError when a status lists an identity question no enabled plugin asks for it."""
        for status in self._statuses.values():
            if status.third_party:
                continue
            asked = {q.kind for q in self.identity_questions(status, None)}
            for kind in status.questions:
                if kind not in asked:
                    where = (
                        f"$.statuses.{status.code}.questions"
                        if status.code in self.config.statuses
                        and self.config.statuses[status.code].questions is not None
                        else "$.plugins.enabled"
                    )
                    raise ConfigError(
                        f"the status {status.code!r} offers the identity question {kind!r}, which no "
                        f"enabled plugin asks for it (asked: {', '.join(sorted(asked)) or 'none'})",
                        path=self.config.source or None,
                        key=where,
                    )

    def identity_questions(self, status: Status, record: Record | None) -> list[Question]:
        """The questions the caisse offers for ``status`` (``status.questions``, in that order) that the
        plugins ask; a failing plugin is logged and offers none."""
        questions: dict[str, Question] = {}
        for impl in reversed(self.pm.hook.guichet_identity_questions.get_hookimpls()):
            args = {"status": status, "record": record, "context": self.context}
            try:
                offered: list[Question] = list(impl.function(**{a: args[a] for a in impl.argnames}) or [])  # type: ignore[call-overload]
            except Exception:
                log.exception("plugin %s failed in guichet_identity_questions", impl.plugin_name)
                continue
            for question in offered:
                questions.setdefault(question.kind, question)  # the first plugin to ask a kind asks it
        return [questions[kind] for kind in status.questions if kind in questions]

    def identity_answer(self, question: Question, answer: str) -> str:
        """The answer normalised by the question's plugin; raises StepError (a French message, no try
        counted) when it is malformed. A plugin that fails is logged and the answer kept as typed."""
        try:
            parsed = self.pm.hook.guichet_identity_answer(question=question, answer=answer, context=self.context)
        except StepError:
            raise
        except Exception:
            log.error("plugin %s failed in guichet_identity_answer", _plugin_of(self.pm, "guichet_identity_answer"))
            parsed = None
        if isinstance(parsed, str):
            return parsed
        if not answer:
            raise StepError("answer", "Veuillez saisir votre réponse, ou choisir « Je ne peux pas répondre ».")
        if len(answer) > question.max_length:
            raise StepError("answer", f"Votre réponse ne doit pas dépasser {question.max_length} caractères.")
        return answer

    # -- firstresult hooks ------------------------------------------------------------------------

    def identity_check(self, question: Question, answer: str, record: Record) -> Verdict:
        """A failing or silent plugin gives UNVERIFIABLE: the password then goes by post."""
        try:
            verdict = self.pm.hook.guichet_identity_check(
                question=question, answer=answer, record=record, context=self.context
            )
        except Exception:
            log.error("plugin %s failed in guichet_identity_check", _plugin_of(self.pm, "guichet_identity_check"))
            return Verdict.UNVERIFIABLE
        return verdict if isinstance(verdict, Verdict) else Verdict.UNVERIFIABLE

    async def registry_lookup(self, identifier_kind: str, identifier: str) -> Record | None:
        """A failing registry is treated as not knowing the person: nothing is sent to anyone."""
        try:
            pending = self.pm.hook.guichet_registry_lookup(
                identifier_kind=identifier_kind, identifier=identifier, context=self.context
            )
            if pending is None:
                return None
            record = await pending if inspect.isawaitable(pending) else pending
        except Exception:
            log.error("plugin %s failed in guichet_registry_lookup", _plugin_of(self.pm, "guichet_registry_lookup"))
            return None
        if not isinstance(record, Record):
            return None
        return await self._with_facts(record)

    async def _with_facts(self, record: Record) -> Record:
        """The record with what other sources know of the person (``guichet_registry_facts``)."""
        facts = dict(record.facts)
        for impl in reversed(self.pm.hook.guichet_registry_facts.get_hookimpls()):
            args = {"record": record, "context": self.context}
            try:
                pending = impl.function(**{a: args[a] for a in impl.argnames})
                found = await pending if inspect.isawaitable(pending) else pending
            except Exception:
                log.error("plugin %s failed in guichet_registry_facts", impl.plugin_name)
                continue
            if isinstance(found, dict):
                for key, value in found.items():
                    facts.setdefault(key, value)
        return _replace(record, facts=facts) if facts != record.facts else record

    def _code_policy(self, purpose: str) -> CodePolicy:
        try:
            policy = self.pm.hook.guichet_code_policy(purpose=purpose, caisse=self.config.caisse)
        except Exception as exc:
            raise PluginError(
                _plugin_of(self.pm, "guichet_code_policy"), "guichet_code_policy", type(exc).__name__
            ) from None
        if not isinstance(policy, CodePolicy):
            raise PluginError("?", "guichet_code_policy", "no CodePolicy returned")
        override: CodePolicyConfig = getattr(self.config.codes, purpose)
        changes = {
            k: (tuple(v) if isinstance(v, list) else v)
            for k in ("length", "lifetime_minutes", "max_attempts", "resend_cooldown_seconds", "channels")
            if (v := getattr(override, k)) is not None
        }
        # a preset's or the default's list may name channels this caisse has not enabled: flows use
        # channels_for(), which keeps the loaded ones; check_deliveries() refuses a list with none
        return _replace(policy, **changes)

    def code_policy(self, purpose: str) -> CodePolicy:
        return self._policies[purpose]

    def _password_rules(self) -> list[PasswordRule]:
        try:
            results: Iterable[list[PasswordRule]] = self.pm.hook.guichet_password_rules(
                caisse=self.config.caisse, context=self.context
            )
        except Exception as exc:
            raise PluginError(
                _plugin_of(self.pm, "guichet_password_rules"), "guichet_password_rules", type(exc).__name__
            ) from None
        rules: dict[str, PasswordRule] = {}
        # results come in call order: the first plugin to set a rule kind keeps it
        for batch in results:
            for rule in batch:
                rules.setdefault(rule.kind, rule)
        return list(rules.values())

    def password_rules(self) -> list[PasswordRule]:
        return list(self._rules)

    def password_strength(self, password: str, context: PasswordContext) -> Strength:
        try:
            strength = self.pm.hook.guichet_password_strength(password=password, context=context)
        except Exception:
            log.error("plugin %s failed in guichet_password_strength", _plugin_of(self.pm, "guichet_password_strength"))
            strength = None
        return strength if isinstance(strength, Strength) else Strength(level=0, label_fr="faible")

    # -- observers --------------------------------------------------------------------------------

    def demo_mailbox(self) -> DemoMailbox | None:
        """The demo mailbox, to read what it kept (the demo pages); None unless ``[demo] mailbox = true``."""
        return _offered_mailbox(self.pm, self.config) if self.config.demo.mailbox else None

    def measure(self, measurement: Measurement) -> None:
        """Hand a measure to the guichet_measure observers (from any thread); a failing one is logged."""
        for impl in reversed(self.pm.hook.guichet_measure.get_hookimpls()):
            try:
                impl.function(**{a: measurement for a in impl.argnames})
            except Exception:
                log.error("plugin %s failed in guichet_measure; skipped", impl.plugin_name)

    def emit(self, event: AuditEvent) -> None:
        for impl in reversed(self.pm.hook.guichet_event.get_hookimpls()):
            try:
                impl.function(**{a: event for a in impl.argnames})
            except Exception:
                log.error("plugin %s failed in guichet_event; skipped", impl.plugin_name)


StructT = TypeVar("StructT", bound=msgspec.Struct)


def _replace(struct: StructT, **changes: Any) -> StructT:
    return msgspec.structs.replace(struct, **changes)
