import base64
import datetime as dt
import json
import logging

import pytest

from dhanfeed.logs import REDACTED, close_logging, print_traceback, redact, setup_logging


@pytest.fixture(autouse=True)
def _close_handlers():
    yield
    close_logging()


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


# A made-up token, built here so that no token-shaped string sits in the source.
JWT = ".".join([_b64('{"alg":"HS512"}'), _b64('{"dhanClientId":"1000000001"}'), _b64("sig-part")])


def test_redact_removes_jwts_token_query_values_and_access_token_headers():
    assert JWT not in redact(f"token is {JWT} ok")
    url = "wss://feed?version=2&token=abc.def.ghi&clientId=1&authType=2"
    assert redact(url) == f"wss://feed?version=2&token={REDACTED}&clientId=1&authType=2"
    assert "secret123" not in redact("{'access-token': 'secret123'}")
    assert redact("nothing to hide here") == "nothing to hide here"


def test_the_log_file_is_json_lines_and_never_holds_a_token(tmp_path):
    setup_logging("unit", tmp_path)
    log = logging.getLogger("dhanfeed.test")
    log.info("renewed %s", JWT, extra={"url": f"wss://x?token={JWT}"})
    try:
        raise RuntimeError(f"connect failed: wss://x?token={JWT}")
    except RuntimeError:
        log.exception("socket error")
    close_logging()
    text = (tmp_path / "unit.log").read_text()
    assert JWT not in text
    records = [json.loads(line) for line in text.splitlines()]
    assert records[0]["message"] == f"renewed {REDACTED}"
    assert records[0]["level"] == "INFO"
    assert records[0]["url"] == f"wss://x?token={REDACTED}"
    assert "connect failed" in records[1]["exc_info"]


def test_the_log_file_is_reopened_after_logrotate_moves_it(tmp_path):
    setup_logging("rot", tmp_path)
    log = logging.getLogger("dhanfeed.test")
    log.warning("before")
    (tmp_path / "rot.log").rename(tmp_path / "rot.log.1")
    log.warning("after")
    assert "after" in (tmp_path / "rot.log").read_text()
    assert "after" not in (tmp_path / "rot.log.1").read_text()


def test_each_line_carries_an_iso_utc_time(tmp_path):
    setup_logging("iso", tmp_path)
    logging.getLogger("dhanfeed.test").info("hello")
    close_logging()
    record = json.loads((tmp_path / "iso.log").read_text())
    assert dt.datetime.fromisoformat(record["time"]).utcoffset() == dt.timedelta(0)


def test_tracebacks_printed_for_debug_carry_no_token(capsys):
    try:
        raise ConnectionError(f"handshake failed for wss://feed?token={JWT}&clientId=1")
    except ConnectionError as exc:
        print_traceback(exc)
    err = capsys.readouterr().err
    assert "ConnectionError: handshake failed" in err
    assert JWT not in err
