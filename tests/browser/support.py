"""What the browser tests, the page-weight bench and the screenshot script share.

A real server (``guichet serve``, uvicorn, the outbox worker inside) on a caisse config derived from
one of config/*.toml, the demo mailbox read back the way a person reads their email, fictitious
people from the demo registry, and Playwright helpers (axe-core, console, focus).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "config"
CHROMIUM = os.environ.get("GUICHET_CHROMIUM", "/usr/bin/chromium")  # Debian's; Playwright cannot download one here
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-extensions",
]
DEMO_SEED = 7
DEMO_COUNT = 900  # enough people for every browser test on one server (test_citizen alone takes 48)
SECRET = "browser-tests-only-secret-key-0123456789abcdef"


# --- configs: a caisse's own values, with SQLite, demo sinks and tmp paths -----------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def toml_dumps(table: dict[str, Any], prefix: str = "") -> str:
    """A small TOML writer: scalars and arrays in place, dicts as [tables] (inline when in arrays)."""
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    out = []
    if lines:
        out.append((f"[{prefix}]\n" if prefix else "") + "\n".join(lines) + "\n")
    for key, value in table.items():
        if isinstance(value, dict):
            name = f"{prefix}.{_toml_key(key)}" if prefix else _toml_key(key)
            if all(not isinstance(v, dict) for v in value.values()) and not value:
                out.append(f"[{name}]\n")
            out.append(toml_dumps(value, name))
    return "\n".join(part for part in out if part)


def _merge(table: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(table.get(key), dict):
            _merge(table[key], value)
        else:
            table[key] = value


def derive_config(
    source: Path,
    workdir: Path,
    *,
    codes: dict[str, dict[str, Any]] | None = None,
    database_url: str | None = None,
    plugins: tuple[str, ...] = (),
    extra: dict[str, Any] | None = None,
    citizen: dict[str, Any] | None = None,
) -> Path:
    """A copy of ``source`` that runs here: SQLite, demo mode, demo mailbox, literal secret, tmp paths.

    The caisse's own values stay: [caisse], enabled plugins and presets, [codes.*], passwords, the
    trusted-browser lifetime. Only what points outside this machine is replaced; ``codes`` merges
    extra code-policy keys (the tests shorten the demo's resend cooldown to see a real resend).
    ``database_url`` replaces the SQLite file (a PostgreSQL database of the test's own); ``plugins``
    are enabled after the config's own (installed plugins, such as the examples), and ``extra`` is
    merged in last, table by table (their settings, the caisse's choices that name them).
    """
    table = tomllib.loads(source.read_text(encoding="utf-8"))
    for purpose, keys in (codes or {}).items():
        table.setdefault("codes", {}).setdefault(purpose, {}).update(keys)
    if citizen:
        table.setdefault("citizen", {}).update(citizen)
    workdir.mkdir(parents=True, exist_ok=True)
    security = dict(table.get("security", {}))
    security["secret_key"] = {"value": SECRET}
    security.pop("previous_secret_keys", None)
    table["security"] = security
    table["sessions"] = {**table.get("sessions", {}), "secure_cookies": False, "store": "database"}
    table["rate_limits"] = {"store": "database"}
    table.pop("redis", None)
    table["database"] = {"url": database_url or f"sqlite:///{workdir / 'guichet.sqlite'}"}
    table["server"] = {"mode": "demo", "spool_dir": str(workdir / "spool"), "outbox_worker": True}
    table["demo"] = {"mailbox": True, "mailbox_dir": str(workdir / "mailbox")}
    settings = table.setdefault("plugins", {}).setdefault("settings", {})
    email = settings.get("delivery_email", {})
    settings["delivery_email"] = {
        "host": "127.0.0.1",
        "port": 0,
        "security": "none",
        "sender": email.get("sender", "Mon espace privé <ne-pas-repondre@demo.invalid>"),
    }
    sms = settings.get("delivery_sms", {})
    settings["delivery_sms"] = {"url": "demo", "sender": sms.get("sender", "MSA")}
    settings["delivery_postal"] = {**settings.get("delivery_postal", {}), "spool_dir": str(workdir / "letters")}
    table["plugins"]["enabled"] = [*table["plugins"].get("enabled", []), *plugins]
    _merge(table, extra or {})
    target = workdir / f"{source.stem}.toml"
    target.write_text(
        f"# derived from {source.name} for a local run (tests/browser/support.py)\n\n" + toml_dumps(table),
        encoding="utf-8",
    )
    return target


# --- the server ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerError(RuntimeError):
    pass


@dataclass
class LiveServer:
    """``guichet serve`` in a subprocess on a derived config, with the demo registry loaded."""

    config_path: Path
    workdir: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    table: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mailbox(self) -> "Mailbox":
        return Mailbox(
            Path(self.table["demo"]["mailbox_dir"]),
            Path(self.table["plugins"]["settings"]["delivery_postal"]["spool_dir"]),
        )

    @property
    def caisse_name(self) -> str:
        return str(self.table["caisse"]["name"])

    def _guichet(self, *args: str, log: Any = None, wait: bool = True) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "guichet.cli", *args]
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log or subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        if wait:
            out, _ = process.communicate(timeout=120)
            if process.returncode != 0:
                raise ServerError(f"guichet {' '.join(args)} failed:\n{(out or b'').decode(errors='replace')}")
        return process

    def start(self) -> "LiveServer":
        self.table = tomllib.loads(self.config_path.read_text(encoding="utf-8"))
        config = str(self.config_path)
        self._guichet("registry", "demo", "--config", config, "--count", str(DEMO_COUNT), "--seed", str(DEMO_SEED))
        self.port = self.port or free_port()
        self.log_path = self.workdir / "server.log"
        log = self.log_path.open("wb")
        self.process = self._guichet(
            "serve", "--config", config, "--port", str(self.port), "--log-level", "warning", log=log, wait=False
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"the server stopped at start:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/sante/pret", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise ServerError(f"the server did not answer within 30 s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path and self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None


# the demo server's login code may be sent again after 3 s instead of 60, so a test sees a real resend
TEST_CODES = {"demo": {"login": {"resend_cooldown_seconds": 3}}}
# seed 000 (Provence Azur's guide) shows a "Tuto vidéo" link on the code page: that server has one, the others none
TEST_CITIZEN = {"provence-azur": {"code_help_url": "https://www.example.fr/tuto-video-connexion"}}


def start_server(
    config_name: str,
    workdir: Path,
    *,
    codes: dict[str, dict[str, Any]] | None = None,
    database_url: str | None = None,
    plugins: tuple[str, ...] = (),
    extra: dict[str, Any] | None = None,
    citizen: dict[str, Any] | None = None,
) -> LiveServer:
    """Derive config/<config_name>.toml into ``workdir`` (see ``derive_config``) and serve it."""
    path = derive_config(
        CONFIG_DIR / f"{config_name}.toml",
        workdir,
        codes=codes,
        database_url=database_url,
        plugins=plugins,
        extra=extra,
        citizen=citizen,
    )
    return LiveServer(config_path=path, workdir=workdir).start()


class PostgresDatabase:
    """A PostgreSQL database of its own for one live server, made on the server at ``admin_url`` (the
    tests' GUICHET_TEST_POSTGRES) and dropped by ``drop()``. asyncpg runs in a thread of its own: the
    sync Playwright API keeps an event loop in the test's thread."""

    def __init__(self, admin_url: str, prefix: str = "guichet_browser") -> None:
        import secrets

        self.admin_url = admin_url
        self.name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
        base, _, _db = admin_url.rpartition("/")
        self.url = f"{base}/{self.name}"
        self._admin(f'CREATE DATABASE "{self.name}"')

    def _admin(self, sql: str) -> None:
        import asyncio
        from concurrent.futures import ThreadPoolExecutor

        async def run() -> None:
            import asyncpg

            connection = await asyncpg.connect(self.admin_url, timeout=5)
            try:
                await connection.execute(sql)
            finally:
                await connection.close()

        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, run()).result(timeout=60)

    def drop(self) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


# --- the demo mailbox, read the way a person reads their email -------------------------------------------


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


@dataclass
class Mailbox:
    folder: Path
    spool: Path

    def items(self) -> list[Any]:
        from guichet.plugins.demo_mailbox.mailbox import list_mailbox

        return list_mailbox(self.folder, self.spool)

    def seen(self) -> set[str]:
        return {item.id for item in self.items()}

    def wait_for(
        self,
        match: Callable[[Any], bool],
        *,
        after: set[str] | None = None,
        timeout: float = 10.0,
        what: str = "a message",
    ) -> Any:
        """The newest message that ``match`` accepts and that was not in ``after``; polls (the outbox is async)."""
        deadline = time.monotonic() + timeout
        while True:
            for item in self.items():
                if (after is None or item.id not in after) and match(item):
                    return item
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} did not arrive within {timeout:.0f} s")
            time.sleep(0.1)

    def email_to(self, address: str, *, subject: str = "", after: set[str] | None = None) -> Any:
        return self.wait_for(
            lambda i: i.kind == "email" and address.lower() in i.to.lower() and subject.lower() in i.subject.lower(),
            after=after,
            what=f"an email to {address} ({subject})",
        )

    def sms_to(self, mobile: str, *, contains: str = "", after: set[str] | None = None) -> Any:
        wanted = _digits(mobile)[-9:]
        return self.wait_for(
            lambda i: i.kind == "sms" and _digits(i.to).endswith(wanted) and contains in i.text,
            after=after,
            what=f"an SMS to {mobile} ({contains})",
        )

    def letter_to(self, name: str, *, after: set[str] | None = None, subject: str = "") -> Any:
        return self.wait_for(
            lambda i: i.kind == "letter" and name.lower() in i.to.lower() and subject.lower() in i.subject.lower(),
            after=after,
            what=f"a letter to {name} ({subject})",
        )

    def letter_text(self, item: Any) -> str:
        from pypdf import PdfReader

        reader = PdfReader(str(self.spool / item.file))
        return "\n".join(page.extract_text() or "" for page in reader.pages)


def code_in(text: str, length: int | None = None) -> str:
    """The security code in a message's text: the run of digits standing alone."""
    digits = f"{{{length}}}" if length else "{4,12}"
    pattern = rf"(?<![\d/:,.])\d{digits}(?!\d|[/:,.]\d)"
    found = re.findall(pattern, text)
    assert found, f"no code in: {text!r}"
    return found[0]


def password_in(text: str) -> str:
    """The temporary password in an email (an indented line), an SMS or a letter ([[ ... ]])."""
    for pattern in (
        r"\[\[\s*(\S+)\s*\]\]",
        r"mot de passe temporaire est (\S+)",
        r"\n {4}(\S+)\s*\n",
        r"Votre mot de passe temporaire :\s*\n\s*(\S+)\s*\n",
    ):
        found = re.search(pattern, text)
        if found:
            return found.group(1)
    raise AssertionError(f"no temporary password in: {text!r}")


# --- people: the demo registry's fictitious persons, with their answers -------------------------------


@dataclass(frozen=True)
class Person:
    role: str  # particulier_vitale, particulier_paiement, exploitant
    status: str
    nir: str  # 13 characters
    nir_with_key: str
    last_name: str
    first_name: str
    birth_date: str  # JJ/MM/AAAA
    email: str
    mobile: str
    question: str  # vitale | payment
    answer: str

    @property
    def mobile_display(self) -> str:
        digits = _digits(self.mobile)
        national = "0" + digits[-9:]
        return " ".join(national[i : i + 2] for i in range(0, 10, 2))


def _amount_fr(amount: Decimal) -> str:
    whole, _, cents = f"{amount:.2f}".partition(".")
    return f"{int(whole):,}".replace(",", " ") + "," + cents


def demo_people() -> dict[str, list[Person]]:
    """The demo registry's persons by role, each with a right answer (the same seed as the server's)."""
    from guichet.core.clock import Clock
    from guichet.core.identifiers import nir_key
    from guichet.plugins.registry_tables.importer import DEMO_PERSONS, demo_rows

    today = Clock().today()
    persons, _companies, payments = demo_rows(count=DEMO_COUNT, seed=DEMO_SEED, today=today)
    by_id: dict[str, list[Any]] = {}
    for payment in payments:
        by_id.setdefault(payment.identifier, []).append(payment)
    fixed = {p.identifier for p in DEMO_PERSONS.values()}
    roles: dict[str, list[Person]] = {"particulier_vitale": [], "particulier_paiement": [], "exploitant": []}
    for row in persons:
        if not row.email or not row.mobile or not row.birth_date:
            continue
        paid = by_id.get(row.nir, [])
        kinds = {p.kind for p in paid}
        recent = [p for p in paid if (today - p.paid_on).days < 150]
        if row.vitale_serial and row.health_affiliated:
            role, status, question, answer = "particulier_vitale", "particulier", "vitale", row.vitale_serial
        elif kinds == {"benefit"} and recent:
            role, status, question, answer = (
                "particulier_paiement",
                "particulier",
                "payment",
                _amount_fr(recent[0].amount),
            )
        elif kinds == {"contributions_invoice"} and recent:
            role, status, question, answer = "exploitant", "exploitant", "payment", _amount_fr(recent[0].amount)
        else:
            continue
        person = Person(
            role=role,
            status=status,
            nir=row.nir,
            nir_with_key=row.nir + nir_key(row.nir),
            last_name=row.last_name,
            first_name=row.first_name,
            birth_date=row.birth_date.strftime("%d/%m/%Y"),
            email=row.email,
            mobile=row.mobile,
            question=question,
            answer=answer,
        )
        # the fixed demo holders first: the screenshots show them
        if row.nir in fixed:
            roles[role].insert(0, person)
        else:
            roles[role].append(person)
    return roles


class People:
    """Hands out each fictitious person once per server, so every test starts from a new account."""

    def __init__(self) -> None:
        self._pool = demo_people()
        self._next = {role: 0 for role in self._pool}

    def take(self, role: str) -> Person:
        index = self._next[role]
        assert index < len(self._pool[role]), f"no more demo people for {role}: raise DEMO_COUNT"
        self._next[role] = index + 1
        return self._pool[role][index]


# --- a citizen over plain HTTP: sets up accounts fast, and fetches pages for the bench -------------------

_CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


class HttpCitizen:
    """A cookie-keeping HTTP client that goes through the flows with plain form POSTs (no JavaScript)."""

    def __init__(self, server: LiveServer) -> None:
        import httpx

        self.server = server
        self.client = httpx.Client(
            base_url=server.url, follow_redirects=True, timeout=20, headers={"Accept-Encoding": "gzip"}
        )
        self.csrf = ""
        self.last: Any = None

    def close(self) -> None:
        self.client.close()

    def _keep(self, response: Any) -> Any:
        found = _CSRF_RE.search(response.text)
        if found:
            self.csrf = found.group(1)
        self.last = response
        return response

    def get(self, path: str) -> Any:
        return self._keep(self.client.get(path))

    def post(self, path: str, data: dict[str, str] | None = None, *, ok: bool = True) -> Any:
        if not self.csrf:
            self.get(path if not path.startswith(("/inscription/", "/mot-de-passe-oublie/")) else "/")
        response = self._keep(self.client.post(path, data={**(data or {}), "csrf_token": self.csrf}))
        if ok:
            assert response.status_code == 200, f"POST {path}: {response.status_code} {_errors(response.text)}"
        return response

    def register(self, person: Person, *, channel: str = "email") -> str:
        """Register with the right answer; return the temporary password received on ``channel``."""
        mailbox = self.server.mailbox
        self.get("/inscription/statut")
        self.post("/inscription/statut", {"status": person.status})
        self.post("/inscription/identifiant", {"identifier": person.nir_with_key})
        self.post(
            "/inscription/coordonnees",
            {
                "last_name": person.last_name,
                "first_name": person.first_name,
                "birth_date": person.birth_date,
                "email": person.email,
                "mobile": person.mobile_display,
            },
        )
        self.post("/inscription/question", {"question": person.question, "answer": person.answer})
        mark = mailbox.seen()
        self.post("/inscription/canal", {"channel": channel})
        message = (
            mailbox.email_to(person.email, subject="code", after=mark)
            if channel == "email"
            else mailbox.sms_to(person.mobile, contains="code", after=mark)
        )
        self.post("/inscription/code", {"code": code_in(message.text)})
        assert "/inscription/termine" in str(self.last.url), _errors(self.last.text)
        message = (
            mailbox.email_to(person.email, subject="mot de passe temporaire", after=mark)
            if channel == "email"
            else mailbox.sms_to(person.mobile, contains="mot de passe", after=mark)
        )
        return password_in(message.text)

    def login(self, person: Person, password: str, *, channel: str = "email") -> str:
        """Identifier, password and the code; return the path the login lands on."""
        self.get("/connexion")
        mark = self.server.mailbox.seen()
        self.post("/connexion", {"identifier": person.nir, "password": password})
        if str(self.last.url).endswith("/connexion/code"):
            message = (
                self.server.mailbox.email_to(person.email, subject="code", after=mark)
                if channel == "email"
                else self.server.mailbox.sms_to(person.mobile, contains="code", after=mark)
            )
            self.post("/connexion/code", {"code": code_in(message.text)})
        return str(self.last.url).split(self.server.url, 1)[-1]

    def personalise(self, password: str) -> None:
        self.post("/changement-mot-de-passe", {"new_password": password, "confirm_password": password})

    def confirm_contacts(self) -> None:
        self.post("/confirmation-coordonnees", {"action": "confirmer"})

    def logout(self) -> None:
        self.post("/deconnexion", {})

    def make_account(self, person: Person, password: str, *, channel: str = "email", confirm: bool = True) -> None:
        """A registered account with ``password`` personalised (and contacts confirmed), logged out."""
        temporary = self.register(person, channel=channel)
        self.login(person, temporary, channel=channel)
        self.personalise(password)
        if confirm:
            self.confirm_contacts()
        self.logout()


def _errors(html: str) -> list[str]:
    return [
        re.sub(r"<[^>]+>", "", m).strip()
        for m in re.findall(r'<(?:p|div) class="error"[^>]*>(.*?)</(?:p|div)>', html, re.S)
    ]


def new_password(person: Person) -> str:
    """A strong password, different for each person."""
    return f"Galet-{person.nir[-4:]}-Vert!Nuage"


def person_with_account(server: LiveServer, kind: str) -> tuple[Person, str]:
    """A demo person of ``kind`` whose account is made (over HTTP, no browser); with its password."""
    person = server.people.take(kind)
    password = new_password(person)
    citizen = HttpCitizen(server)
    citizen.make_account(person, password)
    citizen.close()
    return person, password
