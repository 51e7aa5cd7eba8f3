"""Shared fixtures: the real simulator over loopback, and a temporary project layout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "bin"


class Sim:
    """A running `bin/dhan_sim` subprocess: its start-up line and its admin endpoint."""

    def __init__(self, proc: subprocess.Popen[str], info: dict) -> None:
        self.proc = proc
        self.info = info
        self.api_base: str = info["api_base"]
        self.auth_base: str = info["auth_base"]
        self.feed_url: str = info["feed_url"]
        self.admin_url: str = info["admin_url"].rstrip("/")
        self.client_id: str = info["client_id"]

    def admin(self, path: str, payload: dict | None = None, method: str | None = None) -> dict:
        """GET (no payload) or POST (payload) `/__sim/<path>`; returns the JSON answer."""
        url = f"{self.admin_url}/{path.lstrip('/')}"
        verb = method or ("POST" if payload is not None else "GET")
        resp = requests.request(verb, url, json=payload, timeout=10)
        resp.raise_for_status()
        return resp.json()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()  # else a ResourceWarning, an error under filterwarnings


def launch_sim(*args: str, env: dict[str, str] | None = None) -> Sim:
    """Start `bin/dhan_sim` on free loopback ports and read its one JSON start-up line."""
    cmd = [str(BIN / "dhan_sim"), "--rest-port", "0", "--feed-port", "0", *args]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
    )
    line = proc.stdout.readline() if proc.stdout else ""
    if not line:
        proc.kill()
        raise RuntimeError(f"dhan_sim did not start (exit {proc.wait()})")
    return Sim(proc, json.loads(line))


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
