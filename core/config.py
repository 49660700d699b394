"""The caisse config: one TOML file decoded into frozen msgspec Structs.

Every error names the file and the key path and says what was expected. Secrets are
``{ env = "NAME" }`` or ``{ file = "/run/secrets/x" }`` and are never printed.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec

from guichet.core.errors import ConfigError

PURPOSES = ("login", "recovery", "registration", "contact_change")
Minutes = Annotated[int, msgspec.Meta(ge=1, le=7 * 24 * 60)]


class SecretRef(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A secret read from the environment or a file at start-up; its value never shows in a repr."""

    env: str | None = None
    file: str | None = None
    value: str | None = None  # only for demo configs: a literal, refused in production mode

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.env, self.file, self.value)) != 1:
            raise ValueError('a secret is exactly one of { env = "..." }, { file = "..." } or { value = "..." }')

    def __repr__(self) -> str:
        source = f"env={self.env!r}" if self.env else f"file={self.file!r}" if self.file else "value=<hidden>"
        return f"SecretRef({source})"

    def resolve(self) -> str:
        if self.value is not None:
            return self.value
        if self.env is not None:
            found = os.environ.get(self.env)
            if not found:
                raise ConfigError(f"the environment variable {self.env} is not set")
            return found
        assert self.file is not None
        try:
            return Path(self.file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the secret file {self.file}: {exc.strerror}") from None


class AssistanceConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    phone: str = ""
    hours: str = ""
    email: str = ""


class CaisseInfo(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    id: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{1,40}$")]
    name: Annotated[str, msgspec.Meta(min_length=2, max_length=80)]
    website: str = ""
    colour: Annotated[str, msgspec.Meta(pattern=r"^#[0-9a-fA-F]{6}$")] = "#000091"
    assistance: AssistanceConfig = msgspec.field(default_factory=AssistanceConfig)
    postal_address: tuple[str, ...] = ()  # the caisse's own letterhead lines


class PluginsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    enabled: list[str] = []
    settings: dict[str, dict[str, Any]] = {}


class CodePolicyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A key left out keeps the caisse preset or guichet's default."""

    length: Annotated[int, msgspec.Meta(ge=4, le=12)] | None = None
    lifetime_minutes: Annotated[int, msgspec.Meta(ge=1, le=60)] | None = None
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=10)] | None = None
    resend_cooldown_seconds: Annotated[int, msgspec.Meta(ge=0, le=3600)] | None = None
    # channel names, in the order pages offer them; checked against the loaded channels at start-up
    channels: list[Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]] | None = None


class StatusConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What the caisse changes of a status its plugins offer; a key left out keeps the plugin's choice."""

    # the identity question kinds offered, in the page's order; [] offers none (the password goes by post)
    questions: list[Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,39}$")]] | None = None


class CodesConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    login: CodePolicyConfig = msgspec.field(default_factory=CodePolicyConfig)
    recovery: CodePolicyConfig = msgspec.field(default_factory=CodePolicyConfig)
    registration: CodePolicyConfig = msgspec.field(default_factory=CodePolicyConfig)
    contact_change: CodePolicyConfig = msgspec.field(default_factory=CodePolicyConfig)
    failures_per_day: Annotated[int, msgspec.Meta(ge=1, le=100)] = 10


class Argon2Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """argon2id parameters; the default is OWASP's minimum (19 MiB, 2 passes, 1 lane)."""

    memory_kib: Annotated[int, msgspec.Meta(ge=1024, le=1048576)] = 19456
    time_cost: Annotated[int, msgspec.Meta(ge=1, le=20)] = 2
    parallelism: Annotated[int, msgspec.Meta(ge=1, le=16)] = 1


class PasswordsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    min_length: Annotated[int, msgspec.Meta(ge=8, le=64)] | None = None
    require_classes: bool | None = None
    argon2: Argon2Config = msgspec.field(default_factory=Argon2Config)
    temporary_lifetime_hours: dict[str, Annotated[int, msgspec.Meta(ge=1, le=2160)]] = {}
    # argon2id runs in this many threads of its own, each keeping its block (memory_kib) for reuse:
    # more than the cores a worker gets only adds memory
    max_concurrent_hashes: Annotated[int, msgspec.Meta(ge=1, le=64)] = 2


class SessionsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    store: Literal["database", "redis"] = "database"
    idle_minutes: Annotated[int, msgspec.Meta(ge=1, le=720)] = 30
    absolute_hours: Annotated[int, msgspec.Meta(ge=1, le=72)] = 12
    secure_cookies: bool = True


class SecurityConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    secret_key: SecretRef  # signs cookies, keys code HMACs and derives the outbox key
    previous_secret_keys: list[SecretRef] = []  # still accepted while keys rotate
    trusted_proxies: list[str] = []  # addresses or networks (10.0.0.0/8) whose X-Forwarded-For is believed
    # mobiles of these countries (ISO codes) are accepted besides France's and its overseas departments'
    foreign_mobile_regions: tuple[Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{2}$")], ...] = ()
    trusted_browser_days: Annotated[int, msgspec.Meta(ge=1, le=365)] = 30
    identity_answers_per_identifier: Annotated[int, msgspec.Meta(ge=1, le=10)] = 3
    sms_per_hour: Annotated[int, msgspec.Meta(ge=1)] = 2000
    letters_per_hour: Annotated[int, msgspec.Meta(ge=1)] = 500
    login_failures_before_delay: Annotated[int, msgspec.Meta(ge=1, le=100)] = 5
    max_delay_seconds: Annotated[int, msgspec.Meta(ge=1, le=3600)] = 900
    per_client_attempts_per_hour: Annotated[int, msgspec.Meta(ge=10)] = 300


class DatabaseConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``sqlite:///relative/or/absolute.sqlite`` or ``postgresql://user@host:5432/db``."""

    url: Annotated[str, msgspec.Meta(pattern=r"^(sqlite:///|postgres(ql)?://).+")] = "sqlite:///var/guichet.sqlite"
    password: SecretRef | None = None
    pool_size: Annotated[int, msgspec.Meta(ge=1, le=100)] = 10


# How long Redis may take to connect or to answer a command before it is taken for down (a 503).
# The time runs on the event loop's clock: in a burst of requests a reply that came in time waits
# for the loop to be free before it is read, so 2 s answered 503 to some of a burst of 40 logins
# on a loaded 2-core host; 5 s is also the Retry-After an outage is answered with.
DEFAULT_REDIS_TIMEOUT_SECONDS = 5.0


class RedisConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``redis://host:6379/0`` (or ``rediss://`` for TLS); the password, if any, as a secret, not in the url."""

    url: Annotated[str, msgspec.Meta(pattern=r"^rediss?://.+")]
    password: SecretRef | None = None
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = DEFAULT_REDIS_TIMEOUT_SECONDS


class RateLimitsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    store: Literal["database", "redis"] = "database"


class ServerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    mode: Literal["production", "demo"] = "production"
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 8000
    workers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    public_url: str = ""  # https://monespace.example.fr: the Origin a state-changing request may come from
    spool_dir: str = "var/spool"
    outbox_worker: bool = True  # deliver from inside ``guichet serve``
    # how often an idle worker looks for messages; the worker inside `guichet serve` is also woken
    # at once after a request queues one, separate `guichet outbox work` processes are not
    outbox_poll_seconds: Annotated[float, msgspec.Meta(ge=0.05, le=60)] = 0.25


class MetricsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Prometheus metrics at /metrics (docs/deploy.md)."""

    enabled: bool = True
    allowed_clients: tuple[str, ...] = ("127.0.0.1", "::1")  # addresses or networks (10.0.0.0/8) that may read them


class LoggingConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Logs on stderr: one JSON object per line with the request id (core/logs.py)."""

    format: Literal["json", "text"] = "json"
    level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: bool = False  # one line per request (method, path, route, status, duration)


class DemoConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    mailbox: bool = False
    smtp_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0  # 0: a free port
    mailbox_dir: str = "var/demo-mailbox"


class ThirdPartiesConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[third_parties]``: what an approved request ("Autre") logs in with."""

    # "siret": the structure's SIRET, unless an account holds it already (then one the caisse issues);
    # "issued": always one the caisse issues ("T" and 10 digits)
    identifier: Literal["siret", "issued"] = "siret"


FrenchText = Annotated[str, msgspec.Meta(max_length=2000)]


class AccessibilityConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[legal.accessibility]``: the RGAA 4.1 accessibility statement, and the footer's mention."""

    compliance: Literal["totalement", "partiellement", "non"] = "partiellement"
    standard: str = "RGAA 4.1"
    audit_date: str = ""  # "12/03/2026": when the audit was made (an unset date says no audit was made)
    audited_by: str = ""
    rate: str = ""  # "82 % des critères du RGAA 4.1 sont respectés"
    statement_date: str = ""
    non_conformities: tuple[FrenchText, ...] = ()
    derogations: tuple[FrenchText, ...] = ()  # "dérogations pour charge disproportionnée"
    exempt: tuple[FrenchText, ...] = ()  # "contenus non soumis à l'obligation d'accessibilité"
    technologies: tuple[str, ...] = ("HTML5", "CSS", "JavaScript (facultatif)")
    test_environment: tuple[FrenchText, ...] = ()
    tools: tuple[str, ...] = ()
    pages: tuple[str, ...] = ()
    contact_email: str = ""  # empty: the assistance's email
    contact_url: str = ""


class LegalNoticeConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[legal.notice]``: the mentions légales."""

    publisher: tuple[str, ...] = ()  # empty: the caisse's name and postal address
    legal_status: FrenchText = (
        "Organisme de droit privé chargé d'une mission de service public, placé sous la "
        "tutelle de l'État (code rural et de la pêche maritime, articles L723-1 et suivants)."
    )
    publication_director: str = ""
    host: tuple[str, ...] = ()  # the hosting provider's name, address and phone
    extra: tuple[FrenchText, ...] = ()


class ProcessingConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One line of the table of what is processed: the data, the purpose, the legal basis, how long."""

    data: FrenchText
    purpose: FrenchText
    basis: FrenchText
    retention: FrenchText


DEFAULT_PROCESSINGS = (
    ProcessingConfig(
        data="Votre identifiant (numéro de Sécurité Sociale ou SIRET), vos nom, prénom et date de naissance tels "
        "que votre MSA les connaît, votre statut",
        purpose="Créer votre espace privé et vérifier votre identité",
        basis="Mission d'intérêt public (article 6-1-e du RGPD)",
        retention="Tant que votre espace privé est ouvert ; effacées de l'espace en ligne à sa fermeture",
    ),
    ProcessingConfig(
        data="Votre adresse email, vos numéros de téléphone portable, fixe et de fax",
        purpose="Vous envoyer les codes de sécurité, mots de passe temporaires et avis de sécurité",
        basis="Mission d'intérêt public (article 6-1-e du RGPD)",
        retention="Tant que votre espace privé est ouvert ; effacées de l'espace en ligne à sa fermeture",
    ),
    ProcessingConfig(
        data="L'empreinte de votre mot de passe (jamais le mot de passe lui-même) et les codes de sécurité",
        purpose="Vous authentifier",
        basis="Mission d'intérêt public (article 6-1-e du RGPD)",
        retention="Le mot de passe jusqu'à son changement ou la fermeture ; un code, au plus un jour",
    ),
    ProcessingConfig(
        data="Les navigateurs de confiance que vous avez choisis (un cookie, le nom du navigateur)",
        purpose="Ne plus vous demander de code de sécurité sur ces navigateurs",
        basis="Votre choix, révocable à tout moment dans Mon compte",
        retention="{trusted_browser_days} jours, ou jusqu'au retrait de la confiance",
    ),
    ProcessingConfig(
        data="Le journal de sécurité : connexions, changements de mot de passe et de coordonnées, avec la date "
        "et l'adresse IP",
        purpose="Détecter et prouver les usages frauduleux de votre espace privé",
        basis="Mission d'intérêt public et sécurité des traitements (articles 6-1-e et 32 du RGPD)",
        retention="{audit_retention}, y compris après la fermeture de votre espace privé",
    ),
    ProcessingConfig(
        data="Le contenu des emails, SMS et courriers envoyés",
        purpose="Vous les remettre",
        basis="Mission d'intérêt public (article 6-1-e du RGPD)",
        retention="Effacé dès la remise ; au plus 7 jours en cas d'échec",
    ),
)


class PrivacyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[legal.privacy]``: the données personnelles page."""

    controller: str = ""  # empty: the caisse's name
    dpo_email: str = ""
    dpo_address: tuple[str, ...] = ()  # empty: the caisse's postal address, "À l'attention du DPO"
    audit_retention: str = "1 an"
    processings: tuple[ProcessingConfig, ...] = DEFAULT_PROCESSINGS
    recipients: FrenchText = (
        "Les services de votre MSA habilités et leurs prestataires techniques (hébergement, "
        "envoi des emails, SMS et courriers), tenus à la confidentialité. Vos données ne sont "
        "ni vendues, ni transférées hors de l'Union européenne."
    )


class LegalConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[legal]``: the pages a public service's site owes its users, linked from every page's footer."""

    accessibility: AccessibilityConfig = msgspec.field(default_factory=AccessibilityConfig)
    notice: LegalNoticeConfig = msgspec.field(default_factory=LegalNoticeConfig)
    privacy: PrivacyConfig = msgspec.field(default_factory=PrivacyConfig)


ClientId = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9._-]{1,63}$")]
OIDC_SCOPES = ("openid", "profile", "email", "phone", "nir")


class OidcClientConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A service that logs people in through guichet (docs/oidc.md)."""

    id: ClientId
    name: Annotated[str, msgspec.Meta(min_length=2, max_length=80)]  # shown to the person (French)
    description: str = ""  # a short French sentence for the consent screen and the espace privé
    start_url: str = ""  # a first-party service with one is listed in the espace privé, one click away
    redirect_uris: list[str]  # compared exactly: no prefix, no wildcard
    post_logout_redirect_uris: list[str] = []
    backchannel_logout_uri: str = ""  # told (a signed logout token) when a login that reached it ends
    # private_key_jwt: the client signs an assertion with a key of ``jwks_file``; none: a public
    # client (a browser or mobile app), allowed only because PKCE is required of every client
    auth_method: Literal["client_secret_basic", "private_key_jwt", "none"] = "client_secret_basic"
    secret: SecretRef | None = None
    jwks_file: str = ""  # the client's public keys (a JWKS file), for private_key_jwt
    scopes: tuple[Literal["openid", "profile", "email", "phone", "nir"], ...] = ("openid", "profile", "email", "phone")
    # services of one sector get the same pairwise subject; by default the host of the redirect URIs
    sector: str = ""
    subject: Literal["pairwise", "public"] = "pairwise"
    third_party: bool = False  # not the caisse's own: the person consents before any data goes
    id_token_alg: Literal["RS256", "ES256"] = "RS256"


class OidcConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The OpenID Connect provider and forward auth (docs/oidc.md); off unless enabled."""

    enabled: bool = False
    issuer: str = ""  # by default server.public_url
    code_seconds: Annotated[int, msgspec.Meta(ge=10, le=600)] = 60
    access_token_seconds: Annotated[int, msgspec.Meta(ge=60, le=3600)] = 600
    id_token_seconds: Annotated[int, msgspec.Meta(ge=60, le=3600)] = 600
    forward_auth: bool = False  # /auth/verifier for nginx auth_request
    forward_auth_token_seconds: Annotated[int, msgspec.Meta(ge=10, le=600)] = 60
    clients: list[OidcClientConfig] = []


