"""The server-side CPU of a passkey login next to the password login, in one run, under the same load
and the same server layout.

    .venv/bin/python bench/passkey_login.py                           # SQLite, 1 worker, OWASP minimum
    .venv/bin/python bench/passkey_login.py --params keycloak
    .venv/bin/python bench/passkey_login.py --engine postgres --redis --workers 2

Three logins, one after the other against the same ``guichet serve``:

1. the passkey alone ("Se connecter avec une clé d'accès", ``[authentication] passwordless = true``):
   GET /connexion/sans-mot-de-passe/passkey (the page holds the WebAuthn request options), POST the
   assertion, GET /espace-prive (200): 3 requests, no argon2id, no email;
2. the passkey as the second factor: GET /connexion, POST /connexion (htmx; the argon2id verify; the
   person holds a passkey, so no code is sent and the answer sends the browser to
   /connexion/methode/passkey), GET /connexion/methode/passkey, POST the assertion, GET /espace-prive:
   5 requests;
3. for reference, the password and the emailed code exactly as bench/login.py does it (a browser
   running JavaScript, 3 requests), on accounts that hold no passkey.

The passkey posts are plain form POSTs answered by a 303: guichet.js fills the form's hidden
``credential`` field with the browser's ``credential.toJSON()`` and submits the form, which has no
``hx-post``. The browser side is the software passkey of the tests (tests/plugins/softkey.py), a
synced one (its signature counter stays 0, as Apple's and Google's do). WebAuthn binds a passkey to a
domain name, never an IP address: the virtual users talk to http://localhost:PORT, and with the RP ID
``localhost`` and no origins configured, guichet accepts any local port.

Accounts: ``--accounts`` accounts enrol one passkey each, over HTTP before anything is measured (the
password and the emailed code, the password again at /mon-compte/securite/confirmer, then
/mon-compte/securite/passkey/ajouter); ``--code-accounts`` more, without a passkey, log in with the
code (many: at most 6 codes go to one account an hour). Every person has an address of their own
(X-Forwarded-For, the bench playing the reverse proxy): whole logins are counted per client address,
the right ones included (by default, past 100 in an hour from one address, each next one must wait
a growing pause).

The passkey alone is measured from its own page: a person who first opens /connexion and follows
its link costs one GET /connexion more.

Server-side CPU is process CPU time (user + system, psutil) of the web workers, the outbox worker and,
when used, this database's PostgreSQL backends, PostgreSQL's shared processes and the Redis server
(shared with anything else on the machine: an upper bound), as bench/login.py measures it; the load
generator's own CPU is shown, never counted. The argon2id verify CPU is measured in the same run, at
the same parameters, so the second-factor line can be read against it.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import itertools
import json
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import login  # noqa: E402
from common import (  # noqa: E402
    BENCH_PASSWORD,
    Browser,
    CodeSink,
    OutboxProcess,
    Server,
    ServerMeter,
    csrf_of,
    latency_line,
)
from login import Tally  # noqa: E402

from tests.plugins.softkey import SoftPasskey  # noqa: E402  (the repository root is on sys.path: common)

PLUGIN = "authenticator_passkey"
PASSWORDLESS_URL = "/connexion/sans-mot-de-passe/passkey"
METHOD_URL = "/connexion/methode/passkey"
CONFIRM_URL = "/mon-compte/securite/confirmer"
ADD_URL = "/mon-compte/securite/passkey/ajouter"
HOME = "/espace-prive"

# no origins and no server.public_url: with the RP ID localhost any http://localhost:PORT is accepted,
# so the config need not know the port the bench picks
PASSKEY_SETTINGS = f"""
[authentication]
passwordless = true

