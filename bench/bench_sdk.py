"""Benchmark: Dhan's official SDK against the simulator (issue 11).

`dhanhq.marketfeed.MarketFeed` (dhanhq 2.3, installed for the benchmarks only, see
bench/requirements.txt) parses only the first packet of each WebSocket message, so it is a
check of Dhan's framing: one packet per message. Its URL is pointed at `bin/dhan_sim`; it
subscribes Ticker, Quote and Full instruments and runs for SECONDS; then the simulator's
market is stalled (no new packets), the SDK drains what is in flight, and the packets the
simulator sent on that socket (its own record) are compared with the packets the SDK
parsed, per type. They must be equal.

`--batch N` runs the simulator with N packets per message (the old framing), to show what
the SDK then loses; such a row is labelled as batched.

    .venv/bin/python bench/bench_sdk.py [--seconds 30] [--ticks-per-second 10] [--batch 1]
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Row, Sim, say  # noqa: E402

# (exchange segment code, security id, request code) as the SDK takes them.
TICKER, QUOTE, FULL = 15, 17, 21
INSTRUMENTS = [
    (1, "1333", TICKER), (0, "13", TICKER),          # an equity and an index in Ticker
    (1, "2885", QUOTE), (2, "55796", QUOTE),         # Quote (+ OI for the F&O contract)
    (2, "35001", FULL), (1, "11536", FULL),          # Full
]  # fmt: skip
SDK_TYPES = {"Ticker Data": "ticker", "Quote Data": "quote", "OI Data": "oi",
             "Previous Close": "prev_close", "Full Data": "full"}  # fmt: skip


def sdk_socket(sim: Sim) -> dict:
    return max(sim.admin("stats")["sockets"], key=lambda s: s["id"])


def run(seconds: float, tps: float, batch: int = 1) -> list[Row]:
    from dhanhq import DhanContext, MarketFeed  # benchmark-only dependency

    sim = Sim("--ticks-per-second", f"{tps:g}", "--instruments", "NSE_EQ:1333,IDX_I:13",
              "--batch", str(batch))  # fmt: skip
    try:
        token = sim.admin("issue-token", {})["access_token"]
        parsed: collections.Counter[str] = collections.Counter()
        lock = threading.Lock()

        def on_message(_feed: object, data: dict | None) -> None:
            with lock:
                parsed[SDK_TYPES.get((data or {}).get("type"), f"other:{data!r:.40}")] += 1

        MarketFeed.market_feed_wss = sim.feed_url  # the SDK's URL, pointed at the simulator
        feed = MarketFeed(DhanContext(sim.client_id, token), INSTRUMENTS, version="v2",
                          on_message=on_message)  # fmt: skip
        feed.start()
        time.sleep(seconds)
        sim.admin("fault", {"kind": "stall", "seconds": 3600})  # no new packets from here
        sent_before = -1
        while (sent := sdk_socket(sim)["packets_sent"]) != sent_before:  # the writer is idle
            sent_before = sent
            time.sleep(0.5)
        deadline = time.monotonic() + 30
        while sum(parsed.values()) < sent and time.monotonic() < deadline:
            time.sleep(0.1)
        record = sdk_socket(sim)
        with lock:
            got = dict(parsed)
        feed.close_connection()
    finally:
        sim.stop()
    total = sum(got.values())
    say(f"  SDK dhanhq MarketFeed, {len(INSTRUMENTS)} instruments (Ticker, Quote, Full), "
        f"{seconds:g} s at {tps:g} packets/s each (+ Quote's OI packets):")  # fmt: skip
    say(f"  simulator sent {record['packets_sent']} packets in {record['messages_sent']} "
        f"messages; the SDK parsed {total}: {got}")  # fmt: skip
    sent = record["packets_sent"]
    if batch > 1:
        metric = f"sent / parsed by the SDK (BATCHED --batch {batch}, not Dhan's framing)"
        return [Row("sdk", metric, f"{sent} / {total}")]
    per_type = ", ".join(f"{k} {v}" for k, v in sorted(got.items()))
    return [
        Row(
            "sdk",
            "packets sent by the simulator / parsed by the SDK",
            f"{sent} / {total}",
            "equal",
            total == sent,
        ),  # fmt: skip
        Row("sdk", "parsed per type", per_type),
    ]


def main(argv: list[str] | None = None) -> list[Row]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--ticks-per-second", type=float, default=10.0)
    ap.add_argument("--batch", type=int, default=1)
    args = ap.parse_args(argv)
    say(f"bench sdk (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    return run(args.seconds, args.ticks_per_second, args.batch)


if __name__ == "__main__":
    rows = main()
    sys.exit(0 if all(r.ok is not False for r in rows) else 1)
