"""The whole-run time bound of bin/renew_token, behind the HTTP calls' own deadlines (a leaf).

`run_timeout(seconds)` arms SIGALRM; its handler raises `RunTimeout` through `shield.interrupt`,
so a file write or a lock release under way finishes first. `stop_run_timer()` disarms it once
Dhan has issued a token: from then on stopping half-way would lose the only valid token, and
writing, confirming and alerting are each bounded on their own. Signals reach the main thread
only, so from another thread (tests calling main() there) both do nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from dhanfeed.errors import RunTimeout
from dhanfeed.shield import interrupt


@contextlib.contextmanager
def run_timeout(seconds: float) -> Iterator[None]:
    """Raise RunTimeout in the block once it has run `seconds` (unless stopped)."""

    def expire(signum: int, frame: Any) -> None:
        # held until a write or a lock release that is under way has finished
        interrupt(RunTimeout(f"the run took longer than run_timeout ({seconds:g}s); stopped"))

    try:
        previous = signal.signal(signal.SIGALRM, expire)
    except ValueError:  # not the main thread
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def stop_run_timer() -> None:
    """Disarm the bound for the rest of the run: Dhan has issued a token."""
    if threading.current_thread() is threading.main_thread():
        signal.setitimer(signal.ITIMER_REAL, 0)
