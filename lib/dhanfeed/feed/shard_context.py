"""What a shard worker is given and what it reports, apart from the worker itself.

- The interfaces it reads: `FeedSocket` (a `feed.connection.FeedConnection` in production),
  `OpenSocket` and `TokenSource` (the token watcher).
- What every shard of one collector shares, in a `ShardContext`: the counters, once-only
  alerts, the 805 evictions window, the last refusal, the stop flag and the one swap slot.
  Each of these is thread-safe on its own; the supervisor builds them and reads them.
- The records a worker hands back: a `Gap` (no live socket for its instruments) and a
  `SwapRecord` (one token swap and its outcome).
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import threading
from collections.abc import Callable
from typing import Protocol

from dhanfeed.clock import Clock
from dhanfeed.feed.connection import SocketState
from dhanfeed.feed.policy import Timing
from dhanfeed.instruments import Instrument
from dhanfeed.severity import Alert, Severity
from dhanfeed.token import Token


class FeedSocket(Protocol):
    """What a worker reads of a socket (`feed.connection.FeedConnection` in production).
    Times are the worker's clock: `*_at` monotonic, `*_utc` wall clock."""

    conn_id: int
    token: Token
    state: SocketState
    closed: threading.Event
    opened_at: float | None
    closed_at: float | None
    closed_utc: float | None
    last_data: float | None  # last data packet (pings do not count)
    last_data_utc: float | None
    disconnect_code: int | None
    close_reason: str
    packets: int

    @property
    def alive(self) -> bool: ...

    def close(self, timeout: float) -> None: ...


OpenSocket = Callable[[Token], FeedSocket]  # connected and subscribed, or ConnectFailed


class TokenSource(Protocol):
    """The token watcher, as a worker uses it."""

    @property
    def path(self) -> object: ...

    @property
    def current(self) -> Token | None: ...

    @property
    def problem(self) -> str | None: ...  # why there is no usable token, when there is none

    def reread(self) -> Token | None: ...

    def wait_for_change(self, fingerprint: str | None, timeout: float) -> Token | None: ...


@dataclasses.dataclass(frozen=True)
class Gap:
    """A stretch during which a shard's instruments had no live socket, or a socket that
    delivered no data until it was found stale (epoch s UTC)."""

    instruments: tuple[Instrument, ...]
    start_utc: float
    end_utc: float
    reason: str


class SwapOutcome(enum.StrEnum):
    PENDING = "pending"
    MADE_BEFORE_BREAK = "made-before-break"  # the old socket closed after the new one was live
    RECONNECTED = "reconnected"  # the old socket was gone first: a short gap
    FAILED = "failed"  # the new socket never became live; the old one stays


@dataclasses.dataclass
class SwapRecord:
    shard: int
    old_fp: str
    new_fp: str
    started_utc: float
    outcome: SwapOutcome = SwapOutcome.PENDING
    reason: str = ""  # why a swap failed
    overlap_s: float = 0.0
    duplicates_dropped: int = 0
    gap_s: float = 0.0

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class FeedCounters:
    """What the shards count, summed over them. Thread-safe through `add`."""

    connects: int = 0
    reconnects: int = 0
    swaps: int = 0
    gaps: int = 0
    _lock: threading.Lock = dataclasses.field(
        default_factory=threading.Lock, repr=False, compare=False
    )

    def add(
        self,
        *,
        connects: int = 0,
        reconnects: int = 0,
        swaps: int = 0,
        gaps: int = 0,
    ) -> None:
        with self._lock:
            self.connects += connects
            self.reconnects += reconnects
            self.swaps += swaps
            self.gaps += gaps


class AlertOnce:
    """Sends an alert once per key until the key is cleared (shared by the shards)."""

    def __init__(self, alert: Alert) -> None:
        self.alert = alert
        self._sent: set[str] = set()
        self._lock = threading.Lock()

    def once(self, key: str, severity: Severity, message: str) -> None:
        with self._lock:
            if key in self._sent:
                return
            self._sent.add(key)
        self.alert(key, severity, message)

    def clear(self, key: str) -> None:
        with self._lock:
            self._sent.discard(key)

    def ended(self, prefix: str, message: str) -> None:
        """Every condition whose key starts with `prefix` is over, also one sent by an earlier
        run: said as a RECOVERY, which the receiver turns into recovery messages."""
        with self._lock:
            self._sent = {k for k in self._sent if not k.startswith(prefix)}
        self.alert(prefix, Severity.RECOVERY, message)


class Evictions:
    """When Dhan closed one of our sockets with 805, across the shards, in a sliding window."""

    def __init__(self) -> None:
        self._times: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def record(self, now_mono: float, window_s: float) -> tuple[int, bool]:
        """Count one; return the evictions within the window and whether it starts a new
        episode (none in the window before it)."""
        with self._lock:
            while self._times and now_mono - self._times[0] > window_s:
                self._times.popleft()
            fresh = not self._times
            self._times.append(now_mono)
            return len(self._times), fresh


class Refusals:
    """The last time Dhan's feed refused the token from the file (807/808/809), as the status
    file shows it, so that the next renew_token run treats that token as refused."""

    def __init__(self) -> None:
        self._last: dict | None = None
        self._lock = threading.Lock()

    def record(self, token: Token, code: int | None, at: str) -> None:
        with self._lock:
            self._last = {"fingerprint": token.fingerprint, "code": code, "at": at}

    def clear(self) -> None:
        with self._lock:
            self._last = None

    @property
    def last(self) -> dict | None:
        with self._lock:
            return dict(self._last) if self._last else None


@dataclasses.dataclass(frozen=True)
class ShardContext:
    """What every shard of one collector shares."""

    watcher: TokenSource
    timing: Timing
    clock: Clock
    counters: FeedCounters
    alerts: AlertOnce
    stale_after_s: float
    in_session: Callable[..., bool]  # (aware datetime) -> inside the trading session
    on_gap: Callable[[Gap], None]
    on_swap: Callable[[SwapRecord], None]
    duplicates: Callable[[], int]  # packets the candle builder dropped as duplicates so far
    refusals: Refusals = dataclasses.field(default_factory=Refusals)
    evictions: Evictions = dataclasses.field(default_factory=Evictions)
    stopping: threading.Event = dataclasses.field(default_factory=threading.Event)
    swap_slot: threading.Lock = dataclasses.field(default_factory=threading.Lock)
