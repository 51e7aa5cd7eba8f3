"""Several accounts on one host: the systemd template units and crontab-accounts.example.

The units are checked with the real tools: `systemd-analyze verify` on instances, and
`systemctl --root=DIR enable` into an empty root (a test skips only when systemd's tools are
missing, saying which package has them; .ci/run installs it).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import test_deploy
from test_deploy import (
    FLAGS,
    INSTALL,
    REPO,
    SYSTEMD,
    check_flags,
    cron_schedule_ok,
    find_tool,
    parse_unit,
    run,
)

TEMPLATES = (
    "dhanfeed-renew@.service",
    "dhanfeed-renew@.timer",
    "dhanfeed-collector@.service",
    "dhanfeed-backfill@.service",
    "dhanfeed-backfill@.timer",
    "dhanfeed-reconcile@.service",
    "dhanfeed-reconcile@.timer",
)
PLAIN = {
    "dhanfeed-renew@.service": "dhanfeed-renew.service",
    "dhanfeed-renew@.timer": "dhanfeed-renew.timer",
    "dhanfeed-collector@.service": "dhanfeed-collector.service",
    "dhanfeed-backfill@.service": "dhanfeed-backfill.service",
    "dhanfeed-backfill@.timer": "dhanfeed-backfill.timer",
    "dhanfeed-reconcile@.service": "dhanfeed-reconcile.service",
    "dhanfeed-reconcile@.timer": "dhanfeed-reconcile.timer",
}
CRONTAB = REPO / "crontab-accounts.example"


def values(name: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for section, key, value in parse_unit((SYSTEMD / name).read_text(encoding="utf-8")):
        found.setdefault(f"{section}.{key}", []).append(value)
    return found


def tool(name: str) -> str:
    found = find_tool(name)
    if found is None:
        pytest.skip(f"{name} not found: install Debian's 'systemd' package (.ci/run does)")
    return found


def render(directory: Path, break_with: tuple[str, str] | None = None) -> None:
    for name in TEMPLATES:
        text = (SYSTEMD / name).read_text(encoding="utf-8").replace(INSTALL, str(REPO))
        if break_with:
            text = text.replace(*break_with)
        (directory / name).write_text(text, encoding="utf-8")


def verify(directory: Path, instance: str = "acct1") -> tuple[int, list[str]]:
    names = [name.replace("@.", f"@{instance}.") for name in TEMPLATES]
    result = run([tool("systemd-analyze"), "verify", *(str(directory / n) for n in names)])
    lines = (result.stdout + result.stderr).splitlines()
    return result.returncode, [line for line in lines if str(directory) in line or "@" in line]


def test_every_template_instance_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    render(tmp_path)
    assert verify(tmp_path) == (0, [])


def test_the_verify_check_reports_a_fault_in_a_template(tmp_path: Path) -> None:
    render(tmp_path, break_with=("RestartSec=", "RestratSec="))
    code, problems = verify(tmp_path)
    assert any("RestratSec" in line for line in problems), problems


def test_systemctl_enables_an_account_instance_into_an_empty_root(tmp_path: Path) -> None:
    units = tmp_path / "etc/systemd/system"
    units.mkdir(parents=True)
    for name in TEMPLATES:
        (units / name).write_text((SYSTEMD / name).read_text(encoding="utf-8"))
    names = ["dhanfeed-collector@acct1.service", "dhanfeed-renew@acct1.timer"]
    result = run([tool("systemctl"), f"--root={tmp_path}", "enable", *names])
    assert result.returncode == 0, result.stderr
    wants = {
        "multi-user.target.wants/dhanfeed-collector@acct1.service": "dhanfeed-collector@.service",
        "timers.target.wants/dhanfeed-renew@acct1.timer": "dhanfeed-renew@.timer",
    }
    for link, template in wants.items():
        path = units / link
        assert path.is_symlink() and os.readlink(path).endswith(f"/{template}"), link
    assert not (units / "multi-user.target.wants/dhanfeed-collector@acct2.service").exists()
    # Enabling an account's renewal service enables that account's timer.
    result = run(
        [tool("systemctl"), f"--root={tmp_path}", "enable", "dhanfeed-renew@acct2.service"]
    )
    assert result.returncode == 0, result.stderr
    assert (units / "timers.target.wants/dhanfeed-renew@acct2.timer").is_symlink()


@pytest.mark.parametrize(
    "name",
    [
        "dhanfeed-renew@.service",
        "dhanfeed-collector@.service",
        "dhanfeed-backfill@.service",
        "dhanfeed-reconcile@.service",
    ],
)
def test_an_instance_runs_its_accounts_config_in_its_own_directories(name: str) -> None:
    service = values(name)
    program, *args = service["Service.ExecStart"][0].split()
    check_flags(Path(program).name, args)
    assert args[args.index("--config") + 1] == "/etc/dhanfeed/%i.toml"
    assert "DHANFEED_CONFIG=/etc/dhanfeed/%i.toml" in service["Service.Environment"]
    assert service["Service.StateDirectory"] == ["dhanfeed/%i"]
    assert service["Service.LogsDirectory"] == ["dhanfeed/%i"]


def test_an_accounts_renewal_loads_that_accounts_credentials_only() -> None:
    credentials = dict(
        v.split(":", 1) for v in values("dhanfeed-renew@.service")["Service.LoadCredential"]
    )
    assert credentials == {
        "dhan_pin": "/etc/dhanfeed/%i/dhan_pin",
        "dhan_totp_secret": "/etc/dhanfeed/%i/dhan_totp_secret",
    }


@pytest.mark.parametrize("name", TEMPLATES)
def test_every_non_obvious_directive_in_a_template_sits_under_a_comment(name: str) -> None:
    test_deploy.test_every_non_obvious_directive_sits_under_a_comment(name)


def test_the_timer_instance_starts_the_same_accounts_renewal() -> None:
    assert values("dhanfeed-renew@.timer")["Timer.Unit"] == ["dhanfeed-renew@%i.service"]
    assert values("dhanfeed-renew@.service")["Install.Also"] == ["dhanfeed-renew@%i.timer"]


@pytest.mark.parametrize("template", TEMPLATES)
def test_a_template_keeps_the_single_accounts_schedule_restart_and_hardening(template: str) -> None:
    # Only what is about the account (paths, credentials, names) may differ.
    per_account = {"Unit.Description", "Unit.After", "Service.Environment", "Service.ExecStart",
                   "Service.ExecStartPre", "Service.ReadWritePaths", "Service.LoadCredential",
                   "Service.WorkingDirectory", "Timer.Unit", "Install.WantedBy", "Install.Also"}  # fmt: skip
    ours, plain = values(template), values(PLAIN[template])
    shared = (set(ours) | set(plain)) - per_account
    added = {"Service.StateDirectory", "Service.StateDirectoryMode", "Service.LogsDirectory",
             "Service.LogsDirectoryMode"}  # fmt: skip
    assert {k: ours.get(k) for k in shared - added} == {k: plain.get(k) for k in shared - added}


def test_the_collector_starts_after_a_local_postgresql_and_stops_before_it() -> None:
    assert "postgresql.service" in values("dhanfeed-collector@.service")["Unit.After"]


def test_the_accounts_crontab_has_a_renewal_and_a_collector_per_account() -> None:
    jobs: dict[str, set[str]] = {}
    minutes = []
    previous = ""
    for line in CRONTAB.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#") or re.fullmatch(r"[A-Z_]+=.*", line):
            previous = line
            continue
        assert previous.startswith("#"), f"no comment above: {line}"
        previous = line
        if line.startswith("@reboot "):
            schedule, command = "@reboot", line.removeprefix("@reboot ")
        else:
            fields = line.split(None, 5)
            assert cron_schedule_ok(fields[:5]), line
            schedule, command = " ".join(fields[:5]), fields[5]
            minutes.append(fields[0])
        match = re.fullmatch(
            rf"cd {re.escape(INSTALL)} && bin/(\w+) (.*) >> logs/(\S+) 2>&1", command
        )
        assert match, command
        program, args, output = match.groups()
        assert program in FLAGS
        check_flags(program, args.split())
        account = re.match(r"--config /etc/dhanfeed/(\w+)\.toml", args).group(1)
        assert account in output, f"{account}'s output must be its own: {line}"
        jobs.setdefault(account, set()).add(f"{schedule.startswith('@')}:{program}")
    assert set(jobs) == {"acct1", "acct2"}
    expected = {"False:renew_token", "True:collector", "False:backfill"}
    assert all(j == expected for j in jobs.values()), jobs
    assert len(set(minutes)) == len(minutes), "accounts renew at different minutes"
