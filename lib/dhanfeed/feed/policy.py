"""The feed's policies, pure: every delay (`Timing`), sharding, backoff, and when a feed is stale.

- Sharding: ≤ 5000 instruments per socket, at most 4 sockets; the fifth slot Dhan allows is
  kept for a token swap.
- Reconnects never give up: capped exponential backoff with equal jitter; floors after 805
  (too many sockets) and a handshake 429; 806 (no data plan) retries slowly.
- Stale feed: inside the trading session a socket without data packets for `stale_after`
  is replaced (server pings do not count).

Nothing here reads a clock or does I/O: callers pass `now` and a random source in.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import random
from collections.abc import Callable, Sequence

from dhanfeed.feed.protocol import MAX_PER_SOCKET
from dhanfeed.instruments import Instrument

MAX_SOCKETS = 4  # Dhan allows 5 per user; one stays free for a token swap
TOKEN_CODES = frozenset({807, 808, 809})


@dataclasses.dataclass(frozen=True)
class Timing:
    """Every delay of the supervisor, in seconds, and the per-socket limit. Production defaults."""

    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    stable_after_s: float = 30.0  # a socket up this long (with data) resets the backoff
    floor_805_s: float = 60.0  # after "connection limit exceeded"
    evictions_alert: int = 3  # this many 805s within evictions_window_s: alert (someone else)
    evictions_window_s: float = 1800.0
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
    token_poll_s: float = 0.1
    # A batch of messages that waited this long for the consumer: "collector falling behind".
    behind_after_s: float = 5.0  # one stat() per poll; the swap goal is a median notice of 100 ms
    # Not a delay: Dhan's instruments-per-socket limit, used for sharding. Tests lower it to
    # spread a few instruments over all 4 sockets.
    max_per_socket: int = MAX_PER_SOCKET


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
