"""Scaled-down delays for the collector under test, and the launcher that applies them.

`python tests/support/collector_timing.py --config PATH` runs `bin/collector`'s `main` with
`Timing` fields overridden by `$DHANFEED_COLLECTOR_TIMING` (a JSON object, e.g.
'{"floor_805_s": 2}'), so that the 60 s floors after 805 and HTTP 429 shrink to seconds.
Production has no such switch: only this test launcher reads the variable.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from collections.abc import Mapping

from dhanfeed.cli import collector
from dhanfeed.feed.policy import Timing

ENV_TIMING = "DHANFEED_COLLECTOR_TIMING"


def timing_from_env(environ: Mapping[str, str]) -> Timing:
    """Production defaults, overridden by `$DHANFEED_COLLECTOR_TIMING`; ValueError if bad."""
    raw = environ.get(ENV_TIMING, "").strip()
    if not raw:
        return Timing()
    try:
        values = json.loads(raw)
        types = {f.name: f.type for f in dataclasses.fields(Timing)}
        unknown = set(values) - set(types)
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        return Timing(**{k: _as(types[k], v) for k, v in values.items()})
    except (ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"${ENV_TIMING}: {exc}") from None


def _as(type_name: object, value: object) -> float | int:
    """A field's value from JSON: whole numbers for `int` fields, else seconds as float."""
    if type_name in ("int", int):
        number = float(value)  # type: ignore[arg-type]
        if not math.isfinite(number) or number != int(number) or number < 1:
            raise ValueError(f"not a positive whole number: {value!r}")
        return int(number)
    return float(value)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(collector.main(sys.argv[1:], timing=timing_from_env(os.environ)))
