"""Shared fixtures: the real simulator over loopback, and a temporary project layout."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dhanfeed.sim.process import SimProcess

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "bin"


Sim = SimProcess  # the name the tests use
pytest_plugins = ["renew_support"]  # the `run` and `clean_environment` fixtures


def launch_sim(*args: str, env: dict[str, str] | None = None) -> Sim:
    """Start the real `bin/dhan_sim` on free loopback ports."""
    return SimProcess(*args, command=[str(BIN / "dhan_sim")], env=env)


@pytest.fixture
def start_sim() -> Iterator:
    """Factory: `sim = start_sim('--token-ttl', '90s')`; every simulator is stopped at the end."""
    started: list[Sim] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Sim:
        sim = launch_sim(*args, env=env)
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture
def sim(start_sim) -> Sim:
    """A simulator with default options."""
    return start_sim()


PYTHON = sys.executable
