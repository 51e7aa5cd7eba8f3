"""Copy an SQLite database into PostgreSQL, idempotently: a user who outgrows one file keeps
their history. Run it twice, or again after the SQLite file grew, and PostgreSQL holds each
row once: bars replace the bar of their key, ticks and gaps are added unless already there
(see `PostgresStore.import_rows`), and each reconciled day replaces that day's figures. Every
copied row gets the client id given.

The SQLite file is opened read-only and read a chunk at a time (by rowid), so a collector may
still be writing it and a large file needs little memory.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from dhanfeed.candles import Bar
from dhanfeed.errors import StoreError
from dhanfeed.store.base import BackfillChange, Gap, Reconciliation, Tick
from dhanfeed.store.postgresql import PostgresStore
from dhanfeed.store.sqlite import connect_readonly

CHUNK = 20_000
_COLUMNS = {
    "candles": "segment, security_id, interval_s, start_utc, open, high, low, close, volume,"
    " ticks, cum_volume_end",
    "ticks": "segment, security_id, ltt_utc, ltp, ltq, cum_volume, received_utc",
    "gaps": "segment, security_id, start_utc, end_utc, reason",
}
_RECONCILIATION = (
    "segment, security_id, day, minutes_compared, minutes_differing, volume_differing,"
    " worst_start_utc, worst_diff, checked_utc"
)
# Columns of SQLite schema 2 (honest bars), copied when the source has them.
_LATER = {"candles": ("complete", "source"), "gaps": ("healed_utc",)}


class Copied(NamedTuple):
    bars: int  # bars written (each replaces the bar of its key, if any)
    ticks: int  # ticks added (not already there)
    gaps: int  # gaps added
    reconciliations: int = 0  # reconciled instrument days written (each replaces its own)


def _chunks(conn: sqlite3.Connection, table: str, kind: str) -> Iterator[list[tuple]]:
    after = -1
    have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    columns = _COLUMNS[kind] + "".join(f", {c}" for c in _LATER.get(kind, ()) if c in have)
    while True:
        rows = conn.execute(
            f"SELECT rowid, {columns} FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (after, CHUNK),
        ).fetchall()
        if not rows:
            return
        after = rows[-1][0]
        yield [row[1:] for row in rows]


def copy_sqlite_to_postgres(
    source: Path,
    target: PostgresStore,
    progress: Callable[[str, int], None] = lambda table, n: None,
) -> Copied:
    """Copy every candle, tick, gap and reconciliation of `source` into `target`; raises
    `StoreError`."""
    conn, tables = connect_readonly(source)
    bars = ticks = gaps = reconciled = 0
    try:
        for rows in _chunks(conn, "candles", "candles"):
            target.import_rows([Bar(*row) for row in rows], [], [])
            bars += len(rows)
            progress("candles", bars)
        # Raw ticks: one table per day (schema 2; `ticks` is a view over them), or the one
        # `ticks` table of a schema-1 file.
        tick_tables = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND (name = 'ticks' OR name LIKE 'ticks\\_%' ESCAPE '\\') ORDER BY name"
            )
        ]
        for table in tick_tables:
            for rows in _chunks(conn, table, "ticks"):
                ticks += target.import_rows([], [Tick(*row) for row in rows], [])[0]
                progress("ticks", ticks)
        if "gaps" in tables:
            for rows in _chunks(conn, "gaps", "gaps"):
                gaps += target.import_rows([], [], [Gap(*row) for row in rows])[1]
                progress("gaps", gaps)
        if "reconciliation" in tables:  # a few rows a day: one small transaction each
            for row in conn.execute(f"SELECT {_RECONCILIATION} FROM reconciliation"):
                target.apply_backfill(BackfillChange([], [], 0.0, Reconciliation(*row)))
                reconciled += 1
            progress("reconciliation", reconciled)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read database {source}: {exc}", path=source) from None
    finally:
        conn.close()
    return Copied(bars, ticks, gaps, reconciled)
