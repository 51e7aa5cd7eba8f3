"""The REST client against the simulator over loopback (and a tiny local server for the
shapes the simulator cannot produce): answers, retries, timeouts, one-line errors."""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
import requests

from dhanfeed import __version__
from dhanfeed.dhan_api import DhanApi
from dhanfeed.errors import DhanApiError
from dhanfeed.token import parse_token
from support.recording_http import Hit, recording_server
from support.secret_scan import PLANTED_PIN, PLANTED_TOTP_SECRET, remember_secret
from support.token_files import make_token


@pytest.fixture
def http():
    with requests.Session() as session:
        yield session


def client(http, base: str, **kw) -> DhanApi:
    kw.setdefault("backoff", 0.01)
    kw.setdefault("read_timeout", 2.0)
    return DhanApi(http, api_base=base, auth_base=base, client_id="1000000001", **kw)


def calls(sim, endpoint: str) -> int:
    return sim.admin("stats")["rest_calls"].get(endpoint, 0)


def issue(sim, **payload) -> dict:
    token = sim.admin("issue-token", payload)
    remember_secret(token["access_token"])
    return token


@pytest.mark.parametrize("field", ["token", "accessToken"])
def test_renewal_reads_the_new_token_from_either_field(http, start_sim, field):
    sim = start_sim("--renew-field", field)
    old = issue(sim)
    new = client(http, sim.api_base).renew_token(old["access_token"])
    remember_secret(new.access_token)
    token = parse_token(new.access_token)
    assert token.fingerprint == sim.admin("stats")["current_token_fp"] != old["fingerprint"]
    assert new.expiry_time is not None
    assert abs(new.expiry_time - token.expires_at) <= dt.timedelta(seconds=1)


def test_renewing_a_superseded_token_is_refused_with_dh_901_and_not_retried(http, sim):
    old = issue(sim)
    issue(sim)  # a newer token kills the old one
    with pytest.raises(DhanApiError) as info:
        client(http, sim.api_base).renew_token(old["access_token"])
    assert info.value.status == 401 and info.value.code == "DH-901"
    assert not info.value.retryable
    assert calls(sim, "RenewToken") == 1
    assert old["access_token"] not in str(info.value)


def test_pin_and_totp_give_an_app_token(http, start_sim):
    sim = start_sim("--pin", PLANTED_PIN, "--totp-secret", PLANTED_TOTP_SECRET)
    totp = pyotp.TOTP(PLANTED_TOTP_SECRET)
    new = client(http, sim.auth_base).generate_access_token(PLANTED_PIN, totp.now)
    remember_secret(new.access_token)
    token = parse_token(new.access_token)
    assert token.consumer_type == "APP"
    assert token.client_id == "1000000001"


def test_a_wrong_pin_is_one_line_without_the_pin_and_not_retried(http, start_sim):
    sim = start_sim("--pin", PLANTED_PIN, "--totp-secret", PLANTED_TOTP_SECRET)
    code = pyotp.TOTP(PLANTED_TOTP_SECRET).now()
    with pytest.raises(DhanApiError) as info:
        client(http, sim.auth_base).generate_access_token("999999", lambda: code)
    text = str(info.value)
    assert text == "generateAccessToken: HTTP 400: Invalid Pin"
    assert "999999" not in text and code not in text
    assert calls(sim, "generateAccessToken") == 1


def test_profile_answers_for_a_live_token_and_401_for_a_dead_one(http, sim):
    live = issue(sim)
    profile = client(http, sim.api_base).profile(live["access_token"])
    assert profile["dhanClientId"] == "1000000001"
    issue(sim)
    with pytest.raises(DhanApiError, match=r"^profile: HTTP 401 DH-901: "):
        client(http, sim.api_base).profile(live["access_token"])


def test_a_5xx_is_retried_and_a_later_success_is_used(http, sim):
    old = issue(sim)
    sim.admin("fault", {"kind": "rest", "endpoint": "RenewToken", "mode": "500", "count": 2})
    new = client(http, sim.api_base).renew_token(old["access_token"])
    remember_secret(new.access_token)
    assert calls(sim, "RenewToken") == 3
    assert parse_token(new.access_token).fingerprint == sim.admin("stats")["current_token_fp"]


@pytest.mark.parametrize(
    ("mode", "message", "tries"),
    [
        ("500", r"^RenewToken: HTTP 500 DH-908: .* \(gave up after 3 tries\)$", 3),
        ("html", r"^RenewToken: HTTP 502 from Dhan \(an HTML page\) \(gave up after 3 tries\)$", 3),
        ("malformed", r"^RenewToken: answer is not JSON \(malformed JSON, HTTP 200\)$", 1),
        ("hang", r"^RenewToken: no answer from http://127\.0\.0\.1:\d+ within 0\.3s \(gave up", 3),
    ],
)
def test_each_rest_fault_gives_one_line_and_bounded_tries(http, sim, mode, message, tries):
    old = issue(sim)
    sim.admin("fault", {"kind": "rest", "endpoint": "RenewToken", "mode": mode, "count": 5})
    with pytest.raises(DhanApiError, match=message) as info:
        client(http, sim.api_base, read_timeout=0.3).renew_token(old["access_token"])
    assert "\n" not in str(info.value)
    assert old["access_token"] not in str(info.value)
    assert calls(sim, "RenewToken") == tries
    assert sim.admin("stats")["current_token_fp"] == old["fingerprint"]  # nothing renewed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_server_is_one_line_without_path_or_query(http):
    base = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(DhanApiError) as info:
        client(http, base).generate_access_token(PLANTED_PIN, lambda: "123456")
    text = str(info.value)
    assert (
        text
        == f"generateAccessToken: cannot reach {base} (connection failed) (gave up after 3 tries)"
    )
    assert PLANTED_PIN not in text and "123456" not in text
    assert info.value.retryable


