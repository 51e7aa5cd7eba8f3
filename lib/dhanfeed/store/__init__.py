"""Where candles, raw ticks and gaps are kept.

- `base`: the row types (`Tick`, `Gap`) and the `Store` interface every backend implements.
- `sqlite`: `SqliteStore`, the default backend (one WAL-mode file).
- `writer`: `StoreWriter`, the thread that batches, sheds and retries writes for the collector.

`open_store` picks the backend from the configured target.
"""

from __future__ import annotations

from pathlib import Path

from dhanfeed.errors import StoreError
from dhanfeed.store.base import Gap, Store, Tick
from dhanfeed.store.sqlite import SqliteStore
from dhanfeed.store.writer import StoreWriter

__all__ = ["Gap", "SqliteStore", "Store", "StoreError", "StoreWriter", "Tick", "open_store"]


def open_store(target: str | Path, *, store_ticks: bool = True, readonly: bool = False) -> Store:
    """The store behind `target` (a file path: SQLite). Raises `StoreError`."""
    if readonly:
        return SqliteStore.open_readonly(target)
    return SqliteStore(target, store_ticks)
