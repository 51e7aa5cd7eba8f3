"""What the renewer does with Dhan's word about a token: refusals (its own profile checks and
the collector's), a token set by hand, a PIN or TOTP seed Dhan calls wrong, recoveries that
are real, and the one `--json` shape of every outcome. bin/renew_token's main() against
the simulator."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from dhanfeed.renew_state import RenewState, renew_state_path
from dhanfeed.status import STATUS_FILE
from dhanfeed.token_store import TokenStore
from support.renew import SIM_TTL, Setup, one_line, totp_by_env
from support.secret_scan import PLANTED_PIN, PLANTED_TOTP_SECRET, remember_secret
from support.token_files import file_state, make_jwt, make_token, now, write_token_file

pytestmark = pytest.mark.usefixtures("clean_environment")

NOT_DUE_S = 3600  # a token this long-lived is not due under the tests' policy (2 min)


def revoke(sim) -> None:
    """A person (or another program) generated a new token: Dhan refuses the old one now."""
    remember_secret(sim.admin("issue-token", {})["access_token"])


def recoveries(s: Setup) -> list[dict]:
    return [a for a in s.alerts() if a["severity"] == "recovery"]


def collector_refused(s: Setup, fingerprint: str, code: int = 807) -> None:
    """The status file as a collector writes it after Dhan's feed refused `fingerprint`."""
    status = {
        "state": "running",
        "token_fp": fingerprint,
        "token_refused": {"fingerprint": fingerprint, "code": code, "at": now().isoformat()},
    }
    (s.root / "state" / STATUS_FILE).write_text(json.dumps(status))


# ---------------------------------------------------------------------------------------------
# --set-token asks Dhan first


def test_set_token_writes_a_token_dhan_accepts_and_reports_it_as_set(tmp_path, run, sim):
    s = Setup(tmp_path, sim)
    token = sim.admin("issue-token", {"ttl_s": NOT_DUE_S})
    remember_secret(token["access_token"])
    r = run(*s.args("--set-token"), stdin=token["access_token"])
    assert r.code == 0, r.err
    assert one_line(r.out).startswith("renew_token: set by hand and accepted by Dhan: none -> ")
    assert TokenStore(s.token_file).read().fingerprint == token["fingerprint"]
    assert s.rest_calls("profile") == 1


def test_set_token_with_a_token_dhan_refuses_is_exit_3_and_leaves_the_file_alone(
    tmp_path, run, sim
):
    s = Setup(tmp_path, sim)
    s.issue(NOT_DUE_S)
    refused = sim.admin("issue-token", {"ttl_s": NOT_DUE_S})
    remember_secret(refused["access_token"])
    revoke(sim)  # `refused` is superseded before it is pasted
    before = file_state(s.token_file)
    r = run(*s.args("--set-token"), stdin=refused["access_token"])
    assert r.code == 3
    line = one_line(r.err)
    assert f"Dhan refused token {refused['fingerprint']}" in line and "DH-901" in line
    assert file_state(s.token_file) == before


def test_set_token_when_dhan_cannot_be_reached_is_exit_1_untouched_with_a_hint(tmp_path, run):
    s = Setup(tmp_path, timeout="0.3s")  # api_base is a closed port
    raw = make_jwt(exp=now() + dt.timedelta(hours=20))
    r = run(*s.args("--set-token"), stdin=raw)
    assert r.code == 1
    line = one_line(r.err)
    assert "could not confirm token" in line and "--no-verify" in line
    assert file_state(s.token_file) is None


# ---------------------------------------------------------------------------------------------
# A token Dhan refused is handled like an expired one


def test_check_and_dry_run_are_exit_3_for_a_token_the_collector_saw_refused(tmp_path, run, sim):
    s = Setup(tmp_path, sim)
    token = s.issue(NOT_DUE_S)
    collector_refused(s, token["fingerprint"])
    r = run(*s.args("--check"))
    assert r.code == 3
    assert f"next run: token {token['fingerprint']} was refused by Dhan" in r.out
    assert "not due" not in r.out
    assert "code 807" in r.out
    r = run(*s.args("--dry-run"))  # the dry run reads the refusal too
    assert r.code == 3
    assert "the next run would stop and ask a person to log in: token" in r.err


