"""The config file that the demo, the tests and the benchmarks write: one writer for all.

`write_config(directory, sim, collector={...}, ...)` writes `directory/config.toml` with the
simulator's `[dhan]` section, the token file, logs and database under `directory`, and each
section given as a dict merged over those defaults (a value of None removes a key). The TOML
is written by tomli-w, so values are plain Python: strings, numbers, booleans, lists, dates.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w

from dhanfeed.sim.process import SimProcess

DEFAULTS: dict[str, dict[str, Any]] = {
    "token": {"file": "state/token.json"},
    "logging": {"dir": "logs"},
}
OFFLINE = "http://127.0.0.1:9"  # a Dhan that is never there (port 9: discard)
# The collector as the demo, the end-to-end tests and the benchmarks run it (raw ticks kept).
QUOTE_1M = {
    "mode": "quote",
    "intervals": ["1m"],
    "database": "data/candles.sqlite",
    "store_ticks": True,
}
# A trading session every day, all day: the feed is always "in session".
ALL_DAY = {
    "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
    "start": "00:00",
    "end": "23:59:59",
}


def dhan_section(sim: SimProcess | None) -> dict[str, Any]:
    """`[dhan]` pointing at `sim`, or at nowhere for a program that must not call Dhan."""
    if sim is None:
        return {"client_id": "1000000001", "api_base": OFFLINE, "auth_base": OFFLINE}
    return {
        "client_id": sim.client_id,
        "api_base": sim.api_base,
        "auth_base": sim.auth_base,
        "feed_url": sim.feed_url,
    }


def write_config(
    directory: Path,
    sim: SimProcess | None = None,
    *,
    header: str = "",
    **sections: Mapping[str, Any],
) -> Path:
    """`directory/config.toml`; `header` is a comment put on top."""
    merged: dict[str, dict[str, Any]] = {"dhan": dhan_section(sim)}
    for name, defaults in DEFAULTS.items():
        merged[name] = dict(defaults)
    for name, values in sections.items():
        merged[name] = {**merged.get(name, {}), **values}
    clean = {
        name: {key: value for key, value in values.items() if value is not None}
        for name, values in merged.items()
    }
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    path = directory / "config.toml"
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(comment + tomli_w.dumps(clean), encoding="utf-8")
    return path
