"""The SQLite store: candles, raw ticks and gaps; a batching writer thread; read helpers.

- WAL mode (readers such as `bin/export_candles` never block the collector), `synchronous=NORMAL`
  (a power cut may lose the last commit, never corrupt the file; a restart's upsert and carry
  make the next bars right again).
- `candles` upsert: a bar written before a restart is merged with the rest of it: open kept from
  the stored part, high max, low min, close from the new part, volume and ticks summed,
  `cum_volume_end` from the new part. The builder's carry (`Store.carry()`) makes the second
  part's volume start where the first ended, so the merged bar equals an uninterrupted one.
- `ticks` (when `store_ticks`): one row per packet the caller hands in; the caller hands in only
  packets the builder did not call a duplicate.
- `gaps`: one row per instrument and stretch without a live subscription (times are REAL epoch
  seconds UTC, since gaps during a swap are sub-second).

Errors: anything SQLite or the filesystem refuses becomes a `StoreError` naming the path.
`StoreWriter` never raises into the caller's thread: it counts, logs and keeps the rows for a
retry, and exposes `errors`, `last_error`, `pending` and `lost_rows`.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from dhanfeed.candles import Bar, Carry, Key
from dhanfeed.errors import StoreError

__all__ = ["Gap", "Store", "StoreError", "StoreWriter", "Tick"]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
LOG_FAILURES_EVERY_S = 30.0
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
_BAR_COLUMNS = (
    "segment, security_id, interval_s, start_utc, open, high, low, close, volume, ticks, "
    "cum_volume_end"
)


class Tick(NamedTuple):
    """One packet that made a trade, as stored in `ticks`."""

    segment: str  # "NSE_EQ"
    security_id: int
    ltt_utc: int  # LTT converted to epoch seconds UTC (ltt - 19800)
    ltp: float
    ltq: int | None  # None for Ticker packets
    cum_volume: int | None  # None for Ticker packets
    received_utc: float  # when our socket got it (epoch s)


class Gap(NamedTuple):
    """A stretch during which an instrument had no live subscription."""

    segment: str
    security_id: int
    start_utc: float
    end_utc: float
    reason: str  # e.g. "reconnect after 807", "swap: old socket killed"


def _bar_row(bar: Bar) -> tuple:
    return (
        bar.segment, bar.security_id, bar.interval_s, bar.start_utc, bar.open, bar.high,
        bar.low, bar.close, bar.volume, bar.ticks, bar.cum_volume_end,
    )  # fmt: skip


class Store:
    """One SQLite connection, usable from one thread at a time (calls are serialised)."""

    def __init__(
        self, path: str | Path, store_ticks: bool = True, *, readonly: bool = False
    ) -> None:
        self.path = Path(path)
        self.store_ticks = store_ticks
        self.readonly = readonly
        self._lock = threading.Lock()
        self._conn = self._open()

    @classmethod
    def open_readonly(cls, path: str | Path) -> Store:
        """Open an existing database for reading; a missing file is a `StoreError`."""
        return cls(path, store_ticks=False, readonly=True)

    def _open(self) -> sqlite3.Connection:
        if self.readonly:
            if not self.path.is_file():
                raise StoreError(f"no database at {self.path}")
            try:
                conn = sqlite3.connect(
                    f"{self.path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
                )
                conn.execute("PRAGMA query_only = ON")
                tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read database {self.path}: {exc}") from None
            if "candles" not in tables:
                conn.close()
                raise StoreError(f"{self.path} is not a dhanfeed database (no candles table)")
            return conn
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
            raise StoreError(f"cannot write database {self.path}: {exc}") from None
        return conn

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Store:
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
                    conn.executemany(_UPSERT_BAR, bar_rows)
                    conn.executemany(_INSERT_TICK, tick_rows)
                    conn.executemany(_INSERT_GAP, gap_rows)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StoreError(f"cannot write database {self.path}: {exc}") from None

    # -- reading --------------------------------------------------------------------------

    def _query(self, sql: str, params: Iterable = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._conn.execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read database {self.path}: {exc}") from None

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

    def candles(
        self,
        segment: str | None = None,
        security_id: int | None = None,
        interval_s: int | None = None,
        start_utc: int | None = None,
        end_utc: int | None = None,
    ) -> list[Bar]:
        """Bars ordered by instrument, interval and time; `start_utc` ≤ bar start < `end_utc`."""
        return list(self.iter_candles(segment, security_id, interval_s, start_utc, end_utc))

    def iter_candles(
        self,
        segment: str | None = None,
        security_id: int | None = None,
        interval_s: int | None = None,
        start_utc: int | None = None,
        end_utc: int | None = None,
        chunk: int = 5000,
    ) -> Iterator[Bar]:
        """Like `candles`, a chunk at a time (an export of months of bars stays small)."""
        where, params = [], []
        for column, op, value in (
            ("segment", "=", segment),
            ("security_id", "=", security_id),
            ("interval_s", "=", interval_s),
            ("start_utc", ">=", start_utc),
            ("start_utc", "<", end_utc),
        ):
            if value is not None:
                where.append(f"{column} {op} ?")
                params.append(value)
        # Keyset paging on the primary key: each chunk starts after the last bar of the one before.
        after: tuple = ()
        while True:
            page = list(where)
            if after:
                page.append("(segment, security_id, interval_s, start_utc) > (?, ?, ?, ?)")
            sql = f"SELECT {_BAR_COLUMNS} FROM candles"
            if page:
                sql += " WHERE " + " AND ".join(page)
            sql += " ORDER BY segment, security_id, interval_s, start_utc LIMIT ?"
            rows = self._query(sql, [*params, *after, chunk])
            yield from (Bar(*row) for row in rows)
            if len(rows) < chunk:
                return
            after = tuple(rows[-1][:4])

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

    def candle_count(self) -> int:
        return self._query("SELECT count(*) FROM candles")[0][0]

    def volume_sums(self, interval_s: int = 60) -> dict[tuple[str, int], int]:
        """Per instrument: the sum of candle volumes of one interval (the day's volume)."""
        rows = self._query(
            "SELECT segment, security_id, SUM(volume) FROM candles WHERE interval_s = ?"
            " GROUP BY segment, security_id",
            (interval_s,),
        )
        return {(seg, sid): total for seg, sid, total in rows}

    def tick_counts(self) -> dict[tuple[str, int], int]:
        rows = self._query(
            "SELECT segment, security_id, count(*) FROM ticks GROUP BY segment, security_id"
        )
        return {(seg, sid): n for seg, sid, n in rows}

    def ticks(self, segment: str | None = None, security_id: int | None = None) -> list[Tick]:
        where, params = [], []
        if segment is not None:
            where.append("segment = ?")
            params.append(segment)
        if security_id is not None:
            where.append("security_id = ?")
            params.append(security_id)
        sql = "SELECT segment, security_id, ltt_utc, ltp, ltq, cum_volume, received_utc FROM ticks"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [Tick(*row) for row in self._query(sql + " ORDER BY rowid", params)]

    def gaps(self) -> list[Gap]:
        rows = self._query(
            "SELECT segment, security_id, start_utc, end_utc, reason FROM gaps ORDER BY rowid"
        )
        return [Gap(*row) for row in rows]

    def journal_mode(self) -> str:
        return str(self._query("PRAGMA journal_mode")[0][0]).lower()


class StoreWriter:
    """A writer thread: the collector hands rows in; they are committed in batches.

    A batch is committed when `max_delay_s` has passed since its first row, when it holds
    `max_rows` rows, or at `flush`/`close`. A failed commit is rolled back, counted, logged and
    retried with the same rows (an upsert of a rolled-back batch is safe to repeat); while the
    database keeps failing, ticks beyond `max_pending_ticks` are dropped oldest first and counted
    in `lost_rows` so memory stays bounded (bars and gaps are never dropped).
    """

    def __init__(
        self,
        store: Store,
        *,
        max_delay_s: float = 0.25,
        max_rows: int = 20000,
        max_pending_ticks: int = 2_000_000,
        retry_s: float = 0.5,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.store = store
        self.max_delay_s = max_delay_s
        self.max_rows = max_rows
        self.max_pending_ticks = max_pending_ticks
        self.retry_s = retry_s
        self._clock = clock or time.monotonic
        self._queue: queue.SimpleQueue[tuple[str, object]] = queue.SimpleQueue()
        self._closed = False
        self._pending = 0
        self._pending_lock = threading.Lock()
        self.errors = 0  # failed commits
        self.last_error: str | None = None
        self._logged_at: float | None = None
        self.lost_rows = 0  # ticks dropped while the database failed, or handed in after close
        self.commits = 0
        self.rows_written = 0
        self.bars_written = 0
        self.ticks_written = 0
        self._thread = threading.Thread(target=self._guarded_run, name="store-writer", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Rows handed in and not yet committed."""
        return self._pending

    def put_bars(self, bars: Iterable[Bar]) -> None:
        self._put("bars", list(bars))

    def put_ticks(self, ticks: Iterable[Tick]) -> None:
        """Queue raw ticks (ignored when the store was opened with `store_ticks=False`)."""
        if self.store.store_ticks:
            self._put("ticks", list(ticks))

    def put_gaps(self, gaps: Iterable[Gap]) -> None:
        self._put("gaps", list(gaps))

    def put_gap(self, gap: Gap) -> None:
        self._put("gaps", [gap])

    def _put(self, kind: str, rows: list) -> None:
        if not rows:
            return
        if self._closed:
            self.lost_rows += len(rows)
            logger.error("store writer is closed: %d %s not written", len(rows), kind)
            return
        self._count(len(rows))
        self._queue.put((kind, rows))

    def flush(self, timeout: float) -> bool:
        """Commit everything handed in so far; True when done within `timeout` seconds."""
        if not self._thread.is_alive():
            return self._pending == 0
        done = threading.Event()
        self._queue.put(("flush", done))
        return done.wait(timeout)

    def close(self, timeout: float) -> bool:
        """Commit what is pending, stop the thread, close the store. Bounded by `timeout`.

        Returns True when every row was written. If the database keeps failing, the thread gives
        up at the deadline, counts the rows it could not write in `lost_rows` and logs them.
        """
        lost_before = self.lost_rows
        if not self._closed:
            self._closed = True
            # The thread gives up a little before the join does, so that it can count the loss.
            self._queue.put(("stop", self._clock() + 0.8 * max(0.0, timeout)))
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.error("store writer did not stop within %.1fs", timeout)
            return False
        try:
            self.store.close()
        except sqlite3.Error as exc:  # closing cannot lose committed data; note it
            logger.warning("closing database %s: %s", self.store.path, exc)
        return self._pending == 0 and self.lost_rows == lost_before

    # -- the thread -----------------------------------------------------------------------

    def _guarded_run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # a bug here must not silently stop every write
            self._closed = True
            self.errors += 1
            self.last_error = f"store writer stopped: {exc.__class__.__name__}: {exc}"
            logger.exception("store writer stopped; rows handed in from now on are lost")

    def _run(self) -> None:
        bars: list[Bar] = []
        ticks: list[Tick] = []
        gaps: list[Gap] = []
        waiters: list[threading.Event] = []
        stop_at: float | None = None
        write_at: float | None = None  # when the pending batch is due
        while True:
            if stop_at is not None:
                timeout: float | None = 0.0
            elif write_at is None:
                timeout = None  # nothing pending: sleep until something comes
            else:
                timeout = max(0.0, write_at - self._clock())
            try:
                if timeout == 0.0:
                    kind, payload = self._queue.get_nowait()
                else:
                    kind, payload = self._queue.get(timeout=timeout)
            except queue.Empty:
                kind, payload = "", None
            if kind == "bars":
                bars.extend(payload)  # type: ignore[arg-type]
            elif kind == "ticks":
                ticks.extend(payload)  # type: ignore[arg-type]
            elif kind == "gaps":
                gaps.extend(payload)  # type: ignore[arg-type]
            elif kind == "flush":
                waiters.append(payload)  # type: ignore[arg-type]
            elif kind == "stop":
                stop_at = payload  # type: ignore[assignment]
            rows = len(bars) + len(ticks) + len(gaps)
            now = self._clock()
            if rows and write_at is None:
                write_at = now + self.max_delay_s
            if rows and (
                rows >= self.max_rows
                or waiters  # flush: the queue ahead of the marker is already read
                or stop_at is not None
                or (write_at is not None and now >= write_at)
            ):
                if self._write(bars, ticks, gaps):
                    bars, ticks, gaps = [], [], []
                    write_at = None
                else:
                    write_at = now + self.retry_s
                    if len(ticks) > self.max_pending_ticks:
                        extra = len(ticks) - self.max_pending_ticks
                        del ticks[:extra]
                        self._drop(extra)
                    if stop_at is not None:
                        if now >= stop_at:
                            lost = len(bars) + len(ticks) + len(gaps)
                            self._drop(lost)
                            logger.error(
                                "database %s: %d rows not written at shutdown",
                                self.store.path,
                                lost,
                            )
                            return
                        time.sleep(min(self.retry_s, max(0.0, stop_at - now)))
                    continue
            if not (bars or ticks or gaps):
                for waiter in waiters:
                    waiter.set()
                waiters.clear()
                if stop_at is not None and kind == "":
                    return

    def _write(self, bars: list[Bar], ticks: list[Tick], gaps: list[Gap]) -> bool:
        try:
            self.store.write(bars, ticks, gaps)
        except StoreError as exc:
            self.errors += 1
            self.last_error = str(exc)
            now = time.monotonic()
            if self._logged_at is None or now - self._logged_at >= LOG_FAILURES_EVERY_S:
                self._logged_at = now  # a failing disk must not also flood the log
                logger.error("store write failed (%d so far), will retry: %s", self.errors, exc)
            return False
        n = len(bars) + len(ticks) + len(gaps)
        self.commits += 1
        self.rows_written += n
        self.bars_written += len(bars)
        self.ticks_written += len(ticks)
        self._count(-n)
        return True

    def _drop(self, n: int) -> None:
        self.lost_rows += n
        self._count(-n)

    def _count(self, delta: int) -> None:
        with self._pending_lock:
            self._pending += delta
