"""The security baseline check: a caisse config's effective values, and those weaker than the standards.

guichet's own defaults follow OWASP ASVS 5.0 level 2 and NIST SP 800-63B. A caisse may keep the
MSA's documented behaviour (a 4-digit code, a 30-minute lifetime, password classes...): that is
its choice, and ``guichet config check`` lists every such value with the standard it falls short
of and the compensating controls guichet applies (DESIGN.md section 8).

The check never resolves a secret and never connects to the database, so it runs on a machine
where the production secrets are not set. ``python -m core.baseline docs/security.md`` rewrites
the generated section of docs/security.md from the shipped configs.
"""

from __future__ import annotations

import math
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import msgspec

from guichet.core.clock import Clock
from guichet.core.config import PURPOSES, CaisseConfig, load_config
from guichet.core.context import PluginContext
from guichet.core.database import Database
from guichet.core.plugins import PluginHost
from guichet.core.structs import Assurance, CodePolicy, PasswordRule, SettingsNote

# --- the baseline: guichet's defaults, which follow the standards -----------------------------------

CODE_MIN_COMBINATIONS = 10**6  # 6 decimal digits, about 20 bits (ASVS 6.5.4, SP 800-63B-4 §3.1.3.2)
CODE_MAX_LIFETIME_MINUTES = 10  # ASVS 6.5.5, SP 800-63B-4 §3.1.3.2
CODE_MAX_ATTEMPTS = 3
CODE_MAX_FAILURES_PER_DAY = 10
PASSWORD_MIN_LENGTH = 12  # guichet's default: 8 is only acceptable with a second factor
PASSWORD_ALONE_MIN_LENGTH = 15  # what SP 800-63B-4 §3.1.1.2 (SHOULD) and ASVS 6.2.1 recommend
SESSION_MAX_IDLE_MINUTES = 30  # guichet's; SP 800-63B-4 §2.2.3 allows up to 1 hour (24 hours overall) at AAL2
SESSION_MAX_ABSOLUTE_HOURS = 12
IDENTITY_MAX_ANSWERS = 3
# OWASP Password Storage Cheat Sheet: argon2id configurations of equal strength (memory KiB, passes), p=1
ARGON2_MINIMUMS = ((47104, 1), (19456, 2), (12288, 3), (9216, 4), (7168, 5))
LOGIN_PURPOSES = ("login",)  # a second factor; recovery and registration codes prove a channel, once

GENERATED_BEGIN = (
    "<!-- BEGIN generated: deviations. Written by `python -m core.baseline docs/security.md` "
    "from the shipped configs; tests/core/test_baseline.py fails when it is stale. "
    "Other sections of this file are written by hand: keep them outside these markers. -->"
)
GENERATED_END = "<!-- END generated: deviations -->"
SHIPPED_CONFIGS = ("config/demo.toml", "config/provence-azur.toml", "config/sud-aquitaine.toml")


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    """One effective value weaker than the baseline, the standard it falls short of, and what compensates."""

    key: str
    value: str
    standard: str
    compensation: str


class _Effective(msgspec.Struct, frozen=True, kw_only=True):
    policies: dict[str, CodePolicy]
    rules: tuple[PasswordRule, ...]
    question_kinds: tuple[str, ...]
    authenticators: tuple[tuple[str, Assurance], ...]  # the enabled plugins' (name, assurance), strongest first


# What the standards ask of the second factors (NIST SP 800-63B-4, final, July 2025; OWASP ASVS 5.0.0, May 2025)
PHISHING_RESISTANT_STANDARD = (
    "AAL2 verifiers SHALL offer at least one phishing-resistant authentication option (SP 800-63B-4 §2.2.2; "
    "what counts as one: §3.2.5)"
)
EMAIL_STANDARD = (
    "email SHALL NOT be used for out-of-band authentication (SP 800-63B-4 §3.1.3.1); "
    "email is no authentication mechanism at level 3 (ASVS 5.0 6.3.6)"
)
SMS_STANDARD = (
    "SMS is a restricted authenticator: an unrestricted alternative must be offered to everyone "
    "(SP 800-63B-4 §3.1.3.3, §3.2.9), a stronger one such as an authenticator app (ASVS 5.0 6.6.1)"
)


