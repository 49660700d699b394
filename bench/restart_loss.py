"""POSTs lost while ``guichet serve`` restarts behind nginx, per way of restarting and nginx settings.

    .venv/bin/python bench/restart_loss.py                  # 3 runs of each variant, 8 browsers
    .venv/bin/python bench/restart_loss.py --runs 5 --browsers 16 --workers 1

Each run: ``guichet serve`` (SQLite, demo caisse) behind Debian's nginx, browsers posting one
request after the other (``POST /deconnexion`` with a valid CSRF token: the whole POST path, no
argon2), a restart in the middle, then as many requests again. A request is lost when the browser
gets no answer from the app (a connection error, or nginx's own 502/504). Prints one line per
variant; docs/deploy.md quotes the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.ops import restart_load as rl  # noqa: E402
from tests.ops.serving import Served  # noqa: E402

NO_RETRY = rl.GUICHET_LOCATION.replace(
    "        proxy_next_upstream error non_idempotent;\n        proxy_next_upstream_tries 2;\n", ""
)
ONE_SERVER = "upstream guichet {\n    server 127.0.0.1:8000 max_fails=0;\n}"

# (label, upstream, location, restart): restart is "stop-start" (systemctl restart) or "sighup" (reload)
VARIANTS: list[tuple[str, str, str, str]] = [
    ("upstream keep-alive, no retry; systemctl restart", rl.KEEPALIVE_UPSTREAM, rl.KEEPALIVE_LOCATION, "stop-start"),
    ("upstream keep-alive, no retry; SIGHUP", rl.KEEPALIVE_UPSTREAM, rl.KEEPALIVE_LOCATION, "sighup"),
    ("a connection per request, no retry; SIGHUP", ONE_SERVER, NO_RETRY, "sighup"),
    (
        "recommended: a connection per request, one retry on a failed connection; SIGHUP",
        rl.GUICHET_UPSTREAM,
        rl.GUICHET_LOCATION,
        "sighup",
    ),
]


async def run(upstream: str, location: str, restart: str, *, workers: int, browsers: int) -> tuple[rl.Tally, int]:
    folder = Path(tempfile.mkdtemp(prefix="guichet-restart-"))
    served = Served(rl.app_config(folder), workers=workers).start()
    nginx = rl.Nginx(served.port, upstream=upstream, location=location)
    try:
        nginx.start()
        if restart == "sighup":

            def again() -> Any:
                return rl.restart_by_sighup(served, workers)
        else:

            def again() -> Any:
                return rl.restart_by_stop_and_start(served)

        tally = await rl.restart_under_load(nginx.url, again, browsers=browsers)
        retried = sum(1 for line in nginx.errors().splitlines() if "upstream" in line and "[error]" in line)
        return tally, retried
    finally:
        nginx.stop()
        served.stop()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--browsers", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    options = parser.parse_args()
    if rl.nginx_binary() is None:
        print("bench/restart_loss.py needs nginx: apt-get install nginx", file=sys.stderr)
        return 1
    print(f"{options.runs} run(s) per variant, {options.browsers} browsers, {options.workers} worker(s)")
    for label, upstream, location, restart in VARIANTS:
        sent = during = lost = failed_connections = 0
        kinds: dict[str, int] = {}
        for _ in range(options.runs):
            tally, retried = await run(upstream, location, restart, workers=options.workers, browsers=options.browsers)
            sent += tally.sent
            during += tally.during_restart
            lost += sum(tally.lost.values())
            failed_connections += retried
            for kind, count in tally.lost.items():
                kinds[kind] = kinds.get(kind, 0) + count
        print(
            f"{label}: {lost} lost of {during} sent during the restarts ({sent} in all); "
            f"upstream connection errors logged by nginx: {failed_connections}; {kinds or ''}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
