"""The SQLite store against a real file: schema, WAL, upsert across a restart, writer thread."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import random
import shutil
import sqlite3
import threading
import time
import zoneinfo
from pathlib import Path

import pytest

from dhanfeed.candles import Bar, CandleBuilder, Carry, bucket_start
from dhanfeed.errors import DhanfeedError
from dhanfeed.store import (
    Gap,
    SqliteStore,
    StoreError,
    StoreWriter,
    Tick,
)
from support import store_queries as q
from support.frozen_clock import FrozenClock
from support.polling import wait_until

IST = zoneinfo.ZoneInfo("Asia/Kolkata")
SEG, SID = "NSE_EQ", 1333
T0 = int(dt.datetime(2026, 1, 5, 9, 15, tzinfo=IST).timestamp())  # 03:45:00Z


def bar(start: int = T0, *, o=100.0, h=101.0, lo=99.0, c=100.5, v=10, n=2, cum=10, iv=60) -> Bar:
    return Bar(SEG, SID, iv, start, o, h, lo, c, v, n, cum)


def tick(i: int, sid: int = SID) -> Tick:
    return Tick(SEG, sid, T0 + i, 100.0 + i, 1, i + 1, T0 + i + 0.25)


@pytest.fixture
def db(tmp_path):
    return tmp_path / "data" / "candles.sqlite"


# -- schema and opening -----------------------------------------------------------------------


def test_the_database_and_its_directory_are_created_in_wal_mode(db):
    with SqliteStore(db, store_ticks=True) as store:
        assert q.journal_mode(store) == "wal"
    assert db.is_file()
    other = sqlite3.connect(db)  # a second connection sees the persistent WAL setting
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        other.close()


def test_the_tables_have_the_columns_and_key_of_the_issue(db):
    SqliteStore(db).close()
    conn = sqlite3.connect(db)
    try:
        info = {
            t: conn.execute(f"PRAGMA table_info({t})").fetchall()
            for t in ("candles", "ticks", "gaps")
        }
    finally:
        conn.close()
    candles = [row[1] for row in info["candles"]]
    assert candles == ["segment", "security_id", "interval_s", "start_utc", "open", "high", "low",
                       "close", "volume", "ticks", "cum_volume_end", "complete", "source"]  # fmt: skip
    key = [row[1] for row in sorted(info["candles"], key=lambda r: r[5]) if row[5]]
    assert key == ["segment", "security_id", "interval_s", "start_utc"]
    ticks = [row[1] for row in info["ticks"]]
    assert ticks[:7] == [
        "segment",
        "security_id",
        "ltt_utc",
        "ltp",
        "ltq",
        "cum_volume",
        "received_utc",
    ]
    assert [row[1] for row in info["gaps"]] == [
        "segment",
        "security_id",
        "start_utc",
        "end_utc",
        "reason",
        "healed_utc",
    ]


def test_a_database_under_a_regular_file_is_a_store_error_of_one_line(tmp_path):
    (tmp_path / "data").write_text("not a directory")
    with pytest.raises(StoreError) as err:
        SqliteStore(tmp_path / "data" / "candles.sqlite")
    assert isinstance(err.value, DhanfeedError) and err.value.exit_code == 1
    assert "data/candles.sqlite" in str(err.value) and "\n" not in str(err.value)


def test_a_database_path_that_is_a_directory_is_a_store_error(tmp_path):
    (tmp_path / "candles.sqlite").mkdir()
    with pytest.raises(StoreError, match="cannot write database .*candles.sqlite"):
        SqliteStore(tmp_path / "candles.sqlite")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file modes")
def test_a_read_only_directory_is_a_store_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    with pytest.raises(StoreError):
        SqliteStore(ro / "candles.sqlite")


def test_a_file_that_is_not_sqlite_is_a_store_error(tmp_path):
    path = tmp_path / "candles.sqlite"
    path.write_bytes(b"definitely not a database" * 100)
    with pytest.raises(StoreError):
        SqliteStore(path)


def test_opening_a_missing_database_read_only_is_a_store_error(tmp_path):
    with pytest.raises(StoreError, match="no database at"):
        SqliteStore.open_readonly(tmp_path / "nope.sqlite")
    assert not (tmp_path / "nope.sqlite").exists()


# -- the upsert -------------------------------------------------------------------------------


def test_writing_the_rest_of_a_bar_merges_it_with_the_stored_part(db):
    with SqliteStore(db) as store:
        store.write([bar(o=100, h=103, lo=99, c=101, v=40, n=3, cum=40)])
        store.write([bar(o=102, h=102.5, lo=97, c=98, v=15, n=2, cum=55)])
        (merged,) = store.candles()
    assert merged == bar(o=100, h=103, lo=97, c=98, v=55, n=5, cum=55)


def test_a_ticker_bar_keeps_a_null_cumulative_volume_and_is_left_out_of_the_carry(db):
    with SqliteStore(db) as store:
        store.write([Bar("IDX_I", 13, 60, T0, 1, 2, 0.5, 1.5, 0, 4, None), bar(cum=70)])
        assert store.candles(segment="IDX_I")[0].cum_volume_end is None
        assert store.carry() == {(SEG, SID, 60): Carry(T0, 70)}


def test_the_carry_is_the_newest_bar_of_each_instrument_and_interval(db):
    with SqliteStore(db) as store:
        store.write([bar(T0, cum=10), bar(T0 + 60, cum=25), bar(T0, iv=300, cum=25)])
        store.write([bar(T0 + 120, cum=31)])
        assert store.carry() == {
            (SEG, SID, 60): Carry(T0 + 120, 31),
            (SEG, SID, 300): Carry(T0, 25),
        }


def test_a_write_is_all_or_nothing(db):
    with SqliteStore(db) as store:
        bad_tick = Tick(SEG, SID, T0, None, 1, 1, T0)  # ltp NOT NULL
        with pytest.raises(StoreError):
            store.write([bar()], [bad_tick])
        assert store.candles() == []
        store.write([bar()], [tick(1)])
        assert q.candle_count(store) == 1


def test_ticks_are_stored_only_when_asked(tmp_path):
    with SqliteStore(tmp_path / "a.sqlite", store_ticks=False) as store:
        store.write([bar()], [tick(1), tick(2)])
        assert q.tick_counts(store) == {}
    with SqliteStore(tmp_path / "b.sqlite", store_ticks=True) as store:
        store.write([], [tick(1), tick(2), tick(3, sid=2885)])
        assert q.tick_counts(store) == {(SEG, SID): 2, (SEG, 2885): 1}
        assert q.ticks(store, SEG, 2885) == [tick(3, sid=2885)]


def test_raw_ticks_go_to_a_table_per_trading_day_without_an_index_and_a_view_joins_them(db):
    midnight_ist = T0 + (24 * 3600 - (9 * 3600 + 15 * 60))  # 00:00 IST on Tuesday
    monday, tuesday = tick(1), Tick(SEG, SID, midnight_ist + 5, 101.0, 1, 9, midnight_ist + 5.5)
    with SqliteStore(db) as store:
        store.write([], [monday, tuesday])  # one batch across midnight IST: split by day
        store.write([], [tick(2)])
        assert q.tick_tables(store) == ["ticks_20260105", "ticks_20260106"]
        assert q.ticks(store) == [monday, tick(2), tuesday]
        assert q.tick_counts(store) == {(SEG, SID): 3}  # through the `ticks` view
    conn = sqlite3.connect(db)
    try:  # appends only: no index makes an insert a random B-tree write
        indexes = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name LIKE 'ticks_%'"
        ).fetchall()
        assert indexes == []
    finally:
        conn.close()


def test_a_version_1_file_keeps_its_ticks_table_inside_the_view(db):
    db.parent.mkdir(parents=True)
    conn = sqlite3.connect(db)
    conn.executescript(
        "CREATE TABLE ticks (segment TEXT NOT NULL, security_id INTEGER NOT NULL,"
        " ltt_utc INTEGER NOT NULL, ltp REAL NOT NULL, ltq INTEGER, cum_volume INTEGER,"
        " received_utc REAL NOT NULL);"
        "CREATE INDEX ticks_by_instrument ON ticks (segment, security_id, ltt_utc);"
        f"INSERT INTO ticks VALUES {tuple(tick(0))};"
        "PRAGMA user_version = 1;"
    )
    conn.close()
    with SqliteStore(db) as store:
        store.write([], [tick(1)])
        assert q.tick_tables(store) == ["ticks_v1", "ticks_20260105"]
        assert q.ticks(store) == [tick(0), tick(1)]
        assert q.tick_counts(store) == {(SEG, SID): 2}
    with SqliteStore(db) as store:  # opening again changes nothing
        assert q.ticks(store) == [tick(0), tick(1)]


def test_read_helpers_filter_by_instrument_interval_and_time(db):
    with SqliteStore(db) as store:
        store.write(
            [bar(T0 + 60 * i, v=i + 1) for i in range(5)]
            + [Bar(SEG, 2885, 60, T0, 1, 1, 1, 1, 7, 1, 7), bar(T0, iv=300, v=15)],
            gaps=[Gap(SEG, SID, T0 + 10.5, T0 + 11.25, "swap: old socket killed")],
        )
        got = store.candles(SEG, SID, 60, start_utc=T0 + 60, end_utc=T0 + 180)
        assert [b.start_utc for b in got] == [T0 + 60, T0 + 120]
        assert q.volume_sums(store, 60) == {(SEG, SID): 15, (SEG, 2885): 7}
        assert q.volume_sums(store, 300) == {(SEG, SID): 15}
        assert store.instruments() == [(SEG, SID), (SEG, 2885)]
        assert store.intervals() == [60, 300]
        assert q.gaps(store) == [Gap(SEG, SID, T0 + 10.5, T0 + 11.25, "swap: old socket killed")]


# -- restart in the middle of a bar -----------------------------------------------------------


def market(n: int, seed: int = 7) -> list[tuple[float, int, int]]:
    """n trades over about six minutes: (ltp, IST-epoch LTT, cumulative volume)."""
    rng = random.Random(seed)
    out, cum, price, t = [], 0, 1500.0, T0 + 19800 + 5
    for _ in range(n):
        t += rng.choice([0, 1, 2, 3, 17])  # sometimes a quiet stretch
        cum += rng.randint(1, 500)
        price = round(price + rng.uniform(-1, 1), 2)
        out.append((price, t, cum))
    return out


def feed(builder: CandleBuilder, trades) -> list[Bar]:
    bars: list[Bar] = []
    for ltp, ltt, cum in trades:
        now = ltt - 19800 + 0.2
        bars += builder.close_due(now)
        assert builder.add_trade(SEG, SID, ltp, ltt, cum, now) == "ok"
    return bars


@pytest.mark.parametrize("k", [1, 37, 80, 119])
def test_a_restart_in_the_middle_of_a_bar_merges_it_honestly_and_leaves_every_other_bar_alone(
    tmp_path, k
):
    trades = market(120)
    intervals = [60, 300]
    uninterrupted = CandleBuilder(intervals)
    expected = feed(uninterrupted, trades) + uninterrupted.flush()
    stop_at = trades[k - 1][1] - 19800 + 0.5  # SIGTERM just after the k-th trade

    first = CandleBuilder(intervals)
    with SqliteStore(tmp_path / "c.sqlite") as store:  # the collector before the restart
        store.write(feed(first, trades[:k]) + first.flush(stop_at))
    with SqliteStore(tmp_path / "c.sqlite") as store:  # and after it
        second = CandleBuilder(intervals, carry=store.carry())
        store.write(feed(second, trades[k:]) + second.flush())
        stored = {(b.interval_s, b.start_utc): b for b in store.candles()}
        sums = q.volume_sums(store, 60), q.volume_sums(store, 300)

    want = {(b.interval_s, b.start_utc): b for b in expected}
    assert set(stored) == set(want)  # no duplicate, no missing bar
    # Per interval: the bar open at the stop, and the first bar after the restart.
    touched = {
        (iv, bucket_start(ltt - 19800, iv))
        for iv in intervals
        for _, ltt, _ in trades[k - 1 : k + 1]
    }
    for key, bar in stored.items():
        ohlc = lambda b: (b.open, b.high, b.low, b.close)  # noqa: E731
        assert ohlc(bar) == ohlc(want[key])  # open from the first part, high/low of both
        if key in touched:  # only what its ticks prove
            assert bar.complete is False and bar.volume <= want[key].volume
        else:
            assert bar == want[key]
    for total in sums:  # nothing outside a bar's span: never more than really traded
        assert total[(SEG, SID)] <= trades[-1][2]


# -- the writer thread ------------------------------------------------------------------------


def test_the_writer_batches_many_puts_into_one_transaction(db):
    clock = FrozenClock()  # time never reaches the batch deadline: only flush writes
    store = SqliteStore(db)
    writer = StoreWriter(store, clock=clock)
    try:
        for i in range(100):
            writer.put_ticks([tick(10 * i + j) for j in range(10)])
        writer.put_bars([bar()])
        writer.put_gaps([Gap(SEG, SID, T0, T0 + 1.5, "reconnect")])
        assert writer.flush(10)
        assert (writer.commits, writer.rows_written, writer.pending) == (1, 1002, 0)
        assert q.tick_counts(store) == {(SEG, SID): 1000}
    finally:
        assert writer.close(10)


def test_the_writer_commits_every_max_rows(db):
    store = SqliteStore(db)
    writer = StoreWriter(store, clock=FrozenClock(), max_rows=250)
    try:
        for i in range(100):
            writer.put_ticks([tick(10 * i + j) for j in range(10)])
        wait_until("four commits", lambda: writer.commits == 4)
        assert writer.pending == 0 and writer.flush(10)
        assert writer.commits == 4
    finally:
        writer.close(10)


def test_the_writer_commits_a_batch_once_its_delay_has_passed_without_a_flush(db):
    clock = FrozenClock()
    store = SqliteStore(db)
    writer = StoreWriter(store, clock=clock, max_delay_s=0.05)
    try:
        writer.put_bars([bar()])
        writer.put_ticks([tick(1)])
        time.sleep(0.1)  # real time passes, the writer's clock does not
        assert writer.commits == 0 and writer.pending == 2
        clock.advance(0.06)
        wait_until("one commit", lambda: writer.commits == 1)
        assert q.candle_count(store) == 1
    finally:
        writer.close(10)


def test_puts_from_several_threads_all_arrive(db):
    store = SqliteStore(db)
    writer = StoreWriter(store, max_delay_s=0.01, max_rows=300)

    def produce(sid: int) -> None:
        for i in range(50):
            writer.put_ticks([tick(10 * i + j, sid=sid) for j in range(10)])

    threads = [threading.Thread(target=produce, args=(sid,)) for sid in (1, 2, 3, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert writer.flush(10)
    assert q.tick_counts(store) == {(SEG, sid): 500 for sid in (1, 2, 3, 4)}
    assert writer.close(10)


def test_a_failing_write_is_counted_kept_retried_and_alerted_once_until_it_succeeds(db, caplog):
    store = SqliteStore(db)
    alerts: list[tuple[str, str, str]] = []
    writer = StoreWriter(
        store, max_delay_s=0.01, retry_s=0.02, alert=lambda *alert: alerts.append(alert)
    )
    other = sqlite3.connect(db)
    try:
        other.execute("ALTER TABLE candles RENAME TO candles_away")  # writes now fail
        other.commit()
        writer.put_bars([bar()])
        wait_until("three write errors", lambda: writer.errors >= 3)
        assert "candles" in writer.last_error and str(db) in writer.last_error
        assert writer.pending == 1
        assert not writer.flush(0.05)
        assert any("store write failed" in r.getMessage() for r in caplog.records)
        assert [(c, level) for c, level, _ in alerts] == [("store-write-failed", "critical")]
        assert str(db) in alerts[0][2] and "1 rows are kept in memory" in alerts[0][2]
        other.execute("ALTER TABLE candles_away RENAME TO candles")
        other.commit()
        assert writer.flush(10)
        assert writer.pending == 0 and writer.lost_rows == 0
        assert store.candles() == [bar()]
        assert [(c, level) for c, level, _ in alerts][1:] == [("store-", "recovery")]
    finally:
        other.close()
        writer.close(10)


def test_a_failing_episode_is_timed_on_the_writers_clock(db, caplog):
    caplog.set_level(logging.INFO, logger="dhanfeed.store.writer")
    clock = FrozenClock()
    store = SqliteStore(db)
    writer = StoreWriter(store, clock=clock, retry_s=1.0)
    other = sqlite3.connect(db)
    try:
        other.execute("ALTER TABLE candles RENAME TO candles_away")  # writes now fail
        other.commit()
        writer.put_bars([bar()])
        assert not writer.flush(0.05)  # a flush writes at once, whatever the clock says
        began = wait_until("a failed write", lambda: writer.failing_since)
        assert began == clock.time()
        other.execute("ALTER TABLE candles_away RENAME TO candles")
        other.commit()
        clock.advance(42.0)  # past the retry, on the writer's clock
        assert writer.flush(10)
        assert writer.failing_since is None
        assert "store writes succeed again after 42.0s of failures" in caplog.text
    finally:
        other.close()
        writer.close(10)


def test_close_is_bounded_when_the_database_keeps_failing_and_reports_the_lost_rows(db):
    store = SqliteStore(db)
    writer = StoreWriter(store, max_delay_s=0.01, retry_s=0.02)
    other = sqlite3.connect(db, isolation_level=None)
    try:
        q.refuse_tick_writes(other, T0)
        writer.put_ticks([tick(1), tick(2)])
        wait_until("a write error", lambda: writer.errors >= 1)
        assert writer.close(0.3) is False
        assert writer.lost_rows == 2
    finally:
        other.close()


def test_close_writes_what_is_pending_and_later_puts_are_counted_as_lost(db):
    store = SqliteStore(db)
    writer = StoreWriter(store, clock=FrozenClock())
    writer.put_bars([bar()])
    assert writer.close(10)
    writer.put_bars([bar(T0 + 60)])
    assert writer.lost_rows == 1
    with SqliteStore.open_readonly(db) as reader:
        assert reader.candles() == [bar()]


# -- bars before ticks; ticks are the part that may be shed ----------------------------------


class SlowDiskClock:
    """A monotonic clock on which every reading is `step` seconds after the one before: as if
    each batch the writer commits took that long, so that a stop budget runs out after a known
    handful of batches whatever the real machine's speed."""

    def __init__(self, step: float = 1.0) -> None:
        self.t = 1000.0
        self.step = step
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            self.t += self.step
            return self.t

    def time(self) -> float:
        return T0 + self.t


