"""Conformance checks a plugin author runs in their own CI: what guichet expects of a channel and of a
plugin module, checked the way guichet itself will use them. Each raises AssertionError with the reason."""

from __future__ import annotations

import datetime as dt
import difflib
import importlib
import inspect
import re
import tempfile
import typing
import warnings
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from guichet.core.config import CaisseConfig
    from guichet.core.plugins import PluginInfo
    from guichet.core.structs import Channel, Message, Recipient

CHANNEL_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


def _fail(reason: str) -> typing.NoReturn:
    raise AssertionError(reason)


def sample_message(
    template: str,
    recipient: Recipient,
    *,
    channel: str,
    id: int = 1,
    payload: dict[str, Any] | None = None,
    caisse_name: str = "MSA Test",
    created_at: dt.datetime | None = None,
) -> Message:
    """A message as the outbox worker hands it to a channel; the payload holds the longest values the
    core puts in each key (``guichet.core.delivery_templates.SAMPLE_PAYLOAD``) unless given."""
    from guichet.core.delivery_templates import SAMPLE_PAYLOAD
    from guichet.core.structs import Message

    return Message(
        id=id,
        channel=channel,
        template=template,
        recipient=recipient,
        payload=dict(SAMPLE_PAYLOAD if payload is None else payload),
        caisse_name=caisse_name,
        created_at=created_at or dt.datetime.now(dt.UTC),
    )


def _shown(recipient: Recipient) -> list[str]:
    """What a reason must not show of a recipient: the name, the addresses, and a postal address's lines."""
    found = [recipient.name, recipient.email or "", recipient.mobile or "", *recipient.addresses.values()]
    found += list(recipient.address.lines if recipient.address else ())
    return [value for value in found if len(value) >= 4]


def _check_reason(error: Exception, message: Message, secrets: Iterable[str], what: str) -> None:
    reason = str(error)
    if not reason or "\n" in reason:
        _fail(f"{what}: the DeliveryError's reason must be one short line, got {reason!r}")
    leaked = [v for v in message.payload.values() if isinstance(v, str) and len(v) >= 4 and v in reason]
    leaked += [v for v in _shown(message.recipient) if v in reason]
    if leaked or any(s and s in reason for s in secrets):
        _fail(
            f"{what}: the DeliveryError's reason shows a payload value, an address or a secret; it is stored "
            "in last_error and logged (say what failed, never with what)"
        )
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None and not (isinstance(retry_after, (int, float)) and retry_after >= 0):
        _fail(f"{what}: retry_after must be a number of seconds, >= 0, or None")


