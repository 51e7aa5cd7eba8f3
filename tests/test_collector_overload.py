"""Overload is visible, never silent: a collector that receives more than it can consume
says so (status file, metrics, one warning alert) while its sockets stay alive.

The real `bin/collector` against the real simulator, flooded: 3000 instruments at 60 ticks
per second each, raw ticks stored, bars of twelve intervals. At one packet per message the
simulator itself tops out below the rate a collector of one interval sustains, so here it
packs 100 packets per message (`--batch`): sending gets cheap, while the collector's work
per packet (decode, one candle per interval, a raw-tick row) stays what it is, and it falls
behind. The simulator pings every 0.5 s and closes a client that has not answered for 5 s
(not less: the swamped simulator shares the two cores, and on a loaded machine it misjudged
timely pongs), so a receive thread that stopped answering pings while the consumer is
swamped would lose its socket within seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dhanfeed.status import textfile_name
from support.sim import Sim
from test_collector_e2e import (  # noqa: F401 - collectors and workdir are fixtures
    Collector,
    collectors,
    our_sockets,
    start_collector,
    workdir,
)

FLOOD = 3000
KEYS = [f"NSE_EQ:{100_000 + i}" for i in range(FLOOD)]


@pytest.mark.slow
def test_a_flooded_collector_raises_one_falling_behind_warning_and_keeps_answering_pings(
    start_sim: Callable[..., Sim],
    workdir: Path,  # noqa: F811
    collectors: list[Collector],  # noqa: F811
) -> None:
    sim = start_sim(
        "--instruments", f"NSE_EQ:100000-{100_000 + FLOOD - 1}", "--ticks-per-second", "60", "--batch", "100",
        "--ping-interval", "0.5", "--ping-timeout", "5",
        "--issue-token", str(workdir / "state" / "token.json"),
    )  # fmt: skip
    intervals = [f"{m}m" for m in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60)]
    c = start_collector(
        collectors, workdir, sim, {"behind_after_s": 0.5}, instruments=KEYS, intervals=intervals
    )

    # lag_s is known once a trade packet is consumed: the first batches are Prev Close packets
    behind = c.wait_for(
        "the collector to fall behind, with its lag measured",
        lambda s: s.get("behind") and s.get("lag_s") is not None,
        timeout=90,
    )
    assert behind["lag_s"] >= 0
    time.sleep(12)  # swamped for 24 pings more: each must still be answered within 5 s
    flooded = c.status()
    stopped_at = time.time()
    assert c.terminate(timeout=30) == 0

    deadline = time.monotonic() + 60  # the swamped simulator notes the close when it can
    while any(s["closed_at"] is None for s in our_sockets(sim)) and time.monotonic() < deadline:
        time.sleep(0.2)
    sockets = our_sockets(sim)
    assert len(sockets) == 1, [s["close_reason"] for s in sockets]  # it lived through it all,
    assert sockets[0]["closed_at"] >= stopped_at  # until we stopped the collector
    assert flooded["reconnects"] == 0 and flooded["sockets_live"] == 1
    alerts = (workdir / "logs" / "token_alerts.log").read_text()
    assert alerts.count("collector-falling-behind") == 1
    assert "messages waiting, the oldest for" in alerts and "receive time minus LTT" in alerts
    prom = (workdir / "state" / textfile_name(flooded["client_id"])).read_text()
    assert "dhanfeed_collector_backlog" in prom and "dhanfeed_collector_lag_seconds" in prom
    final = c.status()  # what the stop could not consume is counted, never silent
    assert final["backlog"] == 0 and final["dropped"] >= flooded["dropped"]
    # Swamped or not, no volume is lost between bars: each interval's bars add up to the
    # newest cumulative volume they took minus one base (the first trade's). A simulator that
    # fell behind its own time stamps sends the old minute's last ticks after its bars closed
    # (end + grace): those are late for the intervals ending there, counted and kept out.
    with c.db() as db:
        sums = db.execute(
            "SELECT interval_s, sum(volume), max(cum_volume_end) FROM candles"
            " WHERE security_id = ? GROUP BY 1",
            (int(KEYS[0].split(":")[1]),),
        ).fetchall()
    assert len(sums) == 12 and len({cum - total for _, total, cum in sums}) == 1, sums
    assert len({cum for _, _, cum in sums}) == 1 or final["late"] > 0, sums
