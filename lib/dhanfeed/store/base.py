"""What every store offers the collector and the readers: the row types and the interface.

A store keeps three kinds of row: candles (upserted on their key, so a restart never
duplicates a bar), raw ticks (when `store_ticks`) and gaps. `SqliteStore` implements it;
a PostgreSQL store implements the same interface and passes the same tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple, Protocol

from dhanfeed.candles import Bar, Carry, Key

__all__ = ["BAR_COLUMNS", "CandleReads", "Gap", "Store", "Tick"]


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


BAR_COLUMNS = (
    "segment, security_id, interval_s, start_utc, open, high, low, close, volume, ticks, "
    "cum_volume_end"
)


class CandleReads:
    """`candles` and `iter_candles`, written once for the SQL stores. A store supplies
    `_query(sql, params)`, its `placeholder` and `_scope()`: conditions every read adds (the
    PostgreSQL store's client id)."""

    placeholder = "?"

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
        for column, op, value in (
            ("segment", "=", segment),
            ("security_id", "=", security_id),
            ("interval_s", "=", interval_s),
            ("start_utc", ">=", start_utc),
            ("start_utc", "<", end_utc),
        ):
            if value is not None:
                where.append(f"{column} {op} {p}")
                params.append(value)
        # Keyset paging on the primary key: each chunk starts after the last bar of the one before.
        after: tuple = ()
        while True:
            page = list(where)
            if after:
                page.append(f"(segment, security_id, interval_s, start_utc) > ({p}, {p}, {p}, {p})")
            sql = f"SELECT {BAR_COLUMNS} FROM candles"
            if page:
                sql += " WHERE " + " AND ".join(page)
            sql += f" ORDER BY segment, security_id, interval_s, start_utc LIMIT {p}"
            rows = self._query(sql, [*params, *after, chunk])
            yield from (Bar(*row) for row in rows)
            if len(rows) < chunk:
                return
            after = tuple(rows[-1][:4])
