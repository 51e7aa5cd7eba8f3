"""Alerts: the JSON line, de-duplication, escalation, recovery, Apprise, healthchecks, hooks."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import socket
import sys
from pathlib import Path

import pytest

from dhanfeed.alerts import Alerter, alert_state_path
from dhanfeed.config import AlertsSection, Duration, HooksSection
from support.recording_http import recording_server
from support.token_files import make_token

T0 = dt.datetime(2026, 1, 5, 6, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def make_alerter(tmp_path: Path, clock: Clock, **section) -> Alerter:
    hooks = section.pop("hooks", None)
    alerts = AlertsSection(log_file=tmp_path / "logs" / "token_alerts.log", **section)
    token_file = tmp_path / "state" / "token.json"
    return Alerter(alerts, client_id="1000000001", state_path=alert_state_path(token_file),
                   token_file=token_file, hooks=hooks, clock=clock)  # fmt: skip


def lines(tmp_path: Path) -> list[dict]:
    path = tmp_path / "logs" / "token_alerts.log"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_an_alert_is_one_json_line_with_the_fingerprint_never_the_token(tmp_path):
    token = make_token(exp=T0 + dt.timedelta(hours=3))
    alerter = make_alerter(tmp_path, Clock(T0))
    assert alerter.alert(
        "renewal_failed", "warning", "RenewToken failed", token=token, source="renew"
    )
    (line,) = lines(tmp_path)
    assert line["severity"] == "warning"
    assert line["condition"] == "renewal_failed"
    assert line["client_id"] == "1000000001"
    assert line["fingerprint"] == token.fingerprint
    assert line["expires_at"] == token.expires_at.isoformat()
    assert line["source"] == "renew"
    text = (tmp_path / "logs" / "token_alerts.log").read_text()
    assert token.access_token not in text


def test_a_token_slipped_into_a_message_is_redacted(tmp_path):
    token = make_token(exp=T0)
    make_alerter(tmp_path, Clock(T0)).alert("x", "warning", f"oops {token.access_token}")
    assert token.access_token not in (tmp_path / "logs" / "token_alerts.log").read_text()


def test_the_same_condition_is_not_resent_within_repeat_every(tmp_path):
    clock = Clock(T0)
    alerter = make_alerter(tmp_path, clock, repeat_every=Duration(hours=4))
    assert alerter.alert("renewal_failed", "warning", "first")
    clock.now += dt.timedelta(hours=1)
    # a new run (a new Alerter) reads the state kept next to the token file
    again = make_alerter(tmp_path, clock, repeat_every=Duration(hours=4))
    assert not again.alert("renewal_failed", "warning", "second")
    assert [x["message"] for x in lines(tmp_path)] == ["first"]
    clock.now += dt.timedelta(hours=3, minutes=1)
    later = make_alerter(tmp_path, clock, repeat_every=Duration(hours=4))
    assert later.alert("renewal_failed", "warning", "third")
    assert [x["message"] for x in lines(tmp_path)] == ["first", "third"]


def test_a_rising_severity_is_sent_at_once(tmp_path):
    clock = Clock(T0)
    make_alerter(tmp_path, clock).alert("renewal_failed", "warning", "warn")
    clock.now += dt.timedelta(minutes=5)
    assert make_alerter(tmp_path, clock).alert("renewal_failed", "critical", "crit")
    clock.now += dt.timedelta(minutes=5)
    assert not make_alerter(tmp_path, clock).alert("renewal_failed", "warning", "warn again")
    assert [x["severity"] for x in lines(tmp_path)] == ["warning", "critical"]


def test_a_cleared_condition_sends_one_recovery_message(tmp_path):
    clock = Clock(T0)
    make_alerter(tmp_path, clock).alert("renewal_failed", "critical", "down")
    clock.now += dt.timedelta(hours=1)
    token = make_token(exp=T0 + dt.timedelta(hours=24))
    assert make_alerter(tmp_path, clock).resolve(token=token, source="renew") == ["renewal_failed"]
    assert make_alerter(tmp_path, clock).resolve(token=token) == []
    recovery = lines(tmp_path)[-1]
    assert recovery["severity"] == "recovery"
    assert recovery["condition"] == "renewal_failed"
    assert "has cleared" in recovery["message"] and token.fingerprint in recovery["message"]
    assert len(lines(tmp_path)) == 2


def test_clear_ends_the_conditions_with_its_prefix_even_those_raised_by_the_same_process(
    tmp_path,
):
    clock = Clock(T0)
    alerter = make_alerter(tmp_path, clock)  # a collector: one alerter for its whole life
    alerter.alert("collector-token-rejected-abc", "critical", "refused")
    alerter.alert("collector-feed-806-no-data-plan", "critical", "no plan")
    assert alerter.clear("collector-token-") == ["collector-token-rejected-abc"]
    assert alerter.clear("collector-token-") == []
    assert [(x["condition"], x["severity"]) for x in lines(tmp_path)][-1] == (
        "collector-token-rejected-abc",
        "recovery",
    )
    assert alerter.alert("collector-token-rejected-abc", "critical", "refused again")


def test_a_condition_raised_in_this_run_is_not_resolved_by_it(tmp_path):
    alerter = make_alerter(tmp_path, Clock(T0))
    alerter.alert("profile_check_failed", "warning", "profile down")
    assert alerter.resolve() == []
    assert json.loads(alert_state_path(tmp_path / "state" / "token.json").read_text())


# ---------------------------------------------------------------------------------------------
# Channels over loopback


@pytest.fixture
def recorder():
    with recording_server() as server:
        yield server


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_apprise_delivers_the_alert_to_each_url(tmp_path, recorder):
    alerter = make_alerter(tmp_path, Clock(T0), urls=[f"json://127.0.0.1:{recorder.port}/hook"])
    alerter.alert("manual_login_needed", "critical", "log in now")
    (hit,) = [h for h in recorder.hits if h.method == "POST"]
    body = json.loads(hit[2])
    assert hit[1] == "/hook"
    assert body["message"] == "log in now"
    assert body["title"] == "dhanfeed critical: manual_login_needed (client 1000000001)"
    assert body["type"] == "failure"


def test_a_failing_channel_is_a_warning_and_the_alert_line_is_still_written(tmp_path, caplog):
    alerter = make_alerter(
        tmp_path,
        Clock(T0),
        urls=[f"json://127.0.0.1:{closed_port()}/x"],
        timeout=Duration(seconds=5),
    )
    with caplog.at_level(logging.WARNING, logger="dhanfeed.alerts"):
        assert alerter.alert("renewal_failed", "warning", "still fine")
    assert len(lines(tmp_path)) == 1
    assert any("could not be delivered" in r.getMessage() for r in caplog.records)


def test_healthcheck_pings_start_success_and_fail(tmp_path, recorder):
    url = f"{recorder.url}/ping/abc"
    alerter = make_alerter(tmp_path, Clock(T0), healthcheck_url=url)
    for kind in ("start", "success", "fail"):
        alerter.healthcheck(kind)
    assert recorder.paths() == ["/ping/abc/start", "/ping/abc", "/ping/abc/fail"]


def test_a_dead_healthcheck_endpoint_is_only_a_warning(tmp_path, caplog):
    alerter = make_alerter(tmp_path, Clock(T0), healthcheck_url=f"http://127.0.0.1:{closed_port()}")
    with caplog.at_level(logging.WARNING, logger="dhanfeed.alerts"):
        alerter.healthcheck("start")
    assert any("healthcheck ping start failed" in r.getMessage() for r in caplog.records)


def test_channels_are_described_without_their_secrets(tmp_path):
    alerter = make_alerter(
        tmp_path, Clock(T0), urls=["tgram://123456:SECRETBOT/987"], healthcheck_url="https://hc/x",
        hooks=HooksSection(on_alert="true"),
    )  # fmt: skip
    text = "\n".join(alerter.channels())
    assert "tgram://..." in text and "SECRETBOT" not in text
    assert "healthcheck: configured" in text and "on_alert hook: configured" in text


# ---------------------------------------------------------------------------------------------
# Hooks


def test_the_on_alert_hook_gets_the_facts_in_its_environment_but_not_the_token(tmp_path):
    out = tmp_path / "hook.env"
    dump = f"{sys.executable} -c 'import json, os; print(json.dumps(dict(os.environ)))' > {out}"
    hooks = HooksSection(on_alert=dump, timeout=Duration(seconds=20))
    token = make_token(exp=T0 + dt.timedelta(hours=1))
    make_alerter(tmp_path, Clock(T0), hooks=hooks).alert(
        "renewal_failed", "critical", "renew failed", token=token, source="renew"
    )
    env = json.loads(out.read_text())
    assert env["DHANFEED_CLIENT_ID"] == "1000000001"
    assert env["DHANFEED_FINGERPRINT"] == token.fingerprint
    assert env["DHANFEED_EXPIRES_AT"] == token.expires_at.isoformat()
    assert env["DHANFEED_SOURCE"] == "renew"
    assert env["DHANFEED_SEVERITY"] == "critical"
    assert env["DHANFEED_MESSAGE"] == "renew failed"
    assert token.access_token not in out.read_text()


def test_the_alerts_section_defaults_are_what_the_alerter_expects():
    section = AlertsSection()
    assert dataclasses.asdict(section)["repeat_every"] == dt.timedelta(hours=4)
