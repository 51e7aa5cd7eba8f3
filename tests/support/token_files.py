"""JWT-shaped tokens and token files as the tests make them; every token made is registered
with the end-of-suite secrets scan."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import secrets
from pathlib import Path

from dhanfeed.token import Token, parse_token
from dhanfeed.token_store import TokenRecord, TokenStore
from support.secret_scan import SECRETS_SEEN

CLIENT_ID = "1000000001"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def make_jwt(
    *,
    exp: dt.datetime,
    iat: dt.datetime | None = None,
    client_id: str = CLIENT_ID,
    kind: str = "SELF",
    exp_claim: object = None,  # what the payload says instead of `exp` (10**12: year 33658)
) -> str:
    iat = iat or exp - dt.timedelta(hours=24)
    payload = {
        "iss": "dhan",
        "partnerId": "",
        "exp": int(exp.timestamp()) if exp_claim is None else exp_claim,
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


def file_state(path: Path) -> tuple[bytes, int] | None:
    """Content and inode: "untouched" means both are unchanged."""
    try:
        return path.read_bytes(), os.stat(path).st_ino
    except FileNotFoundError:
        return None


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)  # at use: the suite may reach a test minutes after import
