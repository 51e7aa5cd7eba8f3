"""Benchmark: raw-tick insert speed as a day's table grows, today's layout against the old one.

Batches of 20,000 ticks (5000 instruments, rising LTT, as the collector's writer hands them
in) go into an SQLite file in WAL mode, one transaction each, until `--rows` rows:
  day table  `SqliteStore.write`: one unindexed `ticks_YYYYMMDD` table per day (appends);
  indexed    the schema-1 layout: one `ticks` table with an index on
             (segment, security_id, ltt_utc), so every insert is a random B-tree write.
Rows per second over the first and the last `--measure` batches of each, one layout after
the other in one run (alternating them batch by batch made the indexed file's checkpoints,
random writes all over a growing file, slow the other file's commits too).

    .venv/bin/python bench/bench_tick_layout.py [--rows 3000000] [--measure 10]
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

from _common import Row, say  # noqa: E402

from dhanfeed.store import SqliteStore  # noqa: E402

BATCH = 20_000
INSTRUMENTS = 5000
START_UTC = 1_767_584_700  # 2026-01-05 09:15 IST


def batch(n: int) -> list[tuple]:
    first = n * BATCH
    return [
        ("NSE_EQ", 100_000 + i % INSTRUMENTS, START_UTC + i // INSTRUMENTS, 100.0 + i % 50 * 0.05,
         1, i // INSTRUMENTS + 1, START_UTC + i // INSTRUMENTS + 0.3)
        for i in range(first, first + BATCH)
    ]  # fmt: skip


class Indexed:
    """The schema-1 layout, written the way the old store did."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.execute(
            "CREATE TABLE ticks (segment TEXT NOT NULL, security_id INTEGER NOT NULL, ltt_utc"
            " INTEGER NOT NULL, ltp REAL NOT NULL, ltq INTEGER, cum_volume INTEGER,"
            " received_utc REAL NOT NULL)"
        )
        self.conn.execute(
            "CREATE INDEX ticks_by_instrument ON ticks (segment, security_id, ltt_utc)"
        )

    def write(self, ticks: list[tuple]) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany("INSERT INTO ticks VALUES (?, ?, ?, ?, ?, ?, ?)", ticks)
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


def main(argv: list[str] | None = None) -> list[Row]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=3_000_000)
    ap.add_argument("--measure", type=int, default=10)
    args = ap.parse_args(argv)
    batches = max(2 * args.measure, args.rows // BATCH)
    say(f"== store: {batches * BATCH:,} raw ticks in batches of {BATCH:,}; load average"
        f" {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared machine)")  # fmt: skip
    rows: list[Row] = []
    seconds: dict[str, list[float]] = {"day table": [], "indexed": []}
    with tempfile.TemporaryDirectory(prefix="dhanfeed-bench-store-") as tmp:
        for name, times in seconds.items():
            path = Path(tmp) / f"{name.replace(' ', '_')}.sqlite"
            store = SqliteStore(path) if name == "day table" else Indexed(path)
            write = (lambda t, s=store: s.write([], t)) if name == "day table" else store.write
            try:
                for n in range(batches):
                    ticks = batch(n)
                    started = time.perf_counter()
                    write(ticks)
                    times.append(time.perf_counter() - started)
            finally:
                store.close()
    k = args.measure
    for name, times in seconds.items():
        first = k * BATCH / sum(times[:k])
        last = k * BATCH / sum(times[-k:])
        say(f"  {name:<10} first {k} batches {first:>9,.0f} rows/s; last {k} batches (to"
            f" {batches * BATCH:,} rows) {last:>9,.0f} rows/s ({last / first:.0%} of the start)")  # fmt: skip
        ours = name == "day table"
        rows.append(Row("store", f"raw-tick inserts, {name}: last vs first batches",
                        f"{last:,.0f} vs {first:,.0f} rows/s ({last / first:.0%})",
                        ">= 80 %" if ours else "", last >= 0.8 * first if ours else None))  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