def assurance_summary(config: CaisseConfig) -> str:
    """The level a config reaches, in one line: what ``guichet config check`` prints as ``authentication.level``."""
    found = _effective(config)
    resistant = [name for name, a in found.authenticators if a.phishing_resistant]
    aal2 = [name for name, a in found.authenticators if a.aal >= 2]
    login = found.policies["login"].channels
    if not login:
        codes = ""
    elif not aal2:
        codes = f"; codes by {', '.join(login)} as the second factor"
    elif config.authentication.code_fallback:
        codes = f"; codes by {', '.join(login)} as a fallback"
    else:
        codes = f"; codes by {', '.join(login)} only for whoever holds nothing else"
    if resistant:
        return f"AAL2 with a phishing-resistant option ({', '.join(resistant)}){codes}"
    if aal2:
        return f"AAL2 without a phishing-resistant option ({', '.join(aal2)}){codes}"
    return "AAL1 for whoever has only an email (email codes are no AAL2 factor)" + codes


def _host(config: CaisseConfig) -> PluginHost:
    """A plugin host that resolves no secret and connects nowhere."""
    # A placeholder that is never opened: the hooks called here read no data, and building the config's
    # own PostgreSQL engine would already connect (piccolo checks the server version) and need the password.
    database = Database(f"sqlite:///{Path(tempfile.gettempdir()) / 'guichet-config-check.sqlite'}")
    return PluginHost(config, PluginContext(config=config, database=database, clock=Clock()), channels=False)


def settings_notes(config: CaisseConfig) -> list[SettingsNote]:
    """What the enabled plugins say of their settings (a refused one stops ``guichet serve``)."""
    return _host(config).settings_notes()


def _effective(config: CaisseConfig) -> _Effective:
    """The plugins' answers after preset and TOML, from a host that resolves no secret and connects nowhere."""
    host = _host(config)
    kinds: list[str] = []
    for status in host.statuses():
        if status.third_party:
            continue
        for question in host.identity_questions(status, None):
            if question.kind not in kinds:
                kinds.append(question.kind)
    return _Effective(
        policies={p: host.code_policy(p) for p in PURPOSES},
        rules=tuple(host.password_rules()),
        question_kinds=tuple(kinds),
        authenticators=tuple((a.name, a.assurance) for a in host.authenticators()),
    )


def _rule_value(rules: Sequence[PasswordRule], kind: str) -> int | None:
    return next((rule.value for rule in rules if rule.kind == kind), None)


def _has_rule(rules: Sequence[PasswordRule], kind: str) -> bool:
    return any(rule.kind == kind for rule in rules)


def _bits(policy: CodePolicy) -> float:
    return policy.length * math.log2(max(len(set(policy.alphabet)), 2))


def _code_value(policy: CodePolicy) -> str:
    if set(policy.alphabet) <= set("0123456789"):
        return f"{policy.length} digits (about {_bits(policy):.0f} bits)"
    return f"{policy.length} characters of {len(set(policy.alphabet))} (about {_bits(policy):.0f} bits)"