async def assert_channel_conforms(
    channel: Channel, recipient: Recipient, *, failing: Channel | None = None, secrets: Iterable[str] = ()
) -> list[Message]:
    """Check a channel the way guichet uses it, and return the messages it was given to deliver.

    - its attributes (``name``, ``label_fr``, ``reaches``, ``carries``) and an ``async def send``, as the
      plugin host checks them at start-up;
    - ``send`` delivers, to ``recipient`` (who must have an address of the kind the channel reaches), one
      message of every template core sends that the channel carries (so every template renders), and
      returns None;
    - a recipient without such an address is refused with ``DeliveryError(permanent=True)``;
    - ``failing`` (the same channel built to reach a server that refuses or is down: an ``HttpSink``
      scripted to 503, an ``SmtpSink`` with ``data_reply="451 ..."``) raises ``DeliveryError``;
    - no ``secrets`` value (an API key, a password) in the channel's ``repr`` or ``str``, and neither a
      secret nor a payload value nor an address in a failure's reason.

    Check the sink afterwards: ``len(sink.requests) == len(sent)``, what each request carries, and so on.
    """
    from guichet.core.channels import TEMPLATE_CARRIES, carries, check_channel
    from guichet.core.errors import ConfigError, DeliveryError
    from guichet.core.structs import Recipient

    secrets = [s for s in secrets if s]
    for candidate in (channel, failing) if failing is not None else (channel,):
        try:
            check_channel(candidate, "under test")
        except ConfigError as exc:
            _fail(str(exc).removeprefix("$.plugins.enabled: "))
        if any(s in repr(candidate) or s in str(candidate) for s in secrets):
            _fail(f"the channel {candidate.name!r} shows a secret in its repr or str: write a __repr__ without it")
    if not CHANNEL_NAME.fullmatch(channel.name):
        _fail(
            f"the channel name {channel.name!r} is what a caisse writes in its TOML: lower case letters, "
            "digits and _, starting with a letter, at most 32"
        )
    if channel.label_fr != channel.label_fr.strip():
        _fail(f"the label {channel.label_fr!r} completes a sentence: no leading or trailing space")
    if not recipient.reachable_by(channel.reaches):
        _fail(
            f"the recipient given has no {channel.reaches!r} address, which the channel reaches: give one it can "
            "be sent to"
        )
    sent = []
    for number, (template, what) in enumerate(TEMPLATE_CARRIES.items(), start=1):
        if what not in carries(channel):
            continue
        message = sample_message(template, recipient, channel=channel.name, id=number)
        try:
            returned: object = await channel.send(message)  # type: ignore[func-returns-value]
        except DeliveryError as exc:
            _fail(f"send() refused a {template} message ({what}) for a recipient it reaches: {exc}")
        if returned is not None:
            _fail(f"send() returns None once the message is handed over; it returned {type(returned).__name__}")
        sent.append(message)
    if not sent:
        _fail(
            f"the channel {channel.name!r} carries nothing core sends ({', '.join(sorted(set(TEMPLATE_CARRIES.values())))})"
        )
    unreachable = sample_message(
        sent[0].template, Recipient(name=recipient.name), channel=channel.name, id=len(sent) + 1
    )
    try:
        await channel.send(unreachable)
    except DeliveryError as exc:
        if not exc.permanent:
            _fail(
                f"a recipient without a {channel.reaches!r} address can never be reached: raise "
                "DeliveryError(permanent=True)"
            )
        _check_reason(exc, unreachable, secrets, "a recipient without an address")
    else:
        _fail(
            f"send() accepted a message for a recipient without a {channel.reaches!r} address: raise "
            "DeliveryError(..., permanent=True)"
        )
    if failing is not None:
        refused = sample_message(sent[0].template, recipient, channel=failing.name, id=len(sent) + 2)
        try:
            await failing.send(refused)
        except DeliveryError as exc:
            _check_reason(exc, refused, secrets, "a failing server")
        except Exception as exc:
            _fail(
                f"a failing server made send() raise {type(exc).__name__}: raise DeliveryError, permanent "
                "or not as the server's answer says"
            )
        else:
            _fail("send() returned through a failing server: it must raise DeliveryError")
    return sent


# --- plugin modules ------------------------------------------------------------------------------------


def _resolve(plugin: ModuleType | str) -> tuple[str, ModuleType]:
    """The plugin's name (as a caisse enables it) and its module of hook implementations."""
    from importlib.metadata import entry_points

    from guichet.core.plugins import BUILTIN_PLUGINS, ENTRY_POINT_GROUP, available_plugins

    targets = {**{ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}, **BUILTIN_PLUGINS}
    if isinstance(plugin, str):
        if plugin not in targets:
            _fail(
                f"no plugin named {plugin!r}: neither built in nor an entry point in the group "
                f"{ENTRY_POINT_GROUP!r} (installed: {', '.join(available_plugins())})"
            )
        return plugin, importlib.import_module(targets[plugin])
    names = [name for name, target in targets.items() if target == plugin.__name__]
    if not names:
        _fail(
            f"no entry point in the group {ENTRY_POINT_GROUP!r} names {plugin.__name__}: declare it in "
            f'pyproject.toml, [project.entry-points.{ENTRY_POINT_GROUP}] your_name = "{plugin.__name__}", '
            "and install the distribution"
        )
    return names[0], plugin


