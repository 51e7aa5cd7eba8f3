"""bin/backfill: heal the day's gaps from Dhan's 1-minute bars; with --reconcile, compare.

Run every 15 minutes in the session (heal) and once after the close (--reconcile): see
crontab.example and systemd/dhanfeed-backfill.{service,timer}. Reads the token the way the
collector does and never renews it. Works on either store the collector writes: an SQLite
file, or a postgresql:// database (the rows of the config's client id).

Exit codes: 0 done (also when nothing needed healing), 1 Dhan failed for some instrument (the
next run retries), 2 usage or configuration error, 3 token missing, expired or refused, 75
another run holds the lock, 70 an unexpected error (a bug).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from collections.abc import Iterable, Sequence

import requests

from dhanfeed.alerts import Alerter
from dhanfeed.backfill_metrics import write_backfill_metrics
from dhanfeed.backfill_run import Pacer, RunResult, run_backfill
from dhanfeed.cli.args import ArgumentParser
from dhanfeed.clock import Clock, SystemClock
from dhanfeed.config import Config, Instrument
from dhanfeed.config_load import load_config
from dhanfeed.dhan_api import DhanApi
from dhanfeed.errors import (
    DhanfeedError,
    ExitCode,
    StoreError,
    StoreUnavailable,
    TokenFileError,
    UsageError,
)
from dhanfeed.feed.token_watch import TokenRejected, read_token_file
from dhanfeed.logs import close_logging, print_traceback, setup_logging
from dhanfeed.progress import progress
from dhanfeed.severity import Severity
from dhanfeed.store import HealableStore, open_store
from dhanfeed.token import IST

logger = logging.getLogger("dhanfeed.cli.backfill")
PROG = "backfill"
PROGRESS_FROM = 20  # instruments: fewer finish in a few seconds
EPILOG = """\
exit codes:
  0 done (also when nothing needed healing); 1 Dhan failed for some instrument, or the
  database server cannot be reached (the next run retries); 2 usage or configuration error
  (also: no collector database yet); 3 the token is missing, expired or refused; 75 another
  run holds the lock (one run at a time per SQLite file, or per client id in PostgreSQL).
