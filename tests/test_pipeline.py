"""The collector's store accounting, in process against a real SQLite file: rows the store
sheds or cannot write in the stop budget show as dropped in the status file and the metrics.

No token file, so no socket opens: the rows are handed to the collector's own writer as the
pipeline hands them.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from dhanfeed.candles import Bar
from dhanfeed.clock import SystemClock
from dhanfeed.collector import Collector
from dhanfeed.config_load import load_config
from dhanfeed.sim.config_file import write_config
from dhanfeed.status import STATUS_FILE, textfile_name
from dhanfeed.store import Tick
from support import store_queries as q
from support.polling import wait_until

T0 = 1_767_584_700  # 2026-01-05 03:45:00Z = 09:15 IST


def pipeline_config(tmp_path: Path) -> Path:
    return write_config(
        tmp_path,
        dhan={"feed_url": "ws://127.0.0.1:9/"},
        collector={
            "instruments": ["NSE_EQ:1333"],
            "database": "data/candles.sqlite",
            "store_ticks": True,
            "status_every": "60s",
        },
    )


def test_ticks_shed_or_left_unwritten_at_stop_are_dropped_in_the_final_status(tmp_path):
    collector = Collector(load_config(pipeline_config(tmp_path)), clock=SystemClock())
    writer = collector.writer
    writer.max_pending_ticks = 2000
    db = tmp_path / "data" / "candles.sqlite"
    other = sqlite3.connect(db, isolation_level=None)
    collector.start()
    try:
        q.refuse_tick_writes(other, T0)  # every tick commit fails
        for i in range(5):
            writer.put_ticks(
                Tick("NSE_EQ", 1333, T0 + i, 100.0, 1, 1000 * i + j, T0 + i + 0.1)
                for j in range(1000)
            )
        writer.put_bars([Bar("NSE_EQ", 1333, 60, T0, 100.0, 101.0, 99.0, 100.5, 50, 5, 50)])
        wait_until("the bar written", lambda: writer.bars_written == 1)
        running = collector.snapshot()
        assert running.bars_stored == 1 and running.ticks_stored == 0
        assert running.ticks_dropped == 3000 and running.dropped == 3000
        assert running.store_pending == 2000
    finally:
        assert collector.stop(1.0) is False
        other.close()

    status = json.loads((tmp_path / "state" / STATUS_FILE).read_text())
    assert status["state"] == "stopped"
    assert (status["dropped"], status["ticks_dropped"], status["store_pending"]) == (5000, 5000, 0)
    prom = (tmp_path / "state" / textfile_name("1000000001")).read_text()
    assert 'dhanfeed_collector_dropped_total{client_id="1000000001"} 5000.0' in prom
    assert 'dhanfeed_collector_ticks_dropped_total{client_id="1000000001"} 5000.0' in prom
