"""`make demo`: the whole system against the local simulator, then a loss check.

Starts `bin/dhan_sim` with a short token lifetime and the policy that kills old sockets on
renewal, runs `bin/renew_token` on a short loop the way cron runs it hourly, and runs
`bin/collector` on a dozen instruments. At the end it compares what the simulator delivered
with what landed in SQLite and exits 0 only when nothing was lost.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from dhanfeed.cli.args import ArgumentParser
from dhanfeed.errors import UsageError
from dhanfeed.sim.config_file import QUOTE_1M, write_config
from dhanfeed.sim.process import SimProcess
from dhanfeed.token import IST, format_remaining

ROOT = Path(__file__).resolve().parents[3]
BIN = ROOT / "bin"


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="bin/demo",
        description="Run dhan_sim + renew_token + collector together and check nothing is lost.",
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=float(os.environ.get("DEMO_SECONDS", "180")),
        help="how long the collector records (default $DEMO_SECONDS or 180)",
    )
    p.add_argument("--dir", type=Path, default=ROOT / "demo-run", help="working folder (wiped)")
    p.add_argument(
        "--token-ttl", type=int, default=90, help="simulated token lifetime in seconds (default 90)"
    )
    p.add_argument(
        "--renew-every",
        type=float,
        help="seconds between renew runs, standing in for cron's hour (default: ttl / 9)",
    )
    p.add_argument("--quiet", action="store_true", help="no live status line")
    return p


def demo_config(workdir: Path, sim: SimProcess, instruments: list[str], ttl: int) -> Path:
    return write_config(
        workdir,
        sim,
        header=f"Written by the demo: the simulator's addresses and a {ttl} s token lifetime.",
        dhan={"timeout": "5s"},
        token={"renew_before": f"{ttl // 2}s", "must_renew_before": f"{ttl // 4}s"},
        session={"days": []},  # no trading session: renew whenever due
        alerts={"log_file": "logs/token_alerts.log"},
        collector={
            **QUOTE_1M,
            "instruments": instruments,
            "grace": "2s",
        },
    )


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir: Path = args.dir
        self.children: list[subprocess.Popen] = []
        self.sim: SimProcess | None = None
        self.renewals_run = 0
        self.renew_failures = 0

    # -- process handling -------------------------------------------------------------------
    def spawn(self, *cmd: str, **kw) -> subprocess.Popen:
        proc = subprocess.Popen(list(cmd), start_new_session=True, **kw)
        self.children.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 12
        for proc in self.children:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self.sim is not None:
            self.sim.stop()  # already ended above: this closes its pipes and log

    # -- the run ------------------------------------------------------------------------------
    def run(self) -> int:
        if self.workdir.exists():
            for path in sorted(self.workdir.rglob("*"), reverse=True):
                path.unlink() if not path.is_dir() else path.rmdir()
        (self.workdir / "state").mkdir(mode=0o700, parents=True)
        (self.workdir / "logs").mkdir()
        print(f"demo: working folder {self.workdir}")

        try:
            self.sim = SimProcess(
                "--token-ttl", f"{self.args.token_ttl}s",
                "--renew-kills-sockets",
                "--ticks-per-second", "4",
                "--seed", "7",
                "--issue-token", str(self.workdir / "state" / "token.json"),
                command=[str(BIN / "dhan_sim")],
                stderr=self.workdir / "logs" / "dhan_sim.log",
                new_session=True,
            )  # fmt: skip
        except RuntimeError:
            print(f"demo: the simulator did not start; see {self.workdir}/logs/dhan_sim.log")
            return 1
        self.children.append(self.sim.proc)
        instruments = sorted(self.stats()["instruments"])
        config = demo_config(self.workdir, self.sim, instruments, self.args.token_ttl)
        print(f"demo: simulator at {self.sim.api_base} with {len(instruments)} instruments")

        collector = self.spawn(
            str(BIN / "collector"), "--config", str(config),
            stdout=subprocess.DEVNULL, stderr=(self.workdir / "logs" / "collector.err").open("w"),
        )  # fmt: skip
        started = time.monotonic()
        next_renew = started
        next_line = started  # off a terminal: a plain line every 10 s, not a redraw each second
        while (left := self.args.seconds - (time.monotonic() - started)) > 0:
            if collector.poll() is not None:
                print(f"\ndemo: the collector exited with {collector.returncode}; see logs/")
                return 1
            if time.monotonic() >= next_renew:
                self.renew(config)
                next_renew += self.args.renew_every or self.args.token_ttl / 9
            if not self.args.quiet and (sys.stdout.isatty() or time.monotonic() >= next_line):
                self.show_status(left)
                next_line += 10
            time.sleep(1)
        print("\ndemo: stopping the collector (SIGTERM) ...")
        collector.send_signal(signal.SIGTERM)
        try:
            code = collector.wait(timeout=15)
        except subprocess.TimeoutExpired:
            print("demo: the collector did not stop within 15 s")
            return 1
        if code != 0:
            print(f"demo: the collector exited with {code}")
            return 1
        return self.summary()

    def renew(self, config: Path) -> None:
        proc = subprocess.run(
            [str(BIN / "renew_token"), "--config", str(config)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        self.renewals_run += 1
        if proc.returncode not in (0, 75):
            self.renew_failures += 1
            print(f"\ndemo: renew_token exited {proc.returncode}: {proc.stderr.strip()[:200]}")

    def running_sim(self) -> SimProcess:
        if self.sim is None:
            raise RuntimeError("the simulator is not running")
        return self.sim

    def stats(self) -> dict:
        return self.running_sim().admin("stats")

    def collector_status(self) -> dict:
        try:
            return json.loads((self.workdir / "state" / "collector_status.json").read_text())
        except (OSError, ValueError):
            return {}

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.workdir / 'data' / 'candles.sqlite'}?mode=ro", uri=True)

    def count_candles(self) -> int:
        try:
            with self.db() as con:
                return con.execute("SELECT count(*) FROM candles").fetchone()[0]
        except sqlite3.Error:
            return 0

    def show_status(self, left: float) -> None:
        try:
            token = json.loads((self.workdir / "state" / "token.json").read_text())
            expires = dt.datetime.fromisoformat(token["expires_at"]).astimezone(IST)
            expiry = (
                f"{expires:%H:%M:%S} IST ({format_remaining(expires - dt.datetime.now(dt.UTC))})"
            )
        except (OSError, ValueError, KeyError):
            expiry = "?"
        st = self.collector_status()
        stats = self.stats()
        line = (
            f"{left:4.0f}s left | token expires {expiry}"
            f" | renewals {stats['rest_calls'].get('RenewToken', 0)}"
            f" | swaps {st.get('swaps', 0)} | reconnects {st.get('reconnects', 0)}"
            f" | packets {st.get('packets', 0)} | candles {self.count_candles()}"
        )
        sys.stdout.write(f"\r{line}   " if sys.stdout.isatty() else f"{line}\n")
        sys.stdout.flush()

    # -- the check ------------------------------------------------------------------------------
    def summary(self) -> int:
        stats = self.stats()
        status = self.collector_status()
        rows, lost_total, ok = [], 0, True
        with self.db() as con:
            for key in sorted(stats["instruments"]):
                seg, sid = key.split(":")
                sent = self.running_sim().admin(f"sent?instrument={key}")
                delivered = [t for t in sent["ticks"] if t[3]]
                bars = con.execute(
                    "SELECT start_utc, open, high, low, close, volume, complete FROM candles"
                    " WHERE segment=? AND security_id=? AND interval_s=60 ORDER BY start_utc",
                    (seg, int(sid)),
                ).fetchall()
                stored = con.execute(
                    "SELECT count(*) FROM ticks WHERE segment=? AND security_id=?", (seg, int(sid))
                ).fetchone()[0]
                lost = len(delivered) - stored
                lost_total += max(lost, 0)
                problems = [] if seg == "IDX_I" else bar_problems(bars, delivered)
                for problem in problems[:3]:
                    print(f"{key}: {problem}")
                good = not problems and lost == 0
                ok &= good
                complete = sum(1 for b in bars if b[6])
                rows.append((key, len(delivered), stored, complete, len(bars) - complete, good))
            longest_gap = con.execute(
                "SELECT coalesce(max(end_utc - start_utc), 0) FROM gaps"
            ).fetchone()[0]
            candles = con.execute("SELECT count(*) FROM candles").fetchone()[0]
        print()
        print(
            f"{'instrument':<16}{'sent':>8}{'stored':>8}{'complete':>10}{'incomplete':>12}  check"
        )
        for key, sent_n, stored, complete, incomplete, good in rows:
            mark = "ok" if good else "MISMATCH"
            print(f"{key:<16}{sent_n:>8}{stored:>8}{complete:>10}{incomplete:>12}  {mark}")
        print("(complete bars equal the bars built from what the simulator sent; incomplete ones")
        print(
            " - the first after a start or a gap - hold only what they prove: bin/backfill heals them)"
        )
        print()
        print(f"renew runs        {self.renewals_run} ({self.renew_failures} failed)")
        print(f"renewals at Dhan  {stats['rest_calls'].get('RenewToken', 0)}")
        print(f"token swaps       {status.get('swaps', 0)} (make-before-break)")
        print(f"reconnects        {status.get('reconnects', 0)} (old sockets killed by Dhan)")
        try:
            current_fp = json.loads((self.workdir / "state" / "token.json").read_text())[
                "fingerprint"
            ]
        except (OSError, ValueError, KeyError):
            current_fp = None
        on_current = status.get("token_fp") == current_fp
        print(
            f"collector token   {status.get('token_fp')} ({'current' if on_current else 'STALE'})"
        )
        ok &= on_current
        print(f"packets lost      {lost_total}")
        print(f"candles written   {candles}")
        print(f"longest gap       {longest_gap:.2f} s")
        print(f"max sockets open  {stats.get('max_sockets_open')}")
        db = self.workdir / "data" / "candles.sqlite"
        print(f"\ncandles are in {db}")
        print(f'  sqlite3 {db} "SELECT * FROM candles ORDER BY start_utc DESC LIMIT 5"')
        # The product's own reader, with the checkout's Python: a bare `python` may lack pandas.
        print(
            f"  {BIN / 'export_candles'} --config {self.workdir / 'config.toml'} --instrument NSE_EQ:1333 | head"
        )
        day = dt.datetime.now(IST).date().isoformat()
        print(
            f'  {sys.executable} -c "import dhanfeed; '
            f"print(dhanfeed.read_candles('{db}', 'NSE_EQ:1333', '1m', '{day}', '{day}'))\""
        )
        ok &= self.renew_failures == 0
        print(
            "\ndemo: "
            + ("PASS: nothing lost, volumes exact" if ok else "FAIL: see the table above")
        )
        return 0 if ok else 1


def bar_problems(bars: list[tuple], delivered: list[list]) -> list[str]:
    """What is wrong with one instrument's 1-minute bars, judged by the ticks the simulator
    delivered ([cum, ltt, ltp, sockets]): a complete bar must equal the bar built from them;
    no bar may hold volume traded before the delivered tick that preceded it; the first bar of
    a run is incomplete. `bars`: (start_utc, open, high, low, close, volume, complete)."""
    ticks = sorted((t[1] - 19800, t[0], round(t[2], 2)) for t in delivered)  # (utc, cum, ltp)
    problems = []
    if bars and bars[0][6]:
        problems.append("the first bar of the run is marked complete")
    for start, o, h, lo, cl, volume, complete in bars:
        inside = [t for t in ticks if start <= t[0] < start + 60]
        before = [t for t in ticks if t[0] < start]
        if not inside:
            problems.append(f"bar {start}: no delivered tick in it")
            continue
        most = inside[-1][1] - (before[-1][1] if before else 0)
        if not 0 <= volume <= most:
            problems.append(f"bar {start}: volume {volume} from outside the bar (at most {most})")
        prices = [t[2] for t in inside]
        if complete and (o, h, lo, cl) != (prices[0], max(prices), min(prices), prices[-1]):
            problems.append(f"bar {start}: complete, but its prices differ from what was sent")
        if complete and volume != most:
            problems.append(f"bar {start}: complete, but volume {volume} != {most}")
    if ticks and sum(b[5] for b in bars) > ticks[-1][1]:
        problems.append("more volume than the simulator traded")
    return problems


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    demo = Demo(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    try:
        return demo.run()
    except KeyboardInterrupt:
        print("\ndemo: interrupted")
        return 130
    finally:
        demo.stop_all()


if __name__ == "__main__":
    sys.exit(main())
