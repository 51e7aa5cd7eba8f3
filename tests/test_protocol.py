"""Dhan feed wire format against HAND-WRITTEN byte fixtures (dhan-api.md §3).

Every fixture below was written byte by byte from the documented layouts (little-endian;
float32 values chosen to be exact: 100.0 = 0x42c80000, 150.0 = 0x43160000, ...), never
produced by protocol.py, so that an encoder bug cannot be matched by the same decoder bug.
"""

from __future__ import annotations

import json
import random

import pytest

from dhanfeed.feed import protocol as p

LTT = 1745787480  # 58 9a 0e 68: IST-epoch seconds (2025-04-27 20:58 IST)


def hexbytes(text: str) -> bytes:
    """Hex with spaces, newlines and '#' comments allowed."""
    lines = (line.split("#", 1)[0] for line in text.splitlines())
    return bytes.fromhex(" ".join(lines))


# The captured Full packet of dhan-api.md begins "08 a2 00 02 f4 d9 00 00 cd 4c 18 43 4b 00 58 9a".
FULL_HEX = """
08 a2 00 02 f4 d9 00 00   # code 8, length 162, NSE_FNO (2), security 55796
cd 4c 18 43               # @8  LTP 152.30 (captured)
4b 00                     # @12 LTQ 75 (captured)
58 9a 0e 68               # @14 LTT 1745787480 (first two bytes captured)
00 40 17 43               # @18 avg trade price 151.25
a0 86 01 00               # @22 volume 100000
e8 03 00 00               # @26 total sell qty 1000
d0 07 00 00               # @30 total buy qty 2000
40 42 0f 00               # @34 OI 1000000
50 c3 00 00               # @38 highest OI 50000
10 27 00 00               # @42 lowest OI 10000
00 00 16 43               # @46 day open 150.0
00 00 15 43               # @50 day close 149.0
00 00 1b 43               # @54 day high 155.0
00 00 c8 42               # @58 day low 100.0
64 00 00 00 c8 00 00 00 03 00 04 00 00 40 18 43 00 80 18 43  # @62 bid 100 ask 200, 3/4, 152.25/152.5
2c 01 00 00 90 01 00 00 01 00 02 00 00 00 18 43 00 c0 18 43  # @82 bid 300 ask 400, 1/2, 152.0/152.75
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  # @102 empty level
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  # @122 empty level
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  # @142 empty level
"""

QUOTE_HEX = """
04 32 00 01 35 05 00 00   # code 4, length 50, NSE_EQ (1), security 1333
00 00 c8 42               # @8  LTP 100.0
05 00                     # @12 LTQ 5
58 9a 0e 68               # @14 LTT
00 00 20 40               # @18 ATP 2.5
40 e2 01 00               # @22 volume 123456
e8 03 00 00               # @26 total sell qty 1000
d0 07 00 00               # @30 total buy qty 2000
00 00 16 43               # @34 day open 150.0
00 00 15 43               # @38 day close 149.0
00 00 1b 43               # @42 day high 155.0
00 00 80 3f               # @46 day low 1.0
"""

TICKER_HEX = "02 10 00 00 0d 00 00 00  00 00 c8 42  58 9a 0e 68"  # IDX_I 13, 100.0, LTT
OI_HEX = "05 0c 00 02 f4 d9 00 00  40 42 0f 00"  # NSE_FNO 55796, OI 1000000
PREV_CLOSE_HEX = "06 10 00 01 35 05 00 00  00 00 15 43  10 27 00 00"  # 149.0, prev OI 10000
DISCONNECT_HEX = "32 0a 00 00 00 00 00 00  25 03"  # code 50, reason 805
MARKET_STATUS_HEX = "07 0a 00 00 00 00 00 00  01 00"  # code 7, 2 payload bytes
INDEX_HEX = "01 10 00 00 0d 00 00 00  00 00 c8 42  58 9a 0e 68"  # code 1: undocumented, skipped

