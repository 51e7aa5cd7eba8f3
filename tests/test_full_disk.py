"""A real full (and read-only) filesystem under the token file: a size-limited tmpfs mounted
by the test. Needs root and permission to mount; skipped, with the reason, where either is
missing (an unprivileged run, a container without CAP_SYS_ADMIN)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dhanfeed.candles import Bar
from dhanfeed.cli.renew_token import main
from dhanfeed.store import SqliteStore, StoreWriter, Tick
from dhanfeed.token_store import TokenStore
from support.polling import wait_until
from support.renew import POLICY, SIM_TTL, alert_lines, write_config
from support.secret_scan import remember_secret
from support.token_files import file_state

DISK = "256k"
T0 = 1_767_000_000  # a bar start (UTC epoch seconds)
BAR = Bar("NSE_EQ", 1333, 60, T0, 100.0, 101.0, 99.0, 100.5, 10, 2, 10)


def tick(i: int) -> Tick:
    return Tick("NSE_EQ", 1333, T0 + i, 100.0 + i, 1, i + 1, T0 + i + 0.25)


class SmallDisk:
    """A tmpfs of DISK bytes at `path`, filled, freed and remounted read-only on demand."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler"

    def fill(self) -> None:
        """Take every free block."""
        chunk = b"\xa5" * 4096
        with open(self.filler, "wb", buffering=0) as f:
            while True:
                try:
                    f.write(chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
        assert shutil.disk_usage(self.path).free < 4096

    def free(self) -> None:
        self.filler.unlink()

    def remount(self, mode: str) -> None:
        done = _mount("-o", f"remount,{mode}", str(self.path))
        assert done.returncode == 0, done.stderr


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)


@pytest.fixture
def small_disk(tmp_path) -> Iterator[SmallDisk]:
    """`tmp_path/state` (where the token file goes) is a fresh tmpfs."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; this run is not root")
    if shutil.which("mount") is None:
        pytest.skip("no mount(8) on this machine")
    mount_point = tmp_path / "state"
    mount_point.mkdir()
    done = _mount("-t", "tmpfs", "-o", f"size={DISK},mode=0700", "tmpfs", str(mount_point))
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not allowed here: {done.stderr.strip()}")
    try:
        yield SmallDisk(mount_point)
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, timeout=30)


class Install:
    """A config whose token file lives on the small disk; logs and alerts on the real one."""

    def __init__(self, root: Path, disk: SmallDisk, sim) -> None:
        self.root, self.disk, self.sim = root, disk, sim
        self.config = write_config(root, api_base=sim.api_base, token=POLICY)
        self.token_file = disk.path / "token.json"

    def issue(self, ttl_s: float = 60) -> dict:
        token = self.sim.admin("issue-token", {"ttl_s": ttl_s, "path": str(self.token_file)})
        remember_secret(token["access_token"])
        return token

    def renew_calls(self) -> int:
        return self.sim.admin("stats")["rest_calls"].get("RenewToken", 0)

    def accepted(self, token: dict) -> bool:
        import requests

        resp = requests.get(
            f"{self.sim.api_base}/v2/profile",
            headers={"access-token": token["access_token"], "dhanClientId": self.sim.client_id},
            timeout=10,
        )
        return resp.status_code == 200

    def alerts(self) -> list[dict]:
        return alert_lines(self.root)


@pytest.fixture
def install(tmp_path, small_disk, start_sim) -> Install:
    return Install(tmp_path, small_disk, start_sim("--token-ttl", SIM_TTL))


def run(install: Install, *more: str, capsys) -> tuple[int, str, str]:
    code = main(["--config", str(install.config), *more])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def test_a_full_token_directory_stops_renewal_before_dhan_is_asked(install, capsys):
    old = install.issue(60)  # due under POLICY
    before = file_state(install.token_file)
    install.disk.fill()
    code, out, err = run(install, capsys=capsys)
    assert code == 1
    line = one_line(err)
    assert (
        f"cannot prepare a new token file in {install.disk.path} (No space left on device;" in line
    )
    assert "free space: " in line and "Dhan was not asked" in line
    assert install.renew_calls() == 0
    assert file_state(install.token_file) == before
    assert install.accepted(old)  # the current token is alive at Dhan
    (alert,) = [a for a in install.alerts() if a["condition"] == "token_dir_unwritable"]
    assert alert["severity"] == "critical" and str(install.disk.path) in alert["message"]
    assert "free space: " in alert["message"]

    install.disk.free()
    code, out, err = run(install, capsys=capsys)
    assert code == 0, err
    assert install.renew_calls() == 1
    new = TokenStore(install.token_file).read()
    assert new.fingerprint == install.sim.admin("stats")["current_token_fp"] != old["fingerprint"]
    assert not [name for name in os.listdir(install.disk.path) if name.endswith(".tmp")]


def test_a_forced_renewal_on_a_full_disk_never_leaves_a_dead_token_to_be_recovered(install, capsys):
    old = install.issue(3600)  # not due: only --force would renew it
    install.disk.fill()
    code, out, err = run(install, "--force", capsys=capsys)
    assert code == 1 and "Dhan was not asked" in one_line(err)
    install.disk.free()
    code, out, err = run(install, capsys=capsys)
    assert code == 0, err
    assert "not due" in out
    # Whatever the run now calls valid, Dhan agrees: the token in the file is alive.
    assert TokenStore(install.token_file).read().fingerprint == old["fingerprint"]
    assert install.accepted(old)


def test_a_read_only_token_directory_stops_renewal_before_dhan_is_asked(install, capsys):
    old = install.issue(60)
    before = file_state(install.token_file)
    install.disk.remount("ro")
    try:
        code, out, err = run(install, capsys=capsys)
    finally:
        install.disk.remount("rw")
    assert code == 1
    assert "(Read-only file system;" in one_line(err)
    assert install.renew_calls() == 0
    assert file_state(install.token_file) == before
    assert install.accepted(old)
    assert any(a["condition"] == "token_dir_unwritable" for a in install.alerts())

    code, out, err = run(install, capsys=capsys)
    assert code == 0, err
    assert TokenStore(install.token_file).read().fingerprint != old["fingerprint"]


def test_a_full_disk_under_the_candle_database_alerts_once_and_recovers_when_space_returns(
    small_disk,
):
    store = SqliteStore(small_disk.path / "candles.sqlite")
    alerts: list[tuple[str, str, str]] = []
    writer = StoreWriter(
        store, max_delay_s=0.01, retry_s=0.05, alert=lambda *alert: alerts.append(alert)
    )
    try:
        writer.put_bars([BAR])
        assert writer.flush(10)
        small_disk.fill()
        writer.put_ticks([tick(i) for i in range(1000)])  # ~100 kB: fits once space is freed
        wait_until("two failed commits", lambda: writer.errors >= 2)
        assert [(c, level) for c, level, _ in alerts] == [("store-write-failed", "critical")]
        assert "full" in alerts[0][2] and writer.pending > 0
        small_disk.free()
        assert writer.flush(30)
        assert writer.pending == 0 and writer.lost_rows == 0
        # the writer wakes flush() before it sends the recovery: wait for it, do not race it
        wait_until("the recovery alert", lambda: len(alerts) >= 2)
        assert [(c, level) for c, level, _ in alerts][1:] == [("store-", "recovery")]
    finally:
        writer.close(10)
        store.close()
