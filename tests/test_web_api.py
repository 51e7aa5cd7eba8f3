"""The status page's JSON endpoints over real HTTP on loopback: their schema, HTTP 400 with a
one-line JSON error for every bad parameter, and never a token."""

from __future__ import annotations

import datetime as dt
import json
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from dhanfeed.candles import Bar
from dhanfeed.clock import SystemClock
from dhanfeed.config_load import load_config
from dhanfeed.store import Gap, SqliteStore
from dhanfeed.web.server import StatusPage
from test_collector_e2e import Collector as CollectorProcess
from test_collector_e2e import collector_config as e2e_config
from test_collector_e2e import collectors, start_sim_with_token  # noqa: F401
from test_status_cli import IST, REQUIRED_KEYS, a_token, renewer_ran, status_config

DAY = dt.date(2026, 1, 5)
OPEN_UTC = int(dt.datetime.combine(DAY, dt.time(9, 15), tzinfo=IST).timestamp())


def bars_of(sid: int, n: int, start: int = OPEN_UTC, interval_s: int = 60) -> list[Bar]:
    return [
        Bar("NSE_EQ", sid, interval_s, start + interval_s * i, 100.0 + i, 101.0 + i, 99.0 + i,
            100.5 + i, 10 * i + 1, 3, None)
        for i in range(n)
    ]  # fmt: skip


def fill_database(root: Path) -> Path:
    path = root / "data" / "candles.sqlite"
    with SqliteStore(path) as store:
        store.write(
            bars_of(1333, 30) + bars_of(1333, 6, interval_s=300) + bars_of(11536, 5),
            [],
            [Gap("NSE_EQ", 1333, OPEN_UTC + 600.5, OPEN_UTC + 725.0, "reconnect after 807")],
        )
    return path


@pytest.fixture
def page(tmp_path: Path) -> Iterator[tuple[StatusPage, str]]:
    config_path = status_config(
        tmp_path,
        in_session=False,
        instruments=["NSE_EQ:1333:RELIANCE", "NSE_EQ:11536"],
        intervals=["1m", "5m"],
    )
    a_token(tmp_path)
    renewer_ran(tmp_path / "state")
    fill_database(tmp_path)
    page = StatusPage(load_config(config_path), clock=SystemClock().now)
    page.start()
    try:
        yield page, f"http://127.0.0.1:{page.port}"
    finally:
        page.stop()


def get(base: str, path: str, **params: str) -> requests.Response:
    return requests.get(base + path, params=params, timeout=10)


def test_api_status_is_bin_status_json_without_the_token(page, tmp_path: Path) -> None:
    _, base = page
    resp = get(base, "/api/status")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    body = resp.json()
    assert set(body) == REQUIRED_KEYS
    record = json.loads((tmp_path / "state" / "token.json").read_text())
    assert body["token"]["fingerprint"] == record["fingerprint"]
    assert record["access_token"] not in resp.text
    assert record["access_token"].split(".")[1] not in resp.text


def test_api_candles_returns_the_days_bars_and_gaps_of_one_instrument(page) -> None:
    _, base = page
    resp = get(base, "/api/candles", instrument="NSE_EQ:1333", interval="1m", date=DAY.isoformat())
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["instrument"] == "NSE_EQ:1333" and body["name"] == "RELIANCE"
    assert body["interval_s"] == 60 and body["utc_offset_s"] == 19800
    assert [c["time"] for c in body["candles"]] == [b.start_utc for b in bars_of(1333, 30)]
    first = body["candles"][0]
    assert first == {"time": OPEN_UTC, "open": 100.0, "high": 101.0, "low": 99.0, "close": 100.5,
                     "volume": 1, "ticks": 3, "complete": True, "source": "feed"}  # fmt: skip
    assert body["gaps"] == [
        {"start": OPEN_UTC + 600.5, "end": OPEN_UTC + 725.0, "reason": "reconnect after 807",
         "healed": False}
    ]  # fmt: skip


def test_api_candles_reads_source_and_complete_once_the_schema_has_them(page, tmp_path) -> None:
    _, base = page
    with sqlite3.connect(tmp_path / "data" / "candles.sqlite") as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(candles)")}
        if "complete" not in columns:  # a database of schema 1 (schema 2 has both)
            db.execute("ALTER TABLE candles ADD COLUMN complete INTEGER NOT NULL DEFAULT 1")
            db.execute("ALTER TABLE candles ADD COLUMN source TEXT NOT NULL DEFAULT 'feed'")
        db.execute("UPDATE candles SET source = 'dhan' WHERE start_utc = ?", (OPEN_UTC + 60,))
        db.execute("UPDATE candles SET complete = 0 WHERE start_utc = ?", (OPEN_UTC + 120,))
    body = get(base, "/api/candles", instrument="NSE_EQ:1333", date=DAY.isoformat()).json()
    flags = [(c["source"], c["complete"]) for c in body["candles"][:4]]
    assert flags == [("feed", True), ("dhan", True), ("feed", False), ("feed", True)]


