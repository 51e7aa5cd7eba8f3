"""Helpers shared by the renew_token tests: JWT-shaped tokens, token files, configs."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import secrets
from pathlib import Path

from dhanfeed.token import Token, parse_token
from dhanfeed.token_store import TokenRecord, TokenStore

CLIENT_ID = "1000000001"
# Every secret a test hands to the code: the final scan looks for these in what was written.
PLANTED_PIN = "73194205"  # 8 digits: no timestamp in a log matches it by chance
PLANTED_TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
SECRETS_SEEN: set[str] = set()  # tokens made here, for the end-of-suite scan
SCAN_DIRS: set[Path] = set()  # directories whose logs, alerts and metrics get scanned


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def make_jwt(
    *,
    exp: dt.datetime,
    iat: dt.datetime | None = None,
    client_id: str = CLIENT_ID,
    kind: str = "SELF",
) -> str:
    iat = iat or exp - dt.timedelta(hours=24)
    payload = {
        "iss": "dhan",
        "partnerId": "",
        "exp": int(exp.timestamp()),
        "iat": int(iat.timestamp()),
        "tokenConsumerType": kind,
        "webhookUrl": "",
        "dhanClientId": client_id,
    }
    header = _b64(json.dumps({"typ": "JWT", "alg": "HS512"}).encode())
    raw = f"{header}.{_b64(json.dumps(payload).encode())}.{_b64(secrets.token_bytes(32))}"
    SECRETS_SEEN.add(raw)
    return raw


def make_token(**kw) -> Token:
    return parse_token(make_jwt(**kw))


def write_token_file(path: Path, token: Token, source: str = "manual") -> TokenRecord:
    record = TokenRecord.from_token(token, source, dt.datetime.now(dt.UTC))
    TokenStore(path).write(record)
    SECRETS_SEEN.add(token.access_token)
    return record


def remember_secret(text: str) -> None:
    SECRETS_SEEN.add(text)


def write_config(
    root: Path,
    *,
    api_base: str = "http://127.0.0.1:9",
    auth_base: str | None = None,
    extra: str = "",
    token: str = "",
    session: str = "days = []",
    timeout: str = "1s",
) -> Path:
    """A config in `root` with the state, logs and alert log all under it."""
    SCAN_DIRS.add(root)
    path = root / "config.toml"
    path.write_text(
        f"""[dhan]
client_id = "{CLIENT_ID}"
api_base = "{api_base}"
auth_base = "{auth_base or api_base}"
feed_url = "ws://127.0.0.1:9"
timeout = "{timeout}"

[token]
file = "state/token.json"
{token}

[session]
{session}

[logging]
dir = "logs"

[alerts]
log_file = "logs/token_alerts.log"
{extra}
""",
        encoding="utf-8",
    )
    return path


def file_state(path: Path) -> tuple[bytes, int] | None:
    """Content and inode: "untouched" means both are unchanged."""
    try:
        return path.read_bytes(), os.stat(path).st_ino
    except FileNotFoundError:
        return None


def alert_lines(root: Path) -> list[dict]:
    path = root / "logs" / "token_alerts.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
