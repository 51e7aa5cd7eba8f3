"""What resuming open bars and `bin/backfill` need of a store, run against both stores: an
SQLite file and a database on the session's PostgreSQL server (`healable` is parametrized).
Each test opens its store through `open_store`, as the collector and `bin/backfill` do."""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo
from collections.abc import Callable
from pathlib import Path

import pytest

from dhanfeed.candles import Bar
from dhanfeed.errors import LockBusy, StoreError
from dhanfeed.store import (
    BackfillChange,
    Gap,
    HealableStore,
    Reconciliation,
    Tick,
    open_store,
    postgresql,
    sqlite,
)

IST = zoneinfo.ZoneInfo("Asia/Kolkata")
SEG, SID = "NSE_EQ", 1333
CLIENT = "1000000001"
T0 = int(dt.datetime(2026, 1, 5, 9, 15, tzinfo=IST).timestamp())  # 03:45:00Z

Opener = Callable[[], HealableStore]


def bar(start: int = T0, *, o=100.0, h=101.0, lo=99.0, c=100.5, v=10, n=2, cum=10, iv=60) -> Bar:
    return Bar(SEG, SID, iv, start, o, h, lo, c, v, n, cum)


def tick(i: int, sid: int = SID, received: float | None = None) -> Tick:
    return Tick(
        SEG, sid, T0 + i, 100.0 + i, 1, i + 1, T0 + i + 0.25 if received is None else received
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def healable(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens a writable store on the test's one database (each call a new store on it)."""
    target: str | Path = tmp_path / "data" / "candles.sqlite"
    if request.param == "postgresql":
        target = request.getfixturevalue("pg_url")
    return lambda: open_store(target, client_id=CLIENT)


def test_both_stores_are_healable_and_at_their_newest_schema(healable):
    with healable() as store:
        assert isinstance(store, HealableStore)
        newest = (
            sqlite.SCHEMA_VERSION
            if isinstance(store, sqlite.SqliteStore)
            else postgresql.SCHEMA_VERSION
        )
        assert store.schema_version() == newest == 3


def test_a_merge_keeps_complete_only_when_both_parts_were_complete(healable):
    with healable() as store:
        store.write([bar(v=5, cum=5)])
        store.write([dataclasses.replace(bar(v=3, cum=8), complete=False)])
        (merged,) = store.candles()
        assert (merged.volume, merged.complete) == (8, False)


def test_a_bar_replaced_from_dhan_is_never_merged_into_by_the_collector(healable):
    dhan = dataclasses.replace(bar(v=40, cum=None), source="dhan")
    with healable() as store:
        store.apply_backfill(BackfillChange([dhan], [], 0.0))
        store.write([bar(v=5, cum=5)])
        assert store.candles() == [dhan]


def test_a_gap_marks_the_stored_feed_bars_it_overlaps_incomplete(healable):
    with healable() as store:
        store.write([bar(T0), bar(T0 + 60), bar(T0 + 120), bar(T0, iv=300)])
        store.write(gaps=[Gap(SEG, SID, T0 + 59.5, T0 + 61.0, "reconnect")])
        flags = {(b.interval_s, b.start_utc): b.complete for b in store.candles()}
    assert flags == {(60, T0): False, (60, T0 + 60): False, (60, T0 + 120): True,
                     (300, T0): False}  # fmt: skip


def test_backfill_changes_are_written_together_and_heal_only_the_gaps_named(healable):
    gaps = [Gap(SEG, SID, T0 + 10, T0 + 70, "reconnect"), Gap(SEG, SID, T0 + 300, T0 + 301, "x")]
    rec = Reconciliation(SEG, SID, "2026-01-05", 10, 1, 2, T0, 0.1, 1.5)
    with healable() as store:
        store.write(gaps=gaps)
        replaced = dataclasses.replace(bar(T0, v=9, cum=None), source="dhan")
        store.apply_backfill(BackfillChange([replaced], [gaps[0]], 99.0, rec))
        assert store.candles() == [replaced]
        assert store.gaps(unhealed=True) == [gaps[1]]
        assert store.gaps()[0].healed_utc == 99.0
        assert store.reconciliations() == [rec]
        with pytest.raises(StoreError):  # one bad row: nothing of the change is written
            store.apply_backfill(
                BackfillChange(
                    [bar(T0 + 60), dataclasses.replace(bar(T0 + 120), open=None)], [gaps[1]], 100.0
                )  # fmt: skip
            )
        assert store.candles() == [replaced] and store.gaps(unhealed=True) == [gaps[1]]


def test_a_day_reconciled_again_replaces_its_figures(healable):
    first = Reconciliation(SEG, SID, "2026-01-05", 10, 1, 2, T0, 0.1, 1.5)
    again = first._replace(minutes_compared=375, minutes_differing=0, worst_start_utc=None,
                           worst_diff=None, checked_utc=9.0)  # fmt: skip
    other_day = first._replace(day="2026-01-06")
    with healable() as store:
        store.apply_backfill(BackfillChange([], [], 1.0, first))
        store.apply_backfill(BackfillChange([], [], 2.0, other_day))
        store.apply_backfill(BackfillChange([], [], 9.0, again))
        assert store.reconciliations() == [again, other_day]


def test_gaps_are_listed_oldest_first_and_by_the_window_they_overlap(healable):
    late = Gap(SEG, SID, T0 + 600, T0 + 660, "stale feed")
    early = Gap(SEG, 2885, T0 + 10, T0 + 20.5, "reconnect after 807")
    middle = Gap(SEG, SID, T0 + 300, T0 + 301.25, "swap: old socket killed")
    with healable() as store:
        store.write(gaps=[late])
        store.write(gaps=[early, middle])
        assert store.gaps() == [early, middle, late]
        assert store.gaps(start_utc=T0 + 20.5, end_utc=T0 + 600) == [middle]
        assert store.gaps(start_utc=T0 + 20) == [early, middle, late]
        store.apply_backfill(BackfillChange([], [middle], 5.0))
        assert store.gaps(unhealed=True) == [early, late]


def test_raw_ticks_come_back_in_the_order_received_by_instrument_and_since_an_ltt(healable):
    later_received = tick(1, received=T0 + 9.0)  # an older LTT received last
    with healable() as store:
        store.write(ticks=[tick(0), tick(2), tick(3, sid=2885)])
        store.write(ticks=[later_received])
        assert store.ticks() == [tick(0), tick(2), tick(3, sid=2885), later_received]
        assert store.ticks(SEG, SID, since_utc=T0 + 1) == [tick(2), later_received]
        assert store.ticks(SEG, 2885) == [tick(3, sid=2885)]


def test_the_newest_bar_of_each_series_is_where_a_restart_resumes(healable):
    with healable() as store:
        store.write([bar(T0), bar(T0 + 60, cum=None), bar(T0, iv=300), bar(T0 + 120)])
        assert store.last_bar_starts() == {(SEG, SID, 60): T0 + 120, (SEG, SID, 300): T0}


def test_one_backfill_at_a_time_holds_the_lock_and_the_next_gets_it_after(healable):
    with healable() as first, healable() as second:
        with first.backfill_lock():
            with pytest.raises(LockBusy, match="another backfill"), second.backfill_lock():
                pass
        with second.backfill_lock():
            pass
