"""Full logins per second (password step + second factor read from the delivered email), next to
the argon2id-verify ceiling of one core measured in the same run at the same parameters.

    .venv/bin/python bench/login.py                                   # SQLite, 1 worker, OWASP minimum
    .venv/bin/python bench/login.py --params keycloak                 # m=7168 KiB, t=5, p=1
    .venv/bin/python bench/login.py --engine postgres --redis --workers 2

One login, as a browser does it: GET /connexion, POST /connexion (argon2id verify; the code is
queued), GET /connexion/code, the code read from the email the outbox worker delivered to this
bench's own SMTP server (aiosmtpd), POST /connexion/code, GET /espace-prive (200). Accounts are
made directly in the database with a known password (core code, one argon2 hash shared), so the
bench measures logins, not registrations. The outbox worker runs as ``guichet outbox work`` (the
production layout) unless ``--inline-outbox``.
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
    KEYCLOAK,
    OWASP,
    BenchDatabase,
    Browser,
    CodeSink,
    CpuMeter,
    OutboxProcess,
    Server,
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


async def one_login(client: Browser, account: dict[str, str], sink: CodeSink, tally: Tally) -> None:
    start = time.perf_counter()
    client.clear_cookies()
    r = await client.get("/connexion")
    token = csrf_of(r.text)
    sink.forget(account["email"])
    r = await client.post(
        "/connexion", data={"identifier": account["identifier"], "password": BENCH_PASSWORD, "csrf_token": token}
    )
    if r.status_code != 303 or r.headers.get("location") != "/connexion/code":
        tally.error(f"password step: {r.status_code} {r.headers.get('location')}")
        return
    password_done = time.perf_counter()
    r = await client.get("/connexion/code")
    token = csrf_of(r.text)
    code = await sink.code_for(account["email"])
    code_done = time.perf_counter()
    r = await client.post("/connexion/code", data={"code": code, "csrf_token": token})
    if r.status_code != 303 or r.headers.get("location") != "/espace-prive":
        tally.error(f"code step: {r.status_code} {r.headers.get('location')}")
        return
    r = await client.get("/espace-prive")
    if r.status_code != 200:
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
    groups: dict[str, list[int]],
    on_sample: Any = None,
) -> tuple[Tally, dict[str, float], float]:
    tally = Tally()
    pool = itertools.cycle(accounts)
    stop = asyncio.Event()

    async def user(n: int) -> None:
        async with Browser(urls[n % len(urls)]) as client:
            while not stop.is_set():
                try:
                    await one_login(client, next(pool), sink, tally)
                except Exception as exc:  # noqa: BLE001 - counted and shown, the bench goes on
                    tally.error(f"{type(exc).__name__}: {exc}")

    tasks = [asyncio.create_task(user(n)) for n in range(concurrency)]
    await asyncio.sleep(warmup)
    meter = CpuMeter()
    meter.begin(groups() if callable(groups) else groups)
    tally.measuring = True
    started = time.perf_counter()
    while time.perf_counter() - started < duration:
        await asyncio.sleep(1)
        if on_sample:
            on_sample()
    tally.measuring = False
    elapsed = time.perf_counter() - started
    cpu = meter.end()
    stop.set()
    await asyncio.wait(tasks, timeout=90)
    for task in tasks:
        task.cancel()
    return tally, cpu, elapsed


def other_pids(names: tuple[str, ...]) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip().startswith(names):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


async def run(args: argparse.Namespace) -> dict[str, Any]:
    params = KEYCLOAK if args.params == "keycloak" else OWASP
    facts = common.machine_facts()
    folder = common.run_folder("login")
    database = BenchDatabase(args.engine, folder)
    await database.create()
    loop = asyncio.get_running_loop()
    sink = CodeSink().start(loop)
    caisse_id = f"bench-{os.getpid()}"
    config_path = folder / "bench.toml"
    config_path.write_text(
        common.config_text(
            caisse_id=caisse_id,
            database_url=database.url,
            smtp_port=sink.port,
            argon2=params,
            redis_url=common.REDIS_URL if args.redis else None,
            inline_outbox=args.inline_outbox,
            workers=args.workers,
            max_concurrent_hashes=args.max_hashes,
            pool_size=args.pool_size,
        )
    )
    servers: list[Server] = []
    outbox: OutboxProcess | None = None
    try:
        accounts = await common.prepare_database(config_path, registry_count=args.accounts, accounts=args.accounts)
        print(f"{len(accounts)} accounts ready; argon2id ceiling ({args.ceiling_seconds:.0f} s)...", flush=True)
        ceiling_before = await asyncio.to_thread(common.argon2_ceiling, params, args.ceiling_seconds)
        if args.processes > 1:  # several separate `guichet serve` processes on several ports
            servers = [Server(config_path, workers=1).start() for _ in range(args.processes)]
        else:
            servers = [Server(config_path, workers=args.workers).start()]
        if not args.inline_outbox:
            outbox = OutboxProcess(config_path).start()
        print(
            f"serving on {', '.join(s.url for s in servers)}; {args.concurrency} virtual users, "
            f"{args.warmup:.0f} s warm-up, {args.duration:.0f} s measured",
            flush=True,
        )

        def groups() -> dict[str, list[int]]:
            found = {
                "app": [p for s in servers for p in s.all_pids()],
                "load generator": [os.getpid()],
                "database/redis": other_pids(("postgres", "redis-server")),
            }
            if outbox is not None:
                found["outbox worker"] = outbox.pids()
            return found

        def sample() -> None:
            for server in servers:
                server.sample_memory()

        profiler = None
        if args.profile:
            profiler = common.start_profiler(
                servers[0].worker_pids()[0],
                args.warmup + args.duration,
                folder / "profile.txt",
                native=args.profile == "native",
                gil_only=args.profile == "gil",
            )
        tally, cpu, elapsed = await drive(
            [s.url for s in servers],
            accounts,
            sink,
            concurrency=args.concurrency,
            warmup=args.warmup,
            duration=args.duration,
            groups=groups,
            on_sample=sample,
        )
        if profiler is not None:
            profiler.wait(60)
            print(common.summarise_profile(folder / "profile.txt"))
        ceiling_after = await asyncio.to_thread(common.argon2_ceiling, params, args.ceiling_seconds)
    finally:
        await common.tear_down(servers, outbox, sink, database, caisse_id if args.redis else None)
    rate = len(tally.done) / elapsed
    ceiling = (ceiling_before + ceiling_after) / 2
    peak = max((kib for s in servers for kib in s.peak_rss.values()), default=0)
    result = {
        "rate": rate,
        "ceiling": ceiling,
        "ceiling_before": ceiling_before,
        "ceiling_after": ceiling_after,
        "ratio": rate / ceiling if ceiling else float("nan"),
        "errors": len(tally.errors),
        "cpu": cpu,
        "elapsed": elapsed,
        "peak_rss_mib": peak / 1024,
        "tally": tally,
        "facts": facts,
    }
    logins = max(len(tally.done), 1)
    per_login = ", ".join(
        f"{name} {value / logins * 1000:.1f} ms"
        for name, value in cpu.items()
        if name not in ("machine busy", "machine capacity", "others")
    )
    result["app_cpu_ms"] = cpu.get("app", 0.0) / logins * 1000
    m, t, p = params
    layout = (
        f"{args.processes} `guichet serve` processes"
        if args.processes > 1
        else f"`guichet serve --workers {args.workers}`"
    )
    body = f"""
