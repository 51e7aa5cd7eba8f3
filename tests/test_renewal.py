"""The renewal decision as a table: plain token + injected `now` + policy → action + reason."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from dhanfeed.config_load import load_config
from dhanfeed.renewal import Action, Policy, decide
from dhanfeed.session import SessionCalendar
from support.renew import write_config
from support.token_files import make_token

IST = zoneinfo.ZoneInfo("Asia/Kolkata")
MONDAY = dt.date(2026, 1, 5)  # a Monday
REPUBLIC_DAY = dt.date(2026, 1, 26)  # a Monday, an exchange holiday


def ist(day: dt.date, hh: int, mm: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hh, mm), tzinfo=IST)


def policy(holidays: tuple[dt.date, ...] = ()) -> Policy:
    calendar = SessionCalendar(
        tz=IST, days=frozenset(range(5)), start=dt.time(9, 0), end=dt.time(15, 30),
        holidays=frozenset(holidays),
    )  # fmt: skip
    return Policy(dt.timedelta(hours=6), dt.timedelta(hours=2), calendar)


TUESDAY = MONDAY + dt.timedelta(days=1)
SATURDAY = MONDAY + dt.timedelta(days=5)


def test_a_token_with_more_than_renew_before_left_is_not_due():
    token = make_token(exp=ist(TUESDAY, 20))
    d = decide(token, ist(MONDAY, 22), policy(), can_regenerate=False)
    assert d.action is Action.NOT_DUE
    assert d.due_at == token.expires_at - dt.timedelta(hours=6)
    assert d.reason.startswith("not due: expires at 2026-01-06 20:00 IST (in 22h 00m)")


def test_a_due_token_outside_the_session_is_renewed():
    d = decide(make_token(exp=ist(MONDAY, 23)), ist(MONDAY, 18), policy(), can_regenerate=False)
    assert d.action is Action.RENEW
    assert "due: less than renew_before (6h 00m) left" in d.reason


def test_renewal_is_postponed_inside_the_session_when_the_token_outlives_it():
    token = make_token(exp=ist(MONDAY, 18))  # 2.5 h left at the 15:30 close
    d = decide(token, ist(MONDAY, 12, 30), policy(), can_regenerate=False)
    assert d.action is Action.POSTPONED
    assert d.due_at == ist(MONDAY, 15, 30)
    assert d.reason.startswith("postponed (session)")
    # after the close the same token is renewed
    after = decide(token, ist(MONDAY, 15, 30), policy(), can_regenerate=False)
    assert after.action is Action.RENEW


def test_a_due_token_that_would_fall_under_must_renew_before_during_the_session_is_renewed_now():
    token = make_token(exp=ist(MONDAY, 17))  # 1.5 h left at the close: under the 2 h line
    d = decide(token, ist(MONDAY, 12, 30), policy(), can_regenerate=False)
    assert d.action is Action.RENEW
    assert "before the close at 2026-01-05 15:30 IST" in d.reason


def test_a_token_under_must_renew_before_is_renewed_even_inside_the_session():
    d = decide(make_token(exp=ist(MONDAY, 15)), ist(MONDAY, 13, 30), policy(), can_regenerate=False)
    assert d.action is Action.RENEW
    assert "under must_renew_before" in d.reason


def test_before_the_open_a_token_that_would_cross_the_line_during_the_session_is_renewed_early():
    token = make_token(exp=ist(TUESDAY, 16))  # the 2 h line (14:00) falls inside the session
    early = decide(token, ist(TUESDAY, 4), policy(), can_regenerate=False)
    assert early.action is Action.RENEW
    assert "early renewal before the session opens at 2026-01-06 09:00 IST" in early.reason
    # earlier in the night it is not due yet, and the reported due time is the early one
    night = decide(token, ist(TUESDAY, 1), policy(), can_regenerate=False)
    assert night.action is Action.NOT_DUE
    assert night.due_at == ist(TUESDAY, 3)


def test_a_token_whose_line_falls_after_the_close_is_not_renewed_early():
    token = make_token(exp=ist(TUESDAY, 18))  # line 16:00, after the 15:30 close
    d = decide(token, ist(TUESDAY, 4), policy(), can_regenerate=False)
    assert d.action is Action.NOT_DUE
    assert d.due_at == ist(TUESDAY, 12)


def test_weekends_have_no_session_so_a_due_token_is_renewed_at_once():
    token_kw = {"exp": ist(MONDAY, 18)}
    weekday = decide(make_token(**token_kw), ist(MONDAY, 12, 30), policy(), can_regenerate=False)
    assert weekday.action is Action.POSTPONED  # the contrast: a weekday postpones
    saturday = make_token(exp=ist(SATURDAY, 18))
    d = decide(saturday, ist(SATURDAY, 12, 30), policy(), can_regenerate=False)
    assert d.action is Action.RENEW


def test_a_listed_holiday_has_no_session():
    token = make_token(exp=ist(REPUBLIC_DAY, 18))
    workday = decide(token, ist(REPUBLIC_DAY, 12, 30), policy(), can_regenerate=False)
    assert workday.action is Action.POSTPONED
    holiday = decide(
        token, ist(REPUBLIC_DAY, 12, 30), policy((REPUBLIC_DAY,)), can_regenerate=False
    )
    assert holiday.action is Action.RENEW


def test_a_holiday_moves_the_pre_open_check_to_the_next_trading_day():
    token = make_token(exp=ist(REPUBLIC_DAY, 16))  # line 14:00 on the holiday
    d = decide(token, ist(REPUBLIC_DAY, 4), policy((REPUBLIC_DAY,)), can_regenerate=False)
    assert d.action is Action.NOT_DUE
    assert d.due_at == ist(REPUBLIC_DAY, 10)


@pytest.mark.parametrize(
    ("can_regenerate", "action"), [(True, Action.REGENERATE), (False, Action.MANUAL)]
)
def test_an_expired_token_is_regenerated_with_totp_or_needs_a_person(can_regenerate, action):
    token = make_token(exp=ist(MONDAY, 10))
    d = decide(token, ist(MONDAY, 10, 1), policy(), can_regenerate=can_regenerate)
    assert d.action is action
    assert f"token {token.fingerprint} expired at 2026-01-05 10:00 IST" in d.reason


@pytest.mark.parametrize(
    ("can_regenerate", "action"), [(True, Action.REGENERATE), (False, Action.MANUAL)]
)
def test_no_token_at_all_is_regenerated_with_totp_or_needs_a_person(can_regenerate, action):
    d = decide(None, ist(MONDAY, 10), policy(), can_regenerate=can_regenerate)
    assert d.action is action
    assert d.reason.startswith("no token file")


@pytest.mark.parametrize(
    ("can_regenerate", "action"), [(True, Action.REGENERATE), (False, Action.MANUAL)]
)
def test_a_due_app_token_cannot_be_renewed(can_regenerate, action):
    token = make_token(exp=ist(MONDAY, 23), kind="APP")
    d = decide(token, ist(MONDAY, 18), policy(), can_regenerate=can_regenerate)
    assert d.action is action
    assert "tokens of type APP cannot be renewed" in d.reason


@pytest.mark.parametrize(
    ("can_regenerate", "action"), [(True, Action.REGENERATE), (False, Action.MANUAL)]
)
def test_a_token_dhan_refused_is_handled_like_an_expired_one_even_when_not_due(
    can_regenerate, action
):
    token = make_token(exp=ist(TUESDAY, 20))
    d = decide(
        token, ist(MONDAY, 22), policy(), can_regenerate=can_regenerate, refused="feed code 807"
    )
    assert d.action is action
    assert d.reason.startswith(f"token {token.fingerprint} was refused by Dhan (feed code 807)")
    assert "not due" not in d.reason


def test_force_renews_a_token_that_is_not_due():
    token = make_token(exp=ist(TUESDAY, 20))
    d = decide(token, ist(MONDAY, 22), policy(), can_regenerate=False, force=True)
    assert d.action is Action.RENEW
    assert d.reason.startswith("forced with --force")


def test_a_clock_far_behind_the_tokens_issue_time_uses_the_issue_time_as_now():
    # A short-lived token (5 h) read by a host whose clock is 3 h behind: taken at face value
    # it would look 8 h from expiry and not due; from its `iat` it is 5 h away and due.
    iat = ist(MONDAY, 17)
    token = make_token(exp=iat + dt.timedelta(hours=5), iat=iat)
    d = decide(token, iat - dt.timedelta(hours=3), policy(), can_regenerate=False)
    assert d.clock_behind
    assert d.action is Action.RENEW
    assert "system clock is 3h 00m behind the token's issue time" in d.reason
    assert "(in 5h 00m)" in d.reason


def test_a_clock_a_little_behind_the_issue_time_is_tolerated():
    iat = ist(MONDAY, 17)
    token = make_token(exp=iat + dt.timedelta(hours=24), iat=iat)
    d = decide(token, iat - dt.timedelta(minutes=2), policy(), can_regenerate=False)
    assert not d.clock_behind
    assert d.action is Action.NOT_DUE
    assert "clock" not in d.reason


def test_a_calendar_without_session_days_never_postpones():
    calendar = SessionCalendar(IST, frozenset(), dt.time(9), dt.time(15, 30))
    empty = Policy(dt.timedelta(hours=6), dt.timedelta(hours=2), calendar)
    d = decide(make_token(exp=ist(MONDAY, 18)), ist(MONDAY, 12, 30), empty, can_regenerate=False)
    assert d.action is Action.RENEW


def test_the_policy_is_built_from_the_config(tmp_path):
    path = write_config(
        tmp_path, token='renew_before = "5h"\nmust_renew_before = "1h"',
        session='days = ["mon"]\nholidays = ["2026-01-26"]',
    )  # fmt: skip
    p = Policy.from_config(load_config(path))
    assert p.renew_before == dt.timedelta(hours=5)
    assert p.must_renew_before == dt.timedelta(hours=1)
    assert p.calendar.days == frozenset({0})
    assert not p.calendar.is_trading_day(REPUBLIC_DAY)
    assert p.calendar.is_trading_day(MONDAY)
