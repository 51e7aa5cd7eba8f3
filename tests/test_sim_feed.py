"""The simulator's live feed over loopback, driven by websocket-client (the project's client).

Packets are checked two ways: with `protocol.decode_frame`, and with a tiny reader written
here from dhan-api.md's offsets (`walk`), compared against the simulator's own per-tick
record, so that a layout error shared by encoder and decoder still shows.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Callable, Iterator

import pytest
import websocket

from dhanfeed.feed import protocol as p
from dhanfeed.sim.feed import frames, ws_frame
from support.polling import wait_until
from support.sim import Sim, launch_sim

TPS = "10"


@pytest.fixture(scope="module")
def fsim() -> Iterator[Sim]:
    sim = launch_sim("--ticks-per-second", TPS)
    yield sim
    sim.stop()


@pytest.fixture
def clients() -> Iterator[list]:
    opened: list[Client] = []
    yield opened
    for client in opened:
        client.close()


@pytest.fixture(autouse=True)
def _reset(request: pytest.FixtureRequest) -> None:
    if "fsim" in request.fixturenames:
        sim = request.getfixturevalue("fsim")
        sim.admin("clear-faults", {})
        sim.admin(
            "policy", {"renew_kills_sockets": False, "renew_field": "token", "multi_mode": "last"}
        )


def walk(frame: bytes) -> list[tuple[int, int, int, bytes]]:
    """(code, segment, security id, whole packet) per packet, by the documented header."""
    out, at = [], 0
    while at + 8 <= len(frame):
        length = frame[at + 1] | frame[at + 2] << 8
        if length < 8 or at + length > len(frame):
            break
        sid = int.from_bytes(frame[at + 4 : at + 8], "little")
        out.append((frame[at], frame[at + 3], sid, frame[at : at + length]))
        at += length
    return out


def f32(raw: bytes, at: int) -> float:
    return struct.unpack("<f", raw[at : at + 4])[0]


def u32(raw: bytes, at: int) -> int:
    return int.from_bytes(raw[at : at + 4], "little")


class Client:
    """One feed socket; collects binary frames until a condition, a deadline or the close."""

    def __init__(self, sim: Sim, token: str, client_id: str | None = None) -> None:
        url = (
            f"{sim.feed_url}/?version=2&token={token}"
            f"&clientId={client_id or sim.client_id}&authType=2"
        )
        self.ws = websocket.create_connection(url, timeout=5)
        self.frames: list[bytes] = []
        self.closed = False

    def send(self, text: str) -> None:
        self.ws.send(text)

    def subscribe(self, instruments: list[tuple[str, int]], mode: str = "quote") -> None:
        for message in p.subscribe_requests(instruments, mode):
            self.send(message)

    def read(self, until: Callable[[list[bytes]], bool] | None = None, timeout: float = 10) -> bool:
        """Read frames until `until(frames)` holds (True), the socket closes (False when no
        condition was given, else AssertionError) or the deadline passes."""
        deadline = time.monotonic() + timeout
        self.ws.settimeout(0.1)
        while time.monotonic() < deadline:
            if until is not None and until(self.frames):
                return True
            if self.closed:
                break
            try:
                opcode, data = self.ws.recv_data()
            except websocket.WebSocketTimeoutException:
                continue
            except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
                self.closed = True
                continue
            if opcode == websocket.ABNF.OPCODE_BINARY:
                self.frames.append(bytes(data))
            elif opcode == websocket.ABNF.OPCODE_CLOSE:
                self.closed = True
        if until is None:
            return self.closed
        raise AssertionError("condition not met before the deadline")

    def read_until_closed(self, timeout: float = 10) -> None:
        assert self.read(until=lambda _f: self.closed, timeout=timeout)

    def packets(self) -> list[p.Packet]:
        return [pkt for frame in self.frames for pkt in p.decode_frame(frame).packets]

    def of(self, kind: type) -> list:
        return [pkt for pkt in self.packets() if isinstance(pkt, kind)]

    def close(self) -> None:
        try:
            self.ws.close(timeout=1)
        except (websocket.WebSocketException, OSError):
            pass
        self.ws.shutdown()  # close() leaves the socket open when the server closed first


def connect(sim: Sim, clients: list, token: str | None = None, **kw: str) -> Client:
    client = Client(sim, token or sim.admin("issue-token", {})["access_token"], **kw)
    clients.append(client)
    return client


def has(kind: type, n: int = 1, key: tuple[int, int] | None = None) -> Callable:
    """A `read` condition: `n` packets of `kind` (for `key`) received; reads each frame once,
    since one packet per message makes thousands of frames."""
    seen = [0, 0]  # frames looked at, matches

    def check(frames: list[bytes]) -> bool:
        for frame in frames[seen[0] :]:
            for pkt in p.decode_frame(frame).packets:
                if isinstance(pkt, kind) and (key is None or pkt[:2] == key):
                    seen[1] += 1
        seen[0] = len(frames)
        return seen[1] >= n

    return check


def closed_socket(sim: Sim, socket_id: int) -> dict | None:
    """The admin record of a socket once the simulator has finished closing it."""
    record = next(s for s in sim.admin("stats")["sockets"] if s["id"] == socket_id)
    return record if record["closed_at"] is not None else None


def last_socket(sim: Sim) -> dict:
    """The newest socket's record, once closed."""
    newest = max(s["id"] for s in sim.admin("stats")["sockets"])
    return wait_until("the newest socket to close", lambda: closed_socket(sim, newest))