FULL = hexbytes(FULL_HEX)
QUOTE = hexbytes(QUOTE_HEX)
TICKER = hexbytes(TICKER_HEX)
OI = hexbytes(OI_HEX)
PREV_CLOSE = hexbytes(PREV_CLOSE_HEX)
DISCONNECT = hexbytes(DISCONNECT_HEX)
MARKET_STATUS = hexbytes(MARKET_STATUS_HEX)
INDEX = hexbytes(INDEX_HEX)

EXPECTED_FULL = p.Full(
    segment=2, security_id=55796, ltp=pytest.approx(152.3, abs=1e-4), ltq=75, ltt=LTT,
    atp=151.25, volume=100000, total_sell_qty=1000, total_buy_qty=2000,
    oi=1000000, oi_high=50000, oi_low=10000,
    day_open=150.0, day_close=149.0, day_high=155.0, day_low=100.0,
    depth=(
        p.DepthLevel(100, 200, 3, 4, 152.25, 152.5),
        p.DepthLevel(300, 400, 1, 2, 152.0, 152.75),
        p.DepthLevel(0, 0, 0, 0, 0.0, 0.0),
        p.DepthLevel(0, 0, 0, 0, 0.0, 0.0),
        p.DepthLevel(0, 0, 0, 0, 0.0, 0.0),
    ),
)  # fmt: skip
EXPECTED_QUOTE = p.Quote(1, 1333, 100.0, 5, LTT, 2.5, 123456, 1000, 2000, 150.0, 149.0, 155.0, 1.0)
EXPECTED_TICKER = p.Ticker(0, 13, 100.0, LTT)
EXPECTED_OI = p.OpenInterest(2, 55796, 1000000)
EXPECTED_PREV_CLOSE = p.PrevClose(1, 1333, 149.0, 10000)
EXPECTED_DISCONNECT = p.Disconnect(0, 0, 805)


def only(frame: bytes) -> p.Packet:
    decoded = p.decode_frame(frame)
    assert decoded.skipped == 0
    assert len(decoded.packets) == 1
    return decoded.packets[0]


# --- fixtures are what the documentation says they are ---


def test_fixture_sizes_match_the_documented_packet_sizes() -> None:
    sizes = {FULL: 162, QUOTE: 50, TICKER: 16, OI: 12, PREV_CLOSE: 16, DISCONNECT: 10}
    for fixture, size in sizes.items():
        assert len(fixture) == size
        assert int.from_bytes(fixture[1:3], "little") == size  # length field = whole packet


def test_full_fixture_begins_with_the_captured_bytes() -> None:
    assert FULL[:16] == bytes.fromhex("08 a2 00 02 f4 d9 00 00 cd 4c 18 43 4b 00 58 9a")


# --- decoding ---


def test_captured_full_packet_prefix_decodes_to_the_documented_values() -> None:
    packet = only(FULL)
    assert isinstance(packet, p.Full)
    assert (packet.segment, packet.security_id, packet.ltq) == (2, 55796, 75)
    assert round(packet.ltp, 2) == 152.30
    assert p.SEGMENT_NAMES[packet.segment] == "NSE_FNO"


def test_full_packet_decodes_every_field() -> None:
    assert only(FULL) == EXPECTED_FULL


def test_decoded_full_depth_reads_like_the_tuple_of_levels() -> None:
    buffer = bytearray(FULL)
    depth = only(memoryview(buffer)).depth
    buffer[62:] = bytes(100)  # the packet keeps its own copy of the depth bytes
    expected = EXPECTED_FULL.depth
    assert depth == expected and expected == depth
    assert depth[0].bid_price == 152.25 and depth[1].ask_orders == 2
    assert depth[1:3] == expected[1:3]
    assert list(depth) == list(expected) and len(depth) == 5
    assert hash(depth) == hash(expected)
    assert repr(depth) == repr(expected)
    assert depth != expected[:4]


