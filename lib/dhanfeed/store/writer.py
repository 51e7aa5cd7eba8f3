"""The store's writer thread: the collector hands rows in; they are committed in batches.

`StoreWriter` never raises into the caller's thread: it counts, logs and keeps the rows for a
retry, and exposes `errors`, `last_error`, `pending`, `lost_rows` and `ticks_dropped`. Bars and
gaps never wait behind raw ticks, and only ticks are ever shed. It works with any `Store`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable

from dhanfeed.candles import Bar
from dhanfeed.clock import Clock, SystemClock
from dhanfeed.errors import StoreError
from dhanfeed.severity import Alert, Severity
from dhanfeed.store.base import Gap, Store, Tick

__all__ = ["MAX_PENDING_TICKS", "StoreWriter"]

logger = logging.getLogger(__name__)

LOG_FAILURES_EVERY_S = 30.0
# Ticks waiting for the store beyond which new ticks are shed (~250 bytes each: ~75 MB; 5 s of a
# 60k/s feed, 15 s at 20k/s: room for a checkpoint or a slow disk, not for a writer that
# cannot keep up).
MAX_PENDING_TICKS = 300_000


class StoreWriter:
    """A writer thread: the collector hands rows in; they are committed in batches.

    Two queues: bars and gaps ("urgent" rows, few and not replaceable) and raw ticks (many, and
    the part that may be shed). Every transaction takes *all* pending urgent rows first, then at
    most `max_rows` ticks, so a tick backlog delays a bar by at most the one batch in flight.

    A batch is committed when `max_delay_s` has passed since the writer saw its first row, when
    `max_rows` ticks wait, or at `flush`/`close`. A failed commit is rolled back, counted, logged
    (throttled) and retried with the same rows, urgent rows alone first, so a fault that only
    the ticks hit (a bad row, a broken `ticks` table) never holds the bars back.

    Tick backlog bound: when more than `max_pending_ticks` ticks wait (a writer slower than the
    feed, or a failing database), new ticks are refused until the backlog has drained to half
    of it; refused ticks are counted in `ticks_dropped` and `lost_rows`, with one warning when
    an episode starts and one line with its count when it ends. The newest are dropped, not the
    oldest: refusing at the door costs the producer nothing, never touches rows already queued
    or in flight, and the hysteresis leaves one contiguous hole per episode (the warning and
    the summary bound it) instead of ticks scattered out of a backlog that is being written.

    `close(timeout)` writes every pending bar and gap first, then as many tick batches as fit in
    the budget; what is left is counted in `lost_rows` (ticks also in `ticks_dropped`) and
    logged once with the count.
    """

    def __init__(
        self,
        store: Store,
        *,
        max_delay_s: float = 0.25,
        max_rows: int = 20000,
        max_pending_ticks: int = MAX_PENDING_TICKS,
        retry_s: float = 0.5,
        clock: Clock | None = None,
        alert: Alert | None = None,
    ) -> None:
        self.store = store
        # The first failure of an episode, then its recovery.
        self._alert: Alert = alert or (lambda condition, severity, message: None)
        self.failing_since: float | None = None  # epoch s: when the failing episode began
        self.max_delay_s = max_delay_s
        self.max_rows = max(1, max_rows)
        self.max_pending_ticks = max(1, max_pending_ticks)
        self.retry_s = retry_s
        self._clock = clock or SystemClock()
        self._cond = threading.Condition()
        # Shared with the producers, under _cond:
        self._bars: list[Bar] = []
        self._gaps: list[Gap] = []
        self._ticks: deque[list[Tick]] = deque()  # chunks as handed in
        self._head = 0  # rows of _ticks[0] already taken
        self._queued_ticks = 0
        self._urgent_in = self._urgent_done = 0  # rows accepted / written or given up
        self._ticks_in = self._ticks_done = 0
        self._flushes = 0  # flush() calls waiting: write without waiting for max_delay_s
        self._stop_at: float | None = None
        self._due_at: float | None = None  # when the batch being gathered is due
        self._closed = False
        self._abandoned = False  # close() gave up on the thread and counted its rows as lost
        self._shedding = False
        self._shed_in_episode = 0
        # The thread's own: rows taken off the queues, kept across failed commits.
        self._held_bars: list[Bar] = []
        self._held_gaps: list[Gap] = []
        self._held_ticks: list[Tick] = []
        self.errors = 0  # failed commits
        self.last_error: str | None = None
        self._logged_at: float | None = None
        self.lost_rows = 0  # every row handed in and never written (ticks_dropped included)
        self.ticks_dropped = 0  # ticks shed by the backlog bound or left unwritten at close
        self.commits = 0
        self.rows_written = 0
        self.bars_written = 0
        self.ticks_written = 0
        self._thread = threading.Thread(target=self._guarded_run, name="store-writer", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Rows handed in and not yet committed (nor given up)."""
        return (self._urgent_in - self._urgent_done) + (self._ticks_in - self._ticks_done)

    @property
    def pending_ticks(self) -> int:
        return self._ticks_in - self._ticks_done

    def put_bars(self, bars: Iterable[Bar]) -> None:
        self._put_urgent("bars", list(bars), [])

    def put_ticks(self, ticks: Iterable[Tick]) -> None:
        """Queue raw ticks (ignored when the store was opened with `store_ticks=False`)."""
        if not self.store.store_ticks:
            return
        rows = list(ticks)
        if not rows:
            return
        started = False
        with self._cond:
            if self._closed:
                self._lose_after_close("ticks", len(rows))
                return
            backlog = self._ticks_in - self._ticks_done
            if not self._shedding and backlog + len(rows) > self.max_pending_ticks:
                self._shedding = started = True
                self._shed_in_episode = 0
            if self._shedding:
                room = max(0, self.max_pending_ticks - backlog) if started else 0
                shed = len(rows) - room
                rows = rows[:room]
                self._shed_in_episode += shed
                self.ticks_dropped += shed
                self.lost_rows += shed
            if rows:
                self._ticks.append(rows)
                self._queued_ticks += len(rows)
                self._ticks_in += len(rows)
                self._cond.notify_all()
        if started:
            logger.warning(
                "store writer behind: more than %d ticks waiting for %s; dropping new ticks"
                " until the backlog halves (bars and gaps are kept)",
                self.max_pending_ticks,
                self.store.location,
            )

    def put_gaps(self, gaps: Iterable[Gap]) -> None:
        self._put_urgent("gaps", [], list(gaps))

    def _put_urgent(self, kind: str, bars: list[Bar], gaps: list[Gap]) -> None:
        n = len(bars) + len(gaps)
        if not n:
            return
        with self._cond:
            if self._closed:
                self._lose_after_close(kind, n)
                return
            self._bars.extend(bars)
            self._gaps.extend(gaps)
            self._urgent_in += n
            self._cond.notify_all()

    def _lose_after_close(self, kind: str, n: int) -> None:
        self.lost_rows += n
        if kind == "ticks":
            self.ticks_dropped += n
        logger.error("store writer is closed: %d %s not written", n, kind)

    def flush(self, timeout: float) -> bool:
        """Commit everything handed in so far; True when done within `timeout` seconds."""
        if not self._thread.is_alive():
            return self.pending == 0
        with self._cond:
            urgent, ticks = self._urgent_in, self._ticks_in
            self._flushes += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(
                    lambda: self._urgent_done >= urgent and self._ticks_done >= ticks, timeout
                )
            finally:
                self._flushes -= 1

    def close(self, timeout: float) -> bool:
        """Write bars and gaps, then ticks while the budget lasts; stop the thread; close.

        Bounded by `timeout`. Returns True when every row handed in was written. Rows left
        unwritten (the budget ran out, or the database kept failing) are counted in `lost_rows`
        and logged once.
        """
        lost_before = self.lost_rows
        with self._cond:
            if not self._closed:
                self._closed = True
                # The thread gives up a little before the join does, so that it can count the loss.
                self._stop_at = self._clock.monotonic() + 0.8 * max(0.0, timeout)
                self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            with self._cond:
                self._abandoned = True  # whatever it commits from now on is not counted
                urgent, ticks = self._give_up_all()
            logger.error(
                "store writer did not stop within %.1fs: %d bars/gaps and %d ticks counted as"
                " not written",
                timeout,
                urgent,
                ticks,
            )
            return False
        if self.pending:  # the thread died (see _guarded_run): nothing will write these
            self._give_up_at_shutdown()
        try:
            self.store.close()
        except StoreError as exc:  # closing cannot lose committed data; note it
            logger.warning("%s", exc)
        return self.pending == 0 and self.lost_rows == lost_before

    # -- the thread -----------------------------------------------------------------------

    def _guarded_run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # a bug here must not silently stop every write
            with self._cond:
                self._closed = True
            self.errors += 1
            self.last_error = f"store writer stopped: {exc.__class__.__name__}: {exc}"
            logger.exception("store writer stopped; rows handed in from now on are lost")

    def _run(self) -> None:
        retry_at: float | None = None  # set while the held rows keep failing
        while True:
            with self._cond:
                while self._stop_at is None and not self._due(retry_at):
                    self._cond.wait(self._wait_s(retry_at))
                if self._stop_at is not None:
                    break
                self._take(self.max_rows)
            if retry_at is None:
                ok = self._write(self._held_bars, self._held_ticks, self._held_gaps)
            else:  # after a failure: the bars and gaps alone first, then the ticks
                ok = self._write(self._held_bars, [], self._held_gaps) and self._write(
                    [], self._held_ticks, []
                )
            retry_at = None if ok else self._clock.monotonic() + self.retry_s
        self._stop()

    def _due(self, retry_at: float | None) -> bool:
        """Under _cond: is a commit due now? Sets when the current batch is due."""
        held = self._held_bars or self._held_gaps or self._held_ticks
        if not (held or self._bars or self._gaps or self._queued_ticks):
            self._due_at = None
            return False
        now = self._clock.monotonic()
        if retry_at is not None:
            return now >= retry_at
        if self._due_at is None:
            self._due_at = now + self.max_delay_s
        return (
            self._flushes > 0
            or self._queued_ticks >= self.max_rows
            or len(self._bars) + len(self._gaps) >= self.max_rows
            or now >= self._due_at
        )

    def _wait_s(self, retry_at: float | None) -> float | None:
        due = retry_at if retry_at is not None else self._due_at
        return None if due is None else max(0.001, due - self._clock.monotonic())

    def _take(self, max_ticks: int) -> None:
        """Under _cond: move every queued bar and gap, and up to `max_ticks` ticks, to held."""
        self._due_at = None
        if self._bars:
            self._held_bars.extend(self._bars)
            self._bars = []
        if self._gaps:
            self._held_gaps.extend(self._gaps)
            self._gaps = []
        need = max_ticks - len(self._held_ticks)
        while need > 0 and self._ticks:
            chunk = self._ticks[0]
            part = chunk[self._head : self._head + need]
            self._held_ticks.extend(part)
            need -= len(part)
            self._queued_ticks -= len(part)
            self._head += len(part)
            if self._head >= len(chunk):
                self._ticks.popleft()
                self._head = 0

    def _stop(self) -> None:
        """close(): bars and gaps first, then tick batches until the deadline; count the rest."""
        while True:
            with self._cond:
                self._take(0)
            if self._held_bars or self._held_gaps:
                if not self._write(self._held_bars, [], self._held_gaps):
                    if self._wait_or_give_up():
                        return
                    continue
            if self._clock.monotonic() >= self._stop_at:  # type: ignore[operator]
                break
            with self._cond:
                self._take(self.max_rows)
            if not self._held_ticks:
                return  # everything written (puts are refused once closed)
            if not self._write([], self._held_ticks, []) and self._wait_or_give_up():
                return
        with self._cond:
            urgent, ticks = self._give_up_all()
        if urgent or ticks:
            logger.error(
                "database %s: stop budget spent: %d ticks (and %d bars/gaps) not written",
                self.store.location,
                ticks,
                urgent,
            )

    def _wait_or_give_up(self) -> bool:
        """After a failed commit at close: True when the deadline has passed (rows counted)."""
        now = self._clock.monotonic()
        if now >= self._stop_at:  # type: ignore[operator]
            self._give_up_at_shutdown()
            return True
        time.sleep(min(self.retry_s, max(0.0, self._stop_at - now)))  # type: ignore[operator]
        return False

    def _give_up_at_shutdown(self) -> None:
        with self._cond:
            urgent, ticks = self._give_up_all()
        logger.error(
            "database %s: %d bars/gaps and %d ticks not written at shutdown",
            self.store.location,
            urgent,
            ticks,
        )

    def _give_up_all(self) -> tuple[int, int]:
        """Under _cond: count every unwritten row as lost; returns (bars+gaps, ticks)."""
        urgent = self._urgent_in - self._urgent_done
        ticks = self._ticks_in - self._ticks_done
        self._bars, self._gaps, self._ticks, self._head, self._queued_ticks = [], [], deque(), 0, 0
        self._held_bars, self._held_gaps, self._held_ticks = [], [], []
        self._urgent_done, self._ticks_done = self._urgent_in, self._ticks_in
        self.lost_rows += urgent + ticks
        self.ticks_dropped += ticks
        self._cond.notify_all()
        return urgent, ticks

    def _write(self, bars: list[Bar], ticks: list[Tick], gaps: list[Gap]) -> bool:
        """Commit the held rows given; on success clear them. False on failure (rows kept)."""
        if not (bars or ticks or gaps):
            return True
        try:
            self.store.write(bars, ticks, gaps)
        except StoreError as exc:
            self.errors += 1
            self.last_error = str(exc)
            if self.failing_since is None:  # once per episode; the retries go on meanwhile
                self.failing_since = self._clock.time()
                self._alert(
                    "store-write-failed",
                    Severity.CRITICAL,
                    f"cannot write the candle database: {exc}; {self.pending} rows are kept in "
                    "memory and retried (free space or fix the disk; ticks are shed first if it "
                    "lasts)",
                )
            now = self._clock.monotonic()
            if self._logged_at is None or now - self._logged_at >= LOG_FAILURES_EVERY_S:
                self._logged_at = now  # a failing disk must not also flood the log
                logger.error("store write failed (%d so far), will retry: %s", self.errors, exc)
            return False
        if self.failing_since is not None:  # said before flush() can see the rows done
            logger.info(
                "store writes succeed again after %.1fs of failures",
                self._clock.time() - self.failing_since,
            )
            self.failing_since = None
            self._alert(
                "store-",
                Severity.RECOVERY,
                f"the candle database is written again after {self.errors} failed commits",
            )
        summary = None
        with self._cond:
            if not self._abandoned:
                self.commits += 1
                self.rows_written += len(bars) + len(ticks) + len(gaps)
                self.bars_written += len(bars)
                self.ticks_written += len(ticks)
                self._urgent_done += len(bars) + len(gaps)
                self._ticks_done += len(ticks)
                summary = self._end_shedding_if_drained()
            bars.clear()
            ticks.clear()
            gaps.clear()
            self._cond.notify_all()
        if summary:
            logger.info(
                "store writer caught up: %d ticks were dropped while it was behind", summary
            )
        return True

    def _end_shedding_if_drained(self) -> int:
        """Under _cond: end a shedding episode once the backlog has halved; its drop count."""
        if self._shedding and self._ticks_in - self._ticks_done <= self.max_pending_ticks // 2:
            self._shedding = False
            return self._shed_in_episode
        return 0
