"""`dhanfeed.read_candles`: stored bars as a pandas DataFrame with a tz-aware IST index."""

from __future__ import annotations

import datetime as dt
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import dhanfeed
from dhanfeed.errors import StoreError
from test_web_api import DAY, OPEN_UTC, fill_database

pd = pytest.importorskip("pandas")


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return fill_database(tmp_path)  # 30 1m + 6 5m bars of NSE_EQ:1333 and 5 of NSE_EQ:11536


def test_the_bars_of_one_instrument_and_interval_come_indexed_by_their_ist_start(database) -> None:
    frame = dhanfeed.read_candles(database, "NSE_EQ:1333", "1m", DAY, DAY)
    assert len(frame) == 30
    assert str(frame.index.tz) == "Asia/Kolkata" and frame.index.name == "time"
    assert frame.index[0] == pd.Timestamp("2026-01-05 09:15", tz="Asia/Kolkata")
    assert frame.index[0].timestamp() == OPEN_UTC
    assert list(frame.columns) == ["open", "high", "low", "close", "volume", "ticks", "complete",
                                   "source"]  # fmt: skip
    first = frame.iloc[0]
    assert (first.open, first.high, first.low, first.close) == (100.0, 101.0, 99.0, 100.5)
    assert first.volume == 1 and first.ticks == 3 and bool(first.complete) is True
    assert first.source == "feed"
    assert frame.volume.dtype == "int64" and frame.complete.dtype == "bool"


def test_start_is_inclusive_end_exclusive_and_naive_times_are_ist(database) -> None:
    naive = dt.datetime(2026, 1, 5, 9, 20)  # noqa: DTZ001 - a naive time is read as IST
    frame = dhanfeed.read_candles(database, "NSE_EQ:1333", 60, naive, "2026-01-05 09:25")
    assert [t.strftime("%H:%M") for t in frame.index] == ["09:20", "09:21", "09:22", "09:23",
                                                          "09:24"]  # fmt: skip
    utc = dhanfeed.read_candles(
        database, "NSE_EQ:1333", dt.timedelta(minutes=5),
        dt.datetime(2026, 1, 5, 3, 50, tzinfo=dt.UTC), None,
    )  # fmt: skip
    assert len(utc) == 6 - 1  # 09:15 IST is 03:45 UTC, before the start


def test_no_range_reads_every_bar_and_another_day_reads_none(database) -> None:
    assert len(dhanfeed.read_candles(database, "NSE_EQ:11536", "1m")) == 5
    empty = dhanfeed.read_candles(database, "NSE_EQ:1333", "1m", "2026-01-06", "2026-01-06")
    assert empty.empty and str(empty.index.tz) == "Asia/Kolkata"


def test_source_and_complete_come_from_the_database_when_it_has_them(database) -> None:
    with sqlite3.connect(database) as db:
        db.execute("UPDATE candles SET source = 'dhan', complete = 0 WHERE start_utc = ?",
                   (OPEN_UTC,))  # fmt: skip
    frame = dhanfeed.read_candles(database, "NSE_EQ:1333", "1m")
    assert frame.source.tolist()[:2] == ["dhan", "feed"]
    assert frame.complete.tolist()[:2] == [False, True]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("NSE_XX:1", "1m"), "unknown segment"),
        (("NSE_EQ:1333", "90s"), "whole number of minutes"),
        (("NSE_EQ:1333", "1m", "5 Jan"), "expected a date"),
    ],
)
def test_bad_arguments_are_value_errors_that_say_what_is_wrong(database, args, error) -> None:
    with pytest.raises(ValueError, match=error):
        dhanfeed.read_candles(database, *args)


def test_a_missing_database_is_a_store_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no database at .*nope.sqlite"):
        dhanfeed.read_candles(tmp_path / "nope.sqlite", "NSE_EQ:1333")


def test_without_pandas_it_says_which_extra_to_install(database) -> None:
    code = (
        "import sys; sys.modules['pandas'] = None\n"
        "import dhanfeed\n"
        f"dhanfeed.read_candles({str(database)!r}, 'NSE_EQ:1333')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "ImportError: read_candles needs pandas: pip install 'dhanfeed[pandas]'"
    )


def test_importing_dhanfeed_does_not_load_pandas() -> None:
    code = "import sys, dhanfeed; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False"
