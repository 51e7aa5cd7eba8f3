"""The order in which pytest-xdist hands out the tests under `make test` (`-n 4
--maxschedchunk 1`: one test at a time, in this order): the slow tests first, so that the
longest is not started last, each followed by a quick one.

Why the quick one: a worker starts a test only once it holds the next one too (teardown must
know what follows), and that next one waits for the running test to end. Behind a slow test
it should be a quick one, not the next slow test, which an idle worker could run meanwhile.

A test is slow when it is marked so (`@pytest.mark.slow`): it takes tens of seconds or more,
mostly waiting on programs, sleeps and minute boundaries.
"""

from __future__ import annotations

import pytest


def slow_first(items: list[pytest.Item]) -> list[pytest.Item]:
    """The slow tests in collection order, each followed by a quick one; then the rest."""
    slow = [item for item in items if item.get_closest_marker("slow")]
    fillers = [item for item in items if not item.get_closest_marker("slow")][: len(slow)]
    head = [item for pair in zip(slow, fillers, strict=False) for item in pair]
    head += slow[len(fillers) :]
    taken = set(head)
    return head + [item for item in items if item not in taken]
