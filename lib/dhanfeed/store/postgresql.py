"""The PostgreSQL store (`PostgresStore`): several collectors, remote readers, more raw ticks.

The same tables and semantics as the SQLite store (see `store.sqlite`), and:

- `client_id` in every row and in the candle key: two accounts recording the same instrument
  never merge bars; a store reads and writes only its own client id's rows.
- The program creates and migrates the schema itself (`postgresql_schema`), under an advisory
  lock (several collectors may start at once), and records its version in `dhanfeed_schema`.
  A role that only has INSERT/UPDATE/SELECT (see README) works once the schema exists.
- `ticks` is range-partitioned by IST trading day on `ltt_utc` (`ticks_20260105`), so an old
  day is dropped or archived with `DROP TABLE` / `DETACH PARTITION`. Partitions are created on
  demand by `dhanfeed_tick_partition(day)`, a SECURITY DEFINER function owned by the schema's
  owner, so the collector's role needs no CREATE privilege. Raw ticks go in with binary COPY.
  Their only index is a BRIN on `ltt_utc` (tiny, and cheap to keep while ticks arrive in
  time order); a B-tree per instrument, as SQLite has, cut the COPY rate about threefold
  in bench 6. Readers who query ticks by instrument can add one (see README).
- The server may go away (restart, network cut): every call then raises `StoreError`, and the
  next call reconnects, no sooner than a backoff (0.5 s doubling to `MAX_BACKOFF_S`) allows.
  `StoreWriter` keeps the rows and retries, so nothing is lost while its backlog holds.
- `location` is the URL without any password (the config refuses one anyway).
- `bin/backfill` (schema 3: the `reconciliation` table) runs one at a time per client id:
  `backfill_lock()` is a session advisory lock on a connection of its own.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import psycopg
from psycopg import sql

from dhanfeed.candles import Bar, Carry, Key, round_price
from dhanfeed.database_url import redact
from dhanfeed.errors import LockBusy, StoreError, StoreUnavailable
from dhanfeed.store.base import (
    BAR_COLUMNS,
    BackfillChange,
    CandleReads,
    Gap,
    Reconciliation,
    Tick,
    conditions,
)
from dhanfeed.store.postgresql_schema import SCHEMA_VERSION, migrate, schema_version

__all__ = ["SCHEMA_VERSION", "PostgresStore"]

IST_OFFSET_S = 19800  # partitions are IST days: a trading day never straddles two
MAX_BACKOFF_S = 8.0
CONNECT_TIMEOUT_S = 5
# Bounds on a hung server or a cut network, so that a write fails (and is retried) instead of
# blocking the writer thread for TCP's default quarter of an hour.
_CONNECT_OPTIONS: dict[str, Any] = {
    "connect_timeout": CONNECT_TIMEOUT_S,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,  # ms
    "options": "-c statement_timeout=60s",
}
# A server that answered and refused (libpq gives no SQLSTATE for these): a configuration
# problem that waiting will not fix. Anything else (refused connection, timeout, a server
# starting up or shutting down) is `StoreUnavailable`.
_REFUSED = re.compile(r"password|does not exist|pg_hba\.conf|authentication|permission denied")
# Advisory lock key "dhf" + 3 (1 and 2 are postgresql_schema's), with the client id's hash.
_LOCK_BACKFILL = 0x64686603

_UPSERT_BAR = """
INSERT INTO candles (client_id, segment, security_id, interval_s, start_utc, open, high, low,
                     close, volume, ticks, cum_volume_end, complete, source)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (client_id, segment, security_id, interval_s, start_utc) DO UPDATE SET
    high = greatest(candles.high, excluded.high),
    low = least(candles.low, excluded.low),
    close = excluded.close,
    volume = candles.volume + excluded.volume,
    ticks = candles.ticks + excluded.ticks,
    cum_volume_end = coalesce(excluded.cum_volume_end, candles.cum_volume_end),
    complete = candles.complete AND excluded.complete
WHERE candles.source = 'feed'
"""
# A gap makes every feed bar it overlaps incomplete (as in SQLite).
_GAP_MARKS_BARS = """
UPDATE candles SET complete = false
WHERE client_id = %s AND segment = %s AND security_id = %s AND start_utc < %s
    AND start_utc + interval_s > %s AND complete AND source = 'feed'
"""
_COPY_TICKS = (
    "COPY ticks (client_id, segment, security_id, ltt_utc, ltp, ltq, cum_volume, received_utc)"
    " FROM STDIN (FORMAT BINARY)"
)
_TICK_TYPES = ["text", "text", "int8", "int8", "float8", "int8", "int8", "float8"]
_INSERT_GAP = (
    "INSERT INTO gaps (client_id, segment, security_id, start_utc, end_utc, reason)"
    " VALUES (%s, %s, %s, %s, %s, %s)"
)
# An import replaces a bar (the source holds the whole bar); a live write merges (see above).
_REPLACE_BAR = (
    _UPSERT_BAR.split("DO UPDATE SET")[0]
    + """DO UPDATE SET
    open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
    volume = excluded.volume, ticks = excluded.ticks, cum_volume_end = excluded.cum_volume_end,
    complete = excluded.complete, source = excluded.source
"""
)
_HEAL_GAP = """
UPDATE gaps SET healed_utc = %s
WHERE client_id = %s AND segment = %s AND security_id = %s AND start_utc = %s AND end_utc = %s
    AND healed_utc IS NULL
"""
_SAVE_RECONCILIATION = """
INSERT INTO reconciliation (client_id, segment, security_id, day, minutes_compared,
    minutes_differing, volume_differing, worst_start_utc, worst_diff, checked_utc)
VALUES (%s, %s, %s, %s::date, %s, %s, %s, %s, %s, %s)
ON CONFLICT (client_id, segment, security_id, day) DO UPDATE SET
    minutes_compared = excluded.minutes_compared, minutes_differing = excluded.minutes_differing,
    volume_differing = excluded.volume_differing, worst_start_utc = excluded.worst_start_utc,
    worst_diff = excluded.worst_diff, checked_utc = excluded.checked_utc
