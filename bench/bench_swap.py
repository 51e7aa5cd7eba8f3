"""Benchmark 3: token swap, for both renewal policies of the simulator (and RSS over swaps).

`bin/dhan_sim` (N instruments, T ticks/s each, --renew-keeps-sockets or --renew-kills-sockets)
→ `bin/collector` (production delays: token file polled every 0.25 s) → SQLite with raw
ticks. Each swap: the simulator mints a new token through its admin endpoint (with the kill
policy this is when it sends 807 to the old sockets, as Dhan would on RenewToken), then this
script replaces the token file atomically as bin/renew_token does and notes the time right
after `os.replace`. It waits until the status file shows every socket live on the new token,
then (after `--pause` seconds, none by default) the next swap starts. Back to back, with
sockets kept, the next token change finds the shard still in the previous swap's settle
(`Timing.swap_settle_s`, 0.5 s after closing the old socket) and its "live" includes the rest
of that wait; `--pause 0.6` measures a settled collector, as a daily token change finds it.

Measured per swap, from the collector's own JSON log (one clock, this machine):
  notice  = time of its "new token <fp>" line − the replacement time;
  live    = time of the last shard's "socket .. open with token <fp> .. subscribed" line −
            the replacement time (the new socket is subscribed and the server streams to it).
After SIGTERM: lost = ticks the simulator delivered to our sockets (its /__sim/stats record)
that are not in the ticks table; missed = ticks the market made while no socket of ours was
subscribed (gaps, from /__sim/sent for a sample of instruments); longest gap = the longest
row of the collector's gaps table. RSS (VmRSS) is read over a control stretch without
swaps first (as long as the swaps take), then before the first swap, after the 10th and
after the last.

    .venv/bin/python bench/bench_swap.py [--swaps 100] [--instruments 200] [--tps 10] [--pause 0]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    CollectorProc,
    Row,
    Sim,
    collector_config,
    instrument_keys,
    median,
    rss_kib,
    say,
    sim_range,
)

SAMPLE = 10  # instruments whose every tick is checked for misses (the sent record is per tick)


def replace_token_file(path: Path, client_id: str, issued: dict) -> float:
    """Write the token file as bin/renew_token does (temp, fsync, rename); the rename time."""
    record = {
        "client_id": client_id,
        "access_token": issued["access_token"],
        "expires_at": issued["expires_at"],
        "issued_at": dt.datetime.now(dt.UTC).isoformat(),
        "source": "renew",
        "written_at": dt.datetime.now(dt.UTC).isoformat(),
        "fingerprint": issued["fingerprint"],
    }
    tmp = path.with_name(f".{path.name}.bench")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(record, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return time.time()


def log_time(entry: dict) -> float:
    return dt.datetime.fromisoformat(entry["time"].replace("Z", "+00:00")).timestamp()


def all_live_on(status: dict, fp: str, shards: int) -> bool:
    sockets = status.get("sockets") or []
    return (
        status.get("sockets_live") == shards
        and len(sockets) == shards
        and all(s["token_fp"] == fp and s["role"] == "live" for s in sockets)
    )


def run_policy(
    policy: str, swaps: int, instruments: int, tps: float, control_s: float, pause_s: float = 0.0
) -> dict:
    keys = instrument_keys(instruments)
    with tempfile.TemporaryDirectory(prefix=f"dhanfeed-bench-swap-{policy}-") as tmp:
        workdir = Path(tmp)
        token_path = workdir / "state" / "token.json"
        sim = Sim("--instruments", sim_range(instruments), "--ticks-per-second", str(tps),
                  "--issue-token", str(token_path), f"--renew-{policy}-sockets")  # fmt: skip
        collector = None
        try:
            collector = CollectorProc(workdir, collector_config(workdir, sim, keys))
            first = collector.wait_for("live", lambda s: s.get("sockets_live", 0) >= 1
                                       and s.get("packets", 0) > 0)  # fmt: skip
            shards = len(first["sockets"])
            # A control stretch without swaps, as long as the swaps take: growth that comes
            # from time and packets (SQLite's page cache, allocator arenas), not from swaps.
            rss = {"control start": rss_kib(collector.pid)}
            time.sleep(control_s)
            rss["before"] = rss_kib(collector.pid)
            swaps_started = time.monotonic()
            replaced: dict[str, float] = {}
            for n in range(1, swaps + 1):
                issued = sim.admin("issue-token", {})
                replaced[issued["fingerprint"]] = replace_token_file(
                    token_path, sim.client_id, issued
                )
                collector.wait_for(
                    f"swap {n}", lambda s, fp=issued["fingerprint"]: all_live_on(s, fp, shards), 30
                )
                if n == 10:
                    rss["after 10"] = rss_kib(collector.pid)
                time.sleep(pause_s)
            rss["after all"] = rss_kib(collector.pid)
            rss["swap seconds"] = round(time.monotonic() - swaps_started)
            time.sleep(0.5)  # let the last overlap end before we stop
            if collector.terminate() != 0:
                raise RuntimeError(f"collector exit {collector.proc.returncode}")
            return measure(sim, collector, keys, replaced, rss, shards)
        finally:
            if collector is not None:
                collector.kill()
            sim.stop()


def measure(sim, collector, keys, replaced, rss, shards) -> dict:  # noqa: ANN001
    notice: dict[str, float] = {}
    opened: dict[str, list[float]] = {}
    for entry in collector.log_lines():
        msg = entry.get("message", "")
        fp = entry.get("token_fp")
        if msg.startswith("new token") and fp in replaced:
            notice.setdefault(fp, log_time(entry))
        elif " open with token " in msg:
            fp = msg.split(" open with token ", 1)[1].split(",", 1)[0]
            if fp in replaced:
                opened.setdefault(fp, []).append(log_time(entry))
    missing = [fp for fp in replaced if fp not in notice or len(opened.get(fp, ())) < shards]
    if missing:
        raise RuntimeError(f"{len(missing)} swaps without their log lines")
    notice_ms = [(notice[fp] - t) * 1000 for fp, t in replaced.items()]
    live_ms = [(sorted(opened[fp])[shards - 1] - t) * 1000 for fp, t in replaced.items()]

    stats = sim.admin("stats")["instruments"]
    with collector.db() as db:
        stored = dict(
            ((f"{seg}:{sid}"), (n, d))
            for seg, sid, n, d in db.execute(
                "SELECT segment, security_id, count(*), count(DISTINCT cum_volume) FROM ticks"
                " GROUP BY segment, security_id"
            )
        )
        volumes = dict(
            (f"{seg}:{sid}", v)
            for seg, sid, v in db.execute(
                "SELECT segment, security_id, sum(volume) FROM candles WHERE interval_s = 60"
                " GROUP BY segment, security_id"
            )
        )
        gaps = [g for (g,) in db.execute("SELECT end_utc - start_utc FROM gaps")]
    delivered = sum(stats[k]["delivered"] for k in keys)
    lost = sum(max(0, stats[k]["delivered"] - stored.get(k, (0, 0))[1]) for k in keys)
    doubled = sum(n - d for n, d in stored.values())
    missed = longest_missed = 0
    volume_exact = True
    for key in keys[:SAMPLE]:
        ticks = sim.admin(f"sent?instrument={key}")["ticks"]
        sent = [bool(t[3]) for t in ticks]
        # the sum of bar volumes is the cumulative volume the delivered ticks prove: the last
        # one's minus the first one's (honest bars: the first tick of a series only sets the base)
        delivered_cum = [t[0] for t in ticks if t[3]]
        volume_exact &= volumes.get(key) == max(delivered_cum) - delivered_cum[0]
        first, last = sent.index(True), len(sent) - 1 - sent[::-1].index(True)
        run = 0
        for on in sent[first : last + 1]:
            run = 0 if on else run + 1
            missed += not on
            longest_missed = max(longest_missed, run)
    return {
        "swaps": len(replaced),
        "shards": shards,
        "notice_ms": notice_ms,
        "live_ms": live_ms,
        "delivered": delivered,
        "lost": lost,
        "doubled": doubled,
        "volume_exact": volume_exact,
        "missed_sample": missed,
        "longest_missed_ticks": longest_missed,
        "gap_rows": len(gaps),
        "longest_gap_s": max(gaps, default=0.0),
        "rss_kib": rss,
    }


def summarise(policy: str, r: dict, tps: float) -> None:
    n, lv = sorted(r["notice_ms"]), sorted(r["live_ms"])
    say(f"  {policy}: {r['swaps']} swaps on {r['shards']} socket(s)")
    say(f"    notice: median {median(n):.0f} ms, max {n[-1]:.0f} ms")
    say(f"    all sockets live on the new token: median {median(lv):.0f} ms, max {lv[-1]:.0f} ms")
    say(f"    delivered {r['delivered']:,} ticks; lost {r['lost']}; stored twice {r['doubled']};"
        f" candle volume exact (sample): {r['volume_exact']}"
        + (" (not expected: after a gap bars do not carry the volume base, issue 13)"
           if policy == "kills" else ""))  # fmt: skip
    say(f"    gaps recorded {r['gap_rows']}, longest {r['longest_gap_s']:.3f} s; in the"
        f" {SAMPLE}-instrument sample {r['missed_sample']} ticks made while unsubscribed,"
        f" longest run {r['longest_missed_ticks']} ticks (~{r['longest_missed_ticks'] / tps:.1f} s)")  # fmt: skip
    say("    RSS KiB: " + ", ".join(f"{k} {v:,}" for k, v in r["rss_kib"].items()))


def main(argv: list[str] | None = None) -> tuple[list[Row], dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--swaps", type=int, default=100)
    ap.add_argument("--instruments", type=int, default=200)
    ap.add_argument("--tps", type=float, default=10.0)
    ap.add_argument("--control", type=float, default=25.0, help="seconds without swaps first")
    ap.add_argument(
        "--pause",
        type=float,
        default=0.0,
        help="seconds to wait after each swap before the next token change (default 0: back to"
        " back, so with sockets kept a swap also waits out the previous one's swap_settle_s;"
        " 0.6 or more measures a settled collector, as a daily token change finds it)",
    )
    args = ap.parse_args(argv)
    say(f"== 3. token swap: {args.swaps} swaps per policy, {args.instruments} instruments"
        f" x {args.tps:g} ticks/s, {args.pause:g} s pause between swaps")  # fmt: skip
    rows: list[Row] = []
    results = {}
    for policy in ("keeps", "kills"):
        started = time.monotonic()
        r = results[policy] = run_policy(
            policy, args.swaps, args.instruments, args.tps, args.control, args.pause
        )
        summarise(policy, r, args.tps)
        say(f"    ({time.monotonic() - started:.0f} s)")
        n, lv = r["notice_ms"], r["live_ms"]
        label = f"sockets {policy[:-1]}"
        rows += [
            Row("3 swap", f"{label}: notice median", f"{median(n):.0f} ms", "<= 100 ms",
                median(n) <= 100),
            Row("3 swap", f"{label}: notice max", f"{max(n):.0f} ms", "<= 1000 ms",
                max(n) <= 1000),
            Row("3 swap", f"{label}: all live on new token, median / max",
                f"{median(lv):.0f} / {max(lv):.0f} ms"),
            Row("3 swap", f"{label}: ticks lost (of delivered)",
                f"{r['lost']} of {r['delivered']:,}", "0" if policy == "keeps" else "",
                (r["lost"] == 0) if policy == "keeps" else None),
            Row("3 swap", f"{label}: longest gap", f"{r['longest_gap_s']:.3f} s",
                "< 2 s" if policy == "kills" else "",
                (r["longest_gap_s"] < 2) if policy == "kills" else None),
        ]  # fmt: skip
    return rows, results


if __name__ == "__main__":
    main()
