"""The SQLite store (`SqliteStore`): candles, raw ticks and gaps in one WAL-mode file.

- WAL mode (readers such as `bin/export_candles` never block the collector), `synchronous=NORMAL`
  (a power cut may lose the last commit, never corrupt the file; a restart's upsert and carry
  make the next bars right again).
- `candles` upsert: a bar written before a restart is merged with the rest of it: open kept from
  the stored part, high max, low min, close from the new part, volume and ticks summed,
  `cum_volume_end` from the new part. The builder's carry (`carry()`) makes the second
  part's volume start where the first ended, so the merged bar equals an uninterrupted one.
- `ticks` (when `store_ticks`): one row per packet the caller hands in; the caller hands in only
  packets the builder did not call a duplicate.
- `gaps`: one row per instrument and stretch without a live subscription (times are REAL epoch
  seconds UTC, since gaps during a swap are sub-second).

Errors: anything SQLite or the filesystem refuses becomes a `StoreError` naming the path.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dhanfeed.candles import Bar, Carry, Key
from dhanfeed.errors import StoreError
from dhanfeed.store.base import CandleReads, Gap, Tick

__all__ = ["SqliteStore"]

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS candles (
    segment TEXT NOT NULL,
    security_id INTEGER NOT NULL,
    interval_s INTEGER NOT NULL,
    start_utc INTEGER NOT NULL,
    open REAL NOT NULL,
    high REAL NOT NULL,
    low REAL NOT NULL,
    close REAL NOT NULL,
    volume INTEGER NOT NULL,
    ticks INTEGER NOT NULL,
    cum_volume_end INTEGER,
    PRIMARY KEY (segment, security_id, interval_s, start_utc)
);
CREATE TABLE IF NOT EXISTS ticks (
    segment TEXT NOT NULL,
    security_id INTEGER NOT NULL,
    ltt_utc INTEGER NOT NULL,
    ltp REAL NOT NULL,
    ltq INTEGER,
    cum_volume INTEGER,
    received_utc REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ticks_by_instrument ON ticks (segment, security_id, ltt_utc);
CREATE TABLE IF NOT EXISTS gaps (
    segment TEXT NOT NULL,
    security_id INTEGER NOT NULL,
    start_utc REAL NOT NULL,
    end_utc REAL NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS gaps_by_instrument ON gaps (segment, security_id, start_utc);
"""

_UPSERT_BAR = """
INSERT INTO candles (segment, security_id, interval_s, start_utc, open, high, low, close,
                     volume, ticks, cum_volume_end)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (segment, security_id, interval_s, start_utc) DO UPDATE SET
    high = max(candles.high, excluded.high),
    low = min(candles.low, excluded.low),
    close = excluded.close,
    volume = candles.volume + excluded.volume,
    ticks = candles.ticks + excluded.ticks,
    cum_volume_end = coalesce(excluded.cum_volume_end, candles.cum_volume_end)
"""
_INSERT_TICK = """
INSERT INTO ticks (segment, security_id, ltt_utc, ltp, ltq, cum_volume, received_utc)
VALUES (?, ?, ?, ?, ?, ?, ?)
"""
_INSERT_GAP = (
    "INSERT INTO gaps (segment, security_id, start_utc, end_utc, reason) VALUES (?, ?, ?, ?, ?)"
)


def _bar_row(bar: Bar) -> tuple:
    return (
        bar.segment, bar.security_id, bar.interval_s, bar.start_utc, bar.open, bar.high,
        bar.low, bar.close, bar.volume, bar.ticks, bar.cum_volume_end,
    )  # fmt: skip