def disconnect_reasons(client: Client) -> list[int]:
    return [pkt.reason for pkt in client.of(p.Disconnect)]


# --- framing: one packet per WebSocket message, as Dhan sends (dhan-api.md §3) ---


def packet_counts(client: Client) -> list[int]:
    """Packets per received message, by the documented length fields; a message whose
    length fields do not add up to its size counts as -1."""
    counts = []
    for frame in client.frames:
        packets = walk(frame)
        counts.append(len(packets) if sum(len(raw) for *_h, raw in packets) == len(frame) else -1)
    return counts


@pytest.mark.parametrize(
    ("size", "head"),
    [(50, b"\x82\x32"), (125, b"\x82\x7d"), (162, b"\x82\x7e\x00\xa2"),
     (65535, b"\x82\x7e\xff\xff"), (70000, b"\x82\x7f" + (70000).to_bytes(8, "big"))],
)  # fmt: skip
def test_frames_carry_the_rfc6455_length_forms(size: int, head: bytes) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert ws_frame(payload) == head + payload  # final binary frame, unmasked (server side)
    packet = payload[:50]
    assert frames([packet] * 3, 1) == ws_frame(packet) * 3
    assert frames([packet] * 3, 2) == ws_frame(packet * 2) + ws_frame(packet)


def test_every_message_holds_exactly_one_packet_whose_length_is_the_message_length(
    fsim: Sim, clients: list
) -> None:
    client = connect(fsim, clients)
    client.subscribe([("NSE_EQ", 1333), ("NSE_FNO", 55796)], "quote")
    client.subscribe([("NSE_FNO", 35001)], "full")
    client.subscribe([("NSE_EQ", 11536), ("IDX_I", 13)], "ticker")
    client.read(has(p.OpenInterest, 2))
    client.read(has(p.Full, 3))
    client.read(has(p.Ticker, 6))
    assert len(client.frames) > 20
    for frame in client.frames:
        (code, _seg, _sid, raw), *more = walk(frame)
        assert not more and len(raw) == len(frame), f"code {code}: {len(frame)}-byte message"
        assert frame[1] | frame[2] << 8 == len(frame)  # the header's length field
    sizes = {frame[0]: len(frame) for frame in client.frames}
    assert sizes == {6: 16, 4: 50, 5: 12, 8: 162, 2: 16}  # Prev Close, Quote, OI apart
    mine = next(s for s in fsim.admin("stats")["sockets"] if s["closed_at"] is None)
    assert mine["messages_sent"] == mine["packets_sent"]