def test_the_run_deadline_stops_further_tries(http):
    base = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(DhanApiError, match="time budget is used up"):
        client(http, base, deadline=time.monotonic() - 1).renew_token("x.y.z")


class Canned(BaseHTTPRequestHandler):
    """Answers every request with the class's canned reply and remembers the headers."""

    reply: tuple[int, str, bytes] = (200, "application/json", b"{}")
    seen: list[dict] = []

    def do_GET(self) -> None:  # noqa: N802
        Canned.seen.append(dict(self.headers))
        status, ctype, body = Canned.reply
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def canned():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Canned)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Canned.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ((200, "application/json", b'{"status": "success", "expiryTime": "x"}'),
         "RenewToken: answer has no 'token' or 'accessToken' (keys: expiryTime, status)"),
        ((200, "application/json", b'{"token": ""}'),
         "RenewToken: answer has no 'token' or 'accessToken' (keys: token)"),
        ((200, "application/json", b"[1, 2]"),
         "RenewToken: answer is JSON but not an object (HTTP 200)"),
        ((200, "text/html", b"<!DOCTYPE html><html>login</html>"),
         "RenewToken: answer is not JSON (an HTML page, HTTP 200)"),
        ((200, "application/json", b""), "RenewToken: answer is not JSON (an empty body, HTTP 200)"),
        ((429, "application/json", b'{"errorType": "Rate_Limit", "errorCode": "DH-904"}'),
         "RenewToken: HTTP 429 DH-904: Rate_Limit"),
    ],
)  # fmt: skip
def test_answers_without_a_usable_token_are_one_clear_line(http, canned, reply, message):
    Canned.reply = reply
    with pytest.raises(DhanApiError) as info:
        client(http, canned).renew_token("a.b.c")
    assert str(info.value) == message
    assert len(Canned.seen) == 1  # none of these is retried


def test_every_call_sends_our_user_agent_and_the_client_id(http, canned):
    Canned.reply = (200, "application/json", json.dumps({"dhanClientId": "1000000001"}).encode())
    client(http, canned).profile("a.b.c")
    assert Canned.seen[0]["User-Agent"] == f"dhanfeed/{__version__}"
    assert Canned.seen[0]["dhanClientId"] == "1000000001"


# Dhan's error text is cut to 120 characters; a secret it echoes must be scrubbed before the
# cut, or the cut would leave its first characters behind ("Invalid pin 7319…").
LIMIT = 120


def echo_across_the_cut(
    field: str, inside: int, value: str = ""
) -> Callable[[Hit], tuple[int, bytes]]:
    """A Dhan that repeats the `field` it was sent (or `value`) so that the cut would fall
    `inside` characters into it."""

    def answer(hit: Hit) -> tuple[int, bytes]:
        secret = value or parse_qs(urlsplit(hit.path).query)[field][0]
        said = f" Invalid {field} "
        pad = "." * (LIMIT - 1 - inside - len(said))
        message = f"{pad}{said}{secret} was refused"
        return 400, json.dumps({"errorCode": "DH-905", "errorMessage": message}).encode()

    return answer


@pytest.mark.parametrize("field", ["pin", "totp"])
@pytest.mark.parametrize("inside", [1, 3, 5])
def test_a_pin_or_totp_code_dhan_echoes_where_its_text_is_cut_is_scrubbed_whole(
    http, field, inside
):
    code = pyotp.TOTP(PLANTED_TOTP_SECRET).now()
    with recording_server(answer=echo_across_the_cut(field, inside)) as dhan:
        with pytest.raises(DhanApiError) as info:
            client(http, dhan.url).generate_access_token(PLANTED_PIN, lambda: code)
    said = str(info.value).partition("DH-905: ")[2]
    assert len(said) == LIMIT and said.endswith("…")  # cut where the secret was
    assert f"Invalid {field} [" in said  # the scrub is where the secret began
    assert not re.search(r"\d", said)  # not one digit of the PIN or the code is left


def test_a_token_dhan_echoes_where_its_text_is_cut_is_scrubbed_whole(http):
    token = make_token(exp=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).access_token
    remember_secret(token)
    with recording_server(answer=echo_across_the_cut("token", 20, token)) as dhan:
        with pytest.raises(DhanApiError) as info:
            client(http, dhan.url).renew_token(token)
    said = str(info.value)
    assert said.endswith("Invalid token [REDACTED] was refus…")
    assert not [part for part in token.split(".") if part[:8] in said]


def test_dhan_s_words_around_an_echoed_pin_are_kept_as_they_were(http):
    def answer(hit: Hit) -> tuple[int, bytes]:
        pin = parse_qs(urlsplit(hit.path).query)["pin"][0]
        message = f"Invalid Pin {pin}, try again at 0915 (7319 left)"
        return 400, json.dumps({"errorCode": "DH-905", "errorMessage": message}).encode()

    with recording_server(answer=answer) as dhan:
        with pytest.raises(DhanApiError) as info:
            client(http, dhan.url).generate_access_token(PLANTED_PIN, lambda: "123456")
    assert str(info.value) == (
        "generateAccessToken: HTTP 400 DH-905: "
        "Invalid Pin [REDACTED], try again at 0915 (7319 left)"
    )  # only the whole PIN goes: its first digits elsewhere, or other numbers, stay
