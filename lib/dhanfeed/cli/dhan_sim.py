"""bin/dhan_sim: a local Dhan (REST + live feed + admin endpoint) on loopback.

Prints exactly one JSON line on stdout (api_base, auth_base, feed_url, admin_url,
client_id), then logs JSON lines to stderr, until SIGTERM/SIGINT (exit 0). Bad options or
a port in use: one line on stderr, exit 2.

Test-only options, left out of --help because the defaults are Dhan's own keepalive:
  --ping-interval SECONDS  the server pings every SECONDS (default 10)
  --ping-timeout SECONDS   a client that has not answered a ping for SECONDS is closed
                           (default 40; must exceed --ping-interval)
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import logging
import signal
import sys

import pyotp

from dhanfeed.cli.args import ArgumentParser, exit_on_error
from dhanfeed.config import parse_duration
from dhanfeed.errors import ExitCode, UsageError
from dhanfeed.logs import setup_logging

try:
    from dhanfeed.sim import tokens
    from dhanfeed.sim.app import SimOptions, Simulator
    from dhanfeed.sim.feed import MAX_BATCH, MULTI_MODES
    from dhanfeed.sim.market import DEFAULT_INSTRUMENTS, parse_instruments
except ModuleNotFoundError as missing:  # websockets comes with the `sim` extra only
    if (missing.name or "").startswith("dhanfeed"):
        raise
    print(f"dhan_sim: the simulator needs the 'sim' extra ({missing.name} is not installed): "
          "pip install 'dhanfeed[sim]'", file=sys.stderr)  # fmt: skip
    raise SystemExit(ExitCode.USAGE) from None

logger = logging.getLogger("dhanfeed.cli.dhan_sim")
PROG = "dhan_sim"
ADMIN_HELP = """\
admin routes (on the REST port, under /__sim/; the start-up line gives admin_url):
  POST /__sim/issue-token   a new SELF token, as if made by hand on Dhan Web; it supersedes
                            the current one (optional "ttl_s", and "path" to write a token file)
      curl -s -X POST "$ADMIN/issue-token" -d '{"ttl_s": 7200}'
  POST /__sim/fault         a REST fault ("rest": endpoint, mode 500|429|hang|malformed|html|
                            no_token|ragged, count) or a feed fault (drop_sockets, stall,
                            handshake_429, garbage, truncated, disconnect with a code)
      curl -s -X POST "$ADMIN/fault" -d '{"kind": "rest", "endpoint": "RenewToken", "mode": "500"}'
      curl -s -X POST "$ADMIN/fault" -d '{"kind": "rest", "endpoint": "intraday", "mode": "429"}'
      curl -s -X POST "$ADMIN/fault" -d '{"kind": "disconnect", "code": 807}'
  POST /__sim/clear-faults  disarm every fault
      curl -s -X POST "$ADMIN/clear-faults" -d '{}'
  POST /__sim/policy        switch unconfirmed behaviour (renew_kills_sockets, renew_field,
                            token_ttl_s, multi_mode)
      curl -s -X POST "$ADMIN/policy" -d '{"renew_kills_sockets": true}'
  GET  /__sim/stats         REST calls per endpoint, sockets, the current token's fingerprint
      curl -s "$ADMIN/stats"
  GET  /__sim/sent?instrument=SEG:ID   every tick sent for one instrument (for loss checks)
      curl -s "$ADMIN/sent?instrument=NSE_EQ:1333"
