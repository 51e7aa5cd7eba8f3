"""bin/backfill against the simulator's intraday endpoint: heal, exit codes, bad input.

`main(argv, now=...)` is called in-process with the clock passed in: "now" is set a few
minutes ahead so that the minutes the simulator has traded so far count as settled. Each test
runs against both stores (`db` is parametrized): an SQLite file, and a database on the
session's PostgreSQL server holding the config's client id's rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from dhanfeed.candles import Bar
from dhanfeed.cli.backfill import main
from dhanfeed.database_url import is_postgres_url
from dhanfeed.sim.config_file import write_config
from dhanfeed.store import Gap, HealableStore, open_store
from support.intraday import exchange_bars
from support.sim import BIN, Sim, launch_sim

EQ = ["NSE_EQ:1333", "NSE_EQ:11536"]
FNO = "NSE_FNO:55796"
SIM_ARGS = ("--instruments", ",".join([*EQ, FNO]), "--ticks-per-second", "10")


SQLITE = "data/candles.sqlite"


@dataclasses.dataclass(frozen=True)
class Db:
    """The collector database a test's config names: `target` as the config says it."""

    workdir: Path
    target: str
    client_id: str

    @property
    def postgresql(self) -> bool:
        return is_postgres_url(self.target)

    @property
    def path(self) -> Path:  # SQLite only
        return self.workdir / self.target

    def open(self, readonly: bool = False) -> HealableStore:
        where = self.target if self.postgresql else self.path
        return open_store(where, client_id=self.client_id, readonly=readonly)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "state").mkdir()
    return tmp_path


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, workdir: Path, shared_sim: Sim) -> Db:
    target = request.getfixturevalue("pg_url") if request.param == "postgresql" else SQLITE
    return Db(workdir, target, shared_sim.client_id)


def config(db: Db, sim: Sim, instruments=EQ, **backfill: object) -> Path:
    return write_config(
        db.workdir,
        sim,
        metrics={"textfile_dir": "metrics"},
        collector={"instruments": instruments, "intervals": ["1m", "5m"], "database": db.target},
        backfill=backfill,
    )


@pytest.fixture(scope="module")
def shared_sim() -> Iterator[Sim]:
    """One simulator for the module, once a whole minute of its trading has ended."""
    sim = launch_sim(*SIM_ARGS)
    sim.started_utc = time.time()
    try:
        while time.time() < (sim.started_utc // 60 + 1) * 60 + 1:
            time.sleep(0.2)
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def sim(shared_sim: Sim, workdir: Path) -> Iterator[Sim]:
    """The shared simulator, with a fresh token in this test's token file."""
    shared_sim.admin("issue-token", {"path": str(workdir / "state" / "token.json")})
    yield shared_sim
    shared_sim.admin("clear-faults", {})


def with_gaps(db: Db, sim: Sim, keys=EQ) -> list[Gap]:
    """A collector database in which every instrument was down since the simulator started."""
    gaps = []
    for key in keys:
        seg, sid = key.split(":")
        gaps.append(
            Gap(seg, int(sid), sim.started_utc - 1, time.time() + 1, "collector not running")
        )
    with db.open() as store:
        store.write(gaps=gaps)
    return gaps


def later() -> dt.datetime:
    """A clock far enough ahead that every minute traded so far has settled."""
    return dt.datetime.now(dt.UTC) + dt.timedelta(minutes=3)


def one_minute_bars(db: Db, key: str) -> list[Bar]:
    seg, sid = key.split(":")
    with db.open(readonly=True) as store:
        return store.candles(seg, int(sid), 60)


def run(db: Db, *args: str, now: dt.datetime | None = None) -> int:
    return main(["--config", str(db.workdir / "config.toml"), *args], now=now or later())


# ---------------------------------------------------------------------------------------------


def test_a_gap_is_healed_with_dhans_bars_and_a_second_run_changes_nothing(sim, db, capsys):
    config(db, sim)
    with_gaps(db, sim)
    now = later()
    ran_at = time.time()  # the simulator's minute at the run was still trading: not compared
    assert run(db, "--json", now=now) == 0
    report = json.loads(capsys.readouterr().out)
    for key in EQ:
        got = [
            (b.start_utc, b.open, b.high, b.low, b.close, b.volume)
            for b in one_minute_bars(db, key)
            if b.start_utc + 60 <= ran_at
        ]
        want = [
            bar
            for bar in sorted(
                (t, *v)
                for t, v in exchange_bars(sim, db.workdir / "state" / "token.json", key).items()
            )
            if bar[0] + 60 <= ran_at
        ]
        assert got == want and got
        assert {(b.source, b.complete) for b in one_minute_bars(db, key)} == {("dhan", True)}
    assert report["healed_gaps"] == 2 and report["bars_inserted"] >= 2
    assert report["bars_replaced"] == 0 and report["exit_code"] == 0
    with db.open(readonly=True) as store:
        assert all(g.healed_utc == now.timestamp() for g in store.gaps())
        before = store.candles()
    assert run(db, "--json", now=now) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["healed_gaps"], again["bars_inserted"], again["requests"]) == (0, 0, 0)
    with db.open(readonly=True) as store:
        assert store.candles() == before
    prom = (db.workdir / "metrics" / f"backfill-{db.client_id}.prom").read_text()
    assert "dhanfeed_backfill_last_exit_code" in prom and "dhanfeed_backfill_healed_gaps" in prom


def test_dry_run_fetches_and_reports_but_writes_nothing(sim, db, capsys):
    config(db, sim)
    with_gaps(db, sim)
    assert run(db, "--dry-run") == 0
    out = capsys.readouterr().out
    assert "would replace" in out
    with db.open(readonly=True) as store:
        assert store.candles() == [] and store.gaps(unhealed=True) != []
    assert not list((db.workdir / "metrics").glob("*.prom"))


def test_reconcile_stores_and_reports_the_figures_per_instrument(sim, db, capsys):
    config(db, sim)
    now = later()
    key = EQ[0]
    seg, sid = key.split(":")
    fetched_at = time.time()
    bars = [
        bar
        for bar in sorted(
            (t, *v) for t, v in exchange_bars(sim, db.workdir / "state" / "token.json", key).items()
        )
        if bar[0] + 60 <= fetched_at
    ]
    ours = [
        Bar(seg, int(sid), 60, t, o, h, lo, c, v, 1, None, True, "feed")
        for t, o, h, lo, c, v in bars
    ]
    ours[0].high += 0.5  # more than a tick: differs
    ours[0].volume += 1
    with db.open() as store:
        store.write(ours)
    assert run(db, "--reconcile", "--json", now=now) == 0
    report = json.loads(capsys.readouterr().out)
    figures = report["reconciled"][key]
    assert figures["minutes_compared"] == len(ours) >= 1
    assert (figures["minutes_differing"], figures["volume_differing"]) == (1, 1)
    assert figures["worst_minute_utc"] == ours[0].start_utc
    with db.open(readonly=True) as store:
        (row,) = [r for r in store.reconciliations() if r.security_id == int(sid)]
        assert (row.minutes_compared, row.minutes_differing) == (len(ours), 1)
    assert (
        "dhanfeed_reconcile_minutes_differing"
        in (db.workdir / "metrics" / f"reconcile-{db.client_id}.prom").read_text()
    )
    # 1 differing minute of a few is above [backfill] alert_above (5 %): one warning alert.
    (alert,) = [
        json.loads(x) for x in (db.workdir / "logs" / "token_alerts.log").read_text().splitlines()
    ]
    assert alert["condition"] == f"reconcile-{key}" and alert["severity"] == "warning"
    assert run(db, "--reconcile", "--prefer", "dhan", now=now) == 0
    (fixed, *_) = one_minute_bars(db, key)
    assert (fixed.source, fixed.high, fixed.volume) == ("dhan", bars[0][2], bars[0][5])


def test_an_instrument_without_a_known_type_is_skipped_with_one_warning_and_a_configured_one_is_healed(
    sim, db, capsys, caplog
):
    config(db, sim, instruments=[EQ[0], FNO])
    with_gaps(db, sim, keys=[EQ[0], FNO])
    assert run(db) == 0
    assert "NSE_FNO:55796: skipped: no instrument type" in capsys.readouterr().out
    assert one_minute_bars(db, FNO) == [] and one_minute_bars(db, EQ[0]) != []
    config(db, sim, instruments=[EQ[0], FNO], instrument_types=["NSE_FNO:55796=OPTIDX"])
    assert run(db) == 0
    assert one_minute_bars(db, FNO) != []


