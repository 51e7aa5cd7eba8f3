"""renew_metrics.py: renew_token-<client id>.prom for node_exporter's textfile collector, read
back with prometheus-client's own parser; the last success survives failed runs; two accounts
share one directory."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from dhanfeed.renew_metrics import write_renew_metrics

FILENAME = "renew_token-1000000001.prom"  # the account's own file
T0 = dt.datetime(2026, 1, 6, 3, 30, tzinfo=dt.UTC)
EXPIRY = T0 + dt.timedelta(hours=20)


def samples(directory: Path, client_id: str = "1000000001") -> dict[str, float]:
    text = (directory / f"renew_token-{client_id}.prom").read_text()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert sample.labels == {"client_id": client_id}  # its own series only
            found[sample.name] = sample.value
    return found


def run(
    directory: Path,
    when: dt.datetime,
    code: int,
    expires: dt.datetime | None = EXPIRY,
    client_id: str = "1000000001",
):
    write_renew_metrics(
        directory, client_id=client_id, now=when, exit_code=code, expires_at=expires
    )


def test_a_successful_run_records_expiry_run_time_success_and_exit_code(tmp_path):
    run(tmp_path / "metrics", T0, 0)
    assert samples(tmp_path / "metrics") == {
        "dhanfeed_token_expiry_timestamp_seconds": EXPIRY.timestamp(),
        "dhanfeed_renew_last_success_timestamp_seconds": T0.timestamp(),
        "dhanfeed_renew_last_run_timestamp_seconds": T0.timestamp(),
        "dhanfeed_renew_last_exit_code": 0,
    }


def test_a_failed_run_keeps_the_last_success_from_the_file_before_it(tmp_path):
    run(tmp_path, T0, 0)
    later = T0 + dt.timedelta(hours=1)
    run(tmp_path, later, 1)
    got = samples(tmp_path)
    assert got["dhanfeed_renew_last_success_timestamp_seconds"] == T0.timestamp()
    assert got["dhanfeed_renew_last_run_timestamp_seconds"] == later.timestamp()
    assert got["dhanfeed_renew_last_exit_code"] == 1


def test_a_first_run_that_fails_has_no_success_and_no_expiry_to_report(tmp_path):
    run(tmp_path, T0, 3, expires=None)
    assert samples(tmp_path) == {
        "dhanfeed_renew_last_run_timestamp_seconds": T0.timestamp(),
        "dhanfeed_renew_last_exit_code": 3,
    }


def test_a_corrupt_previous_file_is_no_success_not_a_crash(tmp_path):
    (tmp_path / FILENAME).write_text("this is { not prometheus\n")
    run(tmp_path, T0, 1)
    assert "dhanfeed_renew_last_success_timestamp_seconds" not in samples(tmp_path)


def test_a_metrics_directory_that_cannot_be_made_is_a_warning(tmp_path, caplog):
    (tmp_path / "file").write_text("")
    with caplog.at_level(logging.WARNING, logger="dhanfeed.renew_metrics"):
        run(tmp_path / "file" / "metrics", T0, 0)
    assert any("cannot write metrics" in r.getMessage() for r in caplog.records)


def test_two_accounts_renewing_into_one_directory_each_keep_their_own_file(tmp_path):
    later = T0 + dt.timedelta(hours=1)
    run(tmp_path, T0, 0, client_id="1000000001")
    run(tmp_path, T0, 0, client_id="1000000002", expires=EXPIRY + dt.timedelta(hours=2))
    run(tmp_path, later, 1, client_id="1000000001")  # in turn: neither rewrites the other's
    run(tmp_path, later, 0, client_id="1000000002", expires=EXPIRY + dt.timedelta(hours=3))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "renew_token-1000000001.prom",
        "renew_token-1000000002.prom",
    ]
    one, two = samples(tmp_path, "1000000001"), samples(tmp_path, "1000000002")
    assert one["dhanfeed_renew_last_exit_code"] == 1
    assert one["dhanfeed_renew_last_success_timestamp_seconds"] == T0.timestamp()  # its own
    assert two["dhanfeed_renew_last_exit_code"] == 0
    assert two["dhanfeed_renew_last_success_timestamp_seconds"] == later.timestamp()
    assert (
        two["dhanfeed_token_expiry_timestamp_seconds"]
        == (EXPIRY + dt.timedelta(hours=3)).timestamp()
    )


def test_an_older_renew_token_prom_of_this_account_gives_its_last_success_and_goes(tmp_path):
    old = tmp_path / "renew_token.prom"
    old.write_text(
        f'dhanfeed_renew_last_success_timestamp_seconds{{client_id="1000000002"}} {T0.timestamp()}\n'
    )  # another account's
    run(tmp_path, T0 + dt.timedelta(hours=1), 1)
    assert old.exists()  # not ours: left alone, and not our last success
    assert "dhanfeed_renew_last_success_timestamp_seconds" not in samples(tmp_path)
    (tmp_path / FILENAME).unlink()
    old.write_text(old.read_text().replace("1000000002", "1000000001"))
    run(tmp_path, T0 + dt.timedelta(hours=1), 1)
    assert not old.exists()  # node_exporter would see its series twice
    assert samples(tmp_path)["dhanfeed_renew_last_success_timestamp_seconds"] == T0.timestamp()