def note_the_ticks_committed_before_each_new_bar(db) -> None:
    """A trigger in the real database: each new bar records how many ticks were committed
    before its own transaction reached it (its own ticks are inserted after its bars)."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.executescript(
            """
            CREATE TABLE bar_seen (ticks_before INTEGER NOT NULL);
            CREATE TRIGGER note_ticks AFTER INSERT ON candles
            BEGIN INSERT INTO bar_seen SELECT count(*) FROM ticks; END;
            """
        )
    finally:
        conn.close()


def test_a_bar_put_behind_a_large_tick_backlog_is_committed_within_one_batch(db):
    store = SqliteStore(db)
    note_the_ticks_committed_before_each_new_bar(db)
    writer = StoreWriter(store, max_rows=1000)
    backlog = [tick(i) for i in range(100_000)]  # 100 batches
    blocker = sqlite3.connect(db, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # the writer waits on the lock: the backlog builds
        for i in range(0, len(backlog), 1000):
            writer.put_ticks(backlog[i : i + 1000])
        writer.put_bars([bar()])
        blocker.execute("ROLLBACK")
        assert writer.flush(30)
        (seen,) = blocker.execute("SELECT ticks_before FROM bar_seen").fetchall()
    finally:
        blocker.close()
        writer.close(10)
    # At most the one batch that was in flight went before the bar (the old single queue
    # committed all 100 000 ticks first); and nothing was shed on the way.
    assert seen[0] <= 1000
    assert writer.ticks_written == 100_000 and writer.ticks_dropped == 0 == writer.lost_rows
    with SqliteStore.open_readonly(db) as reader:
        assert reader.candles() == [bar()]
        assert q.tick_counts(reader) == {(SEG, SID): 100_000}


def test_close_with_a_tiny_budget_writes_the_bars_first_and_counts_the_unwritten_ticks(db, caplog):
    store = SqliteStore(db)
    writer = StoreWriter(store, max_rows=1000, clock=SlowDiskClock(step=1.0))
    backlog = [tick(i) for i in range(200_000)]
    writer.put_ticks(backlog)
    writer.put_bars([bar(), bar(T0 + 60)])  # handed in after the ticks
    writer.put_gaps([Gap(SEG, SID, T0 + 1.0, T0 + 1.5, "reconnect")])
    assert writer.close(5) is False  # 4 s of the slow clock: a few batches, not 200

    assert writer.pending == 0
    assert writer.bars_written == 2
    assert writer.ticks_dropped > 100_000
    assert writer.ticks_written + writer.ticks_dropped == len(backlog)
    assert writer.lost_rows == writer.ticks_dropped  # only ticks were given up
    with SqliteStore.open_readonly(db) as reader:
        # the gap (T0+1 .. T0+1.5) overlaps the first bar: it is no longer complete
        assert reader.candles() == [dataclasses.replace(bar(), complete=False), bar(T0 + 60)]
        assert len(q.gaps(reader)) == 1
        assert q.ticks(reader) == backlog[: writer.ticks_written]  # the oldest, in order
    (line,) = [r for r in caplog.records if "not written" in r.getMessage()]
    assert f"{writer.ticks_dropped} ticks" in line.getMessage()


def test_the_tick_backlog_bound_sheds_new_ticks_counts_them_and_warns_once_per_episode(db, caplog):
    caplog.set_level(logging.INFO, logger="dhanfeed.store.writer")
    store = SqliteStore(db)
    writer = StoreWriter(store, max_rows=1000, max_pending_ticks=5000, retry_s=0.02)
    other = sqlite3.connect(db, isolation_level=None)
    sent = [tick(i) for i in range(26_000)]

    def warnings() -> int:
        return sum("dropping new ticks" in r.getMessage() for r in caplog.records)

    try:
        q.refuse_tick_writes(other, T0)  # tick commits now fail
        for i in range(0, 20_000, 1000):
            writer.put_ticks(sent[i : i + 1000])
        writer.put_bars([bar()])
        # bars are not held by the ticks
        wait_until("the bar written", lambda: writer.bars_written == 1)
        assert (writer.pending_ticks, writer.ticks_dropped) == (5000, 15_000)
        assert writer.lost_rows == 15_000 and writer.ticks_written == 0
        assert warnings() == 1  # one line for the episode, not one per refused put

        q.allow_tick_writes(other, T0)
        assert writer.flush(10)
        caught_up = [r.getMessage() for r in caplog.records if "caught up" in r.getMessage()]
        assert caught_up == ["store writer caught up: 15000 ticks were dropped while it was behind"]

        q.refuse_tick_writes(other, T0)  # a second episode
        for i in range(20_000, 26_000, 1000):
            writer.put_ticks(sent[i : i + 1000])
        assert writer.ticks_dropped == 16_000 and warnings() == 2
        q.allow_tick_writes(other, T0)
        assert writer.flush(10)
    finally:
        other.close()
        writer.close(10)
    with SqliteStore.open_readonly(db) as reader:  # the newest were shed: the oldest are kept
        assert q.ticks(reader) == sent[:5000] + sent[20_000:25_000]
        assert reader.candles() == [bar()]


# -- schema 2: complete/source, healed gaps, reconciliation, migration ------------------------

FIXTURE = Path(__file__).parent / "fixtures" / "candles_schema1.sqlite"  # made by main at 93ab7cb


def test_a_database_written_by_the_previous_version_is_migrated_in_place_with_no_row_lost(tmp_path):
    db = tmp_path / "old.sqlite"
    shutil.copy(FIXTURE, db)
    with SqliteStore.open_readonly(
        db
    ) as reader:  # a reader sees it as if migrated, changing nothing
        before = reader.candles()
        assert {b.complete for b in before} == {False}
        assert [g.healed_utc for g in reader.gaps(unhealed=True)] == [None]
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == 1

    with SqliteStore(db) as store:
        assert store.schema_version() == 3  # honest bars, on top of the per-day ticks (2)
        after = store.candles()
        assert [(b.segment, b.security_id, b.interval_s, b.start_utc, b.volume, b.ticks,
                 b.cum_volume_end) for b in after] == [
            (b.segment, b.security_id, b.interval_s, b.start_utc, b.volume, b.ticks,
             b.cum_volume_end) for b in before]  # fmt: skip
        # The old volume rule could hold volume from outside a bar: nothing vouches for them.
        assert {(b.complete, b.source) for b in after} == {(False, "feed")}
        prices = {(b.segment, b.interval_s, b.start_utc): b.open for b in after}
        assert prices[("NSE_EQ", 60, 1767584700)] == 2678.2  # was 2678.19995117187
        assert prices[("NSE_CURRENCY", 60, 1767584700)] == 83.2525  # 4 decimals kept
        assert prices[("IDX_I", 60, 1767584700)] == 24000.55
        assert store.gaps() == [
            Gap("NSE_EQ", 1333, 1767584770.5, 1767584795.25, "reconnect after 807", None)
        ]
        assert len(store.ticks()) == 1
        assert store.reconciliations() == []
    with SqliteStore(db) as store:  # a second open changes nothing
        assert store.candles() == after


def test_a_database_from_a_newer_dhanfeed_is_refused_with_one_line(tmp_path):
    db = tmp_path / "new.sqlite"
    SqliteStore(db).close()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 9")
    conn.close()
    with pytest.raises(StoreError, match="schema 9, newer than this dhanfeed"):
        SqliteStore(db)


def test_raw_tick_prices_are_stored_at_the_segments_precision(db):
    with SqliteStore(db) as store:
        store.write(ticks=[Tick(SEG, SID, T0, 2678.199951171875, 1, 1, T0 + 0.1)])
        assert store.ticks()[0].ltp == 2678.2
