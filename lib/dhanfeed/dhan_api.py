"""Dhan's REST API: RenewToken, generateAccessToken (PIN+TOTP), profile, intraday bars.

The HTTP session is passed in. Every call has a named timeout and our User-Agent; retries are
few and bounded (connection errors, timeouts and 5xx only; never 4xx) and stop at the run's
deadline. Error texts are one line and never contain a token, a PIN, a TOTP code or a URL
with a query string: what Dhan says is scrubbed of what the call sent, then cut short.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests

from dhanfeed.errors import DhanApiError, MalformedAnswer
from dhanfeed.logs import REDACTED, redact
from dhanfeed.token import IST
from dhanfeed.version import USER_AGENT

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0  # seconds to open a connection to Dhan
READ_TIMEOUT = 15.0  # seconds to wait for an answer (default; [dhan] timeout overrides)
TRIES = 3
BACKOFF = 1.0  # seconds before the 2nd try; doubled for the 3rd
_TOKEN_FIELDS = ("token", "accessToken")
RATE_LIMITED = "DH-904"  # Dhan's rate-limit code (HTTP 429 likely)
# What a call sends that is secret (a header or a query parameter).
_SECRET_FIELDS = ("access-token", "pin", "totp")


@dataclasses.dataclass(frozen=True)
class IssuedToken:
    access_token: str = dataclasses.field(repr=False)
    expiry_time: dt.datetime | None  # Dhan's `expiryTime` (IST wall clock), a cross-check


class DhanApi:
    def __init__(
        self,
        session: requests.Session,
        *,
        api_base: str,
        auth_base: str,
        client_id: str,
        read_timeout: float = READ_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
        tries: int = TRIES,
        backoff: float = BACKOFF,
        deadline: float | None = None,  # monotonic() value after which no try starts
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,  # the CLI's clock
    ) -> None:
        self.session = session
        self.api_base = api_base.rstrip("/")
        self.auth_base = auth_base.rstrip("/")
        self.client_id = client_id
        self.read_timeout = read_timeout
        self.connect_timeout = connect_timeout
        self.tries = max(1, tries)
        self.backoff = backoff
        self.deadline = deadline
        self.sleep = sleep
        self.monotonic = monotonic

    # -- endpoints ----------------------------------------------------------------------------

    def renew_token(self, access_token: str) -> IssuedToken:
        """GET /v2/RenewToken: Dhan expires the current token and returns a new one."""
        body = self._call(
            "RenewToken",
            "GET",
            f"{self.api_base}/v2/RenewToken",
            headers={"access-token": access_token, "dhanClientId": self.client_id},
        )
        return _issued(body, "RenewToken")

    def generate_access_token(self, pin: str, totp_code: Callable[[], str]) -> IssuedToken:
        """POST /app/generateAccessToken with PIN and a fresh TOTP code per try."""
        body = self._call(
            "generateAccessToken",
            "POST",
            f"{self.auth_base}/app/generateAccessToken",
            params=lambda: {"dhanClientId": self.client_id, "pin": pin, "totp": totp_code()},
        )
        return _issued(body, "generateAccessToken")

    def intraday_minute_bars(
        self,
        access_token: str,
        *,
        segment: str,
        security_id: int,
        instrument: str,
        day: dt.date,
    ) -> list[tuple[int, float, float, float, float, int]]:
        """POST /v2/charts/intraday: one IST day of 1-minute bars, oldest first.

        Each bar is (start as UTC epoch seconds, open, high, low, close, volume). A rate-limit
        answer (HTTP 429 or DH-904) is a `DhanApiError` with `code` "DH-904": the caller
        decides how long to back off.
        """
        body = self._call(
            "intraday",
            "POST",
            f"{self.api_base}/v2/charts/intraday",
            headers={"access-token": access_token, "client-id": self.client_id},
            json_body={
                "securityId": str(security_id),
                "exchangeSegment": segment,
                "instrument": instrument,
                "interval": 1,
                "oi": False,
                "fromDate": day.isoformat(),
                "toDate": day.isoformat(),
            },
        )
        return _intraday_bars(body)

    def profile(self, access_token: str) -> dict[str, Any]:
        """GET /v2/profile: the cheap check that a token works."""
        return self._call(
            "profile",
            "GET",
            f"{self.api_base}/v2/profile",
            headers={"access-token": access_token, "dhanClientId": self.client_id},
        )

    # -- the one HTTP path --------------------------------------------------------------------

    def _call(
        self,
        name: str,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        params: Callable[[], dict[str, str]] | None = None,
        json_body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        where = _origin(url)
        last: DhanApiError | None = None
        for attempt in range(1, self.tries + 1):
            timeout = self._timeouts()
            if timeout is None:
                break
            sent = params() if params else None
            try:
                resp = self.session.request(
                    method,
                    url,
                    headers={
                        "User-Agent": USER_AGENT,
                        "Accept": "application/json",
                        **(headers or {}),
                    },
                    params=sent,
                    json=json_body,
                    timeout=timeout,
                )
            except requests.Timeout:
                last = DhanApiError(
                    f"{name}: no answer from {where} within {timeout[1]:g}s", retryable=True
                )
            except requests.ConnectionError:
                last = DhanApiError(
                    f"{name}: cannot reach {where} (connection failed)", retryable=True
                )
            except requests.RequestException as exc:
                last = DhanApiError(f"{name}: request to {where} failed ({exc.__class__.__name__})")
            else:
                try:
                    return _parse(name, resp, _secrets({**(headers or {}), **(sent or {})}))
                except DhanApiError as exc:
                    last = exc
            if not last.retryable:
                raise last
            logger.warning("%s (try %d of %d)", last, attempt, self.tries)
            if attempt < self.tries:
                pause = self.backoff * 2 ** (attempt - 1)
                if self.deadline is not None and self.monotonic() + pause >= self.deadline:
                    break
                self.sleep(pause)
        if last is None:
            raise DhanApiError(f"{name}: the run's time budget is used up; not calling {where}")
        raise DhanApiError(
            f"{last} (gave up after {attempt} tries)",
            status=last.status,
            code=last.code,
            retryable=True,
        )

    def _timeouts(self) -> tuple[float, float] | None:
        if self.deadline is None:
            return (self.connect_timeout, self.read_timeout)
        left = self.deadline - self.monotonic()
        if left <= 0.5:
            return None
        return (min(self.connect_timeout, left), min(self.read_timeout, left))


def _parse(name: str, resp: requests.Response, secrets: tuple[str, ...]) -> dict[str, Any]:
    """The answer's JSON object, or a one-line DhanApiError in which Dhan's own words carry
    none of `secrets` (what the call sent that is secret)."""
    status = resp.status_code
    body: Any = None
    try:
        body = resp.json()
    except ValueError:
        kind = _describe_non_json(resp)
        if status >= 500:
            raise DhanApiError(
                f"{name}: HTTP {status} from Dhan ({kind})", status=status, retryable=True
            ) from None
        error = MalformedAnswer if status < 400 else DhanApiError
        raise error(f"{name}: answer is not JSON ({kind}, HTTP {status})", status=status) from None
    if status >= 400:
        code, text = _error_of(body, secrets)
        if status == 429:
            code = code or RATE_LIMITED
        detail = f" {code}" if code else ""
        detail += f": {text}" if text else ""
        raise DhanApiError(
            f"{name}: HTTP {status}{detail}", status=status, code=code, retryable=status >= 500
        )
    if not isinstance(body, dict):
        raise MalformedAnswer(
            f"{name}: answer is JSON but not an object (HTTP {status})", status=status
        )
    if str(body.get("status", "")).lower() in ("error", "failed"):
        code, text = _error_of(body, secrets)
        raise DhanApiError(
            f"{name}: Dhan answered with an error: {text or code or 'no detail'}",
            status=status,
            code=code,
        )
    return body


_BAR_FIELDS = ("timestamp", "open", "high", "low", "close", "volume")


def _intraday_bars(body: dict[str, Any]) -> list[tuple[int, float, float, float, float, int]]:
    """Dhan's parallel arrays → bars; anything else is one clear `DhanApiError`."""
    columns = [body.get(name) for name in _BAR_FIELDS]
    if not all(isinstance(c, list) for c in columns):
        missing = [n for n, c in zip(_BAR_FIELDS, columns, strict=True) if not isinstance(c, list)]
        raise DhanApiError(f"intraday: answer has no {', '.join(missing)} array")
    if len({len(c) for c in columns}) != 1:  # type: ignore[arg-type]
        raise DhanApiError("intraday: answer's arrays differ in length")
    bars = []
    try:
        for ts, o, h, low, c, v in zip(*columns, strict=True):
            values = (float(o), float(h), float(low), float(c))
            if isinstance(ts, bool) or not all(map(math.isfinite, values)) or float(v) < 0:
                raise ValueError
            bars.append((int(ts), *values, int(v)))
    except (TypeError, ValueError):
        raise DhanApiError("intraday: answer holds a value that is not a number") from None
    return sorted(bars)


