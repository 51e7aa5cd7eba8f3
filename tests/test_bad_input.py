"""Every bad input of issue 10 against every program that reads the config: the documented
exit code, one line on stderr, never a traceback. The programs run as subprocesses (bin/*).

A row gives, per program, the exit code (README "Exit codes"), or WAITS for the collector
when the right answer is to keep running and wait for a usable token (it is then stopped with
SIGTERM and must exit 0). A config problem names its key. renew_token's KEEPS rows are the
problems it must renew through (a section it does not use, a log directory it cannot write):
it says so in its first line and carries on.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.token_files import make_jwt, make_token, write_token_file

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = ("renew_token", "collector", "export_candles", "status")
WAITS = "waits"  # the collector keeps running (and alerts once) instead of exiting
KEEPS = "keeps"  # renew_token warns on its first line, then does its run (exit 0 here)
TRACEBACK = "Traceback"
HOURS_20 = dt.timedelta(hours=20)  # the token's time left: valid and not due

CONFIG = """[dhan]
client_id = "1000000001"
api_base = "http://127.0.0.1:9"
auth_base = "http://127.0.0.1:9"
feed_url = "ws://127.0.0.1:9"
timeout = "1s"

[token]
file = "{token_file}"
{token}

[logging]
dir = "{log_dir}"

[metrics]
port = {metrics_port}

[collector]
instruments = ["{instrument}"]
intervals = {intervals}

