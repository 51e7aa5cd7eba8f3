"""The README's runnable code blocks work as written (a block preceded by `<!-- runnable -->`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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
