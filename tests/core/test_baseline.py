"""The security baseline check (`guichet config check`) and its generated section of docs/security.md."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import BASE_CONFIG

from guichet.core.baseline import (
    GENERATED_BEGIN,
    GENERATED_END,
    SHIPPED_CONFIGS,
    Finding,
    effective_values,
    render_deviations,
    shipped_configs,
    update_security_doc,
    weaker_than_baseline,
)
from guichet.core.config import CaisseConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
SECRET_ENV = ("GUICHET_SECRET_KEY", "GUICHET_SMTP_PASSWORD", "GUICHET_SMS_TOKEN", "GUICHET_DB_PASSWORD")
# only the plugins that shape policies: the baseline config of guichet's own defaults
NEUTRAL = """
[plugins]
enabled = ["statuses_msa"]
"""


@pytest.fixture(autouse=True)
def no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check must work where the production secrets are not set."""
    for name in SECRET_ENV:
        monkeypatch.delenv(name, raising=False)


def keys(findings: list[Finding]) -> dict[str, Finding]:
    return {f.key: f for f in findings}


def neutral_config(make_config: Callable[..., CaisseConfig], extra: str = "") -> CaisseConfig:
    """BASE_CONFIG with only statuses_msa; ``extra`` lines under [security] or [sessions] go into those tables."""
    base = re.sub(r"\[plugins\]\nenabled = \[[^\]]*\]\n", "", BASE_CONFIG) + NEUTRAL
    for table in ("security", "sessions"):
        if extra.startswith(f"[{table}]\n"):
            base = base.replace(f"[{table}]\n", extra + "\n", 1)
            extra = ""
    return make_config(extra, base=base)


def test_sud_aquitaine_recovery_code_is_flagged_with_its_compensation() -> None:
    findings = keys(weaker_than_baseline(load_config(ROOT / "config/sud-aquitaine.toml")))
    length = findings["codes.recovery.length"]
    assert length.value == "4 digits (about 13 bits)"
    assert "6 digits" in length.standard and "ASVS 6.5.4" in length.standard
    assert "At most 3 tries per code and 10 failures per account per 24 h" in length.compensation
    lifetime = findings["codes.recovery.lifetime_minutes"]
    assert lifetime.value == "30 minutes" and "10 minutes" in lifetime.standard
    assert "Single use" in lifetime.compensation
    assert "codes.login.lifetime_minutes" not in findings  # Sud Aquitaine keeps the default login code


def test_provence_azur_login_code_lifetime_and_channel() -> None:
    config = load_config(ROOT / "config/provence-azur.toml")
    findings = keys(weaker_than_baseline(config))
    assert findings["codes.login.lifetime_minutes"].value == "15 minutes"
    assert findings["codes.login.channels"].value == "email"
    assert "SMS" not in findings["codes.login.channels"].compensation  # no SMS promise for an email-only code
    assert "codes.recovery.length" not in findings
    values = dict(effective_values(config))
    assert values["codes.login.lifetime_minutes"] == "15"
    assert values["codes.login.channels"] == "email"
    assert values["codes.recovery.length"] == "6 digits (about 20 bits)"
    assert values["passwords.min_length"] == "8" and values["passwords.classes"] == "required"
    assert values["passwords.argon2"] == "argon2id m=19456 KiB, t=2, p=1"
    assert values["registration.identity_questions"] == "payment, vitale"


def test_guichet_defaults_only_carry_the_unavoidable_findings(make_config: Callable[..., CaisseConfig]) -> None:
    findings = keys(weaker_than_baseline(neutral_config(make_config)))
    # a login code goes by email or SMS and a trusted browser skips it: every guichet deployment does that;
    # without an authenticator plugin, nothing phishing-resistant is offered either
    assert set(findings) == {"plugins.enabled", "codes.login.channels", "security.trusted_browser_days"}
    assert "phishing-resistant" in findings["plugins.enabled"].standard
    values = dict(effective_values(neutral_config(make_config)))
    assert values["passwords.min_length"] == "12" and values["passwords.classes"] == "not required"
    assert values["registration.identity_questions"] == "(none)"


@pytest.mark.parametrize(
    ("extra", "key", "value"),
    [
        ("[codes.login]\nlength = 5", "codes.login.length", "5 digits (about 17 bits)"),
        ("[codes.registration]\nlifetime_minutes = 11", "codes.registration.lifetime_minutes", "11 minutes"),
        ("[codes.contact_change]\nmax_attempts = 4", "codes.contact_change.max_attempts", "4 tries per code"),
        ("[codes]\nfailures_per_day = 11", "codes.failures_per_day", "11 failures per account per 24 h"),
        (
            "[passwords]\nrequire_classes = true",
            "passwords.classes",
            "digits, upper case, lower case and special characters required",
        ),
        ("[passwords]\nmin_length = 10", "passwords.min_length", "10 characters"),
        ("[passwords.argon2]\nmemory_kib = 16384", "passwords.argon2", "argon2id m=16384 KiB, t=2, p=1"),
        ("[passwords.argon2]\nmemory_kib = 19456\ntime_cost = 1", "passwords.argon2", "argon2id m=19456 KiB, t=1, p=1"),
        ("[security]\nidentity_answers_per_identifier = 5", "security.identity_answers_per_identifier", "5 answers"),
        ("[sessions]\nidle_minutes = 60", "sessions.idle_minutes", "60 minutes"),
        ("[sessions]\nabsolute_hours = 24", "sessions.absolute_hours", "24 hours"),
    ],
)
def test_each_weaker_value_is_flagged(
    make_config: Callable[..., CaisseConfig], extra: str, key: str, value: str
) -> None:
    findings = keys(weaker_than_baseline(neutral_config(make_config, extra)))
    assert key in findings, findings
    assert findings[key].value == value
    assert findings[key].standard and findings[key].compensation


