"""examples/grafana-dashboard.json: every metric its queries use is one the programs really
export (found by running the code that writes the metrics, not by reading names off it),
and every query is valid PromQL (promtool, where installed)."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dhanfeed.backfill import Figures
from dhanfeed.backfill_metrics import write_backfill_metrics
from dhanfeed.backfill_run import InstrumentResult, RunResult
from dhanfeed.renew_metrics import write_renew_metrics
from dhanfeed.status import StatusReporter
from test_deploy import find_tool, run
from test_status import snapshot

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "examples" / "grafana-dashboard.json"
METRIC = re.compile(r"\bdhanfeed_[a-z0-9_]+\b")
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$client_id": ".*"}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def queries(board: dict) -> list[str]:
    """Every PromQL expression: panel targets and template variable queries."""
    found = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    for var in board["templating"]["list"]:
        found.append(var["definition"])
    return found


def exported_names(tmp_path: Path) -> set[str]:
    """Names in the textfiles the renewer, the collector and backfill write, from their own
    code."""
    write_renew_metrics(
        tmp_path,
        client_id="1000000001",
        now=dt.datetime.now(dt.UTC),
        exit_code=0,
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=20),
    )
    reporter = StatusReporter(
        snapshot,
        status_path=tmp_path / "collector_status.json",
        every_s=1,
        client_id="1000000001",
        textfile_dir=tmp_path,
    )
    reporter.write_once()
    reconciled = InstrumentResult(
        "NSE_EQ:1333", healed_gaps=1, figures=Figures(375, 3, 1, None, None, ())
    )
    write_backfill_metrics(
        tmp_path,
        client_id="1000000001",
        now=dt.datetime.now(dt.UTC),
        exit_code=0,
        result=RunResult(dt.date(2026, 1, 5), False, [reconciled], requests=1),
    )
    names: set[str] = set()
    for prom in tmp_path.glob("*.prom"):
        for family in text_string_to_metric_families(prom.read_text(encoding="utf-8")):
            names.add(family.name)
            names.update(sample.name for sample in family.samples)
    return names


def test_every_metric_the_dashboard_queries_is_exported_by_the_programs(tmp_path: Path) -> None:
    exported = exported_names(tmp_path)
    assert "dhanfeed_collector_packets_total" in exported  # the harness itself works
    used = {name for query in queries(dashboard()) for name in METRIC.findall(query)}
    assert used, "the dashboard queries no dhanfeed metric"
    assert sorted(used - exported) == []


def test_the_dashboard_shows_each_family_the_issue_names(tmp_path: Path) -> None:
    used = {name for query in queries(dashboard()) for name in METRIC.findall(query)}
    for needed in (
        "dhanfeed_token_expiry_timestamp_seconds",  # token time left
        "dhanfeed_renew_last_exit_code",  # renew results
        "dhanfeed_collector_sockets_live",  # feed state
        "dhanfeed_collector_packets_total",  # messages/s
        "dhanfeed_collector_last_data_timestamp_seconds",  # lag
        "dhanfeed_collector_gaps_total",  # gaps
        "dhanfeed_backfill_healed_gaps",  # backfill
        "dhanfeed_reconcile_minutes_differing",  # reconciliation
    ):
        assert needed in used, needed


def test_panels_have_unique_ids_a_datasource_input_and_fit_the_grid() -> None:
    board = dashboard()
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"]
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
            assert panel["targets"] and panel["description"], panel["title"]


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    promtool = find_tool("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus; .ci/run installs it)")
    rules = []
    for i, query in enumerate(queries(dashboard())):
        if query.startswith("label_values("):  # Grafana's own function, not PromQL
            query = query.removeprefix("label_values(").rsplit(",", 1)[0]
        for variable, value in GRAFANA_VARIABLES.items():
            query = query.replace(variable, value)
        rules.append({"record": f"dashboard:query_{i}", "expr": query})
    path = tmp_path / "queries.yml"
    # JSON is YAML: promtool reads it as a rule file
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = run([promtool, "check", "rules", str(path)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
