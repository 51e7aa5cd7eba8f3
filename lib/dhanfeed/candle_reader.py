"""Read-only access to the candle database for people: the status page, `bin/status`,
`read_candles`.

One way in, `open_reader(database, client_id)`: an SQLite file, or a postgresql:// URL whose
rows of that client id are read (`PostgresReader` asks the same questions through per-statement
views of the client's rows, so both readers share every query). The SQLite reader opens the file read-only (`mode=ro`, `query_only`) and runs each question
as one short statement, so in WAL mode it never blocks the collector's writer nor waits for
it. Columns that later schema versions add (`complete`, `source`, `gaps.healed_utc`, the
`reconciliation` table) are read when present; an older file reads as all `complete`, all
`feed`, nothing healed, never reconciled.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import sqlite3
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from dhanfeed.database_url import is_postgres_url, redact
from dhanfeed.errors import StoreError
from dhanfeed.store.sqlite import connect_readonly

BUSY_TIMEOUT_MS = 2000  # a checkpoint can hold a reader back briefly; never for long


class CandleRow(NamedTuple):
    start_utc: int
    open: float
    high: float
    low: float
    close: float
    volume: int
    ticks: int
    complete: bool  # the bar's whole span had a live subscription
    source: str  # "feed" (built from ticks) or "dhan" (replaced from Dhan's intraday bars)


class GapSpan(NamedTuple):
    start_utc: float
    end_utc: float
    reason: str
    healed: bool


@dataclasses.dataclass(frozen=True)
class Reconciliation:
    """The latest reconciled day, summed over instruments."""

    day: str
    instruments: int
    minutes_compared: int
    minutes_differing: int
    volume_differing: int


def epoch_of(when: dt.date | dt.datetime | str, tz: dt.tzinfo, *, end_of_day: bool) -> int:
    """Epoch seconds of a range bound: a date (its midnight in `tz`, or the next midnight
    when `end_of_day`), an aware datetime, a naive one (read in `tz`), or either as ISO text
    ("2026-01-05", "2026-01-05 09:15", "2026-01-05T09:15:00+05:30"). ValueError otherwise."""
    if isinstance(when, str):
        text = when.strip()
        try:
            if len(text) == 10:
                when = dt.date.fromisoformat(text)
            else:
                when = dt.datetime.fromisoformat(text.replace(" ", "T", 1))
        except ValueError:
            raise ValueError(
                f"expected a date like 2026-01-05 or a time like '2026-01-05 09:15', got {text!r}"
            ) from None
    if not isinstance(when, dt.datetime):
        moment = dt.datetime.combine(when, dt.time(0), tzinfo=tz)
        return int((moment + dt.timedelta(days=1 if end_of_day else 0)).timestamp())
    return int((when if when.tzinfo else when.replace(tzinfo=tz)).timestamp())


def open_reader(database: str | Path, client_id: str = "") -> SqliteReader:
    """The reader for `database`: a postgresql:// URL (the rows of `client_id`), else an
    SQLite file. Raises StoreError naming it."""
    if isinstance(database, str) and is_postgres_url(database):
        return PostgresReader(database, client_id)
    return SqliteReader(Path(database))


class SqliteReader:
    path: Path | str  # what messages name (a PostgreSQL URL without its password)
    _conn: Any  # a DB-API connection: sqlite3's here, psycopg's in PostgresReader

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn, _ = connect_readonly(
            path,
            isolation_level=None,  # each SELECT is its own short read transaction
            check_same_thread=False,
            timeout=BUSY_TIMEOUT_MS / 1000,
        )
        try:
            self._columns = self._read_columns()
        except sqlite3.Error as exc:
            self.close()
            raise StoreError(f"cannot read database {path}: {exc}", path=path) from None

    def close(self) -> None:
        conn = getattr(self, "_conn", None)
        if conn is not None:
            conn.close()

    def __enter__(self) -> SqliteReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read_columns(self) -> dict[str, set[str]]:
        tables = [
            n for (n,) in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        return {
            t: {row[1] for row in self._conn.execute(f"PRAGMA table_info({t})")} for t in tables
        }

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read database {self.path}: {exc}", path=self.path) from None

    def has(self, table: str, column: str | None = None) -> bool:
        columns = self._columns.get(table)
        return columns is not None and (column is None or column in columns)

    def candles(
        self, segment: str, security_id: int, interval_s: int, start_utc: int, end_utc: int
    ) -> list[CandleRow]:
        """Bars starting in [start_utc, end_utc), oldest first."""
        complete = "complete" if self.has("candles", "complete") else "1"
        source = "source" if self.has("candles", "source") else "'feed'"
        rows = self._query(
            f"SELECT start_utc, open, high, low, close, volume, ticks, {complete}, {source}"
            " FROM candles WHERE segment = ? AND security_id = ? AND interval_s = ?"
            " AND start_utc >= ? AND start_utc < ? ORDER BY start_utc",
            (segment, security_id, interval_s, start_utc, end_utc),
        )
        return [CandleRow._make((*r[:7], bool(r[7]), r[8] or "feed")) for r in rows]

    def gaps(
        self, segment: str, security_id: int, start_utc: float, end_utc: float
    ) -> list[GapSpan]:
        """Gaps of one instrument overlapping [start_utc, end_utc), oldest first."""
        healed = "healed_utc IS NOT NULL" if self.has("gaps", "healed_utc") else "0"
        rows = self._query(
            f"SELECT start_utc, end_utc, reason, {healed} FROM gaps WHERE segment = ?"
            " AND security_id = ? AND end_utc > ? AND start_utc < ? ORDER BY start_utc",
            (segment, security_id, start_utc, end_utc),
        )
        return [GapSpan(r[0], r[1], r[2], bool(r[3])) for r in rows]

    def candle_count(
        self,
        start_utc: int | None = None,
        end_utc: int | None = None,
        interval_s: int | None = None,
        instruments: Sequence[tuple[str, int]] = (),
    ) -> int:
        """Bars starting in [start_utc, end_utc) (None: unbounded) of any or these instruments."""
        where: list[str] = ["1 = 1"]
        params: list[object] = []
        for column, op, value in (
            ("start_utc", ">=", start_utc),
            ("start_utc", "<", end_utc),
            ("interval_s", "=", interval_s),
        ):
            if value is not None:
                where.append(f"{column} {op} ?")
                params.append(value)
        if instruments:
            pairs = " OR ".join("(segment = ? AND security_id = ?)" for _ in instruments)
            where.append(f"({pairs})")
            params += [v for pair in instruments for v in pair]
        sql = "SELECT count(*) FROM candles WHERE " + " AND ".join(where)
        return int(self._query(sql, tuple(params))[0][0])

    def gap_count(self, start_utc: float, end_utc: float) -> int:
        return int(
            self._query(
                "SELECT count(*) FROM gaps WHERE end_utc > ? AND start_utc < ?",
                (start_utc, end_utc),
            )[0][0]
        )

    def unhealed_gaps(self, start_utc: float, end_utc: float) -> int | None:
        """Gaps overlapping [start_utc, end_utc) not yet healed from Dhan's bars; None while
        the schema cannot tell."""
        if not self.has("gaps", "healed_utc"):
            return None
        rows = self._query(
            "SELECT count(*) FROM gaps WHERE healed_utc IS NULL AND end_utc > ? AND start_utc < ?",
            (start_utc, end_utc),
        )
        return int(rows[0][0])

    def latest_reconciliation(self) -> Reconciliation | None:
        """The last reconciled day; None when `bin/backfill --reconcile` has never run."""
        wanted = {"minutes_compared", "minutes_differing", "volume_differing"}
        columns = self._columns.get("reconciliation", set())
        day = next((c for c in ("day", "date", "trade_date") if c in columns), None)
        if day is None or not wanted <= columns:
            return None
        rows = self._query(
            f"SELECT {day}, count(*), sum(minutes_compared), sum(minutes_differing),"
            f" sum(volume_differing) FROM reconciliation"
            f" WHERE {day} = (SELECT max({day}) FROM reconciliation) GROUP BY {day}"
        )
        if not rows:
            return None
        d, n, compared, differing, volume = rows[0]
        return Reconciliation(
            str(d), int(n), int(compared or 0), int(differing or 0), int(volume or 0)
        )

    def size_bytes(self) -> int:
        """The database with its WAL: what it takes on disk."""
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += Path(f"{self.path}{suffix}").stat().st_size
            except OSError:
                pass
        return total


class PostgresReader(SqliteReader):
    """The same questions of a PostgreSQL database, about one client id's rows.

    Each statement is prefixed with `WITH candles AS (SELECT * FROM candles WHERE client_id =
    ...)` (and so for the other tables it names): inside it the names mean the client's rows,
    so every query of `SqliteReader` runs unchanged, its `?` placeholders turned into `%s`.
    """

    _TABLES = ("candles", "gaps", "reconciliation")

    def __init__(self, url: str, client_id: str) -> None:  # noqa: D107 - not SqliteReader's
        self.path = redact(url)  # what messages name
        self.client_id = client_id
        try:
            import psycopg  # lazy: psycopg's ~90 ms import, which cron runs never need
        except ImportError:  # the optional 'postgresql' extra
            raise StoreError(
                "a postgresql:// database needs the 'postgresql' extra:"
                " pip install 'dhanfeed[postgresql]'"
            ) from None
        self._db_error: type[Exception] = psycopg.Error
        if not client_id:
            raise StoreError("reading PostgreSQL needs the client id whose candles to read")
        try:
            self._conn = psycopg.connect(
                url, autocommit=True, connect_timeout=10, application_name="dhanfeed-reader"
            )
            self._conn.read_only = True
            self._columns = self._read_columns()
        except psycopg.Error as exc:
            self.close()
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else "error"
            raise StoreError(
                f"cannot read database {self.path}: {message}", path=self.path
            ) from None
        if "candles" not in self._columns:
            self.close()
            raise StoreError(
                f"{self.path} is not a dhanfeed database (no candles table)", path=self.path
            )

    def _read_columns(self) -> dict[str, set[str]]:
        columns: dict[str, set[str]] = {}
        for table, column in self._conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = ANY (current_schemas(false))"
        ):
            columns.setdefault(table, set()).add(column)
        return columns

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        tables = [t for t in self._TABLES if re.search(rf"\b{t}\b", sql)]
        views = ", ".join(f"{t} AS (SELECT * FROM {t} WHERE client_id = %s)" for t in tables)
        statement = (f"WITH {views} " if views else "") + sql.replace("?", "%s")
        try:
            return self._conn.execute(
                statement, (self.client_id,) * len(tables) + params
            ).fetchall()
        except self._db_error as exc:
            message = str(exc).strip().splitlines()[0]
            raise StoreError(
                f"cannot read database {self.path}: {message}", path=self.path
            ) from None

    def size_bytes(self) -> int:
        """The whole database (every client's rows): what it takes on the server's disk."""
        return int(self._conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])


_FLOAT32 = struct.Struct("<f")


def as_sent(price: float) -> float:
    """The shortest decimal that is the same float32 as `price`: the price Dhan meant.

    Dhan sends prices as float32, so 2653.65 arrives as 2653.64990234375; rounding that to a
    fixed 4 places would show 2653.6499 (float32 steps exceed 0.0001 above 2048)."""
    sent = _FLOAT32.pack(price)
    for places in range(5):
        if _FLOAT32.pack(shown := round(price, places)) == sent:
            return shown
    return round(price, 4)
