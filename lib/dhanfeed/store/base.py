"""What every store offers the collector and the readers: the row types and the interface.

A store keeps candles (upserted on their key, so a restart never duplicates a bar), raw ticks
(when `store_ticks`), gaps (and when `bin/backfill` healed them) and the daily reconciliation
with Dhan's bars. `SqliteStore` and `PostgresStore` implement it and pass the same tests.
The rules every backend keeps (see `SqliteStore`): a merge keeps `complete` only when both
parts were complete and never merges into a bar whose `source` is 'dhan'; writing a gap marks
the stored feed bars it overlaps incomplete; a database of an older schema is migrated in
place on the first writable open.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from typing import NamedTuple, Protocol, runtime_checkable

from dhanfeed.candles import Bar, Carry, Key

__all__ = [
    "BAR_COLUMNS",
    "BackfillChange",
    "CandleReads",
    "Gap",
    "HealableStore",
    "Reconciliation",
    "Store",
    "Tick",
    "conditions",
]


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
    healed_utc: float | None = None  # when bin/backfill replaced its bars with Dhan's


class Reconciliation(NamedTuple):
    """How one instrument's complete feed bars of one IST day compared with Dhan's bars."""

    segment: str
    security_id: int
    day: str  # IST date, "YYYY-MM-DD"
    minutes_compared: int
    minutes_differing: int  # open/high/low/close more than one tick apart
    volume_differing: int
    worst_start_utc: int | None  # the minute with the largest price difference
    worst_diff: float | None  # that difference (price units)
    checked_utc: float


class BackfillChange(NamedTuple):
    """One instrument and day of `bin/backfill`: written in one transaction."""

    bars: list[Bar]  # rows to become exactly these bars (any interval)
    healed: list[Gap]  # gaps to mark healed (matched on instrument, start and end)
    healed_utc: float
    reconciliation: Reconciliation | None = None


class Store(Protocol):
    """The store interface. Calls are serialised; errors are `dhanfeed.errors.StoreError`."""

    store_ticks: bool  # False: `write` ignores ticks

    @property
    def location(self) -> str:
        """Where the data lives, for messages (a path, or a URL without its password)."""
        ...

    def write(
        self, bars: Iterable[Bar] = (), ticks: Iterable[Tick] = (), gaps: Iterable[Gap] = ()
    ) -> None:
        """Write everything in one transaction (all or nothing)."""
        ...

    def carry(self) -> dict[Key, Carry]:
        """Per (segment, security_id, interval_s): the newest bar with a cumulative volume."""
        ...

    def candles(
        self,
        segment: str | None = None,
        security_id: int | None = None,
        interval_s: int | None = None,
        start_utc: int | None = None,
        end_utc: int | None = None,
    ) -> list[Bar]:
        """Bars ordered by instrument, interval and time; `start_utc` ≤ bar start < `end_utc`."""
        ...

    def iter_candles(
        self,
        segment: str | None = None,
        security_id: int | None = None,
        interval_s: int | None = None,
        start_utc: int | None = None,
        end_utc: int | None = None,
        chunk: int = 5000,
    ) -> Iterator[Bar]:
        """Like `candles`, a chunk at a time, each chunk its own short read."""
        ...

    def instruments(self) -> list[tuple[str, int]]:
        """Instruments that have at least one candle."""
        ...

    def intervals(self) -> list[int]:
        """Bar intervals present, in seconds, ascending."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Store: ...

    def __exit__(self, *exc: object) -> None: ...


