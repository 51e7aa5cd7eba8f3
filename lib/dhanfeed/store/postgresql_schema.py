"""The PostgreSQL store's schema: its migrations, the version the data is in, and `migrate`.

Each migration takes the schema from the version before it to its own number, in one
transaction under an advisory lock (several collectors may start at once); the version is
kept in `dhanfeed_schema`. A database newer than this program is refused.
"""

from __future__ import annotations

import psycopg

from dhanfeed.errors import StoreError

__all__ = ["SCHEMA_VERSION", "migrate", "schema_version"]

SCHEMA_VERSION = 3
_LOCK_SCHEMA = 0x64686601  # advisory lock keys ("dhf" + n)
_LOCK_PARTITION = 0x64686602

# Each migration takes the schema from the version before it to its own number.
_MIGRATIONS = {
    1: f"""
CREATE TABLE dhanfeed_schema (version integer NOT NULL);
INSERT INTO dhanfeed_schema VALUES (0);
CREATE TABLE candles (
    client_id text NOT NULL,
    segment text NOT NULL,
    security_id bigint NOT NULL,
    interval_s integer NOT NULL,
    start_utc bigint NOT NULL,
    open double precision NOT NULL,
    high double precision NOT NULL,
    low double precision NOT NULL,
    close double precision NOT NULL,
    volume bigint NOT NULL,
    ticks bigint NOT NULL,
    cum_volume_end bigint,
    PRIMARY KEY (client_id, segment, security_id, interval_s, start_utc)
);
CREATE TABLE ticks (
    client_id text NOT NULL,
    segment text NOT NULL,
    security_id bigint NOT NULL,
    ltt_utc bigint NOT NULL,
    ltp double precision NOT NULL,
    ltq bigint,
    cum_volume bigint,
    received_utc double precision NOT NULL
) PARTITION BY RANGE (ltt_utc);
CREATE INDEX ticks_by_time ON ticks USING brin (ltt_utc);
CREATE TABLE gaps (
    client_id text NOT NULL,
    segment text NOT NULL,
    security_id bigint NOT NULL,
    start_utc double precision NOT NULL,
    end_utc double precision NOT NULL,
    reason text NOT NULL
);
CREATE INDEX gaps_by_instrument ON gaps (client_id, segment, security_id, start_utc);
CREATE FUNCTION dhanfeed_tick_partition(day date) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    name text := 'ticks_' || to_char(day, 'YYYYMMDD');
    low bigint := extract(epoch FROM day::timestamp AT TIME ZONE 'Asia/Kolkata')::bigint;
BEGIN
    PERFORM pg_advisory_xact_lock({_LOCK_PARTITION});
    IF to_regclass(quote_ident(name)) IS NULL THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF ticks FOR VALUES FROM (%s) TO (%s)',
                       name, low, low + 86400);
    END IF;
    RETURN name;
END $$;
REVOKE ALL ON FUNCTION dhanfeed_tick_partition(date) FROM PUBLIC;
""",
    # Honest bars (issue 13): what every bar is; when backfill healed a gap. Bars written
    # before are not vouched for (the old volume rule could hold volume from outside a bar).
    2: """
ALTER TABLE candles ADD COLUMN complete boolean NOT NULL DEFAULT false;
ALTER TABLE candles ALTER COLUMN complete SET DEFAULT true;
ALTER TABLE candles ADD COLUMN source text NOT NULL DEFAULT 'feed';
ALTER TABLE gaps ADD COLUMN healed_utc double precision;
""",
    # bin/backfill --reconcile: per account, instrument and IST day, the feed against Dhan.
    3: """
CREATE TABLE reconciliation (
    client_id text NOT NULL,
    segment text NOT NULL,
    security_id bigint NOT NULL,
    day date NOT NULL,
    minutes_compared integer NOT NULL,
    minutes_differing integer NOT NULL,
    volume_differing integer NOT NULL,
    worst_start_utc bigint,
    worst_diff double precision,
    checked_utc double precision NOT NULL,
    PRIMARY KEY (client_id, segment, security_id, day)
);
""",
}


def schema_version(conn: psycopg.Connection) -> int:
    """The schema version of the database `conn` is on; 0 when it has no dhanfeed schema."""
    table = conn.execute("SELECT to_regclass('dhanfeed_schema')").fetchone()
    if table is None or table[0] is None:
        return 0
    row = conn.execute("SELECT version FROM dhanfeed_schema").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: psycopg.Connection) -> int:
    """Create or upgrade the schema (autocommit `conn`); the version it was at before."""
    if schema_version(conn) == SCHEMA_VERSION:
        return SCHEMA_VERSION  # the common case takes no lock and needs no CREATE privilege
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_SCHEMA,))
        before = schema_version(conn)  # again: another collector may have just done it
        if before > SCHEMA_VERSION:
            raise StoreError(
                f"the database schema is version {before}, newer than this program's"
                f" ({SCHEMA_VERSION}): upgrade dhanfeed"
            )
        for version in range(before + 1, SCHEMA_VERSION + 1):
            conn.execute(_MIGRATIONS[version])
            conn.execute("UPDATE dhanfeed_schema SET version = %s", (version,))
    return before
