"""`bin/status`: is everything fine? One screen, whether or not the collector runs.

Read-only: no lock, no network, no writes. The facts are gathered by `dhanfeed.health`
and judged by `health_verdict`; this module prints them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import threading
import zoneinfo
from collections.abc import Callable, Sequence

from dhanfeed.cli.args import ArgumentParser, exit_on_error
from dhanfeed.clock import Clock, SystemClock
from dhanfeed.config import Config
from dhanfeed.config_load import load_config
from dhanfeed.health import gather, read_status_file
from dhanfeed.health_report import Level, Report
from dhanfeed.status import STATUS_FILE
from dhanfeed.token import format_remaining

PROG = "status"
RATE_WAIT_MAX_S = 3.0  # at most this long for the collector's next status, to measure msg/s

EPILOG = """\
exit codes:
  0 healthy, 1 degraded (something needs a look), 2 usage or configuration error,
  3 a person must act (token expired or refused and no PIN+TOTP configured, or the collector
  is down during the session).

--json prints one object; its schema is in README.md ("bin/status --json").
"""


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog=PROG,
        description="Show the token, renewer, collector, store and backfill at a glance.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config", metavar="PATH", help="config file (default: $DHANFEED_CONFIG or ./config.toml)"
    )
    p.add_argument("--json", action="store_true", help="one JSON object on stdout instead of text")
    p.add_argument("--debug", action="store_true", help="tracebacks for expected errors too")
    return p


def main(
    argv: Sequence[str] | None = None,
    *,
    clock: Clock | None = None,
) -> int:
    clock = clock or SystemClock()  # the one clock of this run
    args = None
    try:
        args = build_parser().parse_args(argv)
        config = load_config(args.config)
        report = observe(config, clock)
    except Exception as exc:  # noqa: BLE001 - expected: one line; the rest with the traceback
        return exit_on_error(PROG, exc, debug=bool(args and args.debug))
    try:
        print(json.dumps(report.as_json(), indent=1) if args.json else render(report), flush=True)
    except BrokenPipeError:  # `| head`: the reader has what it wanted; the health still counts
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
    return int(report.level)


def observe(config: Config, clock: Clock) -> Report:
    """Gather the facts; with a collector running, wait for its next status to measure msg/s."""
    path = config.state_dir / STATUS_FILE
    first, _ = read_status_file(path, clock.now())
    if first is None or not first.get("up"):
        return gather(config, clock.now())
    wait = min(RATE_WAIT_MAX_S, 1.5 * config.collector.status_every.total_seconds() + 0.2)
    deadline = clock.monotonic() + wait
    never = threading.Event()  # nothing sets it: the clock's wait is a pause
    while clock.monotonic() < deadline:
        clock.wait(never, 0.05)
        second, _ = read_status_file(path, clock.now())
        if second is not None and second.get("snapshot_utc") != first.get("snapshot_utc"):
            break
    return gather(config, clock.now(), previous=first)


# -- the screen --------------------------------------------------------------------------------


def render(r: Report) -> str:
    tz = zoneinfo.ZoneInfo(r.timezone)

    def _hm(iso: str | None) -> str:
        return _when(iso, tz)

    session = "in the session" if r.in_session else "outside the session"
    lines = [f"dhanfeed, client {r.client_id}, {_hm(r.checked_at)} ({session}): {r.level.word}"]
    t = r.token
    if not t.present:
        lines.append(f"token      none usable: {t.problem}")
    else:
        left = format_remaining(dt.timedelta(seconds=t.remaining_s or 0))
        refused = f"; REFUSED by Dhan ({t.refused_detail})" if t.refused else ""
        lines.append(
            f"token      {t.fingerprint} ({t.source}), expires {_hm(t.expires_at)} ({left}){refused}"
        )
    regenerate = "configured" if t.can_regenerate else "not configured"
    written = f"written {_hm(t.written_at)}; " if t.present else ""
    lines.append(f"           {written}PIN+TOTP regeneration {regenerate}")
    w = r.renewer
    if w.last_run is None:
        lines.append("renewer    never run")
    else:
        lines.append(
            f"renewer    last run {_hm(w.last_run)} (exit {w.last_exit_code}),"
            f" last success {_hm(w.last_success) if w.last_success else 'never'}"
        )
    if w.next:
        lines.append(f"           next: {w.next}")
    lines += _collector_lines(r, _hm)
    s = r.store
    if s.problem:
        lines.append(f"store      {s.problem}")
    else:
        lines.append(
            f"store      {s.database}: {s.candles_today} candles today,"
            f" {s.gaps_today} gap(s) today, {_size(s.size_bytes or 0)}"
        )
    b = r.backfill
    backfill = (
        "not run" if b.last_run is None else f"last run {_hm(b.last_run)} (exit {b.last_exit_code})"
    )
    if b.unhealed_gaps is not None:
        backfill += f", {b.unhealed_gaps} gap(s) unhealed"
    lines.append(f"backfill   {backfill}")
    if b.reconciled_day:
        lines.append(
            f"reconcile  {b.reconciled_day}: {b.minutes_differing} of {b.minutes_compared} minutes"
            f" differ, volume differs in {b.volume_differing}"
        )
    else:
        lines.append("reconcile  not run")
    for f in r.findings:
        lines.append(f"{'ACTION NEEDED' if f.level is Level.ACT else 'degraded'}: {f.message}")
    return "\n".join(lines)


def _collector_lines(r: Report, _hm: Callable[[str | None], str]) -> list[str]:
    c = r.collector
    if not c.running:
        return [f"collector  {c.state}" + (f" (pid {c.pid})" if c.pid else "")]
    rate = "" if c.messages_per_s is None else f", {c.messages_per_s:g} msg/s"
    age = "no data yet" if c.last_data_age_s is None else f"last data {c.last_data_age_s:g}s ago"
    lines = [
        f"collector  {c.state}, pid {c.pid}, since {_hm(c.started_at) if c.started_at else '?'};"
        f" {c.sockets_live} socket(s) live, {age}{rate}"
    ]
    for s in c.sockets:
        data = "-" if s.last_data_age_s is None else f"{s.last_data_age_s:g}s ago"
        lines.append(
            f"  shard {s.shard}  {s.role:<5} {s.state:<10} {s.instruments} instruments, last data {data}"
        )
    lines.append(
        f"           since start: {c.swaps} swap(s), {c.reconnects} reconnect(s);"
        f" dropped {c.dropped} (raw ticks {c.ticks_dropped}), store errors {c.store_errors}"
    )
    return lines


def _when(iso: str | None, tz: dt.tzinfo) -> str:
    """'2026-01-05 09:15:00 IST' from an ISO time."""
    if not iso:
        return "?"
    return dt.datetime.fromisoformat(iso).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"


if __name__ == "__main__":
    sys.exit(main())
