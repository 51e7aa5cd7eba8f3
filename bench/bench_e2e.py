"""Benchmark 2: end to end, `bin/dhan_sim` → `bin/collector` → SQLite over loopback.

Rising rates: 20000 instruments (4 sockets × 5000, Dhan's maximum with one slot kept for a
swap) in Quote mode at rising ticks per second per instrument; raw ticks stored (the
heavier configuration), 1-minute bars. For each rate a fresh simulator and collector run
until a minute boundary has passed (so that bars close and are committed during the
window), then SIGTERM.

Per rate:
  offered   = packets the simulator managed to send per second (its own record), against the
              nominal rate instruments × ticks/s (the simulator is one Python process too);
  loss      = ticks the simulator delivered (its /__sim/stats record) minus distinct ticks in
              SQLite after SIGTERM, plus the collector's own `dropped` count;
  CPU       = the collector's utime+stime (/proc/<pid>/stat) over the window / packets, as CPU
              seconds per million packets, and as a share of one core;
  latency   = receive → bar committed: this script polls SQLite every 50 ms and notes when each
              bar first becomes visible; minus the `received_utc` of that bar's last tick
              (the collector's own receive clock, same machine). The simulator does not expose
              a per-packet send time (its LTT has 1 s resolution), so send → receive is bounded
              instead: `received_utc − LTT` is at most that transit + 1 s; its p99 is printed.
              Bars close by timer at bar end + grace (1 s here; 2 s by default), so that floor
              is in every bar's latency by design.

    .venv/bin/python bench/bench_e2e.py [--instruments 20000] [--rates 0.5,1,2,4]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import threading
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
    median,
    percentile,
    say,
    sim_range,
)

GRACE_S = 1.0


class BarWatcher(threading.Thread):
    """Polls the candles table; remembers when each rowid was first visible."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.seen: list[tuple[int, float]] = []  # (highest rowid visible, time first seen)
        self.stop = threading.Event()

    def run(self) -> None:
        conn = None
        last = 0
        while not self.stop.wait(0.05):
            try:
                if conn is None:
                    conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=1)
                top = conn.execute("SELECT max(rowid) FROM candles").fetchone()[0] or 0
            except sqlite3.Error:
                continue
            if top > last:
                self.seen.append((top, time.time()))
                last = top
        if conn is not None:
            conn.close()

    def visible_at(self, rowid: int) -> float | None:
        for top, at in self.seen:
            if top >= rowid:
                return at
        return None


def wait_seconds_past_boundary(extra: float, minimum: float) -> float:
    """Seconds from now to (next minute boundary + extra), at least `minimum`."""
    now = time.time()
    target = (now // 60 + 1) * 60 + extra
    while target - now < minimum:
        target += 60
    return target - now


def run_rate(instruments: int, tps: float, min_window: float, store_ticks: bool = True) -> dict:
    keys = instrument_keys(instruments)
    with tempfile.TemporaryDirectory(prefix="dhanfeed-bench-e2e-") as tmp:
        workdir = Path(tmp)
        token = workdir / "state" / "token.json"
        sim = Sim("--instruments", sim_range(instruments), "--ticks-per-second", str(tps),
                  "--issue-token", str(token))  # fmt: skip
        collector = watcher = None
        try:
            collector = CollectorProc(
                workdir,
                collector_config(
                    workdir, sim, keys, store_ticks=store_ticks, grace=f"{GRACE_S:g}s"
                ),
            )
            shards = -(-instruments // 5000)
            collector.wait_for(
                "all sockets live",
                lambda s: s.get("sockets_live") == shards and s.get("packets", 0) > instruments,
                timeout=120,
            )
            watcher = BarWatcher(workdir / "data" / "candles.sqlite")
            watcher.start()
            window = wait_seconds_past_boundary(GRACE_S + 4, min_window)
            sent0 = total_sent(sim)
            s0, cpu0, t0 = collector.status(), cpu_seconds(collector.pid), time.monotonic()
            time.sleep(window)
            s1, cpu1, t1 = collector.status(), cpu_seconds(collector.pid), time.monotonic()
            sent1 = total_sent(sim)
            if collector.terminate() != 0:
                raise RuntimeError(f"collector exit {collector.proc.returncode}")
            watcher.stop.set()
            watcher.join()
            final = collector.status()
            stats = sim.admin("stats")["instruments"]
            result = {
                "instruments": instruments,
                "tps": tps,
                "store_ticks": store_ticks,
                "nominal": instruments * tps,
                "window_s": t1 - t0,
                "sent_per_s": (sent1 - sent0) / (t1 - t0),
                "received_per_s": (s1["packets"] - s0["packets"]) / (t1 - t0),
                "cpu_s": cpu1 - cpu0,
                "packets": s1["packets"] - s0["packets"],
                "dropped": final.get("dropped", 0),
                "queue_max": max(s0.get("queue", 0), s1.get("queue", 0)),
                "backlog_at_stop": {k: s1.get(k) for k in ("queue", "store_pending")},
                "final": {k: final.get(k) for k in ("packets", "ticks_stored", "store_pending")},
            }
            result.update(check_store(collector, keys, stats, watcher, store_ticks))
            return result
        finally:
            if watcher is not None:
                watcher.stop.set()
            if collector is not None:
                collector.kill()
            sim.stop()


def total_sent(sim: Sim) -> int:
    return sum(s["packets_sent"] for s in sim.admin("stats")["sockets"])


def check_store(collector, keys, stats, watcher, store_ticks) -> dict:  # noqa: ANN001
    delivered = sum(stats[k]["delivered"] for k in keys)
    with collector.db() as db:
        # Every accepted trade counts once in its bar's `ticks`: the end-to-end count.
        in_bars = db.execute("SELECT sum(ticks) FROM candles WHERE interval_s = 60").fetchone()[0]
        bars_lost = delivered - (in_bars or 0)
        ticks_lost = 0
        if store_ticks:
            stored = {
                f"{seg}:{sid}": n
                for seg, sid, n in db.execute(
                    "SELECT segment, security_id, count(DISTINCT cum_volume) FROM ticks"
                    " GROUP BY segment, security_id"
                )
            }
            ticks_lost = sum(max(0, stats[k]["delivered"] - stored.get(k, 0)) for k in keys)
        lost = max(bars_lost, ticks_lost)
        # Bars closed by the timer during the run (not by the SIGTERM flush), and when each
        # became visible; measured from its last tick's receive time (ticks stored) or else
        # from the bar's end.
        horizon = watcher.seen[-1][1] - 1 if watcher.seen else 0
        last_received = (
            "(SELECT max(t.received_utc) FROM ticks t WHERE t.segment = c.segment"
            " AND t.security_id = c.security_id AND t.ltt_utc >= c.start_utc"
            " AND t.ltt_utc < c.start_utc + c.interval_s)"
            if store_ticks
            else "c.start_utc + c.interval_s"
        )
        latencies = []
        for rowid, end, since in db.execute(
            f"SELECT c.rowid, c.start_utc + c.interval_s, {last_received} FROM candles c"
            " WHERE c.start_utc + c.interval_s <= ?",
            (horizon,),
        ):
            seen = watcher.visible_at(rowid)
            if seen is not None and since is not None and seen >= end:
                latencies.append(seen - since)
        transit = []
        if store_ticks:
            transit = [
                received - ltt
                for received, ltt in db.execute(
                    "SELECT received_utc, ltt_utc FROM ticks WHERE rowid % 97 = 0"
                )
            ]
    return {
        "delivered": delivered,
        "lost": lost,
        "bars_lost": bars_lost,
        "ticks_lost": ticks_lost,
        "bar_latency_s": latencies,
        "recv_minus_ltt_p99": percentile(transit, 99) if transit else None,
    }


def main(argv: list[str] | None = None) -> tuple[list[Row], list[dict]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instruments", type=int, default=20000)
    ap.add_argument(
        "--rates",
        default="1,2,3,3n",
        help="ticks per second per instrument; a trailing n: without raw ticks",
    )
    ap.add_argument("--min-window", type=float, default=12.0)
    args = ap.parse_args(argv)
    rates = [(float(r.rstrip("n")), not r.endswith("n")) for r in args.rates.split(",")]
    say(f"== 2. end to end: {args.instruments} instruments, ticks/s per instrument {rates}")
    results = []
    for tps, store_ticks in rates:
        r = run_rate(args.instruments, tps, args.min_window, store_ticks)
        results.append(r)
        lat = r["bar_latency_s"]
        cpu_per_m = r["cpu_s"] / max(1, r["packets"]) * 1e6
        say(
            f"  {tps:g}/s x {args.instruments}{'' if store_ticks else ' (no raw ticks)'}: nominal {r['nominal']:,.0f}/s, sim sent"
            f" {r['sent_per_s']:,.0f}/s, collector received {r['received_per_s']:,.0f}/s over"
            f" {r['window_s']:.0f}s; lost {r['lost']} of {r['delivered']:,} delivered"
            f" ({r['bars_lost']:,} from bars, {r['ticks_lost']:,} raw ticks),"
            f" dropped {r['dropped']}; CPU {cpu_per_m:.1f} s per million packets"
            f" ({r['cpu_s'] / r['window_s'] * 100:.0f}% of a core); bars {len(lat)}"
            + (
                f", {'last tick received' if store_ticks else 'bar end'} -> bar committed"
                f" median {median(lat):.2f}s p99 {percentile(lat, 99):.2f}s"
                if lat
                else ""
            )
            + (
                f"; backlog before SIGTERM {r['backlog_at_stop']}, final {r['final']}"
                if r["lost"]
                else ""
            )
            + (
                f"; received-LTT p99 {r['recv_minus_ltt_p99']:.2f}s"
                if r["recv_minus_ltt_p99"] is not None
                else ""
            )
        )
    rows = []
    for r in results:
        lost = r["lost"]
        split = (
            f"lost {r['bars_lost']:,} from bars, {r['ticks_lost']:,} raw ticks"
            f" ({r['dropped']:,} counted as dropped)"
            if r["store_ticks"]
            else f"lost {lost:,}"
        )
        lat = r["bar_latency_s"]
        what = f"{r['tps']:g}/s x {r['instruments']}" + ("" if r["store_ticks"] else ", no ticks")
        rows.append(
            Row("2 e2e", f"{what}: sim sent / collector received",
                f"{r['sent_per_s']:,.0f} / {r['received_per_s']:,.0f} pkt/s"
                f" (nominal {r['nominal']:,.0f}), {split},"
                f" CPU {r['cpu_s'] / max(1, r['packets']) * 1e6:.1f} s/M pkt"
                f" ({r['cpu_s'] / r['window_s'] * 100:.0f}% core)",
                "0 lost", lost == 0)
        )  # fmt: skip
        if lat:
            since = "last tick received" if r["store_ticks"] else "bar end"
            rows.append(
                Row("2 e2e", f"{what}: {since} -> bar committed",
                    f"median {median(lat):.2f} s, p99 {percentile(lat, 99):.2f} s")
            )  # fmt: skip
    clean = [r for r in results if r["lost"] + r["dropped"] == 0 and r["store_ticks"]]
    if clean:
        best = max(clean, key=lambda r: r["received_per_s"])
        rows.append(
            Row("2 e2e", "highest rate with zero loss (raw ticks stored)",
                f"{best['received_per_s']:,.0f} pkt/s ({best['tps']:g}/s x {best['instruments']})")
        )  # fmt: skip
    return rows, results


if __name__ == "__main__":
    main()