def test_a_quote_sized_frame_whose_length_field_disagrees_is_not_one_quote() -> None:
    lying = QUOTE[:1] + (16).to_bytes(2, "little") + QUOTE[3:]  # says 16 bytes, is 50
    decoded = p.decode_frame(lying)
    assert EXPECTED_QUOTE not in decoded.packets
    assert decoded.skipped >= 1


def test_quote_packet_decodes_every_field() -> None:
    assert only(QUOTE) == EXPECTED_QUOTE


def test_ticker_packet_decodes() -> None:
    assert only(TICKER) == EXPECTED_TICKER


def test_oi_packet_decodes() -> None:
    assert only(OI) == EXPECTED_OI


def test_prev_close_packet_decodes() -> None:
    assert only(PREV_CLOSE) == EXPECTED_PREV_CLOSE


def test_disconnect_packet_decodes_its_reason() -> None:
    assert only(DISCONNECT) == EXPECTED_DISCONNECT
    assert "connection limit" in p.DISCONNECT_REASONS[805]


def test_market_status_packet_keeps_its_payload() -> None:
    assert only(MARKET_STATUS) == p.MarketStatus(0, 0, b"\x01\x00")


def test_ltt_is_ist_epoch_so_utc_is_five_and_a_half_hours_earlier() -> None:
    ltt = only(QUOTE).ltt
    assert ltt - 19800 == 1745767680  # 2025-04-27 15:28:00 UTC = 20:58:00 IST


def test_a_frame_holding_several_packets_yields_them_all_in_order() -> None:
    frame = PREV_CLOSE + QUOTE + OI + TICKER + FULL + DISCONNECT
    decoded = p.decode_frame(frame)
    assert decoded.skipped == 0
    assert decoded.packets == [
        EXPECTED_PREV_CLOSE, EXPECTED_QUOTE, EXPECTED_OI, EXPECTED_TICKER, EXPECTED_FULL,
        EXPECTED_DISCONNECT,
    ]  # fmt: skip


def test_index_packet_is_skipped_and_the_walk_continues() -> None:
    decoded = p.decode_frame(INDEX + TICKER)
    assert decoded.packets == [EXPECTED_TICKER]
    assert decoded.skipped == 1


def test_unknown_code_is_skipped_by_its_length() -> None:
    unknown = hexbytes("63 0c 00 01 35 05 00 00 de ad be ef")  # code 99, length 12
    decoded = p.decode_frame(unknown + QUOTE)
    assert decoded.packets == [EXPECTED_QUOTE]
    assert decoded.skipped == 1


@pytest.mark.parametrize("cut", [1, 7, 8, 20, 49])
def test_truncated_packet_is_skipped_not_raised(cut: int) -> None:
    decoded = p.decode_frame(TICKER + QUOTE[:cut])
    assert decoded.packets == [EXPECTED_TICKER]
    assert decoded.skipped == 1


def test_known_code_with_a_length_too_short_for_its_layout_is_skipped() -> None:
    short_quote = hexbytes("04 10 00 01 35 05 00 00 00 00 c8 42 58 9a 0e 68")  # says 16, needs 50
    decoded = p.decode_frame(short_quote + OI)
    assert decoded.packets == [EXPECTED_OI]
    assert decoded.skipped == 1


def test_length_field_beyond_the_frame_stops_the_walk() -> None:
    oversized = hexbytes("02 ff 00 00 0d 00 00 00 00 00 c8 42 58 9a 0e 68")  # says 255 bytes
    decoded = p.decode_frame(oversized + TICKER)
    assert decoded.packets == []
    assert decoded.skipped == 1


def test_packet_longer_than_its_layout_is_read_and_walked_past() -> None:
    padded_ticker = hexbytes("02 14 00 00 0d 00 00 00 00 00 c8 42 58 9a 0e 68 ff ff ff ff")
    decoded = p.decode_frame(padded_ticker + OI)
    assert decoded.packets == [EXPECTED_TICKER, EXPECTED_OI]
    assert decoded.skipped == 0


