"""Every way out of a renew_token run reports: healthchecks gets /fail (never stuck at /start)
and an alert says why, for a run timeout and for Ctrl-C as for any failure; the run timeout
waits for a write or a lock release under way (dhanfeed.shield)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from dhanfeed.shield import interrupt, shielded
from dhanfeed.token_store import TokenStore
from support.polling import wait_until
from support.recording_http import RecordingServer, recording_server
from support.renew import POLICY, SIM_TTL, Setup
from support.token_files import file_state

pytestmark = pytest.mark.usefixtures("clean_environment")


@pytest.fixture
def healthchecks():
    """A healthchecks.io stand-in on loopback."""
    with recording_server() as server:
        yield server


def setup_with_monitoring(
    tmp_path, sim, hc: RecordingServer, *, token=POLICY, hooks="", timeout="1s"
):
    extra = f'\nhealthcheck_url = "{hc.url}/hc"\n{hooks}'  # appended to [alerts]
    return Setup(tmp_path, sim, token=token, extra=extra, timeout=timeout)


def test_ctrl_c_during_a_renewal_pings_fail_alerts_and_leaves_token_and_lock_free(
    tmp_path, run, start_sim, healthchecks
):
    sim = start_sim("--token-ttl", SIM_TTL)
    # A long HTTP timeout: the hanging call must still be waiting when Ctrl-C comes, however
    # late a loaded machine schedules the thread that presses it.
    s = setup_with_monitoring(tmp_path, sim, healthchecks, timeout="30s")
    s.issue(60)
    before = file_state(s.token_file)
    sim.admin("fault", {"kind": "rest", "endpoint": "RenewToken", "mode": "hang", "count": 9})

    def press_ctrl_c_once_dhan_is_asked() -> None:
        wait_until("the RenewToken call", lambda: s.rest_calls("RenewToken") >= 1)
        # At the main thread, as a terminal's Ctrl-C reaches a one-thread renew_token: a SIGINT
        # sent to the whole process may be taken by this thread, and the main thread, blocked
        # in the socket read, would not be woken before the hang's 504.
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    threading.Thread(target=press_ctrl_c_once_dhan_is_asked, daemon=True).start()
    r = run(*s.args())
    assert r.code == 1 and "interrupted" in r.err
    assert healthchecks.paths() == ["/hc/start", "/hc/fail"]
    (stopped,) = [a for a in s.alerts() if a["condition"] == "run_stopped"]
    assert "interrupted" in stopped["message"]
    assert file_state(s.token_file) == before
    with TokenStore(s.token_file).lock():  # released: the next run can take it
        pass


def test_a_run_timeout_pings_fail_and_alerts_and_the_token_stays(
    tmp_path, run, start_sim, healthchecks
):
    sim = start_sim("--token-ttl", SIM_TTL)
    marker = tmp_path / "hook-ran"
    # The first alert's hook outlasts run_timeout; later ones return at once.
    hook = f"sh -c 'test -e {marker} || {{ touch {marker}; sleep 20; }}'"
    s = setup_with_monitoring(
        tmp_path,
        sim,
        healthchecks,
        token=POLICY.replace('run_timeout = "60s"', 'run_timeout = "3s"'),
        hooks=f'\n[hooks]\non_alert = "{hook}"',
    )
    s.issue(60)
    before = file_state(s.token_file)
    sim.admin("fault", {"kind": "rest", "endpoint": "RenewToken", "mode": "500", "count": 9})
    r = run(*s.args())
    assert r.code == 1
    assert "took longer than run_timeout (3s)" in r.err
    assert healthchecks.paths() == ["/hc/start", "/hc/fail"]
    conditions = [a["condition"] for a in s.alerts()]
    assert "run_stopped" in conditions
    assert file_state(s.token_file) == before


# ---------------------------------------------------------------------------------------------
# The shield itself, with a real SIGALRM


class Stop(Exception):
    pass


@pytest.fixture
def alarm_interrupts():
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: interrupt(Stop("time")))
    yield
    signal.signal(signal.SIGALRM, previous)


def alarm_now() -> None:
    os.kill(os.getpid(), signal.SIGALRM)
    time.sleep(0.05)  # the handler runs here, between bytecodes


def test_an_interrupt_outside_a_shield_is_raised_at_once(alarm_interrupts):
    with pytest.raises(Stop):
        alarm_now()
        pytest.fail("not interrupted")


def test_an_interrupt_inside_a_shield_is_raised_when_the_block_has_finished(alarm_interrupts):
    done = []
    with pytest.raises(Stop):
        with shielded():
            alarm_now()
            done.append("write")
            with shielded():  # nested: only the outermost end raises
                done.append("release")
            done.append("after")
    assert done == ["write", "release", "after"]


def test_a_shield_with_no_interrupt_raises_nothing_and_the_next_one_starts_clean(
    alarm_interrupts,
):
    with pytest.raises(Stop), shielded():
        alarm_now()
    with shielded():
        pass
