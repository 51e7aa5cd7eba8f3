"""bin/renew_token: keep the Dhan token alive; run hourly from cron or a systemd timer.

Exit codes (design.md): 0 ok / not due / postponed / renewed, 1 an attempt failed but the
token is still valid, 2 usage or config error, 3 a person must log in, 75 another run holds
the lock.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import functools
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

import requests

from dhanfeed.alerts import Alerter, alert_state_path
from dhanfeed.cli.args import ArgumentParser, start_logging
from dhanfeed.clock import Clock, SystemClock
from dhanfeed.config import Config
from dhanfeed.config_load import load_config
from dhanfeed.credentials import load_credentials
from dhanfeed.dhan_api import DhanApi
from dhanfeed.errors import ConfigError, DhanfeedError, ExitCode, UsageError
from dhanfeed.hooks import hook_environment, run_hook
from dhanfeed.logs import close_logging, print_traceback, setup_logging
from dhanfeed.renew_metrics import write_renew_metrics
from dhanfeed.renew_outcome import Outcome, Status
from dhanfeed.renew_state import RenewState, renew_state_path
from dhanfeed.renewer import Renewer
from dhanfeed.run_timer import run_timeout, stop_run_timer
from dhanfeed.severity import Severity
from dhanfeed.status import STATUS_FILE
from dhanfeed.token import format_remaining
from dhanfeed.token_store import TokenRecord, TokenStore

logger = logging.getLogger("dhanfeed.cli.renew_token")
PROG = "renew_token"
_API_SHARE = 0.75  # of run_timeout for Dhan calls; the rest is for writing and alerting


EPILOG = """\
exit codes:
  0 the token is valid and not due, renewal postponed (trading session), renewed or set;
  1 an attempt failed but the current token is still valid (the next run retries);
  2 usage or configuration error; 3 a person must log in (bin/renew_token --set-token);
  75 another run holds the lock, nothing done. --json prints the same as its "status".
