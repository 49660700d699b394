"""The OpenID Connect provider and forward auth under load: requests per second and CPU per request.

    .venv/bin/python bench/oidc.py                 # SQLite, `guichet serve --workers 1`
    .venv/bin/python bench/oidc.py --engine postgres

* forward auth: ``GET /auth/verifier`` with a logged-in session's cookie, driven by wrk (one thread,
  keep-alive): session load, account read, the sector's subject, an ES256 JWT signed, headers;
* userinfo: ``GET /oidc/userinfo`` with one access token, driven by wrk: the token, its grant and
  the account read, the claims as JSON;
* the code exchange: each of ``--clients`` simulated services loops on ``GET /oidc/autoriser`` (a
  logged-in session: a code at once) then ``POST /oidc/jeton`` (client_secret_basic, PKCE): the
  code's conditional update, the access token stored, the subject, an RS256 ID token signed. Codes
  are single use, so wrk cannot replay one: an asyncio loop with httpx drives this pair.

People log in first through the real pages (password, then the code read from the outbox).

Forward auth and userinfo are each set next to a bare Litestar endpoint (bench/bare_app.py) doing
the one read of the same store on the same engine (the session row; the access-token row), driven
the same way: the ratio of their CPU per request is the target of issue 18 (≥ 50 %), and their p99
at half of their peak rate (< 5 ms), the requests then arriving at random at that rate (a Poisson
process, bench/steps.py) from up to ``--half-connections`` connections.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import re
import secrets
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import BENCH_PASSWORD, BENCH_SECRET, OWASP, BenchDatabase, CpuMeter, Server  # noqa: E402
from steps import lua, run_wrk, start_bare  # noqa: E402

from guichet.core.keys import token_digest  # noqa: E402

CLIENT_SECRET = "bench-client-secret-0123456789abcdef"
CALLBACK = "https://service.bench.invalid/retour"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def oidc_section(issuer: str) -> str:
    return f"""
[oidc]
enabled = true
issuer = "{issuer}"
forward_auth = true

[[oidc.clients]]
id = "banc"
name = "Service de mesure"
redirect_uris = ["{CALLBACK}"]
secret = {{ value = "{CLIENT_SECRET}" }}
"""


async def login(base: str, config_path: Path, identifier: str) -> str:
    """A real login through the pages; the session cookie's value."""
    import httpx

    from guichet.core.config import load_config
    from guichet.core.database import Database
    from guichet.core.keys import Keys
    from guichet.core.outbox import open_sealed

    async with httpx.AsyncClient(base_url=base, follow_redirects=False, timeout=30) as browser:
        page = await browser.get("/connexion")
        r = await browser.post(
            "/connexion",
            data={"identifier": identifier, "password": BENCH_PASSWORD, "csrf_token": CSRF.search(page.text).group(1)},
        )  # type: ignore[union-attr]
        assert r.headers.get("location") == "/connexion/code", r.text[-500:]
        database = Database.from_config(load_config(config_path))
        await database.connect()
        try:
            t = database.t.OutboxMessage
            rows = (
                await t.select(t.sealed)
                .where(t.template == "login_code")
                .order_by(t.id, ascending=False)
                .limit(1)
                .run()
            )
            content = open_sealed(Keys(BENCH_SECRET), rows[0]["sealed"])
            assert content is not None
            code = str(content.payload["code"])
        finally:
            await database.close()
        page = await browser.get("/connexion/code")
        r = await browser.post("/connexion/code", data={"code": code, "csrf_token": CSRF.search(page.text).group(1)})  # type: ignore[union-attr]
        assert r.status_code == 303, r.text[-500:]
        return next(v for k, v in browser.cookies.items() if k.endswith("session"))


