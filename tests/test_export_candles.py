"""bin/export_candles: formats, zones, filters and every bad input, against a real SQLite file."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import fcntl
import io
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import zoneinfo

import pytest

from dhanfeed.candle_reader import as_sent
from dhanfeed.candles import Bar
from dhanfeed.cli.export_candles import main
from dhanfeed.store import SqliteStore
from dhanfeed.store.postgresql import PostgresStore
from support.sim import BIN

IST = zoneinfo.ZoneInfo("Asia/Kolkata")
F32_PRICE = 1500.0999755859375  # how 1500.1 arrives as a float32 from the feed


def t(hms: str, day: str = "2026-01-05") -> int:
    return int(dt.datetime.fromisoformat(f"{day}T{hms}").replace(tzinfo=IST).timestamp())


BARS = [
    Bar("NSE_EQ", 1333, 60, t("09:15"), F32_PRICE, 1502.0, 1499.5, 1501.25, 120, 7, 120),
    Bar("NSE_EQ", 1333, 60, t("09:16"), 1501.0, 1503.0, 1500.0, 1502.0, 80, 5, 200),
    Bar("NSE_EQ", 1333, 60, t("09:18"), 1502.0, 1502.0, 1501.0, 1501.5, 30, 2, 230),
    Bar("NSE_EQ", 1333, 60, t("09:15", "2026-01-06"), 1510.0, 1511.0, 1509.0, 1510.5, 9, 1, 9),
    Bar("NSE_EQ", 2885, 60, t("09:15"), 2900.0, 2901.0, 2899.0, 2900.5, 40, 3, 40),
    Bar("NSE_EQ", 1333, 300, t("09:15"), F32_PRICE, 1503.0, 1499.5, 1501.5, 230, 14, 230),
    Bar("IDX_I", 13, 60, t("09:15"), 24000.5, 24010.0, 23990.0, 24005.0, 0, 12, None),
]


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "data" / "candles.sqlite"
    with SqliteStore(path) as store:
        store.write(BARS)
    return path


def export(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_by_default_with_ist_times_and_prices_rounded_from_float32(capsys, db):
    code, out, err = export(capsys, "--database", db, "--instrument", "NSE_EQ:1333")
    assert (code, err) == (0, "")
    got = rows(out)
    assert list(got[0]) == ["time", "segment", "security_id", "interval_s", "open", "high",
                            "low", "close", "volume", "ticks"]  # fmt: skip
    assert [r["time"] for r in got] == [
        "2026-01-05T09:15:00+05:30",
        "2026-01-05T09:16:00+05:30",
        "2026-01-05T09:18:00+05:30",
        "2026-01-06T09:15:00+05:30",
    ]
    assert got[0]["open"] == "1500.1"
    assert [int(r["volume"]) for r in got] == [120, 80, 30, 9]
    assert {r["interval_s"] for r in got} == {"60"}  # the shortest stored interval by default


def test_jsonl_in_utc_gives_one_object_per_bar(capsys, db):
    code, out, _ = export(capsys, "--database", db, "--format", "jsonl", "--tz", "utc",
                          "--instrument", "NSE_EQ:2885")  # fmt: skip
    assert code == 0
    (line,) = out.splitlines()
    assert json.loads(line) == {
        "time": "2026-01-05T03:45:00+00:00", "segment": "NSE_EQ", "security_id": 2885,
        "interval_s": 60, "open": 2900.0, "high": 2901.0, "low": 2899.0, "close": 2900.5,
        "volume": 40, "ticks": 3,
    }  # fmt: skip


def test_all_instruments_when_none_is_named(capsys, db):
    code, out, _ = export(capsys, "--database", db, "--to", "2026-01-05")
    assert code == 0
    keys = [(r["segment"], r["security_id"]) for r in rows(out)]
    assert keys == [("IDX_I", "13"), ("NSE_EQ", "1333"), ("NSE_EQ", "1333"), ("NSE_EQ", "1333"),
                    ("NSE_EQ", "2885")]  # fmt: skip


def test_several_instruments_come_in_the_order_asked(capsys, db):
    code, out, _ = export(capsys, "--database", db, "--instrument", "NSE_EQ:2885",
                          "--instrument", "IDX_I:13", "--to", "2026-01-05")  # fmt: skip
    assert code == 0
    assert [r["security_id"] for r in rows(out)] == ["2885", "13"]
    assert rows(out)[1]["volume"] == "0"


def test_interval_selects_the_bars_of_that_length(capsys, db):
    code, out, _ = export(capsys, "--database", db, "--interval", "5m")
    assert code == 0
    (bar,) = rows(out)
    assert (bar["interval_s"], bar["volume"], bar["time"]) == (
        "300",
        "230",
        "2026-01-05T09:15:00+05:30",
    )


@pytest.mark.parametrize(
    ("tz", "start", "end", "expected"),
    [
        ("ist", "2026-01-05 09:16", "2026-01-05 09:18", ["09:16"]),
        ("ist", "2026-01-05T09:16:00", None, ["09:16", "09:18", "09:15 next day"]),
        ("ist", None, "2026-01-05", ["09:15", "09:16", "09:18"]),  # a bare date: the whole day
        ("ist", "2026-01-06", None, ["09:15 next day"]),
        ("utc", "2026-01-05 03:46", "2026-01-05 03:48:01", ["09:16", "09:18"]),
        ("utc", "2026-01-05T09:16:00+05:30", "2026-01-05T03:47:00Z", ["09:16"]),  # own offsets
    ],
)
def test_from_and_to_are_read_in_the_chosen_zone(capsys, db, tz, start, end, expected):
    argv = [
        "--database",
        db,
        "--instrument",
        "NSE_EQ:1333",
        "--tz",
        "ist" if tz == "ist" else "utc",
    ]
    argv += ["--from", start] if start else []
    argv += ["--to", end] if end else []
    code, out, err = export(capsys, *argv)
    assert code == 0, err
    names = {t("09:15"): "09:15", t("09:16"): "09:16", t("09:18"): "09:18",
             t("09:15", "2026-01-06"): "09:15 next day"}  # fmt: skip
    starts = [int(dt.datetime.fromisoformat(r["time"]).timestamp()) for r in rows(out)]
    assert [names[s] for s in starts] == expected


def test_output_goes_to_a_file_written_whole(capsys, db, tmp_path):
    target = tmp_path / "out" / "rel.jsonl"
    code, out, _ = export(capsys, "--database", db, "--format", "jsonl", "--output", target,
                          "--instrument", "NSE_EQ:1333")  # fmt: skip
    assert (code, out) == (0, "")
    assert len(target.read_text().splitlines()) == 4
    assert [p.name for p in target.parent.iterdir()] == ["rel.jsonl"]  # no temp file left


def test_the_database_comes_from_the_config_file(capsys, db, tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        '[dhan]\nclient_id = "1000000001"\n\n[collector]\ndatabase = "data/candles.sqlite"\n'
    )
    code, out, _ = export(capsys, "--config", cfg, "--instrument", "NSE_EQ:2885")
    assert code == 0 and len(rows(out)) == 1


# -- bad input --------------------------------------------------------------------------------


def assert_one_line(err: str, *words: str) -> None:
    assert err.count("\n") == 1 and err.startswith("export_candles: "), err
    for word in words:
        assert word in err, err


def test_an_unknown_instrument_says_so_and_exits_1(capsys, db, tmp_path):
    target = tmp_path / "x.csv"
    code, out, err = export(
        capsys, "--database", db, "--instrument", "NSE_EQ:9999", "--output", target
    )
    assert (code, out) == (1, "")
    assert_one_line(err, "no candles for NSE_EQ:9999", "NSE_EQ:1333")
    assert not target.exists()


def test_an_empty_database_says_so_and_exits_1(capsys, tmp_path):
    SqliteStore(tmp_path / "empty.sqlite").close()
    code, out, err = export(capsys, "--database", tmp_path / "empty.sqlite")
    assert (code, out) == (1, "")
    assert_one_line(err, "has no candles yet")


def test_a_missing_database_says_so_exits_1_and_creates_nothing(capsys, tmp_path):
    code, _, err = export(capsys, "--database", tmp_path / "nope" / "c.sqlite")
    assert code == 1
    assert_one_line(err, "no database at", "nope/c.sqlite")
    assert not (tmp_path / "nope").exists()


def test_a_file_that_is_not_a_dhanfeed_database_exits_1(capsys, tmp_path):
    import sqlite3

    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    code, _, err = export(capsys, "--database", path)
    assert code == 1
    assert_one_line(err, "not a dhanfeed database")


def test_an_interval_the_database_does_not_hold_exits_1(capsys, db):
    code, _, err = export(capsys, "--database", db, "--interval", "15m")
    assert code == 1
    assert_one_line(err, "no 15m candles", "1m, 5m")


def test_an_empty_range_exits_1(capsys, db):
    code, out, err = export(capsys, "--database", db, "--from", "2026-02-01")
    assert (code, out) == (1, "")
    assert_one_line(err, "no candles in", "from 2026-02-01")


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--instrument", "NSE_EQ"], ["--instrument", "SEGMENT:SECURITY_ID"]),
        (["--instrument", "XYZ:1"], ["unknown segment"]),
        (["--interval", "90s"], ["whole number of minutes"]),
        (["--interval", "soon"], ["--interval"]),
        (["--from", "yesterday"], ["--from", "2026-01-05"]),
        (["--from", "2026-01-05 10:00", "--to", "2026-01-05 09:00"], ["is not before"]),
        (["--format", "xlsx"], ["--format"]),
        (["--tz", "pst"], ["--tz"]),
    ],
)
def test_usage_errors_exit_2_with_one_line(capsys, db, argv, words):
    code, out, err = export(capsys, "--database", db, *argv)
    assert (code, out) == (2, "")
    assert_one_line(err, *words)


def test_a_missing_config_is_a_usage_error(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DHANFEED_CONFIG", raising=False)
    code, _, err = export(capsys)
    assert code == 2
    assert "file not found" in err


def test_the_executable_runs_as_a_subprocess(db):
    ok = subprocess.run([BIN / "export_candles", "--database", db, "--instrument", "NSE_EQ:2885"],
                        capture_output=True, text=True, timeout=60)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert rows(ok.stdout)[0]["close"] == "2900.5"
    bad = subprocess.run([BIN / "export_candles", "--database", db, "--instrument", "NSE_EQ:1"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert (bad.returncode, bad.stdout) == (1, "")
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


# -- Parquet and the progress bar --------------------------------------------------------------


def test_parquet_holds_the_same_bars_with_zoned_timestamps(capsys, db, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    target = tmp_path / "out" / "bars.parquet"
    code, _, err = export(capsys, "--database", db, "--instrument", "NSE_EQ:1333",
                          "--format", "parquet", "--output", target)  # fmt: skip
    assert (code, err) == (0, "")
    table = pq.read_table(target)
    assert table.column_names == ["time", "segment", "security_id", "interval_s", "open", "high",
                                  "low", "close", "volume", "ticks"]  # fmt: skip
    assert str(table.schema.field("time").type) == "timestamp[ms, tz=Asia/Kolkata]"
    got = table.to_pylist()
    assert [int(r["time"].timestamp()) for r in got] == [b.start_utc for b in BARS[:4]]
    assert got[0]["open"] == 1500.1 and [r["volume"] for r in got] == [120, 80, 30, 9]
    assert oct(target.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in target.parent.iterdir()] == ["bars.parquet"]  # no temp file left


def test_parquet_in_utc_reads_back_in_pandas(capsys, db, tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    target = tmp_path / "utc.parquet"
    assert export(capsys, "--database", db, "--format", "parquet", "--tz", "utc",
                  "--interval", "5m", "--output", target)[0] == 0  # fmt: skip
    frame = pd.read_parquet(target)
    assert len(frame) == 1 and str(frame.time.dt.tz) == "UTC"
    assert frame.time[0] == pd.Timestamp("2026-01-05 03:45", tz="UTC")


def test_parquet_to_stdout_is_a_usage_error(capsys, db):
    code, out, err = export(capsys, "--database", db, "--format", "parquet")
    assert (code, out) == (2, "")
    assert err == "export_candles: --format parquet writes a file: give --output FILE\n"


def test_parquet_without_pyarrow_says_which_extra_to_install(db, tmp_path):
    code = (
        "import sys; sys.modules['pyarrow'] = None\n"
        "from dhanfeed.cli.export_candles import main\n"
        f"sys.exit(main(['--database', {str(db)!r}, '--format', 'parquet',"
        f" '--output', {str(tmp_path / 'x.parquet')!r}]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == (
        "export_candles: --format parquet needs pyarrow: pip install 'dhanfeed[parquet]'\n"
    )
    assert not (tmp_path / "x.parquet").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".x.parquet")] == []


def many_bars(path, n: int = 12_000) -> None:
    start = t("09:15", "2025-06-02")
    with SqliteStore(path) as store:
        store.write([Bar("NSE_EQ", 1333, 60, start + 60 * i, 10.0, 11.0, 9.0, 10.5, 1, 1, None)
                     for i in range(n)])  # fmt: skip


def run_on_a_terminal(argv: list[str], *, columns: int = 100) -> tuple[int, str]:
    """Run bin/export_candles with stderr on a pseudo-terminal; return its exit and stderr."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=follower, env={**os.environ, "TERM": "xterm"})  # fmt: skip
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    return proc.wait(timeout=60), seen.decode("utf-8", "replace")