def test_api_candles_defaults_to_the_shortest_interval_and_offers_each_configured_one(page) -> None:
    _, base = page
    offer = get(base, "/api/instruments").json()
    assert offer["intervals"] == ["1m", "5m"]
    assert [i["key"] for i in offer["instruments"]] == ["NSE_EQ:1333", "NSE_EQ:11536"]
    five = get(base, "/api/candles", instrument="NSE_EQ:1333", interval="5m", date=str(DAY))
    assert len(five.json()["candles"]) == 6
    other = get(base, "/api/candles", instrument="nse_eq:11536", date=str(DAY)).json()
    assert other["interval_s"] == 60 and len(other["candles"]) == 5 and other["gaps"] == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "missing parameter 'instrument'"),
        ({"instrument": "NSE_EQ:999"}, "instrument 'NSE_EQ:999' is not configured"),
        ({"instrument": "NSE_EQ:1333", "interval": "fast"}, "interval 'fast' is not a duration"),
        ({"instrument": "NSE_EQ:1333", "interval": "15m"}, "interval '15m' is not collected"),
        ({"instrument": "NSE_EQ:1333", "date": "05/01/2026"}, "date '05/01/2026' is not a date"),
        ({"instrument": "NSE_EQ:1333", "date": "2999-01-01"}, "date 2999-01-01 is in the future"),
        ({"instrument": "NSE_EQ:1333", "token": "x"}, "unknown parameter 'token'"),
        ({"instrument": ["NSE_EQ:1333", "NSE_EQ:11536"]}, "parameter 'instrument' given 2 times"),
    ],
)
def test_bad_candle_parameters_are_http_400_with_one_line_of_json(page, params, message) -> None:
    _, base = page
    resp = requests.get(base + "/api/candles", params=params, timeout=10)
    assert resp.status_code == 400
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.text.count("\n") == 1 and resp.text.endswith("\n")
    assert resp.json()["error"].startswith(message)
    assert "Traceback" not in resp.text


def test_unknown_paths_are_404_and_no_path_reaches_the_disk(page) -> None:
    _, base = page
    for path in ["/nope", "/static/../../config.toml", "/static/%2e%2e/config.toml", "/api"]:
        resp = requests.get(base + path, timeout=10)
        assert resp.status_code == 404, path
        assert "client_id" not in resp.text


def test_the_page_and_its_vendored_chart_library_are_served_locally(page) -> None:
    _, base = page
    html = get(base, "/").text
    assert '<script src="/static/lightweight-charts.js">' in html and "https://" in html
    assert "cdn" not in html.lower()
    lib = get(base, "/static/lightweight-charts.js")
    assert lib.status_code == 200 and "Lightweight Charts" in lib.text[:300]
    assert "Apache License" in get(base, "/static/LICENSE").text
    assert "TradingView" in get(base, "/static/NOTICE").text


def test_without_a_database_the_candles_answer_is_503_in_one_line(page, tmp_path: Path) -> None:
    _, base = page
    for suffix in ("", "-wal", "-shm"):
        Path(f"{tmp_path / 'data' / 'candles.sqlite'}{suffix}").unlink(missing_ok=True)
    resp = get(base, "/api/candles", instrument="NSE_EQ:1333", date=str(DAY))
    assert resp.status_code == 503
    assert resp.json() == {"error": f"no database at {tmp_path / 'data' / 'candles.sqlite'}"}


def test_a_stalled_browser_does_not_hold_up_other_requests(page) -> None:
    server, base = page
    stalled = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(5)]
    try:
        for conn in stalled:
            conn.sendall(b"GET /api/status HTTP/1.1\r\n")  # and never the rest of its headers
        assert get(base, "/api/status").status_code == 200
        assert get(base, "/api/candles", instrument="NSE_EQ:1333", date=str(DAY)).ok
    finally:
        for conn in stalled:
            conn.close()


def test_a_collector_whose_page_port_is_taken_still_collects(start_sim, tmp_path, collectors):  # noqa: F811
    (tmp_path / "state").mkdir(exist_ok=True)
    sim = start_sim_with_token(start_sim, tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = e2e_config(tmp_path, sim)
        config.write_text(config.read_text() + f"\n[web]\nport = {taken.getsockname()[1]}\n")
        collector = CollectorProcess(tmp_path, config).start()
        collectors.append(collector)
        collector.wait_live(min_packets=5)
    assert "no status page: cannot listen on 127.0.0.1:" in collector.log()
