"""bin/dhan_sim as a program: options, the start-up line, exit codes, signals, token file."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import stat
import subprocess
import time

import pytest
import requests

from dhanfeed.cli import dhan_sim
from support.sim import BIN, Sim


def payload_of(token: str) -> dict:
    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def run(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "dhan_sim"), *args], capture_output=True, text=True, timeout=timeout
    )


def spawn(*args: str) -> tuple[subprocess.Popen[str], dict]:
    proc = subprocess.Popen(
        [str(BIN / "dhan_sim"), "--rest-port", "0", "--feed-port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    assert line, (
        f"no start-up line (exit {proc.wait()}): {proc.stderr.read() if proc.stderr else ''}"
    )
    return proc, json.loads(line)


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str, str]:
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=15)
    return proc.returncode, out, err


@pytest.mark.parametrize(
    "args",
    [
        ["--bogus"],
        ["--ticks-per-second", "0"],
        ["--ticks-per-second", "fast"],
        ["--instruments", "FOO:1"],
        ["--instruments", "NSE_EQ:abc"],
        ["--client-id", "abc"],
        ["--token-ttl", "forever"],
        ["--pin", "1234"],
        ["--pin", "1234", "--totp-secret", "not base32!"],
        ["--rest-port", "70000"],
        ["--renew-field", "jwt"],
        ["--renew-kills-sockets", "--renew-keeps-sockets"],
        ["--batch", "0"],
        ["--batch", "101"],
        ["--multi-mode", "first"],
        ["--trades-per-packet", "0"],
    ],
)
def test_bad_options_give_one_line_and_exit_2(args: list[str], capsys) -> None:  # noqa: ANN001
    assert dhan_sim.main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dhan_sim: ")


def test_bad_option_through_bin_exits_2_with_one_line() -> None:
    result = run("--ticks-per-second", "-1")
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("which", ["--rest-port", "--feed-port"])
def test_port_in_use_gives_one_line_and_exit_2(which: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        other = "--feed-port" if which == "--rest-port" else "--rest-port"
        result = run(which, port, other, "0")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "address already in use" in lines[0]


def test_startup_line_is_the_only_stdout_and_sigterm_exits_0(tmp_path) -> None:  # noqa: ANN001
    proc, info = spawn()
    assert set(info) == {"api_base", "auth_base", "feed_url", "admin_url", "client_id"}
    assert info["api_base"].startswith("http://127.0.0.1:")
    assert info["feed_url"].startswith("ws://127.0.0.1:")
    assert info["admin_url"] == info["api_base"] + "/__sim"
    assert info["client_id"] == "1000000001"
    stats = requests.get(info["admin_url"] + "/stats", timeout=10).json()
    assert len(stats["instruments"]) == 12  # the default dozen
    segments = {key.split(":")[0] for key in stats["instruments"]}
    assert segments == {"NSE_EQ", "NSE_FNO", "IDX_I"}
    code, out, err = stop(proc)
    assert code == 0
    assert out == ""
    for line in err.strip().splitlines():
        json.loads(line)  # the log is JSON lines on stderr


def test_sigint_exits_0() -> None:
    proc, _info = spawn()
    code, _out, _err = stop(proc, signal.SIGINT)
    assert code == 0


def test_issue_token_option_writes_a_token_file_the_sim_accepts(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "state" / "token.json"
    proc, info = spawn(
        "--issue-token", str(path), "--client-id", "1100000042", "--token-ttl", "90s"
    )
    try:
        record = json.loads(path.read_text())
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert record["client_id"] == "1100000042" == info["client_id"]
        assert record["source"] == "manual"
        claims = payload_of(record["access_token"])
        assert claims["exp"] - claims["iat"] == 90
        assert claims["dhanClientId"] == "1100000042"
        stats = requests.get(info["admin_url"] + "/stats", timeout=10).json()
        assert stats["current_token_fp"] == record["fingerprint"]
        resp = requests.get(
            info["api_base"] + "/v2/profile",
            headers={"access-token": record["access_token"]},
            timeout=10,
        )
        assert resp.status_code == 200
    finally:
        code, _out, err = stop(proc)
    assert code == 0
    assert record["access_token"] not in err  # the log never carries the token


def test_policy_options_show_in_stats(start_sim) -> None:  # noqa: ANN001
    sim: Sim = start_sim(
        "--renew-field", "accessToken", "--renew-kills-sockets", "--multi-mode", "each"
    )
    policy = sim.admin("stats")["policy"]
    assert policy == {
        "renew_kills_sockets": True,
        "renew_field": "accessToken",
        "token_ttl_s": 86400,
        "multi_mode": "each",
    }
    token = sim.admin("issue-token", {})["access_token"]
    resp = requests.get(
        sim.api_base + "/v2/RenewToken",
        headers={"access-token": token, "dhanClientId": sim.client_id},
        timeout=10,
    )
    assert "accessToken" in resp.json()


def first_ticks(sim: Sim, key: str, n: int) -> list:
    deadline = time.monotonic() + 10
    while True:
        ticks = sim.admin(f"sent?instrument={key}")["ticks"]
        if len(ticks) >= n:
            return [(cum, ltp) for cum, _ltt, ltp, _ids in ticks[:n]]
        assert time.monotonic() < deadline, "the simulator did not tick"
        time.sleep(0.05)


def test_same_seed_repeats_the_market_and_another_seed_does_not(start_sim) -> None:  # noqa: ANN001
    opts = ("--instruments", "NSE_EQ:1333,NSE_FNO:1-3", "--ticks-per-second", "50")
    a = start_sim("--seed", "7", *opts)
    b = start_sim("--seed", "7", *opts)
    c = start_sim("--seed", "8", *opts)
    assert set(a.admin("stats")["instruments"]) == {
        "NSE_EQ:1333", "NSE_FNO:1", "NSE_FNO:2", "NSE_FNO:3",
    }  # fmt: skip
    ta, tb, tc = (first_ticks(s, "NSE_FNO:2", 20) for s in (a, b, c))
    assert ta == tb
    assert ta != tc


def test_quiet_logs_nothing_at_info() -> None:
    proc, info = spawn("--quiet")
    requests.post(info["admin_url"] + "/issue-token", json={}, timeout=10)
    code, _out, err = stop(proc)
    assert code == 0
    assert '"INFO"' not in err


def test_the_launcher_gives_up_on_a_simulator_that_never_prints_its_start_line(tmp_path):
    from dhanfeed.sim.process import SimProcess

    silent = tmp_path / "silent_sim"
    silent.write_text("#!/bin/sh\nexec sleep 60\n")
    silent.chmod(0o755)
    with pytest.raises(RuntimeError, match="did not start"):
        SimProcess(command=[str(silent)], start_timeout=0.5)


def test_help_lists_every_admin_route_with_an_example_that_works(sim: Sim) -> None:
    text = run("--help").stdout
    routes = {line.split()[1] for line in text.splitlines() if line.startswith("  POST /__sim/")}
    routes |= {line.split()[1] for line in text.splitlines() if line.startswith("  GET  /__sim/")}
    assert routes == {
        "/__sim/issue-token", "/__sim/fault", "/__sim/clear-faults", "/__sim/policy",
        "/__sim/stats", "/__sim/sent?instrument=SEG:ID",
    }  # fmt: skip
    examples = [line.strip() for line in text.splitlines() if line.strip().startswith("curl ")]
    tried = set()
    for example in examples:  # each one, as curl would send it, against a running simulator
        post = " -X POST " in example
        path = example.split('"$ADMIN/')[1].split('"')[0]
        body = example.split(" -d '")[1].rstrip("'") if post else None
        url = f"{sim.admin_url}/{path}"
        resp = requests.post(url, data=body, timeout=10) if post else requests.get(url, timeout=10)
        assert resp.status_code == 200, (example, resp.text)
        tried.add("/__sim/" + path.split("?")[0])
    assert {r.split("?")[0] for r in routes} == tried
