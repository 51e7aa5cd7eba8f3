"""The end-of-suite secrets scan (support/secret_scan.py, run by conftest's session fixture
after the last test) finds each kind of secret: proved here on planted files."""

from __future__ import annotations

import datetime as dt

from support.secret_scan import (
    PLANTED_DIRS,
    PLANTED_PIN,
    PLANTED_TOTP_SECRET,
    SCANNED,
    find_secrets,
    leaks,
    remember_secret,
)
from support.token_files import make_jwt


def test_the_scanner_finds_each_kind_of_planted_secret(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted-secrets")
    PLANTED_DIRS.add(root)  # the session's own scan leaves these alone
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


def test_the_session_scan_reports_a_leak_under_the_root_but_not_the_planted_files(tmp_path):
    token = make_jwt(exp=dt.datetime.now(dt.UTC))
    remember_secret(token)
    planted = tmp_path / "planted"
    planted.mkdir()
    (planted / "x.log").write_text(token)
    PLANTED_DIRS.add(planted)
    assert leaks(tmp_path) == []
    (tmp_path / "collector_status.json").write_text(f'{{"token": "{token}"}}')
    assert leaks(tmp_path) == [
        f"{tmp_path / 'collector_status.json'}: a JWT-shaped token",
        f"{tmp_path / 'collector_status.json'}: a token made by the tests",
    ]
    (tmp_path / "collector_status.json").unlink()  # or the session's own scan fails
