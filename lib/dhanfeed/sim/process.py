"""The simulator as a child process: start it on free loopback ports, read its one JSON
start-up line, talk to its admin endpoint, stop it. Shared by the tests, the benchmarks and
the demo."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import requests

DEFAULT_COMMAND = (sys.executable, "-m", "dhanfeed.cli.dhan_sim")
START_TIMEOUT_S = 30  # a simulator that hangs before its start-up line must not hang us


class SimProcess:
    def __init__(
        self,
        *args: str,
        command: Sequence[str] = DEFAULT_COMMAND,
        env: dict[str, str] | None = None,
        stderr: Path | IO[Any] | None = None,
        new_session: bool = False,
        start_timeout: float = START_TIMEOUT_S,
    ) -> None:
        """`args` are dhan_sim options; stderr goes to a path, an open file, or nowhere."""
        self._err = open(stderr, "wb") if isinstance(stderr, Path) else stderr  # noqa: SIM115
        cmd = [*command, "--rest-port", "0", "--feed-port", "0", *args]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=self._err or subprocess.DEVNULL,
            text=True,
            env={**os.environ, **(env or {})},
            start_new_session=new_session,
        )
        line = self._first_line(start_timeout)
        try:
            self.info: dict[str, str] = json.loads(line)
        except ValueError:
            self.stop()
            raise RuntimeError(f"dhan_sim did not start (exit {self.proc.returncode})") from None
        self.api_base = self.info["api_base"]
        self.auth_base = self.info["auth_base"]
        self.feed_url = self.info["feed_url"]
        self.admin_url = self.info["admin_url"].rstrip("/")
        self.client_id = self.info["client_id"]

    def _first_line(self, timeout: float) -> str:
        """Its one JSON start-up line, or "" when it exits or stays silent for `timeout`."""
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            return self.proc.stdout.readline() if sel.select(timeout) else ""

    def admin(
        self, path: str, payload: dict | None = None, method: str | None = None, timeout: float = 30
    ) -> Any:
        """GET (no payload) or POST (payload) `/__sim/<path>`; returns the JSON answer."""
        url = f"{self.admin_url}/{path.lstrip('/')}"
        verb = method or ("POST" if payload is not None else "GET")
        resp = requests.request(verb, url, json=payload, timeout=timeout)
        resp.raise_for_status()
        return resp.json()

    def stop(self, timeout: float = 10) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()  # else a ResourceWarning (an error under the tests' filters)
        if self._err is not None and not self._err.closed:
            self._err.close()
