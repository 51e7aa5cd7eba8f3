"""A `dhanfeed.clock.Clock` whose hands move only when the test moves them, so that every
stamp the code takes from it is known exactly. Its wall clock starts at the real time (a token
made for the test is not expired by it); `wait` waits in real time."""

from __future__ import annotations

import datetime as dt
import threading
import time


class FrozenClock:
    def __init__(self, *, monotonic: float = 1000.0) -> None:
        self.mono = monotonic
        self.wall = float(int(time.time()))

    def monotonic(self) -> float:
        return self.mono

    def time(self) -> float:
        return self.wall

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.wall, dt.UTC)

    def wait(self, event: threading.Event, timeout: float) -> bool:
        return event.wait(timeout)

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds
