"""Meta-tests of the hook specs (typed, documented, tested, no async impls) and a test per hook.

Each ``test_hook_<name>`` calls the built-in implementations directly, then the hook through
PluginHost, the only caller of hooks in guichet.
"""

from __future__ import annotations

import datetime as dt
import inspect
import re
import runpy
import typing
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from guichet.core import defaults, hookspecs
from guichet.core.clock import FrozenClock
from guichet.core.config import CaisseConfig
from guichet.core.context import PluginContext
from guichet.core.database import Database
from guichet.core.errors import StepError
from guichet.core.events import Auditor
from guichet.core.plugins import BUILTIN_PLUGINS, PluginHost, load_plugins
from guichet.core.structs import (
    AuditEvent,
    Channel,
    CodePolicy,
    PasswordContext,
    Payment,
    PostalAddress,
    Question,
    Record,
    Status,
    Verdict,
)
from guichet.plugins.caisse_provence_azur import hooks as provence_azur
from guichet.plugins.caisse_sud_aquitaine import hooks as sud_aquitaine
from guichet.plugins.identity_payment import hooks as identity_payment
from guichet.plugins.identity_vitale import hooks as identity_vitale
from guichet.plugins.password_msa import hooks as password_msa
from guichet.plugins.registry_tables import hooks as registry_tables
from guichet.plugins.registry_tables.tables import create_tables as create_registry_tables
from guichet.plugins.registry_tables.tables import tables_of as registry_tables_of
from guichet.plugins.statuses_msa import hooks as statuses_msa
from guichet.testing import PluginSite, with_enabled

TESTS = Path(__file__).resolve().parent
FIRST_RESULT = "First result wins; later plugins are not called."
SPECS = {name: fn for name, fn in vars(hookspecs).items() if callable(fn) and hasattr(fn, "guichet_spec")}
NOW = dt.datetime(2026, 3, 15, 10, 0, tzinfo=dt.UTC)
DEFAULT_ENABLED = ["statuses_msa", "registry_tables", "identity_vitale", "identity_payment", "password_msa"]


# --- meta-tests ----------------------------------------------------------------------------------------


def test_every_guichet_function_is_a_spec_and_every_spec_is_prefixed() -> None:
    functions = {n for n, f in vars(hookspecs).items() if inspect.isfunction(f) and f.__module__ == hookspecs.__name__}
    assert functions == set(SPECS)
    assert SPECS and all(name.startswith("guichet_") for name in SPECS)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_spec_is_typed(name: str) -> None:
    spec = SPECS[name]
    hints = typing.get_type_hints(spec)  # resolves every annotation: a typo'd type fails here
    parameters = list(inspect.signature(spec).parameters)
    assert [p for p in parameters if p not in hints] == [], f"{name}: parameters without a type"
    assert "return" in hints, f"{name}: no return type"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_spec_is_documented(name: str) -> None:
    spec = SPECS[name]
    doc = inspect.getdoc(spec) or ""
    assert re.search(r"^Called\b", doc, re.MULTILINE), f"{name}: no 'Called when...' sentence"
    assert re.search(r"^Return\b", doc, re.MULTILINE), f"{name}: no 'Return ...' sentence"
    firstresult = spec.guichet_spec["firstresult"]
    assert (FIRST_RESULT in doc) == firstresult, f"{name}: the first-result sentence must match firstresult"
    for parameter in inspect.signature(spec).parameters:
        assert f":param {parameter}:" in doc, f"{name}: :param {parameter}: missing"
    if firstresult:  # the sentence comes after the Return paragraph, as the house style orders it
        assert doc.index(FIRST_RESULT) > doc.index("Return")


