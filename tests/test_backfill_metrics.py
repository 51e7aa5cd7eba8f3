"""backfill_metrics.py: backfill-<client id>.prom and reconcile-<client id>.prom, one pair per
account, so the runs of two accounts sharing node_exporter's directory keep both."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from dhanfeed.backfill import Figures
from dhanfeed.backfill_metrics import write_backfill_metrics
from dhanfeed.backfill_run import InstrumentResult, RunResult

T0 = dt.datetime(2026, 1, 5, 10, 15, tzinfo=dt.UTC)


def samples(path: Path) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(path.read_text())
        for s in family.samples
    ]


def run(directory: Path, client_id: str, healed: int, differing: int) -> None:
    reconciled = InstrumentResult(
        "NSE_EQ:1333", healed_gaps=healed, figures=Figures(375, differing, 0, None, None, ())
    )
    write_backfill_metrics(
        directory,
        client_id=client_id,
        now=T0,
        exit_code=0,
        result=RunResult(T0.date(), False, [reconciled], requests=1),
    )


def test_two_accounts_backfilling_into_one_directory_each_keep_their_own_files(tmp_path):
    for _ in range(2):  # again, in turn: neither rewrites the other's
        run(tmp_path, "1000000001", healed=3, differing=4)
        run(tmp_path, "1000000002", healed=5, differing=6)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "backfill-1000000001.prom",
        "backfill-1000000002.prom",
        "reconcile-1000000001.prom",
        "reconcile-1000000002.prom",
    ]
    for client_id, healed, differing in (("1000000001", 3, 4), ("1000000002", 5, 6)):
        backfill = samples(tmp_path / f"backfill-{client_id}.prom")
        assert {labels["client_id"] for _, labels, _ in backfill} == {client_id}
        assert ("dhanfeed_backfill_healed_gaps", {"client_id": client_id}, healed) in backfill
        reconcile = samples(tmp_path / f"reconcile-{client_id}.prom")
        assert {labels["client_id"] for _, labels, _ in reconcile} == {client_id}
        assert ("dhanfeed_reconcile_minutes_differing", differing) in [
            (name, value) for name, _, value in reconcile
        ]


def test_an_older_backfill_prom_and_reconcile_prom_of_this_account_are_removed(tmp_path):
    for program in ("backfill", "reconcile"):
        (tmp_path / f"{program}.prom").write_text(
            f'dhanfeed_{program}_last_run_timestamp_seconds{{client_id="1000000002"}} 1.0\n'
        )  # another account's
    run(tmp_path, "1000000001", healed=1, differing=1)
    assert (tmp_path / "backfill.prom").exists() and (tmp_path / "reconcile.prom").exists()
    run(tmp_path, "1000000002", healed=1, differing=1)
    assert not (tmp_path / "backfill.prom").exists()  # node_exporter would see them twice
    assert not (tmp_path / "reconcile.prom").exists()
