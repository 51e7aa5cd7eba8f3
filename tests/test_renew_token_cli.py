"""bin/renew_token's main(): every bad input and every REST fault of the simulator gives one
line, the right exit code, the token file untouched and an alert line."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from dhanfeed.dhan_api import IssuedToken
from dhanfeed.renew_recovery import raw_answer
from dhanfeed.renew_state import renew_state_path
from dhanfeed.token_store import TokenRecord, TokenStore
from support.recording_http import Hit, recording_server
from support.renew import POLICY, SIM_TTL, Setup, one_line, totp_by_env, write_config
from support.secret_scan import PLANTED_PIN, PLANTED_TOTP_SECRET, remember_secret
from support.token_files import CLIENT_ID, file_state, make_jwt, make_token, now, write_token_file

pytestmark = pytest.mark.usefixtures("clean_environment")


def test_a_missing_config_is_exit_2_in_one_line(tmp_path, run):
    r = run("--config", str(tmp_path / "nope.toml"))
    assert r.code == 2
    assert "file not found" in r.err and "Traceback" not in r.err


def test_a_config_that_is_not_toml_is_exit_2(tmp_path, run):
    path = tmp_path / "config.toml"
    path.write_text("[dhan\nclient_id = 1")
    r = run("--config", str(path))
    assert r.code == 2
    assert "not valid TOML" in r.err and "Traceback" not in r.err


def test_an_unknown_flag_is_exit_2_in_one_line(run):
    r = run("--renew-now")
    assert r.code == 2
    assert one_line(r.err).startswith("renew_token: unrecognized arguments: --renew-now")


def test_check_and_force_together_are_refused(tmp_path, run):
    r = run("--config", str(write_config(tmp_path)), "--check", "--force")
    assert r.code == 2
    assert "cannot be combined" in one_line(r.err)


def _corrupt(path: Path) -> None:
    path.write_text('{"client_id": "1000000001", "access_tok')


def _open_to_group(path: Path) -> None:
    os.chmod(path, 0o640)


def _symlink(path: Path) -> None:
    real = path.with_name("real.json")
    os.replace(path, real)
    os.symlink(real, path)


def _other_client(path: Path) -> None:
    token = make_token(exp=now() + dt.timedelta(hours=20), client_id="2000000002")
    TokenStore(path).write(TokenRecord.from_token(token, "manual", now()))


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (_corrupt, "is not valid JSON (corrupt?)"),
        (
            _open_to_group,
            "is accessible by group or others (mode 0640); refusing it; run: chmod 600",
        ),
        (_symlink, "is a symlink; refusing it"),
        (_other_client, "is for client 2000000002, the config says 1000000001"),
    ],
)
def test_an_unusable_token_file_is_exit_3_untouched_with_a_critical_alert(
    tmp_path, run, spoil, message
):
    s = Setup(tmp_path)
    write_token_file(s.token_file, make_token(exp=now() + dt.timedelta(seconds=50)))  # due
    spoil(s.token_file)
    before = file_state(s.token_file)
    r = run(*s.args())
    assert r.code == 3
    assert message in one_line(r.err)
    assert file_state(s.token_file) == before
    (alert,) = s.alerts()
    assert alert["severity"] == "critical" and alert["condition"] == "token_file_unusable"


def test_a_missing_token_file_without_totp_is_exit_3_with_a_runbook_alert(tmp_path, run):
    s = Setup(tmp_path)
    r = run(*s.args())
    assert r.code == 3
    assert one_line(r.err).endswith(
        "no token file, and no PIN+TOTP is configured: a person must log in"
        " (make a token on web.dhan.co, then: bin/renew_token --set-token)"
    )
    assert not s.token_file.exists()
    (alert,) = s.alerts()
    assert alert["condition"] == "manual_login_needed" and alert["severity"] == "critical"
    assert "--set-token" in alert["message"] and "market data has stopped" in alert["message"]


def test_a_totp_secret_file_readable_by_others_is_refused(tmp_path, run):
    pin, secret = tmp_path / "pin", tmp_path / "seed"
    pin.write_text(PLANTED_PIN)
    secret.write_text(PLANTED_TOTP_SECRET)
    os.chmod(pin, 0o600)
    os.chmod(secret, 0o644)
    s = Setup(tmp_path, extra=f'\n[totp]\npin_file = "{pin}"\nsecret_file = "{secret}"')
    write_token_file(s.token_file, make_token(exp=now() + dt.timedelta(hours=20)))
    r = run(*s.args())
    assert r.code == 2
    assert f"[totp] secret_file {secret} is accessible by group or others" in one_line(r.err)
    assert PLANTED_TOTP_SECRET not in r.err


def test_an_expected_error_shows_a_traceback_only_with_debug(tmp_path, run):
    s = Setup(tmp_path)
    write_token_file(s.token_file, make_token(exp=now() + dt.timedelta(hours=20)))
    _corrupt(s.token_file)
    assert "Traceback" not in run(*s.args()).err
    assert "Traceback" in run(*s.args("--debug")).err


# ---------------------------------------------------------------------------------------------
# REST faults of the simulator


@pytest.mark.parametrize(
    ("endpoint", "mode", "message"),
    [
        ("RenewToken", "500", "RenewToken failed: RenewToken: HTTP 500 DH-908"),
        ("RenewToken", "html", "RenewToken: HTTP 502 from Dhan (an HTML page)"),
        ("RenewToken", "hang", "RenewToken: no answer from"),
        ("RenewToken", "malformed", "RenewToken: answer is not JSON (malformed JSON, HTTP 200)"),
        ("RenewToken", "no_token", "RenewToken: answer has no 'token' or 'accessToken'"),
        ("*", "500", "RenewToken: HTTP 500 DH-908"),
    ],
)
def test_every_rest_fault_is_exit_1_with_the_old_token_intact_and_an_alert(
    tmp_path, run, start_sim, endpoint, mode, message
):
    sim = start_sim("--token-ttl", SIM_TTL)
    s = Setup(tmp_path, sim, timeout="0.5s")
    old = s.issue(60)
    before = file_state(s.token_file)
    sim.admin("fault", {"kind": "rest", "endpoint": endpoint, "mode": mode, "count": 10})
    r = run(*s.args())
    assert r.code == 1
    line = one_line(r.err)
    assert message in line
    assert f"the current token {old['fingerprint']} stays valid" in line
    assert line.endswith("the next run retries")
    assert file_state(s.token_file) == before
    assert sim.admin("stats")["current_token_fp"] == old["fingerprint"]
    (alert,) = s.alerts()
    assert alert["condition"] == "renewal_failed"
    assert alert["severity"] == "warning"  # 60 s left > must_renew_before (30 s)
    assert alert["fingerprint"] == old["fingerprint"]


def test_an_unreachable_server_is_exit_1(tmp_path, run):
    s = Setup(tmp_path, api_base="http://127.0.0.1:9")
    write_token_file(s.token_file, make_token(exp=now() + dt.timedelta(seconds=90)))
    before = file_state(s.token_file)
    r = run(*s.args())
    assert r.code == 1
    assert "RenewToken: cannot reach http://127.0.0.1:9 (connection failed)" in one_line(r.err)
    assert file_state(s.token_file) == before
    assert s.alerts()[0]["condition"] == "renewal_failed"


def test_an_answer_without_a_token_is_exit_1(tmp_path, run):
    with recording_server(answer=lambda hit: (200, b'{"status": "success"}')) as dhan:
        s = Setup(tmp_path, api_base=dhan.url)
        write_token_file(s.token_file, make_token(exp=now() + dt.timedelta(seconds=90)))
        before = file_state(s.token_file)
        r = run(*s.args())
    assert r.code == 1
    assert "RenewToken: answer has no 'token' or 'accessToken' (keys: status)" in one_line(r.err)
    assert file_state(s.token_file) == before
    assert len(s.alerts()) == 1


def echo_the_pin(hit: Hit) -> tuple[int, bytes]:
    """A Dhan that repeats the PIN and TOTP code it was sent in its error message."""
    query = parse_qs(urlsplit(hit.path).query)
    message = f"Invalid Pin {query['pin'][0]} or TOTP {query['totp'][0]}"
    return 400, json.dumps({"errorCode": "DH-905", "errorMessage": message}).encode()


def test_a_pin_that_dhan_echoes_in_its_error_reaches_no_line_alert_log_or_state(
    tmp_path, run, monkeypatch
):
    totp_by_env(monkeypatch, tmp_path)
    with recording_server(answer=echo_the_pin) as dhan:
        s = Setup(tmp_path, api_base=dhan.url)
        r = run(*s.args())
    state = renew_state_path(s.token_file).read_text()
    assert "Invalid Pin [REDACTED] or TOTP [REDACTED]" in state  # Dhan's refusal, recorded
    assert [a["condition"] for a in s.alerts()] == ["credentials_wrong"]
    written = [p.read_text() for p in (tmp_path / "logs").iterdir()] + [state, r.out, r.err]
    assert not [text for text in written if re.search(rf"(?<!\d){PLANTED_PIN}(?!\d)", text)]


def test_a_failure_close_to_expiry_is_critical(tmp_path, run, start_sim):
    sim = start_sim("--token-ttl", SIM_TTL)
    s = Setup(tmp_path, sim)
    s.issue(20)  # under must_renew_before (30 s)
    sim.admin("fault", {"kind": "rest", "endpoint": "RenewToken", "mode": "500", "count": 10})
    assert run(*s.args()).code == 1
    assert s.alerts()[0]["severity"] == "critical"


def test_a_recovery_message_follows_a_cleared_failure(tmp_path, run, start_sim):
    sim = start_sim("--token-ttl", SIM_TTL)
    s = Setup(tmp_path, sim)
    s.issue(60)
    sim.admin("fault", {"kind": "rest", "endpoint": "RenewToken", "mode": "500", "count": 3})
    assert run(*s.args()).code == 1
    r = run(*s.args())
    assert r.code == 0
    assert [(a["condition"], a["severity"]) for a in s.alerts()] == [
        ("renewal_failed", "warning"),
        ("renewal_failed", "recovery"),
    ]
    assert run(*s.args()).code == 0
    assert len(s.alerts()) == 2  # nothing more to recover from


# ---------------------------------------------------------------------------------------------
# Renewal and regeneration against the simulator


def test_hooks_never_see_the_pin_or_the_totp_seed(tmp_path, run, start_sim, monkeypatch):
    monkeypatch.setenv("DHAN_PIN", PLANTED_PIN)
    monkeypatch.setenv("DHAN_TOTP_SECRET", PLANTED_TOTP_SECRET)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))
    sim = start_sim("--token-ttl", SIM_TTL)
    hook_out = tmp_path / "hook.json"
    hook = (
        f"{sys.executable} -c 'import json, os; print(json.dumps(dict(os.environ)))' > {hook_out}"
    )
    s = Setup(tmp_path, sim, extra=f'\n[hooks]\non_renew = "{hook}"')
    s.issue(60)
    assert run(*s.args()).code == 0
    env = json.loads(hook_out.read_text())
    assert env["DHANFEED_CLIENT_ID"] == CLIENT_ID  # the hook ran, with our variables
    assert not {"DHAN_PIN", "DHAN_TOTP_SECRET", "CREDENTIALS_DIRECTORY"} & set(env)
    assert PLANTED_PIN not in hook_out.read_text()


def test_once_dhan_has_issued_a_token_the_run_timeout_no_longer_stops_the_run(
    tmp_path, run, start_sim
):
    sim = start_sim("--token-ttl", SIM_TTL)
    policy = POLICY.replace('run_timeout = "60s"', 'run_timeout = "2s"')
    hook = f"{sys.executable} -c 'import time; time.sleep(3)'"  # outlasts run_timeout
    s = Setup(tmp_path, sim, token=policy, extra=f'\n[hooks]\non_renew = "{hook}"')
    old = s.issue(60)
    r = run(*s.args())
    assert r.code == 0, r.err
    record = TokenStore(s.token_file).read()
    remember_secret(record.token.access_token)
    assert record.fingerprint == sim.admin("stats")["current_token_fp"] != old["fingerprint"]


@pytest.mark.parametrize("field", ["token", "accessToken"])
def test_a_due_token_is_renewed_written_confirmed_and_announced(tmp_path, run, start_sim, field):
    sim = start_sim("--token-ttl", SIM_TTL, "--renew-field", field)
    hook_out = tmp_path / "hook.json"
    hook = (
        f"{sys.executable} -c 'import json, os; print(json.dumps(dict(os.environ)))' > {hook_out}"
    )
    s = Setup(tmp_path, sim, extra=f'\n[hooks]\non_renew = "{hook}"')
    old = s.issue(60)
    r = run(*s.args())
    assert r.code == 0, r.err
    record = TokenStore(s.token_file).read()
    remember_secret(record.token.access_token)
    assert record.source == "renew"
    assert record.fingerprint == sim.admin("stats")["current_token_fp"] != old["fingerprint"]
    assert os.stat(s.token_file).st_mode & 0o777 == 0o600
    assert s.rest_calls("RenewToken") == 1 and s.rest_calls("profile") == 1
    assert one_line(r.out).startswith(
        f"renew_token: token renewed with RenewToken: {old['fingerprint']} -> {record.fingerprint}"
    )
    env = json.loads(hook_out.read_text())
    assert env["DHANFEED_FINGERPRINT"] == record.fingerprint
    assert env["DHANFEED_SOURCE"] == "renew"
    assert record.token.access_token not in hook_out.read_text()
    metrics = prom_values(tmp_path / "state" / f"renew_token-{CLIENT_ID}.prom")
    assert metrics["dhanfeed_renew_last_exit_code"] == 0
    assert metrics["dhanfeed_token_expiry_timestamp_seconds"] == record.token.expires_at.timestamp()
    assert abs(metrics["dhanfeed_renew_last_success_timestamp_seconds"] - time.time()) < 60
    log = (tmp_path / "logs" / "renew_token.log").read_text()
    assert "decision: renew: due: less than renew_before" in log
    assert s.alerts() == []


def prom_values(path: Path) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    families = text_string_to_metric_families(path.read_text())
    return {
        s.name: s.value for f in families for s in f.samples if s.labels == {"client_id": CLIENT_ID}
    }


def test_a_failed_run_records_its_exit_code_and_keeps_the_last_success(tmp_path, run, start_sim):
    sim = start_sim("--token-ttl", SIM_TTL)
    s = Setup(tmp_path, sim)
    s.issue(3600)
    assert run(*s.args()).code == 0
    first = prom_values(tmp_path / "state" / f"renew_token-{CLIENT_ID}.prom")
    sim.admin("fault", {"kind": "rest", "endpoint": "RenewToken", "mode": "500", "count": 10})
    assert run(*s.args("--force")).code == 1
    after = prom_values(tmp_path / "state" / f"renew_token-{CLIENT_ID}.prom")
    assert after["dhanfeed_renew_last_exit_code"] == 1
    assert (
        after["dhanfeed_renew_last_success_timestamp_seconds"]
        == (first["dhanfeed_renew_last_success_timestamp_seconds"])
    )


def test_a_second_run_right_after_a_renewal_is_not_due(tmp_path, run, start_sim):
    sim = start_sim("--token-ttl", SIM_TTL)
    s = Setup(tmp_path, sim)
    s.issue(60)
    assert run(*s.args()).code == 0
    r = run(*s.args("--json"))
    assert r.code == 0
    assert r.json["status"] == "ok" and r.json["action"] == "not_due"
    assert s.rest_calls("RenewToken") == 1


def totp_by_files(monkeypatch, tmp_path) -> str:
    pin, secret = tmp_path / "pin", tmp_path / "seed"
    pin.write_text(PLANTED_PIN + "\n")
    secret.write_text(PLANTED_TOTP_SECRET + "\n")
    os.chmod(pin, 0o600)
    os.chmod(secret, 0o400)
    return f'\n[totp]\npin_file = "{pin}"\nsecret_file = "{secret}"'


def totp_by_systemd(monkeypatch, tmp_path) -> str:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "dhan_pin").write_text(PLANTED_PIN)
    (creds / "dhan_totp_secret").write_text(PLANTED_TOTP_SECRET)
    for f in creds.iterdir():
        os.chmod(f, 0o400)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    return ""


@pytest.mark.parametrize("configure", [totp_by_env, totp_by_files, totp_by_systemd])
def test_an_expired_token_is_regenerated_with_pin_and_totp(
    tmp_path, run, start_sim, monkeypatch, configure
):
    sim = start_sim(
        "--token-ttl", SIM_TTL, "--pin", PLANTED_PIN, "--totp-secret", PLANTED_TOTP_SECRET
    )
    s = Setup(tmp_path, sim, extra=configure(monkeypatch, tmp_path))
    write_token_file(s.token_file, make_token(exp=now() - dt.timedelta(minutes=5)))
    r = run(*s.args())
    assert r.code == 0, r.err
    record = TokenStore(s.token_file).read()
    remember_secret(record.token.access_token)
    assert record.source == "totp" and record.token.consumer_type == "APP"
    assert s.rest_calls("generateAccessToken") == 1 and s.rest_calls("RenewToken") == 0
    assert PLANTED_PIN not in r.out + r.err


def test_an_expired_token_without_totp_is_exit_3_with_a_critical_runbook(tmp_path, run, start_sim):
    sim = start_sim("--token-ttl", SIM_TTL)
    s = Setup(tmp_path, sim)
    write_token_file(s.token_file, make_token(exp=now() - dt.timedelta(minutes=5)))
    before = file_state(s.token_file)
    r = run(*s.args())
    assert r.code == 3
    assert "expired at" in one_line(r.err) and "a person must log in" in r.err
    assert file_state(s.token_file) == before
    (alert,) = s.alerts()
    assert alert["severity"] == "critical" and alert["condition"] == "manual_login_needed"
    assert "MANUAL LOGIN NEEDED" in alert["message"] and "--set-token" in alert["message"]
    assert s.rest_calls("RenewToken") == 0


def test_a_token_refused_by_dhan_is_regenerated_when_totp_is_configured(
    tmp_path, run, start_sim, monkeypatch
):
    sim = start_sim(
        "--token-ttl", SIM_TTL, "--pin", PLANTED_PIN, "--totp-secret", PLANTED_TOTP_SECRET
    )
    s = Setup(tmp_path, sim)
    s.issue(60)
    remember_secret(sim.admin("issue-token", {})["access_token"])  # supersedes the file's token
    totp_by_env(monkeypatch, tmp_path)
    r = run(*s.args())
    assert r.code == 0, r.err
    assert TokenStore(s.token_file).read().source == "totp"
    assert s.rest_calls("RenewToken") == 1 and s.rest_calls("generateAccessToken") == 1


def test_a_token_refused_by_dhan_without_totp_needs_a_person(tmp_path, run, start_sim):
    sim = start_sim("--token-ttl", SIM_TTL)
    s = Setup(tmp_path, sim)
    s.issue(60)
    remember_secret(sim.admin("issue-token", {})["access_token"])
    before = file_state(s.token_file)
    r = run(*s.args())
    assert r.code == 3
    assert "RenewToken failed: RenewToken: HTTP 401 DH-901" in one_line(r.err)
    assert file_state(s.token_file) == before
    assert s.alerts()[0]["severity"] == "critical"


@pytest.mark.parametrize("mode", ["500", "html", "malformed", "no_token", "hang"])
def test_a_transient_regeneration_failure_is_exit_1_and_the_next_run_regenerates(
    tmp_path, run, start_sim, monkeypatch, mode
):
    sim = start_sim(
        "--token-ttl", SIM_TTL, "--pin", PLANTED_PIN, "--totp-secret", PLANTED_TOTP_SECRET
    )
    s = Setup(tmp_path, sim, timeout="0.5s")
    totp_by_env(monkeypatch, tmp_path)
    write_token_file(s.token_file, make_token(exp=now() - dt.timedelta(minutes=5)))
    before = file_state(s.token_file)
    sim.admin(
        "fault", {"kind": "rest", "endpoint": "generateAccessToken", "mode": mode, "count": 3}
    )
    r = run(*s.args())
    assert r.code == 1
    line = one_line(r.err)
    assert "PIN+TOTP regeneration failed: generateAccessToken:" in line
    assert "the next run tries PIN+TOTP again" in line and "a person must" not in line
    assert file_state(s.token_file) == before
    assert s.alerts()[0]["severity"] == "critical"
    sim.admin("clear-faults", {})
    r = run(*s.args())
    assert r.code == 0, r.err
    assert TokenStore(s.token_file).read().fingerprint == sim.admin("stats")["current_token_fp"]


def test_a_failing_profile_check_after_renewal_is_a_warning_only(tmp_path, run, start_sim):
    sim = start_sim("--token-ttl", SIM_TTL)
    s = Setup(tmp_path, sim, timeout="0.5s")
    old = s.issue(60)
    sim.admin("fault", {"kind": "rest", "endpoint": "profile", "mode": "500", "count": 10})
    r = run(*s.args())
    assert r.code == 0
    assert TokenStore(s.token_file).read().fingerprint != old["fingerprint"]
    (alert,) = s.alerts()
    assert alert["condition"] == "profile_check_failed" and alert["severity"] == "warning"


# ---------------------------------------------------------------------------------------------
# --check, --dry-run, --force, --set-token, --json


def test_check_reports_a_valid_token_and_what_the_next_run_would_do(tmp_path, run, start_sim):
    sim = start_sim("--token-ttl", SIM_TTL)
    s = Setup(tmp_path, sim)
    token = s.issue(300)
    r = run(*s.args("--check"))
    assert r.code == 0
    lines = r.out.splitlines()
    assert lines[0] == f"client {CLIENT_ID}, token {token['fingerprint']} (source manual)"
    assert re.match(r"expires .* IST \(in [34]m \d\ds\)$", lines[1]), lines[1]
    assert lines[2].startswith("next run: not due: ")
    assert s.rest_calls("RenewToken") == 0 and s.rest_calls("profile") == 0
    j = run(*s.args("--check", "--json")).json
    assert j["status"] == "ok" and j["fingerprint"] == token["fingerprint"]
    assert j["action"] == "not_due" and j["exit_code"] == 0


@pytest.mark.parametrize("state", ["missing", "expired", "corrupt"])
def test_check_is_exit_3_for_a_missing_expired_or_unreadable_token(tmp_path, run, state):
    s = Setup(tmp_path)
    if state != "missing":
        write_token_file(s.token_file, make_token(exp=now() - dt.timedelta(minutes=1)))
    if state == "corrupt":
        _corrupt(s.token_file)
    r = run(*s.args("--check"))
    assert r.code == 3
    assert not s.alerts()


def test_dry_run_checks_everything_and_changes_nothing(tmp_path, run, start_sim):
    sim = start_sim("--token-ttl", SIM_TTL)
    s = Setup(tmp_path, sim)
    token = s.issue(60)  # due
    before = file_state(s.token_file)
    r = run(*s.args("--dry-run"))
    assert r.code == 0
    assert (
        "dry run, nothing changed: the next run would renew the token with RenewToken: due" in r.out
    )
    assert "profile check of the current token: ok" in r.out
    assert "no alert channel besides the log file" in r.out
    assert file_state(s.token_file) == before
    assert s.rest_calls("RenewToken") == 0 and s.rest_calls("profile") == 1
    assert sim.admin("stats")["current_token_fp"] == token["fingerprint"]
    assert not list((tmp_path / "state").glob("*.prom"))


def test_force_renews_a_token_that_is_not_due(tmp_path, run, start_sim):
    sim = start_sim("--token-ttl", SIM_TTL)
    s = Setup(tmp_path, sim)
    old = s.issue(3600)
    assert run(*s.args()).code == 0
    assert s.rest_calls("RenewToken") == 0
    r = run(*s.args("--force", "--json"))
    assert r.code == 0
    assert r.json["status"] == "renewed" and r.json["action"] == "renew"
    assert r.json["fingerprint"] == sim.admin("stats")["current_token_fp"] != old["fingerprint"]
    assert set(r.json) >= {"status", "action", "reason", "expires_at", "fingerprint", "exit_code"}


def test_set_token_with_no_verify_installs_a_hand_made_token_as_manual(tmp_path, run):
    s = Setup(tmp_path)  # no Dhan to ask: --no-verify does not ask
    raw = make_jwt(exp=now() + dt.timedelta(hours=20))
    r = run(*s.args("--set-token", "--no-verify"), stdin=raw + "\n")
    assert r.code == 0, r.err
    assert one_line(r.out).startswith("renew_token: set by hand without asking Dhan (--no-verify)")
    record = TokenStore(s.token_file).read()
    assert record.source == "manual" and record.token.access_token == raw
    assert raw not in r.out + r.err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no token on stdin"),
        ("not-a-token", "not a Dhan token: not a JWT"),
        (None, "the token is for client 2000000002, the config says 1000000001"),
        ("expired", "expired at"),
    ],
)
def test_set_token_refuses_bad_tokens_with_exit_2(tmp_path, run, text, message):
    s = Setup(tmp_path)
    write_token_file(s.token_file, make_token(exp=now() + dt.timedelta(hours=3)))
    before = file_state(s.token_file)
    if text is None:
        text = make_jwt(exp=now() + dt.timedelta(hours=20), client_id="2000000002")
    elif text == "expired":
        text = make_jwt(exp=now() - dt.timedelta(hours=1))
    r = run(*s.args("--set-token"), stdin=text)
    assert r.code == 2
    assert message in one_line(r.err)
    assert file_state(s.token_file) == before


# ---------------------------------------------------------------------------------------------
# The worst case: Dhan issued a new token, and it cannot be written


def test_a_recovery_file_left_by_a_failed_write_is_installed_by_the_next_run(tmp_path, run):
    s = Setup(tmp_path)
    write_token_file(s.token_file, make_token(exp=now() + dt.timedelta(minutes=5)))
    newer = make_token(exp=now() + dt.timedelta(hours=23))
    TokenStore(s.token_file).write_recovery(TokenRecord.from_token(newer, "renew", now()))
    r = run(*s.args())
    assert r.code == 0, r.err
    assert TokenStore(s.token_file).read().fingerprint == newer.fingerprint
    assert not TokenStore(s.token_file).recovery_path.exists()
    assert "installed token" in (tmp_path / "logs" / "renew_token.log").read_text()


# ---------------------------------------------------------------------------------------------
# A token Dhan has issued is never lost


def test_a_recovery_file_whose_token_expires_in_the_same_second_is_still_installed(tmp_path, run):
    s = Setup(tmp_path)
    exp = now() + dt.timedelta(minutes=5)
    write_token_file(s.token_file, make_token(exp=exp))
    newer = make_token(exp=exp)  # same exp and iat, another token: Dhan's answer to a renewal
    TokenStore(s.token_file).write_recovery(TokenRecord.from_token(newer, "renew", now()))
    r = run(*s.args("--dry-run"))  # a dry run never installs
    assert TokenStore(s.token_file).recovery_path.exists()
    r = run(*s.args())
    assert TokenStore(s.token_file).read().fingerprint == newer.fingerprint, r.err


def test_a_token_left_in_a_temp_file_by_a_failed_rename_is_installed_by_the_next_run(tmp_path, run):
    s = Setup(tmp_path)
    write_token_file(s.token_file, make_token(exp=now() + dt.timedelta(minutes=5)))
    newer = TokenRecord.from_token(make_token(exp=now() + dt.timedelta(hours=23)), "renew", now())
    store = TokenStore(s.token_file)
    slot = store.reserve()
    slot.fill(json.dumps(newer.to_json()).encode())
    slot._close()  # the run died before the rename
    r = run(*s.args())
    assert r.code == 0, r.err
    assert store.read().fingerprint == newer.fingerprint
    assert not [p for p in os.listdir(s.token_file.parent) if p.endswith(".tmp")]


@pytest.mark.parametrize("mode", ["bad_exp", "expiry_0001"])
def test_an_odd_but_usable_answer_becomes_the_token_file(tmp_path, run, start_sim, mode):
    sim = start_sim("--token-ttl", SIM_TTL)
    s = Setup(tmp_path, sim)
    s.issue(60)
    sim.admin("fault", {"kind": "rest", "endpoint": "RenewToken", "mode": mode})
    r = run(*s.args())
    assert r.code == 0, r.err
    record = TokenStore(s.token_file).read()
    assert record.fingerprint == sim.admin("stats")["current_token_fp"]
    assert dt.timedelta(minutes=9) < record.token.expires_at - now() < dt.timedelta(minutes=11)
    remember_secret(record.token.access_token)
    r = run(*s.args())
    assert r.code == 0 and "not due" in r.out  # the next run reads it back


@pytest.mark.parametrize(
    ("mode", "problem"),
    [("other_client", "is for client 2000000002, not 1000000001"), ("expired", "already expired")],
)
def test_a_rejected_answer_is_kept_and_the_next_run_acts_on_what_dhan_says(
    tmp_path, run, start_sim, monkeypatch, mode, problem
):
    sim = start_sim(
        "--token-ttl", SIM_TTL, "--pin", PLANTED_PIN, "--totp-secret", PLANTED_TOTP_SECRET
    )
    s = Setup(tmp_path, sim)
    old = s.issue(60)
    before = file_state(s.token_file)
    sim.admin("fault", {"kind": "rest", "endpoint": "RenewToken", "mode": mode})
    r = run(*s.args())
    assert r.code == 3  # no PIN+TOTP: a person must look
    line = one_line(r.err)
    assert problem in line and "stays valid" not in line
    assert f"by issuing it Dhan has invalidated the current token {old['fingerprint']}" in line
    assert file_state(s.token_file) == before
    kept = json.loads(TokenStore(s.token_file).recovery_path.read_text())
    assert kept["fingerprint"] == sim.admin("stats")["current_token_fp"] != old["fingerprint"]
    remember_secret(kept["access_token"])
    assert os.stat(TokenStore(s.token_file).recovery_path).st_mode & 0o777 == 0o600
    assert s.alerts()[0]["condition"] == "answer_rejected"

    r = run(*s.args())  # the old token is dead, whatever its expiry says: no "ok: not due"
    assert r.code == 3
    assert f"Dhan issued token {kept['fingerprint']} in its place" in one_line(r.err)

    totp_by_env(monkeypatch, tmp_path)
    r = run(*s.args())  # with PIN+TOTP the next run regenerates
    assert r.code == 0, r.err
    assert TokenStore(s.token_file).read().fingerprint == sim.admin("stats")["current_token_fp"]
    assert not TokenStore(s.token_file).recovery_path.exists()


def test_a_corrupt_token_file_is_regenerated_when_pin_and_totp_are_configured(
    tmp_path, run, start_sim, monkeypatch
):
    sim = start_sim(
        "--token-ttl", SIM_TTL, "--pin", PLANTED_PIN, "--totp-secret", PLANTED_TOTP_SECRET
    )
    s = Setup(tmp_path, sim)
    totp_by_env(monkeypatch, tmp_path)
    s.issue(60)
    _corrupt(s.token_file)
    r = run(*s.args())
    assert r.code == 0, r.err
    assert TokenStore(s.token_file).read().fingerprint == sim.admin("stats")["current_token_fp"]
    assert "token_file_corrupt" in [a["condition"] for a in s.alerts()]


# ---------------------------------------------------------------------------------------------
# The renewer keeps renewing when something else is wrong


def test_a_problem_in_the_collector_section_is_a_warning_and_renewal_goes_on(
    tmp_path, run, start_sim
):
    sim = start_sim("--token-ttl", SIM_TTL)
    s = Setup(tmp_path, sim, extra='\n[collector]\ninstruments = ["XX_EQ:1"]\nintervals = []')
    old = s.issue(60)
    r = run(*s.args())
    assert r.code == 0, r.err
    assert TokenStore(s.token_file).read().fingerprint != old["fingerprint"]
    (warning,) = [a for a in s.alerts() if a["condition"] == "config_warning"]
    assert "at 'collector.instruments[0]': unknown segment 'XX_EQ'" in warning["message"]
    assert "at 'collector.intervals'" in warning["message"]


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_a_log_directory_that_cannot_be_written_does_not_stop_renewal(
    tmp_path, run, start_sim, where
):
    sim = start_sim("--token-ttl", SIM_TTL)
    s = Setup(tmp_path, sim, extra="")
    old = s.issue(60)
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    (logs / "token_alerts.log").touch()
    shutil.rmtree(logs)
    if where == "a file":
        logs.write_text("not a directory")
    else:
        (tmp_path / "elsewhere").write_text("a file")
        s.config.write_text(s.config.read_text().replace('dir = "logs"', 'dir = "elsewhere/logs"'))
    r = run(*s.args())
    assert r.code == 0, r.err
    assert "Traceback" not in r.err
    assert r.err.splitlines()[0].startswith("renew_token: cannot write logs in ")
    assert "logging to stderr and renewing anyway" in r.err.splitlines()[0]
    assert TokenStore(s.token_file).read().fingerprint != old["fingerprint"]


def test_an_answer_saved_before_its_checks_by_a_run_that_then_died_is_installed_by_the_next(
    tmp_path, run
):
    s = Setup(tmp_path)
    write_token_file(s.token_file, make_token(exp=now() + dt.timedelta(minutes=5)))
    raw = make_jwt(exp=now() + dt.timedelta(hours=23))
    store = TokenStore(s.token_file)
    slot = store.reserve()
    slot.fill(raw_answer(IssuedToken(raw, None), CLIENT_ID, "renew", now()))
    slot._close()  # killed here: no check, no rename
    r = run(*s.args())
    assert r.code == 0, r.err
    assert store.read().token.access_token == raw
