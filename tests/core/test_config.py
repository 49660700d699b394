"""Caisse configs: every bad config gives an error naming the file, the key path and what was expected."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from guichet.core.clock import Clock
from guichet.core.config import CaisseConfig, SecretRef, decode_config, load_config
from guichet.core.context import PluginContext
from guichet.core.database import Database
from guichet.core.errors import ConfigError
from guichet.core.plugins import PluginHost, load_plugins

ROOT = Path(__file__).resolve().parents[2]
SECRET = "literal-secret-value-0123456789abcdef"
SECRET_ENV = ("GUICHET_SECRET_KEY", "GUICHET_SMTP_PASSWORD", "GUICHET_SMS_TOKEN", "GUICHET_DB_PASSWORD")

GOOD = f"""
[caisse]
id = "test"
name = "MSA Test"

[plugins]
enabled = ["statuses_msa"]

[security]
secret_key = {{ value = "{SECRET}" }}

[sessions]
secure_cookies = false

[server]
mode = "demo"
"""
PRODUCTION = GOOD.replace('mode = "demo"', 'mode = "production"').replace(
    "secure_cookies = false", "secure_cookies = true"
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "caisse.toml"
    path.write_text(text, encoding="utf-8")
    return path


def host_for(config: CaisseConfig, tmp_path: Path) -> PluginHost:
    """A host whose database is a local SQLite file: the shipped configs' PostgreSQL is not reached."""
    database = Database(f"sqlite:///{tmp_path / 'unused.sqlite'}")
    return PluginHost(config, PluginContext(config=config, database=database, clock=Clock()), channels=False)


def test_the_good_config_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert config.caisse.name == "MSA Test" and config.server.mode == "demo"
    assert config.source.endswith("caisse.toml")


