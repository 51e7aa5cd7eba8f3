"""`bin/sqlite_to_postgres`: copy the collector's SQLite history into PostgreSQL.

    bin/sqlite_to_postgres [data/candles.sqlite] [--to URL] [--client-id ID] [--config PATH]

Creates or upgrades the schema first; without an SQLite file that is all it does (the
README's first step, as the owner role). Idempotent: run it twice (or again after the SQLite
file grew) and every row is there once.
The target and the client id default to the config's `[collector] database` (a
postgresql:// URL) and `[dhan] client_id`. Run it as the role that owns the schema (it needs
the TEMP privilege, which the collector's role may lack).

Exit codes: 0 copied; 1 a database cannot be read or written; 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from dhanfeed.cli.args import ArgumentParser, exit_on_error
from dhanfeed.config_load import load_config
from dhanfeed.database_url import PostgresUrl
from dhanfeed.errors import ExitCode, UsageError
from dhanfeed.store.postgresql import SCHEMA_VERSION, PostgresStore
from dhanfeed.store.sqlite_to_postgres import copy_sqlite_to_postgres

PROG = "sqlite_to_postgres"


def build_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(
        prog=PROG,
        description="Copy an SQLite candle database into PostgreSQL (idempotent).",
        epilog="The password, if any, comes from ~/.pgpass or $PGPASSFILE, never the URL.\n\n"
        "exit codes:\n  0 copied (or the schema created/upgraded); 1 a database cannot be read"
        " or written;\n  2 usage or configuration error.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "source",
        metavar="SQLITE_FILE",
        nargs="?",
        help="the collector's SQLite database (none: only create or upgrade the schema)",
    )
    ap.add_argument(
        "--to", metavar="URL", help="postgresql:// URL (default: the config's database)"
    )
    ap.add_argument(
        "--client-id", help="client id the rows are recorded under (default: the config's)"
    )
    ap.add_argument(
        "--config", metavar="PATH", help="config file (default: $DHANFEED_CONFIG or ./config.toml)"
    )
    ap.add_argument("--debug", action="store_true", help="tracebacks for expected errors too")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = None
    try:
        args = build_parser().parse_args(argv)
        return run(args)
    except Exception as exc:  # noqa: BLE001 - expected: one line; the rest with the traceback
        return exit_on_error(PROG, exc, debug=bool(args and args.debug))


def target_and_client(args: argparse.Namespace) -> tuple[PostgresUrl, str]:
    url, client_id = args.to, args.client_id
    if url is None or client_id is None:
        config = load_config(args.config)
        client_id = client_id or config.dhan.client_id
        if url is None and not isinstance(config.collector.database, PostgresUrl):
            raise UsageError(
                f"no --to URL, and the config's [collector] database is the SQLite file"
                f" {config.collector.database}, not a postgresql:// URL: give --to postgresql://..."
            )
        url = url or config.collector.database
    try:
        url = PostgresUrl(str(url))
    except ValueError as exc:
        raise UsageError(f"--to: {exc}") from None
    if not re.fullmatch(r"\d{1,16}", client_id):
        raise UsageError(f"--client-id: expected digits like '1000000001', got {client_id!r}")
    return url, client_id


def run(args: argparse.Namespace) -> int:
    url, client_id = target_and_client(args)
    with PostgresStore(url, client_id, store_ticks=True) as target:
        if args.source is None:
            print(f"{PROG}: the schema of {url.redacted} is at version {SCHEMA_VERSION}")
            return int(ExitCode.OK)
        copied = copy_sqlite_to_postgres(Path(args.source), target)
    print(
        f"{PROG}: {copied.bars} bars written, {copied.ticks} ticks and {copied.gaps} gaps added,"
        f" {copied.reconciliations} reconciled days written to {url.redacted} for client"
        f" {client_id}"
    )
    return int(ExitCode.OK)


if __name__ == "__main__":
    sys.exit(main())
