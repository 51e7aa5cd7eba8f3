"""Where candles, raw ticks and gaps are kept.

- `base`: the row types (`Tick`, `Gap`, `Reconciliation`, `BackfillChange`) and the `Store`
  and `HealableStore` interfaces every backend implements.
- `sqlite`: `SqliteStore`, the default backend (one WAL-mode file).
- `writer`: `StoreWriter`, the thread that batches, sheds and retries writes for the collector.
- `postgresql`: `PostgresStore`, for several collectors, remote readers, more raw ticks.
- `postgresql_schema`: its tables, migrations and schema version.
- `sqlite_to_postgres`: copies an SQLite history into PostgreSQL, idempotently.

`open_store` picks the backend from the configured target (a path or a postgresql:// URL).
"""

from __future__ import annotations

from pathlib import Path

from dhanfeed.database_url import is_postgres_url
from dhanfeed.errors import StoreError, StoreUnavailable
from dhanfeed.store.base import BackfillChange, Gap, HealableStore, Reconciliation, Store, Tick
from dhanfeed.store.sqlite import SqliteStore
from dhanfeed.store.writer import StoreWriter

__all__ = ["BackfillChange", "Gap", "HealableStore", "Reconciliation", "SqliteStore", "Store",
           "StoreError", "StoreUnavailable", "StoreWriter", "Tick", "open_store"]  # fmt: skip


def open_store(
    target: str | Path,
    *,
    client_id: str = "",
    store_ticks: bool = True,
    readonly: bool = False,
) -> HealableStore:
    """The store behind `target`: a postgresql:// URL (rows of `client_id`), else an SQLite
    file. Raises `StoreError` (`StoreUnavailable` while a server cannot be reached)."""
    if isinstance(target, str) and is_postgres_url(target):
        try:
            from dhanfeed.store.postgresql import PostgresStore  # lazy: psycopg's ~90 ms import
        except ImportError:  # psycopg is the optional 'postgresql' extra; SQLite needs nothing
            raise StoreError(
                "a postgresql:// database needs the 'postgresql' extra:"
                " .venv/bin/pip install -e '.[postgresql]' (make install does it)"
            ) from None
        if not client_id:
            raise StoreError("a PostgreSQL store needs the client id its rows belong to")
        if readonly:
            return PostgresStore.open_readonly(target, client_id)
        return PostgresStore(target, client_id, store_ticks)
    if readonly:
        return SqliteStore.open_readonly(target)
    return SqliteStore(target, store_ticks)