def test_batch_packs_up_to_n_packets_into_one_message(start_sim, clients: list) -> None:  # noqa: ANN001
    sim = start_sim("--batch", "5", "--ticks-per-second", "20")
    client = connect(sim, clients)
    client.subscribe([("NSE_EQ", sid) for sid in range(1, 13)], "quote")
    client.read(has(p.Quote, 60))
    counts = packet_counts(client)
    assert -1 not in counts  # every message walks to its end by the length fields
    assert max(counts) == 5 and min(counts) >= 1
    assert counts[:3] == [5, 5, 2]  # the twelve Prev Close packets of the subscribe
    client.send(p.disconnect_request())
    client.read_until_closed()
    mine = last_socket(sim)
    counts = packet_counts(client)
    assert (mine["packets_sent"], mine["messages_sent"]) == (sum(counts), len(counts))


def test_the_last_mode_wins_when_one_instrument_is_subscribed_twice(
    fsim: Sim, clients: list
) -> None:
    client = connect(fsim, clients)
    client.subscribe([("NSE_EQ", 2885)], "quote")
    client.read(has(p.Quote, 2))
    client.subscribe([("NSE_EQ", 2885)], "full")
    client.read(has(p.Full, 4))
    kinds = [type(pkt) for pkt in client.packets() if not isinstance(pkt, p.PrevClose)]
    first_full = kinds.index(p.Full)
    assert set(kinds[first_full:]) == {p.Full}  # the Quote stream stopped


def test_each_mode_streams_when_the_switch_says_so(fsim: Sim, clients: list) -> None:
    fsim.admin("policy", {"multi_mode": "each"})
    client = connect(fsim, clients)
    client.subscribe([("NSE_EQ", 2885)], "quote")
    client.subscribe([("NSE_EQ", 2885)], "full")
    client.read(has(p.Full, 4))
    client.read(has(p.Quote, 4))
    quotes = {(q.volume, q.ltt) for q in client.of(p.Quote)}
    fulls = [(f.volume, f.ltt) for f in client.of(p.Full)]
    assert all(tick in quotes for tick in fulls)  # every tick in both modes
    for message in p.unsubscribe_requests([("NSE_EQ", 2885)], "quote"):
        client.send(message)  # dropping one mode keeps the other: Full only from now on
    client.read(lambda frames: [f[0] for f in frames[-4:]] == [p.FULL] * 4)


def test_a_faster_rate_sends_one_message_per_tick_with_none_skipped(
    start_sim,
    clients: list,  # noqa: ANN001
) -> None:
    sim = start_sim("--ticks-per-second", "400", "--instruments", "NSE_EQ:1-10")
    client = connect(sim, clients)
    client.subscribe([("NSE_EQ", sid) for sid in range(1, 11)], "quote")
    client.read(has(p.Quote, 2000), timeout=30)
    client.send(p.disconnect_request())
    client.read_until_closed()
    mine = last_socket(sim)
    assert mine["messages_sent"] == mine["packets_sent"] == len(client.frames)
    for sid in range(1, 11):
        record = sim.admin(f"sent?instrument=NSE_EQ:{sid}")["ticks"]
        on_mine = [mine["id"] in ids for *_t, ids in record]
        first = on_mine.index(True)
        last = len(on_mine) - 1 - on_mine[::-1].index(True)
        assert all(on_mine[first : last + 1])  # each tick of the market reached us, in order
        got = [q.volume for q in client.of(p.Quote) if q.security_id == sid]
        assert got == [cum for cum, *_r in record[first : last + 1]]


def test_invalid_token_gets_809_then_close(fsim: Sim, clients: list) -> None:
    client = connect(fsim, clients, token="not.a.token")
    client.read_until_closed()
    assert disconnect_reasons(client) == [809]