# the hooks of hook API 1.0, as they shipped: any other spec was added later and says so
HOOKS_1_0 = {
    "guichet_statuses",
    "guichet_identity_questions",
    "guichet_identity_check",
    "guichet_registry_lookup",
    "guichet_channels",
    "guichet_settings_notes",
    "guichet_code_policy",
    "guichet_password_rules",
    "guichet_password_strength",
    "guichet_event",
}
VERSION_ADDED = re.compile(r"^\.\. versionadded:: (\d+\.\d+)$", re.MULTILINE)
DEPRECATED = re.compile(r"^\.\. deprecated:: (\d+\.\d+)$", re.MULTILINE)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def test_the_hook_api_version_is_major_minor_and_its_changes_are_told() -> None:
    assert re.fullmatch(r"\d+\.\d+", hookspecs.HOOK_API_VERSION)
    versions = list(hookspecs.HOOK_API_CHANGES)
    assert versions == sorted(versions, key=_version) and versions[-1] == hookspecs.HOOK_API_VERSION
    added = [VERSION_ADDED.findall(inspect.getdoc(spec) or "") for spec in SPECS.values()]
    assert max(_version(v) for found in added for v in found) <= _version(hookspecs.HOOK_API_VERSION)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_spec_says_in_which_version_it_was_added(name: str) -> None:
    """One ``.. versionadded:: X.Y`` after the parameters (1.0 for the hooks that shipped in 1.0, a later
    version for every other); a deprecated spec (warn_on_impl) also says ``.. deprecated:: X.Y``."""
    spec = SPECS[name]
    doc = inspect.getdoc(spec) or ""
    added = VERSION_ADDED.findall(doc)
    assert len(added) == 1, f"{name}: one `.. versionadded:: X.Y` line, the hook API version that added it"
    assert (added[0] == "1.0") == (name in HOOKS_1_0), f"{name}: added in {added[0]}, but 1.0 is {sorted(HOOKS_1_0)}"
    assert _version(added[0]) <= _version(hookspecs.HOOK_API_VERSION)
    params = [m.start() for m in re.finditer(r"^:param ", doc, re.MULTILINE)]
    assert all(p < doc.index(".. versionadded::") for p in params), f"{name}: versionadded comes after the params"
    warns = spec.guichet_spec.get("warn_on_impl") is not None
    deprecated = DEPRECATED.findall(doc)
    assert bool(deprecated) == warns, f"{name}: `.. deprecated::` iff the spec has warn_on_impl"
    if deprecated:
        assert _version(added[0]) <= _version(deprecated[0]) <= _version(hookspecs.HOOK_API_VERSION)


def test_the_hook_reference_is_up_to_date(root: Path) -> None:
    """docs/plugins/hooks.md is written from the specs by scripts/hook_reference.py: run it after changing a spec."""
    render = runpy.run_path(str(root / "scripts" / "hook_reference.py"))["render"]
    page = (root / "docs" / "plugins" / "hooks.md").read_text(encoding="utf-8")
    assert page == render(), "docs/plugins/hooks.md is stale: run scripts/hook_reference.py"
    for name in SPECS:
        assert f"\n## {name}\n" in page


def _hook_test_names() -> set[str]:
    names: set[str] = set()
    for path in TESTS.rglob("*.py"):
        names.update(
            re.findall(r"^\s*(?:async\s+)?def\s+(test_hook_\w+)\s*\(", path.read_text(encoding="utf-8"), re.MULTILINE)
        )
    return names


@pytest.mark.parametrize("name", sorted(SPECS))
def test_spec_has_a_test(name: str) -> None:
    """A test named test_hook_<hook name> (optionally with a suffix) somewhere under tests/."""
    found = _hook_test_names()
    assert any(t == f"test_hook_{name}" or t.startswith(f"test_hook_{name}_") for t in found), (
        f"no test_hook_{name} under tests/"
    )


def test_no_registered_implementation_is_a_coroutine(make_config: Callable[..., CaisseConfig]) -> None:
    config = make_config(base=_base(list(BUILTIN_PLUGINS)))
    pm, infos = load_plugins(config)
    assert {info.name for info in infos} == set(BUILTIN_PLUGINS)
    checked = 0
    for name in SPECS:
        for impl in getattr(pm.hook, name).get_hookimpls():
            assert not inspect.iscoroutinefunction(impl.function), f"{impl.plugin_name}.{name} is async def"
            assert not inspect.isasyncgenfunction(impl.function), f"{impl.plugin_name}.{name} is async"
            checked += 1
    assert checked >= len(BUILTIN_PLUGINS) + 3  # every plugin and the defaults were looked at


def test_builtin_implementations_accept_only_spec_arguments(make_config: Callable[..., CaisseConfig]) -> None:
    pm, _infos = load_plugins(make_config(base=_base(list(BUILTIN_PLUGINS))))
    for name, spec in SPECS.items():
        allowed = set(inspect.signature(spec).parameters)
        for impl in getattr(pm.hook, name).get_hookimpls():
            assert set(impl.argnames) <= allowed, (impl.plugin_name, name)


# --- helpers ----------------------------------------------------------------------------------------------


def _base(enabled: list[str]) -> str:
    return with_enabled(enabled)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


@pytest.fixture
def context_for(
    make_config: Callable[..., CaisseConfig], clock: FrozenClock, tmp_path: Path
) -> Callable[..., PluginContext]:
    def factory(extra: str = "", enabled: list[str] | None = None, database: Database | None = None) -> PluginContext:
        config = make_config(extra, base=_base(enabled or DEFAULT_ENABLED))
        return PluginContext(
            config=config, database=database or Database(f"sqlite:///{tmp_path / 'x.sqlite'}"), clock=clock
        )

    return factory