# A NIR no person holds: department 99 (born abroad) with the country code 999, which INSEE never
# assigned; shown as the identifier page's example instead of anybody's real number.
FICTITIOUS_NIR_EXAMPLE = "1 80 01 99 999 999"


class CitizenConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What the citizen's pages do and show where a caisse may depart from the seeds (docs/seed-departures.md)."""

    confirm_contacts_after_recovery: bool = True  # seed 002, steps 5-6
    code_help_url: Annotated[str, msgspec.Meta(pattern=r"^(https://\S+)?$")] = (
        ""  # seed 000's "Tuto vidéo" beside the code; hidden when empty
    )
    code_help_label: Annotated[str, msgspec.Meta(min_length=1, max_length=60)] = "Tuto vidéo"
    example_nir: Annotated[str, msgspec.Meta(pattern=r"^[12][0-9 ]{12,20}$")] = FICTITIOUS_NIR_EXAMPLE


class AuthenticationConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """How people prove it is them after the password, or instead of it (the authenticator plugins)."""

    # "Se connecter avec une clé d'accès" on the login page: an authenticator that replaces the password
    # (a passkey with user verification) logs in alone
    passwordless: bool = False
    # the codes by email and SMS stay offered to whoever holds a stronger authenticator (a lost phone)
    code_fallback: bool = True
    # statuses whose accounts must use a phishing-resistant authenticator (agents, third parties): they
    # log in with a code only until they have one, and are asked to add one before anything else
    phishing_resistant_statuses: list[Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_-]{0,39}$")]] = []
    # how long a re-authentication (password again) lets a person change their authenticators
    reauthentication_minutes: Annotated[int, msgspec.Meta(ge=1, le=60)] = 5


class CaisseConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    caisse: CaisseInfo
    security: SecurityConfig
    plugins: PluginsConfig = msgspec.field(default_factory=PluginsConfig)
    citizen: CitizenConfig = msgspec.field(default_factory=CitizenConfig)
    statuses: dict[str, StatusConfig] = {}  # by status code: [statuses.particulier] questions = [...]
    codes: CodesConfig = msgspec.field(default_factory=CodesConfig)
    passwords: PasswordsConfig = msgspec.field(default_factory=PasswordsConfig)
    sessions: SessionsConfig = msgspec.field(default_factory=SessionsConfig)
    database: DatabaseConfig = msgspec.field(default_factory=DatabaseConfig)
    redis: RedisConfig | None = None
    rate_limits: RateLimitsConfig = msgspec.field(default_factory=RateLimitsConfig)
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    demo: DemoConfig = msgspec.field(default_factory=DemoConfig)
    metrics: MetricsConfig = msgspec.field(default_factory=MetricsConfig)
    logging: LoggingConfig = msgspec.field(default_factory=LoggingConfig)
    third_parties: ThirdPartiesConfig = msgspec.field(default_factory=ThirdPartiesConfig)
    legal: LegalConfig = msgspec.field(default_factory=LegalConfig)
    oidc: OidcConfig = msgspec.field(default_factory=OidcConfig)
    authentication: AuthenticationConfig = msgspec.field(default_factory=AuthenticationConfig)
    base_dir: str = ""  # filled by load_config: relative paths are relative to the file
    source: str = ""  # filled by decode_config: the file that errors found later (plugins, settings) name

    def path(self, relative: str) -> Path:
        """A path from the config, relative to the config file's folder's parent project."""
        candidate = Path(relative)
        return candidate if candidate.is_absolute() else Path(self.base_dir or ".") / candidate

    def plugin_settings(self, name: str) -> dict[str, Any]:
        return self.plugins.settings.get(name, {})


def secret_refs(config: CaisseConfig) -> list[tuple[str, SecretRef]]:
    """Every secret the config refers to, with its key path: the core's, and those a plugin's settings
    table holds (a table with exactly one of env, file or value)."""
    found: list[tuple[str, SecretRef]] = []

    def walk(value: Any, where: str) -> None:
        if isinstance(value, SecretRef):
            found.append((where, value))
        elif isinstance(value, msgspec.Struct):
            for field in value.__struct_fields__:
                walk(getattr(value, field), f"{where}.{field}")
        elif isinstance(value, dict):
            if value and set(value) <= {"env", "file", "value"} and len(value) == 1:
                try:
                    found.append((where, msgspec.convert(value, SecretRef)))
                except msgspec.ValidationError:
                    pass
                return
            for key, item in value.items():
                walk(item, f"{where}.{key}")
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                walk(item, f"{where}[{i}]")

    walk(config, "$")
    return found


def missing_secrets(config: CaisseConfig) -> list[str]:
    """What stops the config's secrets from resolving here: which variable or file, never a value."""
    missing = []
    for where, ref in secret_refs(config):
        try:
            ref.resolve()
        except ConfigError as exc:
            missing.append(f"{where}: {exc}")
    return missing


