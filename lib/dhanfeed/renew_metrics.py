"""`renew_token-<client id>.prom` for node_exporter's textfile collector, written atomically.

One file per account, so the renewals of several accounts (dhanfeed-renew@acct1, @acct2, ...)
can share the one directory node_exporter reads. Written with prometheus-client, read back
with its parser (only the last success is kept).
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile
from prometheus_client.parser import text_string_to_metric_families

from dhanfeed.textfiles import account_textfile, retire_single_name_file, textfile_name

logger = logging.getLogger(__name__)

PROGRAM = "renew_token"  # its textfile: renew_token-<client id>.prom
LAST_SUCCESS = "dhanfeed_renew_last_success_timestamp_seconds"


def write_renew_metrics(
    directory: Path,
    *,
    client_id: str,
    now: dt.datetime,
    exit_code: int,
    expires_at: dt.datetime | None,
) -> None:
    """Expiry, last success (kept from the previous file on failure) and the last exit code."""
    path = directory / textfile_name(PROGRAM, client_id)
    previous = account_textfile(directory, PROGRAM, client_id)  # an older renew_token.prom too
    last_success = now.timestamp() if exit_code == 0 else _previous(previous, LAST_SUCCESS)
    registry = CollectorRegistry()
    labels = ["client_id"]

    def gauge(name: str, doc: str, value: float) -> None:
        Gauge(name, doc, labels, registry=registry).labels(client_id).set(value)

    if expires_at is not None:
        gauge(
            "dhanfeed_token_expiry_timestamp_seconds",
            "Expiry of the current token (unix time).",
            expires_at.timestamp(),
        )
    if last_success is not None:
        gauge(
            LAST_SUCCESS, "End of the last renew_token run that exited 0 (unix time).", last_success
        )
    gauge(
        "dhanfeed_renew_last_run_timestamp_seconds",
        "End of the last renew_token run.",
        now.timestamp(),
    )
    gauge("dhanfeed_renew_last_exit_code", "Exit code of the last renew_token run.", exit_code)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(path), registry)
    except OSError as exc:
        logger.warning("cannot write metrics %s: %s", path, exc.strerror or exc)
        return
    retire_single_name_file(directory, PROGRAM, client_id)


def _previous(path: Path, name: str) -> float | None:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name:
                    return float(sample.value)
    except ValueError:
        return None
    return None
