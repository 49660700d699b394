"""Letters written per second into a postal spool whose index already holds many letters.

    .venv/bin/python bench/postal_spool.py                       # 200,000 earlier letters, 50 new ones

The idempotence check of each letter (was this message already written?) must not grow with the
spool's history: the index gains one line per letter for ever. Each new letter is timed whole
(PDF rendering included), next to the time to read the index once, which is what a check that
scans it would add to every letter.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import append_results, machine_facts  # noqa: E402


async def run(history: int, letters: int) -> dict[str, float]:
    from guichet.core.clock import FrozenClock
    from guichet.core.context import PluginContext
    from guichet.core.structs import Message, PostalAddress, Recipient
    from guichet.plugins.delivery_postal import hooks
    from guichet.testing.config import caisse_config

    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        spool = base / "spool"
        spool.mkdir()
        with open(spool / "index.jsonl", "w", encoding="utf-8") as index:
            for n in range(history):
                index.write(
                    f'{{"message_id": {10_000_000 + n}, "template": "temporary_password_letter", '
                    f'"file": "letter-{10_000_000 + n}.pdf", "pages": 1}}\n'
                )
        config = caisse_config(base, '[plugins.settings.delivery_postal]\nspool_dir = "spool"')
        [channel] = hooks.guichet_channels(
            context=PluginContext(
                config=config,
                database=None,  # type: ignore[arg-type]
                clock=FrozenClock(),
            )
        )
        recipient = Recipient(name="Marie DUPONT", address=PostalAddress(lines=("12 rue des Lilas", "13001 Marseille")))
        start = time.perf_counter()
        (spool / "index.jsonl").read_text(encoding="utf-8").splitlines()
        scan = time.perf_counter() - start
        times = []
        for n in range(letters):
            message = Message(
                id=n + 1,
                channel="postal",
                template="registration_letter",
                recipient=recipient,
                payload={"masked_identifier": "185*******123", "registered_on": "01/03/2026"},
                caisse_name="MSA Démo",
                created_at=dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC),
            )
            start = time.perf_counter()
            await channel.send(message)
            times.append(time.perf_counter() - start)
        return {"letter_ms": statistics.median(times) * 1000, "scan_ms": scan * 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--history", type=int, default=200_000, help="letters already in the index")
    parser.add_argument("--letters", type=int, default=50, help="new letters timed")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    small = asyncio.run(run(0, args.letters))
    large = asyncio.run(run(args.history, args.letters))
    body = (
        f"| index before | median time per new letter (PDF included) |\n|---|---|\n"
        f"| empty | {small['letter_ms']:.1f} ms |\n"
        f"| {args.history:,} letters | {large['letter_ms']:.1f} ms |\n\n"
        f"Reading that index once takes {large['scan_ms']:.1f} ms: what a check that scans it would add to "
        f"every letter."
    )
    append_results(
        "Postal spool: a new letter next to a long history", body, facts=machine_facts(), write=not args.no_write
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
