"""Benchmark 5: the cron cost — `bin/renew_token` when nothing is due, as a whole process.

A temporary layout holds a config and a valid SELF token with 24 h left (renew_before is
6 h, so the run decides "not due", writes its metrics and exits 0 without touching the
network). Compared, interleaved, median of N runs each:
  - `bin/renew_token --config ...` (what cron runs: the sh wrapper execs the venv python);
  - `.venv/bin/python -m dhanfeed.cli.renew_token --config ...` (without the wrapper);
  - `.venv/bin/python -c pass` (the bare interpreter, the same venv python).
Then `python -X importtime` lists the heaviest imports of one run.

    .venv/bin/python bench/bench_cron.py [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BIN, PYTHON, Row, Sim, median, say  # noqa: E402

from dhanfeed.sim.config_file import write_config  # noqa: E402


def make_layout(root: Path, sim: Sim) -> Path:
    """A valid SELF token with 24 h left, and a config pointing at `sim`: the first run
    confirms the token with Dhan's profile endpoint (`[token] confirm_every`), the timed runs,
    within that period, ask Dhan nothing."""
    sim.admin("issue-token", {"ttl_s": 24 * 3600, "path": str(root / "state" / "token.json")})
    return write_config(root, sim)


def time_run(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    return elapsed


def heaviest_imports(cmd: list[str], env: dict[str, str], top: int = 12) -> list[tuple[int, str]]:
    proc = subprocess.run(
        [cmd[0], "-X", "importtime", *cmd[1:]], capture_output=True, text=True, env=env
    )
    rows = []
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m and len(m.group(3)) <= 3:  # top-level imports only (cumulative time)
            rows.append((int(m.group(2)), m.group(4)))
    return sorted(rows, reverse=True)[:top]


def main(argv: list[str] | None = None) -> list[Row]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args(argv)
    say("== 5. the cron cost: bin/renew_token when nothing is due")
    with tempfile.TemporaryDirectory(prefix="dhanfeed-bench-cron-") as tmp:
        root = Path(tmp)
        sim = Sim()
        try:
            config = make_layout(root, sim)
            env = {k: v for k, v in os.environ.items() if not k.startswith("DHANFEED_")}
            contenders = {
                "wrapper": [str(BIN / "renew_token"), "--config", str(config)],
                "module": [PYTHON, "-m", "dhanfeed.cli.renew_token", "--config", str(config)],
                "bare": [PYTHON, "-c", "pass"],
            }
            out = subprocess.run(contenders["module"], capture_output=True, text=True, env=env)
            say(
                f"  one run says: {out.stdout.strip() or out.stderr.strip()} (exit {out.returncode})"
            )
            confirms = sim.admin("stats")["rest_calls"].get("profile", 0)
            times: dict[str, list[float]] = {k: [] for k in contenders}
            for cmd in contenders.values():
                time_run(cmd, env)  # warm the page cache
            for _ in range(args.runs):
                for key, cmd in contenders.items():
                    times[key].append(time_run(cmd, env))
            asked = sim.admin("stats")["rest_calls"]
        finally:
            sim.stop()
        say(f"  Dhan asked by the timed runs: {sum(asked.values()) - confirms} calls"
            f" (the first run's profile confirmations: {confirms})")  # fmt: skip
        med = {k: median(v) * 1000 for k, v in times.items()}
        for key in contenders:
            say(f"  {key:<8} median {med[key]:6.1f} ms  (min {min(times[key]) * 1000:.1f},"
                f" max {max(times[key]) * 1000:.1f}, n={args.runs})")  # fmt: skip
        ratio = med["wrapper"] / med["bare"]
        ratio_module = med["module"] / med["bare"]
        say(
            f"  ratio bin/renew_token / python -c pass = {ratio:.2f}x (module form {ratio_module:.2f}x)"
        )
        say("  heaviest top-level imports of one run (cumulative µs):")
        for us, name in heaviest_imports(contenders["module"], env):
            say(f"    {us:>7} {name}")
    return [
        Row("5 cron", "bin/renew_token, nothing due", f"{med['wrapper']:.1f} ms"),
        Row("5 cron", "python -c pass (venv)", f"{med['bare']:.1f} ms"),
        Row("5 cron", "ratio renew_token / bare", f"{ratio:.2f}x", "<= 3x", ratio <= 3),
        Row("5 cron", "ratio, python -m form", f"{ratio_module:.2f}x"),
    ]


if __name__ == "__main__":
    main()
