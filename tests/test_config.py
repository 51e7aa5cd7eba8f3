import datetime as dt
import re
import textwrap
from pathlib import Path

import pytest

from dhanfeed.config import Instrument, parse_duration
from dhanfeed.config_load import load_config
from dhanfeed.database_url import PostgresUrl, redact
from dhanfeed.errors import ConfigError, ExitCode

EXAMPLE = textwrap.dedent(
    """
    [dhan]
    client_id = "1000000001"
    api_base = "https://api.dhan.co"
    auth_base = "https://auth.dhan.co"
    feed_url = "wss://api-feed.dhan.co"

    [token]
    file = "state/token.json"
    renew_before = "6h"
    must_renew_before = "2h"

    [session]
    timezone = "Asia/Kolkata"
    days = ["mon", "tue", "wed", "thu", "fri"]
    start = "09:00"
    end = "15:30"
    holidays = []

    [alerts]
    log_file = "logs/token_alerts.log"
    urls = []

    [collector]
    instruments = ["NSE_EQ:1333", "NSE_FNO:55796"]
    mode = "quote"
    intervals = ["1m"]
    database = "data/candles.sqlite"
    store_ticks = true
    """
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_the_issue_example_loads_as_written_with_paths_resolved_against_the_config(tmp_path):
    cfg = load_config(write(tmp_path, EXAMPLE), environ={})
    assert cfg.dhan.client_id == "1000000001"
    assert cfg.token.file == tmp_path / "state/token.json"
    assert cfg.token.renew_before == dt.timedelta(hours=6)
    assert cfg.session.start == dt.time(9, 0)
    assert cfg.collector.instruments == [Instrument("NSE_EQ", 1333), Instrument("NSE_FNO", 55796)]
    assert cfg.collector.intervals == [dt.timedelta(minutes=1)]
    assert cfg.collector.database == tmp_path / "data/candles.sqlite"
    assert cfg.state_dir == tmp_path / "state"


def test_the_config_path_comes_from_the_flag_then_the_environment_then_the_cwd(
    tmp_path, monkeypatch
):
    path = write(tmp_path, EXAMPLE)
    assert load_config(None, environ={"DHANFEED_CONFIG": str(path)}).path == path
    monkeypatch.chdir(tmp_path)
    assert load_config(None, environ={}).path == Path("config.toml")
    with pytest.raises(ConfigError, match="bad config elsewhere.toml: file not found"):
        load_config("elsewhere.toml", environ={"DHANFEED_CONFIG": str(path)})


def test_every_problem_is_reported_at_once_with_its_key(tmp_path):
    bad = EXAMPLE.replace('"6h"', '"6 hours"').replace(
        '"NSE_FNO:55796"', '"NSE_FNO:55796", "XX:1", "NSE_EQ:1333"'
    )
    bad = bad.replace('mode = "quote"', 'mode = "depth"\ncolour = "blue"') + "\n[extra]\n"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, bad), environ={})
    text = str(info.value)
    assert "at 'token.renew_before': expected a duration" in text
    assert "at 'collector.instruments[2]': unknown segment 'XX'" in text
    assert "at 'collector.instruments[3]': duplicate instrument NSE_EQ:1333" in text
    assert "at 'collector.mode': expected ticker, quote or full" in text
    assert "at 'collector.colour': unknown key" in text
    assert "at 'extra': unknown section" in text
    assert info.value.exit_code == ExitCode.USAGE
    assert len(info.value.problems) == 6


def test_a_misspelt_section_is_named_with_the_sections_there_are(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, '[dhan]\nclient_id = "1000000001"\n[colector]\n'), environ={})
    assert info.value.problems == [
        "at 'colector': unknown section (known: dhan, token, session, alerts, totp, hooks,"
        " metrics, web, logging, collector, backfill)"
    ]