def test_a_token_the_collector_saw_refused_is_regenerated_at_once_with_pin_and_totp(
    tmp_path, run, start_sim, monkeypatch
):
    sim = start_sim(
        "--token-ttl", SIM_TTL, "--pin", PLANTED_PIN, "--totp-secret", PLANTED_TOTP_SECRET
    )
    s = Setup(tmp_path, sim)
    token = s.issue(NOT_DUE_S)
    collector_refused(s, token["fingerprint"])
    totp_by_env(monkeypatch, tmp_path)
    r = run(*s.args())
    assert r.code == 0, r.err
    assert one_line(r.out).startswith("renew_token: token regenerated with PIN+TOTP: ")
    record = TokenStore(s.token_file).read()
    remember_secret(record.token.access_token)
    assert record.source == "totp" and s.rest_calls("generateAccessToken") == 1
    assert run(*s.args("--check")).code == 0  # the refusal was of the old token only


def test_a_token_the_collector_saw_refused_without_pin_and_totp_raises_the_critical_alert(
    tmp_path, run, sim
):
    s = Setup(tmp_path, sim)
    token = s.issue(NOT_DUE_S)
    collector_refused(s, token["fingerprint"], code=809)
    before = file_state(s.token_file)
    r = run(*s.args())
    assert r.code == 3
    assert "was refused by Dhan (the collector's feed was refused with code 809" in one_line(r.err)
    (alert,) = s.alerts()
    assert alert["condition"] == "manual_login_needed" and alert["severity"] == "critical"
    assert file_state(s.token_file) == before
    assert s.rest_calls("RenewToken") == 0


def test_a_revoked_token_is_found_by_the_profile_check_of_a_run_that_is_not_due(tmp_path, run, sim):
    s = Setup(tmp_path, sim)
    s.issue(NOT_DUE_S)
    assert run(*s.args()).code == 0
    assert s.rest_calls("profile") == 1
    revoke(sim)
    r = run(*s.args())
    assert r.code == 0  # checked 0 s ago: confirm_every (6 h) has not passed
    assert s.rest_calls("profile") == 1
    _age_the_last_confirmation(s, dt.timedelta(hours=7))
    r = run(*s.args())
    assert r.code == 3
    assert "was refused by Dhan (profile check: profile: HTTP 401 DH-901" in one_line(r.err)
    assert s.rest_calls("profile") == 2
    assert s.alerts()[-1]["condition"] == "manual_login_needed"
    assert run(*s.args("--check")).code == 3  # --check knows it too, without asking Dhan
    assert s.rest_calls("profile") == 2


def test_confirm_every_sets_how_often_a_token_that_is_not_due_is_checked(tmp_path, run, sim):
    s = Setup(tmp_path, sim, token='renew_before = "2m"\nmust_renew_before = "30s"\n'
              'confirm_every = "8h"')  # fmt: skip
    s.issue(NOT_DUE_S)
    assert run(*s.args()).code == 0
    _age_the_last_confirmation(s, dt.timedelta(hours=7))
    assert run(*s.args()).code == 0
    assert s.rest_calls("profile") == 1
    _age_the_last_confirmation(s, dt.timedelta(hours=9))
    assert run(*s.args()).code == 0
    assert s.rest_calls("profile") == 2


def _age_the_last_confirmation(s: Setup, age: dt.timedelta) -> None:
    state = RenewState(renew_state_path(s.token_file))
    fp = TokenStore(s.token_file).read().fingerprint
    assert state.accepted(fp) is not None
    state.record_accepted(fp, now() - age, "aged by the test")


# ---------------------------------------------------------------------------------------------
# A recovery is sent only when a token Dhan accepts is in the file


def test_no_recovery_is_announced_while_the_token_in_the_file_is_refused(tmp_path, run, sim):
    s = Setup(tmp_path, sim)
    s.issue(60)  # due
    revoke(sim)
    assert run(*s.args()).code == 3  # RenewToken: 401: a person must log in
    refused = sim.admin("issue-token", {"ttl_s": NOT_DUE_S})
    remember_secret(refused["access_token"])
    revoke(sim)
    r = run(*s.args("--set-token", "--no-verify"), stdin=refused["access_token"])
    assert r.code == 0  # written as asked, but nobody knows yet whether Dhan takes it
    assert run(*s.args()).code == 3  # not due, so the profile check finds it refused
    assert recoveries(s) == []
    good = sim.admin("issue-token", {"ttl_s": NOT_DUE_S})
    remember_secret(good["access_token"])
    assert run(*s.args("--set-token"), stdin=good["access_token"]).code == 0
    assert [a["condition"] for a in recoveries(s)] == ["manual_login_needed"]


