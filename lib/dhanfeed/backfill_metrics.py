"""`backfill-<client id>.prom` and `reconcile-<client id>.prom` for node_exporter's textfile
collector.

Two files, so that a heal run every 15 minutes does not erase the figures of the last
reconciliation; one pair per account, so that the runs of several accounts can share the one
directory node_exporter reads. Written atomically by prometheus-client; a failure to write is
a warning.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from dhanfeed.textfiles import retire_single_name_file, textfile_name

if TYPE_CHECKING:
    from dhanfeed.backfill_run import RunResult

logger = logging.getLogger(__name__)

BACKFILL = "backfill"  # its textfile: backfill-<client id>.prom
RECONCILE = "reconcile"  # reconcile-<client id>.prom


def write_backfill_metrics(
    directory: Path,
    *,
    client_id: str,
    now: dt.datetime,
    exit_code: int,
    result: RunResult | None,
) -> None:
    registry = CollectorRegistry()

    def gauge(name: str, doc: str, value: float) -> None:
        Gauge(name, doc, ["client_id"], registry=registry).labels(client_id).set(value)

    gauge("dhanfeed_backfill_last_run_timestamp_seconds", "End of the last backfill run.",
          now.timestamp())  # fmt: skip
    gauge("dhanfeed_backfill_last_exit_code", "Exit code of the last backfill run.", exit_code)
    if result is not None:
        for name, doc in (
            ("healed_gaps", "Gaps healed by the last run."),
            ("bars_replaced", "1-minute bars replaced with Dhan's by the last run."),
            ("bars_inserted", "1-minute bars inserted from Dhan's by the last run."),
            ("bars_rebased", "Feed bars re-based at a healed edge by the last run."),
        ):
            gauge(f"dhanfeed_backfill_{name}", doc, result.total(name))
        gauge("dhanfeed_backfill_requests", "Requests to Dhan's chart API in the last run.",
              result.requests)  # fmt: skip
        gauge("dhanfeed_backfill_rate_limited", "Rate-limit answers in the last run.",
              result.rate_limited)  # fmt: skip
    _write(directory, BACKFILL, client_id, registry)
    if result is not None and any(r.figures for r in result.results):
        _write_reconcile(directory, client_id, now, result)


def _write_reconcile(directory: Path, client_id: str, now: dt.datetime, result: RunResult) -> None:
    registry = CollectorRegistry()
    labels = ["client_id", "instrument", "day"]
    gauges = {
        name: Gauge(f"dhanfeed_reconcile_{name}", doc, labels, registry=registry)
        for name, doc in (
            ("minutes_compared", "Complete feed minutes compared with Dhan's bars."),
            ("minutes_differing", "Minutes whose prices differ by more than one tick."),
            ("volume_differing", "Minutes whose volume differs."),
        )
    }
    for r in result.results:
        if r.figures is None:
            continue
        for name, gauge in gauges.items():
            gauge.labels(client_id, r.key, result.day.isoformat()).set(getattr(r.figures, name))
    Gauge("dhanfeed_reconcile_last_run_timestamp_seconds", "End of the last reconciliation.",
          ["client_id"], registry=registry).labels(client_id).set(now.timestamp())  # fmt: skip
    _write(directory, RECONCILE, client_id, registry)


def _write(directory: Path, program: str, client_id: str, registry: CollectorRegistry) -> None:
    path = directory / textfile_name(program, client_id)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(path), registry)
    except OSError as exc:
        logger.warning("cannot write metrics %s: %s", path, exc.strerror or exc)
        return
    retire_single_name_file(directory, program, client_id)
