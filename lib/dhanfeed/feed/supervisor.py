"""Sockets for every instrument, kept alive forever, moved onto a new token without a gap.

- Sharding: ≤ 5000 instruments per socket, at most 4 sockets; the fifth slot Dhan allows is
  kept for a token swap, and swaps run one shard at a time, so we never open more than 5.
- Reconnects never give up: capped exponential backoff with jitter, reset once a socket has
  been stable; floors after 805 (too many sockets) and a handshake 429; 806 (no data plan)
  alerts and retries slowly; 807/808/809 re-read the token file and, with the same token,
  wait for a new one instead of hammering Dhan.
- Token hot swap, make-before-break per shard: open with the new token, subscribe, wait
  until live (a data packet, or a quiet period without a disconnect), then close the old.
  If Dhan kills the old socket first we reconnect at once with the new token.
- Stale feed: inside the trading session a socket without data packets for `stale_after`
  is replaced (server pings do not count).
- A stretch with no live socket for a shard's instruments is reported as a gap.

The policies (sharding, backoff) are pure functions; `Timing` holds every delay so
that tests can scale them down.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence

from dhanfeed.config import Instrument
from dhanfeed.feed.connection import ConnectFailed, FeedConnection, Sink
from dhanfeed.feed.protocol import MAX_PER_SOCKET
from dhanfeed.feed.token_watch import TokenWatcher
from dhanfeed.token import Token

logger = logging.getLogger(__name__)

MAX_SOCKETS = 4  # Dhan allows 5 per user; one stays free for a token swap
TOKEN_CODES = frozenset({807, 808, 809})
ENV_TIMING = "DHANFEED_COLLECTOR_TIMING"  # test-only: JSON object overriding Timing fields


@dataclasses.dataclass(frozen=True)
class Timing:
    """Every delay of the supervisor, in seconds, and the per-socket limit. Production defaults."""

    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    stable_after_s: float = 30.0  # a socket up this long (with data) resets the backoff
    floor_805_s: float = 60.0  # after "connection limit exceeded"
    floor_429_s: float = 60.0  # after a handshake answered with HTTP 429
    slow_806_s: float = 300.0  # after "Data APIs not subscribed": retry, slowly
    token_grace_s: float = 2.0  # after 807/808/809: wait this long for a new file before alerting
    token_recheck_s: float = 900.0  # same token still rejected: try it again this often
    live_quiet_s: float = 3.0  # a new socket without data counts as live after this quiet time
    swap_timeout_s: float = 10.0  # a swap's new socket must be live within this
    close_timeout_s: float = 2.0
    # After a swap closes a socket, the next shard waits this long before opening its own:
    # the server must have counted the close, or the 5th socket it sees is a 6th (805).
    swap_settle_s: float = 0.5
    connect_timeout_s: float = 10.0
    recv_timeout_s: float = 45.0  # no frame at all (pings included): the socket is dead
    token_poll_s: float = 0.1  # one stat() per poll; the swap goal is a median notice of 100 ms
    # Not a delay: Dhan's instruments-per-socket limit, used for sharding. Tests lower it to
    # spread a few instruments over all 4 sockets.
    max_per_socket: int = MAX_PER_SOCKET

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Timing:
        """Production defaults, overridden by `$DHANFEED_COLLECTOR_TIMING` (tests only)."""
        raw = environ.get(ENV_TIMING, "").strip()
        if not raw:
            return cls()
        try:
            values = json.loads(raw)
            known = {f.name for f in dataclasses.fields(cls)}
            unknown = set(values) - known
            if unknown:
                raise ValueError(f"unknown keys {sorted(unknown)}")
            types = {f.name: f.type for f in dataclasses.fields(cls)}
            timing = cls(**{k: _as(types[k], v) for k, v in values.items()})
        except (ValueError, TypeError, AttributeError) as exc:
            raise ValueError(f"${ENV_TIMING}: {exc}") from None
        logger.warning("timing overridden by $%s (test setting): %s", ENV_TIMING, values)
        return timing


def _as(type_name: object, value: object) -> float | int:
    """A field's value from JSON: whole numbers for `int` fields, else seconds as float."""
    if type_name in ("int", int):
        number = float(value)  # type: ignore[arg-type]
        if not math.isfinite(number) or number != int(number) or number < 1:
            raise ValueError(f"not a positive whole number: {value!r}")
        return int(number)
    return float(value)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Pure policies


