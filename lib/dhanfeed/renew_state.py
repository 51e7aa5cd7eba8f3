"""What renew_token remembers between runs besides the token: what Dhan said about it.

A small JSON file next to the token file (`token.json.state.json`, 0600) holds, each keyed
by a fingerprint and never by a secret: the last time Dhan accepted a token, the last time
it refused one, and PIN+TOTP credentials Dhan called wrong. The collector's refusals are
read from its status file. Losing this file costs one extra profile call, nothing more.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

from dhanfeed.files import load_state, save_state
from dhanfeed.token import parse_aware_time

logger = logging.getLogger(__name__)

ACCEPTED = "accepted"
REFUSED = "refused"
CREDENTIALS_REFUSED = "credentials_refused"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Mark:
    """Dhan's word about one token (or one PIN+seed pair), by fingerprint, at a time."""

    fingerprint: str
    at: dt.datetime
    detail: str = ""

    def as_json(self) -> dict[str, str]:
        return {"fingerprint": self.fingerprint, "at": self.at.isoformat(), "detail": self.detail}

    @classmethod
    def from_json(cls, raw: Any) -> Mark | None:
        if not isinstance(raw, dict) or not isinstance(raw.get("fingerprint"), str):
            return None
        at = parse_aware_time(raw.get("at"))
        if at is None:
            return None
        return cls(fingerprint=raw["fingerprint"], at=at, detail=str(raw.get("detail", "")))


def renew_state_path(token_file: Path) -> Path:
    """Kept next to the token file, so that it shares its directory and its lifetime."""
    return token_file.with_name(token_file.name + ".state.json")


class RenewState:
    """Read-modify-write of the state file (the renewer holds the token lock meanwhile)."""

    def __init__(self, path: Path, *, collector_status: Path | None = None) -> None:
        self.path = path
        self.collector_status = collector_status

    # -- tokens -------------------------------------------------------------------------------

    def accepted(self, fingerprint: str) -> Mark | None:
        mark = self._mark(ACCEPTED)
        return mark if mark and mark.fingerprint == fingerprint else None

    def refusal(self, fingerprint: str) -> Mark | None:
        """The latest refusal of this token (ours or the collector's) that no later
        acceptance by Dhan has overruled."""
        refusals = [m for m in (self._mark(REFUSED), self._collector_refusal()) if m]
        mine = [m for m in refusals if m.fingerprint == fingerprint]
        if not mine:
            return None
        latest = max(mine, key=lambda m: m.at)
        accepted = self.accepted(fingerprint)
        return None if accepted and accepted.at > latest.at else latest

    def record_accepted(self, fingerprint: str, now: dt.datetime, detail: str = "") -> None:
        self._put(ACCEPTED, Mark(fingerprint=fingerprint, at=now, detail=detail))

    def record_refused(self, fingerprint: str, now: dt.datetime, detail: str) -> None:
        self._put(REFUSED, Mark(fingerprint=fingerprint, at=now, detail=detail))

    # -- credentials --------------------------------------------------------------------------

    def credentials_refused(self, fingerprint: str) -> Mark | None:
        mark = self._mark(CREDENTIALS_REFUSED)
        return mark if mark and mark.fingerprint == fingerprint else None

    def record_credentials_refused(self, fingerprint: str, now: dt.datetime, detail: str) -> None:
        self._put(CREDENTIALS_REFUSED, Mark(fingerprint=fingerprint, at=now, detail=detail))

    def forget_credentials_refusal(self) -> None:
        self._put(CREDENTIALS_REFUSED, None)

    # -- the files ----------------------------------------------------------------------------

    def _mark(self, key: str) -> Mark | None:
        return Mark.from_json(self._load().get(key))

    def _collector_refusal(self) -> Mark | None:
        """The collector writes `token_refused` into its status file when Dhan's feed
        refuses the token in the file (807/808/809)."""
        if self.collector_status is None:
            return None
        try:
            raw = json.loads(self.collector_status.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        refused = raw.get("token_refused") if isinstance(raw, dict) else None
        mark = Mark.from_json(refused)
        if mark is None or not isinstance(refused, dict):
            return None
        code = refused.get("code")
        return dataclasses.replace(
            mark, detail=f"the collector's feed was refused with code {code}"
        )

    def _load(self) -> dict[str, Any]:
        return load_state(self.path, what="renew state")

    def _put(self, key: str, mark: Mark | None) -> None:
        state = self._load()
        if mark is None:
            if state.pop(key, None) is None:
                return
        else:
            state[key] = mark.as_json()
        save_state(self.path, state, what="renew state")  # a failure costs a repeated check