"""


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog=PROG,
        description="Renew the Dhan access token when due (run hourly).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config", metavar="PATH", help="config file (default: $DHANFEED_CONFIG or ./config.toml)"
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--check",
        action="store_true",
        help="read-only status; exit 0 while the token is valid, 3 otherwise",
    )
    mode.add_argument(
        "--set-token", action="store_true", help="read a hand-made token from stdin and install it"
    )
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="with --set-token: write the token without asking Dhan's profile endpoint first",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="renew now, whatever the window; retry PIN+TOTP that Dhan called wrong",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="check everything, change nothing at Dhan or on disk"
    )
    p.add_argument("--json", action="store_true", help="one JSON object on stdout instead of text")
    p.add_argument("--debug", action="store_true", help="debug logging and tracebacks")
    return p


def main(argv: list[str] | None = None, *, clock: Clock | None = None) -> int:
    clock = clock or SystemClock()  # the one clock of this run, passed down
    args = None
    try:
        args = build_parser().parse_args(argv)
        if args.check and (args.force or args.dry_run):
            raise UsageError("--check cannot be combined with --force or --dry-run")
        if args.set_token and (args.force or args.dry_run):
            raise UsageError("--set-token cannot be combined with --force or --dry-run")
        if args.no_verify and not args.set_token:
            raise UsageError("--no-verify goes with --set-token only")
        return _run(args, clock)
    except DhanfeedError as exc:
        return _fail(args, exc, exc.exit_code, clock)
    except KeyboardInterrupt:
        return _fail(args, DhanfeedError("interrupted"), ExitCode.RENEWAL_FAILED, clock)
    except Exception as exc:  # noqa: BLE001 - the last resort: say so, with the traceback
        print(f"{PROG}: unexpected error: {exc.__class__.__name__}", file=sys.stderr)
        print_traceback()
        return int(ExitCode.INTERNAL)


# Sections renew_token does not use: a problem there is a warning, never a reason to stop renewing.
OTHER_PROGRAMS_SECTIONS = ("collector", "web")


def _run(args: argparse.Namespace, clock: Clock) -> int:
    config = load_config(args.config, lenient=OTHER_PROGRAMS_SECTIONS)
    trouble = list(config.warnings)
    log_problem = _start_logging(config, args)
    if log_problem:
        trouble.append(log_problem)
    for line in config.warnings:
        logger.warning("config: %s (renew_token does not use it; renewing anyway)", line)
    try:
        if args.check:
            return _check(config, args, clock)
        with run_timeout(config.token.run_timeout.total_seconds()):
            outcome = _renew(config, args, clock, trouble)
        return _report(args, outcome, clock)
    except DhanfeedError as exc:
        return _fail(args, exc, exc.exit_code, clock)
    except Exception:
        logger.exception("unexpected error")  # into the log file too, before it closes
        raise
    finally:
        close_logging()


# ---------------------------------------------------------------------------------------------


def _start_logging(config: Config, args: argparse.Namespace) -> str | None:
    """Log to the log directory; one that cannot be written must not stop renewal: then log
    to stderr (warnings and worse) and return the problem, for an alert."""
    try:
        start_logging(config, PROG, config.logging.dir, debug=args.debug)
        return None
    except ConfigError as exc:
        problem = exc.problems[0].removeprefix("at 'logging.dir': ")
    setup_logging(PROG, None, level="WARNING", debug=args.debug, stream=sys.stderr)
    print(f"{PROG}: {problem}; logging to stderr and renewing anyway", file=sys.stderr)
    return f"{problem} (config {config.path}, logging.dir); renew_token logs to stderr meanwhile"


def _renew(
    config: Config, args: argparse.Namespace, clock: Clock, trouble: Sequence[str] = ()
) -> Outcome:
    credentials = load_credentials(config.totp)
    alerter = None
    if not args.dry_run:
        alerter = _alerter(config, clock)
        if trouble:  # never a reason to stop renewing, but a person should know
            alerter.alert(
                "config_warning",
                Severity.WARNING,
                "renew_token keeps renewing, but: " + "; ".join(trouble),
            )
    deadline = clock.monotonic() + config.token.run_timeout.total_seconds() * _API_SHARE
    renewer = _renewer(
        config,
        clock,
        api=_api_factory(config, deadline, clock),
        credentials=credentials,
        alerter=alerter,
        on_renew=lambda record: _on_renew(config, record),
        on_issued=stop_run_timer,
    )
    if args.set_token:
        text = sys.stdin.read()
        if not text.strip():
            raise UsageError("--set-token: no token on stdin (paste it, then Ctrl-D)")
        outcome = renewer.set_token(text, verify=not args.no_verify)
    else:
        outcome = renewer.run(force=args.force, dry_run=args.dry_run)
    if args.dry_run:
        channels = _alerter(config, clock).channels()
        outcome = dataclasses.replace(outcome, checks=(*outcome.checks, *channels))
    else:
        _metrics(config, outcome, clock.now())
    logger.info(
        "run finished: %s (exit %d)",
        outcome.status,
        int(outcome.exit_code),
        extra={"exit_code": int(outcome.exit_code), "status": outcome.status},
    )
    return outcome


def _check(config: Config, args: argparse.Namespace, clock: Clock) -> int:
    """Read-only status for a person or a monitor. No lock, no network, no writes."""
    try:
        credentials = load_credentials(config.totp)
    except DhanfeedError:
        credentials = None
    now = clock.now()
    outcome = _renewer(config, clock, credentials=credentials).check()  # no token file → exit 3
    token = outcome.token
    assert token is not None
    if args.json:
        print(json.dumps(outcome.as_json(now)))
    else:
        ist = token.expires_at.astimezone(config.session.tz).strftime("%Y-%m-%d %H:%M %Z")
        print(f"client {token.client_id}, token {token.fingerprint} (source {outcome.source})")
        print(f"expires {ist} ({format_remaining(token.remaining(now))})")
        print(f"next run: {outcome.reason}")
    return int(outcome.exit_code)


def _renewer(config: Config, clock: Clock, **parts: Any) -> Renewer:
    """The renewer over this config's token file, its state and the collector's status."""
    parts.setdefault("api", lambda: None)
    parts.setdefault("alerter", None)
    state = RenewState(
        renew_state_path(config.token.file), collector_status=config.state_dir / STATUS_FILE
    )
    return Renewer(
        config=config, store=TokenStore(config.token.file), clock=clock.now, state=state, **parts
    )


# ---------------------------------------------------------------------------------------------


def _alerter(config: Config, clock: Clock) -> Alerter:
    return Alerter(
        config.alerts,
        client_id=config.dhan.client_id,
        state_path=alert_state_path(config.token.file),
        token_file=config.token.file,
        hooks=config.hooks,
        clock=clock.now,
    )


def _api_factory(config: Config, deadline: float, clock: Clock) -> Callable[[], DhanApi]:
    """The one DhanApi of this run, made on first use."""

    @functools.cache
    def api() -> DhanApi:
        return DhanApi(
            requests.Session(),
            api_base=config.dhan.api_base,
            auth_base=config.dhan.auth_base,
            client_id=config.dhan.client_id,
            read_timeout=config.dhan.timeout.total_seconds(),
            deadline=deadline,
            monotonic=clock.monotonic,
            # pauses in proportion to the call timeout: 1 s then 2 s for Dhan's 15 s
            backoff=min(1.0, config.dhan.timeout.total_seconds() / 8),
        )

    return api


def _on_renew(config: Config, record: TokenRecord) -> None:
    if not config.hooks.on_renew:
        return
    env = hook_environment(
        event="renew",
        client_id=record.client_id,
        fingerprint=record.fingerprint,
        expires_at=record.token.expires_at,
        source=record.source,
        severity="info",
        message=f"new token {record.fingerprint} written",
        token_file=config.token.file,
    )
    run_hook("on_renew", config.hooks.on_renew, env, config.hooks.timeout.total_seconds())


def _metrics(config: Config, outcome: Outcome, now: dt.datetime) -> None:
    write_renew_metrics(
        config.metrics_dir,
        client_id=config.dhan.client_id,
        now=now,
        exit_code=int(outcome.exit_code),
        expires_at=outcome.token.expires_at if outcome.token else None,
    )


def _report(args: argparse.Namespace, outcome: Outcome, clock: Clock) -> int:
    if args.json:
        print(json.dumps(outcome.as_json(clock.now())))
    else:
        stream = sys.stdout if outcome.exit_code == 0 else sys.stderr
        for line in outcome.checks:
            print(f"  {line}", file=stream)
        print(f"{PROG}: {outcome.reason}{_what_to_do(outcome)}", file=stream)
    if args.debug and outcome.error is not None:
        print_traceback(outcome.error)
    return int(outcome.exit_code)


def _what_to_do(outcome: Outcome) -> str:
    """The one line of a run that needs a person says what that person does (the alert says more)."""
    if outcome.status is Status.MANUAL and "--set-token" not in outcome.reason:
        return " (make a token on web.dhan.co, then: bin/renew_token --set-token)"
    return ""


def _fail(args: argparse.Namespace | None, exc: BaseException, code: int, clock: Clock) -> int:
    debug = bool(args and args.debug)
    if logging.getLogger().handlers:  # before set-up, logging would only repeat the line
        logger.error("%s", exc, exc_info=debug, extra={"exit_code": int(code)})
    if args is not None and args.json:
        print(
            json.dumps(Outcome(status=Status.of_exit(code), reason=str(exc)).as_json(clock.now()))
        )
    print(f"{PROG}: {exc}", file=sys.stderr)
    if debug:
        print_traceback(exc)
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