def host_of(context: PluginContext) -> PluginHost:
    return PluginHost(context.config, context)


def status(code: str) -> Status:
    (found,) = [s for s in statuses_msa.MSA_STATUSES if s.code == code]
    return found


TODAY = NOW.date()
RECORD = Record(
    identifier_kind="nir",
    identifier="1850578006084",
    last_name="LEFEBVRE",
    first_name="Julien",
    birth_date=dt.date(1985, 5, 14),
    address=PostalAddress(lines=("12 RUE DES TILLEULS", "78000 VERSAILLES")),
    vitale_serial="2345678901",
    health_affiliated=True,
    payments=(
        Payment(kind="benefit", date=TODAY - dt.timedelta(days=40), amount=Decimal("412.37")),
        Payment(kind="benefit", date=TODAY - dt.timedelta(days=250), amount=Decimal("380.00")),
        Payment(kind="contributions_invoice", date=TODAY - dt.timedelta(days=300), amount=Decimal("1875.40")),
    ),
)
NO_VITALE = Record(identifier_kind="nir", identifier="2920633123045", last_name="MOREAU", payments=RECORD.payments)


# --- one test per hook ------------------------------------------------------------------------------


def test_hook_guichet_statuses(context_for: Callable[..., PluginContext]) -> None:
    direct = statuses_msa.guichet_statuses()
    assert [s.code for s in direct] == [
        "exploitant",
        "entreprise",
        "particulier",
        "employeur_jardinier",
        "cotisant_solidarite",
        "autre",
    ]
    assert direct is not statuses_msa.MSA_STATUSES  # a copy: a caller cannot change the plugin's list
    host = host_of(context_for())
    assert host.statuses() == direct
    assert host.status("entreprise") is not None and host.status("entreprise").identifier_kind == "siret"
    autre = host.status("autre")
    assert autre is not None and autre.third_party and autre.questions == ()
    assert host.status("particulier").questions == ("vitale", "payment")
    assert host_of(context_for(enabled=["identity_vitale"])).statuses() == []  # nobody offers statuses


def test_hook_guichet_identity_questions(context_for: Callable[..., PluginContext]) -> None:
    context = context_for()
    particulier = status("particulier")
    # the page (record None) is the same for everyone; the record then decides what can be answered
    assert identity_vitale.guichet_identity_questions(particulier, None) == [identity_vitale.VITALE_QUESTION]
    assert identity_vitale.guichet_identity_questions(particulier, RECORD) == [identity_vitale.VITALE_QUESTION]
    assert identity_vitale.guichet_identity_questions(particulier, NO_VITALE) == []
    assert identity_vitale.guichet_identity_questions(status("exploitant"), RECORD) == []
    (payment,) = identity_payment.guichet_identity_questions(particulier, None, context)
    assert payment.label_fr == "Le montant d'un paiement MSA reçu dans les 6 derniers mois"
    (invoice,) = identity_payment.guichet_identity_questions(status("exploitant"), None, context)
    assert "facture de cotisations payée au cours des 12 derniers mois" in invoice.label_fr
    assert identity_payment.guichet_identity_questions(status("autre"), None, context) == []

    host = host_of(context)
    assert [q.kind for q in host.identity_questions(particulier, RECORD)] == ["vitale", "payment"]
    assert [q.kind for q in host.identity_questions(particulier, NO_VITALE)] == ["payment"]
    assert [q.kind for q in host.identity_questions(status("entreprise"), None)] == ["payment"]
    configured = host_of(
        context_for('[plugins.settings.identity_payment.particulier]\nkind = "benefit"\nwindow_months = 3\n')
    )
    assert "3 derniers mois" in configured.identity_questions(particulier, None)[-1].label_fr


