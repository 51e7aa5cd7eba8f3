"""The collector's consumer: feed messages in batches → candles and raw-tick rows → the writer.

The receive threads hand over each socket read as one batch (`sink`: a lock and a deque
append per read, never per message) and wake the consumer only when it sleeps. The consumer
drains every batch waiting, decodes each message, feeds the candle builder (which drops the
duplicates of a swap's overlap), builds the raw-tick rows (`Tick`s made with tuple.__new__,
nothing in between), hands them to the writer in large batches, and closes bars on a timer.

Overload is measured, never silent: `backlog` (messages handed in, not yet consumed),
`delay_s` (how long the batch consumed last waited), `lag_s` (its receive time minus the
newest LTT in it). Waiting longer than `behind_after_s`, or dropping, raises one warning
alert "collector falling behind" with the figures; catching up is logged. Beyond
`max_backlog` messages new reads are dropped and counted (the bars' volume stays exact: it
comes from the cumulative volume of the next packet).
"""

from __future__ import annotations

import logging
import threading
from collections import deque

from dhanfeed.candles import DUPLICATE, LATE, CandleBuilder
from dhanfeed.clock import Clock
from dhanfeed.feed import protocol
from dhanfeed.feed.connection import FeedConnection
from dhanfeed.feed.shard_context import Gap
from dhanfeed.severity import Alert, Severity
from dhanfeed.store import StoreWriter, Tick

logger = logging.getLogger(__name__)

MAX_BACKLOG = 300_000  # messages waiting for the consumer (~60 MB); beyond, reads are dropped
CLOSE_EVERY_S = 0.2  # how often the consumer asks the builder for bars that are due
TICK_BATCH = 5000  # raw-tick rows handed to the writer at once
BEHIND_AFTER_S = 5.0  # a batch that waited longer than this: the collector is falling behind
BEHIND_ALERT = "falling-behind"
IST_OFFSET_S = 19800


