"""Read-only queries the tests use to inspect an SQLite store's file (the product never needs
them). Each opens its own connection to the store's file, so it sees what was committed."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from dhanfeed.store import Gap, SqliteStore, Tick
from dhanfeed.store.sqlite import TICK_TABLE_COLUMNS, tick_table

_TICK_COLUMNS = "segment, security_id, ltt_utc, ltp, ltq, cum_volume, received_utc"


@contextlib.contextmanager
def _connect(store: SqliteStore | Path) -> Iterator[sqlite3.Connection]:
    path = store.path if isinstance(store, SqliteStore) else Path(store)
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        yield conn
    finally:
        conn.close()


def _query(store: SqliteStore | Path, sql: str, params: tuple = ()) -> list[tuple]:
    with _connect(store) as conn:
        return conn.execute(sql, params).fetchall()


def candle_count(store: SqliteStore | Path) -> int:
    return _query(store, "SELECT count(*) FROM candles")[0][0]


def volume_sums(store: SqliteStore | Path, interval_s: int = 60) -> dict[tuple[str, int], int]:
    """Per instrument: the sum of candle volumes of one interval (the day's volume)."""
    rows = _query(
        store,
        "SELECT segment, security_id, SUM(volume) FROM candles WHERE interval_s = ?"
        " GROUP BY segment, security_id",
        (interval_s,),
    )
    return {(seg, sid): total for seg, sid, total in rows}


def tick_counts(store: SqliteStore | Path) -> dict[tuple[str, int], int]:
    rows = _query(
        store, "SELECT segment, security_id, count(*) FROM ticks GROUP BY segment, security_id"
    )
    return {(seg, sid): n for seg, sid, n in rows}


def tick_tables(store: SqliteStore | Path) -> list[str]:
    """The day tables of raw ticks, oldest first."""
    rows = _query(
        store, "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'ticks_%'"
    )
    return sorted((name for (name,) in rows), key=lambda n: (n != "ticks_v1", n))


def ticks(
    store: SqliteStore | Path, segment: str | None = None, security_id: int | None = None
) -> list[Tick]:
    """Stored ticks in the order they were written (day by day)."""
    where, params = [], []
    if segment is not None:
        where.append("segment = ?")
        params.append(segment)
    if security_id is not None:
        where.append("security_id = ?")
        params.append(security_id)
    found: list[Tick] = []
    for table in tick_tables(store):
        sql = f"SELECT {_TICK_COLUMNS} FROM {table}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        found += [Tick(*row) for row in _query(store, sql + " ORDER BY rowid", tuple(params))]
    return found


def gaps(store: SqliteStore | Path) -> list[Gap]:
    rows = _query(
        store, "SELECT segment, security_id, start_utc, end_utc, reason FROM gaps ORDER BY rowid"
    )
    return [Gap(*row) for row in rows]


def journal_mode(store: SqliteStore | Path) -> str:
    return str(_query(store, "PRAGMA journal_mode")[0][0]).lower()


def refuse_tick_writes(conn: sqlite3.Connection, ltt_utc: int) -> None:
    """Make every write of ticks of that day fail inside SQLite (a trigger that aborts), as a
    broken table or a full disk would; bars and gaps still commit."""
    table = tick_table(ltt_utc)
    conn.execute(f"CREATE TABLE IF NOT EXISTS {table} {TICK_TABLE_COLUMNS}")
    conn.execute(
        f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table}"
        " BEGIN SELECT RAISE(ABORT, 'tick writes refused by the test'); END"
    )


def allow_tick_writes(conn: sqlite3.Connection, ltt_utc: int) -> None:
    conn.execute(f"DROP TRIGGER refuse_{tick_table(ltt_utc)}")