def test_hook_guichet_identity_check(context_for: Callable[..., PluginContext]) -> None:
    context = context_for()
    vitale = identity_vitale.VITALE_QUESTION
    assert identity_vitale.guichet_identity_check(vitale, "23 4567 8901", RECORD) is Verdict.RIGHT
    assert identity_vitale.guichet_identity_check(vitale, "2345678900", RECORD) is Verdict.WRONG
    assert identity_vitale.guichet_identity_check(vitale, "２３４５６７８９０１", RECORD) is Verdict.WRONG
    assert identity_vitale.guichet_identity_check(vitale, "2345678901", NO_VITALE) is Verdict.WRONG
    payment = identity_payment.guichet_identity_questions(status("particulier"), None, context)[0]
    assert identity_vitale.guichet_identity_check(payment, "412,37", RECORD) is None  # not its question
    assert identity_payment.guichet_identity_check(vitale, "412,37", RECORD, context) is None
    assert identity_payment.guichet_identity_check(payment, "412,37", RECORD, context) is Verdict.RIGHT
    assert identity_payment.guichet_identity_check(payment, "412.37 €", RECORD, context) is Verdict.RIGHT
    assert identity_payment.guichet_identity_check(payment, "412,38", RECORD, context) is Verdict.WRONG
    assert identity_payment.guichet_identity_check(payment, "380,00", RECORD, context) is Verdict.WRONG  # > 6 months
    assert identity_payment.guichet_identity_check(payment, "1875,40", RECORD, context) is Verdict.WRONG  # other kind
    assert identity_payment.guichet_identity_check(payment, "beaucoup", RECORD, context) is Verdict.WRONG

    host = host_of(context)
    assert host.identity_check(vitale, "2345678901", RECORD) is Verdict.RIGHT
    assert host.identity_check(payment, "412,37", RECORD) is Verdict.RIGHT
    assert host.identity_check(payment, "412,00", RECORD) is Verdict.WRONG
    unknown = Question(kind="birth_city", label_fr="Votre ville de naissance")
    assert host.identity_check(unknown, "Pau", RECORD) is Verdict.UNVERIFIABLE  # every plugin abstained
    tolerant = host_of(
        context_for(
            '[plugins.settings.identity_payment.particulier]\nkind = "benefit"\nwindow_months = 12\ntolerance = "1"\n'
        )
    )
    assert tolerant.identity_check(payment, "381", RECORD) is Verdict.RIGHT  # 12 months, one euro either way


def test_hook_guichet_identity_answer(context_for: Callable[..., PluginContext]) -> None:
    context = context_for()
    vitale = identity_vitale.VITALE_QUESTION
    assert identity_vitale.guichet_identity_answer(vitale, "23 4567 8901", context) == "2345678901"
    for typed, says in (
        ("ABCDEFGHIJ", "ne comporte que des chiffres"),
        ("12345", "vous en avez saisi 5"),
        ("２３４５６７８９０１", "ne comporte que des chiffres"),
        ("", "Veuillez saisir le numéro"),
    ):
        with pytest.raises(StepError) as refused:
            identity_vitale.guichet_identity_answer(vitale, typed, context)
        assert refused.value.field == "answer" and says in refused.value.message_fr, typed
    payment = identity_payment.guichet_identity_questions(status("particulier"), None, context)[0]
    assert identity_payment.guichet_identity_answer(payment, "1 234,50", context) == "1234.50"
    with pytest.raises(StepError):
        identity_payment.guichet_identity_answer(payment, "1e3", context)
    assert identity_vitale.guichet_identity_answer(payment, "1 234,50", context) is None  # not its question
    host = host_of(context)
    assert host.identity_answer(vitale, "2345 678 901") == "2345678901"
    with pytest.raises(StepError):
        host.identity_answer(vitale, "ABCDEFGHIJ")
    unknown = Question(kind="birth_city", label_fr="Votre ville de naissance", max_length=10)
    assert host.identity_answer(unknown, "Pau") == "Pau"  # every plugin abstained: the answer as typed
    for typed in ("", "Saint-Jean-de-Luz"):
        with pytest.raises(StepError):
            host.identity_answer(unknown, typed)


FACTS = """
from guichet.core import hookimpl

async def _facts(record):
    if record.identifier == "1850578006084":
        return {"prime_activite": {"amount": "187.45", "paid_on": "2026-11-05"}, "last_name": "IGNORED"}
    return {}

@hookimpl
def guichet_registry_facts(record, context):
    return _facts(record)
"""
BROKEN_FACTS = """
from guichet.core import hookimpl

@hookimpl
def guichet_registry_facts(record, context):
    raise RuntimeError("the source is down")
"""


async def test_hook_guichet_registry_facts(
    database: Database, context_for: Callable[..., PluginContext], installed_plugin: Callable[[str, str], None]
) -> None:
    await create_registry_tables(database)
    t = registry_tables_of(database)
    await t.RegistryPerson.insert(
        t.RegistryPerson(
            nir="1850578006084",
            last_name="LEFEBVRE",
            first_name="Julien",
            birth_date=dt.date(1985, 5, 14),
            address="12 RUE DES TILLEULS\n78000 VERSAILLES",
            vitale_serial="2345678901",
            health_affiliated=True,
        )
    ).run()
    installed_plugin("broken_facts", BROKEN_FACTS)
    installed_plugin("facts", FACTS)
    host = host_of(context_for(database=database, enabled=["statuses_msa", "registry_tables", "broken_facts", "facts"]))
    record = await host.registry_lookup("nir", "1850578006084")
    assert record is not None and record.last_name == "LEFEBVRE"
    assert record.facts == {"prime_activite": {"amount": "187.45", "paid_on": "2026-11-05"}, "last_name": "IGNORED"}
    assert await host.registry_lookup("nir", "2920633123045") is None  # unknown: no facts asked


async def test_hook_guichet_registry_lookup(database: Database, context_for: Callable[..., PluginContext]) -> None:
    await create_registry_tables(database)
    t = registry_tables_of(database)
    await t.RegistryPerson.insert(
        t.RegistryPerson(
            nir="1850578006084",
            last_name="LEFEBVRE",
            first_name="Julien",
            birth_date=dt.date(1985, 5, 14),
            address="12 RUE DES TILLEULS\n78000 VERSAILLES",
            email="julien@exemple.fr",
            mobile="+33612345678",
            vitale_serial="2345678901",
            health_affiliated=True,
        )
    ).run()
    await t.RegistryPayment.insert(
        t.RegistryPayment(
            identifier_kind="nir", identifier="1850578006084", kind="benefit", paid_on=TODAY, amount=Decimal("12.30")
        )
    ).run()
    context = context_for(database=database)
    pending = registry_tables.guichet_registry_lookup("nir", "1850578006084", context)
    assert pending is not None and inspect.isawaitable(pending)
    record = await pending
    assert record is not None and record.address == PostalAddress(lines=("12 RUE DES TILLEULS", "78000 VERSAILLES"))
    assert record.payments == (Payment(kind="benefit", date=TODAY, amount=Decimal("12.30")),)
    assert registry_tables.guichet_registry_lookup("email", "x@y.fr", context) is None  # abstains
    assert await registry_tables.guichet_registry_lookup("siret", "84216730600021", context) is None

    host = host_of(context)
    found = await host.registry_lookup("nir", "1850578006084")
    assert found is not None and (found.last_name, found.vitale_serial) == ("LEFEBVRE", "2345678901")
    assert await host.registry_lookup("nir", "2920633123045") is None
    assert (
        await host_of(context_for(enabled=["statuses_msa"], database=database)).registry_lookup("nir", "1850578006084")
        is None
    )  # no registry plugin: nobody is known


def test_hook_guichet_code_policy(context_for: Callable[..., PluginContext]) -> None:
    caisse = context_for().config.caisse
    assert defaults.guichet_code_policy("recovery", caisse) == CodePolicy(
        length=6, lifetime_minutes=10, max_attempts=3, resend_cooldown_seconds=60
    )
    assert provence_azur.guichet_code_policy("login", caisse).lifetime_minutes == 15
    assert provence_azur.guichet_code_policy("recovery", caisse) is None
    recovery = sud_aquitaine.guichet_code_policy("recovery", caisse)
    assert recovery is not None and (recovery.length, recovery.lifetime_minutes) == (4, 30)
    assert sud_aquitaine.guichet_code_policy("login", caisse) is None

    host = host_of(context_for(enabled=["caisse_sud_aquitaine", "caisse_provence_azur"]))
    assert host.code_policy("recovery").length == 4 and host.code_policy("login").channels == ("email",)
    assert host.code_policy("registration") == defaults.guichet_code_policy("registration", caisse)
    overridden = host_of(context_for("[codes.login]\nlength = 8\n", enabled=["caisse_provence_azur"]))
    assert (overridden.code_policy("login").length, overridden.code_policy("login").lifetime_minutes) == (8, 15)


def test_hook_guichet_password_rules(context_for: Callable[..., PluginContext]) -> None:
    context = context_for()
    caisse = context.config.caisse
    msa = password_msa.guichet_password_rules(caisse, context)
    assert [(r.kind, r.value) for r in msa] == [("min_length", 8), ("classes", 0)]
    assert "combinant des chiffres, des majuscules, des minuscules et des caractères spéciaux" in msa[0].message_fr
    own = defaults.guichet_password_rules(caisse, context)
    assert [r.kind for r in own] == ["min_length", "max_length", "blocklist", "context"] and own[0].value == 12

    host = host_of(context)  # password_msa enabled: its rules first, the defaults fill the other kinds
    assert [(r.kind, r.value) for r in host.password_rules()] == [
        ("min_length", 8),
        ("classes", 0),
        ("max_length", 128),
        ("blocklist", 0),
        ("context", 0),
    ]
    plain = host_of(context_for(enabled=["statuses_msa"]))
    assert [r.kind for r in plain.password_rules()] == ["min_length", "max_length", "blocklist", "context"]
    longer = host_of(context_for("[passwords]\nmin_length = 14\nrequire_classes = false\n"))
    assert [(r.kind, r.value) for r in longer.password_rules()][:1] == [("min_length", 14)]
    assert "classes" not in {r.kind for r in longer.password_rules()}