def test_a_long_export_on_a_terminal_shows_a_progress_bar(tmp_path):
    db = tmp_path / "big.sqlite"
    many_bars(db)
    out = tmp_path / "big.csv"
    code, err = run_on_a_terminal([str(BIN / "export_candles"), "--database", str(db),
                                   "--output", str(out)])  # fmt: skip
    assert code == 0, err
    assert "export:" in err and "bar" in err and "12.0k" in err
    assert len(out.read_text().splitlines()) == 12_000 + 1


def test_a_terminal_that_reports_no_size_still_gets_a_bar(tmp_path):
    db = tmp_path / "big.sqlite"
    many_bars(db)
    code, err = run_on_a_terminal([str(BIN / "export_candles"), "--database", str(db),
                                   "--output", str(tmp_path / "big.csv")], columns=0)  # fmt: skip
    assert code == 0, err
    assert "export:" in err and "12.0k" in err


def test_without_a_terminal_there_is_no_progress_bar(tmp_path):
    db = tmp_path / "big.sqlite"
    many_bars(db)
    proc = subprocess.run([str(BIN / "export_candles"), "--database", str(db), "--output",
                           str(tmp_path / "big.csv")], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert (proc.returncode, proc.stderr) == (0, "")


def test_a_short_export_on_a_terminal_shows_no_bar(db, tmp_path):
    code, err = run_on_a_terminal([str(BIN / "export_candles"), "--database", str(db),
                                   "--output", str(tmp_path / "small.csv")])  # fmt: skip
    assert (code, err) == (0, "")


# --- PostgreSQL: the same export, and the account chosen by --client-id ----------------------


@pytest.fixture
def pg_db(pg_url):
    with PostgresStore(pg_url, "1000000001") as store:
        store.write(BARS)
    with PostgresStore(pg_url, "1000000002") as other:  # another account's bar, same key
        other.write([dataclasses.replace(BARS[0], volume=99999)])
    return pg_url


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_postgresql_exports_exactly_what_sqlite_exports(capsys, db, pg_db, fmt):
    from_sqlite = export(capsys, "--database", db, "--format", fmt)
    from_pg = export(capsys, "--database", pg_db, "--client-id", "1000000001", "--format", fmt)
    assert from_pg == from_sqlite and from_pg[0] == 0


def test_client_id_chooses_the_account_and_defaults_to_the_configs(capsys, pg_db, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(f'[dhan]\nclient_id = "1000000002"\n[collector]\ndatabase = "{pg_db}"\n')
    code, out, _ = export(capsys, "--config", config, "--instrument", "NSE_EQ:1333")
    assert code == 0 and [r["volume"] for r in rows(out)][:1] == ["99999"]
    code, out, _ = export(capsys, "--database", pg_db, "--client-id", "1000000001",
                          "--instrument", "NSE_EQ:1333", "--interval", "1m")  # fmt: skip
    assert code == 0 and [r["volume"] for r in rows(out)] == ["120", "80", "30", "9"]


def test_a_postgresql_url_without_a_client_id_or_config_is_one_line_and_exit_2(
    capsys, pg_db, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DHANFEED_CONFIG", raising=False)
    code, out, err = export(capsys, "--database", pg_db)
    assert (code, out) == (2, "") and err == (
        "export_candles: --client-id is needed to read PostgreSQL without a config\n"
    )


def test_a_postgresql_url_with_a_password_is_refused_without_printing_it(capsys):
    code, _, err = export(capsys, "--database", "postgresql://u:sekrit99@h/db", "--client-id", "1")
    assert code == 2 and "sekrit99" not in err and err.count("\n") == 1


@pytest.mark.parametrize("price", ["1500.1", "2653.65", "24567.35", "130000.05", "83.0025", "0.05"])
def test_a_price_is_shown_as_the_decimal_dhan_sent_not_its_float32(price):
    (sent,) = struct.unpack("<f", struct.pack("<f", float(price)))  # as it arrives on the feed
    assert as_sent(sent) == float(price)
    assert as_sent(float(price)) == float(price)  # and a price stored already clean stays so


def test_above_2048_a_fixed_four_places_would_show_a_price_dhan_never_sent():
    (sent,) = struct.unpack("<f", struct.pack("<f", 2653.65))
    assert round(sent, 4) == 2653.6499 and as_sent(sent) == 2653.65