async def exchange(client: Any, basic: str) -> Any:
    """One authorization (the session logged in: a code at once) and its token request."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    r = await client.get(
        "/oidc/autoriser?"
        + urlencode(
            {
                "response_type": "code",
                "client_id": "banc",
                "redirect_uri": CALLBACK,
                "scope": "openid profile",
                "state": "s",
                "nonce": "n",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
    )
    code = parse_qs(urlsplit(r.headers.get("location", "")).query).get("code", [""])[0]
    return await client.post(
        "/oidc/jeton",
        headers={"authorization": f"Basic {basic}"},
        data={"grant_type": "authorization_code", "code": code, "code_verifier": verifier, "redirect_uri": CALLBACK},
    )


async def access_token(base: str, cookie: str) -> str:
    import httpx

    basic = base64.b64encode(f"banc:{CLIENT_SECRET}".encode()).decode()
    async with httpx.AsyncClient(
        base_url=base, follow_redirects=False, timeout=30, cookies={"guichet_session": cookie}
    ) as client:
        answer = await exchange(client, basic)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


async def code_exchanges(base: str, cookies: list[str], seconds: float) -> tuple[int, list[float], int]:
    """Each session a service looping authorize + token; (pairs done, pair latencies, failures)."""
    import httpx

    done: list[float] = []
    failures = 0
    deadline = time.monotonic() + seconds
    basic = base64.b64encode(f"banc:{CLIENT_SECRET}".encode()).decode()

    async def service(cookie: str) -> None:
        nonlocal failures
        async with httpx.AsyncClient(
            base_url=base, follow_redirects=False, timeout=30, cookies={"guichet_session": cookie}
        ) as client:
            while time.monotonic() < deadline:
                start = time.perf_counter()
                t = await exchange(client, basic)
                if t.status_code == 200 and "id_token" in t.text:
                    done.append(time.perf_counter() - start)
                else:
                    failures += 1

    await asyncio.gather(*(service(c) for c in cookies))
    return len(done), done, failures


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--half-connections",
        type=int,
        default=8,
        help="connections of the half-of-peak runs, which send requests at half of the peak rate, arriving at "
        "random as independent page views do (bench/steps.py, PACED): at most this many are under way at once",
    )
    parser.add_argument("--no-write", action="store_true", help="print only, do not append to docs/benchmarks.md")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy (GIL holder) on the server during the forward-auth run: where it goes",
    )
    return parser


def against_bare(  # an endpoint at saturation, the bare one driven the same way, the endpoint at half its peak
    url: str,
    headers: dict[str, str],
    bare_url: str,
    args: argparse.Namespace,
    folder: Path,
    groups: dict[str, list[int]],
    bare_pid: int,
    profile_pid: int | None = None,
) -> dict[str, Any]:
    script = lua("GET", headers)
    for target, warm in ((url, script), (bare_url, lua("GET", {}))):
        run_wrk(target, warm, connections=args.connections, seconds=3, folder=folder, groups={})  # warm-up
    spy = None
    if profile_pid is not None:
        profile_path = folder / f"profile-{time.monotonic_ns()}.raw"
        spy = common.start_profiler(profile_pid, args.seconds, profile_path, gil_only=True)
    peak = run_wrk(url, script, connections=args.connections, seconds=args.seconds, folder=folder, groups=groups)
    if spy is not None:
        spy.wait()
        print(f"{url}:\n{common.summarise_profile(profile_path, top=40)}")
    bare = run_wrk(
        bare_url,
        lua("GET", {}),
        connections=args.connections,
        seconds=args.seconds,
        folder=folder,
        groups={"bare app": [bare_pid]},
    )
    half_connections = args.half_connections
    half = run_wrk(
        url,
        lua("GET", headers, rate_per_s=peak["rps"] / 2),
        connections=half_connections,
        seconds=args.seconds,
        folder=folder,
        groups=groups,
    )
    cpu_ms = peak["cpu"]["guichet serve"] / max(peak["requests"], 1) * 1000
    bare_cpu_ms = bare["cpu"]["bare app"] / max(bare["requests"], 1) * 1000
    return {
        "peak": peak,
        "bare": bare,
        "half": half,
        "half_target": peak["rps"] / 2,
        "half_connections": half_connections,
        "cpu_ms": cpu_ms,
        "bare_cpu_ms": bare_cpu_ms,
        "half_cpu_ms": half["cpu"]["guichet serve"] / max(half["requests"], 1) * 1000,
        "ratio": bare_cpu_ms / cpu_ms if cpu_ms else float("nan"),
    }


def rows(name: str, bare_name: str, m: dict[str, Any], connections: int) -> str:
    def row(what: str, w: dict[str, Any], cpu_ms: float) -> str:
        errors = w["non_2xx_3xx"] + w["socket_errors"]
        return f"| {what} | {w['rps']:.0f} | {w['p50_us'] / 1000:.1f} | {w['p99_us'] / 1000:.1f} | {cpu_ms:.2f} ms | {errors} |"

    return "\n".join(
        [
            row(f"{name} (wrk, {connections} connections)", m["peak"], m["cpu_ms"]),
            row(f"bare Litestar, {bare_name}", m["bare"], m["bare_cpu_ms"]),
            row(
                f"{name} at half of its peak (target {m['half_target']:.0f}/s, {m['half_connections']} connections)",
                m["half"],
                m["half_cpu_ms"],
            ),
        ]
    )


def verdicts(name: str, m: dict[str, Any]) -> str:
    return (
        f"* **{name} ÷ bare endpoint, CPU per request: {m['ratio'] * 100:.0f} %** (bare {m['bare_cpu_ms']:.2f} ms ÷ "
        f"{m['cpu_ms']:.2f} ms; target ≥ 50 %); requests/s ratio at saturation "
        f"{m['peak']['rps'] / max(m['bare']['rps'], 1) * 100:.0f} %\n"
        f"* **{name} p99 at half of peak: {m['half']['p99_us'] / 1000:.2f} ms** (target < 5 ms)"
    )


async def run(args: argparse.Namespace) -> dict[str, float]:
    facts = common.machine_facts()
    folder = common.run_folder("oidc")
    database = BenchDatabase(args.engine, folder)
    await database.create()
    port = common.free_port()
    base = f"http://127.0.0.1:{port}"
    config_path = folder / "bench.toml"
    config_path.write_text(
        common.config_text(
            caisse_id="bench-oidc", database_url=database.url, smtp_port=9, argon2=OWASP, extra=oidc_section(base)
        )
    )
    import subprocess

    subprocess.run([common.GUICHET, "db", "upgrade", "--config", str(config_path)], check=True, capture_output=True)
    accounts = await common.prepare_database(config_path, registry_count=max(50, args.clients), accounts=args.clients)
    server = Server(config_path, port=port).start()
    bare = None
    try:
        cookies = [await login(base, config_path, a["identifier"]) for a in accounts]
        groups = {"guichet serve": server.all_pids()}
        bare, bare_url = start_bare(config_path, "")
        profiled = server.worker_pids()[0] if args.profile else None

        def measure(path: str, headers: dict[str, str], bare_path: str) -> dict[str, Any]:
            return against_bare(
                base + path, headers, bare_url.replace("/flow", bare_path), args, folder, groups, bare.pid, profiled
            )

        forward = measure(
            "/auth/verifier",
            {"Cookie": f"guichet_session={cookies[0]}"},
            f"/session?key={token_digest(cookies[0])}",
        )
        bearer = await access_token(base, cookies[0])
        info = measure("/oidc/userinfo", {"Authorization": f"Bearer {bearer}"}, f"/token?digest={token_digest(bearer)}")
        meter = CpuMeter()
        meter.begin(groups)
        start = time.monotonic()
        pairs, latencies, failures = await code_exchanges(base, cookies, args.seconds)
        elapsed = time.monotonic() - start
        cpu = meter.end()
    finally:
        if bare is not None:
            common.stop_process(bare)
        server.stop()
        await database.drop()
    pair_cpu_ms = cpu["guichet serve"] / max(pairs, 1) * 1000
    body = f"""
