"""The packaged test kit (guichet.testing): registered with pytest on install, free to load, usable without
aiosmtpd, and enough for a plugin's own test suite outside this tree."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_the_pytest_plugin_is_registered_by_its_entry_point(pytestconfig: pytest.Config) -> None:
    plugin = pytestconfig.pluginmanager.get_plugin("guichet")
    assert plugin is not None and plugin.__name__ == "guichet.testing.pytest_plugin"


def test_loading_the_kit_imports_nothing_until_used(tmp_path: Path) -> None:
    """pytest loads the plugin in every run where guichet is installed: it must cost nothing there."""
    result = _python("""
        import sys
        import guichet.testing, guichet.testing.pytest_plugin
        print(sorted(m for m in sys.modules if m.startswith(("guichet.", "aiosmtpd", "msgspec", "piccolo"))))
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['guichet.testing', 'guichet.testing.pytest_plugin']"


def test_the_kit_works_without_aiosmtpd(tmp_path: Path) -> None:
    """aiosmtpd is a test extra: without it, everything but the SMTP sink works, and the sink says what to install."""
    result = _python("""
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
    """, tmp_path)
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
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "asyncio_mode=auto",
                             "-W", "error::guichet.core.GuichetDeprecationWarning", "test_pigeon.py"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout
