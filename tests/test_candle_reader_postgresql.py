"""The people-facing reader (`bin/status`, the status page, `read_candles`) on PostgreSQL: the
same answers as from SQLite, about one client id's rows only."""

from __future__ import annotations

from pathlib import Path

import pytest

import dhanfeed
from dhanfeed.candle_reader import PostgresReader, open_reader
from dhanfeed.errors import StoreError
from dhanfeed.store import Gap, SqliteStore
from dhanfeed.store.postgresql import PostgresStore
from test_web_api import DAY, OPEN_UTC, bars_of, fill_database

CLIENT, OTHER = "1000000001", "1000000002"
DAY_END = OPEN_UTC + 86400


@pytest.fixture
def both(tmp_path: Path, pg_url: str) -> tuple[Path, str]:
    """The same rows in an SQLite file and, for CLIENT, in PostgreSQL beside OTHER's rows."""
    sqlite = fill_database(tmp_path)
    with SqliteStore(sqlite) as source, PostgresStore(pg_url, CLIENT) as target:
        gaps = [Gap("NSE_EQ", 1333, OPEN_UTC + 600.5, OPEN_UTC + 725.0, "reconnect after 807")]
        target.write(source.candles(), [], gaps)
    with PostgresStore(pg_url, OTHER) as other:  # another account: must never show up
        other.write(bars_of(1333, 40, interval_s=60) + bars_of(2885, 3), [],
                    [Gap("NSE_EQ", 1333, OPEN_UTC, OPEN_UTC + 5.0, "other")])  # fmt: skip
    return sqlite, pg_url


def answers(reader) -> list:  # noqa: ANN001
    return [
        reader.candles("NSE_EQ", 1333, 60, OPEN_UTC, DAY_END),
        reader.candles("NSE_EQ", 1333, 300, OPEN_UTC, OPEN_UTC + 1200),
        reader.gaps("NSE_EQ", 1333, OPEN_UTC, DAY_END),
        reader.candle_count(),
        reader.candle_count(OPEN_UTC, OPEN_UTC + 600, 60, [("NSE_EQ", 11536)]),
        reader.gap_count(OPEN_UTC, DAY_END),
        reader.unhealed_gaps(OPEN_UTC, DAY_END),
        reader.latest_reconciliation(),
    ]


def test_postgresql_answers_every_question_as_sqlite_does_for_its_client(both) -> None:
    sqlite, url = both
    with open_reader(sqlite) as lite, open_reader(url, CLIENT) as pg:
        assert isinstance(pg, PostgresReader)
        assert answers(pg) == answers(lite)
        assert pg.size_bytes() > 0


def test_another_client_id_sees_its_own_rows(both) -> None:
    _, url = both
    with open_reader(url, OTHER) as pg:
        assert pg.candle_count() == 43
        assert [g.reason for g in pg.gaps("NSE_EQ", 1333, OPEN_UTC, DAY_END)] == ["other"]


def test_read_candles_gives_the_same_frame_from_postgresql(both) -> None:
    pytest.importorskip("pandas")
    sqlite, url = both
    from_pg = dhanfeed.read_candles(url, "NSE_EQ:1333", "1m", DAY, DAY, client_id=CLIENT)
    assert from_pg.equals(dhanfeed.read_candles(sqlite, "NSE_EQ:1333", "1m", DAY, DAY))


def test_a_reader_without_a_client_id_or_schema_is_a_store_error(pg_url: str) -> None:
    with pytest.raises(StoreError, match="needs the client id"):
        open_reader(pg_url)
    with pytest.raises(StoreError, match="not a dhanfeed database"):
        open_reader(pg_url, CLIENT)