def effective_values(config: CaisseConfig) -> list[tuple[str, str]]:
    """Every security-relevant value as guichet will apply it, after the caisse preset and the TOML."""
    found = _effective(config)
    values: list[tuple[str, str]] = [("plugins.enabled", ", ".join(config.plugins.enabled) or "(none)")]
    for purpose, policy in found.policies.items():
        values += [
            (f"codes.{purpose}.length", _code_value(policy)),
            (f"codes.{purpose}.lifetime_minutes", str(policy.lifetime_minutes)),
            (f"codes.{purpose}.max_attempts", str(policy.max_attempts)),
            (f"codes.{purpose}.resend_cooldown_seconds", str(policy.resend_cooldown_seconds)),
            (f"codes.{purpose}.channels", ", ".join(policy.channels)),
        ]
    values.append(("codes.failures_per_day", str(config.codes.failures_per_day)))
    rules = found.rules
    values += [
        ("passwords.min_length", str(_rule_value(rules, "min_length") or "(none)")),
        ("passwords.max_length", str(_rule_value(rules, "max_length") or "(none)")),
        ("passwords.classes", "required" if _has_rule(rules, "classes") else "not required"),
        ("passwords.blocklist", "on" if _has_rule(rules, "blocklist") else "off"),
        ("passwords.context_words", "on" if _has_rule(rules, "context") else "off"),
        ("passwords.argon2", _argon2_value(config)),
    ]
    values += [
        (f"passwords.temporary_lifetime_hours.{channel}", str(hours))
        for channel, hours in sorted(config.passwords.temporary_lifetime_hours.items())
    ]
    security = config.security
    values += [
        ("sessions.idle_minutes", str(config.sessions.idle_minutes)),
        ("sessions.absolute_hours", str(config.sessions.absolute_hours)),
        ("sessions.store", config.sessions.store),
        ("security.trusted_browser_days", str(security.trusted_browser_days)),
        ("security.identity_answers_per_identifier", str(security.identity_answers_per_identifier)),
        ("security.login_failures_before_delay", str(security.login_failures_before_delay)),
        ("security.max_delay_seconds", str(security.max_delay_seconds)),
        ("security.per_client_attempts_per_hour", str(security.per_client_attempts_per_hour)),
        ("security.sms_per_hour", str(security.sms_per_hour)),
        ("security.letters_per_hour", str(security.letters_per_hour)),
        ("rate_limits.store", config.rate_limits.store),
        ("registration.identity_questions", ", ".join(found.question_kinds) or "(none)"),
        ("authentication.authenticators", ", ".join(name for name, _ in found.authenticators) or "(codes only)"),
        ("authentication.level", assurance_summary(config)),
        ("authentication.passwordless", "on" if config.authentication.passwordless else "off"),
        ("authentication.code_fallback", "on" if config.authentication.code_fallback else "off"),
        (
            "authentication.phishing_resistant_statuses",
            ", ".join(config.authentication.phishing_resistant_statuses) or "(none)",
        ),
    ]
    return values


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _argon2_value(config: CaisseConfig) -> str:
    a = config.passwords.argon2
    return f"argon2id m={a.memory_kib} KiB, t={a.time_cost}, p={a.parallelism}"


def _argon2_ok(memory_kib: int, time_cost: int) -> bool:
    return any(memory_kib >= m and time_cost >= t for m, t in ARGON2_MINIMUMS)


def _second_factor_findings(config: CaisseConfig, found: _Effective, policy: CodePolicy) -> list[Finding]:
    """The login's second factors against SP 800-63B-4 and ASVS 5.0: while codes by email and SMS are all
    a caisse offers, the rules they break; once a phishing-resistant option is enabled, only the
    fallback to email codes the caisse keeps (``authentication.code_fallback``)."""
    resistant = [name for name, a in found.authenticators if a.phishing_resistant]
    channels = ", ".join(policy.channels)
    if not resistant:
        return [
            Finding(
                key="plugins.enabled",
                value=f"second factors: codes by {channels}" + "".join(f", {name}" for name, _ in found.authenticators),
                standard=PHISHING_RESISTANT_STANDARD,
                compensation="Enable authenticator_passkey (and authenticator_totp, authenticator_recovery) to meet it",
            ),
            Finding(
                key="codes.login.channels",
                value=channels,
                standard="; ".join(
                    ([EMAIL_STANDARD] if "email" in policy.channels else [])
                    + ([SMS_STANDARD] if "sms" in policy.channels else [])
                )
                or "a one-time code sent out of band",
                compensation=_sentence(
                    "; ".join(
                        (["codes by email only to an address proven with a code"] if "email" in policy.channels else [])
                        + (["SMS only to a number already verified"] if "sms" in policy.channels else [])
                        + ["a notice on every change of email, mobile or password"]
                    )
                ),
            ),
        ]
    if "email" in policy.channels and config.authentication.code_fallback:
        return [
            Finding(
                key="authentication.code_fallback",
                value=f"codes by {channels} stay offered beside {', '.join(resistant)}",
                standard=EMAIL_STANDARD,
                compensation="The login offers the strongest authenticator a person holds first; email codes go "
                "only to a proven address; `code_fallback = false` keeps them from whoever holds another",
            )
        ]
    return []


