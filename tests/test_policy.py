"""The feed's pure policies: sharding, backoff, floors, stale feed; the tests' timing override."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from dhanfeed.config import SessionSection
from dhanfeed.feed.policy import (
    Timing,
    backoff_delay,
    feed_is_stale,
    retry_delay,
    shard_instruments,
)
from dhanfeed.instruments import Instrument
from dhanfeed.session import SessionCalendar
from dhanfeed.token import IST
from support.collector_timing import ENV_TIMING, timing_from_env


def instruments(n: int) -> list[Instrument]:
    return [Instrument("NSE_EQ", i) for i in range(1, n + 1)]


@pytest.mark.parametrize(
    ("count", "sockets"), [(1, 1), (5000, 1), (5001, 2), (12000, 3), (20000, 4)]
)
def test_instruments_are_sharded_at_most_5000_per_socket_on_at_most_4_sockets(
    count: int, sockets: int
) -> None:
    shards = shard_instruments(instruments(count))
    assert len(shards) == sockets
    assert all(len(s) <= 5000 for s in shards)
    assert [i for s in shards for i in s] == instruments(count)  # each once, order kept
    assert max(map(len, shards)) - min(map(len, shards)) <= 1  # spread evenly


def test_more_instruments_than_four_sockets_hold_is_refused() -> None:
    with pytest.raises(ValueError, match="at most 4"):
        shard_instruments(instruments(20001))


def test_no_instruments_means_no_sockets() -> None:
    assert shard_instruments([]) == []


def test_backoff_doubles_from_about_one_second_and_is_capped_at_sixty() -> None:
    timing = Timing()
    highs = [backoff_delay(a, timing, rand=lambda: 1.0) for a in range(10)]
    lows = [backoff_delay(a, timing, rand=lambda: 0.0) for a in range(10)]
    assert highs[:7] == [1, 2, 4, 8, 16, 32, 60]
    assert highs[-1] == 60 and lows[-1] == 30
    assert lows[0] == 0.5  # jitter: never less than half of the ceiling
    assert backoff_delay(10_000, timing, rand=lambda: 1.0) == 60  # no overflow


def test_jitter_spreads_the_delays_of_one_attempt() -> None:
    values = {backoff_delay(3, Timing(), rand=lambda v=v: v) for v in (0.0, 0.3, 0.7, 1.0)}
    assert len(values) == 4 and min(values) >= 4 and max(values) <= 8


@pytest.mark.parametrize(
    ("kwargs", "floor"),
    [
        ({"disconnect_code": 805}, 60),
        ({"http_status": 429}, 60),
        ({"disconnect_code": 806}, 300),
    ],
)
def test_805_429_and_806_wait_at_least_their_floor(kwargs: dict, floor: float) -> None:
    assert retry_delay(0, Timing(), rand=lambda: 0.0, **kwargs) == floor
    assert retry_delay(0, Timing(), rand=lambda: 1.0, disconnect_code=800) == 1.0


def test_floors_come_from_timing_so_tests_can_scale_them_down() -> None:
    timing = Timing(floor_805_s=2, floor_429_s=3)
    assert retry_delay(0, timing, disconnect_code=805, rand=lambda: 0.0) == 2
    assert retry_delay(0, timing, http_status=429, rand=lambda: 0.0) == 3


def test_timing_is_overridden_only_by_its_test_environment_variable() -> None:
    assert timing_from_env({}) == Timing()
    timing = timing_from_env({ENV_TIMING: json.dumps({"floor_805_s": 1.5, "live_quiet_s": 1})})
    assert timing.floor_805_s == 1.5 and timing.live_quiet_s == 1.0
    assert timing.floor_429_s == Timing().floor_429_s
    with pytest.raises(ValueError, match="unknown keys"):
        timing_from_env({ENV_TIMING: json.dumps({"floor_805": 1})})
    with pytest.raises(ValueError, match=ENV_TIMING):
        timing_from_env({ENV_TIMING: "{bad"})


def test_the_per_socket_limit_is_dhans_unless_a_test_lowers_it_to_get_more_shards() -> None:
    assert Timing().max_per_socket == 5000
    timing = timing_from_env({ENV_TIMING: json.dumps({"max_per_socket": 2})})
    assert timing.max_per_socket == 2 and isinstance(timing.max_per_socket, int)
    shards = shard_instruments(instruments(8), per_socket=timing.max_per_socket)
    assert [len(s) for s in shards] == [2, 2, 2, 2]
    for bad in (2.5, 0, "many"):
        with pytest.raises(ValueError, match=ENV_TIMING):
            timing_from_env({ENV_TIMING: json.dumps({"max_per_socket": bad})})


# --- stale feed: silence counts only inside the trading session ---


HOLIDAY = dt.date(2026, 1, 26)  # a Monday
CALENDAR = SessionCalendar.from_config(SessionSection(holidays=[HOLIDAY]))  # Mon-Fri 09:00-15:30


def in_session(now: dt.datetime) -> bool:
    """As the collector wires it: inside a session of the `[session]` calendar."""
    return CALENDAR.current(now) is not None


def stale(
    now: dt.datetime, silent_s: float, *, never_had_data: bool = False, after_s: float = 60
) -> bool:
    """A socket opened long ago whose last data packet (or opening) was `silent_s` ago."""
    now_mono = 10_000.0
    last = now_mono - silent_s
    return feed_is_stale(
        last_data=None if never_had_data else last,
        opened_at=last if never_had_data else now_mono - 5_000,
        now_mono=now_mono,
        stale_after_s=after_s,
        now=now,
        in_session=in_session,
    )


def at(day: str, hhmm: str) -> dt.datetime:
    return dt.datetime.fromisoformat(f"{day}T{hhmm}:00").replace(tzinfo=IST)


def test_a_silent_socket_inside_the_session_is_stale() -> None:
    wednesday_11 = at("2026-01-21", "11:00")
    assert stale(wednesday_11, 61)
    assert stale(wednesday_11.astimezone(dt.UTC), 61)  # the same instant in UTC
    assert stale(at("2026-01-21", "09:00"), 60)  # from the first second of the session


def test_silence_shorter_than_the_limit_is_not_stale_even_in_session() -> None:
    assert not stale(at("2026-01-21", "11:00"), 59)
    assert stale(at("2026-01-21", "11:00"), 11, after_s=10)  # the limit comes from config


def test_a_socket_that_never_delivered_data_counts_its_silence_from_the_opening() -> None:
    assert stale(at("2026-01-21", "11:00"), 61, never_had_data=True)
    assert not stale(at("2026-01-21", "11:00"), 30, never_had_data=True)


@pytest.mark.parametrize(
    "now",
    [
        at("2026-01-24", "11:00"),  # Saturday
        at("2026-01-25", "11:00"),  # Sunday
        at("2026-01-21", "15:30"),  # Wednesday, the close itself
        at("2026-01-21", "16:00"),  # Wednesday, after the close
        at("2026-01-21", "08:59"),  # Wednesday, before the open
        at(HOLIDAY.isoformat(), "11:00"),  # a weekday holiday
    ],
    ids=["saturday", "sunday", "at-close", "after-close", "before-open", "holiday"],
)
def test_silence_outside_the_session_is_normal(now: dt.datetime) -> None:
    assert not stale(now, 3 * 3600)  # hours of silence
