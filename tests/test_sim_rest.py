"""The simulator's REST API and admin endpoint over loopback (dhan-api.md §1–2)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import stat
import time
import zoneinfo
from collections.abc import Iterator

import pyotp
import pytest
import requests

from support.polling import wait_until
from support.sim import Sim, launch_sim

KOLKATA = zoneinfo.ZoneInfo("Asia/Kolkata")
PIN = "4321"
SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
TIMEOUT = 10
DH_901 = {
    "errorType": "Invalid_Authentication",
    "errorCode": "DH-901",
    "errorMessage": "Client ID or user generated access token is invalid or expired.",
}


@pytest.fixture(scope="module")
def rsim() -> Iterator[Sim]:
    """One simulator for the module (PIN+TOTP on, fast ticks); each test resets its state."""
    sim = launch_sim("--pin", PIN, "--totp-secret", SEED, "--ticks-per-second", "20")
    yield sim
    sim.stop()


@pytest.fixture(autouse=True)
def _reset(request: pytest.FixtureRequest) -> None:
    if "rsim" in request.fixturenames:
        sim = request.getfixturevalue("rsim")
        sim.admin("clear-faults", {})
        sim.admin("policy", {"renew_field": "token", "token_ttl_s": 86400})


def payload_of(token: str) -> dict:
    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def header_of(token: str) -> dict:
    head = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))


def issue(sim: Sim, **kw: object) -> str:
    return sim.admin("issue-token", dict(kw))["access_token"]


def profile(sim: Sim, token: str | None) -> requests.Response:
    headers = {"dhanClientId": sim.client_id}
    if token is not None:
        headers["access-token"] = token
    return requests.get(f"{sim.api_base}/v2/profile", headers=headers, timeout=TIMEOUT)


def renew(sim: Sim, token: str, method: str = "GET") -> requests.Response:
    headers = {"access-token": token, "dhanClientId": sim.client_id}
    return requests.request(
        method, f"{sim.api_base}/v2/RenewToken", headers=headers, timeout=TIMEOUT
    )


def generate(sim: Sim, pin: str = PIN, totp: str | None = None, client_id: str | None = None):  # noqa: ANN201
    params = {
        "dhanClientId": client_id or sim.client_id,
        "pin": pin,
        "totp": totp if totp is not None else pyotp.TOTP(SEED).now(),
    }
    return requests.post(f"{sim.auth_base}/app/generateAccessToken", params=params, timeout=TIMEOUT)


def ist_no_zone(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, KOLKATA).strftime("%Y-%m-%dT%H:%M:%S.000")


# --- tokens ---


def test_issued_token_is_jwt_shaped_with_the_documented_payload(rsim: Sim) -> None:
    token = issue(rsim)
    assert header_of(token) == {"typ": "JWT", "alg": "HS512"}
    claims = payload_of(token)
    assert set(claims) == {
        "iss", "partnerId", "exp", "iat", "tokenConsumerType", "webhookUrl", "dhanClientId",
    }  # fmt: skip
    assert claims["iss"] == "dhan" and claims["partnerId"] == "" and claims["webhookUrl"] == ""
    assert claims["tokenConsumerType"] == "SELF"
    assert claims["dhanClientId"] == rsim.client_id
    assert claims["exp"] - claims["iat"] == 86400


def test_two_tokens_issued_in_the_same_second_differ(rsim: Sim) -> None:
    assert issue(rsim) != issue(rsim)


def test_issue_token_writes_a_private_token_file(rsim: Sim, tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "state" / "token.json"
    answer = rsim.admin("issue-token", {"path": str(path), "ttl_s": 3600})
    record = json.loads(path.read_text())
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert record["access_token"] == answer["access_token"]
    assert record["client_id"] == rsim.client_id
    assert record["source"] == "manual"
    assert record["fingerprint"] == hashlib.sha256(record["access_token"].encode()).hexdigest()[:12]
    assert record["fingerprint"] == answer["fingerprint"]
    expires = dt.datetime.fromisoformat(record["expires_at"])
    assert expires.utcoffset() is not None
    assert int(expires.timestamp()) == payload_of(record["access_token"])["exp"]
    assert dt.datetime.fromisoformat(record["issued_at"]).utcoffset() is not None
    assert dt.datetime.fromisoformat(record["written_at"]).utcoffset() is not None
    assert [p.name for p in path.parent.iterdir()] == ["token.json"]  # no temp file left


def test_policy_token_ttl_changes_the_lifetime_of_new_tokens(rsim: Sim) -> None:
    rsim.admin("policy", {"token_ttl_s": 120})
    claims = payload_of(issue(rsim))
    assert claims["exp"] - claims["iat"] == 120


def test_issuing_a_token_supersedes_the_previous_one(rsim: Sim) -> None:
    old = issue(rsim)
    new = issue(rsim)
    assert profile(rsim, old).status_code == 401
    assert profile(rsim, new).status_code == 200
    assert rsim.admin("stats")["current_token_fp"] == hashlib.sha256(new.encode()).hexdigest()[:12]


# --- profile ---


def test_profile_reports_token_validity_in_ist(rsim: Sim) -> None:
    token = issue(rsim)
    resp = profile(rsim, token)
    assert resp.status_code == 200
    body = resp.json()
    exp = payload_of(token)["exp"]
    assert body["tokenValidity"] == dt.datetime.fromtimestamp(exp, KOLKATA).strftime(
        "%d/%m/%Y %H:%M"
    )
    assert body["dhanClientId"] == rsim.client_id
    assert body["dataPlan"] == "Active"
    for key in ("activeSegment", "ddpi", "mtf", "dataValidity"):
        assert key in body


@pytest.mark.parametrize("token", [None, "", "not-a-token", "eyJhbGciOiJIUzUxMiJ9.eyJ4IjoxfQ.c2ln"])
def test_profile_refuses_a_bad_token_with_dh_901(rsim: Sim, token: str | None) -> None:
    resp = profile(rsim, token)
    assert resp.status_code == 401
    assert resp.json() == DH_901


def test_profile_refuses_an_expired_token(rsim: Sim) -> None:
    token = issue(rsim, ttl_s=1)
    wait_until("the old token refused", lambda: profile(rsim, token).status_code == 401)
    assert profile(rsim, token).json() == DH_901


# --- RenewToken ---


def test_renew_returns_a_new_token_and_kills_the_old_one(rsim: Sim) -> None:
    old = issue(rsim)
    before = rsim.admin("stats")["rest_calls"]["RenewToken"]
    resp = renew(rsim, old)
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"token", "expiryTime"}
    new = body["token"]
    claims = payload_of(new)
    assert claims["tokenConsumerType"] == "SELF"
    assert claims["exp"] - claims["iat"] == 86400
    assert body["expiryTime"] == ist_no_zone(claims["exp"])
    assert profile(rsim, old).status_code == 401
    assert profile(rsim, new).status_code == 200
    assert renew(rsim, old).status_code == 401  # the old one cannot be renewed twice
    assert rsim.admin("stats")["rest_calls"]["RenewToken"] == before + 2


def test_renew_field_switch_serves_access_token(rsim: Sim) -> None:
    rsim.admin("policy", {"renew_field": "accessToken"})
    body = renew(rsim, issue(rsim)).json()
    assert set(body) == {"accessToken", "expiryTime"}
    assert profile(rsim, body["accessToken"]).status_code == 200


def test_renew_with_post_is_dh_905(rsim: Sim) -> None:
    token = issue(rsim)
    resp = renew(rsim, token, method="POST")
    assert resp.status_code == 400
    assert resp.json()["errorCode"] == "DH-905"
    assert resp.json()["errorType"] == "Input_Exception"
    assert profile(rsim, token).status_code == 200  # nothing was renewed


def test_renew_refuses_expired_superseded_and_unknown_tokens(rsim: Sim) -> None:
    superseded = issue(rsim)
    expired = issue(rsim, ttl_s=1)
    wait_until("the token to expire", lambda: profile(rsim, expired).status_code == 401)
    for token in (expired, superseded, "garbage.token.here"):
        resp = renew(rsim, token)
        assert resp.status_code == 401
        assert resp.json() == DH_901


def test_renew_refuses_a_token_of_another_client_id(rsim: Sim) -> None:
    token = issue(rsim)
    resp = requests.get(
        f"{rsim.api_base}/v2/RenewToken",
        headers={"access-token": token, "dhanClientId": "1999999999"},
        timeout=TIMEOUT,
    )
    assert resp.status_code == 401
    assert profile(rsim, token).status_code == 200


def test_renew_refuses_app_tokens_from_totp(rsim: Sim) -> None:
    app_token = generate(rsim).json()["accessToken"]
    resp = renew(rsim, app_token)
    assert resp.status_code == 401
    assert resp.json() == DH_901
    assert profile(rsim, app_token).status_code == 200  # still the active token


# --- generateAccessToken (PIN + TOTP) ---


def test_generate_with_pin_and_totp_returns_the_documented_body(rsim: Sim) -> None:
    previous = issue(rsim)
    resp = generate(rsim)
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {
        "dhanClientId", "dhanClientName", "dhanClientUcc", "givenPowerOfAttorney",
        "accessToken", "expiryTime",
    }  # fmt: skip
    claims = payload_of(body["accessToken"])
    assert claims["tokenConsumerType"] == "APP"
    assert body["dhanClientId"] == rsim.client_id
    assert body["expiryTime"] == ist_no_zone(claims["exp"])
    assert profile(rsim, previous).status_code == 401  # only one token is active


def test_generate_accepts_the_previous_totp_step_but_not_older(rsim: Sim) -> None:
    totp = pyotp.TOTP(SEED)
    assert generate(rsim, totp=totp.at(time.time() - 30)).status_code == 200
    assert generate(rsim, totp=totp.at(time.time() - 95)).status_code == 400


@pytest.mark.parametrize(
    "kwargs, message",
    [({"totp": "000000"}, "Invalid TOTP"), ({"pin": "0000"}, "Invalid Pin")],
)
def test_generate_refuses_a_wrong_pin_or_totp(rsim: Sim, kwargs: dict, message: str) -> None:
    if kwargs.get("totp") == pyotp.TOTP(SEED).now():  # pragma: no cover - 1 in a million
        pytest.skip("the wrong code happens to be right")
    current = issue(rsim)
    resp = generate(rsim, **kwargs)
    assert resp.status_code == 400
    assert resp.json() == {"message": message, "status": "error"}
    assert profile(rsim, current).status_code == 200  # a failure changes nothing


def test_generate_is_refused_when_totp_is_not_enabled(sim: Sim) -> None:
    resp = generate(sim)
    assert resp.status_code == 400
    assert resp.json()["status"] == "error"


# --- intraday ---


def intraday(sim: Sim, token: str, **overrides: object) -> requests.Response:
    now = dt.datetime.now(KOLKATA)
    body = {
        "securityId": "1333",
        "exchangeSegment": "NSE_EQ",
        "instrument": "EQUITY",
        "interval": "1",
        "fromDate": (now - dt.timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S"),
        "toDate": (now + dt.timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S"),
        **overrides,
    }
    return requests.post(
        f"{sim.api_base}/v2/charts/intraday",
        headers={"access-token": token, "client-id": sim.client_id},
        json=body,
        timeout=TIMEOUT,
    )


def patient(sim: Sim, token: str, **overrides: object) -> requests.Response:
    """An intraday answer that is not the rate limit: waits out Dhan's 5 requests/s."""
    deadline = time.monotonic() + 30
    while (resp := intraday(sim, token, **overrides)).status_code == 429:
        assert time.monotonic() < deadline, "rate-limited for 30 s"
        time.sleep(0.3)
    return resp


