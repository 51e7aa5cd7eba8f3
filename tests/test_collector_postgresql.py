"""The collector on PostgreSQL, end to end (real `bin/collector`, `bin/dhan_sim` and server):
two accounts into one database, a server that goes away under a running collector, and a
collector started while the server is down."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from support.pg_cluster import Cluster
from support.sim import Sim
from test_collector_e2e import (
    INSTRUMENTS,
    SIM_ARGS,
    Collector,
    assert_nothing_lost,
    collector_config,
)

OUTAGE_S = 20


@pytest.fixture
def collectors() -> Iterator[list[Collector]]:
    started: list[Collector] = []
    yield started
    for c in started:
        c.kill()


def start(collectors: list[Collector], workdir: Path, sim: Sim, database: str) -> Collector:
    (workdir / "state").mkdir(parents=True, exist_ok=True)
    c = Collector(workdir, collector_config(workdir, sim, database), database=database).start()
    collectors.append(c)
    return c


def alerts(workdir: Path) -> list[dict]:
    path = workdir / "logs" / "token_alerts.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [a for a in map(json.loads, lines) if a["condition"].startswith("collector-store-")]


def wait_for_an_alert(c: Collector, workdir: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not alerts(workdir):
        assert c.proc is not None and c.proc.poll() is None, c.output()
        assert time.monotonic() < deadline, "no database alert"
        time.sleep(0.2)


def test_two_accounts_record_into_one_database_completely_and_apart(
    start_sim: Callable[..., Sim], tmp_path: Path, pg_url: str, collectors: list[Collector]
) -> None:
    runs = []
    for n, client_id in enumerate(("1000000011", "1000000022")):
        workdir = tmp_path / f"acct{n}"
        (workdir / "state").mkdir(parents=True)
        sim = start_sim(*SIM_ARGS, "--client-id", client_id, "--seed", str(n + 1),
                        "--issue-token", str(workdir / "state" / "token.json"))  # fmt: skip
        runs.append((sim, start(collectors, workdir, sim, pg_url), client_id))
    for _, c, _ in runs:
        c.wait_live(min_packets=100)
    for _, c, _ in runs:
        assert c.terminate() == 0
    for sim, c, client_id in runs:
        c.client_id = client_id
        assert_nothing_lost(sim, c)  # each account's rows hold its simulator's market
    with psycopg.connect(pg_url) as conn:
        per_client = conn.execute(
            "SELECT client_id, count(DISTINCT (segment, security_id)) FROM candles"
            " GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert per_client == [("1000000011", len(INSTRUMENTS)), ("1000000022", len(INSTRUMENTS))]


@pytest.mark.slow
def test_a_database_stopped_under_a_running_collector_loses_nothing_and_alerts_once_then_clears(
    start_sim: Callable[..., Sim],
    tmp_path: Path,
    private_pg_cluster: Cluster,
    collectors: list[Collector],
) -> None:
    url = private_pg_cluster.new_database()
    workdir = tmp_path
    (workdir / "state").mkdir()
    sim = start_sim(*SIM_ARGS, "--issue-token", str(workdir / "state" / "token.json"))
    c = start(collectors, workdir, sim, url)
    c.wait_live(min_packets=100)
    private_pg_cluster.stop()
    down = c.wait_for(
        "the backlog to grow",
        lambda s: s.get("store_failing_since") is not None and s.get("store_pending", 0) > 200,
        timeout=OUTAGE_S,
    )
    time.sleep(max(0.0, OUTAGE_S - (time.time() - down["store_failing_since"])))
    assert [a["severity"] for a in alerts(workdir)] == ["critical"]  # one alert while down
    held = c.status()
    backlog = held["store_pending"]
    private_pg_cluster.start()
    # Drained: the rows held while it was down are committed. (Not "store_pending == 0": ticks
    # keep arriving, so a snapshot sees none pending only if it falls between a commit and
    # the next batch, which took 46 s once.)
    c.wait_for(
        "the backlog to drain",
        lambda s: (
            s.get("store_failing_since") is None
            and s.get("ticks_stored", 0) >= held["ticks_stored"] + backlog
        ),
        timeout=60,
    )
    assert [a["severity"] for a in alerts(workdir)] == ["critical", "recovery"]
    assert c.terminate() == 0
    assert_nothing_lost(sim, c)
    status = c.status()
    assert status["dropped"] == 0 and status["ticks_dropped"] == 0
    assert status["ticks_stored"] >= backlog  # the backlog was written, not shed


def start_while_the_database_is_down(
    start_sim: Callable[..., Sim], workdir: Path, cluster: Cluster, collectors: list[Collector]
) -> tuple[Sim, Collector]:
    """A collector started against a stopped server, once it has alerted."""
    url = cluster.new_database()
    cluster.stop()
    (workdir / "state").mkdir()
    sim = start_sim(*SIM_ARGS, "--issue-token", str(workdir / "state" / "token.json"))
    c = start(collectors, workdir, sim, url)
    wait_for_an_alert(c, workdir)
    return sim, c


def test_a_collector_started_while_the_database_is_down_waits_with_one_alert(
    start_sim: Callable[..., Sim],
    tmp_path: Path,
    private_pg_cluster: Cluster,
    collectors: list[Collector],
) -> None:
    workdir = tmp_path
    sim, c = start_while_the_database_is_down(start_sim, workdir, private_pg_cluster, collectors)
    time.sleep(3)  # several retries later: still one alert, no socket opened, still running
    assert [a["severity"] for a in alerts(workdir)] == ["critical"]
    assert sim.admin("stats")["connections_total"] == 0
    assert c.proc is not None and c.proc.poll() is None
    private_pg_cluster.start()
    c.wait_live(min_packets=50)
    assert [a["severity"] for a in alerts(workdir)] == ["critical", "recovery"]
    assert c.terminate() == 0
    assert_nothing_lost(sim, c)


def test_a_collector_waiting_for_the_database_stops_at_once_on_sigterm(
    start_sim: Callable[..., Sim],
    tmp_path: Path,
    private_pg_cluster: Cluster,
    collectors: list[Collector],
) -> None:
    _, c = start_while_the_database_is_down(start_sim, tmp_path, private_pg_cluster, collectors)
    assert c.terminate(timeout=10) == 0