def test_a_missing_dhan_section_and_a_bad_client_id_are_errors(tmp_path):
    with pytest.raises(ConfigError, match="at 'dhan': required section is missing"):
        load_config(write(tmp_path, "[token]\n"), environ={})
    with pytest.raises(ConfigError, match="at 'dhan.client_id': expected digits"):
        load_config(write(tmp_path, '[dhan]\nclient_id = "abc"\n'), environ={})
    with pytest.raises(ConfigError, match="at 'dhan.client_id': required"):
        load_config(write(tmp_path, "[dhan]\n"), environ={})


def test_invalid_toml_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[dhan\nclient_id = 1"), environ={})


def test_more_instruments_than_four_sockets_hold_is_an_error(tmp_path):
    many = ", ".join(f'"NSE_EQ:{i}"' for i in range(1, 20002))
    text = EXAMPLE.replace('["NSE_EQ:1333", "NSE_FNO:55796"]', f"[{many}]")
    with pytest.raises(ConfigError, match="20001 instruments; at most 20000"):
        load_config(write(tmp_path, text), environ={})


def test_intervals_must_be_whole_minutes_and_sessions_must_end_after_they_start(tmp_path):
    text = EXAMPLE.replace('intervals = ["1m"]', 'intervals = ["90s", "5m"]').replace(
        'end = "15:30"', 'end = "08:00"'
    )
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={})
    assert "at 'collector.intervals[0]': expected a whole number of minutes" in str(info.value)
    assert "at 'session.end': must be after session.start" in str(info.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("6h", 21600), ("1d", 86400), ("250ms", 0.25), (45, 45)],
)
def test_durations_are_written_with_a_unit(text, seconds):
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize(
    "text", ["6", "six hours", "-5s", True, -1, "99999999999d", 1e300, float("inf"), float("nan")]
)
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_default_paths_are_relative_to_the_config_file_not_the_working_directory(tmp_path):
    cfg = load_config(write(tmp_path, '[dhan]\nclient_id = "1000000001"\n'), environ={})
    assert cfg.token.file == tmp_path / "state/token.json"
    assert cfg.alerts.log_file == tmp_path / "logs/token_alerts.log"
    assert cfg.logging.dir == tmp_path / "logs"
    assert cfg.collector.database == tmp_path / "data/candles.sqlite"


@pytest.mark.parametrize(
    ("section", "key"),
    [("dhan", "timeout"), ("token", "run_timeout"), ("alerts", "timeout"), ("hooks", "timeout"),
     ("collector", "stale_after"), ("collector", "status_every")],
)  # fmt: skip
def test_bounds_that_zero_would_switch_off_must_be_positive(tmp_path, section, key):
    text = '[dhan]\nclient_id = "1000000001"\n' + (
        f'{key} = "0s"\n' if section == "dhan" else f'[{section}]\n{key} = "0s"\n'
    )
    with pytest.raises(ConfigError, match=f"at '{section}.{key}': must be more than 0s"):
        load_config(write(tmp_path, text), environ={})


@pytest.mark.parametrize(
    ("setting", "problem"),
    [
        ('renew_before = "99999999999d"', "at 'token.renew_before': '99999999999d' is too long"),
        ("renew_before = 1e300", "at 'token.renew_before': 1e+300 is too long"),
        ("renew_before = inf", "at 'token.renew_before': inf is too long"),
    ],
)
def test_durations_too_long_for_a_timedelta_are_config_errors(tmp_path, setting, problem):
    text = f'[dhan]\nclient_id = "1000000001"\n[token]\n{setting}\n'
    with pytest.raises(ConfigError, match=re.escape(problem)):
        load_config(write(tmp_path, text), environ={})


def test_an_empty_interval_list_and_a_security_id_above_32_bits_are_errors(tmp_path):
    text = '[dhan]\nclient_id = "1000000001"\n[collector]\n'
    text += 'instruments = ["NSE_EQ:4294967296", "NSE_EQ:4294967295"]\nintervals = []\n'
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={})
    assert info.value.problems == [
        "at 'collector.instruments[0]': security id 4294967296 in 'NSE_EQ:4294967296' is above "
        "4294967295 (Dhan's ids are u32)",
        "at 'collector.intervals': expected at least one interval, like [\"1m\"]",
    ]


