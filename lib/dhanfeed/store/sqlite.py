"""The SQLite store (`SqliteStore`): candles, raw ticks and gaps in one WAL-mode file.

- WAL mode (readers such as `bin/export_candles` never block the collector), `synchronous=NORMAL`
  (a power cut may lose the last commit, never corrupt the file; the bars around it are then
  incomplete, for `bin/backfill` to replace).
- `candles` upsert: a bar written before a restart is merged with the rest of it: open kept from
  the stored part, high max, low min, close from the new part, volume and ticks summed,
  `cum_volume_end` from the new part. The builder's carry (`carry()`) makes the second
  part's volume start where the first ended, so the merged bar equals an uninterrupted one.
- raw ticks (when `store_ticks`): one row per packet the caller hands in (the caller hands in
  only packets the builder did not call a duplicate), in one table per trading day,
  `ticks_YYYYMMDD` (the IST date of the LTT), with no index: every insert appends at the end
  of its table, so insert speed does not fall as a busy day grows to hundreds of millions of
  rows, and a day is dropped or archived as one table. The `ticks` view joins the days (the
  newest `TICK_VIEW_DAYS`). A reader that needs an instrument's ticks fast indexes a closed
  day itself (`CREATE INDEX ... ON ticks_20260105 (segment, security_id, ltt_utc)`).
  A version-1 file's `ticks` table is kept as `ticks_v1` (with its index) inside the view.
- `gaps`: one row per instrument and stretch without a live subscription (times are REAL epoch
  seconds UTC, since gaps during a swap are sub-second); `healed_utc` is set by `bin/backfill`.
  Writing a gap marks every stored feed bar it overlaps incomplete (a bar can close by its
  timer while the socket is still down).
- `complete` / `source` on every bar (see `candles.Bar`); a merge keeps `complete` only if both
  parts were complete, and a bar that backfill replaced (`source = 'dhan'`) is never merged into.
- `reconciliation`: per instrument and IST day, how the feed's bars compared with Dhan's.
- Schema version in `PRAGMA user_version` (3: honest bars; 2 was the per-day tick tables). A
  database written by an older dhanfeed is migrated in place when opened for writing, in one
  transaction, no row lost: its bars get
  `complete = 0` (the old volume rule could put volume from outside a bar into it), `source =
  'feed'`, and prices rounded to the segment's precision. Read-only opens do not migrate; they
  read an old database as if migrated.

Errors: anything SQLite or the filesystem refuses becomes a `StoreError` naming the path.
`bin/backfill` runs one at a time per file: `backfill_lock()` is a lock file beside it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import operator
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from dhanfeed.candles import Bar, Carry, Key, round_price
from dhanfeed.errors import LockBusy, StoreError
from dhanfeed.store.base import (
    BAR_COLUMNS,
    BackfillChange,
    CandleReads,
    Gap,
    Reconciliation,
    Tick,
    conditions,
)

__all__ = ["SqliteStore"]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 3
TICK_VIEW_DAYS = 400  # days the `ticks` view joins (SQLite allows 500 terms in a UNION)
IST_OFFSET_S = 19800
DAY_S = 86400
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
    complete INTEGER NOT NULL DEFAULT 1,
    source TEXT NOT NULL DEFAULT 'feed',
    PRIMARY KEY (segment, security_id, interval_s, start_utc)
);
CREATE TABLE IF NOT EXISTS gaps (
    segment TEXT NOT NULL,
    security_id INTEGER NOT NULL,
    start_utc REAL NOT NULL,
    end_utc REAL NOT NULL,
    reason TEXT NOT NULL,
    healed_utc REAL
);
CREATE INDEX IF NOT EXISTS gaps_by_instrument ON gaps (segment, security_id, start_utc);
CREATE TABLE IF NOT EXISTS reconciliation (
    segment TEXT NOT NULL,
    security_id INTEGER NOT NULL,
    day TEXT NOT NULL,
    minutes_compared INTEGER NOT NULL,
    minutes_differing INTEGER NOT NULL,
    volume_differing INTEGER NOT NULL,
    worst_start_utc INTEGER,
    worst_diff REAL,
    checked_utc REAL NOT NULL,
    PRIMARY KEY (segment, security_id, day)
);
"""

