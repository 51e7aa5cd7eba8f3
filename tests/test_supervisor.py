"""The supervisor against the simulator: the clock it is given reaches every socket it opens,
and its status names each socket's state and role in the words the status file has always
used; its default alert logs at the alert's severity."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from dhanfeed.feed.connection import FeedConnection, SocketState
from dhanfeed.feed.shard import ShardPhase
from dhanfeed.feed.supervisor import SocketRole, Supervisor, log_alert
from dhanfeed.feed.token_watch import TokenWatcher
from dhanfeed.instruments import Instrument
from dhanfeed.severity import Severity
from support.frozen_clock import FrozenClock
from support.polling import wait_until
from support.sim import Sim


def test_every_socket_takes_the_supervisors_clock_and_is_reported_by_state_and_role(
    start_sim: Callable[..., Sim], tmp_path: Path
) -> None:
    path = tmp_path / "token.json"
    sim = start_sim(
        "--instruments", "NSE_EQ:1333", "--ticks-per-second", "20", "--issue-token", str(path)
    )  # fmt: skip
    clock = FrozenClock()
    watcher = TokenWatcher(path, sim.client_id, clock=clock.now)
    watcher.check()

    def sink(conn: FeedConnection, batch: list[bytes], at: float) -> None:
        pass

    sup = Supervisor(
        feed_url=sim.feed_url,
        instruments=[Instrument("NSE_EQ", 1333)],
        mode="quote",
        watcher=watcher,
        sink=sink,
        in_session=lambda now: False,
        stale_after_s=60,
        clock=clock,
    )
    (waiting,) = sup.snapshot().sockets
    sup.start()
    try:
        snap = wait_until(
            "a live socket with data",
            lambda: (s := sup.snapshot()).sockets_live and s.sockets[0].last_data_utc and s,
        )
    finally:
        sup.stop(5)
    assert (waiting.state, waiting.role) == (ShardPhase.STARTING, SocketRole.NONE)
    assert (waiting.state, waiting.role) == ("starting", "none")  # the status file's words
    (live,) = snap.sockets
    assert (live.state, live.role) == (SocketState.OPEN, SocketRole.LIVE)
    assert (live.state, live.role) == ("open", "live")
    assert live.last_data_utc == clock.time()  # stamped on the supervisor's clock


def test_the_default_alert_logs_at_its_severitys_level_and_recoveries_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="dhanfeed.feed.supervisor")
    log_alert("token-missing", Severity.CRITICAL, "no token")
    log_alert("falling-behind", Severity.WARNING, "behind")
    log_alert("token-", Severity.RECOVERY, "live again")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.CRITICAL, "ALERT token-missing: no token"),
        (logging.WARNING, "ALERT falling-behind: behind"),
        (logging.DEBUG, "alerts token-* end: live again"),
    ]