BAD_CONFIGS = [
    pytest.param(
        GOOD.replace('name = "MSA Test"', 'name = "MSA Test"\ncolr = "#00ff00"'),
        "caisse.toml: $.caisse: Object contains unknown field `colr`",
        id="unknown-key",
    ),
    pytest.param(
        GOOD.replace("[sessions]", "[sesions]"),
        "caisse.toml: $: Object contains unknown field `sesions`",
        id="misspelt-table",
    ),
    pytest.param(
        GOOD.replace('mode = "demo"', 'mode = "demo"\nport = "8000"'),
        "caisse.toml: $.server.port: Expected `int`, got `str`",
        id="wrong-type",
    ),
    pytest.param(
        GOOD.replace('enabled = ["statuses_msa"]', 'enabled = "statuses_msa"'),
        "caisse.toml: $.plugins.enabled: Expected `array`, got `str`",
        id="wrong-type-list",
    ),
    pytest.param(
        GOOD.replace("[security]", "[security_]")
        .replace("[security_]\n", "")
        .replace(f'secret_key = {{ value = "{SECRET}" }}\n', ""),
        "caisse.toml: $: Object missing required field `security`",
        id="missing-required",
    ),
    pytest.param(
        GOOD.replace('id = "test"\n', ""),
        "caisse.toml: $.caisse: Object missing required field `id`",
        id="missing-required-nested",
    ),
    pytest.param(
        GOOD.replace("secure_cookies = false", 'secure_cookies = false\nstore = "memcached"'),
        "caisse.toml: $.sessions.store: Invalid enum value 'memcached'",
        id="bad-enum",
    ),
    pytest.param(
        GOOD + '\n[codes.login]\nchannels = ["email", "Pigeon voyageur"]\n',
        "caisse.toml: $.codes.login.channels[1]: Expected `str` matching regex",
        id="bad-channel-name",
    ),
    pytest.param(
        PRODUCTION, "caisse.toml: $.security.secret_key: a literal secret is refused in production", id="literal-secret"
    ),
    pytest.param(
        PRODUCTION.replace(f'{{ value = "{SECRET}" }}', '{ env = "GUICHET_SECRET_KEY" }')
        + "\n[demo]\nmailbox = true\n",
        'caisse.toml: $.demo.mailbox: the demo mailbox is only allowed with server.mode = "demo"',
        id="demo-mailbox-in-production",
    ),
    pytest.param(
        PRODUCTION.replace(f'{{ value = "{SECRET}" }}', '{ env = "GUICHET_SECRET_KEY" }').replace(
            "secure_cookies = true", "secure_cookies = false"
        ),
        "caisse.toml: $.sessions.secure_cookies: cookies must be Secure in production",
        id="insecure-cookies",
    ),
    pytest.param(
        GOOD.replace("secure_cookies = false", 'secure_cookies = false\nstore = "redis"'),
        "caisse.toml: $.redis: a [redis] url is needed when sessions or rate limits use redis",
        id="redis-store-without-redis",
    ),
    pytest.param(
        GOOD + '\n[rate_limits]\nstore = "redis"\n[redis]\nurl = "http://localhost"\n',
        "caisse.toml: $.redis.url: Expected `str` matching regex",
        id="bad-redis-url",
    ),
    pytest.param(
        GOOD + '\n[redis]\nurl = "redis://:hunter2@127.0.0.1:6379/0"\n',
        'caisse.toml: $.redis.url: the Redis password goes in `password = { env = "..." }`, not in the url',
        id="password-in-redis-url",
    ),
    pytest.param(
        PRODUCTION.replace(f'{{ value = "{SECRET}" }}', '{ env = "GUICHET_SECRET_KEY" }')
        + '\n[redis]\nurl = "redis://127.0.0.1:6379/0"\npassword = { value = "hunter2" }\n',
        "caisse.toml: $.redis.password: a literal secret is refused in production",
        id="literal-redis-password",
    ),
    pytest.param(
        PRODUCTION.replace(f'{{ value = "{SECRET}" }}', '{ env = "GUICHET_SECRET_KEY" }')
        + '\n[database]\nurl = "postgresql://guichet@127.0.0.1:5432/guichet"\npassword = { value = "x" }\n',
        "caisse.toml: $.database.password: a literal secret is refused in production",
        id="literal-database-password",
    ),
    pytest.param(
        GOOD.replace('enabled = ["statuses_msa"]', 'enabled = ["statuses_msa", "statuses_msa"]'),
        "caisse.toml: $.plugins.enabled: a plugin is enabled twice",
        id="duplicate-plugin",
    ),
    pytest.param(
        GOOD.replace('name = "MSA Test"', 'name = "MSA Test"\ncolour = "red"'),
        "caisse.toml: $.caisse.colour: Expected `str` matching regex '^#[0-9a-fA-F]{6}$'",
        id="bad-colour",
    ),
    pytest.param(
        GOOD.replace('name = "MSA Test"', 'name = "MSA Test"\ncolour = "#ffcc00"'),
        "caisse.toml: $.caisse.colour: white text on #ffcc00 has a contrast of 1.5:1",
        id="pale-colour",
    ),
    pytest.param(
        GOOD + "\n[codes.recovery]\nlength = 3\n",
        "caisse.toml: $.codes.recovery.length: Expected `int` >= 4",
        id="code-length-3",
    ),
    pytest.param(
        GOOD + "\n[codes.recovery]\nlifetime_minutes = 0\n",
        "caisse.toml: $.codes.recovery.lifetime_minutes: Expected `int` >= 1",
        id="code-lifetime-0",
    ),
    pytest.param(
        GOOD.replace('name = "MSA Test"', 'name = "MSA Test'), "caisse.toml: not valid TOML: ", id="toml-syntax"
    ),
    pytest.param(
        GOOD.replace(f'{{ value = "{SECRET}" }}', '{ env = "A", file = "/b" }'),
        "caisse.toml: $.security.secret_key: a secret is exactly one of",
        id="secret-two-sources",
    ),
    pytest.param(
        GOOD.replace(f'{{ value = "{SECRET}" }}', '{ vault = "x" }'),
        "caisse.toml: $.security.secret_key: Object contains unknown field `vault`",
        id="secret-unknown-source",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD_CONFIGS)
def test_bad_config_names_file_key_and_expectation(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert str(caught.value).startswith(str(tmp_path / "caisse.toml")), str(caught.value)
    assert message in str(caught.value)
    assert SECRET not in str(caught.value)


def test_toml_syntax_error_gives_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"caisse\.toml: not valid TOML: .*line 4"):
        load_config(write(tmp_path, GOOD.replace('name = "MSA Test"', 'name = "MSA Test')))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nowhere\.toml: cannot read the file: No such file"):
        load_config(tmp_path / "nowhere.toml")


def test_unknown_plugin_lists_the_available_ones(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD.replace('["statuses_msa"]', '["statuses_msa", "statuts_msa"]')))
    with pytest.raises(ConfigError) as caught:
        load_plugins(config)
    text = str(caught.value)
    assert text.startswith(f"{tmp_path / 'caisse.toml'}: $.plugins.enabled: unknown plugin 'statuts_msa'")
    assert "available plugins: authenticator_passkey, authenticator_recovery, authenticator_totp, " in text
    assert "statuses_msa" in text.split("available plugins:")[1]


class ExampleSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    host: str
    port: int = 25


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            'host = "smtp.example"\nport = "25"',
            "$.plugins.settings.example: Expected `int`, got `str` - at `$.plugins.settings.example.port`",
        ),
        ('host = "smtp.example"\nprot = 25', "$.plugins.settings.example: Object contains unknown field `prot`"),
        ("port = 25", "$.plugins.settings.example: Object missing required field `host`"),
    ],
)
def test_bad_plugin_settings_table(tmp_path: Path, table: str, message: str) -> None:
    config = load_config(write(tmp_path, GOOD + f"\n[plugins.settings.example]\n{table}\n"))
    context = PluginContext(config=config, database=Database(f"sqlite:///{tmp_path / 'x.sqlite'}"), clock=Clock())
    with pytest.raises(ConfigError) as caught:
        context.settings("example", ExampleSettings)
    assert str(caught.value).startswith(f"{tmp_path / 'caisse.toml'}: ")
    assert message in str(caught.value)