def test_superseded_token_gets_807(fsim: Sim, clients: list) -> None:
    old = fsim.admin("issue-token", {})["access_token"]
    fsim.admin("issue-token", {})
    client = connect(fsim, clients, token=old)
    client.read_until_closed()
    assert disconnect_reasons(client) == [807]


def test_expired_token_gets_807(fsim: Sim, clients: list) -> None:
    token = fsim.admin("issue-token", {"ttl_s": 1})["access_token"]
    time.sleep(1.1)  # the token's one-second lifetime must run out
    client = connect(fsim, clients, token=token)
    client.read_until_closed()
    assert disconnect_reasons(client) == [807]


def test_other_client_id_gets_808(fsim: Sim, clients: list) -> None:
    client = connect(fsim, clients, client_id="1999999999")
    client.read_until_closed()
    assert disconnect_reasons(client) == [808]


# --- what a subscription brings ---


def test_quote_subscription_sends_prev_close_then_quotes_and_oi(fsim: Sim, clients: list) -> None:
    client = connect(fsim, clients)
    client.subscribe([("NSE_EQ", 1333), ("NSE_FNO", 55796)], "quote")
    client.read(has(p.OpenInterest, 1, key=(2, 55796)))
    client.read(has(p.Quote, 4))
    prev = client.of(p.PrevClose)
    assert sorted((x.segment, x.security_id) for x in prev) == [(1, 1333), (2, 55796)]
    first_data = next(i for i, x in enumerate(client.packets()) if isinstance(x, p.Quote))
    assert all(isinstance(x, p.PrevClose) for x in client.packets()[:first_data])
    assert {(q.segment, q.security_id) for q in client.of(p.Quote)} == {(1, 1333), (2, 55796)}
    assert not client.of(p.Full) and not client.of(p.Ticker)
    assert all(oi.security_id == 55796 for oi in client.of(p.OpenInterest))
    fno_prev = next(x for x in prev if x.security_id == 55796)
    assert fno_prev.prev_oi > 0


def test_full_and_ticker_modes_send_their_packets(fsim: Sim, clients: list) -> None:
    client = connect(fsim, clients)
    client.subscribe([("NSE_EQ", 2885)], "full")
    client.subscribe([("NSE_EQ", 11536)], "ticker")
    client.read(has(p.Full, 2))
    client.read(has(p.Ticker, 2))
    assert {x.security_id for x in client.of(p.Full)} == {2885}
    assert {x.security_id for x in client.of(p.Ticker)} == {11536}
    assert not client.of(p.Quote)
    full = client.of(p.Full)[-1]
    assert len(full.depth) == 5
    assert full.depth[0].bid_price < full.ltp < full.depth[0].ask_price


def test_index_trades_as_ticker_with_no_volume(fsim: Sim, clients: list) -> None:
    client = connect(fsim, clients)
    client.subscribe([("IDX_I", 13)], "quote")
    client.read(has(p.Ticker, 2))
    assert not client.of(p.Quote)
    assert fsim.admin("stats")["instruments"]["IDX_I:13"]["cum_volume"] == 0


