"""One shard's worker with fake sockets and a fake clock: make-before-break, the 805 floor,
807 with the same token, backoff with jitter. Virtual time runs only when the worker waits,
so minutes of delays pass in milliseconds, and the worker runs in the test's own thread."""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
import itertools
import threading
from collections.abc import Callable
from pathlib import Path

from dhanfeed.feed.connection import ConnectFailed, SocketState
from dhanfeed.feed.policy import Timing
from dhanfeed.feed.shard import ShardPhase, ShardWorker
from dhanfeed.feed.shard_context import (
    AlertOnce,
    FeedCounters,
    Gap,
    ShardContext,
    SwapOutcome,
    SwapRecord,
)
from dhanfeed.instruments import Instrument
from dhanfeed.severity import Severity
from dhanfeed.token import Token

EPOCH = dt.datetime(2026, 1, 5, 4, 0, tzinfo=dt.UTC)  # a Monday, 09:30 IST


class FakeClock:
    """Monotonic time starts at 0; `wait` jumps to the next scheduled event or the timeout."""

    def __init__(self) -> None:
        self.t = 0.0
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        return self.t

    def time(self) -> float:
        return EPOCH.timestamp() + self.t

    def now(self) -> dt.datetime:
        return EPOCH + dt.timedelta(seconds=self.t)

    def at(self, t: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (t, next(self._seq), action))

    def wait(self, event: threading.Event, timeout: float) -> bool:
        end = self.t + timeout
        while not event.is_set() and self._timers and self._timers[0][0] <= end:
            t, _, action = heapq.heappop(self._timers)
            self.t = max(self.t, t)
            action()
        if not event.is_set():
            self.t = end
        return event.is_set()


def token(n: int) -> Token:
    return Token(
        access_token=f"token-{n}",
        client_id="1000000001",
        expires_at=EPOCH + dt.timedelta(days=1),
        issued_at=EPOCH - dt.timedelta(hours=1),
        consumer_type="SELF",
    )


class FakeWatcher:
    """The token file: `publish` writes a new token and tells whoever waits."""

    path = Path("state/token.json")
    problem: str | None = None

    def __init__(self, clock: FakeClock, current: Token) -> None:
        self.clock = clock
        self.current: Token | None = current
        self.changed = threading.Event()
        self.rereads = 0

    def publish(self, new: Token) -> None:
        self.current = new
        self.changed.set()

    def reread(self) -> None:
        self.rereads += 1

    def wait_for_change(self, fingerprint: str | None, timeout: float) -> Token | None:
        if self.current is not None and self.current.fingerprint != fingerprint:
            return self.current
        self.changed.clear()
        self.clock.wait(self.changed, timeout)
        return self.current


