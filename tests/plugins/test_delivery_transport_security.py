"""Production refuses a channel that would carry codes in clear: SMTP without TLS, an SMS gateway
over plain http (with its token). A relay or a gateway on this machine is allowed, and said so.
Each plugin judges its own settings (``guichet_settings_notes``), at start-up and in
``guichet config check``."""

from __future__ import annotations

import contextlib
import io
import logging
import subprocess
from pathlib import Path

import pytest

from guichet.cli import main as guichet
from guichet.core.clock import Clock
from guichet.core.config import CaisseConfig, load_config
from guichet.core.context import PluginContext
from guichet.core.database import Database
from guichet.core.errors import ConfigError
from guichet.core.plugins import PluginHost
from guichet.core.services import build_services
from guichet.core.structs import SettingsNote
from guichet.plugins.delivery_email import hooks as email_hooks
from guichet.plugins.delivery_sms import hooks as sms_hooks

EMAIL_KEY = "$.plugins.settings.delivery_email.security"
SMS_KEY = "$.plugins.settings.delivery_sms.url"


def production(
    tmp_path: Path,
    *,
    smtp_host: str = "smtp.exemple.fr",
    smtp_security: str = "starttls",
    sms_url: str = "https://sms.exemple.fr/v1",
    mode: str = "production",
) -> Path:
    secret = tmp_path / "secret_key"
    secret.write_text("a-secret-key-read-from-a-file-0123456789abcdef\n")
    token = tmp_path / "sms_token"
    token.write_text("sms-gateway-token-0123456789\n")
    path = tmp_path / "caisse.toml"
    path.write_text(
        f"""
[caisse]
id = "test"
name = "MSA Test"

[plugins]
enabled = ["statuses_msa", "identity_vitale", "identity_payment", "delivery_email", "delivery_sms", "delivery_postal"]

[plugins.settings.delivery_email]
host = "{smtp_host}"
port = 25
security = "{smtp_security}"
sender = "MSA Test <ne-pas-repondre@test.invalid>"

[plugins.settings.delivery_sms]
url = "{sms_url}"
auth = {{ file = "{token}" }}

[security]
secret_key = {{ file = "{secret}" }}

[database]
url = "sqlite:///{tmp_path / "guichet.sqlite"}"

[server]
mode = "{mode}"
""",
        encoding="utf-8",
    )
    return path


def context_of(config: CaisseConfig, tmp_path: Path) -> PluginContext:
    return PluginContext(config=config, database=Database(f"sqlite:///{tmp_path / 'unused.sqlite'}"), clock=Clock())


def check(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = guichet(["config", "check", str(path)])
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    ("settings", "key", "words"),
    [
        ({"smtp_security": "none"}, EMAIL_KEY, "SMTP without TLS to smtp.exemple.fr is refused in production"),
        (
            {"sms_url": "http://sms.exemple.fr/v1"},
            SMS_KEY,
            "an SMS gateway over plain http (sms.exemple.fr) is refused in production: the numbers, the codes and the auth token",
        ),
    ],
)
def test_production_refuses_a_channel_in_clear_at_start_up_and_in_config_check(
    tmp_path: Path, settings: dict[str, str], key: str, words: str
) -> None:
    path = production(tmp_path, **settings)
    config = load_config(path)  # the core's own checks pass: the plugin is the one that refuses
    with pytest.raises(ConfigError) as refused:
        build_services(config)
    assert refused.value.key == key and words in str(refused.value) and str(path) in str(refused.value)
    code, out, err = check(path)
    assert code == 2 and key in err and words in err and "valid" not in out
    assert "token-0123456789" not in out + err  # the secret is never read, let alone shown


@pytest.mark.parametrize(
    ("settings", "key", "words"),
    [
        ({"smtp_host": "127.0.0.1", "smtp_security": "none"}, EMAIL_KEY, "SMTP without TLS to a relay on this machine"),
        ({"smtp_host": "localhost", "smtp_security": "none"}, EMAIL_KEY, "SMTP without TLS to a relay on this machine"),
        ({"sms_url": "http://[::1]:8080/sms"}, SMS_KEY, "SMS gateway over plain http on this machine"),
    ],
)
def test_a_relay_on_this_machine_is_allowed_and_said_so(
    tmp_path: Path, settings: dict[str, str], key: str, words: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = production(tmp_path, **settings)
    with caplog.at_level(logging.WARNING, logger="guichet.plugins"):
        services = build_services(load_config(path))
    services.passwords.close()
    assert any(key in r.getMessage() and words in r.getMessage() for r in caplog.records)
    code, out, _err = check(path)
    assert code == 0 and f"note: {key}: {words}" in out


def test_tls_everywhere_and_demo_mode_say_nothing(tmp_path: Path) -> None:
    code, out, _err = check(production(tmp_path))
    assert code == 0 and "note:" not in out
    demo = production(tmp_path, smtp_security="none", sms_url="http://sms.exemple.fr/v1", mode="demo")
    code, out, _err = check(demo)
    assert code == 0 and "note:" not in out


def test_hook_guichet_settings_notes(tmp_path: Path) -> None:
    config = load_config(production(tmp_path, smtp_security="none", sms_url="http://127.0.0.1:9/sms"))
    context = context_of(config, tmp_path)
    # the built-in implementations, called directly
    [email] = email_hooks.guichet_settings_notes(context)
    assert email == SettingsNote(key=EMAIL_KEY, refused=True, message=email.message)
    [sms] = sms_hooks.guichet_settings_notes(context)
    assert sms.key == SMS_KEY and not sms.refused
    # through PluginHost, in the order plugins are enabled; channels=False builds nothing and refuses nothing
    host = PluginHost(config, context, channels=False)
    assert host.settings_notes() == [email, sms]
    with pytest.raises(ConfigError, match="delivery_email.security"):
        PluginHost(config, context)
    fine = load_config(production(tmp_path))
    assert PluginHost(fine, context_of(fine, tmp_path), channels=False).settings_notes() == []


def test_guichet_serve_does_not_start_with_smtp_in_clear(tmp_path: Path) -> None:
    """`guichet serve` checks what every worker would refuse before it starts one: a configuration error
    (exit 2) names the key, and no worker is started again and again."""
    from tests.ops.serving import GUICHET, ROOT, free_port

    path = production(tmp_path, smtp_security="none")
    done = subprocess.run(
        [*GUICHET, "serve", "--config", str(path), "--port", str(free_port())],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"configuration error: {path}: {EMAIL_KEY}: SMTP without TLS to smtp.exemple.fr" in done.stderr