def test_packets_match_the_documented_offsets_and_the_sims_record(fsim: Sim, clients: list) -> None:
    client = connect(fsim, clients)
    client.subscribe([("NSE_EQ", 1333)], "quote")
    client.subscribe([("NSE_FNO", 35001)], "full")
    client.read(has(p.Quote, 5))
    client.read(has(p.Full, 5))
    client.send(p.disconnect_request())
    client.read_until_closed()
    quotes, fulls = [], []
    for frame in client.frames:
        for code, segment, sid, raw in walk(frame):
            if code == 4:
                assert (len(raw), segment, sid) == (50, 1, 1333)
                # ltp @8, ltq u16 @12, ltt @14, volume @22 (dhan-api.md §3)
                quotes.append((u32(raw, 22), u32(raw, 14), f32(raw, 8), raw[12] | raw[13] << 8))
            elif code == 8:
                assert (len(raw), raw[1], segment, sid) == (162, 162, 2, 35001)
                fulls.append((u32(raw, 22), u32(raw, 14), f32(raw, 8), raw[12] | raw[13] << 8))
                assert f32(raw, 62 + 16) > f32(raw, 8) > f32(raw, 62 + 12)  # ask > ltp > bid
    for key, got in (("NSE_EQ:1333", quotes), ("NSE_FNO:35001", fulls)):
        record = fsim.admin(f"sent?instrument={key}")["ticks"]
        socket_id = max(s["id"] for s in fsim.admin("stats")["sockets"])
        sent = [(cum, ltt, ltp) for cum, ltt, ltp, ids in record if socket_id in ids]
        assert [(cum, ltt, ltp) for cum, ltt, ltp, _ltq in got] == sent
        cums = [cum for cum, *_ in got]
        assert all(b > a for a, b in zip(cums, cums[1:], strict=False))  # strictly increasing
        assert all(ltq >= 1 for *_x, ltq in got)
        now_ist = time.time() + 19800
        assert all(abs(ltt - now_ist) < 120 for _c, ltt, *_y in got)  # IST-epoch, not UTC


def test_every_tick_sent_on_a_socket_is_recorded_once(fsim: Sim, clients: list) -> None:
    client = connect(fsim, clients)
    client.subscribe([("NSE_EQ", 4963), ("NSE_EQ", 3045)], "quote")
    client.read(has(p.Quote, 10))
    client.send(p.disconnect_request())
    client.read_until_closed()
    mine = last_socket(fsim)
    stats = fsim.admin("stats")
    assert mine["close_reason"] == "client request 12"
    received = client.packets()
    assert mine["packets_sent"] == len(received)
    for sid in (4963, 3045):
        got = [(q.volume, q.ltt) for q in client.of(p.Quote) if q.security_id == sid]
        record = fsim.admin(f"sent?instrument=NSE_EQ:{sid}")["ticks"]
        sent = [(cum, ltt) for cum, ltt, _ltp, ids in record if mine["id"] in ids]
        assert got == sent
        assert len(set(sent)) == len(sent)
        assert stats["instruments"][f"NSE_EQ:{sid}"]["delivered"] >= len(sent)


def test_unsubscribe_stops_an_instrument(fsim: Sim, clients: list) -> None:
    client = connect(fsim, clients)
    client.subscribe([("NSE_EQ", 1594), ("NSE_EQ", 1333)], "quote")
    client.read(has(p.Quote, 2, key=(1, 1594)))
    for message in p.unsubscribe_requests([("NSE_EQ", 1594)], "quote"):
        client.send(message)
    time.sleep(0.3)  # let the unsubscribe land before counting
    before = len(client.of(p.Quote))
    client.read(has(p.Quote, before + 6))
    later = client.of(p.Quote)[before + 2 :]
    assert later and all(q.security_id == 1333 for q in later)


def test_stray_binary_frame_is_ignored(fsim: Sim, clients: list) -> None:
    client = connect(fsim, clients)
    client.subscribe([("NSE_EQ", 1333)], "quote")
    client.read(has(p.Quote, 1))
    client.ws.send_binary(b"\x00\x01\x02garbage")
    n = len(client.of(p.Quote))
    client.read(has(p.Quote, n + 3))
    assert not client.closed


def test_unknown_instrument_is_added_to_the_market(fsim: Sim, clients: list) -> None:
    client = connect(fsim, clients)
    client.subscribe([("BSE_EQ", 500325)], "quote")
    client.read(has(p.Quote, 2, key=(4, 500325)))
    assert fsim.admin("stats")["instruments"]["BSE_EQ:500325"]["ticks"] >= 2


# --- limits ---