| what | requests/s | p50 ms | p99 ms | server CPU per request | errors |
| --- | --- | --- | --- | --- | --- |
{rows("forward auth `GET /auth/verifier`", "one read of the same session store (`GET /session`, same engine)", forward, args.connections)}
{rows("userinfo `GET /oidc/userinfo`", "one read of the same access-token store (`GET /token`, same engine)", info, args.connections)}
| code exchange: `GET /oidc/autoriser` + `POST /oidc/jeton` ({args.clients} services) | {pairs / elapsed:.0f} pairs | {common.percentile(latencies, 50) * 1000:.1f} | {common.percentile(latencies, 99) * 1000:.1f} | {pair_cpu_ms:.2f} ms per pair | {failures} |

{verdicts("forward auth", forward)}
{verdicts("userinfo", info)}

{common.describe_cpu(forward["peak"]["cpu"], forward["peak"]["seconds"])} (forward auth); {common.describe_cpu(cpu, elapsed)} (code exchange).
"""
    common.append_results(
        f"OpenID Connect and forward auth: `guichet serve --workers 1`, {args.engine}",
        body,
        facts=facts,
        write=not args.no_write,
    )
    return {
        "forward_cpu_ms": forward["cpu_ms"],
        "bare_cpu_ms": forward["bare_cpu_ms"],
        "ratio": forward["ratio"],
        "half_p99_ms": forward["half"]["p99_us"] / 1000,
        "forward_rps": forward["peak"]["rps"],
        "userinfo_cpu_ms": info["cpu_ms"],
        "userinfo_bare_cpu_ms": info["bare_cpu_ms"],
        "userinfo_ratio": info["ratio"],
        "userinfo_half_p99_ms": info["half"]["p99_us"] / 1000,
        "pair_cpu_ms": pair_cpu_ms,
        "pairs_per_s": pairs / elapsed,
    }


if __name__ == "__main__":
    asyncio.run(run(parser().parse_args()))