def bars_of(sim: Sim, token: str, **overrides: object) -> dict:
    resp = patient(sim, token, **overrides)
    assert resp.status_code == 200, resp.text
    return resp.json()


def cum_volume(sim: Sim, key: str) -> int:
    return sim.admin("stats")["instruments"][key]["cum_volume"]


def test_intraday_bars_are_the_exchanges_built_from_every_trade(rsim: Sim) -> None:
    token = issue(rsim)
    wait_until("20 ticks", lambda: rsim.admin("stats")["instruments"]["NSE_EQ:1333"]["ticks"] >= 20)
    ticks = rsim.admin("sent?instrument=NSE_EQ:1333")["ticks"]  # packets, before the bars
    bars = bars_of(rsim, token)
    assert set(bars) == {"open", "high", "low", "close", "volume", "timestamp"}
    n = len(bars["timestamp"])
    assert n >= 1 and all(len(v) == n for v in bars.values())
    assert all(ts % 60 == 0 for ts in bars["timestamp"])  # minute-anchored
    assert abs(bars["timestamp"][-1] - time.time()) < 180  # true UTC epochs, not IST
    # What the packets alone say about each minute (cum, IST-epoch LTT, LTP per packet).
    sampled: dict[int, list] = {}
    for cum, ltt, ltp, _sockets in ticks:
        bar = sampled.setdefault((ltt - 19800) // 60 * 60, [ltp, ltp, ltp, ltp, cum])
        bar[1], bar[2], bar[3], bar[4] = max(bar[1], ltp), min(bar[2], ltp), ltp, cum
    by_start = {ts: i for i, ts in enumerate(bars["timestamp"])}
    prev_cum, extremes_missed = 0, 0
    for start in sorted(sampled):
        i = by_start[start]
        o, h, low, c, cum = sampled[start]
        assert bars["high"][i] >= round(h, 2) and bars["low"][i] <= round(low, 2)
        extremes_missed += (round(o, 2), round(h, 2), round(low, 2)) != (
            bars["open"][i],
            bars["high"][i],
            bars["low"][i],
        )
        if start < max(sampled):  # closed before the record was read: ends with a packet
            assert bars["close"][i] == round(c, 2)
            assert bars["volume"][i] == cum - prev_cum
        prev_cum = cum
    assert extremes_missed  # the feed is sampled: 3 trades per packet by default
    record = rsim.admin("stats")["instruments"]["NSE_EQ:1333"]
    assert record["trades"] == 3 * record["ticks"]


def test_intraday_bars_count_the_trades_nobody_was_subscribed_to(rsim: Sim) -> None:
    token = issue(rsim)
    key = "NSE_EQ:11536"
    wait_until("some volume", lambda: cum_volume(rsim, key) > 0)
    before = cum_volume(rsim, key)
    volumes = bars_of(rsim, token, securityId="11536")["volume"]
    after = cum_volume(rsim, key)
    assert rsim.admin("stats")["instruments"][key]["delivered"] == 0  # no socket ever had it
    assert before <= sum(volumes) <= after  # the day's volume, all of it, in the bars


def test_longer_intraday_bars_add_up_the_minutes_from_0915_ist(rsim: Sim) -> None:
    token = issue(rsim)
    minutes = bars_of(rsim, token, interval=1)
    for interval in (5, 15, 25, 60):
        bars = bars_of(rsim, token, interval=str(interval))
        anchor = dt.datetime.now(KOLKATA).replace(hour=9, minute=15, second=0, microsecond=0)
        assert all((ts - anchor.timestamp()) % (60 * interval) == 0 for ts in bars["timestamp"])
        first = bars["timestamp"][0]
        in_first = [
            i for i, ts in enumerate(minutes["timestamp"]) if first <= ts < first + 60 * interval
        ]
        assert bars["open"][0] == minutes["open"][in_first[0]]
        assert bars["high"][0] >= max(minutes["high"][i] for i in in_first)
        assert bars["volume"][0] >= sum(minutes["volume"][i] for i in in_first)


def test_intraday_range_excludes_bars_outside_it(rsim: Sim) -> None:
    token = issue(rsim)
    resp = patient(rsim, token, fromDate="2001-01-01", toDate="2001-01-02")
    assert resp.status_code == 200
    assert resp.json()["timestamp"] == []


def test_intraday_unknown_instrument_has_no_bars(rsim: Sim) -> None:
    resp = patient(rsim, issue(rsim), securityId="999999")
    assert resp.status_code == 200
    assert resp.json()["volume"] == []


def test_intraday_refuses_a_bad_token_and_bad_input(rsim: Sim) -> None:
    token = issue(rsim)
    assert patient(rsim, "nope").status_code == 401
    resp = patient(rsim, token, fromDate="yesterday")
    assert resp.status_code == 400
    assert resp.json()["errorCode"] == "DH-905"
    assert patient(rsim, token, interval="7").status_code == 400
    for bad in ({"instrument": None}, {"instrument": "SHARES"}, {"fromDate": "2030-01-02",
                "toDate": "2030-01-01"}):  # fmt: skip
        resp = patient(rsim, token, **bad)
        assert (resp.status_code, resp.json()["errorCode"]) == (400, "DH-905"), bad
    assert bars_of(rsim, token, fromDate="2099-01-01", toDate="2099-01-01")["timestamp"] == []


def test_intraday_faults_answer_once_then_dhan_answers_again(rsim: Sim) -> None:
    token = issue(rsim)
    for mode, status in (("500", 500), ("429", 429), ("malformed", 200), ("ragged", 200)):
        rsim.admin("fault", {"kind": "rest", "endpoint": "intraday", "mode": mode})
        time.sleep(0.25)  # stay under the real rate limit: the fault is what answers 429
        resp = intraday(rsim, token)
        assert resp.status_code == status, mode
        if mode in ("500", "429"):
            assert resp.json()["errorCode"] == {"500": "DH-908", "429": "DH-904"}[mode]
        elif mode == "malformed":
            with pytest.raises(ValueError):
                resp.json()
        else:
            assert len({len(v) for v in resp.json().values()}) > 1  # arrays of unequal length
    assert len(bars_of(rsim, token)["timestamp"]) >= 1


def test_intraday_is_rate_limited_at_5_per_second(sim: Sim) -> None:
    token = issue(sim)
    codes = [intraday(sim, token).status_code for _ in range(12)]
    assert 429 in codes
    limited = intraday(sim, token)
    if limited.status_code == 429:
        assert limited.json()["errorCode"] == "DH-904"
    assert codes[0] == 200


# --- REST faults ---


def test_fault_500_answers_count_calls_then_recovers(rsim: Sim) -> None:
    token = issue(rsim)
    rsim.admin("fault", {"kind": "rest", "endpoint": "profile", "mode": "500", "count": 2})
    for _ in range(2):
        resp = profile(rsim, token)
        assert resp.status_code == 500
        assert resp.json()["errorCode"] == "DH-908"
    assert profile(rsim, token).status_code == 200


def test_fault_no_token_answers_200_with_json_that_holds_no_token(rsim: Sim) -> None:
    token = issue(rsim)
    rsim.admin("fault", {"kind": "rest", "endpoint": "RenewToken", "mode": "no_token"})
    resp = renew(rsim, token)
    assert resp.status_code == 200
    assert "token" not in resp.json() and "accessToken" not in resp.json()
    assert profile(rsim, token).status_code == 200  # the fault renewed nothing


def test_fault_malformed_returns_unparseable_json(rsim: Sim) -> None:
    token = issue(rsim)
    rsim.admin("fault", {"kind": "rest", "endpoint": "RenewToken", "mode": "malformed"})
    resp = renew(rsim, token)
    assert resp.status_code == 200
    with pytest.raises(ValueError):
        resp.json()
    assert profile(rsim, token).status_code == 200  # the fault renewed nothing


@pytest.mark.parametrize(
    ("mode", "odd"),
    [
        ("bad_exp", lambda answer, claims: claims["exp"] == 10**12),
        ("expiry_0001", lambda answer, claims: answer["expiryTime"].startswith("0001-01-01")),
        ("other_client", lambda answer, claims: claims["dhanClientId"] == "2000000002"),
        ("expired", lambda answer, claims: claims["exp"] < time.time()),
    ],
)
def test_an_issuing_renew_fault_kills_the_old_token_and_answers_an_odd_new_one(
    rsim: Sim, mode, odd
) -> None:
    old = issue(rsim)
    rsim.admin("fault", {"kind": "rest", "endpoint": "RenewToken", "mode": mode})
    resp = renew(rsim, old)
    assert resp.status_code == 200
    new = resp.json()["token"]
    assert odd(resp.json(), payload_of(new))
    assert profile(rsim, old).status_code == 401  # Dhan has moved on: the old token is dead
    assert rsim.admin("stats")["current_token_fp"] == hashlib.sha256(new.encode()).hexdigest()[:12]
    if mode != "expired":
        assert profile(rsim, new).status_code == 200  # the odd answer is still a working token


def test_fault_html_returns_an_html_error_page(rsim: Sim) -> None:
    rsim.admin("fault", {"kind": "rest", "endpoint": "generateAccessToken", "mode": "html"})
    resp = generate(rsim)
    assert resp.status_code == 502
    assert resp.headers["Content-Type"].startswith("text/html")
    assert "<html>" in resp.text
    assert generate(rsim).status_code == 200


def test_fault_hang_times_the_client_out_while_others_are_served(rsim: Sim) -> None:
    token = issue(rsim)
    rsim.admin("fault", {"kind": "rest", "endpoint": "RenewToken", "mode": "hang"})
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(
            f"{rsim.api_base}/v2/RenewToken",
            headers={"access-token": token, "dhanClientId": rsim.client_id},
            timeout=0.5,
        )
    assert profile(rsim, token).status_code == 200  # nothing else blocks
    assert renew(rsim, token).status_code == 200  # count 1: the next call is normal


def test_fault_on_every_endpoint_and_clear_faults(rsim: Sim) -> None:
    token = issue(rsim)
    rsim.admin("fault", {"kind": "rest", "endpoint": "*", "mode": "500", "count": 100})
    assert profile(rsim, token).status_code == 500
    assert intraday(rsim, token).status_code == 500
    assert rsim.admin("stats")["rest_faults"][0]["remaining"] == 98
    rsim.admin("clear-faults", {})
    assert profile(rsim, token).status_code == 200


def test_rest_calls_are_counted_per_endpoint(rsim: Sim) -> None:
    before = rsim.admin("stats")["rest_calls"]
    token = issue(rsim)
    profile(rsim, token)
    profile(rsim, "bad")
    generate(rsim, pin="0")
    after = rsim.admin("stats")["rest_calls"]
    assert after["profile"] == before["profile"] + 2
    assert after["generateAccessToken"] == before["generateAccessToken"] + 1
    assert set(after) == {"RenewToken", "generateAccessToken", "profile", "intraday"}


# --- admin input ---


@pytest.mark.parametrize(
    "path, payload",
    [
        ("fault", {"kind": "nonsense"}),
        ("fault", {"kind": "rest", "endpoint": "orders", "mode": "500"}),
        ("fault", {"kind": "rest", "endpoint": "profile", "mode": "teapot"}),
        ("fault", {"kind": "stall"}),
        ("policy", {"renew_field": "jwt"}),
        ("policy", {"renew_kills_sockets": "yes"}),
        ("policy", {"colour": "blue"}),
        ("issue-token", {"ttl_s": -5}),
    ],
)
def test_admin_refuses_bad_input_with_400(rsim: Sim, path: str, payload: dict) -> None:
    resp = requests.post(f"{rsim.admin_url}/{path}", json=payload, timeout=TIMEOUT)
    assert resp.status_code == 400
    assert "error" in resp.json()


def test_unknown_paths_are_404(rsim: Sim) -> None:
    assert requests.get(f"{rsim.api_base}/v2/orders", timeout=TIMEOUT).status_code == 404
    assert requests.get(f"{rsim.admin_url}/nothing", timeout=TIMEOUT).status_code == 404