class SqliteStore(CandleReads):
    """The SQLite store: one connection, usable from one thread at a time (calls are serialised)."""

    def __init__(
        self, path: str | Path, store_ticks: bool = True, *, readonly: bool = False
    ) -> None:
        self.path = Path(path)
        self.store_ticks = store_ticks
        self.readonly = readonly
        self._lock = threading.Lock()
        self._conn = self._open()

    @classmethod
    def open_readonly(cls, path: str | Path) -> SqliteStore:
        """Open an existing database for reading; a missing file is a `StoreError`."""
        return cls(path, store_ticks=False, readonly=True)

    def _open(self) -> sqlite3.Connection:
        if self.readonly:
            return connect_readonly(self.path, check_same_thread=False)[0]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the directory of database {self.path}: {exc.strerror or exc}"
            ) from None
        conn = None
        try:
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 5000")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"cannot switch to WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous = NORMAL")
            # A write transaction proves the file is writable now, not at the first bar.
            conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except (sqlite3.Error, OSError) as exc:
            if conn is not None:
                conn.close()
            raise StoreError(f"cannot write database {self.path}: {exc}", path=self.path) from None
        return conn

    @property
    def location(self) -> str:
        return str(self.path)

    def close(self) -> None:
        with self._lock:
            try:
                self._conn.close()
            except sqlite3.Error as exc:
                raise StoreError(
                    f"cannot close database {self.path}: {exc}", path=self.path
                ) from None

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing --------------------------------------------------------------------------

    def write(
        self, bars: Iterable[Bar] = (), ticks: Iterable[Tick] = (), gaps: Iterable[Gap] = ()
    ) -> None:
        """Write everything in one transaction (all or nothing); raise `StoreError`."""
        bar_rows = [_bar_row(b) for b in bars]
        tick_rows = list(ticks) if self.store_ticks else []
        gap_rows = list(gaps)
        if not (bar_rows or tick_rows or gap_rows):
            return
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    # Only the tables written are touched: a broken `ticks` table must not
                    # stop a transaction of bars.
                    for sql, rows in (
                        (_UPSERT_BAR, bar_rows),
                        (_INSERT_TICK, tick_rows),
                        (_INSERT_GAP, gap_rows),
                    ):
                        if rows:
                            conn.executemany(sql, rows)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StoreError(
                    f"cannot write database {self.path}: {exc}", path=self.path
                ) from None

    # -- reading --------------------------------------------------------------------------

    def _query(self, sql: str, params: Iterable = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._conn.execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(
                    f"cannot read database {self.path}: {exc}", path=self.path
                ) from None

    def carry(self) -> dict[Key, Carry]:
        """Per (segment, security_id, interval_s): the newest bar with a cumulative volume.

        Hand it to `CandleBuilder(carry=...)` after a restart so that volumes continue exactly.
        """
        rows = self._query(
            # SQLite takes the bare column from the row holding MAX(start_utc).
            "SELECT segment, security_id, interval_s, MAX(start_utc), cum_volume_end FROM candles"
            " WHERE cum_volume_end IS NOT NULL GROUP BY segment, security_id, interval_s"
        )
        return {(seg, sid, iv): Carry(start, cum) for seg, sid, iv, start, cum in rows}

    def instruments(self) -> list[tuple[str, int]]:
        """Instruments that have at least one candle."""
        return [
            (seg, sid)
            for seg, sid in self._query(
                "SELECT DISTINCT segment, security_id FROM candles ORDER BY segment, security_id"
            )
        ]

    def intervals(self) -> list[int]:
        return [iv for (iv,) in self._query("SELECT DISTINCT interval_s FROM candles ORDER BY 1")]


def connect_readonly(path: Path, **options: Any) -> tuple[sqlite3.Connection, set[str]]:
    """An existing dhanfeed database opened read-only, and its table names; a `StoreError`
    naming the file when it is missing, unreadable or not ours."""
    if not path.is_file():
        raise StoreError(f"no database at {path}", path=path)
    conn = None
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, **options)
        conn.execute("PRAGMA query_only = ON")
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    except sqlite3.Error as exc:
        if conn is not None:
            conn.close()
        raise StoreError(f"cannot read database {path}: {exc}", path=path) from None
    if "candles" not in tables:
        conn.close()
        raise StoreError(f"{path} is not a dhanfeed database (no candles table)", path=path)
    return conn, tables
