"""Progress bars for long runs a person is watching (tqdm), and never otherwise.

A bar is drawn only on a terminal (stderr is a TTY: not under cron, systemd or a pipe, so
never in a log) and only for runs long enough to need one. Everywhere else the iterable is
handed back untouched.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import IO, TypeVar

from tqdm import tqdm

T = TypeVar("T")
MIN_ITEMS = 10_000  # fewer than this finish before a bar would help


def wanted(total: int, stream: IO[str] | None = None, min_items: int = MIN_ITEMS) -> bool:
    """Whether a run of `total` items should show a bar on `stream` (default: stderr)."""
    stream = stream or sys.stderr
    return total >= min_items and stream.isatty() and os.environ.get("TERM", "") != "dumb"


def progress(
    items: Iterable[T],
    *,
    total: int,
    unit: str,
    desc: str,
    stream: IO[str] | None = None,
    min_items: int = MIN_ITEMS,
) -> Iterator[T] | Iterable[T]:
    """`items`, with a bar on `stream` (default: stderr) when `wanted(total, stream)`.

    `min_items`: fewer items than this get no bar (slow items, like one request to Dhan
    each, want a lower figure than the default).
    """
    stream = stream or sys.stderr
    if not wanted(total, stream, min_items):
        return items
    try:  # a terminal that reports no size (a serial console, `script`) gets a fixed one;
        # tqdm would draw nothing at 0 rows
        sized = os.get_terminal_size(stream.fileno()).columns > 0
    except (OSError, ValueError):
        sized = False
    return tqdm(
        items, total=total, unit=unit, desc=desc, file=stream, unit_scale=True, leave=False,
        mininterval=0.2, dynamic_ncols=sized, ncols=None if sized else 80,
        nrows=None if sized else 24,
    )  # fmt: skip