def test_hook_guichet_password_strength(context_for: Callable[..., PluginContext]) -> None:
    nobody = PasswordContext(caisse_name="MSA Test")
    assert defaults.guichet_password_strength("", nobody).label_fr == "faible"
    assert defaults.guichet_password_strength("Password1!", nobody).label_fr == "faible"
    assert defaults.guichet_password_strength("vélo-Ardoise-7-marmotte-Pau", nobody).label_fr == "fort"
    julien = PasswordContext(words=("Julien", "Lefebvre", "1985", "Versailles", "78000"), caisse_name="MSA Test")
    mine = "Versailles78000"
    assert (
        defaults.guichet_password_strength(mine, julien).level < defaults.guichet_password_strength(mine, nobody).level
    )  # the person's own words count as guessable

    host = host_of(context_for())
    assert host.password_strength("vélo-Ardoise-7-marmotte-Pau", nobody).label_fr == "fort"
    assert host.password_strength("azerty", nobody).level == 0


def _observer_plugin(seen: list[AuditEvent]) -> object:
    from guichet.core import hookimpl

    class Observer:
        @hookimpl
        def guichet_event(self, event: AuditEvent) -> None:
            seen.append(event)

    return Observer()


async def test_hook_guichet_event(database: Database, context_for: Callable[..., PluginContext]) -> None:
    host = host_of(context_for(database=database))
    seen: list[AuditEvent] = []
    host.pm.register(_observer_plugin(seen), name="observer")
    event = AuditEvent(kind="login.failed", at=NOW, subject="185***084", client="203.0.113.7")
    host.emit(event)
    assert seen == [event]
    auditor = Auditor(database, host)  # stored first, then handed to the observers
    async with database.transaction():
        stored = await auditor.record(AuditEvent(kind="logout", at=NOW, account_id=7))
    auditor.publish([stored])
    assert [e.kind for e in seen] == ["login.failed", "logout"]
    assert [row["kind"] for row in await auditor.tail()] == ["logout"]
    other = host_of(context_for(database=database))  # another host: the observer is not there
    other.emit(event)
    assert len(seen) == 2


@pytest.fixture
def installed_plugin(guichet_plugin_site: PluginSite) -> Callable[[str, str], str]:
    """Install a tiny test distribution with a `guichet` entry point (a dist-info on sys.path)."""
    return guichet_plugin_site.add_module


PIGEON = """
from guichet.core import DeliveryError, hookimpl

class PigeonChannel:
    name = "pigeon"
    label_fr = "Par pigeon voyageur"
    reaches = "postal"

    def __init__(self, context):
        self.loft = context.config.caisse.name
        self.sent = []

    async def send(self, message):
        if not message.recipient.address:
            raise DeliveryError("no address", permanent=True)
        self.sent.append(message.id)

@hookimpl
def guichet_channels(context):
    return [PigeonChannel(context)]
"""


async def test_hook_guichet_channels_with_a_tiny_plugin(
    installed_plugin: Callable[[str, str], str], context_for: Callable[..., PluginContext]
) -> None:
    from guichet.core.structs import Message, Recipient

    installed_plugin("pigeon", PIGEON)
    host = host_of(context_for(enabled=["statuses_msa", "pigeon"]))
    channel = host.channel("pigeon")
    assert channel is not None and isinstance(channel, Channel)
    assert list(host.channels()) == ["pigeon"] and channel.label_fr == "Par pigeon voyageur"
    message = Message(
        id=41,
        channel="pigeon",
        template="registration_letter",
        caisse_name="MSA Test",
        created_at=NOW,
        recipient=Recipient(address=PostalAddress(lines=("1 RUE A", "75001 PARIS"))),
        payload={},
    )
    await channel.send(message)
    assert channel.sent == [41]  # type: ignore[attr-defined]
    assert host_of(context_for(enabled=["statuses_msa"])).channel("pigeon") is None
    assert host_of(context_for(enabled=["statuses_msa", "pigeon"])).channel("pigeon") is not channel  # per host
    policy_only = PluginHost(host.config, host.context, channels=False)
    assert policy_only.channels() == {}


