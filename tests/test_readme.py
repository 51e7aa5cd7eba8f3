"""The README's runnable code blocks work as written (a block preceded by `<!-- runnable -->`)."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dhanfeed.renew_outcome import Status
from dhanfeed.token_store import TokenStore
from support.renew import Setup
from support.secret_scan import remember_secret
from support.token_files import make_token, now, write_token_file
from test_web_api import fill_database

ROOT = Path(__file__).resolve().parent.parent
RUNNABLE = re.compile(r"<!-- runnable -->\s*```(?:sh|bash)\n(.*?)```", re.S)


def runnable_blocks() -> list[str]:
    return RUNNABLE.findall((ROOT / "README.md").read_text(encoding="utf-8"))


def test_the_readme_has_runnable_blocks():
    assert len(runnable_blocks()) >= 2


@pytest.mark.parametrize("block", runnable_blocks(), ids=lambda b: b.splitlines()[0][:40])
def test_a_runnable_readme_block_succeeds(block, tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("DHANFEED_CONFIG", None)
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "eyJ" not in proc.stdout + proc.stderr  # nothing token-shaped is printed


PANDAS_EXAMPLE = re.compile(r"<!-- pandas-example -->\s*```python\n(.*?)```", re.S)


def test_the_readme_pandas_example_runs_against_a_database_of_that_day(tmp_path):
    pytest.importorskip("pandas")
    (example,) = PANDAS_EXAMPLE.findall((ROOT / "README.md").read_text(encoding="utf-8"))
    fill_database(tmp_path)  # 09:15-09:44 IST on 2026-01-05, NSE_EQ:1333
    proc = subprocess.run(
        [sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True, timeout=90
    )
    assert proc.returncode == 0, proc.stderr
    assert "2026-01-05 09:15:00+05:30" in proc.stdout
    volumes = [10 * i + 1 for i in range(30)]
    closes = [100.5 + i for i in range(30)]
    vwap = sum(c * v for c, v in zip(closes, volumes, strict=True)) / sum(volumes)
    assert f"VWAP of the day: {round(vwap, 2)}" in proc.stdout
    assert f"{sum(volumes)}" in proc.stdout.split("VWAP")[1]  # one hourly bar holds them all


OWN_PROGRAM = re.compile(r"<!-- own-program-example -->\s*```python\n(.*?)```", re.S)


def test_the_own_program_example_reads_the_token_file_and_calls_dhan_with_it(tmp_path, sim):
    (example,) = OWN_PROGRAM.findall((ROOT / "README.md").read_text(encoding="utf-8"))
    token_file = tmp_path / "state" / "token.json"
    remember_secret(sim.admin("issue-token", {"path": str(token_file)})["access_token"])
    program = example.replace("/opt/dhanfeed/state/token.json", str(token_file)).replace(
        "https://api.dhan.co", sim.api_base
    )
    program += '\nprint(dhan_get("/v2/profile").json()["dhanClientId"])\n'
    proc = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == sim.client_id  # Dhan (the simulator) took the token


def troubleshooting_rows() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]
    return [line.split(" | ")[0] for line in section.splitlines() if line.startswith("| ")]


def lib_source() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "lib").rglob("*.py"))


def test_every_message_the_troubleshooting_table_quotes_is_one_the_programs_print():
    source = lib_source()
    quotes = [q for row in troubleshooting_rows() for q in re.findall(r'"([^"]+)"', row)]
    assert len(quotes) >= 4
    for quote in quotes:  # "…" stands for what varies (a path, a fingerprint, a reason)
        for fragment in filter(None, (part.strip() for part in quote.split("…"))):
            assert fragment in source, f"the README quotes {quote!r}; no program says {fragment!r}"


def test_every_alert_condition_the_troubleshooting_table_names_is_raised_by_the_code():
    source = lib_source()
    names = [n for row in troubleshooting_rows() for n in re.findall(r"`([a-z_0-9-]+)…?`", row)]
    assert "manual_login_needed" in names and "credentials_wrong" in names
    for name in names:
        key = name.removeprefix("collector-")  # the collector's keys, prefixed when sent
        assert f'"{name}"' in source or f'"{key}' in source or f'f"{key}' in source, name


def test_the_lock_message_the_readme_quotes_is_what_a_second_run_prints(tmp_path, run):
    s = Setup(tmp_path)
    write_token_file(s.token_file, make_token(exp=now() + dt.timedelta(hours=20)))
    with TokenStore(s.token_file).lock():
        r = run(*s.args())
    assert r.code == 75
    assert re.search(r"another renew_token run holds .*; nothing done", r.err)
    assert "another renew_token run holds …; nothing done" in (ROOT / "README.md").read_text()


def test_the_json_status_words_in_the_readme_are_the_programs_own():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("### `bin/renew_token --json`", 1)[1].split("Keys:", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| (\d+) \|", table, re.M)
    assert {word: int(code) for word, code in rows} == {s.value: int(s.exit_code) for s in Status}