def test_100_instruments_per_message_are_fine_101_get_804(fsim: Sim, clients: list) -> None:
    ok = connect(fsim, clients)
    ok.subscribe([("NSE_EQ", 1333 + i) for i in range(100)], "ticker")
    ok.read(has(p.PrevClose, 100))
    items = [{"ExchangeSegment": "NSE_EQ", "SecurityId": str(2000 + i)} for i in range(101)]
    bad = connect(fsim, clients)
    bad.send(json.dumps({"RequestCode": 17, "InstrumentCount": 101, "InstrumentList": items}))
    bad.read_until_closed()
    assert disconnect_reasons(bad) == [804]
    assert not bad.of(p.PrevClose)
    assert not ok.closed


def test_more_than_5000_instruments_per_socket_get_804(start_sim, clients: list) -> None:  # noqa: ANN001
    sim = start_sim("--ticks-per-second", "0.2", "--instruments", "NSE_EQ:1")
    client = connect(sim, clients)
    client.subscribe([("NSE_EQ", 10_000 + i) for i in range(5000)], "ticker")
    client.read(has(p.PrevClose, 5000), timeout=30)
    assert not client.closed
    client.subscribe([("NSE_EQ", 20_000)], "ticker")
    client.read_until_closed()
    assert disconnect_reasons(client) == [804]


def test_a_sixth_socket_evicts_the_oldest_with_805(fsim: Sim, clients: list) -> None:
    token = fsim.admin("issue-token", {})["access_token"]
    first_id = fsim.admin("stats")["connections_total"] + 1
    five = [connect(fsim, clients, token=token) for _ in range(5)]
    for client in five:
        client.subscribe([("NSE_EQ", 1333)], "quote")
    for client in five:
        client.read(has(p.PrevClose, 1))
    sixth = connect(fsim, clients, token=token)
    five[0].read_until_closed()
    assert disconnect_reasons(five[0]) == [805]
    sixth.subscribe([("NSE_EQ", 1333)], "quote")
    sixth.read(has(p.Quote, 1))
    for client in five[1:]:
        n = len(client.of(p.Quote))
        client.read(has(p.Quote, n + 1))
        assert not client.closed and not disconnect_reasons(client)
    oldest = wait_until("the first socket to close", lambda: closed_socket(fsim, first_id))
    assert oldest["close_reason"].startswith("805")
    assert fsim.admin("stats")["max_sockets_open"] >= 6  # the sixth got in first


# --- renewal and the open sockets ---


def renew(sim: Sim, token: str) -> str:
    import requests

    resp = requests.get(
        f"{sim.api_base}/v2/RenewToken",
        headers={"access-token": token, "dhanClientId": sim.client_id},
        timeout=10,
    )
    resp.raise_for_status()
    return resp.json()["token"]


def test_renewal_keeps_sockets_streaming_by_default(fsim: Sim, clients: list) -> None:
    token = fsim.admin("issue-token", {})["access_token"]
    client = connect(fsim, clients, token=token)
    client.subscribe([("NSE_EQ", 1333)], "quote")
    client.read(has(p.Quote, 1))
    new = renew(fsim, token)
    n = len(client.of(p.Quote))
    client.read(has(p.Quote, n + 5))
    assert not disconnect_reasons(client)
    assert not client.closed
    fresh = connect(fsim, clients, token=new)  # the new token works beside it
    fresh.subscribe([("NSE_EQ", 1333)], "quote")
    fresh.read(has(p.Quote, 1))
    again = connect(fsim, clients, token=token)  # the old token cannot open a new socket
    again.read_until_closed()
    assert disconnect_reasons(again) == [807]


