"""The packaged test kit (guichet.testing): registered with pytest on install, free to load, usable without
aiosmtpd, and enough for a plugin's own test suite outside this tree."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from guichet.core import Payment, Record
from guichet.testing import assert_plugin_conforms

ROOT = Path(__file__).resolve().parent.parent


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_the_pytest_plugin_is_registered_by_its_entry_point(pytestconfig: pytest.Config) -> None:
    plugin = pytestconfig.pluginmanager.get_plugin("guichet")
    assert plugin is not None and plugin.__name__ == "guichet.testing.pytest_plugin"


def test_loading_the_kit_imports_nothing_until_used(tmp_path: Path) -> None:
    """pytest loads the plugin in every run where guichet is installed: it must cost nothing there."""
    result = _python(
        """
        import sys
        import guichet.testing, guichet.testing.pytest_plugin
        print(sorted(m for m in sys.modules if m.startswith(("guichet.", "aiosmtpd", "msgspec", "piccolo"))))
    """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['guichet.testing', 'guichet.testing.pytest_plugin']"


def test_the_kit_works_without_aiosmtpd(tmp_path: Path) -> None:
    """aiosmtpd is a test extra: without it, everything but the SMTP sink works, and the sink says what to install."""
    result = _python(
        """
        import sys
        sys.modules["aiosmtpd"] = None  # not installed
        from guichet.testing import HttpSink, SmtpSink, assert_plugin_conforms
        assert assert_plugin_conforms("statuses_msa").hooks == ("guichet_statuses",)
        with HttpSink() as sink:
            pass
        try:
            SmtpSink()
        except ImportError as exc:
            print(exc)
    """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'SmtpSink needs aiosmtpd, a test dependency: pip install "guichet-auth[testing]"'


OUTSIDE = '''
"""A channel author's own tests, in a project of their own: only the packaged kit."""
import aiosmtplib
import httpx

from guichet.core import DeliveryError, Message, PluginContext, Recipient
from guichet.testing import assert_channel_conforms, assert_plugin_conforms


class Pigeon:
    name = "pigeon"
    label_fr = "par pigeon voyageur"
    reaches = "email"

    def __init__(self, url: str, context: PluginContext) -> None:
        self.url = url
        self.context = context

    async def send(self, message: Message) -> None:
        if not message.recipient.email:
            raise DeliveryError("no email address", permanent=True)
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.post(self.url, json={"to": message.recipient.email, "id": message.id})
        if response.status_code >= 300:
            raise DeliveryError(f"loft answered {response.status_code}", permanent=response.status_code < 500)


async def test_the_channel_conforms(guichet_http_sink, guichet_context):
    context = guichet_context('[plugins.settings.pigeon]\\nloft = "Pau"\\n')
    assert context.config.plugin_settings("pigeon") == {"loft": "Pau"}
    sent = await assert_channel_conforms(Pigeon(guichet_http_sink.url, context),
                                         Recipient(name="Marie", email="marie@exemple.fr"))
    assert [r.json()["id"] for r in guichet_http_sink.requests] == [m.id for m in sent]


def test_the_clock_moves_when_told(guichet_clock):
    before = guichet_clock.now()
    guichet_clock.advance(minutes=10)
    assert (guichet_clock.now() - before).total_seconds() == 600


def test_a_host_with_a_plugin_of_my_own(guichet_plugin_site, guichet_host):
    guichet_plugin_site.add_module("marins", """
        from guichet.core import Status, hookimpl

        @hookimpl
        def guichet_statuses() -> list[Status]:
            return [Status(code="marin", label_fr="Marin pêcheur")]
    """)
    assert assert_plugin_conforms("marins").hooks == ("guichet_statuses",)
    host = guichet_host(enabled=["statuses_msa", "marins"])
    assert host.status("marin").label_fr == "Marin pêcheur" and host.status("particulier") is not None


async def test_the_smtp_sink_keeps_what_it_gets(guichet_smtp_sink):
    await aiosmtplib.send("Subject: essai\\r\\n\\r\\nbonjour\\r\\n", sender="a@test.invalid",
                          recipients=["b@test.invalid"], hostname="127.0.0.1", port=guichet_smtp_sink.port)
    [message] = guichet_smtp_sink.messages
    assert message.rcpt_tos == ["b@test.invalid"] and b"bonjour" in message.content
'''


def test_a_plugin_project_of_its_own_runs_its_tests_on_the_kit(tmp_path: Path) -> None:
    """Outside this tree (no conftest, no ini file): the fixtures come from the installed plugin."""
    (tmp_path / "test_pigeon.py").write_text(OUTSIDE)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "asyncio_mode=auto",
            "-W",
            "error::guichet.core.GuichetDeprecationWarning",
            "test_pigeon.py",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout


async def test_a_registry_of_fixed_records_for_an_identity_question(
    guichet_plugin_site: Any, guichet_host: Any
) -> None:
    marie = Record(
        identifier_kind="nir",
        identifier="1850578006084",
        last_name="DUPONT",
        first_name="Marie",
        birth_date=dt.date(1985, 5, 1),
        payments=(Payment(kind="benefit", date=dt.date(2026, 11, 5), amount=Decimal("187.45")),),
        facts={"note": ["a", 1]},
    )
    package = guichet_plugin_site.add_registry("fixed_registry", [marie])
    assert package.startswith("guichet_test_fixed_registry_")
    assert assert_plugin_conforms("fixed_registry").hooks == ("guichet_registry_lookup",)
    host = guichet_host(enabled=["statuses_msa", "fixed_registry"])
    assert await host.registry_lookup("nir", "1850578006084") == marie, "the record comes back whole"
    assert await host.registry_lookup("nir", "2920375112233") is None
    assert await host.registry_lookup("siret", "1850578006084") is None


def test_the_examples_run_their_own_suites_outside_this_tree(tmp_path: Path) -> None:
    """Each example's tests/, copied where no conftest of guichet's and no ini file of this tree is
    seen, pass on the installed kit alone, as in the example's own CI."""
    for example in ("guichet-webhook-channel", "guichet-prime-activite"):
        copy = tmp_path / example
        shutil.copytree(ROOT / "examples" / example / "tests", copy / "tests")
        shutil.copy(ROOT / "examples" / example / "pyproject.toml", copy / "pyproject.toml")
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
            cwd=copy,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout
