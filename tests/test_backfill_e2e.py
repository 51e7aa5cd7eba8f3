"""End to end with the real programs: a collector SIGKILLed for over a minute and a token swap
whose old socket Dhan cuts leave gaps; backfill heals them from the simulator's own intraday
bars (the exchange's bars), a second run changes nothing, and `--reconcile` reports exactly
the minutes whose feed bars differ from the simulator's, as this test computes them.

Slow by nature (three to four minutes): a whole minute on a live socket and a kill
that outlasts a minute. A minute is healed only once it ended more than a minute ago: backfill
(`main`, in-process) is told that time has come once the simulator's last minute of ours has
ended, instead of the test waiting out that minute (as test_backfill_cli does).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dhanfeed.backfill import aggregate
from dhanfeed.candles import Bar
from dhanfeed.cli.backfill import main as backfill_main
from dhanfeed.sim.config_file import ALL_DAY, QUOTE_1M, write_config
from dhanfeed.store import SqliteStore
from support.intraday import exchange_bars
from support.sim import Sim
from test_collector_e2e import Collector

INSTRUMENTS = ["NSE_EQ:1333", "NSE_EQ:11536", "NSE_FNO:55796"]
SIM_ARGS = ("--instruments", ",".join(INSTRUMENTS), "--ticks-per-second", "10",
            "--renew-kills-sockets")  # fmt: skip
TIMING = {"live_quiet_s": 1, "stable_after_s": 2, "token_grace_s": 1}


def backfill_config(workdir: Path, sim: Sim) -> Path:
    return write_config(
        workdir,
        sim,
        session=ALL_DAY,
        collector={
            **QUOTE_1M,
            "instruments": INSTRUMENTS,
            "intervals": ["1m", "2m"],  # 2m: some of its buckets settle within the test
            "grace": "1s",
            "status_every": "0.3s",
            "stale_after": "30s",
        },
        backfill={"instrument_types": ["NSE_FNO:55796=OPTIDX"]},
    )


def backfill(capsys: pytest.CaptureFixture[str], config: Path, now: float, *args: str) -> dict:
    """`bin/backfill --json` run at `now` (epoch seconds)."""
    code = backfill_main(
        ["--config", str(config), "--json", *args], now=dt.datetime.fromtimestamp(now, dt.UTC)
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "eyJ" not in out + err
    return json.loads(out)


def ohlcv(bar: Bar) -> tuple:
    return (bar.open, bar.high, bar.low, bar.close, bar.volume)


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_backfill_heals_a_sigkill_and_a_token_swap_gap_from_the_exchanges_bars(
    start_sim: Callable[..., Sim], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "state").mkdir()
    token_file = tmp_path / "state" / "token.json"
    sim = start_sim(*SIM_ARGS, "--issue-token", str(token_file))
    config = backfill_config(tmp_path, sim)
    first = Collector(tmp_path, config, TIMING).start()
    try:
        first.wait_live(min_packets=30)
        time.sleep(2)
        sim.admin("issue-token", {"path": str(token_file)})  # Dhan cuts the old socket (807)
        first.wait_for(
            "the reconnect on the new token",
            lambda s: s.get("reconnects", 0) >= 1 and s.get("sockets_live") == 1,
        )
        live_again = time.time()
        # One whole minute on a live socket (complete feed bars), closed and committed.
        while time.time() < (live_again // 60 + 2) * 60 + 2.5:
            time.sleep(0.2)
        first.kill()  # SIGKILL: the open bars die with it (their raw ticks are stored)
        time.sleep(62)  # down for over a minute: whole minutes with no bar of ours
        second = Collector(tmp_path, config, TIMING).start()
        second.wait_live(min_packets=20)
        time.sleep(2)
        assert second.terminate() == 0
    finally:
        first.kill()
    last_minute_ended = (int(time.time()) // 60 + 1) * 60
    while time.time() < last_minute_ended + 2:  # the simulator's bars of our minutes are final
        time.sleep(0.2)
    checked_at = last_minute_ended + 61  # backfill's "now": every minute of ours has settled

    database = tmp_path / "data" / "candles.sqlite"
    with SqliteStore.open_readonly(database) as store:
        gaps = store.gaps()
    reasons = {g.reason.split(" (")[0] for g in gaps}
    assert any("collector not running" in r for r in reasons), reasons
    assert any("807" in r for r in reasons), reasons  # the token swap's gap

    report = backfill(capsys, config, checked_at)
    assert report["healed_gaps"] == len(gaps) and report["exit_code"] == 0
    assert report["bars_replaced"] + report["bars_inserted"] > 0

    with SqliteStore.open_readonly(database) as store:
        assert store.gaps(unhealed=True) == []
        healed = store.candles()
    for key in INSTRUMENTS:
        seg, sid = key.split(":")
        theirs = exchange_bars(sim, token_file, key)
        ours = {
            b.start_utc: b
            for b in healed
            if (b.segment, b.security_id, b.interval_s) == (seg, int(sid), 60)
        }
        first_bar, last_bar = min(ours), max(ours)
        # Every minute of every gap is the exchange's bar (or absent: nothing traded).
        for gap in (g for g in gaps if (g.segment, g.security_id) == (seg, int(sid))):
            minute = int(gap.start_utc // 60 * 60)
            while minute < gap.end_utc:
                if minute in theirs:
                    assert ours[minute].source == "dhan" and ours[minute].complete, (key, minute)
                    assert ohlcv(ours[minute]) == theirs[minute], (key, minute)
                else:
                    assert minute not in ours
                minute += 60
        # No incomplete 1-minute bar is left, and no minute without a trade has a bar.
        assert all(b.complete for b in ours.values()), key
        assert set(ours) == {t for t in theirs if first_bar <= t <= last_bar}, key
        # The day's volume from our first bar to our last is the exchange's.
        assert sum(b.volume for b in ours.values()) == sum(
            v[4] for t, v in theirs.items() if first_bar <= t <= last_bar
        ), key
        # Longer bars agree with the 1-minute bars they are made of.
        longer = [
            b for b in healed
            if (b.segment, b.security_id, b.interval_s) == (seg, int(sid), 120)
            and b.start_utc + 120 + 60 <= checked_at  # settled: the collector was done with it
        ]  # fmt: skip
        assert longer, key
        for two in longer:
            parts = [ours[t] for t in sorted(ours) if two.start_utc <= t < two.start_utc + 120]
            assert two == aggregate(seg, int(sid), 120, two.start_utc, parts), key
    keys = [(b.segment, b.security_id, b.interval_s, b.start_utc) for b in healed]
    assert len(keys) == len(set(keys))  # no duplicate bar

    again = backfill(capsys, config, checked_at)
    assert (again["healed_gaps"], again["bars_replaced"], again["bars_inserted"]) == (0, 0, 0)
    assert again["requests"] == 0
    with SqliteStore.open_readonly(database) as store:
        assert store.candles() == healed

    reconciled = backfill(capsys, config, checked_at, "--reconcile")
    for key in INSTRUMENTS:  # the test's own comparison of complete feed bars with the sim's
        seg, sid = key.split(":")
        theirs = exchange_bars(sim, token_file, key)
        feed_bars = [
            b for b in healed
            if (b.segment, b.security_id, b.interval_s) == (seg, int(sid), 60) and b.source == "feed"
        ]  # fmt: skip
        price = [b.start_utc for b in feed_bars
                 if max(abs(x - y) for x, y in zip(ohlcv(b)[:4], theirs[b.start_utc][:4], strict=True)) > 0.05 + 1e-9]  # fmt: skip
        volume = [b.start_utc for b in feed_bars if b.volume != theirs[b.start_utc][4]]
        figures = reconciled["reconciled"][key]
        assert figures["minutes_compared"] == len(feed_bars) > 0, key
        assert (figures["minutes_differing"], figures["volume_differing"]) == (
            len(price),
            len(volume),
        )
    with SqliteStore.open_readonly(database) as store:
        assert store.candles() == healed  # reconciling alone changes no bar
        assert {(r.segment, r.security_id) for r in store.reconciliations()} == {
            (k.split(":")[0], int(k.split(":")[1])) for k in INSTRUMENTS
        }