def test_problems_in_a_lenient_section_are_warnings_and_the_section_keeps_its_defaults(tmp_path):
    text = '[dhan]\nclient_id = "1000000001"\n[collector]\ninstruments = ["XX_EQ:1"]\n'
    text += "[web]\nport = 70000\n"
    path = write(tmp_path, text)
    with pytest.raises(ConfigError):
        load_config(path, environ={})  # strict: the collector needs [collector]
    cfg = load_config(path, environ={}, lenient=("collector", "web"))
    assert sorted(w.split(":")[0] for w in cfg.warnings) == [
        "at 'collector.instruments[0]'",
        "at 'web.port'",
    ]
    assert cfg.collector.instruments == []
    assert cfg.web.port == 0


def test_a_lenient_section_does_not_excuse_problems_elsewhere(tmp_path):
    text = '[dhan]\nclient_id = "1000000001"\n[token]\nrenew_before = "soon"\n'
    text += '[collector]\nmode = "loud"\n'
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={}, lenient=("collector",))
    assert [p.split(":")[0] for p in info.value.problems] == ["at 'token.renew_before'"]


README = Path(__file__).resolve().parent.parent / "README.md"


def test_an_alert_url_apprise_cannot_parse_is_a_config_error_with_its_key(tmp_path):
    text = EXAMPLE.replace(
        "urls = []", 'urls = ["mailto://user:app-password@gmail.com", "tgram://BOT_TOKEN/CHAT_ID"]'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ={})
    assert caught.value.exit_code == ExitCode.USAGE
    assert caught.value.problems == [
        "at 'alerts.urls[1]': Apprise cannot parse this tgram://... URL"
        " (see https://github.com/caronc/apprise/wiki for its form)"
    ]
    assert "BOT_TOKEN" not in str(caught.value)  # the rest of a URL may hold a key


def test_every_alert_url_in_the_readme_parses(tmp_path):
    lines = [line for line in README.read_text().splitlines() if line.startswith("urls = [")]
    assert lines, "the README shows how to set [alerts] urls"
    for line in lines:
        text = EXAMPLE.replace("urls = []", line)
        assert load_config(write(tmp_path, text), environ={}).alerts.urls


def with_database(database: str) -> str:
    return EXAMPLE.replace('database = "data/candles.sqlite"', f"database = {database!r}")


def test_the_database_may_be_a_postgresql_url_kept_as_written(tmp_path):
    url = "postgresql://dhanfeed@db.example:5432/market?sslmode=require"
    cfg = load_config(write(tmp_path, with_database(url)), environ={})
    assert cfg.collector.database == url
    assert isinstance(cfg.collector.database, PostgresUrl)


def test_a_database_that_is_not_a_url_is_a_path_beside_the_config(tmp_path):
    cfg = load_config(write(tmp_path, with_database("db/postgresql.sqlite")), environ={})
    assert cfg.collector.database == tmp_path / "db/postgresql.sqlite"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://dhanfeed:s3cretpw@db.example/market",
        "postgres://dhanfeed:s3cretpw@/market?host=/run/postgresql",
        "postgresql://dhanfeed@db.example/market?password=s3cretpw&sslmode=require",
    ],
)
def test_a_database_url_with_a_password_is_refused_without_repeating_it(tmp_path, url):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, with_database(url)), environ={})
    message = str(caught.value)
    assert "at 'collector.database'" in message and "~/.pgpass" in message
    assert "s3cretpw" not in message and "***" in message


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
        (
            "postgresql://u@h/db?password=pw&sslmode=require",
            "postgresql://u@h/db?password=***&sslmode=require",
        ),
        ("postgresql://u@h1:5432,h2:5433/db", "postgresql://u@h1:5432,h2:5433/db"),
        ("postgresql:///db?host=/run/postgresql", "postgresql:///db?host=/run/postgresql"),
    ],
)
def test_a_url_is_shown_with_its_password_masked_and_the_rest_as_written(url, shown):
    assert redact(url) == shown