# ---------------------------------------------------------------------------------------------
# A wrong PIN or TOTP seed is not tried every hour


def test_a_wrong_pin_is_tried_once_then_not_again_until_it_changes_or_force(
    tmp_path, run, start_sim, monkeypatch
):
    sim = start_sim(
        "--token-ttl", SIM_TTL, "--pin", PLANTED_PIN, "--totp-secret", PLANTED_TOTP_SECRET
    )
    s = Setup(tmp_path, sim)
    monkeypatch.setenv("DHAN_PIN", "11112222")
    monkeypatch.setenv("DHAN_TOTP_SECRET", PLANTED_TOTP_SECRET)
    for _ in range(3):  # three hourly runs with an expired token
        r = run(*s.args())
        assert r.code == 3
        assert one_line(r.err).startswith("renew_token: PIN or TOTP seed wrong: Dhan refused them")
    assert s.rest_calls("generateAccessToken") == 1
    assert {(a["condition"], a["severity"]) for a in s.alerts()} == {
        ("credentials_wrong", "critical")
    }
    assert run(*s.args("--force")).code == 3
    assert s.rest_calls("generateAccessToken") == 2
    monkeypatch.setenv("DHAN_PIN", PLANTED_PIN)  # the person fixes the PIN
    r = run(*s.args())
    assert r.code == 0, r.err
    remember_secret(TokenStore(s.token_file).read().token.access_token)
    assert s.rest_calls("generateAccessToken") == 3
    assert [a["condition"] for a in recoveries(s)] == ["credentials_wrong"]


def test_a_server_error_during_regeneration_is_retried_by_the_next_run(
    tmp_path, run, start_sim, monkeypatch
):
    sim = start_sim(
        "--token-ttl", SIM_TTL, "--pin", PLANTED_PIN, "--totp-secret", PLANTED_TOTP_SECRET
    )
    s = Setup(tmp_path, sim, timeout="0.5s")
    totp_by_env(monkeypatch, tmp_path)
    token = s.issue(NOT_DUE_S)
    collector_refused(s, token["fingerprint"])
    sim.admin(
        "fault", {"kind": "rest", "endpoint": "generateAccessToken", "mode": "500", "count": 10}
    )
    r = run(*s.args())
    assert r.code == 1  # no usable token, but a 5xx is transient: retried, no person needed
    assert "PIN or TOTP seed wrong" not in r.err
    assert {a["condition"] for a in s.alerts()} == {"regeneration_failed"}
    calls = s.rest_calls("generateAccessToken")
    sim.admin("clear-faults", {})
    assert run(*s.args()).code == 0  # the next run tries the same PIN and seed again
    remember_secret(TokenStore(s.token_file).read().token.access_token)
    assert s.rest_calls("generateAccessToken") == calls + 1


# ---------------------------------------------------------------------------------------------
# --json: one shape for every outcome, a status word per exit code

JSON_KEYS = {
    "status", "exit_code", "reason", "action", "dry_run", "client_id", "fingerprint",
    "old_fingerprint", "source", "expires_at", "remaining_s", "due_at", "checks",
}  # fmt: skip
EXIT_OF_STATUS = {
    "ok": 0, "postponed": 0, "renewed": 0, "set": 0, "failed": 1, "usage_error": 2,
    "manual": 3, "locked": 75,
}  # fmt: skip


