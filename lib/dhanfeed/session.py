"""The trading-session calendar: which instants fall inside a session, and when the next opens.

Pure: plain values in (aware datetimes), plain values out. Days, hours, holidays and the time
zone come from the `[session]` config section.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_LOOKAHEAD_DAYS = 30  # a calendar with no session in a month has none at all for our purpose


@dataclasses.dataclass(frozen=True)
class Session:
    start: dt.datetime  # aware
    end: dt.datetime  # aware

    def contains(self, when: dt.datetime) -> bool:
        return self.start <= when < self.end


@dataclasses.dataclass(frozen=True)
class SessionCalendar:
    tz: dt.tzinfo
    days: frozenset[int]  # 0 = Monday
    start: dt.time
    end: dt.time
    holidays: frozenset[dt.date] = frozenset()

    @classmethod
    def from_config(cls, section: object) -> SessionCalendar:
        """Build from a `SessionSection` (timezone, days, start, end, holidays)."""
        return cls(
            tz=zoneinfo.ZoneInfo(section.timezone),  # type: ignore[attr-defined]
            days=frozenset(WEEKDAYS.index(d.lower()) for d in section.days),  # type: ignore[attr-defined]
            start=section.start,  # type: ignore[attr-defined]
            end=section.end,  # type: ignore[attr-defined]
            holidays=frozenset(section.holidays),  # type: ignore[attr-defined]
        )

    def is_trading_day(self, day: dt.date) -> bool:
        return day.weekday() in self.days and day not in self.holidays

    def session_on(self, day: dt.date) -> Session | None:
        if not self.is_trading_day(day):
            return None
        return Session(
            dt.datetime.combine(day, self.start, tzinfo=self.tz),
            dt.datetime.combine(day, self.end, tzinfo=self.tz),
        )

    def current(self, now: dt.datetime) -> Session | None:
        """The session `now` falls inside, if any."""
        session = self.session_on(now.astimezone(self.tz).date())
        return session if session and session.contains(now) else None

    def next_opening(self, now: dt.datetime) -> Session | None:
        """The first session that opens after `now` (None for a calendar without sessions)."""
        today = now.astimezone(self.tz).date()
        for offset in range(_LOOKAHEAD_DAYS):
            session = self.session_on(today + dt.timedelta(days=offset))
            if session and session.start > now:
                return session
        return None
