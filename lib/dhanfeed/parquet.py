"""Candle rows → a Parquet file (`bin/export_candles --format parquet`).

pyarrow is the optional `parquet` extra (`pip install 'dhanfeed[parquet]'`); without it this
says so in one line. Rows are written in row groups as they come, so an export of months of
bars never holds them all in memory.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable
from pathlib import Path

from dhanfeed.candle_reader import as_sent
from dhanfeed.candles import Bar
from dhanfeed.errors import UsageError

ROW_GROUP = 50_000


def write_parquet(path: Path, bars: Iterable[Bar], tz: dt.tzinfo) -> int:
    """Write `bars` to `path` (prices as Dhan sent them, times in `tz`); return the count."""
    try:
        import pyarrow as pa  # the optional 'parquet' extra, heavy: loaded on first use
        import pyarrow.parquet as pq  # the optional 'parquet' extra, with pyarrow
    except ImportError:
        raise UsageError(
            "--format parquet needs pyarrow: pip install 'dhanfeed[parquet]'"
        ) from None
    zone = "UTC" if tz is dt.UTC else str(tz)
    schema = pa.schema(
        [
            ("time", pa.timestamp("ms", tz=zone)),  # Parquet has no second unit
            ("segment", pa.string()),
            ("security_id", pa.int64()),
            ("interval_s", pa.int32()),
            ("open", pa.float64()),
            ("high", pa.float64()),
            ("low", pa.float64()),
            ("close", pa.float64()),
            ("volume", pa.int64()),
            ("ticks", pa.int64()),
        ]
    )
    written = 0
    it = iter(bars)
    with pq.ParquetWriter(str(path), schema) as writer:
        while chunk := list(itertools.islice(it, ROW_GROUP)):
            columns = {
                "time": [b.start_utc * 1000 for b in chunk],  # epoch ms; the zone is metadata
                "segment": [b.segment for b in chunk],
                "security_id": [b.security_id for b in chunk],
                "interval_s": [b.interval_s for b in chunk],
                **{
                    price: [as_sent(getattr(b, price)) for b in chunk]
                    for price in ("open", "high", "low", "close")
                },
                "volume": [b.volume for b in chunk],
                "ticks": [b.ticks for b in chunk],
            }
            writer.write_table(pa.table(columns, schema=schema))
            written += len(chunk)
    return written
