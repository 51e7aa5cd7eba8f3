"""Status file and metrics: one snapshot, written atomically, same figures in both."""

from __future__ import annotations

import dataclasses
import json
import socket
from pathlib import Path

import requests

from dhanfeed.feed.connection import SocketState
from dhanfeed.feed.shard import ShardPhase
from dhanfeed.feed.supervisor import SocketRole, SocketStatus
from dhanfeed.status import (
    STATUS_FILE,
    CollectorState,
    CollectorStatus,
    StatusReporter,
    last_data_of_previous_run,
)

SNAP = {
    "pid": 4242,
    "up": 1,
    "token_fp": "0123456789ab",
    "sockets_live": 2,
    "last_data_utc": 1_800_000_000.5,
    "packets": 1234,
    "swaps": 3,
    "reconnects": 1,
    "duplicates": 17,
    "late": 2,
}
ZERO = {  # every other field of a running collector's snapshot
    "state": "running",
    "started_utc": 1_800_000_000.0,
    "written_at": "2027-01-15T08:00:00+00:00",
    "client_id": "1000000001",
    "database": "data/candles.sqlite",
    "token_expires_at": None,
    "sockets": (),
    "swap_log": (),
    "token_refused": None,
    "store_failing_since": None,
    **dict.fromkeys(
        "connects gaps skipped_packets trades unknown_segment ticks_stored dropped ticks_dropped"
        " backlog bars_closed bars_stored store_pending store_errors".split(),
        0,
    ),
    "delay_s": 0.0,
    "lag_s": None,
    "behind": False,
}


ACCOUNT = {"client_id": "1000000001"}
TEXTFILE = "collector-1000000001.prom"  # the account's own file

# A live socket, a swap's new one, and a shard without one, as the supervisor reports them.
SOCKETS = (
    SocketStatus(shard=0, id=3, state=SocketState.OPEN, role=SocketRole.LIVE,
                 token_fp="0123456789ab", instruments=2, packets=1200, last_data_utc=1.8e9),
    SocketStatus(shard=0, id=4, state=SocketState.CONNECTING, role=SocketRole.SWAP,
                 token_fp="ba9876543210", instruments=2, packets=0, last_data_utc=None),
    SocketStatus(shard=1, id=None, state=ShardPhase.WAITING_FOR_TOKEN, role=SocketRole.NONE,
                 token_fp=None, instruments=2, packets=0, last_data_utc=None),
)  # fmt: skip
# ... as the status file has always written them (bin/status and the status page read these).
SOCKETS_ON_DISK = [
    {"shard": 0, "id": 3, "state": "open", "role": "live", "token_fp": "0123456789ab",
     "instruments": 2, "packets": 1200, "last_data_utc": 1.8e9},
    {"shard": 0, "id": 4, "state": "connecting", "role": "swap", "token_fp": "ba9876543210",
     "instruments": 2, "packets": 0, "last_data_utc": None},
    {"shard": 1, "id": None, "state": "waiting for token", "role": "none", "token_fp": None,
     "instruments": 2, "packets": 0, "last_data_utc": None},
]  # fmt: skip


def snapshot() -> CollectorStatus:
    return CollectorStatus(**SNAP, **ZERO)


def test_the_status_file_writes_the_states_and_roles_of_the_sockets_in_their_words(
    tmp_path: Path,
) -> None:
    reporter = StatusReporter(
        lambda: dataclasses.replace(snapshot(), state=CollectorState.RUNNING, sockets=SOCKETS),
        status_path=tmp_path / STATUS_FILE,
        every_s=60,
        **ACCOUNT,
    )
    reporter.write_once()
    status = json.loads((tmp_path / STATUS_FILE).read_text())
    assert status["sockets"] == SOCKETS_ON_DISK and status["state"] == "running"
    reporter.stop()
    assert json.loads((tmp_path / STATUS_FILE).read_text())["state"] == "stopped"


def test_the_status_file_and_the_textfile_carry_the_same_figures(tmp_path: Path) -> None:
    reporter = StatusReporter(
        snapshot, status_path=tmp_path / STATUS_FILE, every_s=60, **ACCOUNT, textfile_dir=tmp_path
    )
    reporter.write_once()
    status = json.loads((tmp_path / STATUS_FILE).read_text())
    assert status == {**SNAP, **ZERO, "sockets": [], "swap_log": []}
    prom = (tmp_path / TEXTFILE).read_text()
    for line in (
        'dhanfeed_collector_up{client_id="1000000001"} 1.0',
        'dhanfeed_collector_sockets_live{client_id="1000000001"} 2.0',
        'dhanfeed_collector_packets_total{client_id="1000000001"} 1234.0',
        'dhanfeed_collector_swaps_total{client_id="1000000001"} 3.0',
        'dhanfeed_collector_reconnects_total{client_id="1000000001"} 1.0',
        'dhanfeed_collector_duplicates_total{client_id="1000000001"} 17.0',
        'dhanfeed_collector_late_ticks_total{client_id="1000000001"} 2.0',
        'dhanfeed_collector_last_data_timestamp_seconds{client_id="1000000001"} 1.8000000005e+09',
    ):
        assert line in prom
    assert not list(tmp_path.glob(".*.tmp"))  # the temp file was renamed, not left behind