@pytest.mark.parametrize(
    "extra",
    [
        "[passwords.argon2]\nmemory_kib = 47104\ntime_cost = 1",  # OWASP's equivalents of m=19 MiB t=2
        "[passwords.argon2]\nmemory_kib = 7168\ntime_cost = 5",
        "[passwords.argon2]\nmemory_kib = 65536\ntime_cost = 3\nparallelism = 4",  # argon2-cffi's defaults
        "[passwords]\nmin_length = 15",
        "[codes.login]\nlength = 8\nlifetime_minutes = 5",
    ],
)
def test_values_at_or_above_the_baseline_are_not_flagged(make_config: Callable[..., CaisseConfig], extra: str) -> None:
    findings = keys(weaker_than_baseline(neutral_config(make_config, extra)))
    assert set(findings) == {"plugins.enabled", "codes.login.channels", "security.trusted_browser_days"}


def test_cli_check_runs_without_the_secrets_and_names_what_blocks(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from guichet.cli import main

    for name in ("GUICHET_SECRET_KEY", "GUICHET_SMTP_PASSWORD", "GUICHET_SMS_TOKEN", "GUICHET_DB_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    assert main(["config", "check", str(ROOT / "config/provence-azur.toml")]) == 1
    out = capsys.readouterr().out
    assert "provence-azur.toml: valid" in out
    assert "codes.login.lifetime_minutes = 15" in out
    assert "- codes.login.lifetime_minutes: 15 minutes — at most 10 minutes (ASVS 6.5.5)" in out
    assert "Ready to serve: no" in out
    assert "$.database.password: the environment variable GUICHET_DB_PASSWORD is not set" in out
    assert "$.plugins.settings.delivery_sms.auth: the environment variable GUICHET_SMS_TOKEN is not set" in out


def test_cli_check_says_ready_once_the_secrets_resolve(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from guichet.cli import main

    values = {
        "GUICHET_SECRET_KEY": "k" * 40,
        "GUICHET_SMTP_PASSWORD": "smtp-secret-value",
        "GUICHET_SMS_TOKEN": "sms-secret-value",
        "GUICHET_DB_PASSWORD": "db-secret-value",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    assert main(["config", "check", str(ROOT / "config/provence-azur.toml")]) == 0
    out = capsys.readouterr().out
    assert "Ready to serve: yes" in out
    assert not any(value in out for value in values.values()), "a secret's value was printed"


def test_docs_security_lists_the_findings_of_each_shipped_config() -> None:
    text = (ROOT / "docs/security.md").read_text(encoding="utf-8")
    assert text.count(GENERATED_BEGIN) == 1 and text.count(GENERATED_END) == 1
    section = text[text.index(GENERATED_BEGIN) + len(GENERATED_BEGIN) : text.index(GENERATED_END)].strip()
    configs = shipped_configs(ROOT)
    assert [name for name, _ in configs] == list(SHIPPED_CONFIGS)
    assert section == render_deviations(configs), "docs/security.md is stale: run python -m core.baseline"
    for name, config in configs:  # and, independently of the renderer, every finding is in its config's part
        part = section.split(f"### `{name}`", 1)[1].split("### ", 1)[0]
        for finding in weaker_than_baseline(config):
            assert f"| `{finding.key}` | {finding.value} |" in part, (name, finding.key)


def test_update_keeps_the_hand_written_sections(tmp_path: Path) -> None:
    doc = tmp_path / "security.md"
    doc.write_text("# Security\n\n## Threat model\n\nWritten by hand.\n", encoding="utf-8")
    configs = shipped_configs(ROOT)[:1]
    update_security_doc(doc, configs)
    update_security_doc(doc, configs)  # idempotent: replaced, not appended twice
    text = doc.read_text(encoding="utf-8")
    assert text.startswith("# Security\n\n## Threat model\n\nWritten by hand.\n")
    assert text.count(GENERATED_BEGIN) == 1 and "## Deviations a caisse config can choose" in text
    doc.write_text(text + "\n## Controls\n\nAlso by hand.\n", encoding="utf-8")
    update_security_doc(doc, configs)
    assert doc.read_text(encoding="utf-8").endswith("## Controls\n\nAlso by hand.\n")
