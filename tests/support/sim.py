"""Where the programs are, and the real simulator started as `bin/dhan_sim` on free loopback
ports (conftest's `start_sim` and `sim` fixtures use it; so may a test that needs its own)."""

from __future__ import annotations

import sys
from pathlib import Path

from dhanfeed.sim.process import SimProcess

ROOT = Path(__file__).resolve().parent.parent.parent
BIN = ROOT / "bin"
PYTHON = sys.executable

Sim = SimProcess  # the name the tests use


def launch_sim(*args: str, env: dict[str, str] | None = None) -> Sim:
    """Start the real `bin/dhan_sim` on free loopback ports."""
    return SimProcess(*args, command=[str(BIN / "dhan_sim")], env=env)