def weaker_than_baseline(config: CaisseConfig) -> list[Finding]:
    """Every effective value weaker than OWASP ASVS 5.0 L2 / NIST SP 800-63B, with its compensating controls."""
    found = _effective(config)
    failures = config.codes.failures_per_day
    findings: list[Finding] = []
    for purpose, policy in found.policies.items():
        tries = (
            f"at most {policy.max_attempts} tries per code and {failures} failures per account per 24 h, "
            "and a new code does not reset the count"
        )
        if len(set(policy.alphabet)) ** policy.length < CODE_MIN_COMBINATIONS:
            findings.append(
                Finding(
                    key=f"codes.{purpose}.length",
                    value=_code_value(policy),
                    standard="at least 6 digits, about 20 bits (ASVS 6.5.4, SP 800-63B-4 §3.1.3.2)",
                    compensation=_sentence(tries),
                )
            )
        if policy.lifetime_minutes > CODE_MAX_LIFETIME_MINUTES:
            findings.append(
                Finding(
                    key=f"codes.{purpose}.lifetime_minutes",
                    value=f"{policy.lifetime_minutes} minutes",
                    standard=f"at most {CODE_MAX_LIFETIME_MINUTES} minutes (ASVS 6.5.5)",
                    compensation="Single use, superseded by a resend, bound to the flow and the browser that asked for it",
                )
            )
        if policy.max_attempts > CODE_MAX_ATTEMPTS:
            findings.append(
                Finding(
                    key=f"codes.{purpose}.max_attempts",
                    value=f"{policy.max_attempts} tries per code",
                    standard=f"at most {CODE_MAX_ATTEMPTS} tries per code (guichet baseline; SP 800-63B-4 §3.2.2 rate limiting)",
                    compensation=f"At most {failures} failures per account per 24 h across codes",
                )
            )
        if purpose in LOGIN_PURPOSES and policy.channels:
            findings += _second_factor_findings(config, found, policy)
    if failures > CODE_MAX_FAILURES_PER_DAY:
        findings.append(
            Finding(
                key="codes.failures_per_day",
                value=f"{failures} failures per account per 24 h",
                standard=f"at most {CODE_MAX_FAILURES_PER_DAY} (guichet baseline; SP 800-63B-4 §3.2.2 rate limiting)",
                compensation="At most 3 tries per code; progressive delays per client address",
            )
        )

    rules = found.rules
    if _has_rule(rules, "classes"):
        findings.append(
            Finding(
                key="passwords.classes",
                value="digits, upper case, lower case and special characters required",
                standard="no composition rules (ASVS 6.2.5, SP 800-63B-4 §3.1.1.2)",
                compensation="The blocklist and the person's own words (name, NIR, birth date, caisse) still apply "
                "on top of the classes",
            )
        )
    min_length = _rule_value(rules, "min_length") or 0
    if min_length < PASSWORD_MIN_LENGTH:
        findings.append(
            Finding(
                key="passwords.min_length",
                value=f"{min_length} characters",
                standard=f"at least 8, {PASSWORD_ALONE_MIN_LENGTH} recommended (SP 800-63B-4 §3.1.1.2, ASVS 6.2.1); "
                f"guichet's default is {PASSWORD_MIN_LENGTH}",
                compensation="A second factor on every login: a code, or a trusted browser's signed, revocable "
                "device token",
            )
        )
    argon2 = config.passwords.argon2
    if not _argon2_ok(argon2.memory_kib, argon2.time_cost):
        findings.append(
            Finding(
                key="passwords.argon2",
                value=_argon2_value(config),
                standard="argon2id m=19456 KiB t=2 p=1 or an equivalent (OWASP Password Storage Cheat Sheet, ASVS 11.4.2)",
                compensation="None for offline guessing after a database leak; online guessing is rate limited",
            )
        )
    if found.question_kinds:
        findings.append(
            Finding(
                key="registration.identity_questions",
                value=", ".join(found.question_kinds),
                standard="no knowledge-based questions as an authenticator (ASVS 6.4.2; not a permitted authenticator "
                "type, SP 800-63B-4 §2.1.1)",
                compensation=f"Asked once, at enrolment only; at most {config.security.identity_answers_per_identifier} "
                "answers per identifier; a wrong or missing answer sends the password by post to the "
                "address the caisse already knows",
            )
        )
    if config.security.identity_answers_per_identifier > IDENTITY_MAX_ANSWERS:
        findings.append(
            Finding(
                key="security.identity_answers_per_identifier",
                value=f"{config.security.identity_answers_per_identifier} answers",
                standard=f"at most {IDENTITY_MAX_ANSWERS} (guichet baseline; ASVS 6.3.1 anti-automation)",
                compensation="The postal fallback: a right answer is never needed to register",
            )
        )
    findings.append(
        Finding(
            key="security.trusted_browser_days",
            value=f"{config.security.trusted_browser_days} days; a trusted browser skips the login code",
            standard="a remembered device must not replace an authentication factor (SP 800-63B-4 §5.1)",
            compensation="It skips the code step only, never the password; listed and revocable in Mon compte; "
            f"revoked on every credential change; expires after {config.security.trusted_browser_days} days",
        )
    )
    if config.sessions.idle_minutes > SESSION_MAX_IDLE_MINUTES:
        findings.append(
            Finding(
                key="sessions.idle_minutes",
                value=f"{config.sessions.idle_minutes} minutes",
                standard=f"at most {SESSION_MAX_IDLE_MINUTES} minutes idle (guichet baseline; ASVS 7.3.1; "
                "SP 800-63B-4 §2.2.3: at most 1 hour at AAL2)",
                compensation="Sessions end at every credential change and at the absolute timeout",
            )
        )
    if config.sessions.absolute_hours > SESSION_MAX_ABSOLUTE_HOURS:
        findings.append(
            Finding(
                key="sessions.absolute_hours",
                value=f"{config.sessions.absolute_hours} hours",
                standard=f"at most {SESSION_MAX_ABSOLUTE_HOURS} hours (guichet baseline; ASVS 7.3.2; "
                "SP 800-63B-4 §2.2.3: at most 24 hours at AAL2)",
                compensation="Sessions end at every credential change and after the idle timeout",
            )
        )
    return findings


