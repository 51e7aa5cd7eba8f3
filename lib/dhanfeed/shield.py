"""Work that a whole-run time bound must not cut short: a file write, a lock release (a leaf).

bin/renew_token bounds a run with SIGALRM (`run_timer`), whose handler calls `interrupt(exc)`.
Outside a `shielded()` block that raises at once; inside one it is held, and raised when the
outermost block ends, so the write or the release has finished. Python runs signal handlers
in the main thread, so the shield is kept per thread and only the main thread's counts.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class _Shield(threading.local):
    depth = 0
    held: BaseException | None = None


_shield = _Shield()


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Run the block to its end; an interrupt that comes meanwhile is raised after it."""
    _shield.depth += 1
    try:
        yield
    finally:
        _shield.depth -= 1
        held, _shield.held = (_shield.held, None) if _shield.depth == 0 else (None, _shield.held)
        if held is not None:
            raise held


def interrupt(exc: BaseException) -> None:
    """Raise `exc` now, or when the shielded block that is running ends."""
    if _shield.depth == 0:
        raise exc
    if _shield.held is None:
        _shield.held = exc
