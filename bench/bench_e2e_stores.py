"""Benchmark 7: end to end with raw ticks, PostgreSQL beside SQLite: the highest rate at which
nothing is lost, at Dhan's framing (one packet per WebSocket message).

For each store and each rate: a fresh `bin/dhan_sim` and `bin/collector` (raw ticks stored,
1-minute bars) run for a window, then SIGTERM. The store is the collector's SQLite file, or a
database on a throwaway PostgreSQL server started here (durable defaults: fsync on) reached
over its Unix socket. Per run:

  offered  = packets the simulator sent per second (its own record) against the nominal rate
             instruments × ticks/s: a simulator that fell short is reported, not hidden;
  lost     = ticks the simulator delivered minus what the store holds, the larger of two
             shortfalls: trades counted in the 1-minute bars (`sum(ticks)`) and distinct raw
             ticks (the collector's own `dropped` count is part of them, so not added), each
             shown too.

    .venv/bin/python bench/bench_e2e_stores.py [--instruments 20000] [--rates 1,2,3] [--window 30]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from _common import CollectorProc, Row, Sim, collector_config, instrument_keys, say, sim_range

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.pg_cluster import Cluster, find_bindir  # noqa: E402  (the tests' throwaway server)

IN_BARS = "SELECT sum(ticks) FROM candles WHERE interval_s = 60"
DISTINCT_TICKS = (
    "SELECT count(*) FROM (SELECT DISTINCT segment, security_id, cum_volume FROM ticks) AS t"
)


def counts(workdir: Path, database: str) -> tuple[int, int]:
    """(trades in 1-minute bars, distinct raw ticks) in the store."""
    if database.startswith("postgresql://"):
        with psycopg.connect(database) as conn:
            return tuple(conn.execute(q).fetchone()[0] or 0 for q in (IN_BARS, DISTINCT_TICKS))
    with sqlite3.connect(workdir / database) as conn:
        return tuple(conn.execute(q).fetchone()[0] or 0 for q in (IN_BARS, DISTINCT_TICKS))


def run(instruments: int, tps: float, window: float, database: str) -> dict:
    keys = instrument_keys(instruments)
    with tempfile.TemporaryDirectory(prefix="dhanfeed-bench-stores-") as tmp:
        workdir = Path(tmp)
        sim = Sim("--instruments", sim_range(instruments), "--ticks-per-second", str(tps),
                  "--issue-token", str(workdir / "state" / "token.json"))  # fmt: skip
        collector = None
        try:
            config = collector_config(workdir, sim, keys, database=database)
            collector = CollectorProc(workdir, config)
            shards = -(-instruments // 5000)
            collector.wait_for(
                "all sockets live",
                lambda s: s.get("sockets_live") == shards and s.get("packets", 0) > instruments,
                timeout=120,
            )
            sent0, t0 = total_sent(sim), time.monotonic()
            time.sleep(window)
            sent1, t1 = total_sent(sim), time.monotonic()
            if collector.terminate() != 0:
                raise RuntimeError(f"collector exit {collector.proc.returncode}")
            stats = sim.admin("stats")["instruments"]
            delivered = sum(stats[k]["delivered"] for k in keys)
            in_bars, raw = counts(workdir, database)
            return {
                "nominal": instruments * tps,
                "sent_per_s": (sent1 - sent0) / (t1 - t0),
                "delivered": delivered,
                "lost": max(delivered - in_bars, delivered - raw),
                "bars_lost": delivered - in_bars,
                "ticks_lost": delivered - raw,
            }
        finally:
            if collector is not None:
                collector.kill()
            sim.stop()


def total_sent(sim: Sim) -> int:
    return sum(s["packets_sent"] for s in sim.admin("stats")["sockets"])


def main(argv: list[str] | None = None) -> list[Row]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instruments", type=int, default=20000)
    ap.add_argument("--rates", default="1,2,3", help="ticks per second per instrument")
    ap.add_argument("--window", type=float, default=30.0)
    ap.add_argument("--stores", default="sqlite,postgresql", help="which stores, in order")
    args = ap.parse_args(argv)
    bindir = find_bindir()
    if bindir is None:
        say("bench 7: PostgreSQL server binaries not found (apt-get install postgresql)")
        return [Row("7", "e2e PostgreSQL", "not run: no server binaries")]
    rates = [float(r) for r in args.rates.split(",")]
    say(f"== 7. end to end, raw ticks, SQLite and PostgreSQL: {args.instruments} instruments")
    cluster = Cluster(bindir, durable=True)
    rows = []
    try:
        cluster.start()
        for store in args.stores.split(","):
            best = None
            for tps in rates:
                database = "data/candles.sqlite" if store == "sqlite" else cluster.new_database()
                r = run(args.instruments, tps, args.window, database)
                say(f"  {store} {tps:g}/s x {args.instruments}: nominal {r['nominal']:,.0f}/s,"
                    f" sim sent {r['sent_per_s']:,.0f}/s, lost {r['lost']:,} of"
                    f" {r['delivered']:,} delivered ({r['bars_lost']:,} from bars,"
                    f" {r['ticks_lost']:,} raw ticks)")  # fmt: skip
                if r["lost"] == 0:
                    best = r
            value = (
                f"{best['sent_per_s']:,.0f} pkt/s sent (nominal {best['nominal']:,.0f})"
                if best
                else "none of the rates"
            )
            rows.append(Row("7", f"highest zero-loss rate with raw ticks, {store}", value))
    finally:
        cluster.destroy()
    for row in rows:
        say(f"  {row.metric}: {row.value}")
    return rows


if __name__ == "__main__":
    main()
