"""The status page in a real browser: Debian's chromium, headless, driven by Selenium through
Debian's chromedriver, against the real `bin/collector` (fed by the simulator) serving it.

The page must load without console errors, show the token's expiry and the collector's
state, and draw exactly the bars the database holds for the chosen day (Dhan-sourced bars
in their own colour, gaps as shaded spans). A screenshot is saved in the test's tmp dir."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from dhanfeed.candles import Bar
from dhanfeed.store import Gap, SqliteStore
from support.polling import wait_until
from test_collector_e2e import Collector as CollectorProcess
from test_collector_e2e import collector_config, collectors, start_sim_with_token  # noqa: F401
from test_status_cli import IST, renewer_ran

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,900"]  # fmt: skip
DHAN_COLOR = "#5b6cf0"  # app.js COLORS.dhan
pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def yesterday() -> dt.date:
    return dt.datetime.now(IST).date() - dt.timedelta(days=1)


def prefill(database: Path, day: dt.date) -> int:
    """A morning of 1-minute bars for NSE_EQ:1333 on `day`, two from Dhan, one incomplete,
    and a gap."""
    start = int(dt.datetime.combine(day, dt.time(9, 15), tzinfo=IST).timestamp())
    bars = [
        Bar("NSE_EQ", 1333, 60, start + 60 * i, 100 + i % 7, 103 + i % 7, 98 + i % 5,
            100 + (i * 3) % 8, 500 + 40 * (i % 9), 10, None)
        for i in range(45)
    ]  # fmt: skip
    with SqliteStore(database) as store:
        store.write(bars, [], [Gap("NSE_EQ", 1333, start + 20 * 60, start + 24 * 60, "test")])
    with sqlite3.connect(database) as db:
        db.execute(
            "UPDATE candles SET source = 'dhan' WHERE start_utc IN (?, ?)",
            (start + 21 * 60, start + 22 * 60),
        )
        db.execute("UPDATE candles SET complete = 0 WHERE start_utc = ?", (start + 24 * 60,))
    return start


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not download anything
    options = Options()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def test_the_status_page_shows_the_facts_and_draws_the_stored_candles(
    start_sim,
    tmp_path: Path,
    collectors,  # noqa: F811
    browser,
) -> None:
    (tmp_path / "state").mkdir()
    day = yesterday()
    prefill(tmp_path / "data" / "candles.sqlite", day)
    sim = start_sim_with_token(start_sim, tmp_path)
    config = collector_config(tmp_path, sim)
    port = free_port()
    config.write_text(config.read_text() + f"\n[web]\nport = {port}\n")
    collector = CollectorProcess(tmp_path, config).start()
    collectors.append(collector)
    collector.wait_live()
    renewer_ran(tmp_path / "state")

    browser.get(f"http://127.0.0.1:{port}/?instrument=NSE_EQ:1333&interval=1m&date={day}")
    wait_until("the page to load its data", lambda: browser.execute_script(
        "return document.body.dataset.ready === '1'"))  # fmt: skip
    state = wait_until(
        "the collector's state",
        lambda: (
            (t := browser.find_element("id", "collector-state").text).startswith("running") and t
        ),
    )
    assert state == f"running (pid {collector.proc.pid})"

    record = json.loads((tmp_path / "state" / "token.json").read_text())
    expiry = dt.datetime.fromisoformat(record["expires_at"]).astimezone(IST)
    shown = browser.find_element("id", "token-expiry").text
    assert expiry.strftime("%H:%M:%S") in shown and shown.endswith("IST"), shown
    assert browser.find_element("id", "token-fingerprint").text == record["fingerprint"]
    assert record["access_token"] not in browser.page_source

    start = int(dt.datetime.combine(day, dt.time(0), tzinfo=IST).timestamp())
    with sqlite3.connect(tmp_path / "data" / "candles.sqlite") as db:
        stored, dhan = db.execute(
            "SELECT count(*), sum(source = 'dhan') FROM candles WHERE segment = 'NSE_EQ'"
            " AND security_id = 1333 AND interval_s = 60 AND start_utc >= ? AND start_utc < ?",
            (start, start + 86400),
        ).fetchone()
    drawn = browser.execute_script("return window.dhanfeed.candleSeries.data()")
    assert len(drawn) == stored == 45
    assert sum(1 for bar in drawn if bar.get("color") == DHAN_COLOR) == dhan == 2
    shaded = browser.execute_script("return window.dhanfeed.gapSeries.data().length")
    assert shaded == 4  # minutes 09:35 to 09:38 lie in the gap
    assert browser.find_element("id", "bar-count").text == "45 bars, 2 from Dhan, 1 gap"

    rate = wait_until(  # the page measures messages/s between two of the collector's statuses
        "messages/s", lambda: (t := browser.find_element("id", "collector-rate").text) != "–" and t
    )
    assert float(rate) > 0

    shot = tmp_path / "status-page.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
