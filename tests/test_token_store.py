"""The token file: layout, permissions, corrupt files and a full disk (pyfakefs); the lock,
concurrent runs, readers and SIGKILL during the write (real filesystem, real processes)."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dhanfeed import current_token
from dhanfeed.errors import LockBusy, TokenFileError
from dhanfeed.token_store import (
    TokenDirUnwritable,
    TokenExpired,
    TokenFileMissing,
    TokenRecord,
    TokenStore,
    rejected_record,
)
from support.renew import write_config
from support.secret_scan import remember_secret
from support.sim import BIN
from support.token_files import (
    CLIENT_ID,
    file_state,
    make_jwt,
    make_token,
    now,
    write_token_file,
)

LIB = Path(__file__).resolve().parent.parent / "lib"


def fresh(hours: float = 20) -> TokenRecord:
    return TokenRecord.from_token(make_token(exp=now() + dt.timedelta(hours=hours)), "renew", now())


# ---------------------------------------------------------------------------------------------
# pyfakefs: layout, permissions, corrupt files, full disk


def test_a_missing_directory_reads_as_a_missing_token_file(fs):
    with pytest.raises(TokenFileMissing, match="no token file at /srv/state/token.json"):
        TokenStore("/srv/state/token.json").read()


def test_writing_creates_missing_directories_private_and_the_file_0600(fs):
    store = TokenStore("/srv/dhan/state/token.json")
    record = fresh()
    store.write(record)
    assert os.stat("/srv/dhan/state").st_mode & 0o777 == 0o700
    assert os.stat("/srv/dhan/state/token.json").st_mode & 0o777 == 0o600
    back = store.read()
    assert back.token.access_token == record.token.access_token
    assert back.source == "renew"
    on_disk = json.loads(Path("/srv/dhan/state/token.json").read_text())
    expected = {"client_id", "access_token", "expires_at", "issued_at", "source", "written_at"}
    assert set(on_disk) == expected | {"fingerprint"}
    assert on_disk["fingerprint"] == record.fingerprint


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o700 | 0o010])
def test_a_token_file_open_to_group_or_others_is_refused(fs, mode):
    store = TokenStore("/state/token.json")
    store.write(fresh())
    os.chmod("/state/token.json", mode)
    with pytest.raises(TokenFileError, match=r"accessible by group or others .*chmod 600"):
        store.read()


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_private_token_file_is_accepted(fs, mode):
    store = TokenStore("/state/token.json")
    store.write(fresh())
    os.chmod("/state/token.json", mode)
    assert store.read().client_id == CLIENT_ID


def test_a_symlinked_token_file_is_refused(fs):
    TokenStore("/elsewhere/token.json").write(fresh())
    os.makedirs("/state")
    os.symlink("/elsewhere/token.json", "/state/token.json")
    with pytest.raises(TokenFileError, match="is a symlink"):
        TokenStore("/state/token.json").read()


def test_a_directory_in_place_of_the_token_file_is_refused(fs):
    os.makedirs("/state/token.json")
    with pytest.raises(TokenFileError, match="not a regular file"):
        TokenStore("/state/token.json").read()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not valid JSON"),
        (b'{"client_id": "1000000001", "access_', "not valid JSON"),
        (b"\xff\xfe garbage", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"client_id": "1000000001"}', "lacks access_token, expires_at"),
        (
            b'{"client_id": "1000000001", "access_token": "abc", "expires_at": "x"}',
            "access_token is unreadable: not a JWT",
        ),
    ],
)
def test_a_corrupt_token_file_gives_one_clear_line(fs, content, message):
    os.makedirs("/state")
    Path("/state/token.json").write_bytes(content)
    os.chmod("/state/token.json", 0o600)
    with pytest.raises(TokenFileError, match=message) as info:
        TokenStore("/state/token.json").read()
    assert "\n" not in str(info.value)


def test_a_token_file_whose_client_id_disagrees_with_the_token_is_refused(fs):
    record = fresh()
    data = record.to_json() | {"client_id": "2000000002"}
    os.makedirs("/state")
    Path("/state/token.json").write_text(json.dumps(data))
    os.chmod("/state/token.json", 0o600)
    with pytest.raises(TokenFileError, match="client_id 2000000002 does not match"):
        TokenStore("/state/token.json").read()


def test_a_token_file_with_a_wrong_fingerprint_is_refused(fs):
    data = fresh().to_json() | {"fingerprint": "000000000000"}
    os.makedirs("/state")
    Path("/state/token.json").write_text(json.dumps(data))
    os.chmod("/state/token.json", 0o600)
    with pytest.raises(TokenFileError, match="fingerprint does not match"):
        TokenStore("/state/token.json").read()


def test_a_full_disk_during_the_write_leaves_the_old_token_and_no_temp_file(fs):
    store = TokenStore("/state/token.json")
    old = fresh(10)
    store.write(old)
    used = os.stat("/state/token.json").st_size
    fs.set_disk_usage(used + 64)  # room for the old file, not for a second copy
    with pytest.raises(OSError) as info:
        store.write(fresh(20))
    assert info.value.errno == 28  # ENOSPC
    assert store.read().token.access_token == old.token.access_token
    assert sorted(os.listdir("/state")) == ["token.json"]


def test_the_recovery_file_is_written_0600_next_to_the_token_file(fs):
    store = TokenStore("/state/token.json")
    record = fresh()
    store.write_recovery(record)
    assert store.recovery_path == Path("/state/token.json.recovery")
    assert os.stat(store.recovery_path).st_mode & 0o777 == 0o600
    assert store.read(store.recovery_path).fingerprint == record.fingerprint


def test_a_reservation_on_a_full_disk_names_the_directory_and_its_free_space(fs):
    store = TokenStore("/state/token.json")
    old = fresh(10)
    store.write(old)
    fs.set_disk_usage(os.stat("/state/token.json").st_size + 1000)  # 1000 bytes free
    with pytest.raises(TokenDirUnwritable) as info:
        store.reserve()
    assert str(info.value).startswith("cannot prepare a new token file in /state (")
    assert "free space: 1000 bytes, 16384 needed" in str(info.value)
    assert info.value.exit_code == 1
    assert store.read().token.access_token == old.token.access_token
    assert sorted(os.listdir("/state")) == ["token.json"]  # nothing left behind


def test_a_token_saved_into_its_reservation_needs_no_more_space(fs):
    store = TokenStore("/state/token.json")
    store.write(fresh(10))
    slot = store.reserve()
    in_use = sum(os.stat(f"/state/{name}").st_size for name in os.listdir("/state"))
    fs.set_disk_usage(in_use)  # the disk fills up while Dhan answers
    assert fs.get_disk_usage().free == 0
    new = fresh(20)
    assert store.save(slot, new) == store.path
    assert os.stat(store.path).st_mode & 0o777 == 0o600
    assert store.read().fingerprint == new.fingerprint
    assert sorted(os.listdir("/state")) == ["token.json"]


def test_a_reservation_left_unused_leaves_nothing_behind(fs):
    store = TokenStore("/state/token.json")
    with store.reserve():
        assert len(os.listdir("/state")) == 1
    assert os.listdir("/state") == []
    assert store.recovery_candidates() == []


def test_a_token_whose_rename_fails_is_kept_in_the_recovery_file(fs):
    store = TokenStore("/state/token.json")
    os.makedirs("/state/token.json/blocked")  # os.replace onto a non-empty directory fails
    new = fresh(20)
    assert store.save(store.reserve(), new) == store.recovery_path
    assert store.read(store.recovery_path).fingerprint == new.fingerprint
    assert store.recovery_candidates() == [store.recovery_path]


def test_a_token_that_no_rename_can_place_stays_in_its_temp_file_for_the_next_run(fs):
    store = TokenStore("/state/token.json")
    os.makedirs("/state/token.json/blocked")
    os.makedirs("/state/token.json.recovery/blocked")
    new = fresh(20)
    kept = store.save(store.reserve(), new)
    assert kept.name.startswith(".token.json.") and kept.name.endswith(".tmp")
    assert os.stat(kept).st_mode & 0o777 == 0o600
    assert store.recovery_candidates() == [kept]
    assert store.read(kept).fingerprint == new.fingerprint


def test_a_rejected_answer_is_kept_private_with_the_reason(fs):
    store = TokenStore("/state/token.json")
    raw = make_jwt(exp=now() + dt.timedelta(hours=20), client_id="2000000002")
    data = rejected_record(
        raw, client_id="2000000002", source="renew", problem="for client 2000000002",
        now=now(), expires_hint=None,
    )  # fmt: skip
    assert store.save_rejected(store.reserve(), data) == store.recovery_path
    assert os.stat(store.recovery_path).st_mode & 0o777 == 0o600
    saved = json.loads(store.recovery_path.read_text())
    assert saved["access_token"] == raw and saved["rejected"] == "for client 2000000002"


def test_installing_a_recovery_candidate_makes_it_the_token_file(fs):
    store = TokenStore("/state/token.json")
    store.write(fresh(3))
    new = fresh(20)
    store.write_recovery(new)
    store.install(store.recovery_path)
    assert store.read().fingerprint == new.fingerprint
    assert store.recovery_candidates() == []


def test_writing_a_token_supersedes_the_recovery_file(fs):
    store = TokenStore("/state/token.json")
    store.write_recovery(fresh(5))
    store.write(fresh(20))
    assert not store.recovery_path.exists()


def test_a_token_file_whose_exp_is_no_time_reads_with_the_expiry_written_beside_it(fs):
    odd = make_jwt(exp=now() + dt.timedelta(hours=20), exp_claim=10**12)  # year 33658
    expires = now() + dt.timedelta(hours=20)
    os.makedirs("/state")
    Path("/state/token.json").write_text(
        json.dumps({"client_id": CLIENT_ID, "access_token": odd, "expires_at": expires.isoformat()})
    )
    os.chmod("/state/token.json", 0o600)
    assert TokenStore("/state/token.json").read().token.expires_at == expires


def test_current_token_returns_the_checked_token(fs):
    record = fresh()
    TokenStore("/state/token.json").write(record)
    token = current_token("/state/token.json")
    assert token.access_token == record.token.access_token
    assert token.fingerprint == record.fingerprint


def test_current_token_raises_clear_errors_when_missing_expired_or_unsafe(fs):
    with pytest.raises(TokenFileError, match="no token file at /state/token.json"):
        current_token("/state/token.json")
    TokenStore("/state/token.json").write(fresh(-1))
    with pytest.raises(TokenExpired, match="expired at .*is renew_token running"):
        current_token("/state/token.json")
    TokenStore("/state/token.json").write(fresh())
    os.chmod("/state/token.json", 0o644)
    with pytest.raises(TokenFileError, match="chmod 600"):
        current_token("/state/token.json")


# ---------------------------------------------------------------------------------------------
# Real filesystem, real processes

HOLDER = textwrap.dedent(
    """
    import sys
    from dhanfeed.token_store import TokenStore
    with TokenStore(sys.argv[1]).lock():
        print("locked", flush=True)
        sys.stdin.read()  # hold until the test closes our stdin
    """
)


def _python(script: str, *args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(LIB)}
    return subprocess.Popen([sys.executable, "-c", script, *args], env=env, text=True, **kw)


def test_a_run_while_another_holds_the_lock_exits_75_and_changes_nothing(tmp_path, capsys):
    from dhanfeed.cli.renew_token import main

    config = write_config(tmp_path)  # api at 127.0.0.1:9: nothing answers
    token_file = tmp_path / "state" / "token.json"
    write_token_file(token_file, make_token(exp=now() + dt.timedelta(minutes=30)))  # due
    before = file_state(token_file)
    holder = _python(HOLDER, str(token_file), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code = main(["--config", str(config)])
        err = capsys.readouterr().err
        with pytest.raises(LockBusy):
            with TokenStore(token_file).lock():
                pass
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
        holder.stdout.close()
    assert code == 75
    assert err.strip().splitlines() == [
        f"renew_token: another renew_token run holds {token_file}.lock; nothing done"
    ]
    assert file_state(token_file) == before
    assert not (tmp_path / "logs" / "token_alerts.log").exists()
    assert not list((tmp_path / "state").glob("*.prom"))
    # once released, the lock is free again and its sidecar file is still there
    with TokenStore(token_file).lock():
        pass
    assert (tmp_path / "state" / "token.json.lock").exists()


READER = textwrap.dedent(
    """
    import json, os, sys, time
    path, stop = sys.argv[1], sys.argv[2]
    reads = bad = 0
    fps = set()
    while not os.path.exists(stop):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            bad += 1
            continue
        reads += 1
        try:
            fps.add(json.loads(data)["fingerprint"])
        except Exception:
            bad += 1
    print(json.dumps({"reads": reads, "bad": bad, "fingerprints": sorted(fps)}), flush=True)
    """
)


@pytest.mark.timeout(120)
def test_twenty_runs_at_once_renew_exactly_once_and_a_reader_never_sees_a_partial_file(
    tmp_path, start_sim
):
    sim = start_sim("--token-ttl", "10m")
    config = write_config(
        tmp_path, api_base=sim.api_base, timeout="5s",
        token='renew_before = "2m"\nmust_renew_before = "1m"\nrun_timeout = "60s"',
    )  # fmt: skip
    token_file = tmp_path / "state" / "token.json"
    issued = sim.admin("issue-token", {"ttl_s": 60, "path": str(token_file)})  # due at once
    remember_secret(issued["access_token"])
    stop = tmp_path / "stop-reader"
    reader = _python(READER, str(token_file), str(stop), stdout=subprocess.PIPE)
    runs = [
        subprocess.Popen(
            [str(BIN / "renew_token"), "--config", str(config), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(20)
    ]
    results = []
    for proc in runs:
        out, err = proc.communicate(timeout=100)
        results.append((proc.returncode, out, err))
    stop.touch()
    seen = json.loads(reader.communicate(timeout=20)[0])
    codes = sorted(code for code, _, _ in results)
    assert set(codes) <= {0, 75}, results
    renewed = [json.loads(out) for code, out, _ in results if code == 0]
    assert [r["status"] for r in renewed].count("renewed") == 1
    assert sim.admin("stats")["rest_calls"].get("RenewToken") == 1
    final = TokenStore(token_file).read()
    assert final.source == "renew"
    assert final.fingerprint == sim.admin("stats")["current_token_fp"]
    assert final.fingerprint != issued["fingerprint"]
    assert seen["bad"] == 0
    assert seen["reads"] > 0
    assert set(seen["fingerprints"]) <= {issued["fingerprint"], final.fingerprint}


WRITER = textwrap.dedent(
    """
    import datetime as dt, json, sys
    from dhanfeed.token import parse_token
    from dhanfeed.token_store import TokenRecord, TokenStore
    store = TokenStore(sys.argv[1])
    tokens = [parse_token(t) for t in json.loads(sys.argv[2])]
    now = dt.datetime.now(dt.UTC)
    print("writing", flush=True)
    i = 0
    while True:
        store.write(TokenRecord.from_token(tokens[i % len(tokens)], "renew", now))
        i += 1
    """
)


def test_sigkill_at_many_points_during_the_write_leaves_the_old_or_the_new_file(tmp_path):
    token_file = tmp_path / "state" / "token.json"
    # tokens of different lengths, so that a partial file could not pass for a whole one
    tokens = [make_jwt(exp=now() + dt.timedelta(hours=h)) + "x" * (h * 40) for h in (1, 5, 9)]
    write_token_file(token_file, make_token(exp=now() + dt.timedelta(hours=3)))
    allowed = {TokenStore(token_file).read().fingerprint}
    from dhanfeed.token import fingerprint

    allowed |= {fingerprint(t) for t in tokens}
    rng = random.Random(7)
    kills = 25
    for _ in range(kills):
        writer = _python(WRITER, str(token_file), json.dumps(tokens), stdout=subprocess.PIPE)
        assert writer.stdout.readline().strip() == "writing"
        time.sleep(rng.uniform(0, 0.03))  # a random point inside the write loop
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=10)
        writer.stdout.close()
        record = TokenStore(token_file).read()  # raises on an empty or partial file
        assert record.fingerprint in allowed
        assert os.stat(token_file).st_mode & 0o777 == 0o600
    # the next write under the lock sweeps the temp files that the killed writers left
    with TokenStore(token_file).lock():
        TokenStore(token_file).write(TokenStore(token_file).read())
    leftovers = [p.name for p in token_file.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
