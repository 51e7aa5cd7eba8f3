"""Runs last (file order): every log, alert, metrics and status file that the suite wrote
under pytest's temporary root must be free of tokens, PINs and TOTP seeds.

The scanner first proves on planted files that it does find each kind of secret.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from renew_support import PLANTED_PIN, PLANTED_TOTP_SECRET, SECRETS_SEEN, make_jwt

# What counts as a log, an alert, metrics or a status file (token files are meant to hold
# the token, and are not scanned).
SCANNED = ("*.log", "*.log.*", "*.prom", "*alerts*.json", "*status*.json", "*.jsonl")
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+")
_planted_dirs: list[Path] = []


def scanned_files(root: Path) -> list[Path]:
    files = {p for pattern in SCANNED for p in root.rglob(pattern) if p.is_file()}
    return sorted(p for p in files if not any(d in p.parents for d in _planted_dirs))


def find_secrets(files: list[Path], secrets: set[str]) -> list[str]:
    """'<file>: <what>' for each leak; never the secret itself in the report."""
    pin = re.compile(rf"(?<!\d){re.escape(PLANTED_PIN)}(?!\d)")
    found = []
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        if JWT.search(text):
            found.append(f"{path}: a JWT-shaped token")
        if any(s in text for s in secrets):
            found.append(f"{path}: a token made by the tests")
        if pin.search(text):
            found.append(f"{path}: the PIN")
        if PLANTED_TOTP_SECRET in text or PLANTED_TOTP_SECRET.lower() in text:
            found.append(f"{path}: the TOTP seed")
    return found


def test_the_scanner_finds_each_kind_of_planted_secret(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted-secrets")
    _planted_dirs.append(root)
    token = make_jwt(exp=dt.datetime.now(dt.UTC))
    (root / "logs").mkdir()
    (root / "logs" / "renew_token.log").write_text(f'{{"message": "pin={PLANTED_PIN}"}}\n')
    (root / "logs" / "token_alerts.log").write_text(
        f'{{"message": "seed {PLANTED_TOTP_SECRET}"}}\n'
    )
    (root / "renew_token.prom").write_text(f'x{{t="{token}"}} 1\n')
    (root / "clean.log").write_text(
        '{"message": "fingerprint 0123456789ab, 2026-01-01T10:00:43.394929"}\n'
    )
    (root / "token.json").write_text(token)  # a token file: not scanned
    found = find_secrets(sorted(p for pat in SCANNED for p in root.rglob(pat)), {token})
    joined = "\n".join(found)
    assert "renew_token.log: the PIN" in joined
    assert "token_alerts.log: the TOTP seed" in joined
    assert "renew_token.prom: a JWT-shaped token" in joined
    assert "renew_token.prom: a token made by the tests" in joined
    assert "clean.log" not in joined and "token.json" not in joined
    assert token not in joined


def test_no_log_alert_or_metrics_file_written_by_the_suite_holds_a_secret(tmp_path_factory):
    root = tmp_path_factory.getbasetemp()
    files = scanned_files(root)
    if not files:
        pytest.skip("no other test wrote logs in this session (run the whole suite)")
    assert find_secrets(files, set(SECRETS_SEEN)) == []
