"""The token watch: a replaced token file is noticed; unusable files are ignored."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from pathlib import Path

import pytest

from dhanfeed.feed.token_watch import TokenRejected, TokenWatcher, read_token_file

CLIENT = "1000000001"
NOW = dt.datetime(2026, 3, 2, 4, 0, tzinfo=dt.UTC)


def _b64(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def make_jwt(client_id: str = CLIENT, exp_in: float = 86400, nonce: str = "a") -> str:
    iat = int(NOW.timestamp())
    payload = {
        "iss": "dhan",
        "partnerId": "",
        "exp": int(iat + exp_in),
        "iat": iat,
        "tokenConsumerType": "SELF",
        "webhookUrl": "",
        "dhanClientId": client_id,
    }
    return f"{_b64({'typ': 'JWT', 'alg': 'HS512'})}.{_b64(payload)}.sig-{nonce}"


def record(access_token: str, client_id: str = CLIENT) -> str:
    """The token file's JSON, as design.md describes it."""
    expires = (NOW + dt.timedelta(days=1)).isoformat()
    return json.dumps({"client_id": client_id, "access_token": access_token, "expires_at": expires})


def write_token(path: Path, access_token: str, client_id: str = CLIENT, mode: int = 0o600) -> None:
    """Like the renewer: a temp file in the same directory, then rename over the old one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(record(access_token, client_id))
    os.chmod(tmp, mode)
    os.replace(tmp, path)


@pytest.fixture
def token_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "token.json"


def watcher_for(path: Path) -> TokenWatcher:
    return TokenWatcher(path, CLIENT, poll_s=0.02, clock=lambda: NOW)


def test_a_replaced_token_file_is_noticed_by_the_next_poll(token_path: Path) -> None:
    token_path.parent.mkdir()
    write_token(token_path, make_jwt(nonce="one"))
    watcher = watcher_for(token_path)
    first = watcher.check()
    assert first is not None and watcher.current == first
    assert watcher.check() is None  # unchanged file: nothing new

    write_token(token_path, make_jwt(nonce="two"))
    second = watcher.check()
    assert second is not None and second.fingerprint != first.fingerprint
    assert watcher.current == second


def test_the_watch_thread_reports_a_new_token_to_its_callback(token_path: Path) -> None:
    token_path.parent.mkdir()
    write_token(token_path, make_jwt(nonce="one"))
    seen = []
    watcher = watcher_for(token_path)
    watcher.on_change = seen.append
    watcher.check()
    watcher.start()
    try:
        write_token(token_path, make_jwt(nonce="two"))
        new = watcher.wait_for_change(seen[0].fingerprint, timeout=10)
    finally:
        watcher.stop()
    assert [t.access_token for t in seen] == [make_jwt(nonce="one"), make_jwt(nonce="two")]
    assert new is not None and new.access_token == make_jwt(nonce="two")


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"client_id": CLIENT}), "lacks access_token"),
        (record("abc"), "access_token is unreadable"),
        (record(make_jwt("2000000002"), "2000000002"), "belongs to client id 2000000002"),
        (record(make_jwt(exp_in=-60)), "expired"),
    ],
)
def test_an_unusable_file_is_ignored_and_the_token_in_use_stays(
    token_path: Path, content: str, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    token_path.parent.mkdir()
    write_token(token_path, make_jwt(nonce="good"))
    watcher = watcher_for(token_path)
    good = watcher.check()
    token_path.with_name("x").write_text(content)
    os.chmod(token_path.with_name("x"), 0o600)
    os.replace(token_path.with_name("x"), token_path)

    assert watcher.check() is None
    assert watcher.current == good
    assert why in caplog.text
    assert make_jwt(nonce="good") not in caplog.text
    with pytest.raises(TokenRejected, match=why.split()[0]):
        read_token_file(token_path, CLIENT, NOW)


def test_a_token_file_others_can_read_is_refused_like_renew_token_refuses_it(
    token_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token_path.parent.mkdir()
    write_token(token_path, make_jwt(nonce="good"))
    watcher = watcher_for(token_path)
    good = watcher.check()
    write_token(token_path, make_jwt(nonce="leaked"), mode=0o644)
    assert watcher.check() is None
    assert watcher.current == good
    assert "accessible by group or others" in caplog.text


def test_a_file_rewritten_with_the_same_token_is_not_a_change(token_path: Path) -> None:
    token_path.parent.mkdir()
    write_token(token_path, make_jwt(nonce="same"))
    watcher = watcher_for(token_path)
    watcher.check()
    write_token(token_path, make_jwt(nonce="same"))
    assert watcher.check() is None


def test_a_missing_file_is_waited_for_and_picked_up_when_it_appears(token_path: Path) -> None:
    watcher = watcher_for(token_path)
    assert watcher.check() is None
    assert watcher.missing and watcher.current is None
    token_path.parent.mkdir()
    write_token(token_path, make_jwt())
    assert watcher.check() is not None
    assert not watcher.missing


def test_reread_finds_a_new_token_even_when_the_stat_looks_unchanged(token_path: Path) -> None:
    token_path.parent.mkdir()
    write_token(token_path, make_jwt(nonce="one"))
    watcher = watcher_for(token_path)
    watcher.check()
    write_token(token_path, make_jwt(nonce="two"))
    new = watcher.reread()
    assert new is not None and new.access_token == make_jwt(nonce="two")
    assert watcher.reread() is None  # the same token again: nothing new
