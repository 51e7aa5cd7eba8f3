"""One feed socket against the simulator: data flows, close is bounded, no token leaks."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from dhanfeed.feed.connection import CLOSED, ConnectFailed, FeedConnection, feed_url, safe_error
from dhanfeed.token import Token, parse_token
from support.sim import Sim


@pytest.fixture
def sim_and_token(start_sim: Callable[..., Sim], tmp_path: Path) -> tuple[Sim, Token]:
    path = tmp_path / "token.json"
    sim = start_sim(
        "--instruments", "NSE_EQ:1333", "--ticks-per-second", "20", "--issue-token", str(path)
    )
    return sim, parse_token(json.loads(path.read_text())["access_token"])


def test_a_socket_subscribes_hands_packets_on_and_closes_within_its_bound(
    sim_and_token: tuple[Sim, Token],
) -> None:
    sim, token = sim_and_token
    got = threading.Event()
    trades: list = []
    others: list = []

    def sink(conn: FeedConnection, frame_trades: list, frame_others: list, at: float) -> None:
        trades.extend(frame_trades)
        others.extend(frame_others)
        if len(trades) + len(others) >= 20:
            got.set()

    conn = FeedConnection(1, 0, sim.feed_url, token, sink)
    conn.connect()
    conn.subscribe([("NSE_EQ", 1333)], "quote")
    assert got.wait(15), "no packets arrived"
    conn.close(timeout=2)
    assert conn.state == CLOSED and conn.closed.is_set()
    assert conn.last_data is not None and conn.packets >= 20
    assert "PrevClose" in {type(p).__name__ for p in others}
    assert not any(type(p).__name__ == "Disconnect" for p in others)
    assert {(t[0], t[1]) for t in trades} == {(1, 1333)}  # NSE_EQ 1333, as subscribed
    assert all(t[3] is not None and t[5] is not None for t in trades)  # Quotes: LTQ, volume
    assert sim.admin("stats")["sockets"][0]["close_reason"] == "client request 12"


def test_a_handshake_refused_with_429_says_so_without_the_token(
    sim_and_token: tuple[Sim, Token],
) -> None:
    sim, token = sim_and_token
    sim.admin("fault", {"kind": "handshake_429", "seconds": 30})
    conn = FeedConnection(1, 0, sim.feed_url, token, lambda *a: None)
    with pytest.raises(ConnectFailed) as info:
        conn.connect()
    assert info.value.status == 429
    assert token.access_token not in str(info.value)
    assert conn.state == CLOSED


def test_a_rejected_token_ends_the_socket_with_dhans_disconnect_code(
    sim_and_token: tuple[Sim, Token], tmp_path: Path
) -> None:
    sim, old = sim_and_token
    sim.admin("issue-token", {"path": str(tmp_path / "new.json")})  # supersedes `old`
    conn = FeedConnection(1, 0, sim.feed_url, old, lambda *a: None)
    conn.connect()
    assert conn.closed.wait(10)
    assert conn.disconnect_code == 807
    assert "807" in conn.close_reason and old.access_token not in conn.close_reason


def test_connect_errors_and_their_texts_never_carry_the_token(
    sim_and_token: tuple[Sim, Token],
) -> None:
    _, token = sim_and_token
    conn = FeedConnection(1, 0, "ws://127.0.0.1:9", token, lambda *a: None, connect_timeout=2)
    with pytest.raises(ConnectFailed) as info:
        conn.connect()
    assert token.access_token not in str(info.value) and info.value.status is None
    url = feed_url("wss://api-feed.dhan.co", token)
    assert token.access_token in url  # the URL does carry it ...
    text = safe_error(ValueError(f"bad redirect {url!r}"), token.access_token)
    assert token.access_token not in text and "bad redirect" in text  # ... its errors do not
