"""One shard's socket, kept alive forever and moved onto new tokens without a gap.

`ShardWorker` is given everything it uses: `open_socket(token)` (connect and subscribe, or
raise `ConnectFailed`) and a `feed.shard_context.ShardContext` shared with the other shards
(a `Clock` to read and wait on, the token watcher, counters, alerts, stop flag, swap slot).
So make-before-break, backoff and the 805/807 handling run in tests with fake sockets and a
fake clock, in milliseconds.

- Reconnects: `policy.retry_delay` (backoff with jitter; floors after 805 and HTTP 429; 806
  alerts and retries slowly), reset once a socket has been stable.
- 807/808/809: re-read the token file; a newer token is used at once; with the same token,
  alert once and wait for a new file (retrying the same token only every `token_recheck_s`).
- Token hot swap, make-before-break: open with the new token, subscribe, wait until live (a
  data packet, or a quiet period without a disconnect), then close the old socket. If Dhan
  kills the old socket first the new one takes over at once. One shard at a time holds the
  swap slot, so we never open more than 5 sockets.
- A stretch with no live socket for the shard's instruments is reported as a `Gap`.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Sequence

from dhanfeed.feed.connection import ConnectFailed
from dhanfeed.feed.policy import TOKEN_CODES, backoff_delay, feed_is_stale, retry_delay
from dhanfeed.feed.shard_context import (
    FeedSocket,
    Gap,
    OpenSocket,
    ShardContext,
    SwapOutcome,
    SwapRecord,
)
from dhanfeed.instruments import Instrument
from dhanfeed.severity import Severity
from dhanfeed.token import Token

logger = logging.getLogger(__name__)


class ShardPhase(enum.StrEnum):
    """What a shard is doing while it has no socket to show (the status file's `state`)."""

    STARTING = "starting"
    WAITING = "waiting"  # out the backoff before the next connect
    CONNECTING = "connecting"
    LIVE = "live"
    SWAPPING = "swapping"
    WAITING_FOR_TOKEN = "waiting for token"


class ShardWorker(threading.Thread):
    """Keeps one shard's socket alive and swaps it onto new tokens (see the module docstring)."""

    def __init__(
        self,
        index: int,
        instruments: Sequence[Instrument],
        open_socket: OpenSocket,
        ctx: ShardContext,
        *,
        down_since: float | None = None,
    ) -> None:
        super().__init__(name=f"feed-shard-{index}", daemon=True)
        self.index = index
        self.instruments = tuple(instruments)
        self.open_socket = open_socket
        self.ctx = ctx
        self.wake = threading.Event()
        self.conn: FeedSocket | None = None  # the live socket
        self.spare: FeedSocket | None = None  # the new socket during a swap
        self.phase: ShardPhase = ShardPhase.STARTING
        self.attempt = 0
        self.opened_once = False
        self.live_reported: int | None = None  # id of the last socket reported live
        self.gap_start: float | None = down_since  # the previous run's last data
        self.gap_reason = "collector not running" if down_since else ""
        self.failed_swap_fp: str | None = None
        self.swap_retry_at = 0.0

    def connections(self) -> list[FeedSocket]:
        return [c for c in (self.conn, self.spare) if c is not None]

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> None:
        ctx = self.ctx
        crashes = 0
        try:
            while not ctx.stopping.is_set():
                try:
                    self._loop()
                    return
                except Exception:  # noqa: BLE001 - a bug must not end the shard for good
                    logger.exception("shard %d: worker failed; restarting it", self.index)
                    for conn in self.connections():
                        conn.close(ctx.timing.close_timeout_s)
                    self.conn = self.spare = None
                    self._begin_gap(ctx.clock.time(), "collector error")
                    self._sleep(backoff_delay(crashes, ctx.timing))
                    crashes += 1
        finally:
            for conn in self.connections():
                conn.close(ctx.timing.close_timeout_s)
            self._end_gap(ctx.clock.time(), reason_suffix="until shutdown")

    def _loop(self) -> None:
        ctx = self.ctx
        delay = 0.0
        while not ctx.stopping.is_set():
            if delay > 0:
                self.phase = ShardPhase.WAITING
                if self._sleep(delay):
                    return
            token = self._wait_for_token()
            if token is None:
                return
            self.phase = ShardPhase.CONNECTING
            if self.opened_once:
                ctx.counters.add(reconnects=1)
            self.opened_once = True
            try:
                conn = self._open(token)
            except ConnectFailed as exc:
                delay = retry_delay(self.attempt, ctx.timing, http_status=exc.status)
                self.attempt += 1
                self._log_retry(str(exc), delay, exc.status)
                continue
            self.conn, self.spare = conn, None
            self._end_gap(ctx.clock.time())
            self.phase = ShardPhase.LIVE
            conn = self._watch()
            if ctx.stopping.is_set():
                return
            delay = self._after_close(conn)

    def _open(self, token: Token) -> FeedSocket:
        self.ctx.counters.add(connects=1)
        conn = self.open_socket(token)
        logger.info(
            "shard %d: socket %d open with token %s, %d instruments subscribed",
            self.index,
            conn.conn_id,
            token.fingerprint,
            len(self.instruments),
        )
        return conn

    def _watch(self) -> FeedSocket:
        """Wait on the live socket; swap it, replace it if stale; return it once it is closed."""
        ctx = self.ctx
        timing, clock = ctx.timing, ctx.clock
        while True:
            conn = self.conn
            assert conn is not None
            if ctx.stopping.is_set():
                conn.close(timing.close_timeout_s)
                return conn
            if conn.closed.is_set():
                return conn
            now = clock.monotonic()
            if (
                self.attempt
                and conn.last_data
                and now - (conn.opened_at or now) >= timing.stable_after_s
            ):
                self.attempt = 0  # stable: the next failure starts the backoff afresh
            if self.live_reported != conn.conn_id and (
                conn.last_data or now - (conn.opened_at or now) >= timing.live_quiet_s
            ):
                self._report_live(conn)
            if self._stale(conn, now):
                logger.warning(
                    "shard %d: socket %d delivered no data for %.0fs in session; reconnecting",
                    self.index,
                    conn.conn_id,
                    ctx.stale_after_s,
                )
                conn.close_reason = f"stale: no data for {ctx.stale_after_s:.0f}s"
                # The silence is the gap, not only the reconnect: from the last data (or the
                # open, when none came) to the new socket.
                silent = now - (conn.last_data or conn.opened_at or now)
                self._begin_gap(clock.time() - silent, conn.close_reason)
                conn.close(timing.close_timeout_s)
                return conn
            token = ctx.watcher.current
            if (
                token is not None
                and token.fingerprint != conn.token.fingerprint
                and token.fingerprint != self.failed_swap_fp
                and now >= self.swap_retry_at
            ):
                self._swap(conn, token)
                continue
            clock.wait(self.wake, 0.1)
            self.wake.clear()

    def _report_live(self, conn: FeedSocket) -> None:
        """Data (or quiet without a disconnect): Dhan took the token and the feed flows, so
        the token and feed alerts end and no refusal stands."""
        self.live_reported = conn.conn_id
        ctx = self.ctx
        ctx.refusals.clear()
        message = f"the feed is live with token {conn.token.fingerprint}"
        ctx.alerts.ended("token-", message)
        ctx.alerts.ended("feed-", message)

    def _stale(self, conn: FeedSocket, now_mono: float) -> bool:
        return feed_is_stale(
            last_data=conn.last_data,
            opened_at=conn.opened_at,
            now_mono=now_mono,
            stale_after_s=self.ctx.stale_after_s,
            now=self.ctx.clock.now(),
            in_session=self.ctx.in_session,
        )

    def _after_close(self, conn: FeedSocket) -> float:
        """The live socket is gone: start a gap and decide how long to wait."""
        ctx = self.ctx
        timing = ctx.timing
        closed_utc = conn.closed_utc or ctx.clock.time()
        self._begin_gap(closed_utc, conn.close_reason)
        self.conn = None
        code = conn.disconnect_code
        stable = bool(conn.last_data) and (
            (conn.closed_at or 0) - (conn.opened_at or 0) >= timing.stable_after_s
        )
        if stable:
            self.attempt = 0
        logger.warning(
            "shard %d: socket %d closed: %s",
            self.index,
            conn.conn_id,
            conn.close_reason,
            extra={"disconnect_code": code},
        )
        if code in TOKEN_CODES:
            return self._token_rejected(conn)
        if code == 806:
            ctx.alerts.alert(
                "feed-806-no-data-plan",
                Severity.CRITICAL,
                "Dhan refused the feed: Data APIs not subscribed (806). Subscribe to Data APIs;"
                " the collector keeps retrying slowly.",
            )
        if code == 805:
            logger.warning(
                "shard %d: Dhan says too many sockets (805): is another collector using client id"
                " %s? waiting at least %.0fs",
                self.index,
                conn.token.client_id,
                timing.floor_805_s,
            )
            self._count_eviction(conn)
        delay = retry_delay(self.attempt, timing, disconnect_code=code)
        self.attempt += 1
        self._log_retry(conn.close_reason, delay, None)
        return delay

    def _count_eviction(self, conn: FeedSocket) -> None:
        """Repeated 805s mean someone else holds sockets on our client id: say so, once."""
        ctx, timing = self.ctx, self.ctx.timing
        count, fresh = ctx.evictions.record(ctx.clock.monotonic(), timing.evictions_window_s)
        if fresh:
            ctx.alerts.clear("evicted-805")  # a new episode may alert again
        if count >= timing.evictions_alert:
            ctx.alerts.once(
                "evicted-805",
                Severity.CRITICAL,
                f"Dhan closed our feed sockets {count} times within "
                f"{timing.evictions_window_s / 60:.0f} min with 805 (connection limit exceeded: "
                f"5 sockets per client id): another program is using client id "
                f"{conn.token.client_id} (a second collector, perhaps with another state "
                "directory that the lock cannot see, the official SDK, or a script). Stop it; "
                "each eviction costs a gap in the data.",
            )

    def _token_rejected(self, conn: FeedSocket) -> float:
        """807/808/809: use a newer token at once; with the same one, wait for a new file."""
        ctx = self.ctx
        watcher = ctx.watcher
        old_fp = conn.token.fingerprint
        watcher.reread()
        current = watcher.current
        if current is None or current.fingerprint == old_fp:
            current = watcher.wait_for_change(old_fp, ctx.timing.token_grace_s)
        if current is not None and current.fingerprint != old_fp:
            logger.info(
                "shard %d: reconnecting at once with token %s", self.index, current.fingerprint
            )
            return 0.0
        ctx.refusals.record(conn.token, conn.disconnect_code, ctx.clock.now().isoformat())
        ctx.alerts.once(
            f"token-rejected-{old_fp}",
            Severity.CRITICAL,
            f"Dhan rejected token {old_fp} ({conn.close_reason}); waiting for a new token file"
            f" at {watcher.path} (run renew_token)",
        )
        self.phase = ShardPhase.WAITING_FOR_TOKEN
        while not ctx.stopping.is_set():
            current = watcher.wait_for_change(old_fp, 0.5)
            if current is not None and current.fingerprint != old_fp:
                return 0.0
            if ctx.clock.monotonic() - (conn.closed_at or 0) >= ctx.timing.token_recheck_s:
                return 0.0  # try the same token again, rarely
        return 0.0

    def _take_swap_slot(self, old: FeedSocket) -> bool:
        """Wait for the one swap slot; False if stopping or the old socket died meanwhile."""
        ctx = self.ctx
        while not ctx.swap_slot.acquire(blocking=False):
            if ctx.clock.wait(ctx.stopping, 0.1) or old.closed.is_set():
                return False
        return True

    def _swap(self, old: FeedSocket, token: Token) -> None:
        """Make-before-break onto `token`; on return `self.conn` is the socket to watch."""
        ctx = self.ctx
        timing, clock = ctx.timing, ctx.clock
        record = SwapRecord(self.index, old.token.fingerprint, token.fingerprint, clock.time())
        if not self._take_swap_slot(old):
            return  # the watch loop handles both
        opened = False
        try:
            self.phase = ShardPhase.SWAPPING
            dups_before = ctx.duplicates()
            try:
                self.spare = new = self._open(token)
                opened = True
            except ConnectFailed as exc:
                self.swap_retry_at = clock.monotonic() + retry_delay(
                    self.attempt, timing, http_status=exc.status
                )
                self.attempt += 1
                self._finish_swap(record, SwapOutcome.FAILED, str(exc))
                return
            subscribed = clock.time()
            if not self._wait_live(new, old):
                self.spare = None
                new.close(timing.close_timeout_s)
                if new.disconnect_code in TOKEN_CODES:
                    self.failed_swap_fp = token.fingerprint
                self.swap_retry_at = clock.monotonic() + backoff_delay(self.attempt, timing)
                self.attempt += 1
                reason = f"new socket not live ({new.close_reason or 'timeout'})"
                self._finish_swap(record, SwapOutcome.FAILED, reason)
                return
            old_closed_first = old.closed.is_set()
            if old_closed_first:
                old_end = old.closed_utc or clock.time()
                record.gap_s = max(0.0, subscribed - old_end)
                self.gap_start = min(self.gap_start or old_end, old_end)
                self.gap_reason = old.close_reason
            self.conn, self.spare = new, None
            self._end_gap(subscribed)
            old.close_reason = old.close_reason or "replaced by a new token"
            old.close(timing.close_timeout_s)
            record.overlap_s = 0.0 if old_closed_first else round(clock.time() - subscribed, 3)
            record.duplicates_dropped = max(0, ctx.duplicates() - dups_before)
            self.failed_swap_fp = None
            self.phase = ShardPhase.LIVE
            outcome = SwapOutcome.RECONNECTED if old_closed_first else SwapOutcome.MADE_BEFORE_BREAK
            self._finish_swap(record, outcome)
        finally:
            if opened:
                # The server must have counted the close before the next shard opens its
                # spare, or the 5th socket it sees is a 6th (805).
                clock.wait(ctx.stopping, timing.swap_settle_s)
            ctx.swap_slot.release()

    def _wait_live(self, new: FeedSocket, old: FeedSocket) -> bool:
        """A data packet, or a quiet period without a disconnect, within swap_timeout."""
        ctx = self.ctx
        timing, clock = ctx.timing, ctx.clock
        start = clock.monotonic()
        while not ctx.stopping.is_set():
            if new.closed.is_set():
                return False
            if new.last_data is not None:
                return True
            now = clock.monotonic()
            waited = now - start
            if waited >= timing.live_quiet_s and (
                old.closed.is_set()
                or old.last_data is None
                or now - old.last_data >= timing.live_quiet_s
            ):
                return True  # quiet on both: nothing trades; the new socket is as good
            if old.closed.is_set() and waited >= min(timing.live_quiet_s, 0.5):
                return True  # old one is gone: take the new one as soon as it survives a moment
            if waited >= timing.swap_timeout_s:
                return False
            clock.wait(new.closed, 0.02)
        return False

    def _finish_swap(self, record: SwapRecord, outcome: SwapOutcome, reason: str = "") -> None:
        record.outcome, record.reason = outcome, reason
        if outcome is not SwapOutcome.FAILED:
            self.ctx.counters.add(swaps=1)
        self.ctx.on_swap(record)
        logger.info(
            "shard %d: swap %s -> %s %s%s (overlap %.3fs, duplicates dropped %d, gap %.3fs)",
            self.index,
            record.old_fp,
            record.new_fp,
            outcome,
            f": {reason}" if reason else "",
            record.overlap_s,
            record.duplicates_dropped,
            record.gap_s,
            extra={"swap": record.as_dict()},
        )

    # -- gaps, tokens, sleeping ------------------------------------------------------------

    def _begin_gap(self, start_utc: float, reason: str) -> None:
        if self.gap_start is None:
            self.gap_start, self.gap_reason = start_utc, reason

    def _end_gap(self, end_utc: float, reason_suffix: str = "") -> None:
        if self.gap_start is None:
            return
        start, self.gap_start = self.gap_start, None
        self.ctx.counters.add(gaps=1)
        reason = self.gap_reason or "socket closed"
        if reason_suffix:
            reason = f"{reason} ({reason_suffix})"
        gap = Gap(self.instruments, start, max(start, end_utc), reason)
        logger.info(
            "shard %d: gap of %.3fs for %d instruments (%s)",
            self.index,
            gap.end_utc - gap.start_utc,
            len(self.instruments),
            gap.reason,
        )
        self.ctx.on_gap(gap)

    def _wait_for_token(self) -> Token | None:
        ctx = self.ctx
        while not ctx.stopping.is_set():
            token = ctx.watcher.current
            if token is not None and not token.expired(ctx.clock.now()):
                ctx.alerts.clear("token-missing")
                return token
            why = f" ({ctx.watcher.problem})" if ctx.watcher.problem else ""
            ctx.alerts.once(
                "token-missing",
                Severity.CRITICAL,
                f"no usable token file at {ctx.watcher.path}{why}; the collector waits for one"
                " (run renew_token)",
            )
            self.phase = ShardPhase.WAITING_FOR_TOKEN
            ctx.watcher.wait_for_change(token.fingerprint if token else None, 0.5)
        return None

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopping; True if stopping."""
        return self.ctx.clock.wait(self.ctx.stopping, seconds)

    def _log_retry(self, why: str, delay: float, status: int | None) -> None:
        logger.warning(
            "shard %d: connect failed or closed (%s); retry %d in %.1fs",
            self.index,
            why,
            self.attempt,
            delay,
            extra={"http_status": status},
        )
