"""The health verdict as a table: plain facts (a `Report` built by hand) + the config's
thresholds → findings with levels, worst first. No file, no clock, no process."""

from __future__ import annotations

import dataclasses

import pytest

from dhanfeed.config import Config, DhanSection
from dhanfeed.health_report import (
    BackfillFacts,
    CollectorFacts,
    Level,
    RenewerFacts,
    Report,
    SocketFacts,
    StoreFacts,
    TokenFacts,
)
from dhanfeed.health_verdict import assess

CONFIG = Config(dhan=DhanSection(client_id="1000000001"))
CHECKED = "2026-01-05T12:00:00+05:30"  # a Monday, inside the session
LIVE = SocketFacts(shard=0, state="open", role="live", instruments=3, last_data_age_s=1.0)

HEALTHY = Report(
    checked_at=CHECKED,
    timezone="Asia/Kolkata",
    client_id="1000000001",
    in_session=True,
    token=TokenFacts(present=True, fingerprint="abcd1234", remaining_s=20 * 3600),
    renewer=RenewerFacts(last_run="2026-01-05T11:30:00+05:30", last_exit_code=0),
    collector=CollectorFacts(state="running", pid=42, sockets=[LIVE], last_data_age_s=1.0),
    store=StoreFacts(database="data/candles.sqlite"),
    backfill=BackfillFacts(),
)


def with_(**parts: object) -> Report:
    """HEALTHY with some of its facts replaced (`token={"refused": True}` edits the token)."""
    changes = {
        name: dataclasses.replace(getattr(HEALTHY, name), **edit)
        if isinstance(edit, dict)
        else edit
        for name, edit in parts.items()
    }
    return dataclasses.replace(HEALTHY, **changes)


def test_a_healthy_report_has_no_finding():
    assert assess(HEALTHY, CONFIG) == []


@pytest.mark.parametrize(
    ("report", "level", "says"),
    [
        (with_(token={"present": False, "problem": "token file missing"}), Level.ACT,
         "token file missing; log in at Dhan and run bin/renew_token --set-token"),
        (with_(token={"present": False, "problem": "token file missing", "can_regenerate": True}),
         Level.DEGRADED, "renew_token will regenerate it with PIN+TOTP on its next run"),
        (with_(token={"refused": True, "refused_detail": "profile check: 401"}), Level.ACT,
         "token abcd1234 was refused by Dhan (profile check: 401)"),
        (with_(token={"remaining_s": 3600}), Level.DEGRADED, "has not been renewed"),
        (with_(renewer=RenewerFacts()), Level.DEGRADED, "renew_token has never run here"),
        (with_(renewer={"last_exit_code": 1}), Level.DEGRADED, "renew_token's last run exited 1"),
        (with_(renewer={"last_run": "2026-01-05T09:00:00+05:30"}), Level.DEGRADED,
         "renew_token has not run since"),
        (with_(collector=CollectorFacts(state="stopped")), Level.ACT,
         "the collector is not running (stopped) during the session: start it"),
        (with_(collector={"sockets": [dataclasses.replace(LIVE, state="connecting")]}),
         Level.DEGRADED, "1 feed socket(s) not live during the session"),
        (with_(collector={"last_data_age_s": 600.0}), Level.DEGRADED, "no data for 600.0s"),
        (with_(backfill={"last_run": CHECKED, "unhealed_gaps": 2}), Level.DEGRADED,
         "2 gap(s) not healed yet"),
        (with_(backfill={"minutes_compared": 100, "minutes_differing": 6}), Level.DEGRADED,
         "6 of 100 minutes differ from Dhan's"),
    ],
)  # fmt: skip
def test_each_fact_that_needs_a_look_is_one_finding_with_its_level(report, level, says):
    (finding,) = assess(report, CONFIG)
    assert finding.level is level
    assert says in finding.message


def test_outside_the_session_a_stopped_collector_is_no_finding_and_a_crashed_one_is():
    quiet = with_(in_session=False, collector=CollectorFacts(state="stopped"))
    assert assess(quiet, CONFIG) == []
    crashed = with_(in_session=False, collector=CollectorFacts(state="crashed", pid=7))
    assert [f.level for f in assess(crashed, CONFIG)] == [Level.DEGRADED]


def test_findings_come_worst_first_and_the_worst_is_the_report_s_level():
    report = with_(renewer={"last_exit_code": 1}, collector=CollectorFacts(state="stopped"))
    findings = assess(report, CONFIG)
    assert [f.level for f in findings] == [Level.ACT, Level.DEGRADED]
    assert dataclasses.replace(report, findings=findings).level is Level.ACT