@pytest.mark.parametrize("length", ["00 00", "07 00"])
def test_length_below_the_header_size_cannot_loop_forever(length: str) -> None:
    frame = hexbytes(f"02 {length} 00 0d 00 00 00") + TICKER
    decoded = p.decode_frame(frame)
    assert decoded.packets == []
    assert decoded.skipped == 1


def test_empty_frame_is_empty() -> None:
    assert p.decode_frame(b"") == p.Decoded([], 0)


def test_random_and_truncated_frames_never_raise() -> None:
    rng = random.Random(20240611)
    valid = [PREV_CLOSE, QUOTE, OI, TICKER, FULL, DISCONNECT, INDEX, MARKET_STATUS]
    for _ in range(3000):
        kind = rng.random()
        if kind < 0.4:
            frame = rng.randbytes(rng.randrange(0, 400))
        else:
            parts = [rng.choice(valid) for _ in range(rng.randrange(1, 6))]
            frame = b"".join(parts)
            if kind < 0.8:
                frame = frame[: rng.randrange(0, len(frame) + 1)]
            else:  # flip a few bytes
                data = bytearray(frame)
                for _ in range(rng.randrange(1, 4)):
                    data[rng.randrange(len(data))] = rng.randrange(256)
                frame = bytes(data)
        decoded = p.decode_frame(frame)
        assert decoded.skipped >= 0
        assert sum(1 for _ in decoded.packets) <= max(1, len(frame) // p.HEADER_SIZE)


def test_truncating_a_valid_frame_keeps_exactly_the_whole_packets_before_the_cut() -> None:
    parts = [PREV_CLOSE, QUOTE, OI, TICKER, FULL]
    frame = b"".join(parts)
    ends = [sum(len(x) for x in parts[: i + 1]) for i in range(len(parts))]
    for cut in range(len(frame) + 1):
        decoded = p.decode_frame(frame[:cut])
        whole = sum(1 for end in ends if end <= cut)
        assert len(decoded.packets) == whole
        assert decoded.skipped == (0 if cut in ends or cut == 0 else 1)


def test_decoding_accepts_bytearray_and_memoryview() -> None:
    assert p.decode_frame(bytearray(QUOTE)).packets == [EXPECTED_QUOTE]
    assert p.decode_frame(memoryview(QUOTE)).packets == [EXPECTED_QUOTE]


# --- decode_trades: the collector's path, each trade a Trade NamedTuple ---

TRADE_QUOTE = (1, 1333, 100.0, 5, LTT, 123456)  # segment, security, ltp, ltq, ltt, volume
TRADE_FULL = (2, 55796, pytest.approx(152.3, abs=1e-4), 75, LTT, 100000)
TRADE_TICKER = (0, 13, 100.0, None, LTT, None)  # a Ticker has no LTQ and no volume


@pytest.mark.parametrize(
    "frame, trade", [(QUOTE, TRADE_QUOTE), (FULL, TRADE_FULL), (TICKER, TRADE_TICKER)]
)
def test_decode_trades_reads_each_trade_packet_as_a_trade(frame: bytes, trade) -> None:
    decoded = p.decode_trades(frame)
    assert decoded == p.Trades([trade], [], 0)
    assert type(decoded.trades[0]) is p.Trade
    assert decoded.trades[0].security_id == trade[1] and decoded.trades[0].ltt == LTT


def test_decode_trades_keeps_frame_order_and_hands_the_other_packets_on_decoded() -> None:
    frame = PREV_CLOSE + QUOTE + OI + TICKER + MARKET_STATUS + FULL + DISCONNECT
    decoded = p.decode_trades(frame)
    assert decoded.trades == [TRADE_QUOTE, TRADE_TICKER, TRADE_FULL]
    assert decoded.others == [
        EXPECTED_PREV_CLOSE, EXPECTED_OI, p.MarketStatus(0, 0, b"\x01\x00"), EXPECTED_DISCONNECT,
    ]  # fmt: skip
    assert decoded.skipped == 0


@pytest.mark.parametrize(
    "frame, trades, others, skipped",
    [
        (INDEX + TICKER, [TRADE_TICKER], [], 1),
        (hexbytes("63 0c 00 01 35 05 00 00 de ad be ef") + QUOTE, [TRADE_QUOTE], [], 1),
        (hexbytes("04 10 00 01 35 05 00 00 00 00 c8 42 58 9a 0e 68") + OI, [], [EXPECTED_OI], 1),
        (hexbytes("02 ff 00 00 0d 00 00 00 00 00 c8 42 58 9a 0e 68") + TICKER, [], [], 1),
        (hexbytes("02 07 00 00 0d 00 00 00") + TICKER, [], [], 1),
        (hexbytes("02 14 00 00 0d 00 00 00 00 00 c8 42 58 9a 0e 68 ff ff ff ff") + OI,
         [TRADE_TICKER], [EXPECTED_OI], 0),
        (TICKER + QUOTE[:20], [TRADE_TICKER], [], 1),
        (QUOTE + FULL[:8], [TRADE_QUOTE], [], 1),
        (b"", [], [], 0),
    ],
)  # fmt: skip
def test_decode_trades_skips_and_stops_where_decode_frame_does(
    frame: bytes, trades: list, others: list, skipped: int
) -> None:
    assert p.decode_trades(frame) == p.Trades(trades, others, skipped)


def test_decode_trades_accepts_bytearray_and_memoryview() -> None:
    assert p.decode_trades(bytearray(FULL)).trades == [TRADE_FULL]
    assert p.decode_trades(memoryview(QUOTE + TICKER)).trades == [TRADE_QUOTE, TRADE_TICKER]


def as_trade(packet: p.Packet) -> p.Trade:
    if isinstance(packet, p.Ticker):
        return p.Trade(packet.segment, packet.security_id, packet.ltp, None, packet.ltt, None)
    return p.Trade(
        packet.segment, packet.security_id, packet.ltp, packet.ltq, packet.ltt, packet.volume
    )


def test_decode_trades_agrees_with_decode_frame_on_random_valid_and_invalid_frames() -> None:
    rng = random.Random(20261127)
    valid = [PREV_CLOSE, QUOTE, OI, TICKER, FULL, DISCONNECT, INDEX, MARKET_STATUS]
    trades_seen = others_seen = skipped_seen = 0
    for _ in range(4000):
        kind = rng.random()
        if kind < 0.2:
            frame = rng.randbytes(rng.randrange(0, 400))
        else:
            frame = b"".join(rng.choice(valid) for _ in range(rng.randrange(1, 6)))
            data = bytearray(frame)
            if kind < 0.5:  # new field values: random bytes past the first header
                for _ in range(rng.randrange(1, 12)):
                    data[rng.randrange(8, len(data))] = rng.randrange(256)
            elif kind < 0.7:  # anywhere, headers included
                for _ in range(rng.randrange(1, 4)):
                    data[rng.randrange(len(data))] = rng.randrange(256)
            elif kind < 0.9:
                del data[rng.randrange(0, len(data) + 1) :]
            frame = bytes(data)
        reference = p.decode_frame(frame)
        decoded = p.decode_trades(frame)
        expected_trades = [as_trade(x) for x in reference.packets if isinstance(x, p.TRADES)]
        expected_others = [x for x in reference.packets if not isinstance(x, p.TRADES)]
        # repr: random float bytes can be NaN, which equals nothing, not even itself
        assert repr(decoded.trades) == repr(expected_trades), frame.hex()
        assert all(type(t) is p.Trade for t in decoded.trades)
        assert repr(decoded.others) == repr(expected_others), frame.hex()
        assert decoded.skipped == reference.skipped, frame.hex()
        trades_seen += len(decoded.trades)
        others_seen += len(decoded.others)
        skipped_seen += decoded.skipped
    assert min(trades_seen, others_seen, skipped_seen) > 500  # every branch was exercised


# --- encoding (the simulator's side) against the same hand-written bytes ---


def test_encoders_reproduce_the_hand_written_bytes() -> None:
    full = EXPECTED_FULL._replace(ltp=p.decode_frame(FULL).packets[0].ltp)
    assert p.encode_full(full) == FULL
    assert p.encode_quote(EXPECTED_QUOTE) == QUOTE
    assert p.encode_ticker(EXPECTED_TICKER) == TICKER
    assert p.encode_oi(EXPECTED_OI) == OI
    assert p.encode_prev_close(EXPECTED_PREV_CLOSE) == PREV_CLOSE
    assert p.encode_disconnect(805) == DISCONNECT
    assert p.encode_market_status(b"\x01\x00") == MARKET_STATUS


def test_encode_dispatches_on_the_packet_type() -> None:
    assert p.encode(EXPECTED_QUOTE) == QUOTE
    assert p.encode(EXPECTED_DISCONNECT) == DISCONNECT
    assert p.encode(p.MarketStatus(0, 0, b"\x01\x00")) == MARKET_STATUS


def test_encoding_152_30_gives_the_captured_float_bytes() -> None:
    packet = p.Full(2, 55796, 152.3, 75, LTT, *EXPECTED_FULL[5:])
    assert p.encode_full(packet)[:16] == FULL[:16]


# --- requests ---


def instruments(n: int) -> list[tuple[str, int]]:
    return [("NSE_EQ", 1000 + i) for i in range(n)]


@pytest.mark.parametrize(
    "n, sizes", [(1, [1]), (100, [100]), (101, [100, 1]), (250, [100, 100, 50])]
)
def test_subscribe_requests_carry_at_most_100_instruments_each(n: int, sizes: list[int]) -> None:
    messages = [json.loads(m) for m in p.subscribe_requests(instruments(n), "quote")]
    assert [m["InstrumentCount"] for m in messages] == sizes
    assert [len(m["InstrumentList"]) for m in messages] == sizes
    sent = [
        (i["ExchangeSegment"], int(i["SecurityId"])) for m in messages for i in m["InstrumentList"]
    ]
    assert sent == instruments(n)


def test_request_shape_matches_the_documented_example() -> None:
    (message,) = p.subscribe_requests([("NSE_EQ", 1333), ("NSE_FNO", 55796)], "quote")
    assert json.loads(message) == {
        "RequestCode": 17,
        "InstrumentCount": 2,
        "InstrumentList": [
            {"ExchangeSegment": "NSE_EQ", "SecurityId": "1333"},
            {"ExchangeSegment": "NSE_FNO", "SecurityId": "55796"},
        ],
    }


@pytest.mark.parametrize(
    "mode, sub, unsub", [("ticker", 15, 16), ("quote", 17, 18), ("full", 21, 22)]
)
def test_request_codes_per_mode(mode: str, sub: int, unsub: int) -> None:
    assert json.loads(p.subscribe_requests([("IDX_I", 13)], mode)[0])["RequestCode"] == sub
    assert json.loads(p.unsubscribe_requests([("IDX_I", 13)], mode)[0])["RequestCode"] == unsub


def test_disconnect_request_is_code_12() -> None:
    assert json.loads(p.disconnect_request()) == {"RequestCode": 12}


def test_no_instruments_means_no_messages() -> None:
    assert p.subscribe_requests([], "quote") == []


def test_segment_codes_match_the_documented_table() -> None:
    assert p.SEGMENT_CODES == {
        "IDX_I": 0, "NSE_EQ": 1, "NSE_FNO": 2, "NSE_CURRENCY": 3, "BSE_EQ": 4,
        "MCX_COMM": 5, "BSE_CURRENCY": 7, "BSE_FNO": 8,
    }  # fmt: skip