def shard_instruments(
    instruments: Sequence[Instrument],
    per_socket: int = MAX_PER_SOCKET,
    max_sockets: int = MAX_SOCKETS,
) -> list[list[Instrument]]:
    """Split into as few sockets as the limit allows, spread evenly; ValueError if too many."""
    if not instruments:
        return []
    count = math.ceil(len(instruments) / per_socket)
    if count > max_sockets:
        raise ValueError(
            f"{len(instruments)} instruments need {count} sockets; at most {max_sockets}"
            f" x {per_socket} are allowed"
        )
    size = math.ceil(len(instruments) / count)
    return [list(instruments[i : i + size]) for i in range(0, len(instruments), size)]


def backoff_delay(attempt: int, timing: Timing, rand: Callable[[], float] = random.random) -> float:
    """Capped exponential backoff with equal jitter: attempt 0 → 0.5–1 s, then up to the cap."""
    ceiling = min(timing.backoff_max_s, timing.backoff_initial_s * 2 ** min(attempt, 30))
    return ceiling / 2 + rand() * ceiling / 2


def retry_delay(
    attempt: int,
    timing: Timing,
    *,
    disconnect_code: int | None = None,
    http_status: int | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """How long to wait before the next connect, from how the last socket ended."""
    delay = backoff_delay(attempt, timing, rand)
    if disconnect_code == 805:
        return max(delay, timing.floor_805_s)
    if http_status == 429:
        return max(delay, timing.floor_429_s)
    if disconnect_code == 806:
        return max(delay, timing.slow_806_s)
    return delay


def feed_is_stale(
    *,
    last_data: float | None,
    opened_at: float | None,
    now_mono: float,
    stale_after_s: float,
    now: dt.datetime,
    in_session: Callable[[dt.datetime], bool],
) -> bool:
    """Whether a socket must be replaced for silence.

    Silence is counted (monotonic seconds) from the last data packet, else from the opening;
    server pings never set `last_data`. It makes a socket stale only while `now` is inside
    the trading session: outside it, nothing trades and silence is normal.
    """
    since = last_data or opened_at or now_mono
    if now_mono - since < stale_after_s:
        return False
    return in_session(now)


# ---------------------------------------------------------------------------------------------
# Records handed to the rest of the collector


@dataclasses.dataclass(frozen=True)
class Gap:
    instruments: tuple[Instrument, ...]
    start_utc: float
    end_utc: float
    reason: str


@dataclasses.dataclass
class SwapRecord:
    shard: int
    old_fp: str
    new_fp: str
    started_utc: float
    outcome: str = "pending"  # "made-before-break" | "reconnected" | "failed: ..."
    overlap_s: float = 0.0
    duplicates_dropped: int = 0
    gap_s: float = 0.0

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


Alert = Callable[[str, str, str], None]  # (key, level, message)


def log_alert(key: str, level: str, message: str) -> None:
    logger.log(logging.getLevelName(level.upper()), "ALERT %s: %s", key, message)


class Supervisor:
    """Runs one worker thread per shard; see the module docstring."""

    def __init__(
        self,
        *,
        feed_url: str,
        instruments: Sequence[Instrument],
        mode: str,
        watcher: TokenWatcher,
        sink: Sink,
        in_session: Callable[[dt.datetime], bool],
        stale_after_s: float,
        timing: Timing | None = None,
        on_gap: Callable[[Gap], None] = lambda gap: None,
        down_since: float | None = None,
        duplicates: Callable[[], int] = lambda: 0,
        alert: Alert = log_alert,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.feed_url = feed_url
        self.mode = mode
        self.watcher = watcher
        self.sink = sink
        self.in_session = in_session
        self.stale_after_s = stale_after_s
        self.timing = timing or Timing()
        self.on_gap = on_gap
        self.down_since = down_since  # the previous run's last data: a gap until we are live
        self.duplicates = duplicates
        self.alert = alert
        self.clock = clock
        self.stopping = threading.Event()
        self.swap_slot = threading.Lock()  # one shard at a time holds a second socket
        self.connect_ids = itertools.count(1)
        self.lock = threading.Lock()
        self.reconnects = 0
        self.connects = 0
        self.swaps = 0
        self.gaps = 0
        self.skipped = 0  # undecodable packets on sockets already closed
        self.swap_log: deque[SwapRecord] = deque(maxlen=50)
        self._alerted: set[str] = set()
        self.workers = [
            ShardWorker(self, i, shard)
            for i, shard in enumerate(
                shard_instruments(instruments, per_socket=self.timing.max_per_socket)
            )
        ]

    # -- control ---------------------------------------------------------------------------

    def start(self) -> None:
        for worker in self.workers:
            worker.start()

    def token_changed(self, token: Token) -> None:
        """Called by the token watcher: wake every worker so that it swaps."""
        for worker in self.workers:
            worker.wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Close every socket (in parallel, bounded) and end the workers."""
        self.stopping.set()
        for worker in self.workers:
            worker.wake.set()
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        for worker in self.workers:  # a worker stuck in a handshake: close what it holds
            for conn in worker.connections():
                conn.close(0.2)

    # -- shared helpers for the workers ----------------------------------------------------

    def alert_once(self, key: str, level: str, message: str) -> None:
        with self.lock:
            if key in self._alerted:
                return
            self._alerted.add(key)
        self.alert(key, level, message)

    def clear_alert(self, key: str) -> None:
        with self.lock:
            self._alerted.discard(key)

    def count(self, name: str, by: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + by)

    def stale(self, conn: FeedConnection, now_mono: float) -> bool:
        return feed_is_stale(
            last_data=conn.last_data,
            opened_at=conn.opened_at,
            now_mono=now_mono,
            stale_after_s=self.stale_after_s,
            now=self.clock(),
            in_session=self.in_session,
        )

    def snapshot(self) -> dict:
        sockets = []
        for worker in self.workers:
            for conn in worker.connections():
                sockets.append(
                    {
                        "shard": worker.index,
                        "id": conn.conn_id,
                        "state": conn.state,
                        "role": "live" if conn is worker.conn else "swap",
                        "token_fp": conn.token.fingerprint,
                        "instruments": len(worker.instruments),
                        "packets": conn.packets,
                        "last_data_utc": conn.last_data_utc,
                    }
                )
            if not worker.connections():
                sockets.append(
                    {
                        "shard": worker.index,
                        "id": None,
                        "state": worker.phase,
                        "role": "none",
                        "token_fp": None,
                        "instruments": len(worker.instruments),
                        "packets": 0,
                        "last_data_utc": None,
                    }
                )
        token = self.watcher.current
        with self.lock:
            return {
                "token_fp": token.fingerprint if token else None,
                "token_expires_at": token.expires_at.isoformat() if token else None,
                "sockets": sockets,
                "sockets_live": sum(1 for w in self.workers if w.conn is not None and w.conn.alive),
                "connects": self.connects,
                "reconnects": self.reconnects,
                "swaps": self.swaps,
                "gaps": self.gaps,
                "skipped_packets": self.skipped
                + sum(c.skipped for w in self.workers for c in w.connections()),
                "swap_log": [s.as_dict() for s in list(self.swap_log)[-10:]],
            }


class ShardWorker(threading.Thread):
    """Keeps one shard's socket alive and swaps it onto new tokens."""

    def __init__(self, sup: Supervisor, index: int, instruments: list[Instrument]) -> None:
        super().__init__(name=f"feed-shard-{index}", daemon=True)
        self.sup = sup
        self.index = index
        self.instruments = instruments
        self.pairs = [(i.segment, i.security_id) for i in instruments]
        self.wake = threading.Event()
        self.conn: FeedConnection | None = None  # the live socket
        self.spare: FeedConnection | None = None  # the new socket during a swap
        self.phase = "starting"
        self.attempt = 0
        self.opened_once = False
        self.gap_start: float | None = sup.down_since
        self.gap_reason = "collector not running" if sup.down_since else ""
        self.failed_swap_fp: str | None = None
        self.swap_retry_at = 0.0

    def connections(self) -> list[FeedConnection]:
        return [c for c in (self.conn, self.spare) if c is not None]

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> None:
        crashes = 0
        try:
            while not self.sup.stopping.is_set():
                try:
                    self._loop()
                    return
                except Exception:  # noqa: BLE001 - a bug must not end the shard for good
                    logger.exception("shard %d: worker failed; restarting it", self.index)
                    for conn in self.connections():
                        conn.close(self.sup.timing.close_timeout_s)
                    self.conn = self.spare = None
                    self._begin_gap(time.time(), "collector error")
                    self._sleep(backoff_delay(crashes, self.sup.timing))
                    crashes += 1
        finally:
            for conn in self.connections():
                conn.close(self.sup.timing.close_timeout_s)
            self._end_gap(time.time(), reason_suffix="until shutdown")

    def _loop(self) -> None:
        sup, timing = self.sup, self.sup.timing
        delay = 0.0
        while not sup.stopping.is_set():
            if delay > 0:
                self.phase = "waiting"
                if self._sleep(delay):
                    return
            token = self._wait_for_token()
            if token is None:
                return
            self.phase = "connecting"
            if self.opened_once:
                sup.count("reconnects")
            self.opened_once = True
            try:
                conn = self._open(token)
            except ConnectFailed as exc:
                delay = retry_delay(self.attempt, timing, http_status=exc.status)
                self.attempt += 1
                self._log_retry(str(exc), delay, exc.status)
                continue
            self.conn, self.spare = conn, None
            self._end_gap(time.time())
            self.phase = "live"
            conn = self._watch()
            if sup.stopping.is_set():
                return
            delay = self._after_close(conn)

    def _open(self, token: Token) -> FeedConnection:
        sup, timing = self.sup, self.sup.timing
        conn = FeedConnection(
            next(sup.connect_ids),
            self.index,
            sup.feed_url,
            token,
            sup.sink,
            connect_timeout=timing.connect_timeout_s,
            recv_timeout=timing.recv_timeout_s,
        )
        sup.count("connects")
        self.spare = conn
        try:
            conn.connect()
            conn.subscribe(self.pairs, sup.mode)
        except ConnectFailed:
            conn.close(timing.close_timeout_s)
            self.spare = None
            raise
        logger.info(
            "shard %d: socket %d open with token %s, %d instruments subscribed",
            self.index,
            conn.conn_id,
            token.fingerprint,
            len(self.pairs),
        )
        return conn

    def _watch(self) -> FeedConnection:
        """Wait on the live socket; swap it, replace it if stale; return it once it is closed."""
        sup, timing = self.sup, self.sup.timing
        while True:
            conn = self.conn
            assert conn is not None
            if sup.stopping.is_set():
                conn.close(timing.close_timeout_s)
                return conn
            if conn.closed.is_set():
                return conn
            now = time.monotonic()
            if self.attempt and conn.last_data and now - conn.opened_at >= timing.stable_after_s:
                self.attempt = 0  # stable: the next failure starts the backoff afresh
            if sup.stale(conn, now):
                logger.warning(
                    "shard %d: socket %d delivered no data for %.0fs in session; reconnecting",
                    self.index,
                    conn.conn_id,
                    sup.stale_after_s,
                )
                conn.close_reason = f"stale: no data for {sup.stale_after_s:.0f}s"
                conn.close(timing.close_timeout_s)
                return conn
            token = sup.watcher.current
            if (
                token is not None
                and token.fingerprint != conn.token.fingerprint
                and token.fingerprint != self.failed_swap_fp
                and now >= self.swap_retry_at
            ):
                self._swap(conn, token)
                continue
            self.wake.wait(0.1)
            self.wake.clear()

    def _after_close(self, conn: FeedConnection) -> float:
        """The live socket is gone: start a gap and decide how long to wait."""
        sup, timing = self.sup, self.sup.timing
        closed_utc = conn.closed_utc or time.time()
        self._begin_gap(closed_utc, conn.close_reason)
        self.conn = None
        sup.count("skipped", conn.skipped)
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
            sup.alert(
                "feed-806-no-data-plan",
                "critical",
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
        delay = retry_delay(self.attempt, timing, disconnect_code=code)
        self.attempt += 1
        self._log_retry(conn.close_reason, delay, None)
        return delay

    def _token_rejected(self, conn: FeedConnection) -> float:
        """807/808/809: use a newer token at once; with the same one, wait for a new file."""
        sup, timing = self.sup, self.sup.timing
        old_fp = conn.token.fingerprint
        sup.watcher.reread()
        current = sup.watcher.current
        if current is None or current.fingerprint == old_fp:
            current = sup.watcher.wait_for_change(old_fp, timing.token_grace_s)
        if current is not None and current.fingerprint != old_fp:
            logger.info(
                "shard %d: reconnecting at once with token %s", self.index, current.fingerprint
            )
            return 0.0
        sup.alert_once(
            f"token-rejected-{old_fp}",
            "error",
            f"Dhan rejected token {old_fp} ({conn.close_reason}); waiting for a new token file"
            f" at {sup.watcher.path} (run renew_token)",
        )
        self.phase = "waiting for token"
        while not sup.stopping.is_set():
            current = sup.watcher.wait_for_change(old_fp, 0.5)
            if current is not None and current.fingerprint != old_fp:
                return 0.0
            if time.monotonic() - (conn.closed_at or 0) >= timing.token_recheck_s:
                return 0.0  # try the same token again, rarely
        return 0.0

    def _swap(self, old: FeedConnection, token: Token) -> None:
        """Make-before-break onto `token`; on return `self.conn` is the socket to watch."""
        sup, timing = self.sup, self.sup.timing
        record = SwapRecord(self.index, old.token.fingerprint, token.fingerprint, time.time())
        while not sup.swap_slot.acquire(timeout=0.1):
            if sup.stopping.is_set() or old.closed.is_set():
                return  # the watch loop handles both
        opened = False
        try:
            self.phase = "swapping"
            dups_before = sup.duplicates()
            try:
                new = self._open(token)
                opened = True
            except ConnectFailed as exc:
                self.swap_retry_at = time.monotonic() + retry_delay(
                    self.attempt, timing, http_status=exc.status
                )
                self.attempt += 1
                record.outcome = f"failed: {exc}"
                logger.warning(
                    "shard %d: swap to token %s failed: %s", self.index, token.fingerprint, exc
                )
                self._finish_swap(record)
                return
            subscribed = time.time()
            live = self._wait_live(new, old)
            if not live:
                self.spare = None
                new.close(timing.close_timeout_s)
                if new.disconnect_code in TOKEN_CODES:
                    self.failed_swap_fp = token.fingerprint
                self.swap_retry_at = time.monotonic() + backoff_delay(self.attempt, timing)
                self.attempt += 1
                record.outcome = f"failed: new socket not live ({new.close_reason or 'timeout'})"
                logger.warning(
                    "shard %d: swap to %s: %s", self.index, token.fingerprint, record.outcome
                )
                self._finish_swap(record)
                return
            old_closed_first = old.closed.is_set()
            if old_closed_first:
                old_end = old.closed_utc or time.time()
                record.gap_s = max(0.0, subscribed - old_end)
                self.gap_start = min(self.gap_start or old_end, old_end)
                self.gap_reason = old.close_reason
            self.conn, self.spare = new, None
            self._end_gap(subscribed)
            old.close_reason = old.close_reason or "replaced by a new token"
            old.close(timing.close_timeout_s)
            sup.count("skipped", old.skipped)
            overlap_end = time.time()
            record.overlap_s = 0.0 if old_closed_first else round(overlap_end - subscribed, 3)
            record.duplicates_dropped = max(0, sup.duplicates() - dups_before)
            record.outcome = "reconnected" if old_closed_first else "made-before-break"
            self.failed_swap_fp = None
            self.phase = "live"
            self._finish_swap(record)
        finally:
            if opened:
                sup.stopping.wait(timing.swap_settle_s)
            sup.swap_slot.release()

    def _wait_live(self, new: FeedConnection, old: FeedConnection) -> bool:
        """A data packet, or a quiet period without a disconnect, within swap_timeout."""
        timing = self.sup.timing
        start = time.monotonic()
        while not self.sup.stopping.is_set():
            if new.closed.is_set():
                return False
            if new.last_data is not None:
                return True
            waited = time.monotonic() - start
            if waited >= timing.live_quiet_s and (
                old.closed.is_set()
                or old.last_data is None
                or time.monotonic() - old.last_data >= timing.live_quiet_s
            ):
                return True  # quiet on both: nothing trades; the new socket is as good
            if old.closed.is_set() and waited >= min(timing.live_quiet_s, 0.5):
                return True  # old one is gone: take the new one as soon as it survives a moment
            if waited >= timing.swap_timeout_s:
                return False
            new.closed.wait(0.02)
        return False

    def _finish_swap(self, record: SwapRecord) -> None:
        self.sup.swap_log.append(record)
        if not record.outcome.startswith("failed"):
            self.sup.count("swaps")
        logger.info(
            "shard %d: swap %s -> %s %s (overlap %.3fs, duplicates dropped %d, gap %.3fs)",
            self.index,
            record.old_fp,
            record.new_fp,
            record.outcome,
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
        self.sup.count("gaps")
        reason = self.gap_reason or "socket closed"
        if reason_suffix:
            reason = f"{reason} ({reason_suffix})"
        gap = Gap(tuple(self.instruments), start, max(start, end_utc), reason)
        logger.info(
            "shard %d: gap of %.3fs for %d instruments (%s)",
            self.index,
            gap.end_utc - gap.start_utc,
            len(self.instruments),
            gap.reason,
        )
        self.sup.on_gap(gap)

    def _wait_for_token(self) -> Token | None:
        sup = self.sup
        while not sup.stopping.is_set():
            token = sup.watcher.current
            if token is not None:
                if not token.expired(sup.clock()):
                    sup.clear_alert("token-missing")
                    return token
            sup.alert_once(
                "token-missing",
                "error",
                f"no usable token file at {sup.watcher.path}; the collector waits for one"
                " (run renew_token)",
            )
            self.phase = "waiting for token"
            sup.watcher.wait_for_change(token.fingerprint if token else None, 0.5)
        return None

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopping; True if stopping."""
        return self.sup.stopping.wait(seconds)

    def _log_retry(self, why: str, delay: float, status: int | None) -> None:
        logger.warning(
            "shard %d: connect failed or closed (%s); retry %d in %.1fs",
            self.index,
            why,
            self.attempt,
            delay,
            extra={"http_status": status},
        )