"""


def build_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(
        prog=PROG,
        description="A local Dhan: REST API, live feed and admin endpoint.",
        epilog=ADMIN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ap.add_argument("--rest-port", type=_port, default=8765, help="REST/admin port (0 = any)")
    ap.add_argument("--feed-port", type=_port, default=8766, help="feed port (0 = any)")
    ap.add_argument("--client-id", default="1000000001", help="the Dhan client id (digits)")
    ap.add_argument("--token-ttl", default="24h", help="token lifetime, e.g. 24h, 90s")
    ap.add_argument("--seed", type=int, default=1, help="random-walk seed (runs repeat)")
    ap.add_argument(
        "--instruments",
        default=",".join(DEFAULT_INSTRUMENTS),
        help="SEG:ID[,SEG:ID...]; ranges SEG:FIRST-LAST allowed",
    )
    ap.add_argument("--ticks-per-second", type=float, default=2.0,
                    help="packets per second per instrument (up to 1000; the total is the "
                    "send rate a benchmark asks for)")  # fmt: skip
    ap.add_argument("--batch", type=int, default=1, metavar="N",
                    help=f"pack up to N packets into one WebSocket message (1..{MAX_BATCH}; "
                    "default 1, as Dhan does: only for benchmarks of decoding)")  # fmt: skip
    ap.add_argument("--trades-per-packet", type=int, default=3, metavar="N",
                    help="trades the market makes per packet it sends (the feed is sampled; "
                    "intraday bars count every trade; default 3)")  # fmt: skip
    ap.add_argument("--multi-mode", choices=MULTI_MODES, default="last",
                    help="one instrument subscribed in several modes on a socket: the last "
                    "mode wins (default) or each mode streams")  # fmt: skip
    ap.add_argument("--pin", help="enable PIN+TOTP generation with this PIN")
    ap.add_argument("--totp-secret", help="base32 TOTP seed for PIN+TOTP generation")
    ap.add_argument("--renew-field", choices=("token", "accessToken"), default="token",
                    help="name of the new token in RenewToken's body")  # fmt: skip
    kills = ap.add_mutually_exclusive_group()
    kills.add_argument("--renew-kills-sockets", dest="renew_kills", action="store_true",
                       help="renewal sends 807 to sockets of the old token and closes them")  # fmt: skip
    kills.add_argument("--renew-keeps-sockets", dest="renew_kills", action="store_false",
                       help="renewal leaves open sockets streaming (default)")  # fmt: skip
    ap.set_defaults(renew_kills=False)
    # Test-only (see the module docstring): tests shorten Dhan's 10 s / 40 s keepalive.
    ap.add_argument("--ping-interval", type=float, default=10.0, help=argparse.SUPPRESS)
    ap.add_argument("--ping-timeout", type=float, default=40.0, help=argparse.SUPPRESS)
    ap.add_argument("--issue-token", metavar="PATH", help="write a fresh SELF token file at start")
    ap.add_argument("--quiet", action="store_true", help="log warnings and errors only")
    ap.add_argument("--debug", action="store_true", help="debug logs; tracebacks on errors")
    return ap


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {port}")
    return port


def options_from(args: argparse.Namespace) -> SimOptions:
    if not args.client_id.isdigit():
        raise UsageError(f"--client-id must be digits, got {args.client_id!r}")
    try:
        ttl = parse_duration(args.token_ttl).total_seconds()
    except ValueError as exc:
        raise UsageError(f"--token-ttl: {exc}") from None
    if ttl < 1:
        raise UsageError("--token-ttl must be at least 1s")
    if not args.ticks_per_second > 0 or args.ticks_per_second > 1000:
        raise UsageError("--ticks-per-second must be > 0 and <= 1000")
    if not 1 <= args.trades_per_packet <= 1000:
        raise UsageError("--trades-per-packet must be 1..1000")
    if not 1 <= args.batch <= MAX_BATCH:
        raise UsageError(f"--batch must be 1..{MAX_BATCH}")
    if not 0 < args.ping_interval < args.ping_timeout:
        raise UsageError("--ping-interval must be > 0 and shorter than --ping-timeout")
    try:
        instruments = tuple(parse_instruments(args.instruments))
    except ValueError as exc:
        raise UsageError(f"--instruments: {exc}") from None
    if bool(args.pin) != bool(args.totp_secret):
        raise UsageError("--pin and --totp-secret go together")
    if args.totp_secret:
        try:
            pyotp.TOTP(args.totp_secret).now()
        except Exception as exc:
            raise UsageError(f"--totp-secret is not a usable base32 seed ({exc})") from None
    return SimOptions(
        host=args.host,
        rest_port=args.rest_port,
        feed_port=args.feed_port,
        client_id=args.client_id,
        token_ttl_s=ttl,
        seed=args.seed,
        instruments=instruments,
        ticks_per_second=args.ticks_per_second,
        pin=args.pin,
        totp_secret=args.totp_secret,
        renew_field=args.renew_field,
        renew_kills_sockets=args.renew_kills,
        ping_interval_s=args.ping_interval,
        ping_timeout_s=args.ping_timeout,
        batch=args.batch,
        trades_per_packet=args.trades_per_packet,
        multi_mode=args.multi_mode,
    )


async def serve(options: SimOptions, issue_token_path: str | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sim = Simulator(options)
    try:
        urls = await sim.start()
    except OSError as exc:
        what = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise UsageError(
            f"cannot listen on {options.host} (rest port {options.rest_port}, "
            f"feed port {options.feed_port}): {what or exc}"
        ) from None
    if issue_token_path:
        issued = sim.registry.mint(tokens.SELF)
        try:
            record = tokens.token_file_record(issued, options.client_id, "manual")
            tokens.write_token_file(issue_token_path, record)
        except OSError as exc:
            await sim.stop()
            raise UsageError(
                f"cannot write token file {issue_token_path}: {exc.strerror}"
            ) from None
        logger.info("issued SELF token %s into %s", issued.fingerprint, issue_token_path)
    sys.stdout.write(json.dumps(urls) + "\n")
    sys.stdout.flush()
    logger.info("dhan_sim listening: REST %s, feed %s", urls["api_base"], urls["feed_url"])
    await stop.wait()
    logger.info("dhan_sim stopping")
    await sim.stop()


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        options = options_from(args)
        setup_logging(PROG, None, level="WARNING" if args.quiet else "INFO", to_stdout=True,
                      debug=args.debug)  # fmt: skip
        for handler in logging.getLogger().handlers:  # stdout carries only the start-up line
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(sys.stderr)
        logging.getLogger("dhanfeed.sim.ws").setLevel(logging.WARNING)
        logging.getLogger("websockets").setLevel(logging.WARNING)
        asyncio.run(serve(options, args.issue_token))
        return ExitCode.OK
    except KeyboardInterrupt:
        return ExitCode.OK
    except Exception as exc:  # noqa: BLE001 - expected: one line; the rest with the traceback
        return exit_on_error(PROG, exc, debug=False)


if __name__ == "__main__":
    sys.exit(main())
