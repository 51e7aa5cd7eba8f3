"""Benchmark 2: end to end at Dhan's framing (one packet per message): `bin/dhan_sim` →
`bin/collector` → SQLite over loopback.

Every run: a fresh simulator (Quote mode, one packet per message, one trade per packet) and
a fresh collector (1-minute bars). The simulator's own record says what it sent; a lagging
reader slows a TCP sender instead of losing data, so each rate is judged at what the
simulator *achieved* over the window (its `messages_sent`), which must be ≥ 97 % of the rate
asked.

1. CPU per message, side by side in one run against one simulator at one asked rate (5000
   instruments, one socket): first a plain socket that reads without parsing frames, then
   the bare websocket-client `recv()` loop (both readers of `bench_ws_clients.py`, each its
   own process, CPU of its loop), then `bin/collector` with raw ticks stored (CPU of the
   whole process over the window, from /proc) on the same simulator. The ratio to the
   websocket-client loop is the goal's (≤ 3×); the collector uses websocket-client for the
   handshake and sends, and cuts frames out of its reads itself.
2. Zero loss at rising rates (20000 instruments over 4 sockets, Dhan's maximum), with and
   without raw ticks, each held for `--window` seconds: lost = ticks the simulator delivered
   minus ticks counted in the bars or, with raw ticks, minus distinct stored ticks, whichever
   is more (the collector's own `dropped` count, printed beside, says how much of it it knew). A rate passes when nothing is lost and the simulator
   achieved it.
3. The same with a ticks table that already holds `--prefill` rows of today (a busy day),
   written before the collector starts.

    .venv/bin/python bench/bench_e2e.py [--window 60] [--rates 30000,50000,70000,50000n]
        [--prefill 20000000] [--prefill-rate 50000] [--cpu-rate 20000]

A trailing `n` on a rate: without raw ticks.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
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
    cpu_seconds,
    instrument_keys,
    say,
    sim_range,
)
from bench_ws_clients import measure as measure_bare_client  # noqa: E402

from dhanfeed.store import SqliteStore  # noqa: E402
from dhanfeed.store.sqlite import tick_table  # noqa: E402

ACHIEVED = 0.97  # the simulator must send at least this share of the asked rate
PREFILL_FIRST_ID = 900_000  # prefilled rows belong to other instruments than the run's


def start_sim(instruments: int, rate: float) -> Sim:
    return Sim("--instruments", sim_range(instruments), "--ticks-per-second",
               f"{rate / instruments:g}", "--trades-per-packet", "1")  # fmt: skip


def sent_messages(sim: Sim) -> int:
    return sum(s["messages_sent"] for s in sim.admin("stats")["sockets"])


def start_collector(workdir: Path, sim: Sim, keys: list[str], store_ticks: bool) -> CollectorProc:
    (workdir / "state").mkdir(exist_ok=True)
    sim.admin("issue-token", {"path": str(workdir / "state" / "token.json")})
    collector = CollectorProc(
        workdir, collector_config(workdir, sim, keys, store_ticks=store_ticks)
    )
    shards = -(-len(keys) // 5000)
    collector.wait_for(
        "all sockets live",
        lambda s: s.get("sockets_live") == shards and s.get("packets", 0) > len(keys),
        timeout=180,
    )
    return collector


def window(sim: Sim, collector: CollectorProc, seconds: float) -> dict:
    """Sent, received and collector CPU over `seconds`, after a short settling time."""
    time.sleep(3)  # the subscribe burst and the first bars are behind us
    sent0, s0, cpu0, t0 = (
        sent_messages(sim),
        collector.status(),
        cpu_seconds(collector.pid),
        time.monotonic(),
    )
    peak_backlog = peak_delay = 0.0
    while time.monotonic() - t0 < seconds:
        time.sleep(1)
        s = collector.status()
        peak_backlog = max(peak_backlog, s.get("backlog", 0))
        peak_delay = max(peak_delay, s.get("delay_s", 0.0))
    sent1, s1, cpu1, t1 = (
        sent_messages(sim),
        collector.status(),
        cpu_seconds(collector.pid),
        time.monotonic(),
    )
    return {
        "window_s": t1 - t0,
        "sent_per_s": (sent1 - sent0) / (t1 - t0),
        "received_per_s": (s1["packets"] - s0["packets"]) / (t1 - t0),
        "cpu_s": cpu1 - cpu0,
        "cpu_us": (cpu1 - cpu0) / max(1, s1["packets"] - s0["packets"]) * 1e6,
        "peak_backlog": peak_backlog,
        "peak_delay_s": peak_delay,
        "behind": s1.get("behind"),
        "lag_s": s1.get("lag_s"),
    }


def check_store(collector: CollectorProc, keys: list[str], sim: Sim, store_ticks: bool) -> dict:
    stats = sim.admin("stats")["instruments"]
    delivered = sum(stats[k]["delivered"] for k in keys)
    first, last = (int(keys[i].split(":")[1]) for i in (0, -1))
    with collector.db() as db:
        # Every accepted trade counts once in its bar's `ticks`: the end-to-end count.
        in_bars = db.execute("SELECT sum(ticks) FROM candles WHERE interval_s = 60").fetchone()[0]
        ticks_lost = 0
        if store_ticks:
            stored = {
                f"{seg}:{sid}": n
                for seg, sid, n in db.execute(
                    "SELECT segment, security_id, count(DISTINCT cum_volume) FROM ticks"
                    " WHERE security_id BETWEEN ? AND ? GROUP BY segment, security_id",
                    (first, last),
                )
            }
            ticks_lost = sum(max(0, stats[k]["delivered"] - stored.get(k, 0)) for k in keys)
    final = collector.status()
    bars_lost = delivered - (in_bars or 0)
    return {
        "delivered": delivered,
        "bars_lost": bars_lost,
        "ticks_lost": ticks_lost,
        "dropped": final.get("dropped", 0),
        # `dropped` (the collector's own count) is a subset of these, not an addition.
        "lost": max(bars_lost, ticks_lost),
    }


def prefill(database: Path, rows: int) -> float:
    """Today's tick table with `rows` rows of other instruments; seconds it took."""
    started = time.monotonic()
    SqliteStore(database).close()  # the schema
    table = tick_table(int(time.time()))
    conn = sqlite3.connect(database, isolation_level=None)
    try:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (segment TEXT NOT NULL, security_id INTEGER"
            " NOT NULL, ltt_utc INTEGER NOT NULL, ltp REAL NOT NULL, ltq INTEGER, cum_volume"
            " INTEGER, received_utc REAL NOT NULL)"
        )
        now = int(time.time())
        conn.execute(
            f"WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {rows - 1})"
            f" INSERT INTO {table} SELECT 'NSE_EQ', {PREFILL_FIRST_ID} + i % 5000,"
            f" {now - 3600} + i / 5000, 100.0 + (i % 97) * 0.05, 1, i / 5000 + 1,"
            f" {now - 3600} + i / 5000 + 0.2 FROM n"
        )
    finally:
        conn.close()
    return time.monotonic() - started


