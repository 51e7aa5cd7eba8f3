"""One feed socket against the simulator: data flows, close is bounded, no token leaks."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dhanfeed.feed import protocol
from dhanfeed.feed.connection import (
    ConnectFailed,
    FeedConnection,
    SocketState,
    feed_url,
    safe_error,
)
from dhanfeed.token import Token, parse_token
from support.frozen_clock import FrozenClock
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
    messages: list[bytes] = []

    def sink(conn: FeedConnection, batch: list[bytes], at: float) -> None:
        messages.extend(batch)
        if len(messages) >= 20:
            got.set()

    conn = FeedConnection(1, 0, sim.feed_url, token, sink)
    conn.connect()
    conn.subscribe([("NSE_EQ", 1333)], "quote")
    assert got.wait(15), "no packets arrived"
    conn.close(timeout=2)
    assert conn.state is SocketState.CLOSED and conn.closed.is_set()
    assert conn.last_data is not None and conn.packets == len(messages) >= 20
    packets = [protocol.decode_frame(m).packets for m in messages]
    assert all(len(p) == 1 for p in packets)  # Dhan's framing: one packet per message, whole
    kinds = {type(p[0]).__name__ for p in packets}
    assert "PrevClose" in kinds and "Quote" in kinds and "Disconnect" not in kinds
    assert {(p[0].segment, p[0].security_id) for p in packets} == {(1, 1333)}  # as subscribed
    assert sim.admin("stats")["sockets"][0]["close_reason"] == "client request 12"


def test_close_hands_on_every_packet_sent_before_the_server_saw_it_even_ones_still_unread(
    sim_and_token: tuple[Sim, Token],
) -> None:
    """A swap closes the old socket right after the new one is live: what the server wrote to
    the old one until it read our disconnect must still reach the sink, read or not."""
    sim, token = sim_and_token
    messages: list[bytes] = []
    before_close: list[int] = []
    enough, closing = threading.Event(), threading.Event()

    def sink(conn: FeedConnection, batch: list[bytes], at: float) -> None:
        messages.extend(batch)
        if len(messages) >= 20 and not enough.is_set():
            enough.set()  # a busy machine: the socket's data waits unread from here ...
            closing.wait(5)
            before_close.append(len(messages))
            time.sleep(0.3)  # ... until after close() has begun

    conn = FeedConnection(1, 0, sim.feed_url, token, sink)
    conn.connect()
    conn.subscribe([("NSE_EQ", 1333)], "quote")
    assert enough.wait(15), "no packets arrived"
    time.sleep(0.5)  # ten ticks' worth
    closing.set()
    conn.close(timeout=2)
    assert len(messages) > before_close[0]  # some were still unread when close() began
    handed = [protocol.decode_frame(m).packets[0] for m in messages]
    volumes = sorted(p.volume for p in handed if isinstance(p, protocol.Quote))
    sent = sim.admin("sent?instrument=NSE_EQ:1333")["ticks"]
    assert volumes == sorted(t[0] for t in sent if t[3] == [1])
    assert sim.admin("stats")["sockets"][0]["close_reason"] == "client request 12"


def test_every_time_a_socket_stamps_comes_from_the_clock_it_is_given(
    sim_and_token: tuple[Sim, Token],
) -> None:
    sim, token = sim_and_token
    clock = FrozenClock(monotonic=5000.0)
    stamps: list[float] = []
    got = threading.Event()

    def sink(conn: FeedConnection, batch: list[bytes], at: float) -> None:
        stamps.append(at)
        got.set()

    conn = FeedConnection(1, 0, sim.feed_url, token, sink, clock=clock)
    conn.connect()
    assert conn.opened_at == 5000.0
    conn.subscribe([("NSE_EQ", 1333)], "quote")
    assert got.wait(15), "no packets arrived"
    conn.close(timeout=2)
    assert set(stamps) == {clock.time()}  # the receive time handed on with every batch
    assert (conn.last_data, conn.last_data_utc) == (5000.0, clock.time())
    assert (conn.closed_at, conn.closed_utc) == (5000.0, clock.time())


def test_pings_are_answered_while_nobody_consumes_what_the_socket_hands_on(
    start_sim: Callable[..., Sim], tmp_path: Path
) -> None:
    path = tmp_path / "token.json"
    sim = start_sim(
        "--instruments", "NSE_EQ:1333", "--ticks-per-second", "50", "--issue-token", str(path),
        "--ping-interval", "0.2", "--ping-timeout", "0.8",
    )  # fmt: skip
    token = parse_token(json.loads(path.read_text())["access_token"])
    handed: list[list[bytes]] = []  # never read: a consumer that has stopped
    conn = FeedConnection(1, 0, sim.feed_url, token, lambda c, batch, at: handed.append(batch))
    conn.connect()
    conn.subscribe([("NSE_EQ", 1333)], "quote")
    assert not conn.closed.wait(4), conn.close_reason  # 20 pings, each answered in time
    conn.close(timeout=2)
    assert sim.admin("stats")["sockets"][0]["close_reason"] == "client request 12"
    assert sum(map(len, handed)) > 100


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
    assert conn.state is SocketState.CLOSED


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
