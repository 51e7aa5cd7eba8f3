"""Which Ticker prints (indices: LTT and LTP, nothing unique) are a swap's second copy. Pure.

During a token swap both sockets carry the same packets for a while: the old socket's stream
ends with that overlap and the new one's begins with it. Within one LTT second, the copies are
found by lining the two streams up: the overlap starts at the first place in the older
socket's prices where they agree with the newer socket's prices for as long as both go, and a
print is a copy when the other socket has already brought the print at the matching place.
Counting prices instead (drop the n-th copy of a price when another socket brought it n times)
loses a print when the index returns to a price in the same second, once before the overlap on
the old socket and once after it on the new one.

Each socket's stream arrives in order, but the two interleave at random (a lagging old socket
may hand in a second the new one has left): prints are kept per second for `WINDOW_S` seconds;
an older print is dropped as stale. Without a source every copy of a price in a second counts
as a duplicate, and an older second as stale (one stream, no swap to tell apart).
"""

from __future__ import annotations

WINDOW_S = 5  # seconds of prints kept per instrument: longer than a socket lags behind the other


def overlap_start(older: list[float], newer: list[float]) -> int:
    """The first index of `older` from which it agrees with `newer` for as long as both go
    (`len(older)` when none: no overlap)."""
    for start in range(len(older)):
        common = min(len(older) - start, len(newer))
        if older[start : start + common] == newer[:common]:
            return start
    return len(older)


class TickerPrints:
    """One instrument's recent Ticker prints, per IST second and socket."""

    __slots__ = ("newest", "seconds")

    def __init__(self) -> None:
        self.newest: int | None = None  # newest LTT seen
        # LTT second → {source: the prices that socket brought in that second, in order}
        self.seconds: dict[int, dict[int | None, list[float]]] = {}

    def is_new(self, ltt: int, ltp: float, source: int | None) -> bool:
        """Record a print; False when it is stale or another socket's copy of one kept."""
        seconds = self.seconds
        if self.newest is None or ltt > self.newest:
            self.newest = ltt
            for old in [s for s in seconds if s <= ltt - WINDOW_S]:
                del seconds[old]
        elif ltt <= self.newest - WINDOW_S or (source is None and ltt < self.newest):
            return False
        prints = seconds.get(ltt)
        if prints is None:
            prints = seconds[ltt] = {}
        if source is None:
            if any(ltp in theirs for theirs in prints.values()):
                return False
            prints.setdefault(None, []).append(ltp)
            return True
        mine = prints.get(source)
        if mine is None:
            mine = prints[source] = []
        mine.append(ltp)
        at = len(mine) - 1
        for other, theirs in prints.items():
            if other == source:
                continue
            if other is None or other < source:  # connection ids grow: `other` is the old one
                if overlap_start(theirs, mine) + at < len(theirs):
                    return False
            else:
                start = overlap_start(mine, theirs)
                if start <= at < start + len(theirs):
                    return False
        return True