def test_dhans_rate_limit_is_backed_off_and_the_run_goes_on(sim, db, capsys):
    many = [f"NSE_EQ:{sid}" for sid in (1333, 11536, 2885, 1594, 4963, 3045, 500, 501)]
    config(db, sim, instruments=many, requests_per_second=100)
    with_gaps(db, sim, keys=many)
    assert run(db, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rate_limited"] >= 1  # the simulator allows 5 a second
    assert report["healed_gaps"] == len(many)


@pytest.mark.parametrize("mode", ["500", "malformed", "html"])
def test_a_failing_dhan_is_exit_1_and_leaves_that_instrument_untouched(sim, db, capsys, mode):
    config(db, sim, instruments=EQ[:1])
    with_gaps(db, sim, keys=EQ[:1])
    sim.admin("fault", {"kind": "rest", "endpoint": "intraday", "mode": mode, "count": 10})
    assert run(db) == 1
    err = capsys.readouterr().err
    assert "NSE_EQ:1333: failed" in err and "Traceback" not in err
    with db.open(readonly=True) as store:
        assert store.candles() == [] and len(store.gaps(unhealed=True)) == 1
    assert (
        "dhanfeed_backfill_last_exit_code"
        in (db.workdir / "metrics" / f"backfill-{db.client_id}.prom").read_text()
    )


def test_no_token_file_is_exit_3(sim, db, capsys):
    config(db, sim)
    with_gaps(db, sim)
    (db.workdir / "state" / "token.json").unlink()
    assert run(db) == 3
    assert "no usable token" in capsys.readouterr().err


def test_a_token_dhan_refuses_is_exit_3_and_nothing_is_written(sim, db, capsys):
    config(db, sim)
    with_gaps(db, sim)
    sim.admin("issue-token", {})  # a newer token elsewhere: the file's one is dead
    assert run(db) == 3
    err = capsys.readouterr().err
    assert "Dhan refused the token" in err and "eyJ" not in err
    with db.open(readonly=True) as store:
        assert store.candles() == []


def test_a_date_in_the_future_is_a_usage_error(sim, db, capsys):
    config(db, sim)
    with_gaps(db, sim)
    tomorrow = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=2)).isoformat()
    assert run(db, "--date", tomorrow) == 2
    assert "in the future" in capsys.readouterr().err
    assert run(db, "--date", "yesterday") == 2


def test_a_database_without_the_tables_is_a_usage_error_and_stays_as_it_was(sim, db, capsys):
    config(db, sim)
    if db.postgresql:  # a database the collector never wrote: no schema is created in it
        assert run(db) == 2
        assert "not a dhanfeed database" in capsys.readouterr().err
        with psycopg.connect(db.target) as conn:
            assert conn.execute("SELECT to_regclass('candles')").fetchone() == (None,)
        return
    assert run(db) == 2
    assert "no database at" in capsys.readouterr().err
    db.path.parent.mkdir()
    db.path.write_bytes(b"")
    assert run(db) == 2
    assert "not a dhanfeed database" in capsys.readouterr().err
    assert db.path.read_bytes() == b""


def test_prefer_without_reconcile_is_a_usage_error(sim, db, capsys):
    config(db, sim)
    assert run(db, "--prefer", "dhan") == 2


@contextlib.contextmanager
def lock_held_elsewhere(db: Db) -> Iterator[None]:
    """The backfill lock held by someone else: an SQLite file's by a second process; a
    PostgreSQL client id's by this process's own session (the run below is another one)."""
    if db.postgresql:
        with db.open() as store, store.backfill_lock():
            yield
        return
    lock = db.path.with_name("candles.sqlite.backfill.lock")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time, filelock; l = filelock.FileLock(sys.argv[1]);"
         " l.acquire(); print('held', flush=True); time.sleep(60)", str(lock)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


def test_a_second_run_while_one_holds_the_lock_exits_75(sim, db):
    cfg = config(db, sim)
    with_gaps(db, sim)
    with lock_held_elsewhere(db):
        second = subprocess.run(
            [str(BIN / "backfill"), "--config", str(cfg)],
            capture_output=True, text=True, timeout=60, env={**os.environ},
        )  # fmt: skip
    assert second.returncode == 75
    assert second.stderr.count("\n") == 1 and "another backfill" in second.stderr