_DECIMALS_SQL = "CASE WHEN segment IN ('NSE_CURRENCY', 'BSE_CURRENCY') THEN 4 ELSE 2 END"
# Honest bars (schema 3) on a database of schema 1 or 2. The new table comes from _SCHEMA.
_MIGRATE_1_TO_2 = f"""
ALTER TABLE candles ADD COLUMN complete INTEGER NOT NULL DEFAULT 0;
ALTER TABLE candles ADD COLUMN source TEXT NOT NULL DEFAULT 'feed';
UPDATE candles SET open = round(open, {_DECIMALS_SQL}), high = round(high, {_DECIMALS_SQL}),
    low = round(low, {_DECIMALS_SQL}), close = round(close, {_DECIMALS_SQL});
ALTER TABLE gaps ADD COLUMN healed_utc REAL;
"""

_UPSERT_BAR = """
INSERT INTO candles (segment, security_id, interval_s, start_utc, open, high, low, close,
                     volume, ticks, cum_volume_end, complete, source)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (segment, security_id, interval_s, start_utc) DO UPDATE SET
    high = max(candles.high, excluded.high),
    low = min(candles.low, excluded.low),
    close = excluded.close,
    volume = candles.volume + excluded.volume,
    ticks = candles.ticks + excluded.ticks,
    cum_volume_end = coalesce(excluded.cum_volume_end, candles.cum_volume_end),
    complete = min(candles.complete, excluded.complete)
WHERE candles.source = 'feed'
"""
# Backfill's writes: the row becomes exactly the bar given.
_REPLACE_BAR = """
INSERT INTO candles (segment, security_id, interval_s, start_utc, open, high, low, close,
                     volume, ticks, cum_volume_end, complete, source)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (segment, security_id, interval_s, start_utc) DO UPDATE SET
    open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
    volume = excluded.volume, ticks = excluded.ticks, cum_volume_end = excluded.cum_volume_end,
    complete = excluded.complete, source = excluded.source
"""
# A gap makes every feed bar it overlaps incomplete.
_GAP_MARKS_BARS = """
UPDATE candles SET complete = 0
WHERE segment = ? AND security_id = ? AND start_utc < ? AND start_utc + interval_s > ?
    AND complete = 1 AND source = 'feed'
"""
_HEAL_GAP = """
UPDATE gaps SET healed_utc = ?
WHERE segment = ? AND security_id = ? AND start_utc = ? AND end_utc = ? AND healed_utc IS NULL
"""
_SAVE_RECONCILIATION = """
INSERT OR REPLACE INTO reconciliation (segment, security_id, day, minutes_compared,
    minutes_differing, volume_differing, worst_start_utc, worst_diff, checked_utc)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
TICK_TABLE_COLUMNS = """(
    segment TEXT NOT NULL,
    security_id INTEGER NOT NULL,
    ltt_utc INTEGER NOT NULL,
    ltp REAL NOT NULL,
    ltq INTEGER,
    cum_volume INTEGER,
    received_utc REAL NOT NULL
)"""
_EMPTY_TICKS = (
    "SELECT '' AS segment, 0 AS security_id, 0 AS ltt_utc, 0.0 AS ltp, NULL AS ltq,"
    " NULL AS cum_volume, 0.0 AS received_utc WHERE 0"
)
_LTT = operator.itemgetter(2)


def tick_table(ltt_utc: int) -> str:
    """The table of the trading day (IST date) of an LTT: `ticks_YYYYMMDD`."""
    day = dt.datetime.fromtimestamp(ltt_utc + IST_OFFSET_S, dt.UTC)
    return f"ticks_{day:%Y%m%d}"


def _by_day(rows: Sequence[tuple]) -> Mapping[str, Sequence[tuple]]:
    """Rows per day table; nearly always one day, found without a Python loop over the rows."""
    lo, hi = min(map(_LTT, rows)), max(map(_LTT, rows))
    if (lo + IST_OFFSET_S) // DAY_S == (hi + IST_OFFSET_S) // DAY_S:
        return {tick_table(lo): rows}
    days: dict[str, list[tuple]] = {}
    for row in rows:
        days.setdefault(tick_table(row[2]), []).append(row)
    return days


_INSERT_GAP = (
    "INSERT INTO gaps (segment, security_id, start_utc, end_utc, reason) VALUES (?, ?, ?, ?, ?)"
)
_NEW_COLUMNS = ", complete, source"  # schema 3
_OLD_COLUMNS = ", 0, 'feed'"  # an older file, read-only: read as if migrated


def _bar_row(bar: Bar) -> tuple:
    return (
        bar.segment, bar.security_id, bar.interval_s, bar.start_utc, bar.open, bar.high,
        bar.low, bar.close, bar.volume, bar.ticks, bar.cum_volume_end, int(bar.complete),
        bar.source,
    )  # fmt: skip


def _tick_row(tick: Tick) -> tuple:
    if not isinstance(tick.ltp, float):  # SQLite judges anything else
        return tick
    return tick._replace(ltp=round_price(tick.segment, tick.ltp))


class SqliteStore(CandleReads):
    """The SQLite store: one connection, usable from one thread at a time (calls are serialised)."""

    def __init__(
        self, path: str | Path, store_ticks: bool = True, *, readonly: bool = False
    ) -> None:
        self.bar_columns = BAR_COLUMNS + _NEW_COLUMNS
        self.path = Path(path)
        self.store_ticks = store_ticks
        self.readonly = readonly
        self._lock = threading.Lock()
        self._tick_tables: set[str] = set()  # day tables that exist
        self._conn = self._open()

    @classmethod
    def open_readonly(cls, path: str | Path) -> SqliteStore:
        """Open an existing database for reading; a missing file is a `StoreError`."""
        return cls(path, store_ticks=False, readonly=True)

    def _open(self) -> sqlite3.Connection:
        if self.readonly:
            reader = connect_readonly(self.path, check_same_thread=False)[0]
            columns = {row[1] for row in reader.execute("PRAGMA table_info(candles)")}
            if "complete" not in columns:
                self.bar_columns = BAR_COLUMNS + _OLD_COLUMNS
            return reader
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
            conn.execute("BEGIN IMMEDIATE")
            self._migrate_honest(conn)
            for statement in _SCHEMA.split(";"):  # not executescript: it would commit first
                if statement.strip():
                    conn.execute(statement)
            self._tick_tables = self._migrate_ticks(conn)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            if conn is not None:
                conn.close()
            raise StoreError(f"cannot write database {self.path}: {exc}", path=self.path) from None
        except StoreError:  # a newer schema: refused
            if conn is not None:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                conn.close()
            raise
        return conn

    def _migrate_honest(self, conn: sqlite3.Connection) -> None:
        """Inside the opening transaction: complete/source, healed_utc (schema 3) on an older
        file; refuse a newer one."""
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"database {self.path} has schema {version}, newer than this dhanfeed"
                f" ({SCHEMA_VERSION}); upgrade dhanfeed",
                path=self.path,
            )
        columns = {row[1] for row in conn.execute("PRAGMA table_info(candles)")}
        if columns and "complete" not in columns:
            for statement in _MIGRATE_1_TO_2.split(";"):
                if statement.strip():
                    conn.execute(statement)
            logger.info("database %s migrated to schema %d", self.path, SCHEMA_VERSION)

    def schema_version(self) -> int:
        return int(self._query("PRAGMA user_version")[0][0])

    @staticmethod
    def _migrate_ticks(conn: sqlite3.Connection) -> set[str]:
        """Inside the opening transaction: the day tables, and the `ticks` view over them."""
        kinds = dict(conn.execute("SELECT name, type FROM sqlite_master WHERE name LIKE 'ticks%'"))
        if kinds.get("ticks") == "table":  # version 1: one indexed table
            conn.execute("ALTER TABLE ticks RENAME TO ticks_v1")
            kinds["ticks_v1"] = "table"
        tables = {n for n, kind in kinds.items() if kind == "table" and n != "ticks"}
        SqliteStore._create_tick_view(conn, tables)
        return tables

    @staticmethod
    def _create_tick_view(conn: sqlite3.Connection, tables: set[str]) -> None:
        newest = sorted(tables, key=lambda n: (n != "ticks_v1", n))[-TICK_VIEW_DAYS:]
        body = " UNION ALL ".join(f"SELECT * FROM {n}" for n in newest) or _EMPTY_TICKS
        conn.execute("DROP VIEW IF EXISTS ticks")
        conn.execute(f"CREATE VIEW ticks AS {body}")

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
        tick_rows = [_tick_row(t) for t in ticks] if self.store_ticks else []
        gap_rows = [tuple(g[:5]) for g in gaps]
        days = _by_day(tick_rows) if tick_rows and self.store_ticks else {}
        if not (bar_rows or days or gap_rows):
            return
        with self._lock:
            new_tables = set(days) - self._tick_tables
            with self._write_transaction() as conn:
                # Only the tables written are touched: a broken tick table must not stop a
                # transaction of bars.
                if bar_rows:
                    conn.executemany(_UPSERT_BAR, bar_rows)
                if new_tables:
                    for table in new_tables:
                        conn.execute(f"CREATE TABLE IF NOT EXISTS {table} {TICK_TABLE_COLUMNS}")
                    self._create_tick_view(conn, self._tick_tables | new_tables)
                for table, rows in days.items():
                    conn.executemany(f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                if gap_rows:
                    conn.executemany(_INSERT_GAP, gap_rows)
                    conn.executemany(_GAP_MARKS_BARS, [(g[0], g[1], g[3], g[2]) for g in gap_rows])
            self._tick_tables |= new_tables  # only once committed

    @contextlib.contextmanager
    def _write_transaction(self) -> Iterator[sqlite3.Connection]:
        """Under _lock: BEGIN IMMEDIATE, the caller's statements, COMMIT; any error rolls back
        (nothing half-written) and SQLite's errors become a `StoreError` naming the file."""
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write database {self.path}: {exc}", path=self.path) from None

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

        Hand it to `CandleBuilder(carry=...)` after a restart: packets already counted are then
        duplicates (it carries no volume into a bar: see `candles`).
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

    def ticks(
        self,
        segment: str | None = None,
        security_id: int | None = None,
        since_utc: int | None = None,
    ) -> list[Tick]:
        """Raw ticks in the order received; `since_utc` ≤ LTT (UTC) when given."""
        where, params = conditions(
            "?",
            ("segment", "=", segment),
            ("security_id", "=", security_id),
            ("ltt_utc", ">=", since_utc),
        )
        sql = "SELECT segment, security_id, ltt_utc, ltp, ltq, cum_volume, received_utc FROM ticks"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [Tick(*row) for row in self._query(sql + " ORDER BY received_utc, ltt_utc", params)]

    def gaps(
        self,
        *,
        unhealed: bool = False,
        start_utc: float | None = None,
        end_utc: float | None = None,
    ) -> list[Gap]:
        """Gaps, oldest start first; only those overlapping [start_utc, end_utc) when given."""
        migrated = not self.bar_columns.endswith(_OLD_COLUMNS)  # schema 1 (read-only): no healed
        healed = "healed_utc" if migrated else "NULL"
        sql = f"SELECT segment, security_id, start_utc, end_utc, reason, {healed} FROM gaps"
        where, params = conditions("?", ("end_utc", ">", start_utc), ("start_utc", "<", end_utc))
        if unhealed and migrated:
            where.append("healed_utc IS NULL")
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [Gap(*row) for row in self._query(sql + " ORDER BY start_utc, rowid", params)]

    def last_bar_starts(self) -> dict[Key, int]:
        """Per (segment, security_id, interval_s): the start of its newest stored bar."""
        rows = self._query(
            "SELECT segment, security_id, interval_s, MAX(start_utc) FROM candles"
            " GROUP BY segment, security_id, interval_s"
        )
        return {(seg, sid, iv): start for seg, sid, iv, start in rows}

    def reconciliations(self) -> list[Reconciliation]:
        rows = self._query(
            "SELECT segment, security_id, day, minutes_compared, minutes_differing,"
            " volume_differing, worst_start_utc, worst_diff, checked_utc FROM reconciliation"
            " ORDER BY day, segment, security_id"
        )
        return [Reconciliation(*row) for row in rows]

    def apply_backfill(self, change: BackfillChange) -> None:
        """Replace bars, mark gaps healed and save the reconciliation: all or nothing."""
        with self._lock, self._write_transaction() as conn:
            conn.executemany(_REPLACE_BAR, [_bar_row(b) for b in change.bars])
            conn.executemany(_HEAL_GAP, [(change.healed_utc, *g[:4]) for g in change.healed])
            if change.reconciliation is not None:
                conn.execute(_SAVE_RECONCILIATION, tuple(change.reconciliation))

    @contextlib.contextmanager
    def backfill_lock(self) -> Iterator[None]:
        """A lock file beside the database (`candles.sqlite.backfill.lock`), held for the run."""
        lock_file = self.path.with_name(self.path.name + ".backfill.lock")
        lock = FileLock(lock_file, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise LockBusy(
                f"another backfill of {self.path} is running (lock {lock_file} is held)",
                path=lock_file,
            ) from None
        try:
            yield
        finally:
            lock.release()


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
