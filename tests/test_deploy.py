"""The deployment files: systemd units, crontab.example, logrotate and the alert rules.

They are checked with the real tools where the machine has them (`systemd-analyze`,
`logrotate`; .ci/run installs Debian's `systemd`) and structurally otherwise. A test skips
only when its tool is missing, and says which package provides it. promtool is not
available, so the alert rules are checked for shape and for the metric names the code
exports.
"""

from __future__ import annotations

import datetime as dt
import grp
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import textwrap
import zoneinfo
from pathlib import Path

import pytest

from dhanfeed.errors import ExitCode

REPO = Path(__file__).resolve().parent.parent
INSTALL = "/opt/dhanfeed"  # the install path every example uses
SYSTEMD = REPO / "systemd"
UNITS = (
    "dhanfeed-renew.service",
    "dhanfeed-renew.timer",
    "dhanfeed-collector.service",
    "dhanfeed-backfill.service",
    "dhanfeed-backfill.timer",
    "dhanfeed-reconcile.service",
    "dhanfeed-reconcile.timer",
)
SERVICES = (
    "dhanfeed-renew.service",
    "dhanfeed-collector.service",
    "dhanfeed-backfill.service",
    "dhanfeed-reconcile.service",
)
CRONTAB = REPO / "crontab.example"
LOGROTATE = REPO / "examples" / "logrotate.conf"
ALERTS = REPO / "examples" / "prometheus-alerts.yml"

# The command-line interface of the executables the examples run.
FLAGS = {
    "renew_token": {
        "--config",
        "--check",
        "--force",
        "--dry-run",
        "--json",
        "--set-token",
        "--debug",
    },
    "collector": {"--config", "--debug", "--log-stdout"},
    "backfill": {"--config", "--date", "--reconcile", "--prefer", "--dry-run", "--json", "--debug"},
}
FLAGS_WITH_VALUE = {"--config", "--set-token", "--date", "--prefer"}
COLLECTOR_STOP_BUDGET_S = 10  # the collector exits within this after SIGTERM

METRICS = {
    "dhanfeed_token_expiry_timestamp_seconds",
    "dhanfeed_renew_last_success_timestamp_seconds",
    "dhanfeed_renew_last_exit_code",
    "dhanfeed_collector_last_data_timestamp_seconds",
    "dhanfeed_collector_sockets_live",
    "dhanfeed_collector_packets_total",
    "dhanfeed_collector_up",
}
FOREIGN_METRICS = {"up", "node_textfile_mtime_seconds"}  # Prometheus's and node_exporter's
PROMQL_WORDS = {"and", "or", "unless", "on", "ignoring", "by", "without"}
PROMQL_FUNCTIONS = {"time", "hour", "minute", "day_of_week", "absent", "rate"}
ALERT_NAMES = {
    "DhanfeedTokenExpiringSoon",
    "DhanfeedRenewalFailing",
    "DhanfeedRenewalNeedsAttention",
    "DhanfeedRenewalNotRunning",
    "DhanfeedCollectorDown",
    "DhanfeedCollectorMetricsAbsent",
    "DhanfeedFeedStale",
}


def find_tool(name: str) -> str | None:
    """`name` on PATH, or in the sbin/lib directories a non-root PATH often lacks."""
    found = shutil.which(name)
    if found:
        return found
    for directory in ("/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/lib/systemd"):
        candidate = Path(directory, name)
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LC_ALL": "C", "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": ""}
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, **kwargs)


# --- systemd units ------------------------------------------------------------------------


