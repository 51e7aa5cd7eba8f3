"""What the executables share: argument parsing and the start of logging, each turning a bad
input into one line and exit 2, and the way a program ends on an error."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any, NoReturn

from dhanfeed.errors import ConfigError, DhanfeedError, ExitCode, UsageError
from dhanfeed.logs import print_traceback, setup_logging

if TYPE_CHECKING:
    from pathlib import Path

    from dhanfeed.config import Config


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line and exit 2, like every other bad input."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see --help)")


def start_logging(config: Config, name: str, log_dir: Path | None, **options: Any) -> None:
    """`setup_logging`, with a log directory that cannot be written reported as the config
    problem it is (exit 2, with its key) instead of a traceback."""
    try:
        setup_logging(name, log_dir, level=config.logging.level, **options)
    except OSError as exc:
        raise ConfigError(
            config.path,
            [f"at 'logging.dir': cannot write logs in {log_dir} ({exc.strerror or exc})"],
        ) from None


def exit_on_error(prog: str, exc: Exception, *, debug: bool) -> int:
    """An expected error: one line (a traceback only with --debug) and its exit code; any
    other: "unexpected error", the traceback, and exit 70."""
    if isinstance(exc, DhanfeedError):
        print(f"{prog}: {exc}", file=sys.stderr)
        if debug:
            print_traceback(exc)
        return int(exc.exit_code)
    print(f"{prog}: unexpected error: {exc.__class__.__name__}", file=sys.stderr)
    print_traceback(exc)
    return int(ExitCode.INTERNAL)
