"""session.py: the trading-session calendar, as a table of instants (pure, `now` passed in)."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from dhanfeed.config import SessionSection
from dhanfeed.session import SessionCalendar

IST = zoneinfo.ZoneInfo("Asia/Kolkata")
REPUBLIC_DAY = dt.date(2026, 1, 26)  # a Monday
CALENDAR = SessionCalendar.from_config(SessionSection(holidays=[REPUBLIC_DAY]))


def ist(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 1, day, hour, minute, tzinfo=IST)


@pytest.mark.parametrize(
    ("when", "inside"),
    [
        (ist(6, 8, 59), False),  # Tuesday, before the open
        (ist(6, 9, 0), True),  # the open belongs to the session
        (ist(6, 15, 29), True),
        (ist(6, 15, 30), False),  # the close does not
        (ist(10, 11), False),  # Saturday
        (ist(26, 11), False),  # a listed holiday
        (dt.datetime(2026, 1, 6, 5, 0, tzinfo=dt.UTC), True),  # 10:30 IST, given in UTC
    ],
)
def test_an_instant_is_inside_a_session_only_on_a_trading_day_between_open_and_close(
    when: dt.datetime, inside: bool
):
    assert (CALENDAR.current(when) is not None) is inside


def test_the_default_calendar_is_monday_to_friday_09_00_to_15_30_in_kolkata():
    session = CALENDAR.session_on(dt.date(2026, 1, 6))
    assert session is not None
    assert (session.start, session.end) == (ist(6, 9), ist(6, 15, 30))
    assert [CALENDAR.is_trading_day(dt.date(2026, 1, d)) for d in range(5, 12)] == [
        True, True, True, True, True, False, False
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("now", "opens"),
    [
        (ist(6, 8), ist(6, 9)),  # later today
        (ist(6, 10), ist(7, 9)),  # inside today's: the next one is tomorrow's
        (ist(9, 16), ist(12, 9)),  # Friday evening: Monday
        (ist(23, 16), ist(27, 9)),  # Friday before the holiday Monday: Tuesday
    ],
)
def test_the_next_opening_skips_weekends_and_holidays(now: dt.datetime, opens: dt.datetime):
    session = CALENDAR.next_opening(now)
    assert session is not None and session.start == opens


def test_a_calendar_without_trading_days_has_no_session_and_no_next_opening():
    never = SessionCalendar(IST, frozenset(), dt.time(9), dt.time(15, 30))
    assert never.current(ist(6, 10)) is None
    assert never.next_opening(ist(6, 10)) is None