"""


def ist_day(ltt_utc: int) -> dt.date:
    """The IST calendar day of an epoch-seconds instant: the partition its tick goes to."""
    return dt.date(1970, 1, 1) + dt.timedelta(days=(ltt_utc + IST_OFFSET_S) // 86400)


def _bar_fields(b: Bar) -> tuple:
    return (
        b.segment, b.security_id, b.interval_s, b.start_utc, b.open, b.high, b.low, b.close,
        b.volume, b.ticks, b.cum_volume_end, bool(b.complete), b.source,
    )  # fmt: skip


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


class PostgresStore(CandleReads):
    """One connection to PostgreSQL for one client id; calls are serialised."""

    def __init__(
        self,
        url: str,
        client_id: str,
        store_ticks: bool = True,
        *,
        readonly: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.client_id = client_id
        self.store_ticks = store_ticks
        self.readonly = readonly
        self._clock = clock
        self._lock = threading.Lock()
        self._conn: psycopg.Connection | None = None
        self._partitions: set[dt.date] = set()  # known to exist
        self._backoff_s = 0.0
        self._retry_at = 0.0
        self.connects = 0
        with self._lock:
            self._connection()  # fail now (StoreError), not at the first bar

    @classmethod
    def open_readonly(cls, url: str, client_id: str) -> PostgresStore:
        return cls(url, client_id, store_ticks=False, readonly=True)

    @property
    def location(self) -> str:
        return redact(self.url)

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed

    # -- the connection ------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection:
        """Under _lock: the live connection, or a new one once the backoff allows."""
        if self._conn is not None and not self._conn.closed:
            return self._conn
        now = self._clock()
        if now < self._retry_at:
            raise StoreUnavailable(
                f"database {self.location} is unreachable; next attempt in"
                f" {self._retry_at - now:.1f}s"
            )
        try:
            conn = self._connect("dhanfeed-reader" if self.readonly else "dhanfeed-collector")
        except StoreError:
            self._back_off()
            raise
        try:
            if self.readonly:
                conn.read_only = True
                if schema_version(conn) == 0:
                    raise StoreError(f"{self.location} is not a dhanfeed database (no schema)")
            else:
                migrate(conn)
        except psycopg.errors.InsufficientPrivilege as exc:
            conn.close()
            raise StoreError(
                f"database {self.location} needs its dhanfeed schema created or upgraded to"
                f" version {SCHEMA_VERSION}, which this role may not do ({_first_line(exc)}):"
                " run bin/sqlite_to_postgres --to URL once as the owner role (see README)"
            ) from None
        except (psycopg.Error, StoreError) as exc:
            conn.close()
            self._back_off()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(
                f"cannot set up database {self.location}: {_first_line(exc)}"
            ) from None
        self._conn = conn
        self._backoff_s = 0.0
        self._partitions.clear()
        self.connects += 1
        return conn

    def _connect(self, application_name: str) -> psycopg.Connection:
        """A new autocommit connection; a `StoreError` (`StoreUnavailable` unless the server
        answered and refused) naming the URL without its password."""
        try:
            return psycopg.connect(
                self.url, autocommit=True, application_name=application_name, **_CONNECT_OPTIONS
            )
        except psycopg.Error as exc:
            reason = _first_line(exc)
            error = StoreError if _REFUSED.search(reason) else StoreUnavailable
            raise error(f"cannot connect to database {self.location}: {reason}") from None

    @contextlib.contextmanager
    def _connected(self, doing: str) -> Iterator[psycopg.Connection]:
        """The live connection, under _lock; psycopg's errors become a `StoreError` ("cannot
        {doing} database ..."; `StoreUnavailable` when the connection broke). Callers open
        their own transaction in it: a write first creates tick partitions outside its own."""
        with self._lock:
            conn = self._connection()
            try:
                yield conn
            except psycopg.Error as exc:
                raise self._failed(doing, exc) from None

    def _back_off(self) -> None:
        self._backoff_s = min(MAX_BACKOFF_S, max(0.5, self._backoff_s * 2))
        self._retry_at = self._clock() + self._backoff_s

    def _failed(self, doing: str, exc: psycopg.Error) -> StoreError:
        """Under _lock: a failed call; a broken connection is dropped (the next call reconnects)."""
        self._partitions.clear()  # a partition may have been dropped under us
        error = StoreError
        if self._conn is not None and (self._conn.closed or self._conn.broken):
            self._conn.close()
            self._conn = None
            self._back_off()
            error = StoreUnavailable
        return error(f"cannot {doing} database {self.location}: {_first_line(exc)}")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------

    def write(
        self, bars: Iterable[Bar] = (), ticks: Iterable[Tick] = (), gaps: Iterable[Gap] = ()
    ) -> None:
        """Write everything in one transaction (all or nothing); raise `StoreError`."""
        cid = self.client_id
        bar_rows = [(cid, *_bar_fields(b)) for b in bars]
        tick_rows = list(ticks) if self.store_ticks else []
        gap_rows = [(cid, *g[:5]) for g in gaps]
        if not (bar_rows or tick_rows or gap_rows):
            return
        with self._connected("write") as conn:
            try:
                self._write(conn, bar_rows, tick_rows, gap_rows)
            except psycopg.errors.CheckViolation:
                if not (tick_rows and self._partitions):
                    raise
                # "no partition for row": someone dropped a day this process had seen.
                self._partitions.clear()
                self._write(conn, bar_rows, tick_rows, gap_rows)

    def _write(
        self, conn: psycopg.Connection, bars: list[tuple], ticks: list[Tick], gaps: list[tuple]
    ) -> None:
        self._ensure_partitions(conn, ticks)
        with conn.transaction(), conn.cursor() as cur:
            if bars:
                cur.executemany(_UPSERT_BAR, bars)
            if ticks:
                cid = self.client_id
                with cur.copy(_COPY_TICKS) as copy:
                    copy.set_types(_TICK_TYPES)
                    for tick in ticks:
                        copy.write_row((cid, *tick[:3], round_price(tick[0], tick[3]), *tick[4:]))
            if gaps:
                cur.executemany(_INSERT_GAP, gaps)
                cur.executemany(_GAP_MARKS_BARS, [(g[0], g[1], g[2], g[4], g[3]) for g in gaps])

    def _ensure_partitions(self, conn: psycopg.Connection, ticks: list[Tick]) -> None:
        """Create the day partitions the ticks need, each in its own short transaction (before
        the write's, so that no lock is held while waiting for another collector's)."""
        if not ticks:
            return
        days = {ist_day(t.ltt_utc) for t in ticks} - self._partitions
        for day in sorted(days):
            conn.execute("SELECT dhanfeed_tick_partition(%s)", (day,))
            self._partitions.add(day)

    def import_rows(self, bars: list[Bar], ticks: list[Tick], gaps: list[Gap]) -> tuple[int, int]:
        """Copy rows in idempotently (a second import of the same rows changes nothing): bars
        replace the stored bar of their key; ticks and gaps are added unless an equal row is
        there. Returns (ticks added, gaps added). Needs the TEMP privilege."""
        cid = self.client_id
        with self._connected("import into") as conn:
            self._ensure_partitions(conn, ticks)
            with conn.transaction(), conn.cursor() as cur:
                if bars:
                    cur.executemany(_REPLACE_BAR, [(cid, *_bar_fields(b)) for b in bars])
                added = []
                for table, rows, columns, when in (
                    ("ticks", ticks, _TICK_TYPES, "ltt_utc"),
                    (
                        "gaps",
                        gaps,
                        ["text", "text", "int8", "float8", "float8", "text", "float8"],
                        "start_utc",
                    ),
                ):
                    if not rows:
                        added.append(0)
                        continue
                    tmp = sql.Identifier(f"import_{table}")
                    cur.execute(
                        sql.SQL("CREATE TEMP TABLE {} (LIKE {}) ON COMMIT DROP").format(
                            tmp, sql.Identifier(table)
                        )
                    )
                    with cur.copy(
                        sql.SQL("COPY {} FROM STDIN (FORMAT BINARY)").format(tmp)
                    ) as copy:
                        copy.set_types(columns)
                        for row in rows:
                            copy.write_row((cid, *row))
                    cur.execute(
                        sql.SQL(
                            "INSERT INTO {table} SELECT * FROM {tmp}"
                            " EXCEPT SELECT * FROM {table} WHERE client_id = %s AND {when}"
                            " BETWEEN (SELECT min({when}) FROM {tmp})"
                            " AND (SELECT max({when}) FROM {tmp})"
                        ).format(table=sql.Identifier(table), tmp=tmp, when=sql.Identifier(when)),
                        (cid,),
                    )
                    added.append(cur.rowcount)
        return added[0], added[1]

    def apply_backfill(self, change: BackfillChange) -> None:
        """Replace bars, mark gaps healed and save the reconciliation: all or nothing."""
        cid = self.client_id
        with self._connected("write") as conn, conn.transaction(), conn.cursor() as cur:
            if change.bars:
                cur.executemany(_REPLACE_BAR, [(cid, *_bar_fields(b)) for b in change.bars])
            if change.healed:
                cur.executemany(
                    _HEAL_GAP, [(change.healed_utc, cid, *g[:4]) for g in change.healed]
                )
            if change.reconciliation is not None:
                cur.execute(_SAVE_RECONCILIATION, (cid, *change.reconciliation))

    @contextlib.contextmanager
    def backfill_lock(self) -> Iterator[None]:
        """A session advisory lock on (backfill, this client id), on a connection of its own:
        a reconnect of the store's connection must not drop it. Released when the run ends
        (or its process dies: the server then closes the session)."""
        conn = self._connect("dhanfeed-backfill")
        with conn:
            try:
                row = conn.execute(
                    "SELECT pg_try_advisory_lock(%s::integer, hashtext(%s))",
                    (_LOCK_BACKFILL, self.client_id),
                ).fetchone()
            except psycopg.Error as exc:
                raise StoreError(
                    f"cannot lock database {self.location}: {_first_line(exc)}"
                ) from None
            if not (row and row[0]):
                raise LockBusy(
                    f"another backfill of client id {self.client_id} in {self.location} is"
                    " running (it holds the database's backfill lock)"
                )
            yield

    # -- reading ---------------------------------------------------------------------------

    def _query(self, query: str | sql.Composed, params: Iterable = ()) -> list[tuple]:
        with self._connected("read") as conn:
            return conn.execute(query, tuple(params)).fetchall()

    placeholder = "%s"
    bar_columns = BAR_COLUMNS + ", complete, source"

    def _scope(self) -> tuple[list[str], list]:
        return ["client_id = %s"], [self.client_id]

    def carry(self) -> dict[Key, Carry]:
        """Per (segment, security_id, interval_s): the newest bar with a cumulative volume."""
        rows = self._query(
            "SELECT DISTINCT ON (segment, security_id, interval_s)"
            " segment, security_id, interval_s, start_utc, cum_volume_end FROM candles"
            " WHERE client_id = %s AND cum_volume_end IS NOT NULL"
            " ORDER BY segment, security_id, interval_s, start_utc DESC",
            (self.client_id,),
        )
        return {(seg, sid, iv): Carry(start, cum) for seg, sid, iv, start, cum in rows}

    def instruments(self) -> list[tuple[str, int]]:
        """Instruments that have at least one candle."""
        return [
            (seg, sid)
            for seg, sid in self._query(
                "SELECT DISTINCT segment, security_id FROM candles WHERE client_id = %s"
                " ORDER BY segment, security_id",
                (self.client_id,),
            )
        ]

    def intervals(self) -> list[int]:
        return [
            iv
            for (iv,) in self._query(
                "SELECT DISTINCT interval_s FROM candles WHERE client_id = %s ORDER BY 1",
                (self.client_id,),
            )
        ]

    def schema_version(self) -> int:
        return int(self._query("SELECT version FROM dhanfeed_schema")[0][0])

    def ticks(
        self,
        segment: str | None = None,
        security_id: int | None = None,
        since_utc: int | None = None,
    ) -> list[Tick]:
        """Raw ticks in the order received; `since_utc` ≤ LTT (UTC) when given (which also
        spares the partitions of older days)."""
        where, params = conditions(
            "%s",
            ("client_id", "=", self.client_id),
            ("segment", "=", segment),
            ("security_id", "=", security_id),
            ("ltt_utc", ">=", since_utc),
        )
        rows = self._query(
            "SELECT segment, security_id, ltt_utc, ltp, ltq, cum_volume, received_utc FROM ticks"
            f" WHERE {' AND '.join(where)} ORDER BY received_utc, ltt_utc",
            params,
        )
        return [Tick(*row) for row in rows]

    def gaps(
        self,
        *,
        unhealed: bool = False,
        start_utc: float | None = None,
        end_utc: float | None = None,
    ) -> list[Gap]:
        """Gaps, oldest start first; only those overlapping [start_utc, end_utc) when given."""
        where, params = conditions(
            "%s",
            ("client_id", "=", self.client_id),
            ("end_utc", ">", start_utc),
            ("start_utc", "<", end_utc),
        )
        if unhealed:
            where.append("healed_utc IS NULL")
        rows = self._query(
            "SELECT segment, security_id, start_utc, end_utc, reason, healed_utc FROM gaps"
            f" WHERE {' AND '.join(where)} ORDER BY start_utc, end_utc, segment, security_id",
            params,
        )
        return [Gap(*row) for row in rows]

    def last_bar_starts(self) -> dict[Key, int]:
        """Per (segment, security_id, interval_s): the start of its newest stored bar."""
        rows = self._query(
            "SELECT segment, security_id, interval_s, max(start_utc) FROM candles"
            " WHERE client_id = %s GROUP BY segment, security_id, interval_s",
            (self.client_id,),
        )
        return {(seg, sid, iv): start for seg, sid, iv, start in rows}

    def reconciliations(self) -> list[Reconciliation]:
        rows = self._query(
            "SELECT segment, security_id, to_char(day, 'YYYY-MM-DD'), minutes_compared,"
            " minutes_differing, volume_differing, worst_start_utc, worst_diff, checked_utc"
            " FROM reconciliation WHERE client_id = %s ORDER BY day, segment, security_id",
            (self.client_id,),
        )
        return [Reconciliation(*row) for row in rows]
