"""User hooks (like certbot's deploy hook): `[hooks] on_renew` and `on_alert`.

A hook is a shell command run with facts in environment variables, never the token itself
(a hook that needs it reads the token file named in DHANFEED_TOKEN_FILE), nor the PIN and
TOTP seed variables (removed from its environment). It is bounded by
`[hooks] timeout`; a failing or slow hook is a warning and never changes the exit code.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
import subprocess
from collections.abc import Mapping

from dhanfeed.credentials import ENV_PIN, ENV_SECRET
from dhanfeed.logs import redact

logger = logging.getLogger(__name__)

_OUTPUT_LIMIT = 500
_SECRET_VARIABLES = frozenset({ENV_PIN, ENV_SECRET, "CREDENTIALS_DIRECTORY"})


def hook_environment(
    *,
    event: str,
    client_id: str,
    fingerprint: str | None,
    expires_at: dt.datetime | None,
    source: str | None,
    severity: str = "",
    message: str = "",
    token_file: os.PathLike[str] | str | None = None,
) -> dict[str, str]:
    return {
        "DHANFEED_EVENT": event,
        "DHANFEED_CLIENT_ID": client_id,
        "DHANFEED_FINGERPRINT": fingerprint or "",
        "DHANFEED_EXPIRES_AT": expires_at.isoformat() if expires_at else "",
        "DHANFEED_SOURCE": source or "",
        "DHANFEED_SEVERITY": severity,
        "DHANFEED_MESSAGE": message,
        "DHANFEED_TOKEN_FILE": str(token_file or ""),
    }


def run_hook(name: str, command: str, env: Mapping[str, str], timeout: float) -> bool:
    """Run one hook; True when it exited 0. Failures are logged as warnings only."""
    if not command.strip():
        return True
    try:
        proc = subprocess.Popen(
            command,
            shell=True,
            env=_hook_base_environment() | dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a timeout kills its children too
        )
    except OSError as exc:
        logger.warning("hook %s could not start: %s", name, exc.strerror or exc)
        return False
    try:
        out, _ = proc.communicate(timeout=timeout)
    except BaseException as exc:  # our timeout, or the run's own deadline: leave nothing behind
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        if not isinstance(exc, subprocess.TimeoutExpired):
            raise
        logger.warning("hook %s did not finish within %gs; killed", name, timeout)
        return False
    output = redact(out.decode("utf-8", "replace").strip())
    if proc.returncode != 0:
        logger.warning(
            "hook %s failed with exit code %d: %s", name, proc.returncode, output[:_OUTPUT_LIMIT]
        )
        return False
    logger.info("hook %s ran", name, extra={"hook_output": output[:_OUTPUT_LIMIT]})
    return True


def _hook_base_environment() -> dict[str, str]:
    """Our environment minus the PIN+TOTP secrets and where systemd keeps them."""
    return {k: v for k, v in os.environ.items() if k not in _SECRET_VARIABLES}
