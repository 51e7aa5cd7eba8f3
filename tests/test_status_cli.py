"""`bin/status`: healthy (0), degraded (1), a person must act (3), with and without a running
collector, as text and as `--json`. Real files throughout; the collector cases run the real
`bin/collector` against the real simulator."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import sqlite3
import subprocess
import threading
import zoneinfo
from collections.abc import Callable
from pathlib import Path

import pytest

from dhanfeed.backfill_metrics import write_backfill_metrics
from dhanfeed.candles import Bar
from dhanfeed.cli import status
from dhanfeed.config_load import load_config
from dhanfeed.credentials import load_credentials
from dhanfeed.health_report import SocketFacts
from dhanfeed.renew_metrics import write_renew_metrics
from dhanfeed.renew_state import RenewState, renew_state_path
from dhanfeed.sim.config_file import ALL_DAY, write_config
from dhanfeed.store import Gap, SqliteStore
from support.frozen_clock import FrozenClock
from support.secret_scan import PLANTED_PIN, PLANTED_TOTP_SECRET
from support.sim import BIN
from support.token_files import CLIENT_ID, make_token, now, write_token_file
from test_collector_e2e import collectors, start_collector, start_sim_with_token  # noqa: F401

IST = zoneinfo.ZoneInfo("Asia/Kolkata")

REQUIRED_KEYS = {
    "schema", "health", "exit_code", "checked_at", "timezone", "client_id", "in_session",
    "token", "renewer", "collector", "store", "backfill", "findings",
}  # fmt: skip


def status_config(root: Path, *, in_session: bool, **collector: object) -> Path:
    """Every day is a session day; outside the session means today and tomorrow are holidays."""
    today = now().astimezone(IST).date()
    holidays = [] if in_session else [today.isoformat(), (today + dt.timedelta(days=1)).isoformat()]
    (root / "state").mkdir(exist_ok=True, mode=0o700)
    return write_config(
        root,
        session={**ALL_DAY, "holidays": holidays},
        collector={"instruments": ["NSE_EQ:1333"], "database": "data/candles.sqlite", **collector},
    )


def a_token(root: Path, *, hours_left: float = 20) -> str:
    token = make_token(exp=now() + dt.timedelta(hours=hours_left))
    write_token_file(root / "state" / "token.json", token)
    return token.access_token


def renewer_ran(state: Path, exit_code: int = 0, *, hours_ago: float = 0.2) -> None:
    write_renew_metrics(
        state,
        client_id=CLIENT_ID,
        now=now() - dt.timedelta(hours=hours_ago),
        exit_code=exit_code,
        expires_at=None,
    )


def run_status(config: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = status.main(["--config", str(config), *extra])
    out = capsys.readouterr()
    return code, out.out + out.err


def run_json(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    code, out = run_status(config, capsys, "--json")
    return code, json.loads(out)


@pytest.fixture
def healthy_outside_the_session(tmp_path: Path) -> Path:
    return healthy(tmp_path)


# -- without a collector -----------------------------------------------------------------------


def healthy(root: Path, *, in_session: bool = False) -> Path:
    """A good token, a renewer that ran a moment ago, no collector: the config."""
    config = status_config(root, in_session=in_session)
    a_token(root)
    renewer_ran(root / "state")
    return config


def all_is_well(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return healthy(root)


def a_failed_renewal_run(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = healthy(root)
    renewer_ran(root / "state", exit_code=1)
    return config


def a_renewer_that_stopped_running(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = healthy(root)
    renewer_ran(root / "state", hours_ago=5)
    return config


def a_crashed_collector(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = healthy(root)
    gone = subprocess.Popen(["true"])  # a pid that has surely exited
    gone.wait()
    (root / "state" / "collector_status.json").write_text(
        json.dumps({"pid": gone.pid, "up": 1, "state": "running", "sockets": []})
    )
    return config


def no_collector_in_the_session(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return healthy(root, in_session=True)


def an_expired_token(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = status_config(root, in_session=False)
    a_token(root, hours_left=-1)
    renewer_ran(root / "state", exit_code=3)
    return config


def an_expired_token_with_pin_and_totp(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DHAN_PIN", PLANTED_PIN)
    monkeypatch.setenv("DHAN_TOTP_SECRET", PLANTED_TOTP_SECRET)
    config = status_config(root, in_session=False)
    a_token(root, hours_left=-1)
    renewer_ran(root / "state")
    return config


def a_token_the_collector_reports_refused(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = healthy(root)
    state = root / "state"
    fp = json.loads((state / "token.json").read_text())["fingerprint"]
    refused = {"fingerprint": fp, "code": 807, "at": now().isoformat()}
    (state / "collector_status.json").write_text(
        json.dumps({"up": 0, "state": "stopped", "token_refused": refused})
    )
    return config


def no_token_file(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return status_config(root, in_session=False)


# What bin/status prints of each state (regular expressions; `{fp}`: the token's fingerprint).
STATES = [
    pytest.param(
        all_is_well,
        0,
        [
            r"\A[^\n]*healthy",
            "collector  never started",
            "backfill   not run",
            "reconcile  not run",
        ],
        id="all is well outside the session with no collector",
    ),
    pytest.param(
        a_failed_renewal_run,
        1,
        ["degraded: renew_token's last run exited 1"],
        id="a failed renewal run is degraded",
    ),
    pytest.param(
        a_renewer_that_stopped_running,
        1,
        ["renew_token has not run since"],
        id="a renewer that stopped running is degraded",
    ),
    pytest.param(
        a_crashed_collector,
        1,
        ["collector  crashed"],
        id="a crashed collector is degraded outside the session",
    ),
    pytest.param(
        no_collector_in_the_session,
        3,
        [
            re.escape(
                "ACTION NEEDED: the collector is not running (never started) during the session"
            )
        ],
        id="no collector during the session needs a person",
    ),
    pytest.param(
        # In the screen's own time format, with the command to run as it is typed.
        an_expired_token,
        3,
        [
            r"ACTION NEEDED: token \w+ expired at \d{4}-\d\d-\d\d \d\d:\d\d IST; log in at Dhan"
            r" and run bin/renew_token --set-token"
        ],
        id="an expired token without pin and totp needs a person",
    ),
    pytest.param(
        an_expired_token_with_pin_and_totp,
        1,
        [re.escape("will regenerate it with PIN+TOTP")],
        id="an expired token with pin and totp configured is only degraded",
    ),
    pytest.param(
        a_token_the_collector_reports_refused,
        3,
        [
            r"ACTION NEEDED: token {fp} was refused by Dhan \(the collector's feed was refused"
            r" with code 807 at"
        ],
        id="a token the collector reports refused needs a person",
    ),
    pytest.param(
        no_token_file,
        3,
        [r"\A[^\n]*\ntoken      none usable:"],  # the second line
        id="no token file at all needs a person",
    ),
]


@pytest.mark.parametrize(("arrange", "exit_code", "says"), STATES)
def test_bin_status_says_what_the_state_needs_and_exits_with_its_level(
    arrange: Callable[[Path, pytest.MonkeyPatch], Path],
    exit_code: int,
    says: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = arrange(tmp_path, monkeypatch)
    token_file = tmp_path / "state" / "token.json"
    fp = json.loads(token_file.read_text())["fingerprint"] if token_file.exists() else "-"
    code, out = run_status(config, capsys)
    assert code == exit_code, out
    for pattern in says:
        assert re.search(pattern.replace("{fp}", fp), out), (pattern, out)
    assert PLANTED_PIN not in out and PLANTED_TOTP_SECRET not in out


def test_json_follows_the_schema_and_holds_no_token(
    healthy_outside_the_session: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = (healthy_outside_the_session.parent / "state" / "token.json").read_text()
    secret = json.loads(token)["access_token"]
    code, out = run_status(healthy_outside_the_session, capsys, "--json")
    body = json.loads(out)
    assert code == body["exit_code"] == 0
    assert set(body) == REQUIRED_KEYS
    assert body["health"] == "healthy" and body["findings"] == []
    assert body["token"]["fingerprint"] == json.loads(token)["fingerprint"]
    assert body["token"]["expires_at"].endswith("+05:30")
    assert body["collector"]["state"] == "never started"
    assert body["backfill"]["last_run"] is None
    assert secret not in out and secret.split(".")[1] not in out


def test_json_of_a_degraded_state_lists_the_finding(
    healthy_outside_the_session: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    renewer_ran(healthy_outside_the_session.parent / "state", exit_code=1)
    code, body = run_json(healthy_outside_the_session, capsys)
    assert code == body["exit_code"] == 1
    assert body["health"] == "degraded"
    assert body["findings"] == [{"level": "degraded", "message": "renew_token's last run exited 1"}]


def test_another_accounts_renewal_and_backfill_in_the_same_directory_are_not_ours(
    healthy_outside_the_session: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = healthy_outside_the_session.parent / "state"
    other = {"client_id": "1000000002", "now": now(), "exit_code": 1}
    write_renew_metrics(state, **other, expires_at=None)
    write_backfill_metrics(state, **other, result=None)
    code, body = run_json(healthy_outside_the_session, capsys)
    assert code == 0 and body["findings"] == []
    assert body["renewer"]["last_exit_code"] == 0 and body["backfill"]["last_run"] is None
    write_backfill_metrics(state, client_id=CLIENT_ID, now=now(), exit_code=2, result=None)
    code, body = run_json(healthy_outside_the_session, capsys)
    assert body["backfill"]["last_exit_code"] == 2  # its own, beside the other's


def test_an_older_renew_token_prom_of_this_account_is_read_until_the_next_run(
    healthy_outside_the_session: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = healthy_outside_the_session.parent / "state"
    (state / f"renew_token-{CLIENT_ID}.prom").rename(state / "renew_token.prom")
    code, body = run_json(healthy_outside_the_session, capsys)
    assert code == 0 and body["renewer"]["last_exit_code"] == 0
    (state / "renew_token.prom").write_text(
        'dhanfeed_renew_last_exit_code{client_id="1000000002"} 1.0\n'
    )  # another account's: not ours to report
    code, body = run_json(healthy_outside_the_session, capsys)
    assert body["renewer"]["last_exit_code"] is None


def test_the_store_counts_todays_candles(
    healthy_outside_the_session: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start = int(now().timestamp()) // 60 * 60
    bars = [
        Bar("NSE_EQ", 1333, 60, start - 60 * i, 10.0, 11.0, 9.0, 10.5, 100, 3, None)
        for i in range(3)
    ]
    with SqliteStore(healthy_outside_the_session.parent / "data" / "candles.sqlite") as store:
        store.write(bars, [], [])
    code, body = run_json(healthy_outside_the_session, capsys)
    today = now().astimezone(IST).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    assert body["store"]["candles_today"] == sum(1 for b in bars if b.start_utc >= today)
    assert body["store"]["size_bytes"] > 0


def test_a_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[dhan]\nclient_id = 'x'\n[web]\nport = 70000\n")
    proc = subprocess.run(
        [str(BIN / "status"), "--config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("status: bad config") and "Traceback" not in proc.stderr
    assert "at 'web.port': expected 0..65535" in proc.stderr


# -- with a running collector ------------------------------------------------------------------


@pytest.fixture
def running(start_sim, tmp_path: Path, collectors) -> Path:  # noqa: F811
    (tmp_path / "state").mkdir(exist_ok=True)
    sim = start_sim_with_token(start_sim, tmp_path)
    c = start_collector(collectors, tmp_path, sim)
    c.wait_live(min_packets=20)
    renewer_ran(tmp_path / "state")
    return c.config


def test_a_live_collector_with_a_good_token_is_healthy(
    running: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_status(running, capsys)
    assert code == 0, out
    assert "collector  running, pid" in out and "msg/s" in out
    code, body = run_json(running, capsys)
    assert code == 0, body["findings"]
    c = body["collector"]
    assert c["state"] == "running" and c["sockets_live"] == 1
    assert c["messages_per_s"] > 0
    assert c["sockets"][0]["state"] == "open" and c["sockets"][0]["instruments"] == 4


def test_a_live_collector_with_a_failing_renewer_is_degraded(
    running: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    renewer_ran(running.parent / "state", exit_code=1)
    code, body = run_json(running, capsys)
    assert code == 1
    assert body["collector"]["state"] == "running"
    assert [f["message"] for f in body["findings"]] == ["renew_token's last run exited 1"]


def test_a_live_collector_on_an_expired_token_needs_a_person(
    running: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_token(running.parent, hours_left=-0.5)  # what an expired file looks like to a reader
    code, body = run_json(running, capsys)
    assert code == 3
    assert body["collector"]["state"] == "running"
    assert body["findings"][0]["level"] == "action needed"
    assert "expired at" in body["findings"][0]["message"]


def test_bin_status_runs_as_a_program_beside_a_live_collector(running: Path) -> None:
    proc = subprocess.run(
        [str(BIN / "status"), "--config", str(running)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith(f"dhanfeed, client {CLIENT_ID}")


def test_the_readme_documents_every_key_of_the_json(
    healthy_outside_the_session: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    schema = readme.split("### `bin/status --json`", 1)[1].split("\n## ", 1)[0]
    _, body = run_json(healthy_outside_the_session, capsys)
    keys = set(body) | {f"{k}" for section in body.values() if isinstance(section, dict)
                        for k in section}  # fmt: skip
    keys |= {k for f in dataclasses.fields(SocketFacts) for k in [f.name]}
    assert sorted(k for k in keys if f"`{k}`" not in schema and f'"{k}"' not in schema) == []


def test_a_token_renew_token_found_refused_needs_a_person(
    healthy_outside_the_session: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token_file = healthy_outside_the_session.parent / "state" / "token.json"
    fp = json.loads(token_file.read_text())["fingerprint"]
    RenewState(renew_state_path(token_file)).record_refused(fp, now(), "profile check: DH-901")
    code, body = run_json(healthy_outside_the_session, capsys)
    assert code == 3
    assert body["token"]["refused"] is True
    assert body["token"]["refused_detail"].startswith("profile check: DH-901 at ")
    assert body["findings"][0]["message"].startswith(f"token {fp} was refused by Dhan")


def test_pin_and_totp_that_dhan_called_wrong_cannot_save_an_expired_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DHAN_PIN", PLANTED_PIN)
    monkeypatch.setenv("DHAN_TOTP_SECRET", PLANTED_TOTP_SECRET)
    config = status_config(tmp_path, in_session=False)
    a_token(tmp_path, hours_left=-1)
    renewer_ran(tmp_path / "state", exit_code=3)
    wrong = load_credentials(load_config(config).totp)
    assert wrong is not None
    state = RenewState(renew_state_path(tmp_path / "state" / "token.json"))
    state.record_credentials_refused(wrong.fingerprint, now(), "wrong PIN")
    code, body = run_json(config, capsys)
    assert code == 3
    assert body["token"]["can_regenerate"] is False


def a_live_collector_status(state: Path) -> None:
    """A status file as a running collector leaves it: this very process stands in for it."""
    t = now().timestamp()
    status = {"pid": os.getpid(), "up": 1, "state": "running", "started_utc": t - 600,
              "last_data_utc": t, "sockets_live": 1, "packets": 10,
              "sockets": [{"shard": 0, "state": "open", "role": "live", "instruments": 1,
                           "last_data_utc": t}]}  # fmt: skip
    (state / "collector_status.json").write_text(json.dumps(status))


class SteppingClock(FrozenClock):
    """Its `wait` moves the clock on by the whole timeout at once, without sleeping."""

    def __init__(self) -> None:
        super().__init__()
        self.waited = 0.0

    def wait(self, event: threading.Event, timeout: float) -> bool:
        self.advance(timeout)
        self.waited += timeout
        return event.is_set()


def test_waiting_for_the_collectors_next_status_is_bounded_on_the_clock_status_is_given(
    tmp_path: Path,
) -> None:
    config = status_config(tmp_path, in_session=False, status_every="2s")
    a_token(tmp_path)
    renewer_ran(tmp_path / "state")
    a_live_collector_status(tmp_path / "state")  # and no new one ever comes
    clock = SteppingClock()
    report = status.observe(load_config(config), clock)
    assert report.collector.state == "running"
    assert clock.waited == pytest.approx(status.RATE_WAIT_MAX_S, abs=0.06)  # 1.5 x 2 s + 0.2


def test_a_session_gap_backfill_left_unhealed_for_half_an_hour_is_degraded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ist = now().astimezone(IST)
    if ist.hour == 0 and ist.minute < 50:
        pytest.skip("too early in the IST day for a gap 45 minutes old to fall on it")
    config = status_config(tmp_path, in_session=True)
    a_token(tmp_path)
    renewer_ran(tmp_path / "state")
    a_live_collector_status(tmp_path / "state")
    t = now().timestamp()
    database = tmp_path / "data" / "candles.sqlite"
    old, fresh = (t - 45 * 60, t - 44 * 60), (t - 5 * 60, t - 4 * 60)
    with SqliteStore(database) as store:
        store.write(
            [], [], [Gap("NSE_EQ", 1333, *old, "test"), Gap("NSE_EQ", 1333, *fresh, "test")]
        )
    (tmp_path / "state" / f"backfill-{CLIENT_ID}.prom").write_text(
        f"dhanfeed_backfill_last_run_timestamp_seconds {t - 60}\ndhanfeed_backfill_last_exit_code 0\n"
    )
    code, body = run_json(config, capsys)
    assert code == 1, body["findings"]
    assert body["backfill"]["unhealed_gaps"] == 1  # the fresh gap waits for the next run
    assert body["findings"] == [{"level": "degraded", "message": "1 gap(s) not healed yet"}]
    with sqlite3.connect(database) as db:
        db.execute("UPDATE gaps SET healed_utc = ?", (t,))
    code, body = run_json(config, capsys)
    assert code == 0 and body["backfill"]["unhealed_gaps"] == 0


def test_a_reader_that_stops_early_keeps_its_exit_code_and_gets_no_traceback(
    tmp_path: Path,
) -> None:
    config = status_config(tmp_path, in_session=True)  # no collector in the session: exit 3
    a_token(tmp_path)
    proc = subprocess.run(  # `true` has exited before status writes: like `| head` does
        ["bash", "-o", "pipefail", "-c", f"'{BIN / 'status'}' --config '{config}' | true"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (proc.returncode, proc.stderr) == (3, "")
