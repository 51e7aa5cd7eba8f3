"""Logging set-up for the executables (JSON lines) and the redaction filter.

The package only ever calls `logging.getLogger(__name__)`; each `cli/` module calls
`setup_logging` once. Code never logs a secret in the first place; the filter here is the
last line of defence, replacing anything JWT-shaped and any `token=` query value.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys
import traceback
from pathlib import Path
from typing import TextIO

from pythonjsonlogger.json import JsonFormatter

# Three base64url parts, the first two starting like a JSON object ("eyJ" = '{"').
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_TOKEN_QUERY = re.compile(r"((?:access[-_]?)?token=)[^&\s'\"]+", re.IGNORECASE)
_HEADER = re.compile(r"(['\"]access-token['\"]\s*:\s*['\"])[^'\"]+", re.IGNORECASE)
REDACTED = "[REDACTED]"


def redact(text: str) -> str:
    text = _JWT.sub(REDACTED, text)
    text = _TOKEN_QUERY.sub(lambda m: m.group(1) + REDACTED, text)
    return _HEADER.sub(lambda m: m.group(1) + REDACTED, text)


class RedactingFilter(logging.Filter):
    """Rewrites the message, its arguments and any exception text of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        record.msg = redact(str(record.msg))
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, redact(value))
        return True


_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None)))


def setup_logging(
    name: str,
    log_dir: Path | None,
    *,
    level: str = "INFO",
    to_stdout: bool = False,
    debug: bool = False,
    stream: TextIO | None = None,
) -> None:
    """JSON lines to `log_dir/name.log` (rotation-safe), or to stdout for journald.

    The executables print their own one-line summary or error on stderr; the log is the record.
    """
    root = logging.getLogger()
    close_logging()  # a second call (tests call main() many times) replaces, never stacks
    root.setLevel(logging.DEBUG if debug else level.upper())
    fmt = JsonFormatter(
        "{levelname}{name}{message}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",  # ISO 8601 in UTC, first key
    )
    redactor = RedactingFilter()
    if to_stdout or log_dir is None:
        handler: logging.Handler = logging.StreamHandler(stream or sys.stdout)
    else:
        log_dir.mkdir(parents=True, exist_ok=True)
        # WatchedFileHandler reopens the file after logrotate moves it away.
        handler = logging.handlers.WatchedFileHandler(log_dir / f"{name}.log", encoding="utf-8")
    handler.setFormatter(fmt)
    handler.addFilter(redactor)
    handler._dhanfeed = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    # websocket-client logs the URL (which carries the token) on some errors.
    logging.getLogger("websocket").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def close_logging() -> None:
    """Remove and close the handlers that setup_logging installed (and only those)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_dhanfeed", False):
            root.removeHandler(handler)
            handler.close()


def print_traceback(exc: BaseException | None = None) -> None:
    """A traceback on stderr for --debug or an unexpected error, with tokens redacted
    (exception texts from requests and websocket-client can carry URLs with the token)."""
    text = "".join(traceback.format_exception(exc)) if exc else traceback.format_exc()
    print(redact(text), file=sys.stderr, end="")
