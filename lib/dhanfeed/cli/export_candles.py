"""`bin/export_candles`: candles from the collector's SQLite file as CSV, JSON lines or Parquet.

Exit codes: 0 candles written; 1 no data (no database file, a database without candles, an
instrument or interval it does not hold, nothing in the time range) or the database cannot be
read; 2 usage or configuration error. Every failure is one line on stderr; nothing is written
to the output then.

Logging is not set up: stdout carries the data, and this read-only tool has nothing to log.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import itertools
import json
import os
import re
import sys
import tempfile
import zoneinfo
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from dhanfeed.candle_reader import as_sent, epoch_of, open_reader
from dhanfeed.candles import Bar
from dhanfeed.cli.args import ArgumentParser, exit_on_error
from dhanfeed.config import parse_duration
from dhanfeed.config_load import load_config
from dhanfeed.database_url import PostgresUrl, is_postgres_url
from dhanfeed.errors import ConfigError, ExitCode, NoData, UsageError
from dhanfeed.instruments import Instrument, parse_instrument
from dhanfeed.parquet import write_parquet
from dhanfeed.progress import MIN_ITEMS, progress
from dhanfeed.progress import wanted as progress_wanted
from dhanfeed.store import Store, open_store

PROG = "export_candles"
ZONES = {"ist": zoneinfo.ZoneInfo("Asia/Kolkata"), "utc": dt.UTC}
COLUMNS = ["time", "segment", "security_id", "interval_s", "open", "high", "low", "close",
           "volume", "ticks"]  # fmt: skip

EPILOG = """\
times:
  --from and --to take a date (2026-01-05) or a date and time (2026-01-05 09:15, or
  2026-01-05T09:15:00) in the zone of --tz, unless they carry their own offset (+05:30, Z).
  --from keeps bars starting at or after it; --to keeps bars starting before it, and a bare
  date for --to means the end of that day.

output:
  columns: time (bar start, ISO 8601 with offset), segment, security_id, interval_s, open,
  high, low, close, volume, ticks. Prices are the shortest decimal of the float32 Dhan sent
  (2653.65, not 2653.6499). In Parquet, time is a timestamp in the zone of --tz. On a
  terminal, a long export shows a progress bar on stderr.

exit codes:
  0 written, 1 no data (no database, no candles, unknown instrument or interval, empty range)
  or an unreadable database, 2 usage or configuration error.

examples:
  bin/export_candles --instrument NSE_EQ:1333 --from 2026-01-05 --to 2026-01-05 > rel.csv
  bin/export_candles --interval 5m --format jsonl --tz utc --output data/5m.jsonl
  bin/export_candles --interval 1m --format parquet --output data/1m.parquet