[plugins.settings.{PLUGIN}]
rp_id = "localhost"
"""

OPTIONS_RE = re.compile(r'data-webauthn-options="([^"]*)"')
ERROR_RE = re.compile(r'<p class="error"[^>]*>(.*?)</p>', re.S)

Person = dict[str, Any]  # identifier, email, address (X-Forwarded-For) and, once enrolled, key
OneLogin = Callable[[Browser, Person, CodeSink, Tally], Awaitable[None]]


def webauthn_options(page: str) -> dict[str, Any]:
    """The options guichet.js hands to navigator.credentials: the form's HTML-escaped JSON."""
    found = OPTIONS_RE.search(page)
    if not found:
        raise RuntimeError("no passkey form on the page")
    return dict(json.loads(html.unescape(found.group(1))))


def shown_error(page: str) -> str:
    """The page's first error message, so that a refusal says why (a slowed try, a cloned key...)."""
    found = ERROR_RE.search(page)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", found.group(1))).split())[:160] if found else ""


def with_passkeys(text: str) -> str:
    """common.config_text's plugin list with the passkey plugin added."""
    last = '"password_msa"]'
    if last not in text:
        raise SystemExit("bench/common.py's plugin list changed: cannot add authenticator_passkey")
    return text.replace(last, f'"password_msa", "{PLUGIN}"]', 1)


def address_of(n: int) -> str:
    return f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"


def localhost_url(server: Server) -> str:
    # Server.url is 127.0.0.1, an address no passkey can be used at: the same server by its name
    return f"http://localhost:{server.port}"


# --- one login of each kind -------------------------------------------------------------------------


async def passwordless_login(client: Browser, person: Person, sink: CodeSink, tally: Tally) -> None:
    start = time.perf_counter()
    client.clear_cookies()
    client.headers["X-Forwarded-For"] = person["address"]
    if not await passkey_then_home(client, person, PASSWORDLESS_URL, tally):
        return
    if tally.measuring:
        tally.done.append(time.perf_counter() - start)


async def passkey_then_home(client: Browser, person: Person, url: str, tally: Tally) -> bool:
    """The passkey's page at ``url``, its answer (a plain form POST, as guichet.js submits it), and
    Mon espace privé; False (the error counted) when a step went wrong."""
    r = await client.get(url)
    if r.status_code != 200:
        tally.error(f"passkey page: {r.status_code} {r.headers.get('location')}")
        return False
    answer = person["key"].get(webauthn_options(r.text))
    r = await client.post(url, {"credential": answer, "csrf_token": csrf_of(r.text)})
    if r.status_code != 303 or r.headers.get("location") != HOME:
        tally.error(f"passkey answer: {r.status_code} {r.headers.get('location')} {shown_error(r.text)}")
        return False
    r = await client.get(HOME)
    if r.status_code != 200:
        tally.error(f"espace privé: {r.status_code}")
        return False
    return True


async def second_factor_login(client: Browser, person: Person, sink: CodeSink, tally: Tally) -> None:
    """As a browser running JavaScript: the password posted by htmx, whose answer navigates to the
    passkey page (HX-Redirect); the passkey's form is then submitted as a plain form."""
    start = time.perf_counter()
    client.clear_cookies()
    client.headers["X-Forwarded-For"] = person["address"]
    r = await client.get("/connexion")
    r = await client.post(
        "/connexion",
        data={"identifier": person["identifier"], "password": BENCH_PASSWORD, "csrf_token": csrf_of(r.text)},
        htmx=True,
    )
    if r.status_code != 200 or r.headers.get("hx-redirect") != METHOD_URL:
        tally.error(f"password step: {r.status_code} {r.headers.get('hx-redirect') or r.headers.get('hx-push-url')}")
        return
    password_done = time.perf_counter()
    if not await passkey_then_home(client, person, METHOD_URL, tally):
        return
    if tally.measuring:
        end = time.perf_counter()
        tally.done.append(end - start)
        tally.password_step.append(password_done - start)


async def code_login(client: Browser, person: Person, sink: CodeSink, tally: Tally) -> None:
    """bench/login.py's login (password, then the emailed code), from the person's own address."""
    client.headers["X-Forwarded-For"] = person["address"]
    await login.one_login(client, person, sink, tally, js=True)


