"""hooks.py: a user's shell command with the facts in its environment, never a secret; bounded
by its timeout with its whole process group; a failure is a warning, never the run's result."""

from __future__ import annotations

import json
import logging
import sys
import time

from dhanfeed.hooks import hook_environment, run_hook
from support.secret_scan import PLANTED_PIN, PLANTED_TOTP_SECRET

ENV = hook_environment(
    event="renew", client_id="1", fingerprint="f", expires_at=None, source="renew"
)


def test_a_failing_hook_is_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="dhanfeed.hooks"):
        assert not run_hook("on_renew", "echo broken >&2; exit 4", ENV, 10)
    assert any("failed with exit code 4: broken" in r.getMessage() for r in caplog.records)


def test_a_slow_hook_is_bounded_by_its_timeout(caplog):
    with caplog.at_level(logging.WARNING, logger="dhanfeed.hooks"):
        assert not run_hook("on_renew", "exec sleep 30", ENV, 0.3)
    assert any("did not finish within 0.3s" in r.getMessage() for r in caplog.records)


def test_a_hook_sees_the_facts_but_not_the_pin_the_seed_or_the_credentials_dir(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("DHAN_PIN", PLANTED_PIN)
    monkeypatch.setenv("DHAN_TOTP_SECRET", PLANTED_TOTP_SECRET)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    out = tmp_path / "env.json"
    dump = f"{sys.executable} -c 'import json, os; print(json.dumps(dict(os.environ)))' > {out}"
    assert run_hook("on_renew", dump, ENV, 20)
    seen = json.loads(out.read_text())
    assert seen["DHANFEED_EVENT"] == "renew" and seen["DHANFEED_FINGERPRINT"] == "f"
    assert not {"DHAN_PIN", "DHAN_TOTP_SECRET", "CREDENTIALS_DIRECTORY"} & set(seen)
    assert PLANTED_PIN not in out.read_text()


def test_a_timed_out_hook_leaves_no_child_behind(tmp_path):
    marker = tmp_path / "late"
    assert not run_hook("on_renew", f"(sleep 1; touch {marker}) & wait", ENV, 0.3)
    time.sleep(1.5)  # past the moment the child would have written
    assert not marker.exists()  # the background child was killed with its group


def test_an_empty_hook_is_nothing_to_run():
    assert run_hook("on_alert", "  ", ENV, 1)