def _secrets(sent: dict[str, str]) -> tuple[str, ...]:
    """What a call sent that is secret: the token, the PIN, the TOTP code."""
    return tuple(value for name in _SECRET_FIELDS if (value := sent.get(name)))


def _issued(body: dict[str, Any], name: str) -> IssuedToken:
    for field in _TOKEN_FIELDS:
        value = body.get(field)
        if isinstance(value, str) and value.strip():
            return IssuedToken(value.strip(), _expiry_time(body.get("expiryTime")))
    keys = ", ".join(sorted(str(k) for k in body)[:8]) or "none"
    raise MalformedAnswer(f"{name}: answer has no 'token' or 'accessToken' (keys: {keys})")


def _expiry_time(value: Any) -> dt.datetime | None:
    """`expiryTime` is IST wall-clock without a zone, e.g. "2026-01-01T00:00:00.000"."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=IST)).astimezone(dt.UTC)
    except (ValueError, OverflowError):  # "0001-01-01" in IST is before year 1 in UTC
        return None


def _error_of(body: Any, secrets: tuple[str, ...]) -> tuple[str | None, str]:
    """Dhan's two error shapes: {errorCode, errorMessage} and {"data": {"806": "..."}}."""
    if not isinstance(body, dict):
        return None, ""
    code = body.get("errorCode")
    text = body.get("errorMessage") or body.get("message") or body.get("errorType") or ""
    if not code and isinstance(body.get("data"), dict) and body["data"]:
        code, text = next(iter(body["data"].items()))
    return (_scrub(str(code), secrets) if code else None), _short(str(text), secrets)


def _describe_non_json(resp: requests.Response) -> str:
    ctype = resp.headers.get("Content-Type", "")
    head = resp.text[:200].lstrip().lower()
    if "html" in ctype or head.startswith(("<!doctype", "<html")):
        return "an HTML page"
    if not head:
        return "an empty body"
    return "malformed JSON"


def _short(text: str, secrets: tuple[str, ...], limit: int = 120) -> str:
    """Dhan's text on one line, scrubbed, then cut to `limit`: scrubbed first, so that a
    secret it echoes ("Invalid Pin 1234") is never cut in half and half left in."""
    text = redact(_scrub(" ".join(text.split()), secrets))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    """Each of `secrets` that `text` repeats as a whole word, replaced."""
    for value in secrets:
        text = re.sub(rf"(?<![0-9A-Za-z]){re.escape(value)}(?![0-9A-Za-z])", REDACTED, text)
    return text


def _origin(url: str) -> str:
    """scheme://host:port only: never a path with a query (which may carry PIN or TOTP)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
