"""What only the PostgreSQL store does, against a real server (the `pg_cluster` fixture):
client ids kept apart, day partitions, schema versions, roles without CREATE, passwords
from a pgpass file, and a server that goes away and comes back."""

from __future__ import annotations

import dataclasses
import datetime as dt
import pwd
import re
from pathlib import Path

import psycopg
import pytest

from dhanfeed.candles import Bar
from dhanfeed.cli import sqlite_to_postgres
from dhanfeed.errors import LockBusy, StoreError, StoreUnavailable
from dhanfeed.store import BackfillChange, Gap, Reconciliation, Tick
from dhanfeed.store.postgresql import SCHEMA_VERSION, PostgresStore, ist_day
from support.pg_cluster import Cluster

A, B = "1000000001", "1000000002"
MONDAY_0915_IST = 1767584700  # 2026-01-05 09:15 IST = 03:45 UTC


def bar(start: int = MONDAY_0915_IST, **changes: object) -> Bar:
    base = Bar("NSE_EQ", 1333, 60, start, 100.0, 101.0, 99.0, 100.5, 40, 4, 1040)
    return dataclasses.replace(base, **changes)


def tick(ltt_utc: int, segment: str = "NSE_EQ", security_id: int = 1333) -> Tick:
    return Tick(segment, security_id, ltt_utc, 100.0, 5, 1000, ltt_utc + 0.25)


def rows(url: str, query: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def test_two_client_ids_recording_the_same_instrument_never_merge_bars(pg_url):
    with PostgresStore(pg_url, A) as a, PostgresStore(pg_url, B) as b:
        a.write([bar(volume=40)])
        b.write([bar(volume=7, high=150.0)])
        b.write([bar(volume=3, ticks=1)])  # B's bar merges with B's, never with A's
        assert [x.volume for x in a.candles()] == [40]
        assert [(x.volume, x.high) for x in b.candles()] == [(10, 150.0)]
    assert rows(pg_url, "SELECT client_id, volume FROM candles ORDER BY 1") == [(A, 40), (B, 10)]


def test_every_row_carries_the_client_id_that_recorded_it(pg_url):
    with PostgresStore(pg_url, B) as b:
        b.write([bar()], [tick(MONDAY_0915_IST)], [Gap("NSE_EQ", 1333, 1.0, 2.0, "test")])
    for table in ("candles", "ticks", "gaps"):
        assert rows(pg_url, f"SELECT DISTINCT client_id FROM {table}") == [(B,)], table


def test_carry_and_listings_see_only_the_stores_own_client_id(pg_url):
    with PostgresStore(pg_url, A) as a, PostgresStore(pg_url, B) as b:
        a.write([bar(cum_volume_end=1040), bar(security_id=2885, interval_s=300)])
        b.write([bar(start=MONDAY_0915_IST + 60, cum_volume_end=9999)])
        assert a.carry()[("NSE_EQ", 1333, 60)].cum_volume == 1040
        assert b.carry()[("NSE_EQ", 1333, 60)].cum_volume == 9999
        assert a.instruments() == [("NSE_EQ", 1333), ("NSE_EQ", 2885)]
        assert b.instruments() == [("NSE_EQ", 1333)]
        assert (a.intervals(), b.intervals()) == ([60, 300], [60])


def test_ticks_go_to_one_partition_per_ist_day(pg_url):
    midnight_ist = 1767551400  # 2026-01-05 00:00 IST = 2026-01-04 18:30 UTC
    ticks = [
        tick(midnight_ist - 1),
        tick(midnight_ist),
        tick(MONDAY_0915_IST),
        tick(midnight_ist + 86400),
    ]
    with PostgresStore(pg_url, A) as store:
        store.write(ticks=ticks)
    placed = rows(pg_url, "SELECT tableoid::regclass::text, ltt_utc FROM ticks ORDER BY ltt_utc")
    assert placed == [
        ("ticks_20260104", midnight_ist - 1),
        ("ticks_20260105", midnight_ist),
        ("ticks_20260105", MONDAY_0915_IST),
        ("ticks_20260106", midnight_ist + 86400),
    ]
    assert ist_day(midnight_ist) == dt.date(2026, 1, 5)


def test_an_old_day_is_dropped_with_its_partition_and_writing_goes_on(pg_url):
    with PostgresStore(pg_url, A) as store:
        store.write(ticks=[tick(MONDAY_0915_IST - 86400), tick(MONDAY_0915_IST)])
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("DROP TABLE ticks_20260104")
        store.write(ticks=[tick(MONDAY_0915_IST - 86400 + 1)])  # the day comes back
    assert len(rows(pg_url, "SELECT 1 FROM ticks_20260104")) == 1
    assert len(rows(pg_url, "SELECT 1 FROM ticks")) == 2


def test_ticks_are_not_written_when_the_store_keeps_none(pg_url):
    with PostgresStore(pg_url, A, store_ticks=False) as store:
        store.write([bar()], [tick(MONDAY_0915_IST)])
    assert rows(pg_url, "SELECT count(*) FROM ticks") == [(0,)]


def test_the_schema_records_its_version_and_a_second_open_changes_nothing(pg_url):
    PostgresStore(pg_url, A).close()
    tables = rows(pg_url, "SELECT count(*) FROM pg_class WHERE relkind IN ('r', 'p')")
    PostgresStore(pg_url, B).close()
    assert rows(pg_url, "SELECT version FROM dhanfeed_schema") == [(SCHEMA_VERSION,)]
    assert rows(pg_url, "SELECT count(*) FROM pg_class WHERE relkind IN ('r', 'p')") == tables


def test_a_schema_newer_than_the_program_is_refused_with_advice(pg_url):
    PostgresStore(pg_url, A).close()
    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE dhanfeed_schema SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer than this program.*upgrade dhanfeed"):
        PostgresStore(pg_url, A)


def test_a_schema_2_database_gains_the_reconciliation_table_and_keeps_its_rows(pg_url):
    with PostgresStore(pg_url, A) as store:
        store.write([bar()], gaps=[Gap("NSE_EQ", 1333, 1.0, 2.0, "test")])
    with psycopg.connect(pg_url) as conn:  # as the previous dhanfeed left it
        conn.execute("DROP TABLE reconciliation")
        conn.execute("UPDATE dhanfeed_schema SET version = 2")
    with PostgresStore(pg_url, A) as store:
        assert store.schema_version() == SCHEMA_VERSION == 3
        assert store.reconciliations() == []
        assert [b.volume for b in store.candles()] == [40] and len(store.gaps()) == 1


def test_healing_one_client_id_touches_none_of_anothers_rows(pg_url):
    gap = Gap("NSE_EQ", 1333, MONDAY_0915_IST + 5.0, MONDAY_0915_IST + 65.0, "reconnect")
    rec = Reconciliation("NSE_EQ", 1333, "2026-01-05", 10, 1, 0, None, None, 3.0)
    dhan = bar(volume=99, source="dhan")
    with PostgresStore(pg_url, A) as a, PostgresStore(pg_url, B) as b:
        for store in (a, b):
            store.write([bar()], [tick(MONDAY_0915_IST + 1)], [gap])
        a.apply_backfill(BackfillChange([dhan], [gap], 7.0, rec))
        assert (a.candles(), a.gaps(unhealed=True), a.reconciliations()) == ([dhan], [], [rec])
        assert [x.volume for x in b.candles()] == [40] and b.gaps(unhealed=True) == [gap]
        assert b.reconciliations() == [] and len(b.ticks()) == 1
        assert b.last_bar_starts() == {("NSE_EQ", 1333, 60): MONDAY_0915_IST}
        with a.backfill_lock(), b.backfill_lock():  # one backfill per account, side by side
            with pytest.raises(LockBusy, match=f"client id {A}"), a.backfill_lock():
                pass


def test_a_reader_of_a_database_without_the_schema_is_told_so(pg_url):
    with pytest.raises(StoreError, match="not a dhanfeed database"):
        PostgresStore.open_readonly(pg_url, A)


def test_a_reader_cannot_write(pg_url):
    PostgresStore(pg_url, A).close()
    with (
        PostgresStore.open_readonly(pg_url, A) as reader,
        pytest.raises(StoreError, match="read-only"),
    ):
        reader.write([bar()])


def test_an_unreachable_server_is_unavailable_which_a_collector_waits_out(pg_cluster):
    url = f"postgresql://nobody@/nodb?host={pg_cluster.socket_dir}&port=1"
    with pytest.raises(
        StoreUnavailable, match="cannot connect to database postgresql://nobody@/nodb"
    ):
        PostgresStore(url, A)


@pytest.mark.parametrize(
    ("change", "reason"),
    [("/postgres?", 'database "nodb" does not exist'), ("postgres@", 'role "nodb" does not exist')],
)
def test_a_server_that_refuses_is_a_plain_store_error_not_worth_waiting_for(
    pg_cluster, change, reason
):
    url = pg_cluster.url().replace(change, change.replace("postgres", "nodb"))
    with pytest.raises(StoreError, match=reason) as caught:
        PostgresStore(url, A)
    assert not isinstance(caught.value, StoreUnavailable)


def test_a_restarted_server_is_reconnected_to_and_the_failed_write_succeeds_on_retry(
    private_pg_cluster,
):
    url = private_pg_cluster.new_database()
    now = [0.0]
    with PostgresStore(url, A, clock=lambda: now[0]) as store:
        store.write([bar(volume=1)])
        private_pg_cluster.stop()
        with pytest.raises(StoreError, match="cannot write"):
            store.write([bar(volume=2)])
        with pytest.raises(StoreError, match="unreachable; next attempt in"):
            store.write([bar(volume=2)])  # inside the backoff: no connection attempt
        private_pg_cluster.start()
        now[0] += 60
        store.write([bar(volume=2)])
        assert store.candles()[0].volume == 3
        assert store.connects == 2


# --- roles: the README's lines, run as written -----------------------------------------------

README = Path(__file__).resolve().parent.parent / "README.md"
PASSWORDS = {"dhanfeed_owner": "owner-pw", "dhanfeed_collector": "collector-pw",
             "dhanfeed_reader": "reader-pw"}  # fmt: skip


def run_readme_block(cluster: Cluster, marker: str) -> None:
    """The SQL block after `<!-- marker -->`, statement by statement; psql's \\connect
    switches the database and \\password sets the test's password for a role."""
    text = README.read_text(encoding="utf-8")
    block = re.search(rf"<!-- {marker} -->\s*```sql\n(.*?)```", text, re.S)
    assert block, f"README has no {marker} block"
    dbname = "postgres"
    for line in block.group(1).splitlines():
        if line.startswith("\\connect "):
            dbname = line.split()[1]
        elif line.startswith("\\password "):
            role = line.split()[1]
            cluster.sql(f"ALTER ROLE {role} PASSWORD '{PASSWORDS[role]}'")
        elif line.strip():
            cluster.sql(line, dbname)


@pytest.fixture(scope="module")
def market(pg_cluster: Cluster) -> Cluster:
    """The README's database `market`: roles, schema (created by the owner), grants."""
    run_readme_block(pg_cluster, "postgresql-roles")
    return pg_cluster


def use_pgpass(monkeypatch, tmp_path: Path, cluster: Cluster, roles: list[str]) -> None:
    path = tmp_path / "pgpass"
    lines = [f"127.0.0.1:{cluster.port}:market:{role}:{PASSWORDS[role]}\n" for role in roles]
    path.write_text("".join(lines))
    path.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(path))


def test_the_readme_roles_work_with_passwords_from_a_pgpass_file_and_no_more_rights(
    market, tmp_path, monkeypatch
):
    use_pgpass(monkeypatch, tmp_path, market, list(PASSWORDS))
    owner_url = market.tcp_url("market", "dhanfeed_owner")
    assert sqlite_to_postgres.main(["--to", owner_url, "--client-id", A]) == 0  # the schema
    run_readme_block(market, "postgresql-grants")
    with PostgresStore(market.tcp_url("market", "dhanfeed_collector"), A) as collector:
        collector.write([bar()], [tick(MONDAY_0915_IST + 5 * 86400)], [Gap("NSE_EQ", 1, 1, 2, "x")])
        collector.write([bar(volume=2)])  # the upsert's UPDATE
        assert collector.candles()[0].volume == 42
        # bin/backfill runs with the collector's config, so as the same role.
        rec = Reconciliation("NSE_EQ", 1333, "2026-01-05", 1, 0, 0, None, None, 5.0)
        with collector.backfill_lock():
            collector.apply_backfill(
                BackfillChange([bar(start=0, source="dhan")], collector.gaps(), 5.0, rec)
            )
            collector.apply_backfill(BackfillChange([], [], 6.0, rec._replace(checked_utc=6.0)))
        assert collector.gaps(unhealed=True) == []
    with PostgresStore.open_readonly(market.tcp_url("market", "dhanfeed_reader"), A) as reader:
        assert reader.candles()[-1].volume == 42
        assert [r.checked_utc for r in reader.reconciliations()] == [6.0]
    reader_conn = psycopg.connect(market.tcp_url("market", "dhanfeed_reader"))
    with reader_conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        reader_conn.execute("INSERT INTO gaps VALUES ('x', 'NSE_EQ', 1, 1, 2, 'x')")
    collector_conn = psycopg.connect(market.tcp_url("market", "dhanfeed_collector"))
    with collector_conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        collector_conn.execute("CREATE TABLE mine (x int)")


def test_without_a_pgpass_entry_the_password_is_asked_for_and_the_error_shows_none(
    market, tmp_path, monkeypatch
):
    use_pgpass(monkeypatch, tmp_path, market, ["dhanfeed_reader"])
    with pytest.raises(StoreError, match="password") as caught:
        PostgresStore(market.tcp_url("market", "dhanfeed_owner"), A)
    assert "owner-pw" not in str(caught.value)


def test_a_role_that_may_not_create_the_schema_is_told_who_must(market):
    url = market.new_database().replace(
        "postgresql://postgres@", "postgresql://dhanfeed_collector@"
    )
    with pytest.raises(StoreError, match="run bin/sqlite_to_postgres --to URL once as the owner"):
        PostgresStore(url, A)


def test_the_test_server_does_not_run_as_root(pg_cluster):
    owner = pwd.getpwuid(pg_cluster.data.stat().st_uid).pw_name
    assert owner != "root"
    assert pg_cluster.running()