def _outcome(name: str, s: Setup, sim, run):  # noqa: ANN202 - one scenario per outcome
    if name == "not due":
        s.issue(NOT_DUE_S)
        return run(*s.args("--json"))
    if name == "renewed":
        s.issue(60)
        return run(*s.args("--json"))
    if name == "set":
        token = sim.admin("issue-token", {"ttl_s": NOT_DUE_S})
        remember_secret(token["access_token"])
        return run(*s.args("--set-token", "--json"), stdin=token["access_token"])
    if name == "check ok":
        s.issue(NOT_DUE_S)
        return run(*s.args("--check", "--json"))
    if name == "check refused":
        collector_refused(s, s.issue(NOT_DUE_S)["fingerprint"])
        return run(*s.args("--check", "--json"))
    if name == "check without a token file":
        return run(*s.args("--check", "--json"))
    if name == "dry run":
        s.issue(60)
        return run(*s.args("--dry-run", "--json"))
    if name == "failed":
        s.issue(60)
        sim.admin("fault", {"kind": "rest", "endpoint": "RenewToken", "mode": "html", "count": 9})
        return run(*s.args("--json"))
    if name == "manual":
        s.issue(60)
        revoke(sim)
        return run(*s.args("--json"))
    if name == "bad config":
        s.config.write_text("[dhan\n")
        return run(*s.args("--json"))
    if name == "locked":
        s.issue(60)
        with TokenStore(s.token_file).lock():
            return run(*s.args("--json"))
    raise AssertionError(name)


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("not due", "ok"),
        ("renewed", "renewed"),
        ("set", "set"),
        ("check ok", "ok"),
        ("check refused", "manual"),
        ("check without a token file", "manual"),
        ("dry run", "ok"),
        ("failed", "failed"),
        ("manual", "manual"),
        ("bad config", "usage_error"),
        ("locked", "locked"),
    ],
)
def test_every_outcome_prints_the_same_json_shape_with_a_status_for_its_exit_code(
    tmp_path, run, start_sim, name, status
):
    sim = start_sim("--token-ttl", SIM_TTL)
    s = Setup(tmp_path, sim, timeout="0.5s")
    r = _outcome(name, s, sim, run)
    out = json.loads(one_line(r.out))
    assert set(out) == JSON_KEYS
    assert (out["status"], out["exit_code"], r.code) == (status, EXIT_OF_STATUS[status], r.code)
    assert r.code == EXIT_OF_STATUS[status]
    assert out["dry_run"] is (name == "dry run")
    assert isinstance(out["reason"], str) and out["reason"]
    assert isinstance(out["checks"], list)


# The phrases issue 9 found in the output: status words glued to reasons, enum values in
# sentences, a doubled "failed", "a APP".
BROKEN_ENGLISH = re.compile(
    r"would (manual|not_due|renew|regenerate|postponed):|renewed: renewed|failed: failed|"
    r"\ba APP\b|: (ok|manual|failed|renewed|dry-run): "
)


@pytest.mark.parametrize(
    "name", ["not due", "renewed", "set", "dry run", "failed", "manual", "check refused"]
)
def test_every_outcome_reads_as_one_english_sentence(tmp_path, run, start_sim, name):
    sim = start_sim("--token-ttl", SIM_TTL)
    r = _outcome(name, Setup(tmp_path, sim, timeout="0.5s"), sim, _text(run))
    lines = (r.out + r.err).strip().splitlines()
    assert lines[-1].startswith("next run: " if name.startswith("check") else "renew_token: ")
    for line in lines:
        assert not BROKEN_ENGLISH.search(line), line


def _text(run):  # noqa: ANN001, ANN202 - the same scenario, without --json
    return lambda *args, **kw: run(*(a for a in args if a != "--json"), **kw)


def test_a_dry_run_of_an_app_token_without_pin_says_what_would_happen_in_words(tmp_path, run, sim):
    s = Setup(tmp_path, sim)
    write_token_file(s.token_file, make_token(exp=now() + dt.timedelta(seconds=60), kind="APP"))
    r = run(*s.args("--dry-run"))
    assert r.code == 3
    line = r.err.splitlines()[-1]
    assert line.startswith("renew_token: dry run, nothing changed: the next run would stop and ")
    assert "tokens of type APP cannot be renewed and no PIN+TOTP is configured" in line


def test_an_alert_url_apprise_cannot_parse_stops_renew_token_at_load_with_its_key(tmp_path, run):
    s = Setup(tmp_path, extra='urls = ["tgram://BOT_TOKEN/CHAT_ID"]')
    write_token_file(s.token_file, make_token(exp=now() + dt.timedelta(hours=20)))
    before = file_state(s.token_file)
    r = run(*s.args())
    assert r.code == 2
    assert "at 'alerts.urls[0]': Apprise cannot parse this tgram://... URL" in one_line(r.err)
    assert "BOT_TOKEN" not in r.err
    assert file_state(s.token_file) == before
