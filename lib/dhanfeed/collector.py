"""The collector's parts wired together: sockets → pipeline → candles → store, plus status.

Threads: one receive thread per socket (read, split into messages, answer pings, hand over
one batch per read), one worker per shard (the supervisor), the token watcher, one consumer
(`pipeline.Pipeline`: decoding, de-duplication by the candle builder, bars closed by a
timer), the store writer, and the status reporter.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading

from dhanfeed.candles import CandleBuilder, day_start_utc
from dhanfeed.clock import Clock
from dhanfeed.config import Config
from dhanfeed.errors import ConfigError
from dhanfeed.feed.policy import Timing
from dhanfeed.feed.shard_context import Gap
from dhanfeed.feed.supervisor import Supervisor, log_alert
from dhanfeed.feed.token_watch import TokenWatcher
from dhanfeed.instruments import Instrument
from dhanfeed.pipeline import Pipeline
from dhanfeed.session import SessionCalendar
from dhanfeed.severity import Alert, Severity
from dhanfeed.status import (
    STATUS_FILE,
    CollectorState,
    CollectorStatus,
    StatusReporter,
    last_data_of_previous_run,
)
from dhanfeed.store import Gap as GapRow
from dhanfeed.store import HealableStore, Store, StoreUnavailable, StoreWriter, Tick, open_store
from dhanfeed.web.server import StatusPage

logger = logging.getLogger(__name__)


def open_configured_store(config: Config) -> Store:
    c = config.collector
    return open_store(c.database, client_id=config.dhan.client_id, store_ticks=c.store_ticks)


def open_store_waiting(
    config: Config,
    stop: threading.Event,
    alert: Alert = log_alert,
    *,
    max_wait_s: float = 8.0,
) -> Store | None:
    """The configured store. While its server cannot be reached (`StoreUnavailable`), wait
    and retry (0.5 s doubling to `max_wait_s`), with one alert, until `stop` is set: then
    None. A store that refuses (bad password, unwritable file) raises `StoreError`."""
    wait_s, alerted = 0.5, False
    while True:
        try:
            store = open_configured_store(config)
        except StoreUnavailable as exc:
            if not alerted:
                alerted = True
                alert(
                    "store-unreachable",
                    Severity.CRITICAL,
                    f"waiting for the database before starting (nothing is recorded yet): {exc}",
                )
            if stop.wait(wait_s):
                return None
            wait_s = min(max_wait_s, wait_s * 2)
            continue
        if alerted:
            alert("store-", Severity.RECOVERY, f"{store.location} reachable; starting")
        return store


def resume_open_bars(
    builder: CandleBuilder,
    store: HealableStore,
    instruments: list[Instrument],
    down_since: float | None,
) -> int:
    """Rebuild the bars that were open when the previous run stopped from its raw ticks.

    Per instrument, the ticks from the oldest of its series' newest stored bars on (the ticks of
    stored bars only set the volume base), within the day the previous run stopped on. Returns
    the ticks replayed into open bars. Without stored ticks there is nothing to replay: the
    next bars start afresh, marked incomplete by the builder.
    """
    if down_since is None:
        return 0
    day0 = day_start_utc(down_since)  # only the day the previous run stopped on
    closed = store.last_bar_starts()
    ticks: list[Tick] = []
    for inst in instruments:
        starts = [closed.get((inst.segment, inst.security_id, iv)) for iv in builder.intervals_s]
        since = min(day0 if start is None or start < day0 else start for start in starts)
        ticks += store.ticks(inst.segment, inst.security_id, since_utc=since)
    if not ticks:
        return 0
    first = min(t.received_utc for t in ticks)
    gaps = [(g.segment, g.security_id, g.start_utc, g.end_utc) for g in store.gaps(start_utc=first)]
    live_until = max(down_since or 0.0, max(t.received_utc for t in ticks))
    rows = (
        (t.segment, t.security_id, t.ltp, t.ltt_utc, t.cum_volume, t.received_utc) for t in ticks
    )
    used = builder.resume(rows, closed, live_until, gaps)
    logger.info("resumed %d open bars from %d stored ticks", builder.open_bars, used)
    return used


class Collector:
    """Owns every part; `start()`, then `stop()` (bounded) from the signal handler's thread."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock,
        timing: Timing | None = None,
        alert: Alert = log_alert,
        store: Store | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        c = config.collector
        self.started_utc = clock.time()
        # StoreError: unwritable; see open_store_waiting for a server that is away.
        self.store = store or open_configured_store(config)
        self.writer = StoreWriter(self.store, alert=alert, clock=clock)
        self.builder = CandleBuilder(
            [int(i.total_seconds()) for i in c.intervals],
            grace_s=c.grace.total_seconds(),
            carry=self.store.carry(),
        )
        down_since = last_data_of_previous_run(config.state_dir / STATUS_FILE)
        if c.store_ticks and isinstance(self.store, HealableStore):
            resume_open_bars(self.builder, self.store, c.instruments, down_since)
        timing = timing or Timing()
        self.pipeline = Pipeline(
            self.builder,
            self.writer,
            store_ticks=c.store_ticks,
            alert=alert,
            clock=clock,
            behind_after_s=timing.behind_after_s,
        )
        self.watcher = TokenWatcher(
            config.token.file, config.dhan.client_id, poll_s=timing.token_poll_s, clock=clock.now
        )
        calendar = SessionCalendar.from_config(config.session)
        self.supervisor = Supervisor(
            feed_url=config.dhan.feed_url,
            instruments=c.instruments,
            mode=c.mode,
            watcher=self.watcher,
            sink=self.pipeline.sink,
            in_session=lambda now: calendar.current(now) is not None,
            stale_after_s=c.stale_after.total_seconds(),
            timing=timing,
            on_gap=self._on_gap,
            down_since=down_since,
            duplicates=lambda: self.builder.duplicates,
            alert=alert,
            clock=clock,
        )
        self.watcher.on_change = self.supervisor.token_changed
        self.status = StatusReporter(
            self.snapshot,
            status_path=config.state_dir / STATUS_FILE,
            every_s=c.status_every.total_seconds(),
            client_id=config.dhan.client_id,
            metrics_port=config.metrics.port,
            textfile_dir=config.metrics_dir,
        )
        self.page = StatusPage(config, clock=clock.now) if config.web.port else None

    def start(self) -> None:
        try:  # before any socket opens: a port in use is a config problem, not a crash
            self.status.serve_metrics()
        except OSError as exc:
            raise ConfigError(
                self.config.path,
                [
                    f"at 'metrics.port': cannot serve metrics on port {self.config.metrics.port}"
                    f" ({exc.strerror or exc})"
                ],
            ) from None
        self.watcher.check()  # the first read happens here, so the sockets start at once
        self.watcher.start()
        self.pipeline.start()
        self.supervisor.start()
        self.status.start()
        self._start_page()
        token = self.watcher.current
        logger.info(
            "collector started: %d instruments on %d sockets, token %s",
            len(self.config.collector.instruments),
            len(self.supervisor.workers),
            token.fingerprint if token else "none yet",
        )

    def stop(self, budget_s: float = 8.0) -> bool:
        """Close sockets, flush open bars, commit; True if everything was written in time."""
        deadline = self.clock.monotonic() + budget_s

        def left(share: float) -> float:
            return max(0.1, (deadline - self.clock.monotonic()) * share)

        self.watcher.stop(0.5)
        self.supervisor.stop(left(0.4))
        self.pipeline.stop(left(0.3))
        written = self.writer.close(left(0.8))
        self.status.stop(left(1.0))
        if self.page is not None:
            self.page.stop()
        logger.info(
            "collector stopped: %d packets, %d duplicates, %d late, %d bars, all written at stop: %s,"
            " dropped %d (ticks shed or left unwritten by the store: %d)",
            self.pipeline.packets,
            self.builder.duplicates,
            self.builder.late,
            self.pipeline.bars_closed,
            written,
            self.pipeline.dropped + self.writer.lost_rows,
            self.writer.ticks_dropped,
        )
        return written

    def _start_page(self) -> None:
        """The status page is a convenience: a port in use is a warning, not a stop."""
        if self.page is None:
            return
        try:
            self.page.start()
        except OSError as exc:
            logger.warning(
                "no status page: cannot listen on %s:%d: %s",
                self.config.web.bind,
                self.config.web.port,
                exc.strerror or exc,
            )
            self.page = None

    def _on_gap(self, gap: Gap) -> None:
        self.pipeline.gap(gap)
        self.writer.put_gaps(
            GapRow(i.segment, i.security_id, gap.start_utc, gap.end_utc, gap.reason)
            for i in gap.instruments
        )

    def snapshot(self) -> CollectorStatus:
        feed = self.supervisor.snapshot()
        p = self.pipeline
        return CollectorStatus(
            pid=os.getpid(),
            state=CollectorState.RUNNING,
            up=1,
            started_utc=self.started_utc,
            written_at=self.clock.now().isoformat(timespec="seconds"),
            client_id=self.config.dhan.client_id,
            database=self.store.location,
            **{f.name: getattr(feed, f.name) for f in dataclasses.fields(feed)},
            packets=p.packets,
            skipped_packets=p.skipped,
            trades=p.trades,
            unknown_segment=p.unknown_segment,
            ticks_stored=self.writer.ticks_written,
            duplicates=self.builder.duplicates,
            late=self.builder.late,
            dropped=p.dropped + self.writer.lost_rows,
            ticks_dropped=self.writer.ticks_dropped,
            backlog=p.backlog,
            delay_s=round(p.delay_s, 3),
            lag_s=None if p.lag_s is None else round(p.lag_s, 3),
            behind=p.behind,
            last_data_utc=p.last_data_utc,
            bars_closed=p.bars_closed,
            bars_stored=self.writer.bars_written,
            store_pending=self.writer.pending,
            store_errors=self.writer.errors,
            store_failing_since=self.writer.failing_since,
        )
