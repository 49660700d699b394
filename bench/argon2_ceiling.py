"""The argon2id-verify ceiling of one core: a tight loop of PasswordHasher.verify in one process.

    .venv/bin/python bench/argon2_ceiling.py                       # guichet's default (19 MiB, t=2, p=1)
    .venv/bin/python bench/argon2_ceiling.py --keycloak            # Keycloak's default (7 MiB, t=5, p=1)
    .venv/bin/python bench/argon2_ceiling.py --processes 2         # every core at once

A login can never beat this: it is the rate at which one core verifies passwords and does
nothing else. The login benches run it in the same run, at the same parameters.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def loop(memory_kib: int, time_cost: int, parallelism: int, seconds: float) -> dict[str, float]:
    from argon2 import PasswordHasher

    hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)
    stored = hasher.hash("Banc-Essai-Mesure-2026!")
    hasher.verify(stored, "Banc-Essai-Mesure-2026!")  # warm-up: the first call maps the memory
    count = 0
    start = time.perf_counter()
    cpu_start = time.process_time()
    while (elapsed := time.perf_counter() - start) < seconds:
        hasher.verify(stored, "Banc-Essai-Mesure-2026!")
        count += 1
    cpu = time.process_time() - cpu_start
    return {
        "count": count,
        "seconds": elapsed,
        "per_second": count / elapsed,
        "ms_per_verify": elapsed / count * 1000,
        "cpu_seconds": cpu,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memory-kib", type=int, default=19456)
    parser.add_argument("--time-cost", type=int, default=2)
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--keycloak", action="store_true", help="m=7168 KiB, t=5, p=1")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--processes", type=int, default=1, help="run this many loops at once, one per process")
    parser.add_argument("--json", action="store_true", help="one JSON line (used by the other benches)")
    args = parser.parse_args()
    if args.keycloak:
        args.memory_kib, args.time_cost, args.parallelism = 7168, 5, 1
    if args.processes > 1:
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--memory-kib",
                    str(args.memory_kib),
                    "--time-cost",
                    str(args.time_cost),
                    "--parallelism",
                    str(args.parallelism),
                    "--seconds",
                    str(args.seconds),
                    "--json",
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(args.processes)
        ]
        results = [json.loads(p.communicate()[0]) for p in procs]
        total = sum(r["per_second"] for r in results)
        print(
            f"argon2id m={args.memory_kib} KiB t={args.time_cost} p={args.parallelism}: "
            f"{total:.1f} verifications/s with {args.processes} processes "
            "(" + ", ".join(f"{r['per_second']:.1f}" for r in results) + ")"
        )
        return 0
    result = loop(args.memory_kib, args.time_cost, args.parallelism, args.seconds)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"argon2id m={args.memory_kib} KiB t={args.time_cost} p={args.parallelism}: "
            f"{result['per_second']:.1f} verifications/s on one core ({result['ms_per_verify']:.2f} ms each)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
