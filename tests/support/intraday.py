"""The simulator's (Dhan's) 1-minute bars of today, asked for by a test itself."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import requests

from dhanfeed.sim.process import SimProcess

IST = dt.timezone(dt.timedelta(hours=5, minutes=30))


def exchange_bars(sim: SimProcess, token_file: Path, key: str) -> dict[int, tuple]:
    """Bar start (UTC epoch s) → (open, high, low, close, volume); waits out the rate limit."""
    token = json.loads(token_file.read_text())["access_token"]
    seg, sid = key.split(":")
    day = dt.datetime.now(IST).date().isoformat()
    for _ in range(50):
        resp = requests.post(
            f"{sim.api_base}/v2/charts/intraday",
            json={
                "securityId": sid,
                "exchangeSegment": seg,
                "instrument": "EQUITY",
                "interval": 1,
                "oi": False,
                "fromDate": day,
                "toDate": day,
            },  # fmt: skip
            headers={"access-token": token},
            timeout=10,
        )
        if resp.status_code != 429:
            break
        time.sleep(0.3)
    resp.raise_for_status()
    body = resp.json()
    columns = (body[k] for k in ("timestamp", "open", "high", "low", "close", "volume"))
    return {t: tuple(rest) for t, *rest in zip(*columns, strict=True)}
