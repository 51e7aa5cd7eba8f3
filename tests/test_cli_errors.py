"""Every executable answers bad input with one line on stderr and exit 2, never a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIG_USERS = [
    "renew_token",
    "collector",
    "status",
    "export_candles",
    "sqlite_to_postgres",
    "backfill",
]
BAD_CONFIGS = {
    "missing": None,
    "not TOML": "[dhan\nclient_id = 1\n",
    "unknown key": '[dhan]\nclient_id = "1000000001"\ncolour = "blue"\n',
    "bad value": '[dhan]\nclient_id = "1000000001"\n[token]\nrenew_before = "soon"\n',
}


def run(program: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "bin" / program), *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("program", CONFIG_USERS)
@pytest.mark.parametrize("case", BAD_CONFIGS)
def test_a_bad_config_is_one_line_and_exit_2(tmp_path, program, case):
    config = tmp_path / "config.toml"
    if BAD_CONFIGS[case] is not None:
        config.write_text(BAD_CONFIGS[case])
    proc = run(program, "--config", str(config))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{program}: bad config {config}: "), proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("program", [*CONFIG_USERS, "dhan_sim", "demo"])
def test_an_unknown_option_is_one_line_and_exit_2(program):
    proc = run(program, "--no-such-option")
    assert proc.returncode == 2
    assert (
        proc.stderr.strip() == f"{program}: unrecognized arguments: --no-such-option (see --help)"
    )


@pytest.mark.parametrize("program", [*CONFIG_USERS, "dhan_sim", "demo"])
def test_help_explains_the_program(program):
    proc = run(program, "--help")
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage:") and "--help" in proc.stdout


@pytest.mark.parametrize("program", CONFIG_USERS)
def test_help_lists_the_exit_codes_the_program_uses(program):
    proc = run(program, "--help")
    assert "\nexit codes:\n" in proc.stdout
    assert "2 usage or configuration error" in proc.stdout


def test_sqlite_to_postgres_without_a_target_says_the_config_names_an_sqlite_file(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[dhan]\nclient_id = "1000000001"\n')
    proc = run("sqlite_to_postgres", "--config", str(config))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "sqlite_to_postgres: no --to URL, and the config's [collector] database is the SQLite"
        f" file {tmp_path / 'data' / 'candles.sqlite'}, not a postgresql:// URL:"
        " give --to postgresql://..."
    )


@pytest.mark.parametrize("program", [*CONFIG_USERS, "dhan_sim", "demo"])
def test_without_make_install_a_program_says_so_in_one_line(tmp_path, program):
    """A checkout without .venv and a python3 without the libraries: what to run, no traceback."""
    (tmp_path / "bin").mkdir()
    shutil.copy(ROOT / "bin" / program, tmp_path / "bin" / program)
    bare = tmp_path / "path" / "python3"  # a python3 that sees no site-packages
    bare.parent.mkdir()
    bare.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    bare.chmod(0o755)
    proc = subprocess.run(
        [str(tmp_path / "bin" / program), "--help"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PATH": f"{bare.parent}:/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"{program}: no .venv in {tmp_path.resolve()} and python3 lacks dhanfeed's libraries:"
        " run 'make install' there first"
    )
