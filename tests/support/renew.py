"""What the renew_token tests share: a temporary install (`Setup`, `write_config`), its alert
log, and the `run` and `clean_environment` fixtures (a plugin of tests/conftest.py)."""

from __future__ import annotations

import io
import json
import sys
import tomllib
from pathlib import Path

import pytest

from dhanfeed.cli.renew_token import main as renew_token_main
from dhanfeed.sim.config_file import OFFLINE
from dhanfeed.sim.config_file import write_config as shared_write_config
from support.secret_scan import PLANTED_PIN, PLANTED_TOTP_SECRET, remember_secret
from support.token_files import CLIENT_ID

SIM_TTL = "10m"  # tokens the simulator issues on renewal: not due under the policy below
POLICY = 'renew_before = "2m"\nmust_renew_before = "30s"\nrun_timeout = "60s"'


def write_config(
    root: Path,
    *,
    api_base: str = OFFLINE,
    auth_base: str | None = None,
    extra: str = "",
    token: str = "",
    session: str = "days = []",
    timeout: str = "1s",
) -> Path:
    """A config in `root` with the state, logs and alert log all under it. `token`, `session`
    and `extra` are TOML lines: the first two go into their sections, `extra` follows the
    `[alerts]` section's own lines (and may open sections of its own)."""
    fragments = tomllib.loads(
        f"[token]\n{token}\n[session]\n{session}\n"
        f'[alerts]\nlog_file = "logs/token_alerts.log"\n{extra}\n'
    )
    dhan = {"client_id": CLIENT_ID, "api_base": api_base, "auth_base": auth_base or api_base}
    dhan |= {"feed_url": "ws://127.0.0.1:9", "timeout": timeout}
    return shared_write_config(root, dhan=dhan, **fragments)


def alert_lines(root: Path) -> list[dict]:
    path = root / "logs" / "token_alerts.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def clean_environment(monkeypatch):
    """No PIN, seed or config from the developer's shell leaks into a test."""
    for name in ("DHAN_PIN", "DHAN_TOTP_SECRET", "CREDENTIALS_DIRECTORY", "DHANFEED_CONFIG"):
        monkeypatch.delenv(name, raising=False)


class Run:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    @property
    def json(self) -> dict:
        return json.loads(self.out)


@pytest.fixture
def run(capsys, monkeypatch):
    """Calls bin/renew_token's main() in-process: exit code, stdout and stderr."""

    def invoke(*args: str, stdin: str | None = None) -> Run:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = renew_token_main(list(args))
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return invoke


class Setup:
    """A temporary install: config, state/token.json, logs/ — optionally against a simulator."""

    def __init__(self, root: Path, sim=None, **config) -> None:
        self.root = root
        self.sim = sim
        if sim is not None:
            config.setdefault("api_base", sim.api_base)
        config.setdefault("token", POLICY)
        self.config = write_config(root, **config)
        self.token_file = root / "state" / "token.json"

    def issue(self, ttl_s: float = 60) -> dict:
        """A fresh SELF token from the simulator, written as the token file (due under POLICY)."""
        token = self.sim.admin("issue-token", {"ttl_s": ttl_s, "path": str(self.token_file)})
        remember_secret(token["access_token"])
        return token

    def args(self, *more: str) -> list[str]:
        return ["--config", str(self.config), *more]

    def alerts(self) -> list[dict]:
        return alert_lines(self.root)

    def rest_calls(self, endpoint: str) -> int:
        return self.sim.admin("stats")["rest_calls"].get(endpoint, 0)


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


def totp_by_env(monkeypatch, tmp_path) -> str:
    monkeypatch.setenv("DHAN_PIN", PLANTED_PIN)
    monkeypatch.setenv("DHAN_TOTP_SECRET", PLANTED_TOTP_SECRET)
    return ""
