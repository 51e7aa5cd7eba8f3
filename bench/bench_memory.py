"""Benchmark 4: collector memory (VmRSS) with 5000 and 20000 instruments, and over swaps.

An hour of market cannot be replayed at Dhan's pace here: the collector's clock is the real
clock (bars close by wall time), so "an hour" is reproduced as its packet count only. For
each instrument count the simulator ticks fast (a rate the collector sustains without loss
on this machine, see benchmark 2) for a bounded wall time; the script reads the collector's
VmRSS every second, and reports the RSS at the end, the packets handled and their
equivalence (packets = one hour at P packets/s per instrument), and the RSS slope over the
second half of the run in KiB per million packets — the figure that extrapolates to a full
hour at Dhan's few packets per second (a flat slope means per-packet work keeps nothing).
Raw ticks are stored (the default). The growth over 100 token swaps comes from benchmark 3's
run (sockets kept), read before the first swap, after the 10th and after the 100th.

    .venv/bin/python bench/bench_memory.py [--seconds 75]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    CollectorProc,
    Row,
    Sim,
    collector_config,
    instrument_keys,
    rss_kib,
    say,
    sim_range,
)

# Instrument count → ticks per second per instrument: 25,000 packets/s either way.
RUNS = {5000: 5.0, 20000: 1.25}


def run(instruments: int, tps: float, seconds: float) -> dict:
    keys = instrument_keys(instruments)
    with tempfile.TemporaryDirectory(prefix="dhanfeed-bench-mem-") as tmp:
        workdir = Path(tmp)
        token = workdir / "state" / "token.json"
        sim = Sim("--instruments", sim_range(instruments), "--ticks-per-second", str(tps),
                  "--issue-token", str(token))  # fmt: skip
        collector = None
        try:
            collector = CollectorProc(workdir, collector_config(workdir, sim, keys))
            shards = -(-instruments // 5000)
            collector.wait_for(
                "all sockets live",
                lambda s: s.get("sockets_live") == shards and s.get("packets", 0) > instruments,
                timeout=120,
            )
            samples = []  # (seconds, packets, rss KiB)
            started = time.monotonic()
            while (elapsed := time.monotonic() - started) < seconds:
                status = collector.status()
                samples.append((elapsed, status.get("packets", 0), rss_kib(collector.pid)))
                time.sleep(1.0)
            status = collector.status()
            samples.append((time.monotonic() - started, status["packets"], rss_kib(collector.pid)))
            if collector.terminate() != 0:
                raise RuntimeError(f"collector exit {collector.proc.returncode}")
        finally:
            if collector is not None:
                collector.kill()
            sim.stop()
    packets = samples[-1][1]
    half = samples[len(samples) // 2]
    slope = (samples[-1][2] - half[2]) / max(1, samples[-1][1] - half[1]) * 1e6
    return {
        "instruments": instruments,
        "tps": tps,
        "packets": packets,
        "rss_start_kib": samples[0][2],
        "rss_end_kib": samples[-1][2],
        "rss_max_kib": max(s[2] for s in samples),
        "slope_kib_per_m": slope,
        "per_instrument_hour_rate": packets / 3600 / instruments,
        "queue_end": status.get("backlog"),
        "store_pending_end": status.get("store_pending"),
    }


def main(argv: list[str] | None = None, swap_rss: dict | None = None) -> list[Row]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=75)
    args = ap.parse_args(argv)
    say(f"== 4. memory: {', '.join(map(str, RUNS))} instruments, {args.seconds:g}s each")
    rows = []
    for instruments, tps in RUNS.items():
        r = run(instruments, tps, args.seconds)
        say(
            f"  {instruments} instruments at {tps:g}/s: {r['packets']:,} packets (= one hour at"
            f" {r['per_instrument_hour_rate']:.3f} packets/s per instrument); RSS"
            f" {r['rss_start_kib'] / 1024:.1f} MiB at start, {r['rss_end_kib'] / 1024:.1f} MiB"
            f" at the end (max {r['rss_max_kib'] / 1024:.1f}); second-half slope"
            f" {r['slope_kib_per_m']:+.0f} KiB per million packets; backlog at end {r['queue_end']},"
            f" rows waiting for SQLite {r['store_pending_end']}"
        )
        hour_m = instruments * 2 * 3600 / 1e6  # a full hour at 2 packets/s per instrument
        rows += [
            Row("4 memory", f"RSS, {instruments} instruments, {r['packets'] / 1e6:.1f}M packets",
                f"{r['rss_end_kib'] / 1024:.1f} MiB"),
            Row("4 memory", f"RSS slope, {instruments} instruments",
                f"{r['slope_kib_per_m']:+.0f} KiB/M packets"
                f" (x {hour_m:.0f}M for an hour at 2/s: {r['slope_kib_per_m'] * hour_m / 1024:+.0f} MiB)"),
        ]  # fmt: skip
    if swap_rss:
        base, after = swap_rss.get("after 10", swap_rss["before"]), swap_rss["after all"]
        growth = (after - base) / base * 100
        total = (after - swap_rss["before"]) / swap_rss["before"] * 100
        control = (swap_rss["before"] - swap_rss["control start"]) / swap_rss["control start"]
        say(f"  over swaps (benchmark 3, sockets kept): RSS KiB {swap_rss};"
            f" growth {growth:+.1f}% from the 10th swap, {total:+.1f}% from the first;"
            f" the control stretch without swaps grew {control * 100:+.1f}%")  # fmt: skip
        rows.append(
            Row("4 memory", "RSS growth over swaps 10..100 (from swap 1)",
                f"{growth:+.1f}% ({total:+.1f}%)", "flat within 5%", abs(growth) <= 5)
        )  # fmt: skip
        rows.append(
            Row("4 memory", "RSS growth, same time without swaps (control)",
                f"{control * 100:+.1f}%")
        )  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