# --- enrolment, over HTTP, before anything is measured ----------------------------------------------


async def enrol(client: Browser, person: Person, sink: CodeSink, origin: str) -> None:
    """Log in with the password and the code, type the password again, add a passkey."""
    tally = Tally()
    await code_login(client, person, sink, tally)
    if tally.errors:
        raise RuntimeError(f"login before the enrolment: {tally.errors[0]}")
    r = await client.get(f"{CONFIRM_URL}?suite={quote(ADD_URL, safe='')}")
    r = await client.post(
        CONFIRM_URL, {"current_password": BENCH_PASSWORD, "suite": ADD_URL, "csrf_token": csrf_of(r.text)}
    )
    if r.status_code != 303 or r.headers.get("location") != ADD_URL:
        raise RuntimeError(f"password again: {r.status_code} {r.headers.get('location')} {shown_error(r.text)}")
    r = await client.get(ADD_URL)
    if r.status_code != 200:
        raise RuntimeError(f"passkey enrolment page: {r.status_code} {r.headers.get('location')}")
    key = SoftPasskey(origin, counting=False)
    answer = key.create(webauthn_options(r.text))
    r = await client.post(ADD_URL, {"credential": answer, "label": "Banc d'essai", "csrf_token": csrf_of(r.text)})
    if r.status_code != 200 or "ajout enregistré" not in r.text:
        raise RuntimeError(f"passkey enrolment: {r.status_code} {shown_error(r.text)}")
    person["key"] = key


async def enrol_all(url: str, people: list[Person], sink: CodeSink, concurrency: int) -> None:
    queue: asyncio.Queue[Person] = asyncio.Queue()
    for person in people:
        queue.put_nowait(person)

    async def worker() -> None:
        async with Browser(url) as client:
            while not queue.empty():
                await enrol(client, queue.get_nowait(), sink, url)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def outbox_quiet(sink: CodeSink, at_least: int = 0, timeout: float = 60) -> None:
    """Wait for the outbox worker to deliver what is queued (``at_least`` emails received in all, and
    none for a while), so that no delivery of one phase is counted in the next one's window."""
    deadline = time.monotonic() + timeout
    seen = -1
    while time.monotonic() < deadline:
        if sink.received >= at_least and sink.received == seen:
            return
        seen = sink.received
        await asyncio.sleep(1.5)
    print(f"  the outbox did not settle: {sink.received} emails received, {at_least} expected", file=sys.stderr)


# --- one measured window ----------------------------------------------------------------------------


async def drive(
    one: OneLogin,
    url: str,
    people: list[Person],
    sink: CodeSink,
    groups: dict[str, Any],
    *,
    concurrency: int,
    warmup: float,
    duration: float,
    on_sample: Callable[[], None],
) -> tuple[Tally, dict[str, float], float]:
    """bench/login.py's drive, for any kind of login: ``concurrency`` virtual users in a loop, a
    warm-up, then a window in which ServerMeter (a new one: it keeps its first samples) measures."""
    tally = Tally()
    pool = itertools.cycle(people)
    stop = asyncio.Event()
    meter = ServerMeter(groups)

    async def user() -> None:
        async with Browser(url) as client:
            while not stop.is_set():
                try:
                    await one(client, next(pool), sink, tally)
                except Exception as exc:  # noqa: BLE001 - counted and shown, the bench goes on
                    tally.error(f"{type(exc).__name__}: {exc}")

    tasks = [asyncio.create_task(user()) for _ in range(concurrency)]
    await asyncio.sleep(warmup)
    meter.begin()
    tally.measuring = True
    started = time.perf_counter()
    while time.perf_counter() - started < duration:
        await asyncio.sleep(1)
        meter.sample()
        on_sample()
    tally.measuring = False
    elapsed = time.perf_counter() - started
    cpu = meter.end()
    stop.set()
    await asyncio.wait(tasks, timeout=90)
    for task in tasks:
        task.cancel()
    return tally, cpu, elapsed