[session]
days = []  # never in session: bin/status's verdict must not depend on the hour the suite runs
"""


class Install:
    """A config plus a valid token file (20 h left: not due) in `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.values = {
            "token": "",
            "token_file": "state/token.json",
            "log_dir": "logs",
            "metrics_port": 0,
            "instrument": "NSE_EQ:1333",
            "intervals": '["1m"]',
        }
        self.token_file = root / "state" / "token.json"
        write_token_file(self.token_file, make_token(exp=dt.datetime.now(dt.UTC) + HOURS_20))
        self.held: list[socket.socket] = []

    @property
    def config(self) -> Path:
        path = self.root / "config.toml"
        path.write_text(CONFIG.format(**self.values))
        return path

    def busy_port(self) -> int:
        sock = socket.socket()
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        self.held.append(sock)
        return sock.getsockname()[1]


def _set(key: str, value: object) -> Callable[[Install], None]:
    def spoil(install: Install) -> None:
        install.values[key] = value

    return spoil


def _file_in_the_way(key: str, sub: str) -> Callable[[Install], None]:
    def spoil(install: Install) -> None:
        (install.root / "afile").write_text("a file, not a directory")
        install.values[key] = f"afile{sub}"

    return spoil


def _metrics_port_in_use(install: Install) -> None:
    install.values["metrics_port"] = install.busy_port()


def _symlink_loop(install: Install) -> None:
    install.token_file.unlink()
    os.symlink("token.json", install.token_file)


def _exp_beyond_9999(install: Install) -> None:
    odd = make_jwt(exp=dt.datetime.now(dt.UTC) + HOURS_20, exp_claim=10**12)  # year 33658
    record = {"client_id": "1000000001", "access_token": odd, "expires_at": "+33658-01-01"}
    install.token_file.write_text(json.dumps(record))
    os.chmod(install.token_file, 0o600)


# case: (spoil, {program: expected}, what the first line must contain)
CASES: dict[str, tuple[Callable[[Install], None], dict[str, object], str]] = {
    "duration 99999999999d": (
        _set("token", 'renew_before = "99999999999d"'),
        dict.fromkeys(PROGRAMS, 2),
        "at 'token.renew_before': '99999999999d' is too long",
    ),
    "duration 1e300": (
        _set("token", "renew_before = 1e300"),
        dict.fromkeys(PROGRAMS, 2),
        "at 'token.renew_before': 1e+300 is too long",
    ),
    "duration inf": (
        _set("token", "renew_before = inf"),
        dict.fromkeys(PROGRAMS, 2),
        "at 'token.renew_before': inf is too long",
    ),
    "intervals = []": (
        _set("intervals", "[]"),
        {**dict.fromkeys(PROGRAMS, 2), "renew_token": 0},
        "at 'collector.intervals': expected at least one interval",
    ),
    "security id above 2**32": (
        _set("instrument", "NSE_EQ:4294967296"),
        {**dict.fromkeys(PROGRAMS, 2), "renew_token": 0},
        "at 'collector.instruments[0]': security id 4294967296",
    ),
    "log directory is a file": (
        _file_in_the_way("log_dir", ""),
        {"renew_token": KEEPS, "collector": 2, "export_candles": 1, "status": 1},
        "cannot write logs in",
    ),
    "log directory under a file": (
        _file_in_the_way("log_dir", "/logs"),
        {"renew_token": KEEPS, "collector": 2, "export_candles": 1, "status": 1},
        "cannot write logs in",
    ),
    "token path under a file": (
        _file_in_the_way("token_file", "/token.json"),
        dict.fromkeys(PROGRAMS, 2),
        "is a file, not a directory",
    ),
    "metrics port in use": (
        _metrics_port_in_use,
        {"renew_token": 0, "collector": 2, "export_candles": 1, "status": 1},
        "at 'metrics.port': cannot serve metrics on port",
    ),
    "token file is a symlink loop": (
        _symlink_loop,
        {"renew_token": 3, "collector": WAITS, "export_candles": 1, "status": 3},
        "is a symlink; refusing it",
    ),
    "JWT exp beyond year 9999": (
        _exp_beyond_9999,
        {"renew_token": 3, "collector": WAITS, "export_candles": 1, "status": 3},
        "access_token is unreadable: JWT payload has no 'exp' that is a time",
    ),
}


@pytest.fixture
def install(tmp_path, monkeypatch) -> Iterator[Install]:
    for name in ("DHAN_PIN", "DHAN_TOTP_SECRET", "CREDENTIALS_DIRECTORY", "DHANFEED_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    made = Install(tmp_path)
    yield made
    for sock in made.held:
        sock.close()


def run(program: str, config: Path, expected: object) -> tuple[int, str]:
    argv = [str(ROOT / "bin" / program), "--config", str(config)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if expected != WAITS:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
        return done.returncode, done.stderr
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 3.0  # long enough to have read the token file and waited
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert proc.poll() is None, f"{program} exited {proc.returncode}: {proc.stderr.read()}"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err


@pytest.mark.parametrize("program", PROGRAMS)
@pytest.mark.parametrize("case", CASES)
def test_every_bad_input_gets_its_documented_exit_code_in_one_line(install, case, program):
    spoil, codes, says = CASES[case]
    spoil(install)
    expected = codes[program]
    code, err = run(program, install.config, expected)
    assert TRACEBACK not in err, err
    lines = err.strip().splitlines()
    if expected == WAITS:
        assert code == 0, err  # stopped by SIGTERM, after waiting for a usable token
        alerts = (install.root / "logs" / "token_alerts.log").read_text().splitlines()
        waiting = [json.loads(a) for a in alerts if "collector-token" in a]
        assert len(waiting) == 1 and says in waiting[0]["message"], alerts
        return
    if expected == KEEPS:
        assert code == 0, err
        assert lines[0].startswith(f"{program}: ") and says in lines[0]
        assert "renewing anyway" in lines[0]
        return
    assert code == expected, err
    if code == 0:
        return  # a problem that program does not care about (it warns in its log, at most)
    assert len(lines) <= 1, err  # status says "exit 1" on stdout, with nothing on stderr
    if code == 2:
        assert lines[0].startswith(f"{program}: bad config {install.root / 'config.toml'}: ")
    if code in (2, 3) and lines:
        assert says in lines[0], err


@pytest.mark.parametrize("program", ["collector", "renew_token"])
def test_the_state_directory_is_created_private_by_whichever_program_comes_first(install, program):
    install.values["token_file"] = "fresh/state/token.json"
    code, err = run(program, install.config, WAITS if program == "collector" else 3)
    assert TRACEBACK not in err
    state = install.root / "fresh" / "state"
    assert state.is_dir() and state.stat().st_mode & 0o777 == 0o700