def run_rate(
    instruments: int, rate: float, seconds: float, store_ticks: bool, prefill_rows: int = 0
) -> dict:
    keys = instrument_keys(instruments)
    with tempfile.TemporaryDirectory(prefix="dhanfeed-bench-e2e-") as tmp:
        workdir = Path(tmp)
        filled_in = 0.0
        if prefill_rows:
            filled_in = prefill(workdir / "data" / "candles.sqlite", prefill_rows)
        sim = start_sim(instruments, rate)
        collector = None
        try:
            load0 = os.getloadavg()[0]
            collector = start_collector(workdir, sim, keys, store_ticks)
            result = window(sim, collector, seconds)
            if collector.terminate() != 0:
                raise RuntimeError(f"collector exit {collector.proc.returncode}")
            result.update(check_store(collector, keys, sim, store_ticks))
            result.update(
                instruments=instruments,
                rate=rate,
                store_ticks=store_ticks,
                prefill=prefill_rows,
                prefill_s=filled_in,
                load=(load0, os.getloadavg()[0]),
                achieved=result["sent_per_s"] >= ACHIEVED * rate,
            )
            result["zero_loss"] = result["lost"] == 0 and result["achieved"]
            return result
        finally:
            if collector is not None:
                collector.kill()
            sim.stop()


def cpu_side_by_side(rate: float, seconds: float) -> dict:
    """The bare websocket-client loop, then the collector, on one simulator at one rate."""
    instruments = 5000
    keys = instrument_keys(instruments)
    sim = start_sim(instruments, rate)
    collector = None
    try:
        raw = measure_bare_client(sim, "raw", instruments, seconds, 1)
        bare = measure_bare_client(sim, "websocket-client", instruments, seconds, 1)
        with tempfile.TemporaryDirectory(prefix="dhanfeed-bench-cpu-") as tmp:
            collector = start_collector(Path(tmp), sim, keys, store_ticks=True)
            ours = window(sim, collector, seconds)
            collector.terminate()
            collector = None
    finally:
        if collector is not None:
            collector.kill()
        sim.stop()
    return {"raw": raw, "bare": bare, "collector": ours, "load": os.getloadavg()[0]}


