"""`make demo` in a short mode, and its refusal on a machine without Python 3.11."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_demo_renews_swaps_and_loses_nothing(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run(
        [str(ROOT / "bin" / "demo"), "--seconds", "40", "--token-ttl", "30",
         "--dir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=110, env=env,
    )  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "PASS: nothing lost, volumes exact" in out
    assert int(re.search(r"renewals at Dhan\s+(\d+)", out).group(1)) >= 1
    # With the kills-sockets policy Dhan cuts the old socket first: a swap or a reconnect.
    moves = int(re.search(r"^token swaps\s+(\d+)", out, re.M).group(1))
    moves += int(re.search(r"^reconnects\s+(\d+)", out, re.M).group(1))
    assert moves >= 1, out
    assert re.search(r"collector token\s+\w+ \(current\)", out)
    assert int(re.search(r"packets lost\s+(\d+)", out).group(1)) == 0
    assert "MISMATCH" not in out
    # Piped, not a terminal: plain status lines every 10 s, no carriage-return redraws.
    assert "\r" not in out
    assert len(re.findall(r"^\s*\d+s left \| token expires", out, re.M)) >= 3, out
    assert "eyJ" not in out + proc.stderr
    # The commands it suggests for a look at the candles work as printed, with what was installed.
    hints = [line.strip() for line in out.splitlines() if line.startswith("  /")]
    assert len(hints) == 2, out
    for hint in hints:
        shown = subprocess.run(hint, shell=True, capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0 and "open" in shown.stdout, hint + shown.stderr


def test_make_demo_says_what_is_missing_without_python_3_11(tmp_path):
    old = tmp_path / "python3"
    old.write_text('#!/bin/sh\necho "Python 3.8.10"\nexit 1\n')  # answers like an old python
    old.chmod(0o755)
    proc = subprocess.run(
        ["make", "-s", "demo", f"PYTHON={old}", "VENV=" + str(tmp_path / "venv")],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "dhanfeed needs Python 3.11 or newer" in proc.stderr
    assert not (tmp_path / "venv").exists()