SCENARIOS: list[tuple[str, str, OneLogin, int]] = [  # key, label, login, requests
    ("passwordless", "passkey alone (whole login)", passwordless_login, 3),
    ("second_factor", "password + passkey (second factor)", second_factor_login, 5),
    ("code", "password + emailed code (bench/login.py)", code_login, 4),
]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    params = common.ARGON2_PROFILES[args.params]
    facts = common.machine_facts()
    folder, database, sink, caisse_id, config_path = await common.start_run(
        "passkey-login",
        engine=args.engine,
        redis=args.redis,
        edit=with_passkeys,
        argon2=params,
        workers=args.workers,
        max_concurrent_hashes=args.max_hashes,
        extra=PASSKEY_SETTINGS,
    )
    servers: list[Server] = []
    outbox: OutboxProcess | None = None
    results: dict[str, tuple[Tally, dict[str, float], float]] = {}
    try:
        total = args.accounts + args.code_accounts
        made = await common.prepare_database(config_path, registry_count=total, accounts=total)
        people = [{**account, "address": address_of(n)} for n, account in enumerate(made)]
        # the first ones enrol a passkey; the others hold none, so that their password leads to a code
        with_key, code_only = people[: args.accounts], people[args.accounts :]
        print(f"{len(made)} accounts ready; argon2id verify cost ({args.ceiling_seconds:.0f} s)...", flush=True)
        verify_before = await asyncio.to_thread(common.argon2_verify_cost, params, args.ceiling_seconds)
        servers = [Server(config_path, workers=args.workers).start()]
        outbox = OutboxProcess(config_path).start()
        url = localhost_url(servers[0])
        started = time.perf_counter()
        await enrol_all(url, with_key, sink, args.enrol_concurrency)
        # a login code and the "passkey added" notice per person
        await outbox_quiet(sink, at_least=2 * len(with_key))
        print(
            f"{len(with_key)} passkeys enrolled over HTTP in {time.perf_counter() - started:.1f} s; serving on "
            f"{url}; {args.concurrency} virtual users, {args.warmup:.0f} s warm-up, {args.duration:.0f} s "
            "measured per login kind",
            flush=True,
        )
        groups: dict[str, Any] = {
            "web workers": lambda: [p for s in servers for p in s.all_pids()],
            "outbox worker": outbox.pids,
        }
        if args.engine == "postgres":
            name = database.pg_name
            for group in ("PostgreSQL backends (this database)", "PostgreSQL shared processes"):
                groups[group] = lambda group=group: common.postgres_processes(name)[group]
        if args.redis:
            groups["Redis server"] = common.redis_processes
        server_side = list(groups)
        groups["load generator (not server side)"] = lambda: [os.getpid()]

        def sample() -> None:
            for server in servers:
                server.sample_memory()

        for key, label, one, _requests in SCENARIOS:
            print(f"  {label}...", flush=True)
            results[key] = await drive(
                one,
                url,
                code_only if key == "code" else with_key,
                sink,
                groups,
                concurrency=args.concurrency,
                warmup=args.warmup,
                duration=args.duration,
                on_sample=sample,
            )
            await outbox_quiet(sink)
        verify_after = await asyncio.to_thread(common.argon2_verify_cost, params, args.ceiling_seconds)
    finally:
        await common.tear_down(servers, outbox, sink, database, caisse_id if args.redis else None)

    verify_ms = (verify_before["cpu_ms"] + verify_after["cpu_ms"]) / 2
    m, t, p = params
    layout = f"`guichet serve --workers {args.workers}`"
    engine = f"{args.engine}{' + Redis (sessions, rate limits)' if args.redis else ''}"
    component_names = " + ".join(server_side)
    rows = []
    summary: dict[str, Any] = {"verify_ms": verify_ms, "params": args.params, "engine": engine}
    for key, label, _one, requests in SCENARIOS:
        tally, cpu, elapsed = results[key]
        logins = max(len(tally.done), 1)
        per_login = {name: cpu.get(name, 0.0) / logins * 1000 for name in groups}
        server_ms = sum(per_login[name] for name in server_side)
        busy = cpu["machine busy"] / max(cpu["machine capacity"], 1e-9)
        summary[key] = {"server_ms": server_ms, "rate": len(tally.done) / elapsed, "errors": len(tally.errors)}
        rows.append(
            f"| {label} | {requests} | {len(tally.done)} ({len(tally.errors)} errors) | "
            f"{len(tally.done) / elapsed:.1f} | **{server_ms:.1f} ms** | "
            + " | ".join(f"{per_login[name]:.2f}" for name in server_side)
            + f" | {latency_line(tally.done)} | {per_login['load generator (not server side)']:.1f} ms | "
            f"{busy * 100:.0f} % |"
        )
    passwordless_ms = summary["passwordless"]["server_ms"]
    second_ms = summary["second_factor"]["server_ms"]
    code_ms = summary["code"]["server_ms"]
    password_steps = {key: results[key][0].password_step for key in ("second_factor", "code")}
    body = f"""
| what | value |
|---|---|
| parameters | argon2id m={m} KiB, t={t}, p={p} ({args.params}) |
| layout | {layout}, {engine}, outbox in `guichet outbox work`, authenticator_passkey on, passwordless logins on |
| load, each login kind in turn | {args.concurrency} virtual users, {args.warmup:.0f} s warm-up, {args.duration:.0f} s measured; {args.accounts} accounts with a passkey (enrolled over HTTP), {args.code_accounts} without; one client address per person |
| argon2id verify CPU, same run, same parameters | **{verify_ms:.2f} ms** (loop before {verify_before["cpu_ms"]:.2f}, after {verify_after["cpu_ms"]:.2f}) |
| password + passkey less the loop's verify (the rest of the second factor's path; a verify among the server's own work may cost more than in the loop) | {second_ms - verify_ms:.1f} ms |
| passkey alone against password + code | {passwordless_ms:.1f} ms against {code_ms:.1f} ms ({passwordless_ms / code_ms * 100 if code_ms else float("nan"):.0f} %) |
| password step (GET + POST /connexion) latency | with a passkey next: {latency_line(password_steps["second_factor"])}; with a code next: {latency_line(password_steps["code"])} |

Server CPU per login = {component_names} (psutil user + system over each window ÷ the logins finished in it):

| login | requests | logins in the window | logins/s | server CPU per login | {" | ".join(server_side)} | latency | load generator per login (not counted) | machine busy |
|---|---|---|---|---|{"---|" * len(server_side)}---|---|---|
{chr(10).join(rows)}
"""
    common.append_results(
        f"Passkey login next to the password login: {args.params}, {layout}, {engine}",
        body,
        facts=facts,
        write=not args.no_write,
    )
    return summary


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_login_options(p)
    p.add_argument("--workers", type=int, default=1, help="guichet serve --workers N")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--warmup", type=float, default=5)
    p.add_argument("--duration", type=float, default=20, help="seconds measured, for each kind of login")
    p.add_argument("--accounts", type=int, default=200, help="accounts that enrol a passkey")
    p.add_argument(
        "--code-accounts",
        type=int,
        default=1000,
        help="accounts without a passkey, for the password + code login (at most 6 codes per account an hour)",
    )
    p.add_argument("--enrol-concurrency", type=int, default=8, help="virtual users enrolling the passkeys")
    p.add_argument("--max-hashes", type=int, default=2, help="passwords.max_concurrent_hashes")
    p.add_argument("--ceiling-seconds", type=float, default=5, help="seconds of each argon2id verify loop")
    p.add_argument("--no-write", action="store_true", help="print only; do not append to docs/benchmarks.md")
    return p


if __name__ == "__main__":
    asyncio.run(run(parser().parse_args()))
