"""The renewal decision, pure: token + now + policy → action + reason.

`decide` never touches a file, a socket or the clock; `dhanfeed.renewer.Renewer` is the
thin shell that carries a decision out.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from typing import TYPE_CHECKING

from dhanfeed.session import SessionCalendar
from dhanfeed.token import Token, format_remaining

if TYPE_CHECKING:
    from dhanfeed.config import Config

# A clock this far behind the token's `iat` is wrong (the token cannot come from the future).
CLOCK_SKEW_ALLOWANCE = dt.timedelta(minutes=5)


class Action(enum.StrEnum):
    NOT_DUE = "not_due"
    POSTPONED = "postponed"
    RENEW = "renew"  # GET /v2/RenewToken with the current token
    REGENERATE = "regenerate"  # PIN + TOTP through generateAccessToken
    MANUAL = "manual"  # no automatic way: a person must log in


@dataclasses.dataclass(frozen=True)
class Policy:
    renew_before: dt.timedelta
    must_renew_before: dt.timedelta
    calendar: SessionCalendar

    @classmethod
    def from_config(cls, config: Config) -> Policy:
        return cls(
            renew_before=config.token.renew_before,
            must_renew_before=config.token.must_renew_before,
            calendar=SessionCalendar.from_config(config.session),
        )


@dataclasses.dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    due_at: dt.datetime | None = None  # when renewal falls due (or the postponement ends)
    clock_behind: bool = False  # the system clock is behind the token's issue time


def decide(
    token: Token | None,
    now: dt.datetime,
    policy: Policy,
    *,
    can_regenerate: bool,
    force: bool = False,
    refused: str | None = None,
) -> Decision:
    """What the run should do with `token` at `now`, and why (one sentence).

    `refused`: how Dhan refused this very token (the collector's feed or a profile check),
    when it did; such a token is handled like an expired one.
    """
    tz = policy.calendar.tz
    if token is None:
        return _without_valid_token("no token file", can_regenerate)
    clock_behind = now < token.issued_at - CLOCK_SKEW_ALLOWANCE
    if clock_behind:
        # The token cannot have been issued in the future: trust its `iat` as a lower bound
        # of the real time, so that a slow clock never makes an old token look young.
        skew = format_remaining(token.issued_at - now).removeprefix("in ")
        note = f"system clock is {skew} behind the token's issue time (check NTP); "
        now = token.issued_at
    else:
        note = ""
    if refused:
        return _without_valid_token(
            f"{note}token {token.fingerprint} was refused by Dhan ({refused})",
            can_regenerate,
            clock_behind,
        )
    if token.expired(now):
        return _without_valid_token(
            f"{note}token {token.fingerprint} expired at {local_time(token.expires_at, tz)}",
            can_regenerate,
            clock_behind,
        )
    remaining = token.remaining(now)
    left = f"expires at {local_time(token.expires_at, tz)} ({format_remaining(remaining)})"
    due_at = token.expires_at - policy.renew_before
    must_line = token.expires_at - policy.must_renew_before

    def act(why: str) -> Decision:
        return _method(token, f"{note}{why}; {left}", can_regenerate, now, clock_behind)

    if force:
        return act("forced with --force")
    if now >= must_line:
        return act(
            f"under must_renew_before ({_span(policy.must_renew_before)}): renew whatever the session"
        )
    session = policy.calendar.current(now)
    if now >= due_at:
        if session is None:
            return act(f"due: less than renew_before ({_span(policy.renew_before)}) left")
        if token.expires_at - session.end > policy.must_renew_before:
            return Decision(
                Action.POSTPONED,
                f"{note}postponed (session): due, but the trading session runs until "
                f"{local_time(session.end, tz)} and the token keeps "
                f"{_span(token.expires_at - session.end)} after the close; {left}",
                session.end,
                clock_behind,
            )
        return act(
            f"due inside the session, and the token would fall under must_renew_before "
            f"({_span(policy.must_renew_before)}) before the close at {local_time(session.end, tz)}"
        )
    upcoming = policy.calendar.next_opening(now) if session is None else None
    if upcoming and must_line < upcoming.end:
        early_from = upcoming.start - policy.renew_before
        if now >= early_from:
            return act(
                f"early renewal before the session opens at {local_time(upcoming.start, tz)}: the "
                f"token would fall under must_renew_before at {local_time(must_line, tz)}, "
                "during the session"
            )
        due_at = min(due_at, early_from)
    return Decision(
        Action.NOT_DUE,
        f"{note}not due: {left}; renewal due at {local_time(due_at, tz)}",
        due_at,
        clock_behind,
    )


def _without_valid_token(why: str, can_regenerate: bool, clock_behind: bool = False) -> Decision:
    if can_regenerate:
        return Decision(
            Action.REGENERATE, f"{why}: regenerate with PIN+TOTP", clock_behind=clock_behind
        )
    return Decision(
        Action.MANUAL,
        f"{why}, and no PIN+TOTP is configured: a person must log in",
        clock_behind=clock_behind,
    )


def _method(
    token: Token, why: str, can_regenerate: bool, now: dt.datetime, clock_behind: bool
) -> Decision:
    if token.renewable:
        return Decision(Action.RENEW, why, now, clock_behind)
    kind = token.consumer_type or "unknown"
    if can_regenerate:
        return Decision(
            Action.REGENERATE,
            f"{why}; tokens of type {kind} cannot be renewed: regenerate with PIN+TOTP",
            now,
            clock_behind,
        )
    return Decision(
        Action.MANUAL,
        f"{why}; tokens of type {kind} cannot be renewed and no PIN+TOTP is configured: "
        "a person must log in",
        now,
        clock_behind,
    )


def local_time(when: dt.datetime, tz: dt.tzinfo) -> str:
    return when.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")


def _span(delta: dt.timedelta) -> str:
    return format_remaining(delta).removeprefix("in ")