"""


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog=PROG,
        description="Heal gaps in the candles from Dhan's 1-minute intraday bars; with"
        " --reconcile, compare every complete feed bar with Dhan's (run once after the close)."
        " Works on the collector's database, SQLite or PostgreSQL ([collector] database).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config", metavar="PATH", help="config file (default: $DHANFEED_CONFIG or ./config.toml)"
    )
    p.add_argument("--date", metavar="YYYY-MM-DD", help="the IST trading day (default: today, IST)")
    p.add_argument(
        "--reconcile",
        action="store_true",
        help="also compare complete feed bars with Dhan's and store the figures",
    )
    p.add_argument(
        "--prefer",
        choices=["dhan"],
        help="'dhan': with --reconcile, also replace feed bars that differ from Dhan's",
    )
    p.add_argument("--dry-run", action="store_true", help="fetch and compare, write nothing")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--debug", action="store_true", help="debug logging and tracebacks")
    return p


def main(argv: Sequence[str] | None = None, *, now: dt.datetime | None = None) -> int:
    args = None
    try:
        args = build_parser().parse_args(argv)
        if args.prefer and not args.reconcile:
            raise UsageError("--prefer dhan needs --reconcile")
        clock = SystemClock()  # the one clock of this run (`now`: a test's fixed instant)
        return _run(args, clock, now or clock.now())
    except DhanfeedError as exc:
        return _fail(args, exc, exc.exit_code)
    except KeyboardInterrupt:
        return _fail(args, DhanfeedError("interrupted"), ExitCode.FAILED)
    except Exception as exc:  # noqa: BLE001 - the last resort: say so, with the traceback
        print(f"{PROG}: unexpected error: {exc.__class__.__name__}", file=sys.stderr)
        print_traceback()
        return int(ExitCode.INTERNAL)


def _run(args: argparse.Namespace, clock: Clock, now: dt.datetime) -> int:
    day = _day(args.date, now)
    config = load_config(args.config)
    setup_logging(PROG, config.logging.dir, level=config.logging.level, debug=args.debug)
    try:
        return _locked(config, args, day, clock, now)
    except DhanfeedError as exc:
        _metrics(config, now, int(exc.exit_code), None)
        raise
    finally:
        close_logging()


def _day(text: str | None, now: dt.datetime) -> dt.date:
    today = now.astimezone(IST).date()
    if text is None:
        return today
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--date: expected YYYY-MM-DD, got {text!r}") from None
    if day > today:
        raise UsageError(f"--date {day} is in the future (today is {today} in IST)")
    return day


def _locked(
    config: Config, args: argparse.Namespace, day: dt.date, clock: Clock, now: dt.datetime
) -> int:
    store = _open(config, readonly=args.dry_run)
    try:
        with store.backfill_lock():
            return _heal(config, args, day, clock, now, store)
    finally:
        store.close()


def _open(config: Config, *, readonly: bool) -> HealableStore:
    """The collector's database; it must exist and be one (a typo must not create a new
    one), so it is first opened read-only. A server that is away is exit 1 (the next run
    retries); a database that is missing, not ours or refuses us is a configuration error."""
    target, client_id = config.collector.database, config.dhan.client_id
    try:
        reader = open_store(target, client_id=client_id, store_ticks=False, readonly=True)
    except StoreUnavailable:
        raise
    except StoreError as exc:
        raise UsageError(f"collector.database: {exc}; has the collector run?") from None
    if readonly:
        return reader
    reader.close()
    return open_store(target, client_id=client_id, store_ticks=False)


def _heal(
    config: Config,
    args: argparse.Namespace,
    day: dt.date,
    clock: Clock,
    now: dt.datetime,
    store: HealableStore,
) -> int:
    try:
        token = read_token_file(config.token.file, config.dhan.client_id, now)
    except TokenRejected as exc:
        raise TokenFileError(f"no usable token: {exc}") from None
    logger.info(
        "backfill %s of %s with token %s%s",
        day,
        store.location,
        token.fingerprint,
        " (dry run)" if args.dry_run else "",
    )
    api = DhanApi(
        requests.Session(),
        api_base=config.dhan.api_base,
        auth_base=config.dhan.auth_base,
        client_id=config.dhan.client_id,
        read_timeout=config.dhan.timeout.total_seconds(),
        monotonic=clock.monotonic,
    )
    result = run_backfill(
        config, store, api, token.access_token,
        day=day, now_utc=now.timestamp(), reconcile=args.reconcile,
        prefer_dhan=args.prefer == "dhan", dry_run=args.dry_run,
        progress=_no_progress if args.json else _progress,
        pacer=Pacer(config.backfill.requests_per_second, clock=clock.monotonic),
        alert=_alerter(config, clock) if not args.dry_run else _log_alert,
    )  # fmt: skip
    if not args.dry_run:
        _metrics(config, now, int(result.exit_code), result)
    _report(args, result)
    return int(result.exit_code)


def _progress(instruments: list[Instrument]) -> Iterable[Instrument]:
    """A bar on a terminal for a run long enough to want one (about 4 s at Dhan's 5/s)."""
    return progress(
        instruments, total=len(instruments), unit="instrument", desc=PROG, min_items=PROGRESS_FROM
    )


def _no_progress(instruments: list[Instrument]) -> Iterable[Instrument]:
    return instruments


def _log_alert(condition: str, severity: Severity, message: str) -> None:
    logger.warning("%s (alert %s not sent: dry run)", message, condition)


def _alerter(config: Config, clock: Clock):  # noqa: ANN202
    alerter = Alerter(
        config.alerts,
        client_id=config.dhan.client_id,
        state_path=config.state_dir / "backfill_alerts.json",
        token_file=config.token.file,
        hooks=config.hooks,
        clock=clock.now,
    )

    def alert(condition: str, severity: Severity, message: str) -> None:
        try:  # the alerter logs it too
            alerter.alert(condition, severity, message, source=PROG)
        except Exception:  # noqa: BLE001 - a failing channel never hides the run's own result
            logger.exception("alert %s could not be sent", condition)

    return alert


def _metrics(config: Config, now: dt.datetime, exit_code: int, result: RunResult | None) -> None:
    write_backfill_metrics(config.metrics_dir, client_id=config.dhan.client_id, now=now,
                           exit_code=exit_code, result=result)  # fmt: skip


def _report(args: argparse.Namespace, result: RunResult) -> None:
    if args.json:
        print(json.dumps(result.as_json()))
        return
    stream = sys.stdout if result.exit_code == 0 else sys.stderr
    for r in result.results:
        if r.error:
            print(f"  {r.key}: failed: {r.error}", file=stream)
        elif r.skipped:
            print(f"  {r.key}: skipped: {r.skipped}", file=stream)
        if r.figures is not None:
            f = r.figures
            worst = ""
            if f.worst_start_utc is not None:
                at = dt.datetime.fromtimestamp(f.worst_start_utc, IST).strftime("%H:%M")
                worst = f", worst {at} IST" + (f" ({f.worst_diff:g})" if f.worst_diff else "")
            print(
                f"  {r.key}: {f.minutes_compared} minutes compared, {f.minutes_differing} differ"
                f" in price, {f.volume_differing} in volume{worst}",
                file=stream,
            )
    verb = "would replace" if result.dry_run else "replaced"
    print(
        f"{PROG}: {result.day}: {verb} {result.total('bars_replaced')} bars, inserted"
        f" {result.total('bars_inserted')}, healed {result.total('healed_gaps')} gaps"
        f" ({result.requests} requests to Dhan)",
        file=stream,
    )


def _fail(args: argparse.Namespace | None, exc: BaseException, code: int) -> int:
    debug = bool(args and args.debug)
    if logging.getLogger().handlers:
        logger.error("%s", exc, exc_info=debug, extra={"exit_code": int(code)})
    if args is not None and args.json:
        print(json.dumps({"status": "error", "reason": str(exc), "exit_code": int(code)}))
    print(f"{PROG}: {exc}", file=sys.stderr)
    if debug:
        print_traceback(exc)
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
