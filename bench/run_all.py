"""`make bench`: run the benchmarks and print one table (about 22 minutes on 2 cores).

Installs bench/requirements.txt (Dhan's official SDK, picows) into this interpreter's
environment on demand: benchmark-only peers, never runtime or test dependencies.

    .venv/bin/python bench/run_all.py [--quick]

--quick runs every benchmark on a smaller scale (for checking the scripts, not for figures).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def ensure_sdk() -> None:
    if all(importlib.util.find_spec(name) for name in ("dhanhq", "picows")):
        return
    print("installing the benchmark-only peer from bench/requirements.txt ...", flush=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "-r", str(HERE / "requirements.txt")],
        check=True,
    )


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = subprocess.run(["free", "-h"], capture_output=True, text=True).stdout.splitlines()
    total = mem[1].split()[1] if len(mem) > 1 else "?"
    return (
        f"{os.cpu_count()} cores ({cpu}), {total} RAM, Python {platform.python_version()},"
        f" {platform.system()} {platform.release()}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    ensure_sdk()

    import bench_cron
    import bench_decode
    import bench_e2e
    import bench_e2e_stores
    import bench_memory
    import bench_sdk
    import bench_store
    import bench_swap
    import bench_tick_layout
    import bench_ws_clients

    started = time.monotonic()
    print(f"dhanfeed benchmarks, {time.strftime('%Y-%m-%d %H:%M %Z')}; {machine()}", flush=True)
    q = args.quick
    rows = []
    timings = {}

    def timed(name: str, fn):  # noqa: ANN001, ANN202
        t0 = time.monotonic()
        out = fn()
        timings[name] = time.monotonic() - t0
        return out

    rows += timed("1", lambda: bench_decode.main(["--runs", "1" if q else "3"]
                                                 + (["--packets", "200000"] if q else [])))  # fmt: skip
    rows += timed("5", lambda: bench_cron.main(["--runs", "5" if q else "30"]))
    swap_rows, swap_results = timed("3", lambda: bench_swap.main(["--swaps", "10" if q else "100"]))
    rows += timed("2", lambda: bench_e2e.main(
        ["--rates", "20000", "--window", "15", "--prefill", "0", "--cpu-window", "5"] if q
        else []))  # fmt: skip
    rows += swap_rows
    rows += timed(
        "layout", lambda: bench_tick_layout.main(["--rows", "400000" if q else "3000000"])
    )
    rows += timed(
        "4",
        lambda: bench_memory.main(
            ["--seconds", "15" if q else "75"], swap_rss=swap_results["keeps"]["rss_kib"]
        ),
    )
    rows += timed("sdk", lambda: bench_sdk.main(["--seconds", "10" if q else "30"]))
    rows += timed("ws", lambda: bench_ws_clients.main(["--seconds", "3" if q else "10"]))
    rows += timed("6", lambda: bench_store.main(["--ticks", "100000" if q else "400000"]
                                                + (["--runs", "1"] if q else [])))  # fmt: skip
    rows += timed("7", lambda: bench_e2e_stores.main(
        ["--instruments", "5000", "--rates", "1", "--window", "10"] if q
        else ["--rates", "1,2,3", "--window", "30"]))  # fmt: skip
    rows.sort(key=lambda r: r.bench)

    width = [max(len(r.bench) for r in rows), max(len(r.metric) for r in rows),
             max(len(r.value) for r in rows), max(len(r.goal) for r in rows)]  # fmt: skip
    line = "+-" + "-+-".join("-" * w for w in width) + "-+------+"
    print()
    print(line)
    print("| " + " | ".join(h.ljust(w) for h, w in zip(("bench", "metric", "value", "goal"),
                                                         width, strict=True)) + " |      |")  # fmt: skip
    print(line)
    for r in rows:
        cells = (r.bench, r.metric, r.value, r.goal)
        print("| " + " | ".join(c.ljust(w) for c, w in zip(cells, width, strict=True))
              + f" | {r.status():<4} |")  # fmt: skip
    print(line)
    total = time.monotonic() - started
    print(
        "wall time: "
        + ", ".join(f"bench {k} {v:.0f}s" for k, v in sorted(timings.items()))
        + f"; total {total / 60:.1f} min"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