| what | value |
|---|---|
| parameters | argon2id m={m} KiB, t={t}, p={p} ({args.params}) |
| layout | {layout}, {args.engine}{" + Redis (sessions, rate limits)" if args.redis else ""}, outbox {"inside serve" if args.inline_outbox else "in `guichet outbox work`"} |
| load | {args.concurrency} virtual users, {args.warmup:.0f} s warm-up, {elapsed:.1f} s measured |
| **full logins/s** | **{rate:.1f}** ({len(tally.done)} logins, {len(tally.errors)} errors) |
| argon2id verify ceiling, one core, same run | {ceiling:.1f}/s (before {ceiling_before:.1f}, after {ceiling_after:.1f}) |
| **logins/s ÷ one-core ceiling** | **{result["ratio"] * 100:.0f} %** |
| whole login latency | {latency_line(tally.done)} |
| password step (GET + POST /connexion) | {latency_line(tally.password_step)} |
| wait for the email with the code | {latency_line(tally.code_wait)} |
| peak RSS per app process | {", ".join(f"{kib / 1024:.0f} MiB" for s in servers for kib in s.peak_rss.values())} |
| {common.describe_cpu(cpu, elapsed).split(":", 1)[0]} | {common.describe_cpu(cpu, elapsed).split(":", 1)[1].strip()} |
| CPU per full login | {per_login} |
"""
    common.append_results(
        f"Login: {args.params}, {layout}, {args.engine}{' + Redis' if args.redis else ''}",
        body,
        facts=facts,
        write=not args.no_write,
    )
    return result


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", choices=["owasp", "keycloak"], default="owasp")
    p.add_argument("--engine", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--redis", action="store_true", help="sessions and rate limits in Redis")
    p.add_argument("--workers", type=int, default=1, help="guichet serve --workers N")
    p.add_argument("--processes", type=int, default=1, help="N separate guichet serve processes instead")
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
        choices=["python", "native", "gil"],
        help="py-spy the (first) app process (gil: only the thread holding the GIL)",
    )
    p.add_argument("--no-write", action="store_true", help="print only; do not append to docs/benchmarks.md")
    return p


if __name__ == "__main__":
    asyncio.run(run(parser().parse_args()))