def parse_unit(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for every directive, in order; keys may repeat."""
    directives, section = [], ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"line {number}: keep directives on one line"
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, sep, value = line.partition("=")
        assert sep, f"line {number}: not a directive: {raw!r}"
        directives.append((section, key.strip(), value.strip()))
    return directives


def unit(name: str) -> dict[str, list[str]]:
    """Key → all its values (`Section.Key`), for one unit file of the repository."""
    values: dict[str, list[str]] = {}
    for section, key, value in parse_unit((SYSTEMD / name).read_text(encoding="utf-8")):
        values.setdefault(f"{section}.{key}", []).append(value)
    return values


def one(values: dict[str, list[str]], key: str) -> str:
    assert len(values.get(key, [])) == 1, f"expected exactly one {key}, got {values.get(key)}"
    return values[key][0]


def seconds(span: str) -> float:
    """A systemd time span ("5min", "30s", "1h 30min") in seconds."""
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", span)
    assert parts and re.fullmatch(r"(\s*\d+(\.\d+)?\s*[a-z]*)+\s*", span), span
    return sum(float(n) * units[u or "s"] for n, u in parts)


def render_units(directory: Path, *, break_with: tuple[str, str] | None = None) -> list[Path]:
    """Copies of the units with /opt/dhanfeed pointing at this checkout.

    `systemd-analyze verify` checks that every Exec*= binary exists and is executable, so
    the install path is replaced by the real checkout (whose bin/renew_token and
    bin/collector are the programs the units run). User=dhanfeed is kept: verify does not
    resolve user names (systemd 252), so the missing account on a test machine hides
    nothing and changes nothing. `break_with=(old, new)` plants a fault for the control test.
    """
    paths = []
    for name in UNITS:
        text = (SYSTEMD / name).read_text(encoding="utf-8").replace(INSTALL, str(REPO))
        if break_with:
            text = text.replace(*break_with)
        path = directory / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def verify_problems(paths: list[Path]) -> tuple[int, list[str]]:
    """Exit code and the lines of `systemd-analyze verify` that concern our units.

    On a full system verify may also grumble about unrelated installed units; only lines
    naming one of ours (or the temporary directory) count.
    """
    tool = find_tool("systemd-analyze")
    if tool is None:
        pytest.skip(
            "systemd-analyze not found: install Debian's 'systemd' package "
            "(apt-get install systemd; .ci/run does) to verify the units"
        )
    result = run([tool, "verify", *map(str, paths)], cwd=paths[0].parent)
    ours = (str(paths[0].parent), *UNITS)
    lines = (result.stdout + result.stderr).splitlines()
    return result.returncode, [line for line in lines if any(mark in line for mark in ours)]


def test_all_three_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    code, problems = verify_problems(render_units(tmp_path))
    assert (code, problems) == (0, [])


def test_the_verify_check_reports_a_misspelt_directive(tmp_path: Path) -> None:
    # Control: verify only warns (exit 0) on an unknown key, so the line filter must see it.
    code, problems = verify_problems(render_units(tmp_path, break_with=("Restart=", "Restrat=")))
    assert any("Restrat" in line for line in problems), problems


def test_the_verify_check_reports_a_missing_executable(tmp_path: Path) -> None:
    paths = render_units(tmp_path, break_with=("/bin/collector ", "/bin/no_such_collector "))
    code, problems = verify_problems(paths)
    assert code != 0 and any("no_such_collector" in line for line in problems), problems


def enabled_links(root: Path, name: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """`systemctl --root=root enable name` with our units installed under root; the
    *.wants links it created, relative to /etc/systemd/system."""
    tool = find_tool("systemctl")
    if tool is None:
        pytest.skip("systemctl not found: install Debian's 'systemd' package (.ci/run does)")
    system = root / "etc/systemd/system"
    system.mkdir(parents=True, exist_ok=True)
    for unit_name in UNITS:
        shutil.copy(SYSTEMD / unit_name, system / unit_name)
    result = run([tool, f"--root={root}", "enable", name])
    links = sorted(str(p.relative_to(system)) for p in system.glob("*.wants/*") if p.is_symlink())
    return result, links


@pytest.mark.parametrize(
    ("name", "link"),
    [
        ("dhanfeed-collector.service", "multi-user.target.wants/dhanfeed-collector.service"),
        ("dhanfeed-renew.timer", "timers.target.wants/dhanfeed-renew.timer"),
        # the service runs from the timer: enabling it enables the timer (Also=)
        ("dhanfeed-renew.service", "timers.target.wants/dhanfeed-renew.timer"),
        ("dhanfeed-backfill.service", "timers.target.wants/dhanfeed-backfill.timer"),
        ("dhanfeed-reconcile.timer", "timers.target.wants/dhanfeed-reconcile.timer"),
    ],
)
def test_systemctl_enable_links_every_unit_into_the_boot(
    tmp_path: Path, name: str, link: str
) -> None:
    result, links = enabled_links(tmp_path, name)
    assert result.returncode == 0, result.stderr
    assert links == [link]


def test_unit_comments_point_at_readme_sections_that_exist() -> None:
    headings = {
        line.lstrip("#").strip()
        for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }
    for name in UNITS:
        for section in re.findall(r'README, "([^"]+)"', (SYSTEMD / name).read_text()):
            assert section in headings, f"{name} points at a README section {section!r}"


def test_the_collector_unit_speaks_of_no_renewal_of_its_own() -> None:
    # The collector never renews: no comment may promise a fallback renew_token run, and
    # the renewer's lock is held by renew_token runs only.
    assert "renew_token` run" not in (SYSTEMD / "dhanfeed-collector.service").read_text()
    renew = (SYSTEMD / "dhanfeed-renew.service").read_text()
    holders = re.search(r"# 75 = (.*?)holds", renew, re.S)
    assert holders and "collector" not in holders.group(1)


def test_renewal_is_a_oneshot_that_counts_a_busy_lock_as_success() -> None:
    service = unit("dhanfeed-renew.service")
    assert one(service, "Service.Type") == "oneshot"
    assert str(int(ExitCode.LOCKED)) in one(service, "Service.SuccessExitStatus").split()
    # 1 and 3 must stay failures, visible to `systemctl --failed`.
    assert not {"1", "3"} & set(one(service, "Service.SuccessExitStatus").split())
    assert 0 < seconds(one(service, "Service.TimeoutStartSec")) <= 3600


def test_renewal_loads_pin_and_totp_seed_as_systemd_credentials() -> None:
    credentials = dict(
        v.split(":", 1) for v in unit("dhanfeed-renew.service")["Service.LoadCredential"]
    )
    assert credentials == {
        "dhan_pin": "/etc/dhanfeed/dhan_pin",
        "dhan_totp_secret": "/etc/dhanfeed/dhan_totp_secret",
    }
    assert "Service.LoadCredential" not in unit("dhanfeed-collector.service")


def test_timer_runs_hourly_catches_up_and_spreads_the_start_a_little() -> None:
    timer = unit("dhanfeed-renew.timer")
    assert one(timer, "Timer.OnCalendar") == "hourly"
    assert one(timer, "Timer.Persistent") == "true"
    assert 0 < seconds(one(timer, "Timer.RandomizedDelaySec")) <= 15 * 60
    assert one(timer, "Timer.Unit") == "dhanfeed-renew.service"
    assert one(timer, "Install.WantedBy") == "timers.target"


@pytest.mark.parametrize("name", ["dhanfeed-backfill.service", "dhanfeed-reconcile.service"])
def test_backfill_runs_are_oneshots_that_count_a_busy_lock_as_success(name: str) -> None:
    service = unit(name)
    assert one(service, "Service.Type") == "oneshot"
    assert one(service, "Service.SuccessExitStatus") == str(int(ExitCode.LOCKED))
    assert 0 < seconds(one(service, "Service.TimeoutStartSec")) <= 3600
    reconciles = "--reconcile" in one(service, "Service.ExecStart").split()
    assert reconciles == (name == "dhanfeed-reconcile.service")


def test_backfill_heals_every_15_minutes_in_the_session_and_reconciles_after_the_close() -> None:
    heal = unit("dhanfeed-backfill.timer")
    assert one(heal, "Timer.OnCalendar") == "Mon..Fri *-*-* 09..15:00/15:00 Asia/Kolkata"
    assert one(heal, "Timer.Unit") == "dhanfeed-backfill.service"
    reconcile = unit("dhanfeed-reconcile.timer")
    assert one(reconcile, "Timer.OnCalendar") == "Mon..Fri *-*-* 16:00:00 Asia/Kolkata"
    assert one(reconcile, "Timer.Unit") == "dhanfeed-reconcile.service"
    tool = find_tool("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not found: install Debian's 'systemd' package")
    for timer in (heal, reconcile):  # systemd accepts the calendar, time zone included
        result = run([tool, "calendar", one(timer, "Timer.OnCalendar")])
        assert result.returncode == 0, result.stderr


def test_collector_restarts_always_and_outlasts_its_own_stop_budget() -> None:
    service = unit("dhanfeed-collector.service")
    assert one(service, "Service.Restart") == "always"
    assert seconds(one(service, "Service.RestartSec")) >= 1
    assert seconds(one(service, "Service.TimeoutStopSec")) > COLLECTOR_STOP_BUDGET_S
    assert "--log-stdout" in one(service, "Service.ExecStart").split()
    no_restart = set(one(service, "Service.RestartPreventExitStatus").split())
    assert {
        str(int(code)) for code in (ExitCode.USAGE, ExitCode.INTERNAL, ExitCode.LOCKED)
    } <= no_restart


@pytest.mark.parametrize("name", SERVICES)
def test_services_are_hardened_but_may_write_state_data_and_logs(name: str) -> None:
    service = unit(name)
    for key, value in {
        "NoNewPrivileges": "true",
        "ProtectSystem": "strict",
        "PrivateTmp": "true",
        "ProtectHome": "true",
        "User": "dhanfeed",
        "WorkingDirectory": INSTALL,
    }.items():
        assert one(service, f"Service.{key}") == value, key
    writable = {f"{INSTALL}/{d}" for d in ("state", "data", "logs")}
    assert set(" ".join(service["Service.ReadWritePaths"]).split()) == writable
    # A fresh checkout lacks state/ and data/; ReadWritePaths= fails on a missing path,
    # so a privileged ("+") ExecStartPre creates them before the sandboxed ExecStart.
    created = set()
    for command in service["Service.ExecStartPre"]:
        assert command.startswith("+/usr/bin/install -d "), command
        created |= {word for word in command.split() if word.startswith(INSTALL)}
    assert created == writable


@pytest.mark.parametrize("name", SERVICES)
def test_services_run_the_checkout_binaries_with_flags_they_accept(name: str) -> None:
    service = unit(name)
    program, *args = one(service, "Service.ExecStart").split()
    assert program.startswith(f"{INSTALL}/bin/")
    binary = REPO / program.removeprefix(f"{INSTALL}/")
    assert binary.is_file() and os.access(binary, os.X_OK), binary
    check_flags(binary.name, args)
    config = args[args.index("--config") + 1]
    assert f"DHANFEED_CONFIG={config}" in service["Service.Environment"]
    assert config == f"{INSTALL}/config.toml"


def check_flags(program: str, args: list[str]) -> None:
    words = iter(args)
    for word in words:
        assert word in FLAGS[program], f"{program} has no flag {word}"
        if word in FLAGS_WITH_VALUE:
            next(words)


OBVIOUS = {"Description", "Documentation", "WantedBy", "Unit", "User", "Group", "OnCalendar"}


@pytest.mark.parametrize("name", UNITS)
def test_every_non_obvious_directive_sits_under_a_comment(name: str) -> None:
    # A directive is explained when a comment starts its block (consecutive lines, no
    # blank line or section header in between); a short list of self-explaining keys
    # is exempt.
    unexplained, commented = [], False
    for raw in (SYSTEMD / name).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("["):
            commented = False
        elif line.startswith("#"):
            commented = True
        elif not commented and line.partition("=")[0] not in OBVIOUS:
            unexplained.append(line)
    assert unexplained == []


# --- crontab.example ----------------------------------------------------------------------

CRON_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day", 1, 31),
    ("month", 1, 12),
    ("weekday", 0, 7),
)
ENV_LINE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*")


def cron_field_ok(field: str, low: int, high: int) -> bool:
    for item in field.split(","):
        match = re.fullmatch(r"(\*|(\d+)(?:-(\d+))?)(?:/(\d+))?", item)
        if not match:
            return False
        _, start, end, step = match.groups()
        if step is not None and int(step) == 0:
            return False
        if start is not None:
            first, last = int(start), int(end if end is not None else start)
            if not low <= first <= last <= high:
                return False
    return True


def cron_schedule_ok(fields: list[str]) -> bool:
    return len(fields) == 5 and all(
        cron_field_ok(field, low, high)
        for field, (_, low, high) in zip(fields, CRON_FIELDS, strict=True)
    )


def crontab_entries() -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Environment lines and (schedule, command) entries of crontab.example."""
    env, jobs = {}, []
    for raw in CRONTAB.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if ENV_LINE.fullmatch(line) and not line.startswith("@"):
            name, _, value = line.partition("=")
            env[name] = value
            continue
        if line.startswith("@"):
            schedule, _, command = line.partition(" ")
            assert schedule == "@reboot", f"unexpected special schedule: {line}"
        else:
            fields = line.split(None, 5)
            assert cron_schedule_ok(fields[:5]), f"bad schedule: {line}"
            schedule, command = " ".join(fields[:5]), fields[5]
        jobs.append((schedule, command.strip()))
    return env, jobs


@pytest.mark.parametrize(
    ("fields", "ok"),
    [
        ("17 * * * *", True),
        ("*/5 9-15 * * 1-5", True),
        ("0,30 0 1 1 7", True),
        ("60 * * * *", False),
        ("* 24 * * *", False),
        ("* * 0 * *", False),
        ("*/0 * * * *", False),
        ("* * * *", False),
        ("5-1 * * * *", False),
        ("@hourly * * * *", False),
    ],
)
def test_the_cron_schedule_check_tells_good_from_bad(fields: str, ok: bool) -> None:
    assert cron_schedule_ok(fields.split()) is ok


def test_crontab_sets_path_and_the_config_for_its_jobs() -> None:
    env, _ = crontab_entries()
    assert {"/usr/bin", "/bin"} <= set(env["PATH"].split(":"))
    assert env["DHANFEED_CONFIG"] == f"{INSTALL}/config.toml"


def test_crontab_jobs_run_existing_binaries_from_the_checkout_into_logs() -> None:
    _, jobs = crontab_entries()
    assert jobs
    for _, command in jobs:
        assert "%" not in command, "cron turns % into a newline"
        match = re.fullmatch(
            rf"cd {re.escape(INSTALL)} && (bin/\w+)((?: \S+)*) >> (\S+) 2>&1", command
        )
        assert match, f"expected 'cd {INSTALL} && bin/… >> logs/… 2>&1': {command}"
        program, args, output = match.groups()
        binary = REPO / program
        assert binary.is_file() and os.access(binary, os.X_OK), binary
        check_flags(binary.name, args.split())
        assert output.startswith("logs/") and (REPO / "logs").is_dir(), output
    programs = {(s, c.split("&& ")[1].split()[0]) for s, c in jobs}
    hourly = [
        s for s, p in programs if p == "bin/renew_token" and re.fullmatch(r"\d+ \* \* \* \*", s)
    ]
    assert len(hourly) == 1, jobs
    assert ("@reboot", "bin/collector") in programs
    heals = [s for s, p in programs if p == "bin/backfill" and s.startswith("*/15 ")]
    assert heals, "backfill heals every 15 minutes in the session"
    reconcile = [c for _, c in jobs if "bin/backfill" in c and "--reconcile" in c.split()]
    assert len(reconcile) == 1, "one reconciliation a day after the close"
    # @reboot is for the collector only (the renewal runs hourly and catches up by itself).
    assert {p for s, p in programs if s == "@reboot"} == {"bin/collector"}


def test_every_crontab_line_is_explained_by_a_comment_above_it() -> None:
    previous = ""
    for line in CRONTAB.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            assert previous.lstrip().startswith("#"), f"no comment above: {line}"
        previous = line


# --- logrotate ----------------------------------------------------------------------------


def render_logrotate(tmp_path: Path) -> tuple[str, Path, Path]:
    """logrotate, a copy of the example aimed at tmp_path/logs, and its state file.

    Adjusted in the copy: the install path (→ tmp_path) and `dhanfeed dhanfeed` (→ the
    current user and group, which exist; `su` is dropped when not root, as only root may
    switch users).
    """
    tool = find_tool("logrotate")
    if tool is None:
        pytest.skip("logrotate not found: install Debian's 'logrotate' package to check it")
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    text = LOGROTATE.read_text(encoding="utf-8").replace(INSTALL, str(tmp_path))
    text = text.replace("dhanfeed dhanfeed", f"{user} {group}")
    if os.getuid() != 0:
        text = re.sub(r"(?m)^\s*su .*$", "", text)
    config = tmp_path / "logrotate.conf"
    config.write_text(text, encoding="utf-8")
    config.chmod(0o644)  # logrotate ignores group/world-writable configs
    (tmp_path / "logs").mkdir()
    return tool, config, tmp_path / "logrotate.status"


def test_logrotate_example_parses_without_errors(tmp_path: Path) -> None:
    tool, config, status = render_logrotate(tmp_path)
    for name in ("renew_token.log", "collector.log", "renew_token.out", "collector.out"):
        (tmp_path / "logs" / name).write_text("a line\n", encoding="utf-8")
    result = run([tool, "-d", "-s", str(status), str(config)])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert (result.returncode, errors) == (0, [])
    # Both stanzas matched real files (a wrong path would match nothing and still pass).
    for name in ("renew_token.log", "collector.out"):
        assert f"considering log {tmp_path}/logs/{name}" in result.stderr


LOGGER_CHILD = textwrap.dedent(
    """
    import logging, sys
    from pathlib import Path
    from dhanfeed.logs import setup_logging

    setup_logging("collector", Path(sys.argv[1]))
    for line in sys.stdin:
        logging.getLogger("dhanfeed.deploy_test").info(line.strip())
        print("logged", flush=True)
    """
)


def test_a_running_process_keeps_logging_into_the_new_file_after_rotation(tmp_path: Path) -> None:
    # The claim behind "no copytruncate" in the example: dhanfeed's own handler reopens
    # logs/<name>.log after logrotate moved it away. A real second process holds the file.
    tool, config, status = render_logrotate(tmp_path)
    logs = tmp_path / "logs"
    child = subprocess.Popen(
        [sys.executable, "-c", LOGGER_CHILD, str(logs)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:

        def log(message: str) -> None:
            child.stdin.write(message + "\n")
            child.stdin.flush()
            assert child.stdout.readline() == "logged\n"

        log("before rotation")
        result = run([tool, "-f", "-s", str(status), str(config)])
        assert result.returncode == 0, result.stderr
        log("after rotation")
    finally:
        child.stdin.close()
        child.wait(timeout=30)
        child.stdout.close()
    rotated = [p for p in logs.iterdir() if p.name.startswith("collector.log-")]
    assert len(rotated) == 1, sorted(p.name for p in logs.iterdir())
    current = [
        json.loads(line)["message"] for line in (logs / "collector.log").read_text().splitlines()
    ]
    old = [json.loads(line)["message"] for line in rotated[0].read_text().splitlines()]
    assert (old, current) == (["before rotation"], ["after rotation"])


def test_a_held_open_cron_output_file_is_truncated_in_place(tmp_path: Path) -> None:
    # collector.out is the @reboot collector's stdout, opened for appending by cron's
    # shell and never reopened: copytruncate must leave writes landing at the new end.
    tool, config, status = render_logrotate(tmp_path)
    out = tmp_path / "logs" / "collector.out"
    with out.open("a", encoding="utf-8") as held:
        held.write("before rotation\n")
        held.flush()
        result = run([tool, "-f", "-s", str(status), str(config)])
        assert result.returncode == 0, result.stderr
        held.write("after rotation\n")
    rotated = [p for p in out.parent.iterdir() if p.name.startswith("collector.out-")]
    assert [p.read_text() for p in rotated] == ["before rotation\n"]
    assert out.read_text() == "after rotation\n"


# --- Prometheus alert rules ---------------------------------------------------------------


class YamlSubsetError(ValueError):
    pass


def parse_yaml_subset(text: str) -> object:
    """The block-style YAML the alert file uses, strictly (PyYAML is not a dependency).

    Mappings, sequences of mappings, plain / single- / double-quoted scalars, literal
    block scalars (`|`, `|-`) and full-line comments. Anything else is an error rather
    than a guess, so the file cannot drift into syntax this check would misread.
    """
    lines = text.splitlines()
    pos = 0

    def indent(line: str) -> int:
        if "\t" in line[: len(line) - len(line.lstrip())]:
            raise YamlSubsetError(f"line {pos + 1}: tab in indentation")
        return len(line) - len(line.lstrip(" "))

    def skip() -> None:
        nonlocal pos
        while pos < len(lines) and (not lines[pos].strip() or lines[pos].lstrip()[0] == "#"):
            pos += 1

    def scalar(raw: str) -> object:
        if raw.startswith('"'):
            if not raw.endswith('"') or len(raw) < 2:
                raise YamlSubsetError(f"line {pos}: unterminated string")
            return json.loads(raw)
        if raw.startswith("'"):
            if not raw.endswith("'") or len(raw) < 2:
                raise YamlSubsetError(f"line {pos}: unterminated string")
            return raw[1:-1].replace("''", "'")
        if raw[0] in "[]{}&*!|>%@`#" or ": " in raw or " #" in raw:
            raise YamlSubsetError(f"line {pos}: unsupported scalar {raw!r}")
        return int(raw) if re.fullmatch(r"-?\d+", raw) else raw

    def block_scalar(parent: int, style: str) -> str:
        nonlocal pos
        body: list[str] = []
        while pos < len(lines) and (not lines[pos].strip() or indent(lines[pos]) > parent):
            body.append(lines[pos])
            pos += 1
        while body and not body[-1].strip():
            body.pop()
        if not body:
            raise YamlSubsetError(f"line {pos}: empty block scalar")
        margin = indent(body[0])
        text = "\n".join(line[margin:] for line in body)
        return text if style == "|-" else text + "\n"

    def node() -> object:
        skip()
        if pos >= len(lines):
            raise YamlSubsetError("unexpected end of file")
        if lines[pos].lstrip().startswith("- "):
            return sequence(indent(lines[pos]))
        return mapping(indent(lines[pos]))

    def sequence(level: int) -> list[object]:
        nonlocal pos
        items = []
        while True:
            skip()
            if pos >= len(lines) or indent(lines[pos]) < level:
                return items
            line = lines[pos]
            if indent(line) > level or not line.lstrip().startswith("- "):
                raise YamlSubsetError(f"line {pos + 1}: expected '- ' at column {level}")
            lines[pos] = " " * (level + 2) + line[level + 2 :]  # the item is a mapping
            items.append(mapping(level + 2))

    def mapping(level: int) -> dict[str, object]:
        nonlocal pos
        result: dict[str, object] = {}
        while True:
            skip()
            if pos >= len(lines) or indent(lines[pos]) < level:
                return result
            line = lines[pos]
            if indent(line) > level:
                raise YamlSubsetError(f"line {pos + 1}: unexpected indentation")
            match = re.fullmatch(r"([A-Za-z_][\w-]*):(?: (.*))?", line.strip())
            if not match:
                raise YamlSubsetError(f"line {pos + 1}: expected 'key: value': {line!r}")
            key, raw = match.group(1), (match.group(2) or "").strip()
            if key in result:
                raise YamlSubsetError(f"line {pos + 1}: duplicate key {key}")
            pos += 1
            if raw in ("|", "|-"):
                result[key] = block_scalar(level, raw)
            elif raw:
                result[key] = scalar(raw)
            else:
                skip()
                if pos >= len(lines) or indent(lines[pos]) <= level:
                    raise YamlSubsetError(f"line {pos}: {key} has no value")
                result[key] = node()

    document = node()
    skip()
    if pos != len(lines):
        raise YamlSubsetError(f"line {pos + 1}: unexpected content")
    return document


def load_alerts() -> dict[str, object]:
    text = ALERTS.read_text(encoding="utf-8")
    try:
        import yaml  # only where it happens to be installed
    except ImportError:
        return parse_yaml_subset(text)
    return yaml.safe_load(text)


def alert_rules() -> list[dict[str, object]]:
    return [rule for group in load_alerts()["groups"] for rule in group["rules"]]


def test_the_subset_parser_reads_the_alert_file_as_pyyaml_does() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (not a dependency)")
    text = ALERTS.read_text(encoding="utf-8")
    assert parse_yaml_subset(text) == yaml.safe_load(text)


@pytest.mark.parametrize(
    "text",
    [
        "a: {b: 1}\n",
        "a:\n  - b: 1\n   c: 2\n",
        "a: 1\na: 2\n",
        "a: >\n  folded\n",
        "a: &anchor 1\n",
        'a: "open\n',
        "a:\n",
    ],
)
def test_the_subset_parser_refuses_what_it_does_not_understand(text: str) -> None:
    with pytest.raises(YamlSubsetError):
        parse_yaml_subset(text)


def test_the_subset_parser_reads_nested_rules() -> None:
    text = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: |\n          x > 1\n"
    assert parse_yaml_subset(text) == {
        "groups": [{"name": "g", "rules": [{"alert": "A", "expr": "x > 1\n"}]}]
    }


def test_alert_rules_have_the_expected_names_and_a_routable_shape() -> None:
    document = load_alerts()
    assert set(document) == {"groups"}
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} == ALERT_NAMES
    for group in document["groups"]:
        assert set(group) == {"name", "rules"} and group["rules"]
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["for"]
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert set(rule["annotations"]) == {"summary", "description", "runbook"}
        assert all(isinstance(v, str) and v.strip() for v in rule["annotations"].values())
    # An alert name repeats only to escalate: once per severity.
    pairs = [(rule["alert"], rule["labels"]["severity"]) for rule in rules]
    assert len(pairs) == len(set(pairs))


def promql_names(expr: str) -> set[str]:
    """Identifiers of an expression, leaving out strings, label matchers and ranges."""
    depth = {"(": 0, "{": 0, "[": 0}
    closers = {")": "(", "}": "{", "]": "["}
    for char in re.sub(r'"(?:\\.|[^"\\])*"', '""', expr):
        if char in depth:
            depth[char] += 1
        elif char in closers:
            depth[closers[char]] -= 1
            assert depth[closers[char]] >= 0, f"unbalanced {char} in {expr}"
    assert all(v == 0 for v in depth.values()), f"unbalanced brackets in {expr}"
    bare = re.sub(r'"(?:\\.|[^"\\])*"', "", expr)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", bare)
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_:]*", bare))


def test_alert_expressions_use_only_the_metric_names_the_code_exports() -> None:
    used: set[str] = set()
    for rule in alert_rules():
        names = promql_names(rule["expr"])
        unknown = names - METRICS - FOREIGN_METRICS - PROMQL_WORDS - PROMQL_FUNCTIONS
        assert not unknown, f"{rule['alert']}: unknown names {unknown}"
        used |= names
    assert METRICS <= used, f"metrics no alert watches: {METRICS - used}"


def test_the_metric_name_check_catches_a_typo() -> None:
    names = promql_names('dhanfeed_colector_up{job="x"} == 0 and on() hour() < 3')
    assert names - METRICS - PROMQL_WORDS - PROMQL_FUNCTIONS == {"dhanfeed_colector_up"}


def test_renewal_alerts_match_the_exit_code_table() -> None:
    exprs = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    failing = {int(n) for n in re.findall(r"== (\d+)", exprs["DhanfeedRenewalFailing"])}
    attention = {int(n) for n in re.findall(r"== (\d+)", exprs["DhanfeedRenewalNeedsAttention"])}
    assert failing == {ExitCode.RENEWAL_FAILED}
    assert attention == {ExitCode.USAGE, ExitCode.MANUAL_LOGIN}


def test_feed_stale_alert_watches_the_ist_session_on_weekdays_only() -> None:
    (expr,) = [rule["expr"] for rule in alert_rules() if rule["alert"] == "DhanfeedFeedStale"]
    start = int(re.search(r"minute\(\) >= (\d+)", expr).group(1))
    end = int(re.search(r"minute\(\) < (\d+)", expr).group(1))
    assert "day_of_week() >= 1" in expr and "day_of_week() <= 5" in expr

    def ist(minute_of_utc_day: int) -> dt.time:
        utc = dt.datetime(2025, 1, 6, tzinfo=dt.UTC) + dt.timedelta(minutes=minute_of_utc_day)
        return utc.astimezone(zoneinfo.ZoneInfo("Asia/Kolkata")).time()

    # Opens a few minutes after 09:15 IST (first ticks), closes at 15:30 IST, same day.
    assert dt.time(9, 15) <= ist(start) <= dt.time(9, 30)
    assert ist(end) == dt.time(15, 30)


# promtool (Debian's `prometheus` package), where installed, evaluates the rules against
# synthetic series. Its clock starts at 1970-01-01 00:00 UTC, a Thursday.
def promtool_scenarios() -> list[dict[str, object]]:
    def series(name: str, labels: str, values: str) -> dict[str, str]:
        return {"series": f"{name}{{{labels}}}", "values": values}

    def alerts(at: str, name: str, *expected: dict[str, str]) -> dict[str, object]:
        return {
            "eval_time": at,
            "alertname": name,
            "exp_alerts": [{"exp_labels": e} for e in expected],
        }

    long = "x3200"  # 1-minute samples for two days and a bit
    collector = 'instance="c", job="dhanfeed-collector"'
    healthy = 'instance="ok", job="dhanfeed-collector"'
    renewer = 'instance="r"'
    textfiles = "/var/lib/prometheus/node-exporter"
    stale_file = f'file="{textfiles}/collector-1000000001.prom", instance="n", job="node"'
    fresh_file = f'file="{textfiles}/collector-1000000002.prom", instance="n", job="node"'
    input_series = [
        series("dhanfeed_token_expiry_timestamp_seconds", renewer, f"3000+0{long}"),  # 00:50
        series("dhanfeed_renew_last_exit_code", renewer, f"1+0{long}"),
        series("dhanfeed_renew_last_success_timestamp_seconds", renewer, f"0+0{long}"),
        series("up", collector, f"1 1 1 0+0{long}"),  # the scrape fails from 00:03
        series("dhanfeed_collector_up", collector, f"1+0{long}"),
        series("dhanfeed_collector_sockets_live", collector, f"1+0{long}"),
        series("dhanfeed_collector_last_data_timestamp_seconds", collector, f"0+0{long}"),
        series("dhanfeed_collector_packets_total", collector, f"5+0{long}"),
        series("dhanfeed_collector_up", healthy, f"1+0{long}"),
        series("dhanfeed_collector_sockets_live", healthy, f"2+0{long}"),
        series("dhanfeed_collector_last_data_timestamp_seconds", healthy, f"0+60{long}"),
        series("dhanfeed_collector_packets_total", healthy, f"0+300{long}"),
        # Textfile mode: one account's file stops being rewritten, the other's is fresh.
        series("node_textfile_mtime_seconds", stale_file, f"0+0{long}"),
        series("node_textfile_mtime_seconds", fresh_file, f"0+60{long}"),
    ]
    r, c = {"instance": "r"}, {"instance": "c", "job": "dhanfeed-collector"}
    warning, critical = {"severity": "warning"}, {"severity": "critical"}
    checks = [
        alerts("10m", "DhanfeedTokenExpiringSoon", {**r, **warning}),  # 40 min left
        alerts("45m", "DhanfeedTokenExpiringSoon", {**r, **warning}, {**r, **critical}),
        alerts("60m", "DhanfeedRenewalFailing"),  # one hourly failure is not yet an alert
        alerts("2h", "DhanfeedRenewalFailing", {**r, **warning}),
        alerts("2h", "DhanfeedRenewalNeedsAttention"),
        alerts("2h", "DhanfeedRenewalNotRunning"),
        alerts("4h", "DhanfeedRenewalNotRunning", {**r, **warning}),
        alerts("1m", "DhanfeedCollectorDown"),
        alerts(
            "10m",
            "DhanfeedCollectorDown",
            {**c, **critical},
            {
                "file": f"{textfiles}/collector-1000000001.prom",
                "instance": "n",
                "job": "node",
                **critical,
            },
        ),  # fmt: skip
        alerts("10m", "DhanfeedCollectorMetricsAbsent"),
        alerts("2h", "DhanfeedFeedStale"),  # 07:30 IST: before the session
        alerts("4h", "DhanfeedFeedStale", {**c, **critical}),  # 09:30 IST Thursday
        alerts("10h30m", "DhanfeedFeedStale"),  # 16:00 IST: after the close
        alerts("52h", "DhanfeedFeedStale"),  # 09:30 IST Saturday
    ]
    return [{"interval": "1m", "input_series": input_series, "alert_rule_test": checks}]


def run_promtool_tests(
    tmp_path: Path, scenarios: list[dict[str, object]]
) -> subprocess.CompletedProcess[str]:
    tool = find_tool("promtool")
    if tool is None:
        pytest.skip(
            "promtool not found: install Debian's 'prometheus' package to evaluate the rules"
        )
    # The same groups, names, expressions, `for` and labels; annotations dropped because
    # promtool would compare their rendered text too. JSON is valid YAML for promtool.
    groups = load_alerts()["groups"]
    for group in groups:
        for rule in group["rules"]:
            del rule["annotations"]
    (tmp_path / "rules.yml").write_text(json.dumps({"groups": groups}), encoding="utf-8")
    tests = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": scenarios}
    (tmp_path / "tests.yml").write_text(json.dumps(tests), encoding="utf-8")
    assert run([tool, "check", "rules", str(ALERTS)]).returncode == 0
    return run([tool, "test", "rules", "tests.yml"], cwd=tmp_path)


def test_alert_rules_fire_when_and_only_when_they_should(tmp_path: Path) -> None:
    result = run_promtool_tests(tmp_path, promtool_scenarios())
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_promtool_check_fails_on_a_wrong_expectation(tmp_path: Path) -> None:
    # A stale feed at 02:00 UTC (07:30 IST) is outside the session: expecting it must fail.
    stale = {"series": "dhanfeed_collector_last_data_timestamp_seconds", "values": "0+0x150"}
    wrong = {
        "eval_time": "2h",
        "alertname": "DhanfeedFeedStale",
        "exp_alerts": [{"exp_labels": {"severity": "critical"}}],
    }
    scenario = {"interval": "1m", "input_series": [stale], "alert_rule_test": [wrong]}
    result = run_promtool_tests(tmp_path, [scenario])
    assert result.returncode != 0 and "DhanfeedFeedStale" in result.stdout + result.stderr
