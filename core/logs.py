"""Structured logs: one JSON object per line, with the request id, and no secret.

``configure_logging`` installs the formatter on the root logger (uvicorn's loggers propagate to
it), once per process: ``guichet serve`` calls it before uvicorn starts and again in every worker.

Every request gets an id (the ``X-Request-Id`` the reverse proxy sent when it is well formed,
else a new one); it is in a context variable while the request runs, so every line logged for
that request carries it, and it is sent back in the ``X-Request-Id`` response header.

What is logged never holds a secret: guichet's own messages carry no password, code or token,
and as a second line of defence ``scrub`` masks what looks like one in any message (a NIR, an
email address, ``password=…``, ``code=…``, ``token=…``, a bearer token, a URL's password).
"""

from __future__ import annotations

import contextvars
import datetime as dt
import itertools
import json
import logging
import os
import re
import secrets
import sys
from typing import Any, Literal

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("guichet_request_id", default="")

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")


_ID_PREFIX = secrets.token_hex(4)  # per process: ids stay unique across workers and restarts
_id_counter = itertools.count(1)


def new_request_id() -> str:
    """16 hex digits: this process's random prefix and a counter (no system call per request)."""
    return f"{_ID_PREFIX}{next(_id_counter) & 0xFFFFFFFF:08x}"


def accepted_request_id(value: str | None) -> str:
    """The proxy's id when it is well formed (no log injection through it), else a new one."""
    if value and _REQUEST_ID_RE.match(value):
        return value
    return new_request_id()


# --- scrubbing ------------------------------------------------------------------------------------

_SECRET_KEYS = (
    r"password|passwd|mot_de_passe|new_password|confirm_password|code|otp|token|secret|secret_key|"
    r"csrf_token|api[_-]?key|authorization|cookie|set-cookie|sid"
)
_SCRUBBERS: tuple[tuple[re.Pattern[str], str], ...] = (
    # key=value, and "key": "value" as in JSON, whose value is a secret
    (re.compile(rf"(?i)\b({_SECRET_KEYS})(\s*=\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&\"]+)"), r"\1\2***"),
    (re.compile(rf"(?i)(\"(?:{_SECRET_KEYS})\"\s*:\s*)(\"[^\"]*\"|[^\s,}}]+)"), r'\1"***"'),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}"), r"\1 ***"),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/\s@]+:)[^@\s]+@"), r"\1***@"),  # scheme://user:password@
    # NIRs (13 or 15 characters, Corsica's 2A/2B) and SIRETs: the identifier of a person or company
    (
        re.compile(
            r"(?<![0-9A-Za-z])[1-8][0-9]{2}(?:0[1-9]|1[0-2]|[2-9][0-9])(?:[0-9]{2}|2[ABab])[0-9]{6}(?:[0-9]{2})?"
            r"(?![0-9A-Za-z])"
        ),
        "<nir>",
    ),
    (re.compile(r"(?<![0-9])[0-9]{14}(?![0-9])"), "<siret>"),
    (re.compile(r"[A-Za-z0-9._%+-]+@([A-Za-z0-9.-]+\.[A-Za-z]{2,})"), r"***@\1"),
)


def scrub(text: str) -> str:
    """Mask what looks like a secret or an identifier in a log message."""
    for pattern, replacement in _SCRUBBERS:
        text = pattern.sub(replacement, text)
    return text


# --- formatting -----------------------------------------------------------------------------------

_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "request_id", "pid", ...extra}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        entry["pid"] = record.process
        for key, value in record.__dict__.items():
            if key not in _RESERVED and key != "request_id" and not key.startswith("_"):
                entry[key] = scrub(value) if isinstance(value, str) else value
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
            entry["traceback"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The same content for a terminal: time, level, logger, request id, message."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        line = super().format(record)
        head, _, message = line.partition(f" {record.name} ")
        # only the message is scrubbed: a proxy's all-digit request id is not an identifier to mask
        return f"{head} {record.name}{f' [{request_id}]' if request_id else ''} {scrub(message)}"


_configured: tuple[str, str] | None = None


# Loggers that speak at the configured level; every other library logs only warnings and errors: their
# info and debug lines are out of reach of guichet's care (a PDF library lists the glyphs a letter draws,
# that is a temporary password's character set; a database driver prints query parameters).
OWN_LOGGERS = ("guichet", "uvicorn", "uvicorn.error", "uvicorn.access")


def configure_logging(fmt: Literal["json", "text"] = "json", level: str = "info") -> None:
    """One handler on the root logger, to stderr; uvicorn's loggers propagate to it. The root logger (so
    every third-party library) stays at WARNING; guichet's and uvicorn's own loggers follow ``level``."""
    global _configured
    wanted = (fmt, level)
    if _configured == wanted:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    own_level = logging.getLevelName(level.upper())
    root.setLevel(max(logging.WARNING, own_level))
    for name in OWN_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(own_level)
        if name != "guichet":
            logger.handlers = []
            logger.propagate = True
    _configured = wanted


def uvicorn_log_config(fmt: Literal["json", "text"] = "json", level: str = "info") -> dict[str, Any]:
    """A logging config for uvicorn.run: uvicorn's own lines in the same format as guichet's."""
    formatter = (
        {"()": "guichet.core.logs.JsonFormatter"} if fmt == "json" else {"()": "guichet.core.logs.TextFormatter"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"guichet": formatter},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "guichet", "stream": "ext://sys.stderr"}
        },
        "root": {"handlers": ["stderr"], "level": max(logging.WARNING, logging.getLevelName(level.upper()))},
        "loggers": {name: {"handlers": [], "propagate": True, "level": level.upper()} for name in OWN_LOGGERS},
    }


def log_format_from_environment(default: str = "json") -> Literal["json", "text"]:
    value = os.environ.get("GUICHET_LOG_FORMAT", default)
    return "text" if value == "text" else "json"