STAMP_COMMAND = """
import click

from guichet.core import hookimpl

@hookimpl
def guichet_commands(cli):
    @cli.command()
    @click.argument("word")
    def stamp(word):
        \"\"\"Print a stamped word.\"\"\"
        click.echo(f"stamped {word}")
        return 0
"""
BROKEN_COMMAND = """
from guichet.core import hookimpl

@hookimpl
def guichet_commands(cli):
    raise RuntimeError("no commands today")
"""


def test_hook_guichet_commands(installed_plugin: Callable[[str, str], str]) -> None:
    import click
    from click.testing import CliRunner

    from guichet.core.plugins import add_plugin_commands

    group = click.Group("guichet")
    assert registry_tables.guichet_commands(cli=group) is None
    assert set(group.commands) == {"registry"}
    assert set(group.commands["registry"].commands) == {"import", "demo"}  # type: ignore[attr-defined]

    installed_plugin("stamp", STAMP_COMMAND)
    installed_plugin("broken_commands", BROKEN_COMMAND)
    group = click.Group("guichet")
    added = add_plugin_commands(group)
    assert "registry_tables" in added and "stamp" in added and "broken_commands" not in added  # skipped, logged
    assert {"registry", "stamp"} <= set(group.commands)
    done = CliRunner().invoke(group, ["stamp", "ok"], standalone_mode=False)
    assert done.exit_code == 0 and done.output == "stamped ok\n"


async def test_hook_guichet_measure(database: Database, context_for: Callable[..., PluginContext]) -> None:
    from guichet.core import Measurement, hookimpl
    from guichet.core.config import Argon2Config
    from guichet.core.keys import Keys
    from guichet.core.passwords import Passwords
    from guichet.core.ratelimit import DatabaseCounters, Limit, Limiter
    from guichet.web import metrics

    seen: list[Measurement] = []

    class Observer:
        @hookimpl
        def guichet_measure(self, measurement: Measurement) -> None:
            seen.append(measurement)

    class Broken:
        @hookimpl
        def guichet_measure(self, measurement: Measurement) -> None:
            raise RuntimeError("the collector is down")

    context = context_for(database=database)
    host = PluginHost(context.config, context, extra=metrics.app_plugins())
    assert "metrics" in [info.name for info in host.infos]
    host.pm.register(Broken(), name="broken")
    host.pm.register(Observer(), name="observer")
    limit = Limit(name="test_measure", window_seconds=60, max_count=2)
    limiter = Limiter(DatabaseCounters(database), Keys.from_config(context.config), host.measure)
    hits = metrics.RATE_LIMIT_HITS.labels("test_measure")._value.get()
    refusals = metrics.RATE_LIMIT_REFUSALS.labels("test_measure")._value.get()
    assert (await limiter.hit(limit, "someone", NOW)).allowed
    assert not (await limiter.hit(limit, "someone", NOW)).allowed
    assert [(m.name, m.labels) for m in seen] == [
        ("rate_limit_hit", {"limit": "test_measure"}),
        ("rate_limit_hit", {"limit": "test_measure"}),
        ("rate_limit_refusal", {"limit": "test_measure"}),
    ]
    # the web layer's metrics plugin counted them too, after the broken observer was skipped
    assert metrics.RATE_LIMIT_HITS.labels("test_measure")._value.get() == hits + 2
    assert metrics.RATE_LIMIT_REFUSALS.labels("test_measure")._value.get() == refusals + 1

    async def measured_hash(lanes: int) -> list[Measurement]:
        seen.clear()
        passwords = Passwords(Argon2Config(time_cost=1, memory_kib=1024, parallelism=lanes), host)
        try:
            await passwords.hash("un mot de passe")
        finally:
            passwords.close()
        assert not any("un mot de passe" in repr(m) for m in seen)
        return list(seen)

    measured = await measured_hash(1)
    assert [m.name for m in measured] == ["argon2_wait_seconds", "argon2_seconds", "argon2_cpu_seconds"]
    assert measured[1].labels == measured[2].labels == {"operation": "hash"} and measured[1].value > 0
    # the hashing thread's own CPU: the hash ran on it (p=1: one lane, this thread), never longer than it took
    assert 0 < measured[2].value <= measured[1].value
    # with two lanes argon2's own threads do the work: no thread CPU figure rather than a wrong one
    assert [m.name for m in await measured_hash(2)] == ["argon2_wait_seconds", "argon2_seconds"]


