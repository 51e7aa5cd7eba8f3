"""The collector's status file and Prometheus metrics, both from one snapshot.

`state/collector_status.json` is rewritten atomically (temp file + rename) every few
seconds. The metrics carry the same figures: served over HTTP when `[metrics] port` is set,
else written as `collector-<client id>.prom` for node_exporter's textfile collector: one file
per account, so several collectors (dhanfeed-collector@acct1, @acct2, ...) can share the one
directory node_exporter reads. No token here, only its fingerprint.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from dhanfeed import textfiles
from dhanfeed.feed.supervisor import FeedStatus
from dhanfeed.files import write_atomic

logger = logging.getLogger(__name__)

STATUS_FILE = "collector_status.json"
PROGRAM = "collector"  # its textfile: collector-<client id>.prom


def textfile_name(client_id: str) -> str:
    """`collector-<client id>.prom`: the account's own textfile, named as its metrics' label."""
    return textfiles.textfile_name(PROGRAM, client_id)


class CollectorState(enum.StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"  # the final snapshot, written at a clean stop


@dataclasses.dataclass(frozen=True, kw_only=True)
class CollectorStatus(FeedStatus):
    """One snapshot of the collector: the feed's status, then packets, candles and the store.
    The status file's fields (flat) and the metrics' source."""

    pid: int
    state: CollectorState
    up: int  # 1 while running, 0 in the final snapshot
    started_utc: float
    written_at: str  # ISO 8601 UTC
    client_id: str
    database: str
    packets: int
    skipped_packets: int  # undecodable packets
    trades: int
    unknown_segment: int
    ticks_stored: int  # committed, not just handed in
    duplicates: int
    late: int
    dropped: int  # packets the queue refused + rows the store shed or could not write in time
    ticks_dropped: int
    backlog: int  # messages received and not yet consumed
    delay_s: float  # how long the batch consumed last had waited
    lag_s: float | None  # its receive time minus the newest LTT in it
    behind: bool  # falling behind: the warning alert was raised and has not cleared
    last_data_utc: float | None
    bars_closed: int
    bars_stored: int
    store_pending: int  # the backlog: rows handed to the store and not yet committed
    store_errors: int
    store_failing_since: float | None = None  # epoch s: writes have failed since (database away)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


Snapshot = CollectorStatus

# metric name (without _total for counters) → (kind, snapshot key, help)
METRICS = {
    "dhanfeed_collector_up": ("gauge", "up", "1 while the collector runs"),
    "dhanfeed_collector_last_data_timestamp_seconds": (
        "gauge",
        "last_data_utc",
        "UTC epoch of the last data packet received",
    ),
    "dhanfeed_collector_sockets_live": ("gauge", "sockets_live", "feed sockets open and live"),
    "dhanfeed_collector_packets": ("counter", "packets", "data packets received"),
    "dhanfeed_collector_swaps": ("counter", "swaps", "token swaps completed"),
    "dhanfeed_collector_reconnects": ("counter", "reconnects", "socket reconnect attempts"),
    "dhanfeed_collector_duplicates": ("counter", "duplicates", "duplicate packets dropped"),
    "dhanfeed_collector_late_ticks": ("counter", "late", "ticks too late for their bar"),
    "dhanfeed_collector_dropped": (
        "counter",
        "dropped",
        "packets dropped (queue full) plus rows the store shed or never wrote",
    ),
    "dhanfeed_collector_ticks_dropped": (
        "counter",
        "ticks_dropped",
        "raw ticks shed by the store's backlog bound or left unwritten at stop",
    ),
    "dhanfeed_collector_gaps": ("counter", "gaps", "stretches without a live socket"),
    "dhanfeed_collector_store_pending": (
        "gauge",
        "store_pending",
        "rows handed to the store and not yet committed",
    ),
    "dhanfeed_collector_store_errors": ("counter", "store_errors", "failed store commits"),
    "dhanfeed_collector_backlog": ("gauge", "backlog", "messages received, not yet consumed"),
    "dhanfeed_collector_delay_seconds": (
        "gauge",
        "delay_s",
        "how long the last consumed batch of messages waited for the consumer",
    ),
    "dhanfeed_collector_lag_seconds": (
        "gauge",
        "lag_s",
        "receive time minus the newest LTT of the last consumed batch",
    ),
    "dhanfeed_collector_behind": ("gauge", "behind", "1 while the collector is falling behind"),
}


class _SnapshotCollector(Collector):
    def __init__(self, reporter: StatusReporter) -> None:
        self.reporter = reporter

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        snap = self.reporter.last
        # Every series carries the account (as renew_token.prom does): several collectors,
        # one per client id, may feed one Prometheus.
        client_id = str(getattr(snap, "client_id", "") or "")
        for name, (kind, key, text) in METRICS.items():
            value = getattr(snap, key, None)
            if value is None:
                value = 0
            family = GaugeMetricFamily if kind == "gauge" else CounterMetricFamily
            metric = family(name, text, labels=["client_id"])
            metric.add_metric([client_id], float(value))
            yield metric


def last_data_of_previous_run(path: Path) -> float | None:
    """When the previous collector last received data (its status file), so the time it was
    down becomes a recorded gap; None on a first run or an unreadable file."""
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("last_data_utc")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    text = json.dumps(data, indent=1, sort_keys=True, default=str) + "\n"
    write_atomic(path, text.encode("utf-8"), mode=0o644, dir_mode=0o755)


class StatusReporter:
    """Every `every_s`: snapshot → status file + metrics. `stop()` writes a final one."""

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        *,
        status_path: Path,
        every_s: float,
        client_id: str,
        metrics_port: int = 0,
        textfile_dir: Path | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.status_path = Path(status_path)
        self.every_s = max(0.1, every_s)
        self.metrics_port = metrics_port
        self.client_id = client_id
        self.textfile = (
            None
            if metrics_port or textfile_dir is None
            else Path(textfile_dir) / textfile_name(client_id)
        )
        self.last: Snapshot | None = None
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_SnapshotCollector(self))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._server: Any = None

    def serve_metrics(self) -> None:
        """Bind the metrics port (if any); OSError when it is taken. Idempotent."""
        if self.metrics_port and self._server is None:
            server = start_http_server(self.metrics_port, registry=self.registry)
            self._server = server[0] if isinstance(server, tuple) else server
            logger.info("metrics on http port %d", self.metrics_port)

    def start(self) -> None:
        self.serve_metrics()
        self._retire_old_textfile()
        self._thread = threading.Thread(target=self._run, name="status", daemon=True)
        self._thread.start()

    def write_once(self, **overrides: Any) -> Snapshot:
        snap = dataclasses.replace(self.snapshot(), **overrides)
        self.last = snap
        try:
            write_json_atomically(self.status_path, snap.as_dict())
            if self.textfile is not None:
                self.textfile.parent.mkdir(parents=True, exist_ok=True)
                write_to_textfile(str(self.textfile), self.registry)
        except OSError as exc:
            logger.warning("cannot write status: %s: %s", type(exc).__name__, exc.strerror)
        return snap

    def _retire_old_textfile(self) -> None:
        """This account's `collector.prom` of an older dhanfeed goes: beside the new file, its
        frozen mtime would also raise DhanfeedCollectorDown."""
        if self.textfile is not None:
            textfiles.retire_single_name_file(self.textfile.parent, PROGRAM, self.client_id)

    def stop(self, timeout: float = 1.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.write_once(up=0, state=CollectorState.STOPPED)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.write_once()
            except Exception:  # noqa: BLE001 - status must never take the collector down
                logger.exception("status: unexpected error")
            self._stop.wait(self.every_s)
