"""Benchmark 6: raw ticks written per second by the store alone, PostgreSQL beside SQLite.

The same ticks (a day's worth of Quote packets over a few hundred instruments) in the same
batches (`StoreWriter`'s 20,000 rows) through `Store.write`, one transaction per batch, on
the same machine in the same run:

- SQLite: the collector's file (WAL, synchronous=NORMAL) in a temporary directory;
- PostgreSQL: a throwaway server started here (initdb + pg_ctl, as `nobody` under root)
  with its durable defaults (fsync on, synchronous_commit on), over its Unix socket; ticks
  go in with binary COPY into the day's partition;
- PostgreSQL again with the per-instrument B-tree that SQLite has and the README offers
  readers (`CREATE INDEX ON ticks (client_id, segment, security_id, ltt_utc)`).

    .venv/bin/python bench/bench_store.py [--ticks 400000] [--batch 20000] [--runs 3]

Prints ticks/s per backend (median of the runs, each into a fresh database) and the ratio.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

from _common import Row, fmt_rate, median, say

from dhanfeed.store import SqliteStore, Tick
from dhanfeed.store.postgresql import PostgresStore

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.pg_cluster import Cluster, find_bindir  # noqa: E402  (the tests' throwaway server)

INSTRUMENT_INDEX = "CREATE INDEX ON ticks (client_id, segment, security_id, ltt_utc)"
START = 1767584700  # 2026-01-05 09:15 IST


def make_ticks(n: int, instruments: int = 500, seed: int = 7) -> list[Tick]:
    rng = random.Random(seed)
    ticks, cum = [], [0] * instruments
    for i in range(n):
        k = rng.randrange(instruments)
        q = rng.randint(1, 500)
        cum[k] += q
        ltt = START + i * 22_500 // n  # the whole session, in order
        ticks.append(
            Tick("NSE_EQ", 100_000 + k, ltt, round(rng.uniform(100, 3000), 2), q, cum[k],
                 ltt + rng.random())
        )  # fmt: skip
    return ticks


def rate(store: SqliteStore | PostgresStore, ticks: list[Tick], batch: int) -> float:
    """Ticks per second through `store.write`, batch by batch; closes the store."""
    try:
        t0 = time.perf_counter()
        for i in range(0, len(ticks), batch):
            store.write(ticks=ticks[i : i + batch])
        return len(ticks) / (time.perf_counter() - t0)
    finally:
        store.close()


def main(argv: list[str] | None = None) -> list[Row]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=400_000)
    ap.add_argument("--batch", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    bindir = find_bindir()
    if bindir is None:
        say("bench 6: PostgreSQL server binaries not found (apt-get install postgresql)")
        return [Row("6", "store write, PostgreSQL", "not run: no server binaries")]
    ticks = make_ticks(args.ticks)
    say(f"bench 6: {len(ticks):,} ticks in batches of {args.batch:,}, {args.runs} runs each")
    results: dict[str, list[float]] = {"sqlite": [], "postgresql": [], "postgresql+index": []}
    cluster = Cluster(bindir, durable=True)
    try:
        cluster.start()
        with tempfile.TemporaryDirectory() as tmp:
            for run in range(args.runs):
                path = Path(tmp) / f"run{run}.sqlite"
                results["sqlite"].append(rate(SqliteStore(path), ticks, args.batch))
                for variant in ("postgresql", "postgresql+index"):
                    url = cluster.new_database()
                    store = PostgresStore(url, "1000000001")
                    if variant.endswith("index"):
                        cluster.sql(INSTRUMENT_INDEX, url.split("/")[3].split("?")[0])
                    results[variant].append(rate(store, ticks, args.batch))
                rates = ", ".join(f"{k} {fmt_rate(v[-1])}" for k, v in results.items())
                say(f"  run {run + 1}: {rates}")
    finally:
        cluster.destroy()
    sqlite, pg, indexed = (median(v) for v in results.values())
    say(f"bench 6: sqlite {fmt_rate(sqlite)}, postgresql {fmt_rate(pg)} ({pg / sqlite:.2f}x),"
        f" postgresql with the instrument index {fmt_rate(indexed)} ({indexed / sqlite:.2f}x)")  # fmt: skip
    return [
        Row("6", "store write (ticks), SQLite", fmt_rate(sqlite)),
        Row("6", "store write (ticks), PostgreSQL", fmt_rate(pg)),
        Row("6", "PostgreSQL / SQLite", f"{pg / sqlite:.2f}x"),
        Row("6", "PostgreSQL + instrument index / SQLite", f"{indexed / sqlite:.2f}x"),
    ]


if __name__ == "__main__":
    main()