def test_hook_guichet_demo_mailbox(make_config: Callable[..., CaisseConfig], tmp_path: Path) -> None:
    from guichet.core import ConfigError
    from guichet.core.plugins import _offered_mailbox, demo_mailbox
    from guichet.plugins.demo_mailbox import hooks as demo_hooks

    assert demo_hooks.guichet_demo_mailbox(config=make_config()) is None  # not a demo: abstains
    demo = make_config(f'[demo]\nmailbox = true\nmailbox_dir = "{tmp_path / "box"}"\n')
    box = demo_hooks.guichet_demo_mailbox(config=demo)
    assert box is not None and box.items() == [] and box.letter("letter-1.pdf") is None
    # [demo] mailbox = true enables the plugin even where plugins.enabled does not list it
    assert "demo_mailbox" not in demo.plugins.enabled
    found = demo_mailbox(demo)
    assert found is not None and type(found).__name__ == "LocalMailbox"
    assert demo_mailbox(make_config()) is None
    pm, _infos = load_plugins(demo)
    pm.unregister(name="demo_mailbox")
    with pytest.raises(ConfigError, match="no enabled plugin offers a demo mailbox") as refused:
        _offered_mailbox(pm, demo)
    assert refused.value.key == "$.demo.mailbox"


HALF_DONE = """
from guichet.core import Assurance, hookimpl

class HalfDone:
    name = "{name}"
    label_fr = "Moitié"
    description_fr = "Un moyen de connexion à moitié écrit."
    assurance = Assurance(amr=("otp",))
    rank = 5
    enrolment = "page"

    async def enrolments(self, account):
        return []

    async def challenge(self, account):
        raise NotImplementedError

    async def verify(self, account, state, form):
        raise NotImplementedError

    async def begin_enrolment(self, account):
        raise NotImplementedError

    async def finish_enrolment(self, account, state, form):
        raise NotImplementedError
{remove}

@hookimpl
def guichet_authenticators(context, store):
    return [HalfDone()]
"""
REMOVE = """
    async def remove(self, account, enrolment_id):
        return False
"""


def test_hook_guichet_authenticators(
    context_for: Callable[..., PluginContext], installed_plugin: Callable[[str, str], str]
) -> None:
    from guichet.core.credentials import CredentialStore
    from guichet.core.errors import ConfigError
    from guichet.core.structs import Authenticator
    from guichet.plugins.authenticator_recovery import hooks as authenticator_recovery
    from guichet.plugins.authenticator_totp import hooks as authenticator_totp

    context = context_for(enabled=["statuses_msa", "authenticator_totp", "authenticator_recovery"])
    store = CredentialStore(context.database, context.config, context.clock)
    [totp] = authenticator_totp.guichet_authenticators(context=context, store=store)
    [recovery] = authenticator_recovery.guichet_authenticators(context=context, store=store)
    assert (totp.name, totp.rank, totp.enrolment, totp.assurance.amr, totp.assurance.aal) == (
        "totp",
        20,
        "page",
        ("otp",),
        2,
    )
    assert (recovery.name, recovery.rank, recovery.enrolment) == ("recovery_code", 0, "letter")
    assert totp.label_fr == "Application d'authentification" and recovery.label_fr == "Codes de secours par courrier"
    # through the host: the strongest first, each built with the host's own store
    host = host_of(context)
    assert [a.name for a in host.authenticators()] == ["totp", "recovery_code"]
    assert all(isinstance(a, Authenticator) for a in host.authenticators())
    assert host.authenticator("totp") is not None and host.authenticator("totp") is not totp  # per host
    assert getattr(host.authenticator("totp"), "store", None) is host.credentials
    assert host_of(context_for(enabled=["statuses_msa"])).authenticators() == []
    # a third party's: one lacking a method, or with a name unfit for a URL, stops the start
    installed_plugin("half_done", HALF_DONE.format(name="half", remove=""))
    with pytest.raises(ConfigError, match=r"'half_done'.*'half' lacks remove \(an async method\)"):
        host_of(context_for(enabled=["statuses_msa", "half_done"]))
    installed_plugin("bad_name", HALF_DONE.format(name="Moitié Prix", remove=REMOVE))
    with pytest.raises(ConfigError, match=r"'bad_name'.*lacks name \(lower-case letters"):
        host_of(context_for(enabled=["statuses_msa", "bad_name"]))
    installed_plugin("complete", HALF_DONE.format(name="totp", remove=REMOVE))
    assert [a.name for a in host_of(context_for(enabled=["statuses_msa", "complete"])).authenticators()] == ["totp"]
    with pytest.raises(ConfigError, match="'totp' is offered twice"):
        host_of(context_for(enabled=["statuses_msa", "complete", "authenticator_totp"]))