def describe(r: dict) -> str:
    ticks = "raw ticks" if r["store_ticks"] else "no raw ticks"
    prefilled = f", ticks table prefilled with {r['prefill']:,} rows" if r["prefill"] else ""
    return f"{r['rate']:,.0f}/s asked, {r['instruments']} instruments, {ticks}{prefilled}"


def main(argv: list[str] | None = None) -> list[Row]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instruments", type=int, default=20000)
    ap.add_argument("--rates", default="30000,50000,70000,50000n,70000n")
    ap.add_argument("--window", type=float, default=60.0)
    ap.add_argument("--cpu-rate", type=float, default=20000)
    ap.add_argument("--cpu-window", type=float, default=20.0)
    ap.add_argument("--prefill", type=int, default=20_000_000)
    ap.add_argument("--prefill-rate", type=float, default=50000)
    args = ap.parse_args(argv)
    rows: list[Row] = []

    say(f"== 2. end to end, one packet per message (load average {os.getloadavg()[0]:.1f} on"
        f" {os.cpu_count()} cores)")  # fmt: skip
    if args.cpu_rate:
        cpu = cpu_side_by_side(args.cpu_rate, args.cpu_window)
        bare, ours = cpu["bare"], cpu["collector"]
        ratio = ours["cpu_us"] / bare["us_per_msg"]
        say(f"  CPU per message at {args.cpu_rate:,.0f}/s asked (5000 instruments, one socket):"
            f" bare websocket-client recv {bare['us_per_msg']:.2f} µs ({bare['sim_rate']:,.0f}/s"
            f" sent); collector with raw ticks {ours['cpu_us']:.2f} µs"
            f" ({ours['sent_per_s']:,.0f}/s sent, {ours['received_per_s']:,.0f}/s received);"
            f" ratio {ratio:.2f}x; load {cpu['load']:.1f}")  # fmt: skip
        say(f"  (a plain socket reading the same stream without parsing frames:"
            f" {cpu['raw']['us_per_msg']:.2f} µs per message)")  # fmt: skip
        rows.append(Row("2 e2e", f"collector CPU per message vs bare websocket-client recv "
                        f"({args.cpu_rate:,.0f}/s asked)",
                        f"{ours['cpu_us']:.1f} µs vs {bare['us_per_msg']:.1f} µs: {ratio:.2f}x",
                        "<= 3x", ratio <= 3))  # fmt: skip

    results = []
    plan = [(float(r.rstrip("n")), not r.endswith("n"), 0) for r in args.rates.split(",") if r]
    if args.prefill:
        plan.append((args.prefill_rate, True, args.prefill))
    for rate, store_ticks, rows_before in plan:
        r = run_rate(args.instruments, rate, args.window, store_ticks, rows_before)
        results.append(r)
        say(f"  {describe(r)}: sim sent {r['sent_per_s']:,.0f}/s"
            f" ({'achieved' if r['achieved'] else 'NOT achieved'}), collector received"
            f" {r['received_per_s']:,.0f}/s over {r['window_s']:.0f} s; lost {r['lost']:,} of"
            f" {r['delivered']:,} delivered ({r['bars_lost']:,} from bars, {r['ticks_lost']:,}"
            f" raw ticks, {r['dropped']:,} dropped); CPU {r['cpu_us']:.1f} µs/msg"
            f" ({r['cpu_s'] / r['window_s']:.0%} of a core); peak backlog"
            f" {r['peak_backlog']:,.0f} messages, peak delay {r['peak_delay_s']:.2f} s;"
            f" load {r['load'][0]:.1f} -> {r['load'][1]:.1f}"
            + (f"; prefill took {r['prefill_s']:.0f} s" if r["prefill"] else ""))  # fmt: skip
        rows.append(Row("2 e2e", describe(r),
                        f"sent {r['sent_per_s']:,.0f}/s, received {r['received_per_s']:,.0f}/s,"
                        f" lost {r['lost']:,}, {r['cpu_us']:.1f} µs/msg",
                        "0 lost, rate achieved", r["zero_loss"]))  # fmt: skip
    for store_ticks in (True, False):
        clean = [r for r in results if r["zero_loss"] and r["store_ticks"] == store_ticks]
        label = "with raw ticks" if store_ticks else "without raw ticks"
        best = max(clean, key=lambda r: r["sent_per_s"], default=None)
        rows.append(Row("2 e2e", f"highest zero-loss rate held {args.window:.0f} s, {label}",
                        f"{best['sent_per_s']:,.0f}/s" if best else "none of the rates tried",
                        ">= 50,000/s", bool(best) and best["sent_per_s"] >= 50_000))  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