"""


def build_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(
        prog=PROG,
        description="Export OHLCV candles from the collector's database (SQLite or PostgreSQL) as"
        " CSV, JSON lines"
        " or Parquet.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--config", metavar="PATH",
                       help="config file whose collector.database to read (default: "
                            "$DHANFEED_CONFIG, else ./config.toml)")  # fmt: skip
    where.add_argument("--database", metavar="PATH|URL",
                       help="read this SQLite file or postgresql:// URL instead")  # fmt: skip
    ap.add_argument("--client-id", metavar="ID",
                    help="PostgreSQL: whose candles (default: the config's [dhan] client_id)")  # fmt: skip
    ap.add_argument("--instrument", action="append", metavar="SEGMENT:ID", default=[],
                    help="e.g. NSE_EQ:1333; repeat for several (default: all)")  # fmt: skip
    ap.add_argument("--interval", metavar="DURATION",
                    help="bar length such as 1m, 5m, 60m or 1h (default: the shortest stored)")  # fmt: skip
    ap.add_argument(
        "--from", dest="start", metavar="WHEN", help="keep bars starting at or after WHEN"
    )
    ap.add_argument(
        "--to",
        dest="end",
        metavar="WHEN",
        help="keep bars starting before WHEN (a bare date: through that day)",
    )
    ap.add_argument("--tz", choices=sorted(ZONES), default="ist",
                    help="zone of --from/--to and of the time column (default: ist)")  # fmt: skip
    ap.add_argument("--format", choices=["csv", "jsonl", "parquet"], default="csv",
                    help="default: csv; parquet needs --output and the 'parquet' extra "
                         "(pyarrow)")  # fmt: skip
    ap.add_argument("--output", metavar="FILE", help="write to FILE (atomically) instead of stdout")
    ap.add_argument("--debug", action="store_true", help="tracebacks for expected errors too")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = None
    try:
        args = build_parser().parse_args(argv)
        return run(args)
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        sys.stderr.close()
        return int(ExitCode.OK)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return int(ExitCode.FAILED)
    except Exception as exc:  # noqa: BLE001 - expected: one line; the rest with the traceback
        return exit_on_error(PROG, exc, debug=bool(args and args.debug))


def run(args: argparse.Namespace) -> int:
    tz = ZONES[args.tz]
    instruments = [_instrument(text) for text in args.instrument]
    interval_s = _interval(args.interval) if args.interval else None
    start = _when(args.start, tz, end_of_day=False) if args.start else None
    end = _when(args.end, tz, end_of_day=True) if args.end else None
    if start is not None and end is not None and start >= end:
        raise UsageError(f"--from {args.start} is not before --to {args.end}")
    if args.format == "parquet" and (not args.output or args.output == "-"):
        raise UsageError("--format parquet writes a file: give --output FILE")
    path, client_id = _target(args)
    with open_store(path, client_id=client_id, readonly=True) as store:
        interval_s, bars = _select(store, path, instruments, interval_s, start, end)
        first = next(bars, None)
        if first is None:
            raise NoData(f"no candles in {path} {_describe(instruments, interval_s, args)}")
        rest: Iterable[Bar] = itertools.chain([first], bars)
        if progress_wanted(MIN_ITEMS):  # count only when a person may watch a long run
            with open_reader(path, client_id) as reader:
                total = reader.candle_count(
                    start, end, interval_s, [(i.segment, i.security_id) for i in instruments]
                )
            rest = progress(rest, total=total, unit="bar", desc="export")
        _write(args, rest, tz)
    return int(ExitCode.OK)


def _target(args: argparse.Namespace) -> tuple[str | Path, str]:
    """The database to read and, for PostgreSQL, whose rows (the config's client id unless
    --client-id says otherwise)."""
    target: str | Path | None = args.database
    if isinstance(target, str) and is_postgres_url(target):
        try:
            target = PostgresUrl(target)
        except ValueError as exc:
            raise UsageError(f"--database: {exc}") from None
    elif target is not None:
        target = Path(target)
    client_id = args.client_id
    if target is None or (client_id is None and isinstance(target, PostgresUrl)):
        try:
            config = load_config(args.config)
        except ConfigError:
            if target is None:
                raise
            raise UsageError("--client-id is needed to read PostgreSQL without a config") from None
        target = target if target is not None else config.collector.database
        client_id = client_id or config.dhan.client_id
    if client_id is not None and not re.fullmatch(r"\d{1,16}", client_id):
        raise UsageError(f"--client-id: expected digits like '1000000001', got {client_id!r}")
    return target, client_id or ""


def _select(
    store: Store,
    path: str | Path,
    instruments: list[Instrument],
    interval_s: int | None,
    start: int | None,
    end: int | None,
) -> tuple[int, Iterator[Bar]]:
    """The interval to export (the shortest stored when not given) and the bars."""
    stored = store.instruments()
    if not stored:
        raise NoData(f"database {path} has no candles yet (is the collector running?)")
    known = set(stored)
    for inst in instruments:
        if (inst.segment, inst.security_id) not in known:
            sample = ", ".join(f"{s}:{i}" for s, i in stored[:5]) + (
                " ..." if len(stored) > 5 else ""
            )
            raise NoData(f"no candles for {inst.key} in {path} (it has {len(stored)}: {sample})")
    intervals = store.intervals()
    if interval_s is None:
        interval_s = intervals[0]
    elif interval_s not in intervals:
        have = ", ".join(_label(iv) for iv in intervals)
        raise NoData(f"no {_label(interval_s)} candles in {path} (it has {have})")
    if not instruments:
        return interval_s, store.iter_candles(interval_s=interval_s, start_utc=start, end_utc=end)
    return interval_s, itertools.chain.from_iterable(
        store.iter_candles(i.segment, i.security_id, interval_s, start, end) for i in instruments
    )


def _write(args: argparse.Namespace, bars: Iterable[Bar], tz: dt.tzinfo) -> None:
    if not args.output or args.output == "-":
        _emit(sys.stdout, args.format, bars, tz)
        sys.stdout.flush()
        return
    target = Path(args.output)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        if args.format == "parquet":
            os.close(fd)
            write_parquet(Path(tmp), bars, tz)
        else:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
                _emit(out, args.format, bars, tz)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)  # a reader (or cron's next run) never sees half a file
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _emit(out: IO[str], fmt: str, bars: Iterable[Bar], tz: dt.tzinfo) -> None:
    rows = (_row(bar, tz) for bar in bars)
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows([row[c] for c in COLUMNS] for row in rows)
    else:
        for row in rows:
            out.write(json.dumps(row, separators=(",", ":")) + "\n")


def _row(bar: Bar, tz: dt.tzinfo) -> dict[str, object]:
    return {
        "time": dt.datetime.fromtimestamp(bar.start_utc, tz).isoformat(),
        "segment": bar.segment,
        "security_id": bar.security_id,
        "interval_s": bar.interval_s,
        "open": as_sent(bar.open),
        "high": as_sent(bar.high),
        "low": as_sent(bar.low),
        "close": as_sent(bar.close),
        "volume": bar.volume,
        "ticks": bar.ticks,
    }


# -- argument parsing -------------------------------------------------------------------------


def _instrument(text: str) -> Instrument:
    try:
        return parse_instrument(text)
    except ValueError as exc:
        raise UsageError(f"--instrument: {exc}") from None


def _interval(text: str) -> int:
    try:
        seconds = parse_duration(text).total_seconds()
    except ValueError as exc:
        raise UsageError(f"--interval: {exc}") from None
    if seconds <= 0 or seconds % 60:
        raise UsageError(
            f"--interval: expected a whole number of minutes like 1m or 5m, got {text!r}"
        )
    return int(seconds)


def _when(text: str, tz: dt.tzinfo, *, end_of_day: bool) -> int:
    """Epoch seconds for a --from/--to value; a bare date for --to means the next midnight."""
    try:
        return epoch_of(text, tz, end_of_day=end_of_day)
    except ValueError as exc:
        raise UsageError(f"{'--to' if end_of_day else '--from'}: {exc}") from None


def _label(interval_s: int) -> str:
    return f"{interval_s // 60}m"


def _describe(
    instruments: list[Instrument], interval_s: int | None, args: argparse.Namespace
) -> str:
    parts = []
    if instruments:
        parts.append("for " + ", ".join(i.key for i in instruments))
    if interval_s:
        parts.append(f"at {_label(interval_s)}")
    if args.start:
        parts.append(f"from {args.start}")
    if args.end:
        parts.append(f"to {args.end}")
    parts.append(f"({args.tz})")
    return " ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
