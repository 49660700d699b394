"""Every statement one full login sends to the database and to Redis, request by request.

    .venv/bin/python bench/login_trace.py                          # SQLite
    .venv/bin/python bench/login_trace.py --engine postgres --redis

The same login as bench/login.py (GET /connexion, POST /connexion, without JavaScript GET
/connexion/code, the code from the email, POST /connexion/code, without JavaScript GET /espace-prive), made one request at a time against
``guichet serve`` and ``guichet outbox work`` started with bench/trace on their PYTHONPATH: its
sitecustomize.py wraps the drivers (aiosqlite, asyncpg, redis) and appends each statement's text,
never its parameters, to a file; the bench writes a marker before each request. A few logins are
made first, so one-off work (a schema check, a signing key) is not counted. Prints the statements
of the last login and their count per request, and appends the counts to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import BENCH_PASSWORD, OWASP, Browser, CodeSink, OutboxProcess, Server, csrf_of  # noqa: E402

TRACE_DIR = Path(__file__).resolve().parent / "trace"


class Trace:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.write_text("")

    def mark(self, label: str) -> None:
        with self.path.open("a", encoding="utf-8") as out:
            out.write(f"-\tmark\t{label}\n")

    def lines(self) -> list[tuple[str, str, str]]:
        rows = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            pid, kind, text = line.split("\t", 2)
            rows.append((pid, kind, text))
        return rows


async def login(client: Browser, account: dict[str, str], sink: CodeSink, trace: Trace, n: int, *, js: bool) -> None:
    client.clear_cookies()
    sink.forget(account["email"])
    trace.mark(f"{n} GET /connexion")
    r = await client.get("/connexion")
    trace.mark(f"{n} POST /connexion")
    r = await client.post(
        "/connexion",
        data={"identifier": account["identifier"], "password": BENCH_PASSWORD, "csrf_token": csrf_of(r.text)},
        htmx=js,
    )
    if js:
        assert r.status_code == 200 and r.headers.get("hx-push-url") == "/connexion/code", r.status_code
    else:
        assert r.status_code == 303 and r.headers.get("location") == "/connexion/code", r.status_code
        trace.mark(f"{n} GET /connexion/code")
        r = await client.get("/connexion/code")
    token = csrf_of(r.text)
    code = await sink.code_for(account["email"])  # the outbox worker's statements land in between
    await asyncio.sleep(0.3)  # the worker marks the message sent after the SMTP answer
    trace.mark(f"{n} POST /connexion/code")
    r = await client.post("/connexion/code", data={"code": code, "csrf_token": token}, htmx=js)
    went = r.headers.get("hx-push-url") if js else r.headers.get("location")
    assert went == "/espace-prive", r.status_code
    if not js:  # with htmx, Mon espace privé came in the code step's answer
        trace.mark(f"{n} GET /espace-prive")
        r = await client.get("/espace-prive")
    assert r.status_code == 200 and "Bonjour" in r.text, r.status_code
    await asyncio.sleep(0.3)
    trace.mark(f"{n} end")


async def run(args: argparse.Namespace) -> None:
    facts = common.machine_facts()
    folder, database, sink, caisse_id, config_path = await common.start_run(
        "login-trace", engine=args.engine, redis=args.redis, argon2=OWASP
    )
    trace = Trace(folder / "statements.tsv")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(TRACE_DIR), os.environ.get("PYTHONPATH")]))}
    env["GUICHET_BENCH_TRACE"] = str(trace.path)
    server: Server | None = None
    outbox: OutboxProcess | None = None
    try:
        accounts = await common.prepare_database(config_path, registry_count=10, accounts=args.logins + 1)
        server = Server(config_path, env=env).start()
        os.environ.update(env)  # the outbox process inherits the environment
        outbox = OutboxProcess(config_path).start()
        for name in env:
            os.environ.pop(name)
        async with Browser(server.url) as client:
            for n, account in enumerate(accounts[: args.logins]):
                await login(client, account, sink, trace, n, js=args.browser == "js")
    finally:
        await common.tear_down([s for s in [server] if s], outbox, sink, database, caisse_id if args.redis else None)
    last = args.logins - 1
    request = None
    by_request: dict[str, list[tuple[str, str]]] = collections.defaultdict(list)
    for pid, kind, text in trace.lines():
        if kind == "mark":
            number, _, label = text.partition(" ")
            request = label if int(number) == last else None
            continue
        if request is not None and label != "end":
            process = "outbox worker" if outbox is not None and outbox.proc and int(pid) == outbox.proc.pid else "web"
            by_request[request].append((f"{process} {kind}", text))
    rows = []
    listing = []
    total: collections.Counter[str] = collections.Counter()
    for label, statements in by_request.items():
        counts = collections.Counter(who for who, _ in statements)
        total.update(counts)
        rows.append(f"| {label} | {', '.join(f'{who} {n}' for who, n in sorted(counts.items()))} |")
        listing.append(f"{label}:")
        listing.extend(f"    [{who}] {text[:160]}" for who, text in statements)
    print("\n".join(listing))
    body = (
        f"Statements sent by the server side during the last of {args.logins} logins (statement text "
        "only; each is one round trip to the database or Redis, BEGIN and COMMIT included):\n\n"
        "| request | statements |\n|---|---|\n"
        + "\n".join(rows)
        + f"\n| **whole login** | **{sum(total.values())}**: "
        + ", ".join(f"{who} {n}" for who, n in sorted(total.items()))
        + " |\n"
    )
    common.append_results(
        f"Statements per login: {args.engine}{' + Redis' if args.redis else ''}, {args.browser}",
        body,
        facts=facts,
        write=not args.no_write,
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--redis", action="store_true", help="sessions and rate limits in Redis")
    p.add_argument("--logins", type=int, default=3)
    p.add_argument("--browser", choices=["js", "nojs"], default="js", help="as bench/login.py --browser")
    p.add_argument("--no-write", action="store_true", help="print only; do not append to docs/benchmarks.md")
    return p


def main() -> None:
    asyncio.run(run(parser().parse_args()))


if __name__ == "__main__":
    main()