def missing_extras(config: CaisseConfig) -> list[str]:
    """The optional parts this config uses that are not installed here, with the extra that brings each."""
    needs = []
    if not config.database.url.startswith("sqlite"):
        needs.append(("asyncpg", "postgres", "$.database.url: PostgreSQL"))
    if config.redis is not None:
        needs.append(("redis", "redis", "$.redis: Redis"))
    return [
        f"{what} needs the {extra} extra, not installed here: pip install 'guichet-auth[{extra}]'"
        for module, extra, what in needs
        if importlib.util.find_spec(module) is None
    ]


_PATH_RE = re.compile(r" - at `(?P<path>[^`]+)`$")


def contrast_with_white(colour: str) -> float:
    """WCAG contrast ratio of white text on ``#rrggbb``: buttons and the banner carry white text."""
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return 1.05 / (luminance + 0.05)


def _check_semantics(config: CaisseConfig) -> None:
    """Rules msgspec cannot express; each raises ValueError with a key path."""
    if contrast_with_white(config.caisse.colour) < 4.5:
        raise ValueError(
            f"white text on {config.caisse.colour} has a contrast of "
            f"{contrast_with_white(config.caisse.colour):.1f}:1, below WCAG AA's 4.5:1: "
            "choose a darker colour - at `$.caisse.colour`"
        )
    if config.demo.mailbox and config.server.mode != "demo":
        raise ValueError('the demo mailbox is only allowed with server.mode = "demo" - at `$.demo.mailbox`')
    if config.server.mode == "production":
        refs = [("$.security.secret_key", config.security.secret_key)]
        if config.database.password is not None:
            refs.append(("$.database.password", config.database.password))
        if config.redis is not None and config.redis.password is not None:
            refs.append(("$.redis.password", config.redis.password))
        refs += [
            (f"$.security.previous_secret_keys[{i}]", r) for i, r in enumerate(config.security.previous_secret_keys)
        ]
        for where, ref in refs:
            if ref.value is not None:
                raise ValueError(
                    f'a literal secret is refused in production: use {{ env = "..." }} or {{ file = "..." }} - at `{where}`'
                )
        if not config.sessions.secure_cookies:
            raise ValueError("cookies must be Secure in production - at `$.sessions.secure_cookies`")
    if "redis" in (config.sessions.store, config.rate_limits.store) and config.redis is None:
        raise ValueError("a [redis] url is needed when sessions or rate limits use redis - at `$.redis`")
    if config.redis is not None and urlsplit(config.redis.url).password:
        raise ValueError(
            'the Redis password goes in `password = { env = "..." }`, not in the url '
            "(the url is shown in logs and errors) - at `$.redis.url`"
        )
    for i, proxy in enumerate(config.security.trusted_proxies):
        try:
            ipaddress.ip_network(proxy.strip(), strict=False)
        except ValueError:
            raise ValueError(f"not an address or a network: {proxy!r} - at `$.security.trusted_proxies[{i}]`") from None
    if config.server.public_url:
        parts = urlsplit(config.server.public_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
            raise ValueError(
                f'expected the site\'s address, like "https://monespace.example.fr", not '
                f"{config.server.public_url!r} - at `$.server.public_url`"
            )
    for i, client in enumerate(config.metrics.allowed_clients):
        try:
            ipaddress.ip_network(client, strict=False)
        except ValueError:
            raise ValueError(f"not an address or a network: {client!r} - at `$.metrics.allowed_clients[{i}]`") from None
    import phonenumbers

    for i, region in enumerate(config.security.foreign_mobile_regions):
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown country code {region!r} - at `$.security.foreign_mobile_regions[{i}]`")
    _check_oidc(config)
    if len(set(config.plugins.enabled)) != len(config.plugins.enabled):
        raise ValueError("a plugin is enabled twice - at `$.plugins.enabled`")


def _check_redirect_uri(uri: str, where: str, production: bool) -> None:
    parts = urlsplit(uri)
    loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.fragment or "#" in uri:
        raise ValueError(f"expected an absolute https address without a fragment, not {uri!r} - at `{where}`")
    if parts.scheme == "http" and production and not loopback:
        raise ValueError(f"a redirect address must use https in production, not {uri!r} - at `{where}`")


def _check_oidc(config: CaisseConfig) -> None:
    oidc = config.oidc
    production = config.server.mode == "production"
    if oidc.enabled and not (oidc.issuer or config.server.public_url):
        raise ValueError("the provider needs an issuer: set oidc.issuer or server.public_url - at `$.oidc.issuer`")
    if oidc.issuer:
        parts = urlsplit(oidc.issuer)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.query
            or parts.fragment
            or (production and parts.scheme != "https")
        ):
            raise ValueError(
                f"expected an https address without query or fragment, not {oidc.issuer!r} - at `$.oidc.issuer`"
            )
    seen: set[str] = set()
    for i, client in enumerate(oidc.clients):
        where = f"$.oidc.clients[{i}]"
        if client.id in seen:
            raise ValueError(f"the client id {client.id!r} is declared twice - at `{where}.id`")
        seen.add(client.id)
        check_client(client, where, production=production)


