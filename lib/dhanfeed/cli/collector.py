"""`bin/collector`: Dhan's live feed → OHLCV candles in SQLite or PostgreSQL, with token hot swap.

    bin/collector [--config PATH] [--debug] [--log-stdout]

Runs in the foreground (systemd: Type=simple). Run by hand with stderr on a terminal, it also
prints short lines (start-up, connects, swaps, reconnects, gaps) and a status line every few
seconds; under systemd or cron it only writes its JSON log. SIGTERM/SIGINT: close the sockets (bounded),
write every open bar, commit, exit 0 within 10 s. One collector per client id: a second one
exits 75. A missing token file is waited for (one alert); an unwritable database exits 1.
`main(timing=...)` lets a test scale the delays of `dhanfeed.feed.policy.Timing` down.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from filelock import FileLock, Timeout

from dhanfeed import console
from dhanfeed.alerts import Alerter
from dhanfeed.cli.args import ArgumentParser, exit_on_error, start_logging
from dhanfeed.clock import SystemClock
from dhanfeed.collector import Collector, open_store_waiting
from dhanfeed.config_load import load_config
from dhanfeed.errors import ExitCode, LockBusy, UsageError
from dhanfeed.feed.policy import Timing
from dhanfeed.feed.supervisor import log_alert
from dhanfeed.severity import Alert, Severity

logger = logging.getLogger("dhanfeed.collector")

STOP_BUDGET_S = 8.0  # of the 10 s a service manager is promised


def lock_path(token_file: Path, client_id: str) -> Path:
    return token_file.parent / f"collector-{client_id}.lock"


EPILOG = """\
Runs until SIGTERM/SIGINT. Without a usable token file it waits for one (one alert,
collector-token-missing) instead of exiting: install a token with bin/renew_token --set-token.

exit codes:
  0 stopped on SIGTERM/SIGINT with every open bar written; 1 the database cannot be written;
  2 usage or configuration error (also: a log directory it cannot write, a metrics port in
  use); 75 another collector for the same client id is running.
"""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(
        prog="collector",
        description="Dhan live feed → OHLCV candles in SQLite or PostgreSQL ([collector] database).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", metavar="PATH", help="config file (default: $DHANFEED_CONFIG or ./config.toml)"
    )
    parser.add_argument("--debug", action="store_true", help="debug logging; tracebacks")
    parser.add_argument(
        "--log-stdout",
        action="store_true",
        help="JSON log lines to stdout (for journald) instead of the log file"
        " ([logging] dir, default logs/collector.log)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, *, timing: Timing | None = None) -> int:
    try:
        args = parse_args(argv)
    except UsageError as exc:
        print(f"collector: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    try:
        return run(args, timing or Timing())
    except Exception as exc:  # noqa: BLE001 - expected: one line; the rest with the traceback
        return exit_on_error("collector", exc, debug=args.debug)


def run(args: argparse.Namespace, timing: Timing) -> int:
    stop = threading.Event()  # set by SIGTERM/SIGINT; installed first so start-up is covered

    def on_signal(signum: int, frame: object) -> None:
        logger.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    config = load_config(args.config)
    start_logging(
        config,
        "collector",
        None if args.log_stdout else config.logging.dir,
        to_stdout=args.log_stdout,
        debug=args.debug,
    )
    speak = console.wanted(sys.stderr, log_stdout=args.log_stdout)
    if speak:  # run by hand: say what happens, not only in logs/collector.log
        console.attach(sys.stderr)
    if not config.collector.instruments:
        raise UsageError("no instruments: set collector.instruments in the config")
    lock_file = lock_path(config.token.file, config.dhan.client_id)
    lock_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # state/ is private
    lock = FileLock(lock_file, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise LockBusy(
            f"another collector for client id {config.dhan.client_id} is running"
            f" (lock {lock_file} is held)",
            path=lock_file,
        ) from None
    try:
        return _run_locked(config, timing, Collector, stop, speak=speak)
    finally:
        lock.release()


def make_alert(config, clock) -> Alert:  # noqa: ANN001
    """The collector's alert callback: logged, then sent through `dhanfeed.alerts` off-thread
    (a slow channel or hook must never hold up a socket worker)."""
    alerter = Alerter(
        config.alerts,
        client_id=config.dhan.client_id,
        state_path=config.state_dir / "collector_alerts.json",  # not the renewer's state
        token_file=config.token.file,
        hooks=config.hooks,
        clock=clock.now,
    )
    lock = threading.Lock()  # the alert state file is read-modify-written

    def send(condition: str, severity: Severity, message: str) -> None:
        with lock:
            try:
                if severity is Severity.RECOVERY:  # `condition` is a prefix: those have ended
                    alerter.clear(f"collector-{condition}", source="collector")
                else:
                    alerter.alert(f"collector-{condition}", severity, message, source="collector")
            except Exception:  # noqa: BLE001 - an alert channel never stops the collector
                logger.exception("alert %s could not be sent", condition)

    def alert(condition: str, severity: Severity, message: str) -> None:
        log_alert(condition, severity, message)
        threading.Thread(
            target=send,
            args=(condition, severity, message),
            name="alert",
            daemon=True,
        ).start()

    return alert


def _run_locked(config, timing, collector_cls, stop: threading.Event, *, speak: bool) -> int:  # noqa: ANN001
    clock = SystemClock()  # the one clock, passed down to every thread of the collector
    alert = make_alert(config, clock)
    store = open_store_waiting(config, stop, alert)  # StoreError (refused, unwritable): exit 1
    if store is None:  # stopped while waiting for the database
        return int(ExitCode.OK)
    collector = collector_cls(config, clock=clock, timing=timing, alert=alert, store=store)
    collector.start()
    next_line = clock.monotonic() + console.STATUS_LINE_EVERY_S
    while not stop.wait(1.0):
        if speak and clock.monotonic() >= next_line:
            next_line += console.STATUS_LINE_EVERY_S
            print(console.status_line(collector.snapshot(), clock.now()), file=sys.stderr)
    written = collector.stop(STOP_BUDGET_S)
    if not written:
        logger.error("some rows could not be written before exit")
    return int(ExitCode.OK)


if __name__ == "__main__":
    sys.exit(main())