class FakeSocket:
    """A socket as the worker sees it; the test (through the clock) makes it deliver or die."""

    def __init__(self, server: FakeServer, conn_id: int, tok: Token) -> None:
        self.server, self.clock = server, server.clock
        self.conn_id, self.token = conn_id, tok
        self.state = SocketState.OPEN
        self.closed = threading.Event()
        self.opened_at: float | None = self.clock.t
        self.closed_at: float | None = None
        self.closed_utc: float | None = None
        self.last_data: float | None = None
        self.last_data_utc: float | None = None
        self.disconnect_code: int | None = None
        self.close_reason = ""
        self.packets = 0

    @property
    def alive(self) -> bool:
        return not self.closed.is_set()

    def stream(self, every_s: float = 0.05) -> None:
        """Deliver a data packet now and every `every_s` while open."""
        if self.closed.is_set():
            return
        if self.last_data is None:
            self.server.log("live", self.conn_id)
        self.last_data, self.last_data_utc = self.clock.t, self.clock.time()
        self.packets += 1
        self.clock.at(self.clock.t + every_s, lambda: self.stream(every_s))

    def kill(self, code: int | None, reason: str) -> None:
        """The server ends the socket (with Dhan's disconnect code, if any)."""
        self.disconnect_code = code
        self._end(reason)

    def close(self, timeout: float) -> None:
        if not self.closed.is_set():
            self.server.log("close", self.conn_id)
        self._end(self.close_reason or "closed by us")

    def _end(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.state, self.close_reason = SocketState.CLOSED, reason
        self.closed_at, self.closed_utc = self.clock.t, self.clock.time()
        self.closed.set()


class FakeServer:
    """`open_socket` for the worker: each connect follows the next step of a plan."""

    def __init__(self, clock: FakeClock, plan: Callable[[FakeSocket], None] | None = None) -> None:
        self.clock = clock
        self.plan = plan or (lambda sock: sock.stream())
        self.refuse: list[int | None] = []  # handshakes to refuse first (HTTP status or None)
        self.sockets: list[FakeSocket] = []
        self.events: list[tuple[str, int, float]] = []  # (what, socket id, monotonic time)
        self.attempts: list[float] = []

    def log(self, what: str, conn_id: int) -> None:
        self.events.append((what, conn_id, self.clock.t))

    def when(self, what: str, conn_id: int) -> float:
        return next(t for w, i, t in self.events if w == what and i == conn_id)

    def open_socket(self, tok: Token) -> FakeSocket:
        self.attempts.append(self.clock.t)
        if self.refuse:
            status = self.refuse.pop(0)
            raise ConnectFailed(f"handshake refused: HTTP {status}", status)
        sock = FakeSocket(self, len(self.sockets) + 1, tok)
        self.sockets.append(sock)
        self.log("open", sock.conn_id)
        self.plan(sock)
        return sock


class Harness:
    def __init__(self, timing: Timing | None = None) -> None:
        self.clock = FakeClock()
        self.watcher = FakeWatcher(self.clock, token(1))
        self.server = FakeServer(self.clock)
        self.alerts: list[tuple[str, str, str]] = []
        self.gaps: list[Gap] = []
        self.swaps: list[SwapRecord] = []
        self.ctx = ShardContext(
            watcher=self.watcher,
            timing=timing or Timing(),
            clock=self.clock,
            counters=FeedCounters(),
            alerts=AlertOnce(lambda *alert: self.alerts.append(alert)),
            stale_after_s=3600,
            in_session=lambda now: True,
            on_gap=self.gaps.append,
            on_swap=self.swaps.append,
            duplicates=lambda: 0,
        )
        instruments = [Instrument("NSE_EQ", 1333), Instrument("NSE_EQ", 11536)]
        self.worker = ShardWorker(0, instruments, self.server.open_socket, self.ctx)

    def at(self, t: float, action: Callable[[], None]) -> None:
        self.clock.at(t, action)

    def run_until(self, t: float) -> None:
        """Run the worker in this thread until virtual time `t`, then stop it."""
        self.clock.at(t, self.ctx.stopping.set)
        self.worker.run()


def test_a_token_swap_closes_the_old_socket_only_after_the_new_one_is_live() -> None:
    h = Harness()
    h.server.plan = lambda sock: h.clock.at(h.clock.t + 0.3, sock.stream)  # live 0.3 s after
    h.at(5.0, lambda: h.watcher.publish(token(2)))
    h.run_until(10.0)

    old, new = h.server.sockets[:2]
    assert (old.token, new.token) == (token(1), token(2))
    assert h.server.when("open", 2) < h.server.when("live", 2) <= h.server.when("close", 1)
    assert h.server.when("close", 1) - h.server.when("live", 2) < 0.1  # and promptly after
    assert [s.outcome for s in h.swaps] == [SwapOutcome.MADE_BEFORE_BREAK]
    assert h.swaps[0].overlap_s > 0 and h.swaps[0].gap_s == 0
    assert h.gaps == [] or h.gaps[-1].reason.endswith("(until shutdown)")
    assert h.ctx.counters.swaps == 1 and h.ctx.counters.reconnects == 0


def test_a_swap_whose_new_socket_never_goes_live_keeps_the_old_one() -> None:
    h = Harness()
    first = True

    def plan(sock: FakeSocket) -> None:
        nonlocal first
        if first:
            sock.stream()
            first = False
        else:  # the new token's socket is refused by the server once subscribed
            h.clock.at(h.clock.t + 0.2, lambda: sock.kill(807, "disconnect 807 (token)"))

    h.server.plan = plan
    h.at(5.0, lambda: h.watcher.publish(token(2)))
    h.run_until(30.0)

    assert h.swaps[0].outcome is SwapOutcome.FAILED and "807" in h.swaps[0].reason
    assert h.server.when("close", 1) >= 30.0  # the old socket stayed until the shutdown
    assert len(h.server.sockets) == 2  # and the refused token is not tried again
    assert h.ctx.counters.swaps == 0


def test_after_805_the_next_connect_waits_at_least_the_floor() -> None:
    h = Harness()
    h.at(1.0, lambda: h.server.sockets[0].kill(805, "disconnect 805 (too many sockets)"))
    h.run_until(200.0)

    first_retry = h.server.attempts[1]
    # counted from when the worker notices the close (it looks every 0.1 s)
    assert 1.0 + Timing().floor_805_s <= first_retry <= 1.0 + Timing().floor_805_s + 0.2
    assert len(h.server.attempts) == 2  # then it stays up
    assert h.gaps[0].start_utc == EPOCH.timestamp() + 1.0
    assert h.gaps[0].end_utc - h.gaps[0].start_utc >= Timing().floor_805_s


def test_after_807_with_the_same_token_the_worker_waits_for_a_new_file_and_alerts_once() -> None:
    h = Harness()
    phases: list[ShardPhase] = []
    h.at(2.0, lambda: h.server.sockets[0].kill(807, "disconnect 807 (access token expired)"))
    h.at(100.0, lambda: phases.append(h.worker.phase))
    h.at(500.0, lambda: h.watcher.publish(token(2)))
    h.run_until(600.0)

    assert phases == [ShardPhase.WAITING_FOR_TOKEN]  # what the status file shows meanwhile
    assert h.watcher.rereads == 1  # the file was read again at once
    assert h.server.attempts[0] == 0.0 and len(h.server.attempts) == 2  # no retry meanwhile
    assert 500.0 <= h.server.attempts[1] < 501.0  # the new token is used as soon as it appears
    assert h.server.sockets[1].token == token(2)
    rejected = [a for a in h.alerts if a[0].startswith("token-rejected-")]
    assert len(rejected) == 1 and token(1).fingerprint in rejected[0][0]
    assert rejected[0][1] is Severity.CRITICAL  # a person must run renew_token
    assert "token-1" not in repr(h.alerts)  # the fingerprint only, never the token


def test_a_refused_token_is_recorded_until_a_socket_is_live_again_which_ends_its_alerts() -> None:
    h = Harness()
    refusal: list[dict | None] = []
    h.at(2.0, lambda: h.server.sockets[0].kill(807, "disconnect 807 (access token expired)"))
    h.at(100.0, lambda: refusal.append(h.ctx.refusals.last))
    h.at(500.0, lambda: h.watcher.publish(token(2)))
    h.run_until(600.0)

    assert refusal == [
        {"fingerprint": token(1).fingerprint, "code": 807, "at": (EPOCH.replace(
            second=2) + dt.timedelta(seconds=Timing().token_grace_s)).isoformat()}
    ]  # fmt: skip
    assert h.ctx.refusals.last is None  # token 2 is live: the refusal no longer stands
    ended = [(key, message) for key, level, message in h.alerts if level is Severity.RECOVERY]
    live_2 = f"the feed is live with token {token(2).fingerprint}"
    assert ("token-", live_2) in ended and ("feed-", live_2) in ended


def test_refused_connects_back_off_exponentially_with_jitter_inside_its_bounds() -> None:
    h = Harness()
    h.server.refuse = [None] * 8
    h.run_until(1000.0)

    waits = [b - a for a, b in itertools.pairwise(h.server.attempts[:9])]
    timing = Timing()
    for attempt, waited in enumerate(waits):
        ceiling = min(timing.backoff_max_s, timing.backoff_initial_s * 2**attempt)
        assert ceiling / 2 - 1e-9 <= waited <= ceiling + 1e-9, (attempt, waited)
    assert len(set(waits[:5])) == 5  # jitter: not a fixed schedule
    assert len(h.server.sockets) == 1 and h.server.when("close", 1) >= 1000.0  # up at last


def test_a_handshake_answered_429_waits_at_least_its_floor() -> None:
    h = Harness(Timing(floor_429_s=42))
    h.server.refuse = [429]
    h.run_until(100.0)
    assert h.server.attempts[1] - h.server.attempts[0] >= 42


def test_a_silent_stretch_that_ends_in_a_stale_reconnect_is_a_gap_from_the_last_data() -> None:
    h = Harness()
    h.ctx = dataclasses.replace(h.ctx, stale_after_s=30.0)
    h.worker.ctx = h.ctx

    def plan(sock: FakeSocket) -> None:
        if sock.conn_id == 1:  # data for 5 s, then silence (server pings only)
            for t in range(6):
                h.clock.at(float(t), lambda: deliver(sock))
        else:
            sock.stream()

    def deliver(sock: FakeSocket) -> None:
        if sock.alive:
            sock.last_data, sock.last_data_utc = h.clock.t, h.clock.time()

    h.server.plan = plan
    h.run_until(60.0)

    first = h.gaps[0]
    assert first.start_utc == EPOCH.timestamp() + 5.0  # the last data, not the reconnect
    assert first.reason.startswith("stale: no data for 30s")
    reconnect = h.server.attempts[1]
    assert reconnect >= 35.0 and first.end_utc == EPOCH.timestamp() + reconnect


def test_repeated_805_evictions_raise_one_alert_naming_another_program_on_the_client_id() -> None:
    h = Harness()
    h.server.plan = lambda sock: h.clock.at(h.clock.t + 1.0, lambda: sock.kill(805, "805"))
    h.run_until(Timing().floor_805_s * 5)

    evicted = [a for a in h.alerts if a[0] == "evicted-805"]
    assert len(evicted) == 1
    _, level, message = evicted[0]
    assert level == "critical" and "another program is using client id 1000000001" in message
    assert "3 times" in message and "another state directory" in message


def test_a_single_805_is_not_an_alert() -> None:
    h = Harness()
    h.at(1.0, lambda: h.server.sockets[0].kill(805, "805"))
    h.run_until(Timing().floor_805_s * 5)
    assert not [a for a in h.alerts if a[0] == "evicted-805"]