def check_client(client: OidcClientConfig, where: str, *, production: bool) -> None:
    """Rules of one service's settings (the config's, or one added with ``guichet clients add``)."""
    if not client.redirect_uris:
        raise ValueError(f"a client needs at least one redirect address - at `{where}.redirect_uris`")
    for j, uri in enumerate(client.redirect_uris):
        _check_redirect_uri(uri, f"{where}.redirect_uris[{j}]", production)
    for j, uri in enumerate(client.post_logout_redirect_uris):
        _check_redirect_uri(uri, f"{where}.post_logout_redirect_uris[{j}]", production)
    if client.start_url:
        _check_redirect_uri(client.start_url, f"{where}.start_url", production)
    if client.backchannel_logout_uri:
        _check_redirect_uri(client.backchannel_logout_uri, f"{where}.backchannel_logout_uri", production)
    if client.auth_method == "client_secret_basic" and client.secret is None:
        raise ValueError(f'client_secret_basic needs a secret = {{ env = "..." }} - at `{where}.secret`')
    if client.auth_method != "client_secret_basic" and client.secret is not None:
        raise ValueError(f"only client_secret_basic uses a secret - at `{where}.secret`")
    if client.auth_method == "private_key_jwt" and not client.jwks_file:
        raise ValueError(f"private_key_jwt needs the client's public keys - at `{where}.jwks_file`")
    if production and client.secret is not None and client.secret.value is not None:
        raise ValueError(
            f'a literal secret is refused in production: use {{ env = "..." }} or '
            f'{{ file = "..." }} - at `{where}.secret`'
        )
    if "openid" not in client.scopes:
        raise ValueError(f"every client has the openid scope - at `{where}.scopes`")
    hosts = {urlsplit(u).hostname for u in client.redirect_uris}
    if client.subject == "pairwise" and not client.sector and len(hosts) > 1:
        raise ValueError(
            "redirect addresses on several hosts need a `sector` naming the service's "
            f"sector, so the person keeps one pairwise subject - at `{where}.sector`"
        )


def decode_config(data: bytes | str, *, source: str = "<config>", base_dir: str = "") -> CaisseConfig:
    """Decode and validate a config; raise ConfigError naming ``source`` and the key path."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        table = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=source) from None
    table["base_dir"] = base_dir
    table["source"] = source
    try:
        config = msgspec.convert(table, CaisseConfig)
        _check_semantics(config)
    except (msgspec.ValidationError, ValueError) as exc:
        text = str(exc)
        match = _PATH_RE.search(text)
        key = match.group("path") if match else "$"
        message = _PATH_RE.sub("", text)
        raise ConfigError(f"{message}", path=source, key=key) from None
    return config


def load_config(path: str | os.PathLike[str]) -> CaisseConfig:
    """Read a caisse config file; relative paths inside it are relative to the project root."""
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror}", path=str(file)) from None
    # config/x.toml lives in the project's config/ folder: paths like var/ are relative to its parent
    base = file.resolve().parent
    base_dir = str(base.parent if base.name == "config" else base)
    return decode_config(data, source=str(file), base_dir=base_dir)