def test_good_plugin_settings_are_decoded_once(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD + '\n[plugins.settings.example]\nhost = "smtp.example"\n'))
    context = PluginContext(config=config, database=Database(f"sqlite:///{tmp_path / 'x.sqlite'}"), clock=Clock())
    settings = context.settings("example", ExampleSettings)
    assert settings == ExampleSettings(host="smtp.example", port=25)
    assert context.settings("example", ExampleSettings) is settings


# --- secrets ---------------------------------------------------------------------------------------


def test_secret_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    ref = SecretRef(env="GUICHET_TEST_SECRET_X")
    monkeypatch.delenv("GUICHET_TEST_SECRET_X", raising=False)
    with pytest.raises(ConfigError, match="the environment variable GUICHET_TEST_SECRET_X is not set"):
        ref.resolve()
    monkeypatch.setenv("GUICHET_TEST_SECRET_X", "from-the-environment")
    assert ref.resolve() == "from-the-environment"
    assert "from-the-environment" not in repr(ref) and repr(ref) == "SecretRef(env='GUICHET_TEST_SECRET_X')"


def test_secret_from_file(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("from-a-file\n", encoding="utf-8")
    ref = SecretRef(file=str(path))
    assert ref.resolve() == "from-a-file"
    assert "from-a-file" not in repr(ref)
    with pytest.raises(ConfigError, match="cannot read the secret file .*missing"):
        SecretRef(file=str(tmp_path / "missing")).resolve()


def test_secret_values_never_show_in_a_repr(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD + f'\n[database]\npassword = {{ value = "{SECRET}-db" }}\n'))
    assert config.security.secret_key.resolve() == SECRET
    assert SECRET not in repr(config)  # nested Structs use SecretRef's own repr
    assert "value=<hidden>" in repr(config.security.secret_key)
    assert SECRET not in repr(config.database)


# --- the shipped configs -----------------------------------------------------------------------------


@pytest.fixture
def no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRET_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_secrets")
@pytest.mark.parametrize("name", ["demo", "provence-azur", "sud-aquitaine"])
def test_shipped_configs_load_without_their_secrets(name: str, tmp_path: Path) -> None:
    config = load_config(ROOT / "config" / f"{name}.toml")
    assert config.caisse.id == name
    assert config.base_dir == str(ROOT)  # config/x.toml: relative paths are the project's
    host = host_for(config, tmp_path)  # builds every policy, resolves no secret
    assert [s.code for s in host.statuses()][:2] == ["exploitant", "entreprise"]
    if name != "demo":
        with pytest.raises(ConfigError):  # only resolve() needs them
            (config.database.password or SecretRef(env="GUICHET_DB_PASSWORD")).resolve()


@pytest.mark.usefixtures("no_secrets")
def test_provence_azur_login_code(tmp_path: Path) -> None:
    host = host_for(load_config(ROOT / "config/provence-azur.toml"), tmp_path)
    login = host.code_policy("login")
    assert (login.length, login.lifetime_minutes, login.channels) == (6, 15, ("email",))
    assert host.code_policy("recovery").lifetime_minutes == 10  # guichet's default


@pytest.mark.usefixtures("no_secrets")
def test_sud_aquitaine_recovery_code(tmp_path: Path) -> None:
    host = host_for(load_config(ROOT / "config/sud-aquitaine.toml"), tmp_path)
    recovery = host.code_policy("recovery")
    assert (recovery.length, recovery.lifetime_minutes, recovery.channels) == (4, 30, ("sms", "email"))
    assert host.code_policy("login").lifetime_minutes == 10


def test_precedence_toml_then_preset_then_default(make_config, tmp_path: Path) -> None:
    preset_only = make_config("", base=GOOD.replace('["statuses_msa"]', '["caisse_sud_aquitaine"]'))
    recovery = host_for(preset_only, tmp_path).code_policy("recovery")
    assert (recovery.length, recovery.lifetime_minutes) == (4, 30)  # the preset, with no TOML key
    overridden = make_config(
        "[codes.recovery]\nlifetime_minutes = 8\n", base=GOOD.replace('["statuses_msa"]', '["caisse_sud_aquitaine"]')
    )
    recovery = host_for(overridden, tmp_path).code_policy("recovery")
    assert (recovery.length, recovery.lifetime_minutes) == (4, 8)  # the TOML key wins, the rest of the preset stays
    default = host_for(make_config("", base=GOOD), tmp_path).code_policy("recovery")
    assert (default.length, default.lifetime_minutes, default.max_attempts) == (6, 10, 3)


def test_decode_config_is_usable_without_a_file() -> None:
    config = decode_config(GOOD, source="inline.toml")
    assert config.source == "inline.toml"
    with pytest.raises(ConfigError, match=r"^inline\.toml: \$\.caisse\.id: Expected `str` matching regex"):
        decode_config(GOOD.replace('id = "test"', 'id = "Test Caisse"'), source="inline.toml")
