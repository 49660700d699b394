"""The efficiency of a full login: the CPU of one argon2id verify (measured in the same run, at the
same parameters) divided by all the server-side CPU one login costs.

    .venv/bin/python bench/login.py                                   # SQLite, 1 worker, OWASP minimum
    .venv/bin/python bench/login.py --params keycloak                 # m=7168 KiB, t=5, p=1
    .venv/bin/python bench/login.py --engine postgres --redis --workers 2

One login, as a browser does it: GET /connexion, POST /connexion (argon2id verify; the code is
queued), the code read from the email the outbox worker delivered to this bench's own SMTP server
(aiosmtpd), POST /connexion/code, GET /espace-prive (200). A browser running JavaScript (the
default, ``--browser js``) posts the forms with htmx and is shown the code step in the answer to its
password and Mon espace privé in the answer to the code (no GET /espace-prive); one without (``--browser nojs``) gets a 303 for each POST and loads GET /connexion/code. Accounts are
made directly in the database with a known password (core code, one argon2 hash shared), so the
bench measures logins, not registrations. The outbox worker runs as ``guichet outbox work`` (the
production layout) unless ``--inline-outbox``.

Server-side CPU is process CPU time (user + system, psutil) of every web worker, the outbox
worker, and, when they are used, this database's PostgreSQL backends, PostgreSQL's shared processes
and the Redis server (both shared with anything else on the machine: an upper bound). It does not
move with the machine's other load the way logins/s do. A py-spy profile of the first web worker
and the outbox worker (GIL holder only) sorts the non-hash CPU into components.

The verifies the server made are also read from its /metrics (``guichet_argon2_cpu_seconds_total``,
each hashing thread's own CPU time): what a verify costs inside the server under this load, against
the loop's figure, and the server's CPU besides its hashing threads.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
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


class Tally:
    def __init__(self) -> None:
        self.measuring = False
        self.done: list[float] = []  # whole-login latencies in the window
        self.password_step: list[float] = []
        self.code_wait: list[float] = []
        self.errors: list[str] = []

    def error(self, text: str) -> None:
        self.errors.append(text)
        if len(self.errors) <= 5:
            print(f"  login error: {text}", file=sys.stderr)


async def one_login(client: Browser, account: dict[str, str], sink: CodeSink, tally: Tally, *, js: bool) -> None:
    """``js``: a browser running JavaScript (htmx posts the forms, the code step comes in the answer
    to the password and Mon espace privé in the answer to the code: 3 requests); else a plain browser
    (each POST answered by a 303: 5 requests)."""
    start = time.perf_counter()
    client.clear_cookies()
    r = await client.get("/connexion")
    token = csrf_of(r.text)
    sink.forget(account["email"])
    r = await client.post(
        "/connexion",
        data={"identifier": account["identifier"], "password": BENCH_PASSWORD, "csrf_token": token},
        htmx=js,
    )
    if js:
        if r.status_code != 200 or r.headers.get("hx-push-url") != "/connexion/code":
            tally.error(f"password step: {r.status_code} {r.headers.get('hx-push-url')}")
            return
    elif r.status_code != 303 or r.headers.get("location") != "/connexion/code":
        tally.error(f"password step: {r.status_code} {r.headers.get('location')}")
        return
    password_done = time.perf_counter()
    if not js:
        r = await client.get("/connexion/code")
    token = csrf_of(r.text)
    code = await sink.code_for(account["email"])
    code_done = time.perf_counter()
    r = await client.post("/connexion/code", data={"code": code, "csrf_token": token}, htmx=js)
    # with htmx Mon espace privé comes in this answer (HX-Push-Url); a commit before e38fc87 sent
    # HX-Redirect and the browser a GET (kept, to measure before → after)
    went = (r.headers.get("hx-push-url") or r.headers.get("hx-redirect")) if js else r.headers.get("location")
    if r.status_code != (200 if js else 303) or went != "/espace-prive":
        tally.error(f"code step: {r.status_code} {went}")
        return
    if not js or "hx-redirect" in r.headers:
        r = await client.get("/espace-prive")
    if r.status_code != 200 or "Bonjour" not in r.text:
        tally.error(f"espace privé: {r.status_code}")
        return
    if tally.measuring:
        end = time.perf_counter()
        tally.done.append(end - start)
        tally.password_step.append(password_done - start)
        tally.code_wait.append(code_done - password_done)


async def drive(
    urls: list[str],
    accounts: list[dict[str, str]],
    sink: CodeSink,
    *,
    concurrency: int,
    warmup: float,
    duration: float,
    meter: ServerMeter,
    on_begin: Any = None,
    on_sample: Any = None,
    on_end: Any = None,
    js: bool = True,
) -> tuple[Tally, dict[str, float], float]:
    tally = Tally()
    pool = itertools.cycle(accounts)
    stop = asyncio.Event()

    async def user(n: int) -> None:
        async with Browser(urls[n % len(urls)]) as client:
            while not stop.is_set():
                try:
                    await one_login(client, next(pool), sink, tally, js=js)
                except Exception as exc:  # noqa: BLE001 - counted and shown, the bench goes on
                    tally.error(f"{type(exc).__name__}: {exc}")

    tasks = [asyncio.create_task(user(n)) for n in range(concurrency)]
    await asyncio.sleep(warmup)
    if on_begin:
        on_begin()
    meter.begin()
    tally.measuring = True
    started = time.perf_counter()
    while time.perf_counter() - started < duration:
        await asyncio.sleep(1)
        meter.sample()
        if on_sample:
            on_sample()
    tally.measuring = False
    elapsed = time.perf_counter() - started
    cpu = meter.end()
    if on_end:
        on_end()
    stop.set()
    await asyncio.wait(tasks, timeout=90)
    for task in tasks:
        task.cancel()
    return tally, cpu, elapsed


PROFILE_RATE = 100  # py-spy samples per second, every thread that is not idle


HASH = common.HASH_COMPONENT


def breakdown(profiles: dict[str, Path], cpu_ms: dict[str, float], verify_ms: float) -> list[tuple[str, str, float]]:
    """(process, component, ms per login): each profiled process's non-hash CPU per login (the web
    workers' CPU less the verify measured in the loop) shared out in proportion to its busy py-spy
    samples, the hash's samples left out. py-spy samples on the wall clock: on a saturated machine a
    thread waiting for a core is sampled too, so absolute counts (and the hash's share) overstate;
    the split of a CPU figure measured by the kernel is what is used."""
    rows: list[tuple[str, str, float]] = []
    for process, path in profiles.items():
        counts, _total = common.profile_components(path)
        hashed = process == "web workers"
        if hashed:
            counts.pop(HASH, None)
            rows.append((process, "argon2id verify (the loop's figure)", verify_ms))
        busy = sum(counts.values())
        overhead = cpu_ms.get(process, 0.0) - (verify_ms if hashed else 0.0)
        for component, count in sorted(counts.items(), key=lambda kv: -kv[1]):
            rows.append((process, component, count / max(busy, 1) * overhead))
    return rows


async def run(args: argparse.Namespace) -> dict[str, Any]:
    params = common.ARGON2_PROFILES[args.params]
    facts = common.machine_facts()
    folder, database, sink, caisse_id, config_path = await common.start_run(
        "login",
        engine=args.engine,
        redis=args.redis,
        argon2=params,
        inline_outbox=args.inline_outbox,
        workers=args.workers,
        max_concurrent_hashes=args.max_hashes,
        pool_size=args.pool_size,
    )
    servers: list[Server] = []
    outbox: OutboxProcess | None = None
    profilers: list[Any] = []
    profiles: dict[str, Path] = {}
    try:
        accounts = await common.prepare_database(config_path, registry_count=args.accounts, accounts=args.accounts)
        print(f"{len(accounts)} accounts ready; argon2id verify cost ({args.ceiling_seconds:.0f} s)...", flush=True)
        verify_before = await asyncio.to_thread(common.argon2_verify_cost, params, args.ceiling_seconds)
        if args.processes > 1:  # several separate `guichet serve` processes on several ports
            servers = [Server(config_path, workers=1).start() for _ in range(args.processes)]
        else:
            servers = [Server(config_path, workers=args.workers, asgi_server=args.asgi_server).start()]
        if not args.inline_outbox:
            outbox = OutboxProcess(config_path).start()
        print(
            f"serving on {', '.join(s.url for s in servers)}; {args.concurrency} virtual users, "
            f"{args.warmup:.0f} s warm-up, {args.duration:.0f} s measured",
            flush=True,
        )
        groups: dict[str, Any] = {"web workers": lambda: [p for s in servers for p in s.all_pids()]}
        if outbox is not None:
            groups["outbox worker"] = outbox.pids
        if args.engine == "postgres":
            name = database.pg_name
            groups["PostgreSQL backends (this database)"] = lambda: common.postgres_processes(name)[
                "PostgreSQL backends (this database)"
            ]
            groups["PostgreSQL shared processes"] = lambda: common.postgres_processes(name)[
                "PostgreSQL shared processes"
            ]
        if args.redis:
            groups["Redis server"] = common.redis_processes
        server_side = list(groups)
        groups["load generator (not server side)"] = lambda: [os.getpid()]
        meter = ServerMeter(groups)

        def sample() -> None:
            for server in servers:
                server.sample_memory()

        urls = [s.url for s in servers]
        hashing: dict[str, tuple[float, float]] = {}

        def end() -> None:
            hashing["end"] = common.argon2_verify_totals(urls)

        def begin() -> None:
            hashing["begin"] = common.argon2_verify_totals(urls)
            if args.profile == "none":
                return
            native = args.profile == "native"
            gil = args.profile == "gil"  # the thread holding the GIL only: raw file, no breakdown
            targets = {"web workers": servers[0].worker_pids()[0]}
            if outbox is not None:
                targets["outbox worker"] = outbox.pids()[0]
            for process, pid in targets.items():
                out = folder / f"profile-{process.replace(' ', '-')}.txt"
                spy = common.start_profiler(pid, args.duration, out, native=native, gil_only=gil, rate=PROFILE_RATE)
                if spy is not None:
                    profilers.append(spy)
                    profiles[process] = out

        tally, cpu, elapsed = await drive(
            [s.url for s in servers],
            accounts,
            sink,
            concurrency=args.concurrency,
            warmup=args.warmup,
            duration=args.duration,
            meter=meter,
            on_begin=begin,
            on_sample=sample,
            on_end=end,
            js=args.browser == "js",
        )
        for spy in profilers:
            spy.wait(60)
        verify_after = await asyncio.to_thread(common.argon2_verify_cost, params, args.ceiling_seconds)
        # the same loop on every core at once: what one verify costs when the machine hashes on all
        # of them, as a saturated server with a hash per core does (they share caches and memory)
        verify_all_cores = await asyncio.to_thread(
            common.argon2_verify_cost, params, args.ceiling_seconds, os.cpu_count() or 1
        )
    finally:
        await common.tear_down(servers, outbox, sink, database, caisse_id if args.redis else None)
    logins = max(len(tally.done), 1)
    rate = len(tally.done) / elapsed
    verify_ms = (verify_before["cpu_ms"] + verify_after["cpu_ms"]) / 2
    ceiling = (verify_before["per_second"] + verify_after["per_second"]) / 2
    per_login = {name: cpu.get(name, 0.0) / logins * 1000 for name in groups}
    server_ms = sum(per_login[name] for name in server_side)
    efficiency = verify_ms / server_ms if server_ms else float("nan")
    # the verifies as the server's hashing threads made them, under this load (their own CPU time)
    hash_cpu = hashing["end"][0] - hashing["begin"][0]
    verifies = hashing["end"][1] - hashing["begin"][1]
    verify_in_server_ms = hash_cpu / verifies * 1000 if verifies else float("nan")
    hashing_per_login_ms = hash_cpu / logins * 1000
    efficiency_all_cores = verify_all_cores["cpu_ms"] / server_ms if server_ms else float("nan")
    peak = max((kib for s in servers for kib in s.peak_rss.values()), default=0)
    workers = args.processes if args.processes > 1 else args.workers
    rows = breakdown(profiles, per_login, verify_ms) if profiles and args.profile == "threads" else []
    busy = cpu["machine busy"] / max(cpu["machine capacity"], 1e-9)
    others = max(0.0, cpu["machine busy"] - sum(cpu.get(name, 0.0) for name in groups)) / elapsed
    result = {
        "params": args.params,
        "engine": f"{args.engine}{' + Redis' if args.redis else ''}",
        "rate": rate,
        "ceiling": ceiling,
        "verify_ms": verify_ms,
        "server_ms": server_ms,
        "per_login": per_login,
        "efficiency": efficiency,
        "efficiency_all_cores": efficiency_all_cores,
        "verify_all_cores_ms": verify_all_cores["cpu_ms"],
        "overhead_ms": server_ms - verify_ms,
        "verify_in_server_ms": verify_in_server_ms,
        "besides_hashing_ms": server_ms - hashing_per_login_ms,
        "errors": len(tally.errors),
        "cpu": cpu,
        "elapsed": elapsed,
        "peak_rss_mib": peak / 1024,
        "tally": tally,
        "facts": facts,
        "breakdown": rows,
        "app_cpu_ms": per_login["web workers"],
        "workers": workers,
        "machine_busy": busy,
        "browser": args.browser,
    }
    m, t, p = params
    layout = (
        f"{args.processes} `guichet serve` processes"
        if args.processes > 1
        else f"`guichet serve --workers {args.workers}`"
        if args.asgi_server == "uvicorn"
        else f"granian --workers {args.workers}"
    )
    browser = (
        "browser with JavaScript (3 requests)" if args.browser == "js" else "browser without JavaScript (5 requests)"
    )
    server_line = ", ".join(f"{name} {per_login[name]:.2f}" for name in server_side)
    body = f"""
| what | value |
|---|---|
| parameters | argon2id m={m} KiB, t={t}, p={p} ({args.params}) |
| layout | {layout}, {args.engine}{" + Redis (sessions, rate limits)" if args.redis else ""}, outbox {"inside serve" if args.inline_outbox else "in `guichet outbox work`"} |
| load | {browser}; {args.concurrency} virtual users, {args.warmup:.0f} s warm-up, {elapsed:.1f} s measured, {len(tally.done)} logins, {len(tally.errors)} errors |
| **efficiency** (argon2id verify CPU ÷ all server CPU per login) | **{efficiency:.2f}** |
| all server CPU per full login | **{server_ms:.1f} ms**: {server_line} |
| argon2id verify CPU, same run, same parameters | {verify_ms:.2f} ms (loop before {verify_before["cpu_ms"]:.2f}, after {verify_after["cpu_ms"]:.2f}) |
| non-hash server CPU per login | {server_ms - verify_ms:.1f} ms |
| argon2id verify CPU inside the server (its hashing threads' own CPU, from /metrics), and the server CPU besides them per login | {verify_in_server_ms:.2f} ms per verify ({verifies / logins:.2f} per login); {result["besides_hashing_ms"]:.1f} ms |
| secondary: argon2id verify CPU with every core verifying at once ({os.cpu_count()} loops), and the efficiency against it | {verify_all_cores["cpu_ms"]:.2f} ms; {efficiency_all_cores:.2f} |
| machine during the window | {busy * 100:.0f} % busy; other processes {others:.2f} core; load generator {per_login["load generator (not server side)"]:.1f} ms per login (not counted) |
| full logins/s (secondary: moves with the machine's other load) | {rate:.1f} (one core's verify loop: {ceiling:.1f}/s) |
| whole login latency | {latency_line(tally.done)} |
| password step (GET + POST /connexion) | {latency_line(tally.password_step)} |
| wait for the email with the code | {latency_line(tally.code_wait)} |
| peak RSS per app process | {", ".join(f"{kib / 1024:.0f} MiB" for s in servers for kib in s.peak_rss.values())} |
"""
    if rows:
        body += (
            f"\nWhere the CPU goes (py-spy, every busy thread, {PROFILE_RATE} Hz, on the first web worker and the "
            "outbox worker; each process's measured non-hash CPU per login shared out by its busy samples"
            f"{'; the first web worker stands for all of them' if workers > 1 else ''}). "
            "Every row but the verify is overhead:"
            "\n\n| process | component | ms per login |\n|---|---|---|\n"
            + "\n".join(f"| {proc} | {component} | {ms:.2f} |" for proc, component, ms in rows if abs(ms) >= 0.05)
            + "\n"
        )
    common.append_results(
        f"Login efficiency: {args.params}, {layout}, {args.engine}{' + Redis' if args.redis else ''}, {args.browser}",
        body,
        facts=facts,
        write=not args.no_write,
    )
    return result


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_login_options(p)
    p.add_argument(
        "--browser",
        choices=["js", "nojs"],
        default="js",
        help="js: htmx posts the forms, 3 requests per login (most browsers); nojs: 5 requests, each POST a 303",
    )
    p.add_argument("--workers", type=int, default=1, help="guichet serve --workers N")
    p.add_argument("--processes", type=int, default=1, help="N separate guichet serve processes instead")
    p.add_argument(
        "--asgi-server",
        choices=["uvicorn", "granian"],
        default="uvicorn",
        help="uvicorn: `guichet serve` (the product); granian: the same app under granian, for comparison",
    )
    p.add_argument("--inline-outbox", action="store_true", help="deliver from inside guichet serve")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--warmup", type=float, default=5)
    p.add_argument("--duration", type=float, default=20)
    p.add_argument("--accounts", type=int, default=2000)
    p.add_argument("--max-hashes", type=int, default=2, help="passwords.max_concurrent_hashes")
    p.add_argument("--pool-size", type=int, default=10, help="[database] pool_size")
    p.add_argument("--ceiling-seconds", type=float, default=5)
    p.add_argument(
        "--profile",
        choices=["threads", "gil", "native", "none"],
        default="threads",
        help="py-spy the first web worker and the outbox worker over the window (threads, the default: every "
        "busy thread, which gives the breakdown by component; gil: the GIL holder only, native: with C frames, "
        "raw files only)",
    )
    p.add_argument("--no-write", action="store_true", help="print only; do not append to docs/benchmarks.md")
    return p


if __name__ == "__main__":
    asyncio.run(run(parser().parse_args()))