def assert_plugin_conforms(
    plugin: ModuleType | str, *, config: CaisseConfig | None = None, allow_deprecated: bool = False
) -> PluginInfo:
    """Check a plugin module (or the plugin a caisse enables by this name) the way guichet loads it, and
    return what ``guichet plugins`` shows of it.

    - it is found by name (an entry point in the group ``guichet``, or a built-in plugin);
    - it implements at least one hook, each a known hook (a close name is suggested), a plain ``def``
      (never ``async def``), typed (every parameter and the return), taking only the hook's arguments,
      and not deprecated (unless ``allow_deprecated``); no ``guichet_*`` function lacks ``@hookimpl``;
    - it loads through the plugin host (``PluginHost``: settings notes, channels built and checked,
      policies, rules) with ``config``, which must enable it; by default a test caisse enabling only it,
      so pass a config with its ``[plugins.settings.<name>]`` if it needs settings.
    """
    from guichet.core import hookspecs
    from guichet.core.errors import GuichetDeprecationWarning

    name, module = _resolve(plugin)
    specs = {n: f for n, f in vars(hookspecs).items() if callable(f) and hasattr(f, "guichet_spec")}
    implemented = []
    for attribute in sorted(dir(module)):
        function = getattr(module, attribute)
        options = getattr(function, "guichet_impl", None)
        if options is None:
            if attribute in specs and inspect.isfunction(function) and function.__module__ == module.__name__:
                _fail(f"{module.__name__}.{attribute} is not marked with @hookimpl: guichet never calls it")
            continue
        hook = options.get("specname") or attribute
        where = f"{module.__name__}.{attribute}"
        if getattr(function, "__module__", "").startswith("guichet.core."):
            _fail(
                f"{where} is {function.__module__}'s own implementation, imported into the plugin: pluggy "
                f"registers it again as the plugin's; import the module ({function.__module__}) instead"
            )
        if hook not in specs:
            close = difflib.get_close_matches(hook, specs, n=1)
            _fail(f"{where}: guichet has no hook {hook!r}" + (f"; did you mean {close[0]}?" if close else ""))
        if inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function):
            _fail(
                f"{where} is async: hook implementations are plain def (return an awaitable, or an object "
                "with async methods, and guichet awaits it)"
            )
        signature = inspect.signature(function)
        parameters = list(signature.parameters)
        untyped = [p for p, v in signature.parameters.items() if v.annotation is inspect.Parameter.empty]
        untyped += ["the return"] if signature.return_annotation is inspect.Signature.empty else []
        if untyped:
            _fail(f"{where}: no type for {', '.join(untyped)} (the hook's types are in guichet.core.hookspecs)")
        allowed = list(inspect.signature(specs[hook]).parameters)
        if set(parameters) - set(allowed):
            _fail(
                f"{where} takes {', '.join(sorted(set(parameters) - set(allowed)))}, which {hook} does not "
                f"pass (it passes {', '.join(allowed) or 'nothing'})"
            )
        spec_options = specs[hook].guichet_spec  # type: ignore[attr-defined]
        retired = [spec_options.get("warn_on_impl")]
        retired += [w for arg, w in (spec_options.get("warn_on_impl_args") or {}).items() if arg in parameters]
        if not allow_deprecated and any(retired):
            _fail(f"{where}: {'; '.join(str(w) for w in retired if w)}")
        implemented.append(hook)
    if not implemented:
        _fail(f"{module.__name__} implements no hook: mark its functions with guichet.core.hookimpl")

    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as directory:
        warnings.simplefilter("ignore", GuichetDeprecationWarning)  # judged above
        return _load(name, config, Path(directory), sorted(implemented))


def _load(name: str, config: CaisseConfig | None, directory: Path, implemented: list[str]) -> PluginInfo:
    from guichet.core.clock import FrozenClock
    from guichet.core.context import PluginContext
    from guichet.core.database import Database
    from guichet.core.errors import ConfigError, PluginError
    from guichet.core.plugins import PluginHost
    from guichet.testing.config import caisse_config

    if config is None:
        config = caisse_config(directory, enabled=[name])
    elif name not in config.plugins.enabled:
        _fail(f"the config given does not enable {name!r}")
    context = PluginContext(config=config, database=Database.from_config(config), clock=FrozenClock())
    try:
        host = PluginHost(config, context)
    except (ConfigError, PluginError) as exc:
        _fail(f"{name} does not load through the plugin host: {exc}")
    [info] = [i for i in host.infos if i.name == name]
    if sorted(info.hooks) != implemented:
        _fail(f"the plugin host sees {', '.join(info.hooks)} of {name}, not {', '.join(implemented)}")
    return info