# --- docs/security.md ---------------------------------------------------------------------------------


def render_deviations(configs: Sequence[tuple[str, CaisseConfig]]) -> str:
    """The generated section of docs/security.md: the findings of each config, as the check prints them."""
    lines = [
        "## Deviations a caisse config can choose",
        "",
        "guichet's defaults follow OWASP ASVS 5.0 level 2 and NIST SP 800-63B. A caisse may keep the MSA's "
        "documented behaviour instead; `guichet config check <file>` lists each value weaker than the "
        "baseline, the standard, and the compensating controls guichet applies. For the shipped configs:",
    ]
    for name, config in configs:
        findings = weaker_than_baseline(config)
        lines += ["", f"### `{name}` ({config.caisse.name}): {len(findings)} finding(s)", ""]
        lines += ["| key | value | standard | compensating controls |", "| --- | --- | --- | --- |"]
        lines += [f"| `{f.key}` | {f.value} | {f.standard} | {f.compensation} |".replace("\n", " ") for f in findings]
    return "\n".join(lines)


def update_security_doc(path: Path, configs: Sequence[tuple[str, CaisseConfig]]) -> None:
    """Replace the generated section of ``path`` (or append it), leaving the hand-written sections alone."""
    section = f"{GENERATED_BEGIN}\n{render_deviations(configs)}\n{GENERATED_END}"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Security\n"
    pattern = re.compile(re.escape(GENERATED_BEGIN) + r".*?" + re.escape(GENERATED_END), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _match: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text, encoding="utf-8")


def shipped_configs(root: Path) -> list[tuple[str, CaisseConfig]]:
    return [(name, load_config(root / name)) for name in SHIPPED_CONFIGS]


if __name__ == "__main__":
    project = Path(__file__).resolve().parent.parent
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else project / "docs" / "security.md"
    update_security_doc(target, shipped_configs(project))
    print(f"updated {target}")
