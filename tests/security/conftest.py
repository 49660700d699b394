"""The security suite's plumbing: every log record of the test session, and every secret it saw.

From the moment this file is loaded until the end of the run:

- every ``logging`` record created by any logger is kept, formatted (message and traceback),
  with the root logger held at DEBUG (Litestar's logging set-up puts it back to INFO; we undo it);
- every secret the code under test draws is remembered: the codes and passwords sealed into the
  outbox (``Keys.seal``), every token from ``secrets.token_urlsafe`` of 16 bytes or more (session,
  flow, trusted-browser and CSRF-seed values), the full NIRs of ``DEMO_PERSONS``, and whatever a
  test passes to :func:`remember` (its own passwords and identifiers).

Each security test then fails if one of those secrets appears in a log line written during it
(the autouse fixture below), tests/security/test_zz_log_scan.py checks the whole log so far, and
``pytest_sessionfinish`` fails the run if any line of the whole test session holds a secret.
"""

from __future__ import annotations

import logging
import logging.config
import secrets as _secrets
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from guichet.core.keys import Keys
from guichet.plugins.registry_tables.importer import DEMO_PERSONS
from tests.security.support import LOG, SECRETS, application_lines, find_leaks, remember

ROOT_CONFTEST = Path(__file__).resolve().parent.parent / "conftest.py"


# --- every record, at DEBUG -----------------------------------------------------------------------

_previous_factory = logging.getLogRecordFactory()


def _record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _previous_factory(*args, **kwargs)
    try:
        text = record.getMessage()
    except Exception:  # a bad format string: keep what there is
        text = f"{record.msg!r} {record.args!r}"
    if record.exc_info and record.exc_info[1] is not None:
        text += "\n" + "".join(traceback.format_exception(*record.exc_info))
    if record.stack_info:
        text += "\n" + record.stack_info
    LOG.append((record.name, record.levelno, text))
    return record


logging.setLogRecordFactory(_record_factory)
logging.getLogger().setLevel(logging.DEBUG)
_dict_config = logging.config.dictConfig


def _dict_config_at_debug(config: dict[str, Any]) -> None:
    _dict_config(config)
    logging.getLogger().setLevel(logging.DEBUG)


logging.config.dictConfig = _dict_config_at_debug  # type: ignore[assignment]


# --- every secret ---------------------------------------------------------------------------------

_seal = Keys.seal


def _remembering_seal(self: Keys, plaintext: bytes, purpose: str = "outbox") -> str:
    try:
        content = msgspec.json.decode(plaintext)
        payload = content.get("payload", {}) if isinstance(content, dict) else {}
        remember(*(str(payload[k]) for k in ("code", "password") if payload.get(k)))
    except msgspec.DecodeError:
        pass
    return _seal(self, plaintext, purpose)


Keys.seal = _remembering_seal  # type: ignore[method-assign]
_token_urlsafe = _secrets.token_urlsafe


def _remembering_token_urlsafe(nbytes: int | None = None) -> str:
    token = _token_urlsafe(nbytes)
    if nbytes is None or nbytes >= 16:
        remember(token)
    return token


_secrets.token_urlsafe = _remembering_token_urlsafe  # type: ignore[assignment]

for _person in DEMO_PERSONS.values():
    if _person.identifier_kind == "nir":
        remember(_person.identifier, _person.nir_with_key)


@pytest.fixture(autouse=True)
def no_secret_logged() -> Iterator[None]:
    """Every security test: no log line written during it holds a code, password, token or full NIR."""
    logging.getLogger().setLevel(logging.DEBUG)
    start = len(LOG)
    yield
    leaks = find_leaks(application_lines(LOG[start:]), SECRETS)
    assert not leaks, "secrets reached the log:\n" + "\n".join(leaks)


def pytest_plugin_registered(plugin: Any, manager: Any) -> None:
    # pytest dropped the top conftest from sys.modules to load this one under the same name;
    # put it back for the modules that do `from conftest import BASE_CONFIG`
    if getattr(plugin, "__file__", None) == __file__:
        top = manager.get_plugin(str(ROOT_CONFTEST))
        if top is not None:
            sys.modules["conftest"] = top


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The whole run's log, scanned once more: a secret anywhere fails the run."""
    leaks = find_leaks(application_lines(LOG), SECRETS)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            f"log scan: {len(LOG)} log records checked against {len(SECRETS)} secrets, {len(leaks)} leak(s)"
        )
    if leaks:
        if reporter is not None:
            for leak in leaks[:50]:
                reporter.write_line("  " + leak, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
