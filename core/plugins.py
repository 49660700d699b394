"""Loading the plugins a caisse enables, and PluginHost: the typed facade, the only caller of hooks."""
from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

import pluggy

from guichet.core import defaults, hookspecs
from guichet.core.config import PURPOSES, CaisseConfig, CodePolicyConfig
from guichet.core.context import PluginContext
from guichet.core.errors import ConfigError, PluginError
from guichet.core.structs import (
    AuditEvent,
    Channel,
    CodePolicy,
    PasswordContext,
    PasswordRule,
    Question,
    Record,
    Status,
    Strength,
    Verdict,
)

log = logging.getLogger("guichet.plugins")

BUILTIN_PLUGINS: dict[str, str] = {
    "statuses_msa": "guichet.plugins.statuses_msa.hooks",
    "registry_tables": "guichet.plugins.registry_tables.hooks",
    "identity_vitale": "guichet.plugins.identity_vitale.hooks",
    "identity_payment": "guichet.plugins.identity_payment.hooks",
    "delivery_email": "guichet.plugins.delivery_email.hooks",
    "delivery_sms": "guichet.plugins.delivery_sms.hooks",
    "delivery_postal": "guichet.plugins.delivery_postal.hooks",
    "password_msa": "guichet.plugins.password_msa.hooks",
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
            raise ConfigError(f"the plugin name {name!r} is taken by a built-in plugin; rename the entry point",
                              path=source, key="$.plugins.enabled")
        return importlib.import_module(BUILTIN_PLUGINS[name]), "builtin"
    if name in third_party:
        ep = third_party[name]
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else "entry point"
        loaded = ep.load()
        if not isinstance(loaded, ModuleType):
            raise ConfigError(f"the entry point {name!r} must name a module of hook implementations",
                              path=source, key="$.plugins.enabled")
        return loaded, dist
    raise ConfigError(f"unknown plugin {name!r}; available plugins: {', '.join(available_plugins())}",
                      path=source, key="$.plugins.enabled")


def load_plugins(config: CaisseConfig) -> tuple[pluggy.PluginManager, list[PluginInfo]]:
    """A new PluginManager with the defaults and exactly the enabled plugins, called in config order."""
    pm = pluggy.PluginManager("guichet")
    pm.add_hookspecs(hookspecs)
    pm.register(defaults, name="defaults")
    loaded: list[tuple[str, ModuleType, str]] = [(name, *_import(name, config.source or None))
                                                   for name in config.plugins.enabled]
    # pluggy calls the last registered first: register in reverse so config order is call order
    for name, module, _source in reversed(loaded):
        pm.register(module, name=name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        unknown = sorted(h.name for h in pm.get_hookcallers(exc.plugin) or [] if not h.has_spec())
        raise ConfigError(f"plugin {pm.get_name(exc.plugin)!r} implements an unknown hook: {', '.join(unknown)} "
                          "(the hooks are listed in core/hookspecs.py)", path=config.source or None,
                          key="$.plugins.enabled") from None
    infos = [PluginInfo(name=name, source=source, module=module.__name__,
                        hooks=tuple(sorted(h.name for h in pm.get_hookcallers(module) or [])))
             for name, module, source in loaded]
    return pm, infos


def _plugin_of(pm: pluggy.PluginManager, hook_name: str) -> str:
    return ",".join(impl.plugin_name for impl in getattr(pm.hook, hook_name).get_hookimpls())


class PluginHost:
    """The only code that calls hooks; it awaits, flattens, checks and contains failing plugins."""

    def __init__(self, config: CaisseConfig, context: PluginContext, *, channels: bool = True) -> None:
        """``channels=False`` builds no channel: channels resolve their secrets when built, and
        ``guichet config check`` must work where the secrets are not set."""
        self.config = config
        self.context = context
        self.pm, self.infos = load_plugins(config)
        self._statuses = self._collect_unique("guichet_statuses", lambda s: s.code, {})
        self._channels: dict[str, Channel] = (
            self._collect_unique("guichet_channels", lambda c: c.name, {"context": context}) if channels else {})
        self._policies = {purpose: self._code_policy(purpose) for purpose in PURPOSES}
        self._rules = self._password_rules()

    # -- collecting hooks -------------------------------------------------------------------------

    def _collect_unique(self, hook_name: str, key: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        hook = getattr(self.pm.hook, hook_name)
        found: dict[str, Any] = {}
        for impl in reversed(hook.get_hookimpls()):
            result = impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
            if inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()  # never awaited on purpose: no "never awaited" warning
                raise ConfigError(f"plugin {impl.plugin_name!r}: {hook_name} must be a plain def returning a list")
            for item in result or []:
                name = key(item)
                if name in found:
                    raise ConfigError(f"{hook_name}: {name!r} is offered twice (plugin {impl.plugin_name!r})",
                                      path=self.config.source or None, key="$.plugins.enabled")
                found[name] = item
        return found

    def statuses(self) -> list[Status]:
        return list(self._statuses.values())

    def status(self, code: str) -> Status | None:
        return self._statuses.get(code)

    def channels(self) -> dict[str, Channel]:
        return dict(self._channels)

    def channel(self, name: str) -> Channel | None:
        return self._channels.get(name)

    def identity_questions(self, status: Status, record: Record | None) -> list[Question]:
        """Every plugin's questions; a failing plugin is logged and offers none."""
        questions: list[Question] = []
        for impl in reversed(self.pm.hook.guichet_identity_questions.get_hookimpls()):
            args = {"status": status, "record": record, "context": self.context}
            try:
                offered: list[Question] = list(impl.function(**{a: args[a] for a in impl.argnames}) or [])  # type: ignore[call-overload]
                questions.extend(offered)
            except Exception:
                log.exception("plugin %s failed in guichet_identity_questions", impl.plugin_name)
        allowed = status.questions
        return sorted((q for q in questions if not allowed or q.kind in allowed),
                      key=lambda q: allowed.index(q.kind) if q.kind in allowed else len(allowed))

    # -- firstresult hooks ------------------------------------------------------------------------

    def identity_check(self, question: Question, answer: str, record: Record) -> Verdict:
        """A failing or silent plugin gives UNVERIFIABLE: the password then goes by post."""
        try:
            verdict = self.pm.hook.guichet_identity_check(question=question, answer=answer, record=record,
                                                          context=self.context)
        except Exception:
            log.error("plugin %s failed in guichet_identity_check", _plugin_of(self.pm, "guichet_identity_check"))
            return Verdict.UNVERIFIABLE
        return verdict if isinstance(verdict, Verdict) else Verdict.UNVERIFIABLE

    async def registry_lookup(self, identifier_kind: str, identifier: str) -> Record | None:
        """A failing registry is treated as not knowing the person: nothing is sent to anyone."""
        try:
            pending = self.pm.hook.guichet_registry_lookup(identifier_kind=identifier_kind, identifier=identifier,
                                                           context=self.context)
            if pending is None:
                return None
            record = await pending if inspect.isawaitable(pending) else pending
        except Exception:
            log.error("plugin %s failed in guichet_registry_lookup", _plugin_of(self.pm, "guichet_registry_lookup"))
            return None
        return record if isinstance(record, Record) else None

    def _code_policy(self, purpose: str) -> CodePolicy:
        try:
            policy = self.pm.hook.guichet_code_policy(purpose=purpose, caisse=self.config.caisse)
        except Exception as exc:
            raise PluginError(_plugin_of(self.pm, "guichet_code_policy"), "guichet_code_policy",
                              type(exc).__name__) from None
        if not isinstance(policy, CodePolicy):
            raise PluginError("?", "guichet_code_policy", "no CodePolicy returned")
        override: CodePolicyConfig = getattr(self.config.codes, purpose)
        changes = {k: (tuple(v) if isinstance(v, list) else v)
                   for k in ("length", "lifetime_minutes", "max_attempts", "resend_cooldown_seconds", "channels")
                   if (v := getattr(override, k)) is not None}
        policy = _replace(policy, **changes)
        unknown = [c for c in policy.channels if c not in ("email", "sms")]
        if unknown:
            raise ConfigError(f"code channels must be email or sms, not {unknown}", path=self.config.source or None,
                              key=f"$.codes.{purpose}.channels")
        return policy

    def code_policy(self, purpose: str) -> CodePolicy:
        return self._policies[purpose]

    def _password_rules(self) -> list[PasswordRule]:
        try:
            results: Iterable[list[PasswordRule]] = self.pm.hook.guichet_password_rules(
                caisse=self.config.caisse, context=self.context)
        except Exception as exc:
            raise PluginError(_plugin_of(self.pm, "guichet_password_rules"), "guichet_password_rules",
                              type(exc).__name__) from None
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
            log.error("plugin %s failed in guichet_password_strength",
                      _plugin_of(self.pm, "guichet_password_strength"))
            strength = None
        return strength if isinstance(strength, Strength) else Strength(level=0, label_fr="faible")

    # -- observers --------------------------------------------------------------------------------

    def emit(self, event: AuditEvent) -> None:
        for impl in reversed(self.pm.hook.guichet_event.get_hookimpls()):
            try:
                impl.function(**{a: event for a in impl.argnames})
            except Exception:
                log.error("plugin %s failed in guichet_event; skipped", impl.plugin_name)


def _replace(policy: CodePolicy, **changes: Any) -> CodePolicy:
    import msgspec

    return msgspec.structs.replace(policy, **changes)
