"""Lining up a token swap's two sockets to find the second copies of index prints."""

from __future__ import annotations

import random

import pytest

from dhanfeed.ticker_prints import WINDOW_S, TickerPrints, overlap_start


@pytest.mark.parametrize(
    ("older", "newer", "start"),
    [
        ([1, 2, 3], [3, 4], 2),  # the old socket's last print is the new one's first
        ([1, 2, 3], [2, 3, 4], 1),
        ([1, 2, 3], [2], 1),  # the new socket has brought only part of the overlap yet
        ([1, 2, 3], [4, 5], 3),  # no overlap
        ([1, 2, 1], [1, 3, 1], 2),  # a price the index returns to is not an overlap
        ([], [1], 0),
        ([1, 1], [1], 0),  # the longest overlap that fits
    ],
)
def test_the_overlap_starts_where_the_old_stream_agrees_with_the_new_one(
    older: list[float], newer: list[float], start: int
) -> None:
    assert overlap_start(older, newer) == start


def swap_streams(rng: random.Random) -> tuple[list[float], list[float], list[float]]:
    """One second of index prints from few prices (so the index returns to some), split into
    the old socket's stream and the new one's, which share an overlap (maybe empty). Left out:
    what lining up cannot see, the new socket's first price also printed on the old socket
    before the overlap (at real index prices, about once in a thousand swaps)."""
    while True:
        prints = [float(rng.randrange(4)) for _ in range(rng.randrange(1, 12))]
        first_new = rng.randrange(len(prints) + 1)
        last_old = rng.randrange(max(0, first_new - 1), len(prints))
        old, new = prints[: last_old + 1], prints[first_new:]
        if not new or new[0] not in old[:first_new]:
            return prints, old, new


@pytest.mark.parametrize("seed", range(300))
def test_any_interleaving_of_a_swap_keeps_each_print_once(seed: int) -> None:
    rng = random.Random(seed)
    prints, old, new = swap_streams(rng)
    streams = {1: iter(old), 2: iter(new)}
    left = {1: len(old), 2: len(new)}
    seen = TickerPrints()
    kept = []
    while any(left.values()):  # each socket in order, the two interleaved at random
        source = rng.choice([s for s, n in left.items() if n])
        left[source] -= 1
        price = next(streams[source])
        if seen.is_new(1000, price, source):
            kept.append(price)
    assert sorted(kept) == sorted(prints)


def test_prints_older_than_the_window_are_stale_and_without_a_source_copies_are_duplicates():
    seen = TickerPrints()
    assert seen.is_new(1000, 5.0, 1)
    assert seen.is_new(1000 + WINDOW_S, 6.0, 1)
    assert not seen.is_new(1000, 7.0, 1)  # more than the window behind
    assert seen.is_new(1001, 7.0, 1)  # within it: a lagging socket's print
    assert list(seen.seconds) == [1000 + WINDOW_S, 1001]

    plain = TickerPrints()
    assert plain.is_new(1000, 5.0, None)
    assert not plain.is_new(1000, 5.0, None)
    assert plain.is_new(1001, 5.0, None)
    assert not plain.is_new(1000, 6.0, None)  # older than the newest: stale
