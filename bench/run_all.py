"""Every bench in one go (``make bench``), then a summary against the targets of issue 8.

    .venv/bin/python bench/run_all.py                 # about 10 minutes on 2 cores
    .venv/bin/python bench/run_all.py --quick         # shorter windows, for a smoke run
    .venv/bin/python bench/run_all.py --no-write      # print only

Each bench appends its own section to docs/benchmarks.md; this appends the summary.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import login  # noqa: E402
import register  # noqa: E402
import steps  # noqa: E402


def _args(module: Any, *argv: str) -> argparse.Namespace:
    return module.parser().parse_args(list(argv))  # type: ignore[no-any-return]


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    options = parser.parse_args()
    facts = common.machine_facts()
    duration = "8" if options.quick else "20"
    common_args = ["--duration", duration] + (["--no-write"] if options.no_write else [])
    hashes = ["--max-hashes", "2"]  # 2 cores: two hashes at once keep both busy; more only cost memory

    users = ["--concurrency", "96"]  # enough users to keep the cores busy while codes travel (~1 s)
    owasp = await login.run(_args(login, *common_args, *hashes, *users))
    keycloak = await login.run(_args(login, "--params", "keycloak", *common_args, *hashes, *users))
    fragments = await steps.run(
        _args(steps, "--duration", "5" if options.quick else "10", *(["--no-write"] if options.no_write else []))
    )
    registrations = await register.run(_args(register, *common_args, *hashes))
    one = await login.run(
        _args(login, "--engine", "postgres", "--redis", "--workers", "1", *common_args, *hashes, *users)
    )
    two = await login.run(
        _args(
            login,
            "--engine",
            "postgres",
            "--redis",
            "--workers",
            "2",
            *common_args,
            "--max-hashes",
            "1",
            "--concurrency",
            "128",
        )
    )

    login_rate = owasp["rate"]
    nonhashing = min(fragments["fragment"]["rps"], fragments["post"]["rps"])
    peak_rss = max(r["peak_rss_mib"] for r in (owasp, keycloak, one, two))
    rows = [
        (
            "login ≥ 90 % of the one-core argon2id ceiling (OWASP parameters)",
            f"{owasp['rate']:.1f}/s ÷ {owasp['ceiling']:.1f}/s = {owasp['ratio'] * 100:.0f} %",
            owasp["ratio"] >= 0.9,
        ),
        (
            "at Keycloak's parameters (m=7168, t=5, p=1), full logins per vCPU ≥ Keycloak's sizing of 15 "
            "password-only logins/s per vCPU",
            f"{keycloak['rate'] / 2:.1f} logins/s per vCPU ({keycloak['rate']:.1f}/s on 2; "
            f"{keycloak['ratio'] * 100:.0f} % of its one-core ceiling, {keycloak['ceiling']:.1f}/s)",
            keycloak["rate"] / 2 >= 15,
        ),
        (
            "every non-hashing step ≥ 20 × the login rate",
            f"slowest measured ({nonhashing:,.0f}/s) ÷ {login_rate:.1f}/s = {nonhashing / login_rate:.0f} ×",
            nonhashing >= 20 * login_rate,
        ),
        ("step fragment ≥ 50 % of the bare endpoint", f"{fragments['ratio'] * 100:.0f} %", fragments["ratio"] >= 0.5),
        (
            "fragment p99 < 20 ms at half of peak",
            f"{fragments['half']['p99_us'] / 1000:.1f} ms",
            fragments["half"]["p99_us"] < 20_000,
        ),
        ("< 150 MB RSS per worker (peak, logins)", f"{peak_rss:.0f} MiB", peak_rss * 1.048576 < 150),
        (
            "2 processes ≥ 1.8 × one process (PostgreSQL + Redis, logins)",
            f"{two['rate']:.1f}/s ÷ {one['rate']:.1f}/s = {two['rate'] / one['rate']:.2f} × (app CPU per login "
            f"{one['app_cpu_ms']:.1f} ms with one process, {two['app_cpu_ms']:.1f} ms with two)",
            two["rate"] >= 1.8 * one["rate"],
        ),
        ("complete registrations/s (through the code step)", f"{registrations['rate']:.1f}/s", None),
    ]
    body = "| target | measured | met |\n|---|---|---|\n" + "\n".join(
        f"| {what} | {value} | {'—' if ok is None else 'yes' if ok else '**no**'} |" for what, value, ok in rows
    )
    common.append_results(
        "Summary against the targets (bench/run_all.py)", body, facts=facts, write=not options.no_write
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
