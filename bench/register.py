"""Complete registrations per second, through the code step (the code read from the email).

    .venv/bin/python bench/register.py
    .venv/bin/python bench/register.py --engine postgres --redis

One registration, as a browser does it with htmx off: statut, identifiant, coordonnées, the
carte Vitale question (answered right), canal (email), the code read from the email the outbox
worker delivered to this bench's SMTP server, code → /inscription/termine. Each creates an
account: one argon2id hash of the temporary password, its email and a postal letter queued.
Registry persons are made by ``guichet registry demo``; those with a carte Vitale register.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import OWASP, Browser, CodeSink, CpuMeter, OutboxProcess, Server, csrf_of, latency_line  # noqa: E402


async def one_registration(client: Browser, person: dict[str, Any], sink: CodeSink, n: int) -> float:
    start = time.perf_counter()
    client.clear_cookies()
    # one address per person, as behind the reverse proxy: registrations are limited per client address
    client.headers["X-Forwarded-For"] = f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"
    email = f"inscrit{n}@bench.invalid"
    birth = person["birth_date"].strftime("%d/%m/%Y")
    steps = [
        ("statut", {"status": "particulier"}),
        ("identifiant", {"identifier": person["nir"]}),
        (
            "coordonnees",
            {
                "last_name": person["last_name"],
                "first_name": person["first_name"],
                "birth_date": birth,
                "email": email,
                "mobile": "",
            },
        ),
        ("question", {"question": "vitale", "answer": person["vitale_serial"]}),
        ("canal", {"channel": "email"}),
    ]
    token = csrf_of((await client.get("/inscription/statut")).text)
    for step, form in steps:
        r = await client.post(f"/inscription/{step}", data={**form, "csrf_token": token})
        if r.status_code != 303:
            raise RuntimeError(f"{step}: {r.status_code}")
    token = csrf_of((await client.get("/inscription/code")).text)
    code = await sink.code_for(email)
    r = await client.post("/inscription/code", data={"code": code, "csrf_token": token})
    if r.status_code != 303 or r.headers.get("location") != "/inscription/termine":
        raise RuntimeError(f"code: {r.status_code} {r.headers.get('location')}")
    return time.perf_counter() - start


async def run(args: argparse.Namespace) -> dict[str, Any]:
    facts = common.machine_facts()
    folder, database, sink, caisse_id, config_path = await common.start_run(
        "register", engine=args.engine, redis=args.redis, argon2=OWASP, max_concurrent_hashes=args.max_hashes
    )
    server = outbox = None
    done: list[float] = []
    errors: list[str] = []
    try:
        await common.prepare_database(config_path, registry_count=args.registry, accounts=1)
        people = await common.registrable_persons(config_path, limit=args.registry)
        print(f"{len(people)} persons can register; starting", flush=True)
        server = Server(config_path).start()
        outbox = OutboxProcess(config_path).start()
        queue = iter(enumerate(people))
        measuring = False
        stop = asyncio.Event()

        async def user() -> None:
            async with Browser(server.url) as client:
                while not stop.is_set():
                    try:
                        n, person = next(queue)
                    except StopIteration:
                        return
                    try:
                        took = await one_registration(client, person, sink, n)
                        if measuring:
                            done.append(took)
                    except Exception as exc:  # noqa: BLE001
                        errors.append(f"{type(exc).__name__}: {exc}")
                        if len(errors) <= 5:
                            print(f"  registration error: {errors[-1]}", file=sys.stderr)

        tasks = [asyncio.create_task(user()) for _ in range(args.concurrency)]
        await asyncio.sleep(args.warmup)
        meter = CpuMeter()
        meter.begin({"app": server.all_pids(), "outbox worker": outbox.pids(), "load generator": [os.getpid()]})
        measuring = True
        started = time.perf_counter()
        while time.perf_counter() - started < args.duration:
            await asyncio.sleep(1)
            server.sample_memory()
        measuring = False
        elapsed = time.perf_counter() - started
        cpu = meter.end()
        stop.set()
        await asyncio.wait(tasks, timeout=90)
    finally:
        await common.tear_down(
            [server] if server is not None else [], outbox, sink, database, caisse_id if args.redis else None
        )
    rate = len(done) / elapsed
    app_ms = cpu["app"] / max(len(done), 1) * 1000
    body = f"""
| what | value |
|---|---|
| layout | `guichet serve --workers 1`, {args.engine}{" + Redis" if args.redis else ""}, outbox in `guichet outbox work` |
| load | {args.concurrency} virtual users, {args.warmup:.0f} s warm-up, {elapsed:.1f} s measured |
| **complete registrations/s** | **{rate:.1f}** ({len(done)} done, {len(errors)} errors) |
| whole registration latency (8 requests + the email) | {latency_line(done)} |
| app CPU per registration | {app_ms:.0f} ms (one argon2id hash included) |
| peak RSS of the app process | {max(server.peak_rss.values()) / 1024:.0f} MiB |
| {common.describe_cpu(cpu, elapsed).split(":", 1)[0]} | {common.describe_cpu(cpu, elapsed).split(":", 1)[1].strip()} |
"""
    common.append_results(
        f"Registration ({args.engine}{' + Redis' if args.redis else ''})", body, facts=facts, write=not args.no_write
    )
    return {"rate": rate, "errors": len(errors), "cpu": cpu}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--redis", action="store_true")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--warmup", type=float, default=5)
    p.add_argument("--duration", type=float, default=20)
    p.add_argument("--registry", type=int, default=6000, help="registry persons (about a quarter can register)")
    p.add_argument("--max-hashes", type=int, default=2)
    p.add_argument("--no-write", action="store_true")
    return p


if __name__ == "__main__":
    asyncio.run(run(parser().parse_args()))
