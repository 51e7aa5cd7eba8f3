"""`dhanfeed.read_candles`: one instrument's bars as a pandas DataFrame with an IST index.

pandas is the optional `pandas` extra (`pip install 'dhanfeed[pandas]'`), loaded on the first
call so that `import dhanfeed` stays light for the collector and the hourly renewer.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from pathlib import Path
from typing import TYPE_CHECKING

from dhanfeed.candle_reader import epoch_of, open_reader
from dhanfeed.config import parse_duration
from dhanfeed.instruments import Instrument, parse_instrument

if TYPE_CHECKING:
    import pandas as pd

IST = zoneinfo.ZoneInfo("Asia/Kolkata")
COLUMNS = ["open", "high", "low", "close", "volume", "ticks", "complete", "source"]
When = dt.date | dt.datetime | str | None


def read_candles(
    database: str | Path,
    instrument: str | Instrument,
    interval: str | int | dt.timedelta = "1m",
    start: When = None,
    end: When = None,
    *,
    client_id: str = "",
) -> pd.DataFrame:
    """Bars of `instrument` ("NSE_EQ:1333") at `interval` ("1m", "5m", 300 or a timedelta)
    starting in [start, end), oldest first.

    The index `time` is each bar's start, tz-aware in Asia/Kolkata. Columns: open, high, low,
    close (float), volume, ticks (int), complete (bool), source ("feed" or "dhan"). `start`
    and `end` are dates, aware datetimes, naive datetimes (read as IST) or ISO strings; a bare
    date as `end` means through that day. None: from the first bar, to the last.
    `database` is an SQLite file or a postgresql:// URL; for PostgreSQL, `client_id` says
    whose bars.
    Raises ValueError for a bad instrument, interval or time, and `dhanfeed.errors.StoreError`
    when the database cannot be read.
    """
    try:
        import pandas as pd  # the optional 'pandas' extra, heavy: loaded on first use
    except ImportError:
        raise ImportError("read_candles needs pandas: pip install 'dhanfeed[pandas]'") from None

    inst = instrument if isinstance(instrument, Instrument) else parse_instrument(instrument)
    interval_s = _interval_s(interval)
    start_utc = 0 if start is None else epoch_of(start, IST, end_of_day=False)
    end_utc = 2**62 if end is None else epoch_of(end, IST, end_of_day=True)
    with open_reader(database, client_id) as reader:
        rows = reader.candles(inst.segment, inst.security_id, interval_s, start_utc, end_utc)
    frame = pd.DataFrame(
        [r[1:] for r in rows],
        columns=COLUMNS,
        index=pd.DatetimeIndex(
            pd.to_datetime([r.start_utc for r in rows], unit="s", utc=True).tz_convert(IST),
            name="time",
        ),
    )
    return frame.astype(
        {"open": "float64", "high": "float64", "low": "float64", "close": "float64",
         "volume": "int64", "ticks": "int64", "complete": "bool"}
    )  # fmt: skip


def _interval_s(interval: str | int | dt.timedelta) -> int:
    if isinstance(interval, dt.timedelta):
        seconds = interval.total_seconds()
    elif isinstance(interval, int) and not isinstance(interval, bool):
        seconds = interval
    else:
        seconds = parse_duration(str(interval)).total_seconds()
    if seconds <= 0 or seconds % 60:
        raise ValueError(f"interval must be a whole number of minutes, got {interval!r}")
    return int(seconds)
