"""The one clock (a leaf): made once by each program's CLI and passed down to everything that
reads the time or waits, so that a test can hand in its own.

`now()` for the renewal decision, the trading session and alerts; `time()` for rows and the
status file; `monotonic()` for intervals and deadlines; `wait()` for the feed's workers.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds for measuring intervals."""
        ...

    def time(self) -> float:
        """Wall clock, epoch seconds UTC (for rows and the status file)."""
        ...

    def now(self) -> dt.datetime:
        """Wall clock as an aware datetime (for the trading session)."""
        ...

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """Wait until `event` is set or `timeout` seconds pass; whether it is set."""
        ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def wait(self, event: threading.Event, timeout: float) -> bool:
        return event.wait(timeout)