@runtime_checkable
class HealableStore(Store, Protocol):
    """A store that can resume open bars after a crash and take `bin/backfill`'s changes
    (SQLite schema 3, PostgreSQL schema 3). Both stores are; the collector resumes open bars
    and `bin/backfill` heals and reconciles on either."""

    def schema_version(self) -> int:
        """The schema the stored data is in (SQLite 3 / PostgreSQL 3: complete/source, healed
        gaps, reconciliation)."""
        ...

    def ticks(
        self,
        segment: str | None = None,
        security_id: int | None = None,
        since_utc: int | None = None,
    ) -> list[Tick]:
        """Raw ticks in the order received; `since_utc` ≤ LTT (UTC) when given (a restart
        rebuilds the bars open at a crash from them)."""
        ...

    def gaps(
        self,
        *,
        unhealed: bool = False,
        start_utc: float | None = None,
        end_utc: float | None = None,
    ) -> list[Gap]:
        """Gaps, oldest start first; only those overlapping [start_utc, end_utc) when given."""
        ...

    def last_bar_starts(self) -> dict[Key, int]:
        """Per (segment, security_id, interval_s): the start of its newest stored bar."""
        ...

    def reconciliations(self) -> list[Reconciliation]:
        """Every stored reconciliation, by day, segment and security id."""
        ...

    def apply_backfill(self, change: BackfillChange) -> None:
        """Make the rows exactly `change.bars`, mark `change.healed` healed at
        `change.healed_utc` and save the reconciliation: one transaction, all or nothing."""
        ...

    def backfill_lock(self) -> AbstractContextManager[None]:
        """Held by one `bin/backfill` run at a time per database (PostgreSQL: per database and
        client id); entering it raises `LockBusy` while another run holds it."""
        ...


BAR_COLUMNS = (
    "segment, security_id, interval_s, start_utc, open, high, low, close, volume, ticks, "
    "cum_volume_end"
)


class CandleReads:
    """`candles` and `iter_candles`, written once for the SQL stores. A store supplies
    `_query(sql, params)`, its `placeholder` and `_scope()`: conditions every read adds (the
    PostgreSQL store's client id)."""

    placeholder = "?"
    bar_columns = BAR_COLUMNS  # a store with `complete, source` appends them (schema 2)

    def _query(self, sql: str, params: Iterable = ()) -> list[tuple]:
        raise NotImplementedError

    def _scope(self) -> tuple[list[str], list]:
        return [], []

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
        """Like `candles`, a chunk at a time, each chunk its own short read (an export of months
        of bars stays small)."""
        p = self.placeholder
        where, params = self._scope()
        more, values = conditions(
            p,
            ("segment", "=", segment),
            ("security_id", "=", security_id),
            ("interval_s", "=", interval_s),
            ("start_utc", ">=", start_utc),
            ("start_utc", "<", end_utc),
        )
        where += more
        params += values
        # Keyset paging on the primary key: each chunk starts after the last bar of the one before.
        after: tuple = ()
        while True:
            page = list(where)
            if after:
                page.append(f"(segment, security_id, interval_s, start_utc) > ({p}, {p}, {p}, {p})")
            sql = f"SELECT {self.bar_columns} FROM candles"
            if page:
                sql += " WHERE " + " AND ".join(page)
            sql += f" ORDER BY segment, security_id, interval_s, start_utc LIMIT {p}"
            rows = self._query(sql, [*params, *after, chunk])
            yield from (_bar(row) for row in rows)
            if len(rows) < chunk:
                return
            after = tuple(rows[-1][:4])


def conditions(placeholder: str, *given: tuple[str, str, object]) -> tuple[list[str], list[object]]:
    """(column, operator, value) → SQL conditions and their parameters, skipping None values."""
    kept = [(column, op, value) for column, op, value in given if value is not None]
    return [f"{column} {op} {placeholder}" for column, op, _ in kept], [v for *_, v in kept]


def _bar(row: tuple) -> Bar:
    """A candles row: 11 columns, or 13 with `complete` and `source`."""
    seg, sid, iv, start, o, h, lo, c, v, n, cum = row[:11]
    if len(row) > 11:
        return Bar(seg, sid, iv, start, o, h, lo, c, v, n, cum, bool(row[11]), row[12])
    return Bar(seg, sid, iv, start, o, h, lo, c, v, n, cum)