class Pipeline(threading.Thread):
    """The consumer thread; see the module docstring."""

    def __init__(
        self,
        builder: CandleBuilder,
        writer: StoreWriter,
        *,
        store_ticks: bool,
        alert: Alert,
        clock: Clock,
        behind_after_s: float = BEHIND_AFTER_S,
        max_backlog: int = MAX_BACKLOG,
    ) -> None:
        super().__init__(name="pipeline", daemon=True)
        self.builder = builder
        self.writer = writer
        self.store_ticks = store_ticks
        self.alert = alert
        self.behind_after_s = behind_after_s
        self.max_backlog = max_backlog
        self.clock = clock
        # (connection id, received at, messages) per batch, or a gap notice: in order with the
        # batches, so the builder stops carrying volume across the gap where it happened
        self._inbox: deque[tuple[int, float, list[bytes]] | Gap] = deque()
        self._lock = threading.Lock()  # backlog and dropped, per batch
        self._ready = threading.Event()  # set by a receive thread when the consumer may sleep
        self._stopping = False
        self._drain_until: float | None = None  # at stop: consume until then, count the rest
        self.backlog = 0  # messages handed in and not yet consumed
        self.dropped = 0  # messages dropped because the backlog was full
        self.packets = 0  # data packets consumed
        self.trades = 0  # packets that carried a trade
        self.skipped = 0  # undecodable packets
        self.unknown_segment = 0
        self.last_data_utc: float | None = None
        self.delay_s = 0.0  # how long the batch consumed last had waited
        self.lag_s: float | None = None  # its receive time minus its newest LTT
        self.behind = False
        self.bars_closed = 0
        self._dropped_seen = 0

    # Called from the receive threads: never blocks on the consumer.
    def sink(self, conn: FeedConnection, messages: list[bytes], received_utc: float) -> None:
        n = len(messages)
        with self._lock:
            if self.backlog + n > self.max_backlog:
                self.dropped += n
                return
            self.backlog += n
            self._inbox.append((conn.conn_id, received_utc, messages))
        if not self._ready.is_set():
            self._ready.set()

    def gap(self, gap: Gap) -> None:
        """Called from a shard worker: the builder must not carry volume across `gap`."""
        with self._lock:
            self._inbox.append(gap)
        if not self._ready.is_set():
            self._ready.set()

    @property
    def duplicates(self) -> int:
        return self.builder.duplicates

    def run(self) -> None:
        next_close = self.clock.monotonic() + CLOSE_EVERY_S
        inbox = self._inbox
        ticks: list[Tick] = []
        while True:
            self._ready.clear()
            if not inbox and not self._stopping:
                self._ready.wait(max(0.0, next_close - self.clock.monotonic()))
            while inbox:
                if self._drain_until is not None and self.clock.monotonic() >= self._drain_until:
                    self._drop_backlog()
                    break
                item = inbox.popleft()
                if isinstance(item, Gap):
                    for inst in item.instruments:
                        self.builder.gap(
                            inst.segment, inst.security_id, item.start_utc, item.end_utc
                        )
                    continue
                source, received_utc, messages = item
                self.delay_s = self.clock.time() - received_utc
                self._consume(source, received_utc, messages, ticks)
                with self._lock:
                    self.backlog -= len(messages)
                if len(ticks) >= TICK_BATCH:
                    self.writer.put_ticks(ticks)
                    ticks = []
                if self.clock.monotonic() >= next_close:
                    break  # bars are closed on time even under a flood
            if ticks:
                self.writer.put_ticks(ticks)
                ticks = []
            if self.clock.monotonic() >= next_close:
                next_close = self.clock.monotonic() + CLOSE_EVERY_S
                self._close_due_bars(backlog=bool(inbox))
                self._watch_load(backlog=bool(inbox))
            if self._stopping and not inbox:
                break
        bars = self.builder.flush(self.clock.time())  # shutdown: every open bar is written
        self.bars_closed += len(bars)
        self.writer.put_bars(bars)

    def stop(self, timeout: float) -> None:
        """Drain what the sockets handed in (what is left when most of `timeout` is spent is
        counted as dropped), flush the open bars, end the thread."""
        self._drain_until = self.clock.monotonic() + 0.7 * timeout
        self._stopping = True
        self._ready.set()
        self.join(timeout)
        if self.is_alive():
            logger.error("pipeline did not stop in %.1fs", timeout)

    def _drop_backlog(self) -> None:
        with self._lock:
            left = self.backlog
            self._inbox.clear()
            self.backlog = 0
            self.dropped += left
        logger.error("stop budget spent: %d messages received and not consumed", left)

    def _consume(
        self, source: int, received_utc: float, messages: list[bytes], ticks: list[Tick]
    ) -> None:
        """Decode one batch; feed the builder; append the raw-tick rows of what it kept."""
        decode, names, add_trade = (
            protocol.decode_trades,
            protocol.SEGMENT_NAMES,
            self.builder.add_trade,
        )
        store_ticks, append, new_row = self.store_ticks, ticks.append, tuple.__new__
        packets = trades_n = newest = 0
        for message in messages:
            trades, others, skipped = decode(message)
            if skipped:
                self.skipped += skipped
            if others:
                packets += sum(1 for p in others if not isinstance(p, protocol.Disconnect))
            packets += len(trades)
            for segment_code, security_id, ltp, ltq, ltt, cum in trades:
                segment = names.get(segment_code)
                if segment is None:
                    self.unknown_segment += 1
                    continue
                trades_n += 1
                outcome = add_trade(segment, security_id, ltp, ltt, cum, received_utc, source)
                if outcome != DUPLICATE:
                    if store_ticks:  # the stored row itself (tuple.__new__: no Python __new__)
                        row = (
                            segment,
                            security_id,
                            ltt - IST_OFFSET_S,
                            ltp,
                            ltq,
                            cum,
                            received_utc,
                        )
                        append(new_row(Tick, row))
                    if outcome == LATE:
                        logger.debug("late tick %s:%s ltt %s", segment, security_id, ltt)
                if ltt > newest:
                    newest = ltt
        self.packets += packets
        self.trades += trades_n
        if packets:
            self.last_data_utc = received_utc
        if newest:
            self.lag_s = received_utc - (newest - IST_OFFSET_S)

    def _close_due_bars(self, *, backlog: bool) -> None:
        # Behind a backlog, close bars only as far as the data consumed, so that queued
        # ticks are not counted late for the wait they spent in the queue.
        now = (
            self.last_data_utc if backlog and self.last_data_utc is not None else self.clock.time()
        )
        bars = self.builder.close_due(now)
        if bars:
            self.bars_closed += len(bars)
            self.writer.put_bars(bars)

    def _watch_load(self, *, backlog: bool) -> None:
        """One warning when the consumer falls behind (or drops); a log line when it catches up."""
        if not backlog:
            self.delay_s = 0.0
        dropped = self.dropped
        new_drops = dropped - self._dropped_seen
        self._dropped_seen = dropped
        behind = self.delay_s > self.behind_after_s or new_drops > 0
        if behind and not self.behind:
            self.behind = True
            lag = "unknown" if self.lag_s is None else f"{self.lag_s:.1f}s"
            self.alert(
                BEHIND_ALERT,
                Severity.WARNING,
                f"collector falling behind: {self.backlog} messages waiting, the oldest for"
                f" {self.delay_s:.1f}s; receive time minus LTT {lag}; {dropped} messages"
                " dropped so far (candle volumes stay exact; raw ticks of dropped messages are"
                " lost)",
            )
        elif self.behind and not backlog and not new_drops:
            self.behind = False
            logger.info("collector caught up: backlog drained (%d messages dropped)", dropped)
