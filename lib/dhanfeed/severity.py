"""The one alert vocabulary (a leaf): how bad a condition is, and the callback that raises one.

Every part that raises alerts (the feed's shards, the store writer, the pipeline, the renewer,
backfill) speaks it and `alerts.Alerter` sends it on. The values are what the alert log, the
alert state file and the on_alert hook's `$DHANFEED_SEVERITY` carry.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable


class Severity(enum.StrEnum):
    RECOVERY = "recovery"  # the condition has ended
    WARNING = "warning"
    CRITICAL = "critical"  # a person must act, or something stops

    @property
    def rank(self) -> int:
        """A higher severity is re-sent within `repeat_every`; the same or a lower one is not."""
        return _RANK[self]

    @property
    def log_level(self) -> int:
        return _LOG_LEVEL[self]


_RANK = {Severity.RECOVERY: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}
_LOG_LEVEL = {
    Severity.RECOVERY: logging.INFO,
    Severity.WARNING: logging.WARNING,
    Severity.CRITICAL: logging.CRITICAL,
}

# (condition, severity, message). A long-running process raises RECOVERY with a prefix as the
# condition: every condition whose name starts with it has ended.
Alert = Callable[[str, Severity, str], None]