@pytest.mark.parametrize("how", ["renew", "issue-token"])
def test_renewal_kills_sockets_of_the_old_token_when_switched_on(
    fsim: Sim, clients: list, how: str
) -> None:
    fsim.admin("policy", {"renew_kills_sockets": True})
    token = fsim.admin("issue-token", {})["access_token"]
    client = connect(fsim, clients, token=token)
    client.subscribe([("NSE_EQ", 1333)], "quote")
    client.read(has(p.Quote, 1))
    if how == "renew":
        new = renew(fsim, token)
    else:
        new = fsim.admin("issue-token", {})["access_token"]
    client.read_until_closed()
    assert disconnect_reasons(client) == [807]
    fresh = connect(fsim, clients, token=new)
    fresh.subscribe([("NSE_EQ", 1333)], "quote")
    fresh.read(has(p.Quote, 1))
    assert not fresh.closed


# --- faults ---


def streaming(sim: Sim, clients: list, sid: int = 1333) -> Client:
    client = connect(sim, clients)
    client.subscribe([("NSE_EQ", sid)], "quote")
    client.read(has(p.Quote, 1))
    return client


def test_fault_drop_sockets_cuts_the_connection(fsim: Sim, clients: list) -> None:
    client = streaming(fsim, clients)
    assert fsim.admin("fault", {"kind": "drop_sockets"})["sockets"] >= 1
    client.read_until_closed()
    assert not disconnect_reasons(client)  # no goodbye packet: the TCP connection just ends
    assert last_socket(fsim)["close_reason"].startswith("dropped")


def test_fault_stall_stops_data_but_not_the_socket(fsim: Sim, clients: list) -> None:
    client = streaming(fsim, clients, sid=2885)
    fsim.admin("fault", {"kind": "stall", "seconds": 1.0})
    n = len(client.of(p.Quote))
    client.read(has(p.Quote, n + 3))  # data comes back after the stall, same socket
    assert not client.closed
    mine = max(fsim.admin("stats")["sockets"], key=lambda s: s["id"])["id"]
    ticks = fsim.admin("sent?instrument=NSE_EQ:2885")["ticks"]
    delivered = [mine in ids for _c, _l, _p, ids in ticks]
    first = delivered.index(True)
    last = len(delivered) - 1 - delivered[::-1].index(True)
    assert not all(delivered[first : last + 1])  # a hole: ticks traded but not sent


def test_fault_garbage_frames_decode_to_nothing(fsim: Sim, clients: list) -> None:
    client = streaming(fsim, clients)
    fsim.admin("fault", {"kind": "garbage", "count": 3})
    client.read(lambda frames: sum(1 for f in frames if not p.decode_frame(f).packets) >= 3)
    bad = [f for f in client.frames if not p.decode_frame(f).packets]
    assert len(bad) == 3
    assert all(p.decode_frame(f).skipped >= 1 for f in bad)
    n = len(client.of(p.Quote))
    client.read(has(p.Quote, n + 2))  # the socket keeps streaming


def test_fault_truncated_frame_is_cut_mid_packet(fsim: Sim, clients: list) -> None:
    client = streaming(fsim, clients)
    fsim.admin("fault", {"kind": "truncated"})
    client.read(lambda frames: any(p.decode_frame(f).skipped for f in frames))
    cut = next(f for f in client.frames if p.decode_frame(f).skipped)
    declared = int.from_bytes(cut[1:3], "little")
    assert cut[0] == 4 and len(cut) < declared == 50


def test_fault_disconnect_sends_the_chosen_code_and_closes(fsim: Sim, clients: list) -> None:
    client = streaming(fsim, clients)
    fsim.admin("fault", {"kind": "disconnect", "code": 806})
    client.read_until_closed()
    assert disconnect_reasons(client) == [806]


def test_fault_handshake_429_refuses_then_recovers(fsim: Sim, clients: list) -> None:
    token = fsim.admin("issue-token", {})["access_token"]
    before = fsim.admin("stats")["handshakes_refused"]
    fsim.admin("fault", {"kind": "handshake_429", "seconds": 30})
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        Client(fsim, token)
    assert refused.value.status_code == 429
    assert fsim.admin("stats")["handshakes_refused"] == before + 1
    fsim.admin("clear-faults", {})
    client = connect(fsim, clients, token=token)
    client.subscribe([("NSE_EQ", 1333)], "quote")
    client.read(has(p.PrevClose, 1))


