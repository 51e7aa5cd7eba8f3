"""What the benchmarks share: paths, medians, the simulator and collector as subprocesses.

Each bench script prints its own figures and returns rows for `run_all.py`'s table:
`Row(bench, metric, value, goal, ok)`; `ok` is None where no goal applies.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from dhanfeed.sim.config_file import ALL_DAY, QUOTE_1M, write_config
from dhanfeed.sim.process import SimProcess

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "bin"
CACHE = Path(__file__).resolve().parent / ".cache"
PYTHON = sys.executable  # run_all/make run us with the project venv's python
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass
class Row:
    bench: str
    metric: str
    value: str
    goal: str = ""
    ok: bool | None = None

    def status(self) -> str:
        return "" if self.ok is None else ("ok" if self.ok else "MISS")


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def fmt_rate(per_s: float) -> str:
    return f"{per_s:,.0f}/s"


def say(*parts: object) -> None:
    print(*parts, flush=True)


# ---------------------------------------------------------------------------------------------
# /proc readings (Linux)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (its threads included)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


# ---------------------------------------------------------------------------------------------
# The simulator


class Sim(SimProcess):
    """A quiet `bin/dhan_sim` subprocess; `stderr_path` keeps its log."""

    def __init__(self, *args: str, stderr_path: Path | None = None) -> None:
        super().__init__("--quiet", *args, command=[str(BIN / "dhan_sim")], stderr=stderr_path)

    def admin(self, path: str, payload: dict | None = None, timeout: float = 120) -> dict:
        return super().admin(path, payload, timeout=timeout)

    def stop(self) -> None:
        super().stop(timeout=15)


def sim_range(count: int, segment: str = "NSE_EQ", first: int = 100_000) -> str:
    """`count` instruments as one --instruments range (and the same list for the config)."""
    return f"{segment}:{first}-{first + count - 1}"


def instrument_keys(count: int, segment: str = "NSE_EQ", first: int = 100_000) -> list[str]:
    return [f"{segment}:{sid}" for sid in range(first, first + count)]


# ---------------------------------------------------------------------------------------------
# The collector


def collector_config(
    workdir: Path, sim: Sim, instruments: list[str], *, store_ticks: bool = True, **collector: Any
) -> Path:
    """A config for `bin/collector` against `sim`, session open all day, 1-minute bars."""
    (workdir / "state").mkdir(parents=True, exist_ok=True)
    return write_config(
        workdir,
        sim,
        session=ALL_DAY,
        logging={"level": "INFO"},
        collector={
            **QUOTE_1M,
            "instruments": instruments,
            "store_ticks": store_ticks,
            "grace": "1s",
            "status_every": "0.2s",
            "stale_after": "60s",
            **collector,
        },
    )


class CollectorProc:
    """A `bin/collector` subprocess, its status file, log and database."""

    def __init__(self, workdir: Path, config: Path) -> None:
        self.workdir = workdir
        env = {k: v for k, v in os.environ.items() if not k.startswith("DHANFEED_")}
        self._err = open(workdir / "collector.err", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(BIN / "collector"), "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=self._err,
            env=env,
        )
        self.pid = self.python_pid()

    def python_pid(self) -> int:
        """bin/collector is a shell wrapper that execs the venv python: wait for the exec."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if b"python" in Path(f"/proc/{self.proc.pid}/cmdline").read_bytes():
                    break
            except OSError:
                break
            time.sleep(0.01)
        return self.proc.pid

    def status(self) -> dict:
        try:
            return json.loads((self.workdir / "state" / "collector_status.json").read_text())
        except (OSError, ValueError):
            return {}

    def wait_for(self, what: str, check: Callable[[dict], bool], timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"collector exited {self.proc.returncode}: {self.stderr()}")
            status = self.status()
            if status and check(status):
                return status
            time.sleep(0.05)
        raise RuntimeError(f"timed out waiting for {what}; status: {self.status()}")

    def terminate(self, timeout: float = 20) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._err.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self._err.closed:
            self._err.close()

    def stderr(self) -> str:
        path = self.workdir / "collector.err"
        return path.read_text()[-2000:] if path.exists() else ""

    def log_lines(self) -> Iterator[dict]:
        path = self.workdir / "logs" / "collector.log"
        if not path.exists():
            return
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    yield json.loads(line)
                except ValueError:
                    continue

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.workdir / "data" / "candles.sqlite")
