"""bin/sqlite_to_postgres: an SQLite history copied into a real PostgreSQL server, idempotently."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import psycopg
import pytest

from dhanfeed.candles import Bar
from dhanfeed.cli.sqlite_to_postgres import main
from dhanfeed.store import BackfillChange, Gap, Reconciliation, SqliteStore, Tick
from dhanfeed.store.postgresql import PostgresStore

CLIENT = "1000000001"
START = 1767584700  # 2026-01-05 09:15 IST


def fill(path: Path, minutes: range) -> None:
    with SqliteStore(path) as store:
        for m in minutes:
            start = START + 60 * m
            store.write(
                [
                    Bar(
                        "NSE_EQ",
                        1333,
                        60,
                        start,
                        100.0 + m,
                        101.0 + m,
                        99.0,
                        100.5,
                        10 + m,
                        3,
                        1000 + m,
                    )
                ],
                [
                    Tick("NSE_EQ", 1333, start + s, 100.0, 1, 1000 + m, start + s + 0.123456)
                    for s in range(3)
                ],
                [Gap("NSE_EQ", 1333, start + 0.5, start + 0.75, f"swap {m}")],
            )


def contents(url: str) -> dict[str, list[tuple]]:
    with psycopg.connect(url) as conn:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3, 4, 5").fetchall()
            for table in ("candles", "ticks", "gaps")
        }


def sqlite_contents(path: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(path) as conn:
        return {
            table: sorted((CLIENT, *row) for row in conn.execute(f"SELECT * FROM {table}"))
            for table in ("candles", "ticks", "gaps")
        }


def test_a_copy_holds_the_same_rows_and_a_second_copy_changes_nothing(tmp_path, pg_url, capsys):
    source = tmp_path / "candles.sqlite"
    fill(source, range(5))
    assert main([str(source), "--to", pg_url, "--client-id", CLIENT]) == 0
    first = contents(pg_url)
    assert first == sqlite_contents(source)
    assert {k: len(v) for k, v in first.items()} == {"candles": 5, "ticks": 15, "gaps": 5}
    assert main([str(source), "--to", pg_url, "--client-id", CLIENT]) == 0
    assert contents(pg_url) == first
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("sqlite_to_postgres: 5 bars written, 0 ticks and 0 gaps added")


def test_healed_gaps_and_reconciled_days_are_copied_and_a_second_copy_changes_nothing(
    tmp_path, pg_url, capsys
):
    source = tmp_path / "candles.sqlite"
    fill(source, range(2))
    rec = Reconciliation("NSE_EQ", 1333, "2026-01-05", 2, 1, 0, START, 0.1, 9.0)
    with SqliteStore(source) as store:
        store.apply_backfill(BackfillChange([], [store.gaps()[0]], 7.0, rec))
        expected = (store.gaps(), store.reconciliations())
    for _ in range(2):
        assert main([str(source), "--to", pg_url, "--client-id", CLIENT]) == 0
        assert "1 reconciled days written" in capsys.readouterr().out
        with PostgresStore(pg_url, CLIENT) as copy:
            assert (copy.gaps(), copy.reconciliations()) == expected


def test_a_copy_after_the_sqlite_file_grew_adds_only_the_new_rows(tmp_path, pg_url):
    source = tmp_path / "candles.sqlite"
    fill(source, range(3))
    assert main([str(source), "--to", pg_url, "--client-id", CLIENT]) == 0
    fill(source, range(3, 6))
    with SqliteStore(source) as store:  # a bar that grew after the first copy
        store.write([Bar("NSE_EQ", 1333, 60, START, 100.0, 150.0, 99.0, 100.5, 5, 1, 1005)])
    assert main([str(source), "--to", pg_url, "--client-id", CLIENT]) == 0
    assert contents(pg_url) == sqlite_contents(source)


def test_copied_bars_read_back_through_the_store_and_carry_on_as_the_collector_would(
    tmp_path, pg_url
):
    source = tmp_path / "candles.sqlite"
    fill(source, range(2))
    assert main([str(source), "--to", pg_url, "--client-id", CLIENT]) == 0
    with SqliteStore(source) as old, PostgresStore(pg_url, CLIENT) as new:
        assert new.candles() == old.candles()
        assert new.carry() == old.carry()
        later = dataclasses.replace(old.candles()[-1], volume=1, ticks=1)
        new.write([later])  # the collector merges into a copied bar as into its own
        assert new.candles()[-1].volume == old.candles()[-1].volume + 1


def test_a_url_with_a_password_is_one_line_and_exit_2(tmp_path, capsys):
    code = main(
        [str(tmp_path / "x.sqlite"), "--to", "postgresql://u:hunter22@h/db", "--client-id", CLIENT]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "hunter22" not in err and "~/.pgpass" in err


def test_a_missing_sqlite_file_is_one_line_and_exit_1(tmp_path, pg_url, capsys):
    assert main([str(tmp_path / "none.sqlite"), "--to", pg_url, "--client-id", CLIENT]) == 1
    assert (
        capsys.readouterr().err
        == f"sqlite_to_postgres: no database at {tmp_path / 'none.sqlite'}\n"
    )


@pytest.mark.parametrize("client_id", ["abc", ""])
def test_a_bad_client_id_is_a_usage_error(tmp_path, pg_url, capsys, client_id):
    assert main([str(tmp_path / "x.sqlite"), "--to", pg_url, "--client-id", client_id]) == 2
    assert "--client-id" in capsys.readouterr().err