def test_request_code_12_closes_and_is_recorded(fsim: Sim, clients: list) -> None:
    client = streaming(fsim, clients)
    client.send(p.disconnect_request())
    client.read_until_closed()
    mine = last_socket(fsim)
    stats = fsim.admin("stats")
    assert mine["close_reason"] == "client request 12"
    assert mine["instruments"] == 1 and mine["packets_sent"] >= 2
    assert stats["connections_total"] >= mine["id"]


# --- keepalive: pings every 10 s, a client silent for 40 s is closed (scaled down here) ---

PING_INTERVAL_S, SILENCE_S = 0.5, 1.0


@pytest.fixture(scope="module")
def ksim() -> Iterator[Sim]:
    """A simulator with Dhan's keepalive scaled down through the test-only options."""
    sim = launch_sim(
        "--ticks-per-second", TPS,
        "--ping-interval", str(PING_INTERVAL_S),
        "--ping-timeout", str(SILENCE_S),
    )  # fmt: skip
    yield sim
    sim.stop()


def connect_counted(sim: Sim, clients: list) -> tuple[Client, int]:
    """A new socket and its id in the simulator's record."""
    token = sim.admin("issue-token", {})["access_token"]
    sid = sim.admin("stats")["connections_total"] + 1
    client = connect(sim, clients, token=token)
    wait_until("the connection", lambda: sim.admin("stats")["connections_total"] >= sid)
    return client, sid


def test_keepalive_defaults_are_dhans_and_the_interval_must_be_shorter() -> None:
    from dhanfeed.cli.dhan_sim import build_parser, options_from
    from dhanfeed.errors import UsageError

    parser = build_parser()
    options = options_from(parser.parse_args([]))
    assert (options.ping_interval_s, options.ping_timeout_s) == (10.0, 40.0)
    assert "--ping-interval" not in parser.format_help()  # test-only: hidden from --help
    for bad in (["--ping-interval", "2", "--ping-timeout", "2"], ["--ping-interval", "0"]):
        with pytest.raises(UsageError, match="--ping-interval"):
            options_from(parser.parse_args(bad))


def test_a_client_that_answers_pings_stays_open_past_the_silence_limit(
    ksim: Sim, clients: list
) -> None:
    client, sid = connect_counted(ksim, clients)
    client.subscribe([("NSE_EQ", 1333), ("NSE_FNO", 55796)], "quote")
    client.ws.settimeout(0.1)
    pings, data, deadline = 0, 0, time.monotonic() + 20
    # Six pings span three silence limits: each came only because the last one was answered.
    # Market data streams meanwhile: the simulator's bulk-written frames and websockets'
    # pings share the socket without tearing each other.
    while pings < 6:
        assert time.monotonic() < deadline, f"only {pings} pings before the deadline"
        try:
            frame = client.ws.recv_frame()
        except websocket.WebSocketTimeoutException:
            continue
        assert frame.opcode != websocket.ABNF.OPCODE_CLOSE, "closed a client that answered"
        if frame.opcode == websocket.ABNF.OPCODE_PING:
            client.ws.pong(frame.data)
            pings += 1
        elif frame.opcode == websocket.ABNF.OPCODE_BINARY:
            assert len(walk(frame.data)) == 1 and frame.data[1] | frame.data[2] << 8 == len(
                frame.data
            )
            data += 1
    assert closed_socket(ksim, sid) is None
    assert data > 10  # and it streamed all along


def test_a_client_that_never_answers_pings_is_closed_by_the_server(
    ksim: Sim, clients: list
) -> None:
    client, sid = connect_counted(ksim, clients)
    # The client reads nothing, so no pong ever goes back.
    record = wait_until("the socket to close", lambda: closed_socket(ksim, sid))
    assert record["close_reason"] == "keepalive timeout (no pong)"
    assert client.read(timeout=10)  # on the client's side the connection ends too
