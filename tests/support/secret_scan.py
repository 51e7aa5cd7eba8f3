"""The end-of-suite secrets scan: every log, alert, metrics and status file that the suite
wrote under pytest's temporary root must be free of tokens, PINs and TOTP seeds.

Tests hand the code only the planted PIN and seed below, and register every token they make
with `remember_secret`; conftest's session fixture runs `leaks()` once all tests are done.
"""

from __future__ import annotations

import re
from pathlib import Path

PLANTED_PIN = "73194205"  # 8 digits: no timestamp in a log matches it by chance
PLANTED_TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
SECRETS_SEEN: set[str] = set()  # tokens the tests made
PLANTED_DIRS: set[Path] = set()  # where the scanner's own test plants secrets on purpose

# What counts as a log, an alert, metrics, a status or renew-state file (token files are meant to hold
# the token, and are not scanned).
SCANNED = (
    "*.log",
    "*.log.*",
    "*.prom",
    "*alerts*.json",
    "*status*.json",
    "*.state.json",
    "*.jsonl",
)
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+")


def remember_secret(text: str) -> None:
    SECRETS_SEEN.add(text)


def scanned_files(root: Path) -> list[Path]:
    files = {p for pattern in SCANNED for p in root.rglob(pattern) if p.is_file()}
    return sorted(p for p in files if not any(d in p.parents for d in PLANTED_DIRS))


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


def leaks(root: Path) -> list[str]:
    return find_secrets(scanned_files(root), set(SECRETS_SEEN))
