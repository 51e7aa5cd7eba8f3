"""End to end: the real `bin/renew_token`, run like cron, against the real `bin/dhan_sim`.

Time is scaled down 7200:1: a token lives 12 s ("24 h"), renew_before is 3 s ("6 h"),
must_renew_before 1 s ("2 h"), and the renewer runs every 0.5 s ("hourly") for 48 "hours".
The token must never expire, and a renewal may happen only in a run that found it due.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from dhanfeed.token_store import TokenStore
from support.renew import alert_lines, write_config
from support.secret_scan import remember_secret
from support.sim import BIN

TTL_S = 12
RENEW_BEFORE_S = 3
PERIOD_S = 0.5
CYCLES = 48


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_hourly_runs_keep_the_token_alive_and_renew_only_when_due(tmp_path, start_sim):
    sim = start_sim("--token-ttl", f"{TTL_S}s")
    config = write_config(
        tmp_path, api_base=sim.api_base, timeout="2s",
        token=f'renew_before = "{RENEW_BEFORE_S}s"\nmust_renew_before = "1s"\nrun_timeout = "10s"',
        session="days = []",  # no trading session: only the lifetime rule applies
    )  # fmt: skip
    token_file = tmp_path / "state" / "token.json"
    first = sim.admin("issue-token", {"path": str(token_file)})
    remember_secret(first["access_token"])
    store = TokenStore(token_file)
    start = time.time()
    runs = []
    for i in range(CYCLES):
        # cron's schedule: one run per period, whatever the previous one took
        time.sleep(max(0.0, start + i * PERIOD_S - time.time()))
        before = store.read()
        t_before = time.time()
        proc = subprocess.run(
            [str(BIN / "renew_token"), "--config", str(config), "--json"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        t_after = time.time()
        after = store.read()
        remember_secret(after.token.access_token)
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
        runs.append(result["status"])
        left_before = before.token.expires_at.timestamp()
        # never expired: neither when the run started nor when it ended
        assert left_before > t_before, f"run {i}: the token had expired before the run"
        assert after.token.expires_at.timestamp() > t_after, f"run {i}: expired after the run"
        # the simulator agrees that the file holds the one live token
        assert sim.admin("stats")["current_token_fp"] == after.fingerprint
        if result["status"] == "renewed":
            assert after.fingerprint != before.fingerprint
            # due when the run read it, at the latest at t_after
            assert left_before - t_after < RENEW_BEFORE_S, f"run {i} renewed a token not due"
        else:
            assert result["status"] == "ok" and result["action"] == "not_due"
            assert after.fingerprint == before.fingerprint
            # not due when the run read it, at the earliest at t_before
            assert left_before - t_before > RENEW_BEFORE_S, f"run {i} skipped a due token"
    renewals = runs.count("renewed")
    calls = sim.admin("stats")["rest_calls"].get("RenewToken", 0)
    assert calls == renewals
    # 48 "hours", a renewal 18 "h" into each 24 "h" life: at least two renewals, and never
    # more than one per (TTL - renew_before) seconds
    elapsed = time.time() - start
    assert renewals >= 2
    assert renewals <= elapsed / (TTL_S - RENEW_BEFORE_S) + 1
    assert alert_lines(tmp_path) == []
    log = (tmp_path / "logs" / "renew_token.log").read_text()
    assert "decision: not_due: not due: expires at" in log
    assert "token renewed with RenewToken: " in log