def test_stop_writes_a_final_status_that_says_down(tmp_path: Path) -> None:
    reporter = StatusReporter(
        snapshot, status_path=tmp_path / STATUS_FILE, every_s=60, **ACCOUNT, textfile_dir=tmp_path
    )
    reporter.start()
    reporter.stop()
    status = json.loads((tmp_path / STATUS_FILE).read_text())
    assert status["up"] == 0 and status["state"] == "stopped"
    assert 'dhanfeed_collector_up{client_id="1000000001"} 0.0' in (tmp_path / TEXTFILE).read_text()


def test_with_a_port_the_metrics_are_served_over_http_and_no_textfile_is_written(
    tmp_path: Path,
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    reporter = StatusReporter(
        snapshot,
        status_path=tmp_path / STATUS_FILE,
        every_s=60,
        **ACCOUNT,
        metrics_port=port,
        textfile_dir=tmp_path,
    )
    reporter.start()
    try:
        body = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        reporter.stop()
    assert 'dhanfeed_collector_packets_total{client_id="1000000001"} 1234.0' in body
    assert not (tmp_path / TEXTFILE).exists()


def test_the_previous_runs_last_data_time_comes_from_its_status_file(tmp_path: Path) -> None:
    path = tmp_path / "collector_status.json"
    assert last_data_of_previous_run(path) is None  # a first run: no gap to record
    path.write_text("{not json")
    assert last_data_of_previous_run(path) is None
    path.write_text(json.dumps({"last_data_utc": None}))
    assert last_data_of_previous_run(path) is None  # it never received data
    path.write_text(json.dumps({"last_data_utc": 1795773667.25, "state": "live"}))
    assert last_data_of_previous_run(path) == 1795773667.25


def test_the_store_backlog_and_its_failed_commits_are_metrics(tmp_path: Path) -> None:
    def failing_store() -> CollectorStatus:
        return dataclasses.replace(snapshot(), store_pending=5000, store_errors=7)

    reporter = StatusReporter(
        failing_store,
        status_path=tmp_path / STATUS_FILE,
        every_s=60,
        **ACCOUNT,
        textfile_dir=tmp_path,
    )
    reporter.write_once()
    prom = (tmp_path / TEXTFILE).read_text()
    assert 'dhanfeed_collector_store_pending{client_id="1000000001"} 5000.0' in prom
    assert 'dhanfeed_collector_store_errors_total{client_id="1000000001"} 7.0' in prom


def test_two_accounts_sharing_one_textfile_directory_each_keep_their_own_file(
    tmp_path: Path,
) -> None:
    textfiles = tmp_path / "node-exporter"
    reporters = []
    for client_id, packets in (("1000000001", 1234), ("1000000002", 99)):

        def account(client_id: str = client_id, packets: int = packets) -> CollectorStatus:
            return dataclasses.replace(snapshot(), client_id=client_id, packets=packets)

        reporters.append(
            StatusReporter(
                account,
                status_path=tmp_path / client_id / STATUS_FILE,
                every_s=60,
                client_id=client_id,
                textfile_dir=textfiles,
            )
        )
    for reporter in reporters:
        reporter.write_once()
    for reporter in reporters:
        reporter.write_once()  # again, in turn: neither rewrites the other's file
    assert sorted(p.name for p in textfiles.iterdir()) == [
        "collector-1000000001.prom",
        "collector-1000000002.prom",
    ]
    for client_id, packets in (("1000000001", 1234), ("1000000002", 99)):
        prom = (textfiles / f"collector-{client_id}.prom").read_text()
        assert f'dhanfeed_collector_packets_total{{client_id="{client_id}"}} {packets}.0' in prom
        assert prom.count("dhanfeed_collector_packets_total{") == 1  # its own series only


def test_an_older_dhanfeeds_collector_prom_of_this_account_is_removed_at_start(
    tmp_path: Path,
) -> None:
    old = tmp_path / "collector.prom"
    old.write_text('dhanfeed_collector_up{client_id="1000000002"} 1.0\n')  # another account's
    reporter = StatusReporter(
        snapshot, status_path=tmp_path / STATUS_FILE, every_s=60, **ACCOUNT, textfile_dir=tmp_path
    )
    reporter.start()
    reporter.stop()
    assert old.exists()  # not ours: left alone
    old.write_text('dhanfeed_collector_up{client_id="1000000001"} 1.0\n')
    reporter = StatusReporter(
        snapshot, status_path=tmp_path / STATUS_FILE, every_s=60, **ACCOUNT, textfile_dir=tmp_path
    )
    reporter.start()
    reporter.stop()
    assert not old.exists() and (tmp_path / TEXTFILE).exists()
