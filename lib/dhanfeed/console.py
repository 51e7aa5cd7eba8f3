"""What a person sees when running the collector in a terminal: short log lines on stderr and
a status line every few seconds. Only when stderr is a TTY: under systemd or cron nothing of
this is on, and the JSON log (logs/collector.log, or stdout with --log-stdout) is the record.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import TextIO

from dhanfeed.logs import RedactingFilter
from dhanfeed.status import CollectorStatus
from dhanfeed.token import format_remaining, parse_aware_time

STATUS_LINE_EVERY_S = 5.0


class _Formatter(logging.Formatter):
    """`09:15:02 message`, with the level in front of warnings and worse."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"{self.formatTime(record, self.datefmt)} {record.levelname}: {record.message}"
        return line


def wanted(stream: TextIO, *, log_stdout: bool) -> bool:
    """A person at a terminal, and not already reading JSON lines on stdout."""
    return not log_stdout and stream.isatty()


def attach(stream: TextIO = sys.stderr) -> logging.Handler:
    """Short, redacted lines of every INFO+ record, beside the JSON log."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    handler.addFilter(RedactingFilter())
    handler.setLevel(logging.INFO)
    handler._dhanfeed = True  # type: ignore[attr-defined]  # close_logging removes it
    logging.getLogger().addHandler(handler)
    return handler


def status_line(s: CollectorStatus, now: dt.datetime) -> str:
    """One line of what matters: sockets, token, data, bars, swaps and losses."""
    expires = parse_aware_time(s.token_expires_at)
    token = (
        f"token {s.token_fp} expires {format_remaining(expires - now)}"
        if s.token_fp and expires
        else "no token yet"
    )
    if s.last_data_utc:
        last = format_remaining(dt.datetime.fromtimestamp(s.last_data_utc, dt.UTC) - now)
    else:
        last = "none yet"
    shards = len({sock.shard for sock in s.sockets})  # a swap's second socket is no shard
    return (
        f"status: {s.sockets_live}/{shards} sockets live | {token}"
        f" | packets {s.packets} (last {last}) | bars {s.bars_stored}"
        f" | swaps {s.swaps}, reconnects {s.reconnects}, gaps {s.gaps} | dropped {s.dropped}"
    )
