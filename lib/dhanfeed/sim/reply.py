"""What the simulator's REST side answers (a Reply), and the REST faults armed to replace one.

A leaf below both rest.py (which answers) and admin.py (which arms faults and answers too).
"""

from __future__ import annotations

import threading


class Reply:
    __slots__ = ("status", "body", "content_type")

    def __init__(self, status: int, body: object, content_type: str = "application/json") -> None:
        self.status, self.body, self.content_type = status, body, content_type


class RestFaults:
    """Armed REST faults: each answers `count` calls of its endpoint ("*" = any)."""

    # Answers that break the transport or the body: Dhan issued nothing.
    # "429": Dhan's rate-limit answer (DH-904); "ragged": intraday bars whose arrays differ
    # in length (well-formed JSON, malformed bars).
    MODES: tuple[str, ...] = ("500", "429", "hang", "malformed", "html", "no_token", "ragged")
    # RenewToken answers after Dhan HAS issued a new token (the old one is dead), but the
    # answer is odd: a JWT `exp` that is no time (year 33658), `expiryTime` 0001-01-01, a
    # token for another client id, a token that is already expired.
    ISSUING = ("bad_exp", "expiry_0001", "other_client", "expired")
    MODES += ISSUING
    ENDPOINTS = ("RenewToken", "profile", "generateAccessToken", "intraday", "*")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: list[list] = []  # [endpoint, mode, remaining]

    def arm(self, endpoint: str, mode: str, count: int) -> None:
        with self._lock:
            self._armed.append([endpoint, mode, count])

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()

    def take(self, endpoint: str) -> str | None:
        with self._lock:
            for fault in self._armed:
                if fault[0] in (endpoint, "*") and fault[2] > 0:
                    fault[2] -= 1
                    if fault[2] == 0:
                        self._armed.remove(fault)
                    return fault[1]
        return None

    def snapshot(self) -> list[dict]:
        with self._lock:
            return [{"endpoint": e, "mode": m, "remaining": n} for e, m, n in self._armed]
