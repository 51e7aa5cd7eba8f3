"""The feed's sockets for every instrument: one `ShardWorker` per shard, started and stopped
together, and their state as one `FeedStatus`.

The policies live in `feed.policy` (pure), a shard's life in `feed.shard`, one socket in
`feed.connection`; this module only wires them: it shards the instruments, gives each worker
an `open_socket(token)` that builds a `FeedConnection`, and sums what the workers count.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence

from dhanfeed.clock import Clock, SystemClock
from dhanfeed.feed.connection import ConnectFailed, FeedConnection, Sink, SocketState
from dhanfeed.feed.policy import Timing, shard_instruments
from dhanfeed.feed.shard import ShardPhase, ShardWorker
from dhanfeed.feed.shard_context import (
    AlertOnce,
    FeedCounters,
    FeedSocket,
    Gap,
    ShardContext,
    SwapRecord,
    TokenSource,
)
from dhanfeed.instruments import Instrument
from dhanfeed.severity import Alert, Severity
from dhanfeed.token import Token

logger = logging.getLogger(__name__)


def log_alert(key: str, severity: Severity, message: str) -> None:
    """The default `Alert`. RECOVERY: the conditions whose keys start with `key` are over
    (said on every new live socket, so only the receiver knows which were active)."""
    if severity is Severity.RECOVERY:
        logger.debug("alerts %s* end: %s", key, message)
        return
    logger.log(severity.log_level, "ALERT %s: %s", key, message)


class SocketRole(enum.StrEnum):
    LIVE = "live"  # the shard's socket
    SWAP = "swap"  # the new socket of a swap, not live yet
    NONE = "none"  # the shard has no socket: its `state` is the shard's phase


@dataclasses.dataclass(frozen=True)
class SocketStatus:
    shard: int
    id: int | None
    state: SocketState | ShardPhase
    role: SocketRole
    token_fp: str | None
    instruments: int
    packets: int
    last_data_utc: float | None


@dataclasses.dataclass(frozen=True)
class FeedStatus:
    token_fp: str | None
    token_expires_at: str | None
    sockets: tuple[SocketStatus, ...]
    sockets_live: int
    connects: int
    reconnects: int
    swaps: int
    gaps: int
    swap_log: tuple[dict, ...]
    token_refused: dict | None  # {"fingerprint", "code", "at"}: Dhan's feed refused the token


class Supervisor:
    """Runs one worker thread per shard; see the module docstring."""

    def __init__(
        self,
        *,
        feed_url: str,
        instruments: Sequence[Instrument],
        mode: str,
        watcher: TokenSource,
        sink: Sink,
        in_session: Callable[[dt.datetime], bool],
        stale_after_s: float,
        timing: Timing | None = None,
        on_gap: Callable[[Gap], None] = lambda gap: None,
        down_since: float | None = None,
        duplicates: Callable[[], int] = lambda: 0,
        alert: Alert = log_alert,
        clock: Clock | None = None,
    ) -> None:
        self.feed_url = feed_url
        self.mode = mode
        self.watcher = watcher
        self.sink = sink
        self.timing = timing or Timing()
        self.counters = FeedCounters()
        self.swap_log: deque[SwapRecord] = deque(maxlen=50)
        self.ctx = ShardContext(
            watcher=watcher,
            timing=self.timing,
            clock=clock or SystemClock(),
            counters=self.counters,
            alerts=AlertOnce(alert),
            stale_after_s=stale_after_s,
            in_session=in_session,
            on_gap=on_gap,
            on_swap=self.swap_log.append,
            duplicates=duplicates,
        )
        self._connect_ids = itertools.count(1)
        self._opening: set[FeedConnection] = set()  # in a handshake: stop() closes them
        self._lock = threading.Lock()
        self.workers = [
            ShardWorker(i, shard, self._socket_opener(i, shard), self.ctx, down_since=down_since)
            for i, shard in enumerate(
                shard_instruments(instruments, per_socket=self.timing.max_per_socket)
            )
        ]

    def _socket_opener(
        self, shard: int, instruments: Sequence[Instrument]
    ) -> Callable[[Token], FeedSocket]:
        pairs = [(i.segment, i.security_id) for i in instruments]
        timing = self.timing

        def open_socket(token: Token) -> FeedSocket:
            conn = FeedConnection(
                next(self._connect_ids),
                shard,
                self.feed_url,
                token,
                self.sink,
                connect_timeout=timing.connect_timeout_s,
                recv_timeout=timing.recv_timeout_s,
                clock=self.ctx.clock,
            )
            with self._lock:
                self._opening.add(conn)
            try:
                conn.connect()
                conn.subscribe(pairs, self.mode)
            except ConnectFailed:
                conn.close(timing.close_timeout_s)
                raise
            finally:
                with self._lock:
                    self._opening.discard(conn)
            return conn

        return open_socket

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
        clock = self.ctx.clock
        self.ctx.stopping.set()
        for worker in self.workers:
            worker.wake.set()
        deadline = clock.monotonic() + timeout
        for worker in self.workers:
            worker.join(max(0.0, deadline - clock.monotonic()))
        with self._lock:
            opening = list(self._opening)
        for conn in opening:  # a worker stuck in a handshake
            conn.close(0.2)
        for worker in self.workers:
            for sock in worker.connections():
                sock.close(0.2)

    # -- state -----------------------------------------------------------------------------

    def snapshot(self) -> FeedStatus:
        sockets: list[SocketStatus] = []
        for worker in self.workers:
            conns = worker.connections()
            sockets.extend(
                SocketStatus(
                    shard=worker.index,
                    id=conn.conn_id,
                    state=conn.state,
                    role=SocketRole.LIVE if conn is worker.conn else SocketRole.SWAP,
                    token_fp=conn.token.fingerprint,
                    instruments=len(worker.instruments),
                    packets=conn.packets,
                    last_data_utc=conn.last_data_utc,
                )
                for conn in conns
            )
            if not conns:
                sockets.append(
                    SocketStatus(
                        shard=worker.index,
                        id=None,
                        state=worker.phase,
                        role=SocketRole.NONE,
                        token_fp=None,
                        instruments=len(worker.instruments),
                        packets=0,
                        last_data_utc=None,
                    )
                )
        token = self.watcher.current
        c = self.counters
        return FeedStatus(
            token_fp=token.fingerprint if token else None,
            token_expires_at=token.expires_at.isoformat() if token else None,
            sockets=tuple(sockets),
            sockets_live=sum(1 for w in self.workers if w.conn is not None and w.conn.alive),
            connects=c.connects,
            reconnects=c.reconnects,
            swaps=c.swaps,
            gaps=c.gaps,
            swap_log=tuple(s.as_dict() for s in list(self.swap_log)[-10:]),
            token_refused=self.ctx.refusals.last,
        )
