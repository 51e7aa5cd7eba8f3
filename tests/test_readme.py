"""The README's runnable code blocks work as written (a block preceded by `<!-- runnable -->`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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
