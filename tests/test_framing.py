"""Server frames cut out of raw socket reads: hand-written RFC 6455 bytes, every split point."""

from __future__ import annotations

import random

import pytest

from dhanfeed.feed.framing import BINARY, CLOSE, PING, Control, FrameReader, ProtocolError


def frame(payload: bytes, opcode: int = BINARY, *, fin: bool = True) -> bytes:
    """A server frame (never masked) with the shortest length encoding, as RFC 6455 §5.2."""
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        return bytes([first, n]) + payload
    if n < 1 << 16:
        return bytes([first, 126]) + n.to_bytes(2, "big") + payload
    return bytes([first, 127]) + n.to_bytes(8, "big") + payload


QUOTE = bytes(range(50))  # a Quote packet is 50 bytes
FULL = bytes(162)
BIG = bytes(70_000)  # needs the 8-byte length


def test_a_one_packet_message_is_two_header_bytes_then_the_packet() -> None:
    assert frame(QUOTE)[:2] == b"\x82\x32"
    assert FrameReader().feed(frame(QUOTE)) == ([QUOTE], [])


def test_many_messages_in_one_read_come_out_in_order_with_pings_beside_them() -> None:
    data = frame(QUOTE) + frame(b"ping!", PING) + frame(FULL) + frame(BIG) + frame(QUOTE)
    messages, controls = FrameReader().feed(data)
    assert messages == [QUOTE, FULL, BIG, QUOTE]
    assert controls == [Control(PING, b"ping!")]


def test_a_message_split_across_reads_at_every_byte_comes_out_once_and_whole() -> None:
    stream = frame(QUOTE) + frame(FULL) + frame(b"\x03\xe8", CLOSE)
    for cut in range(len(stream) + 1):
        reader = FrameReader()
        first = reader.feed(stream[:cut])
        second = reader.feed(stream[cut:])
        assert first[0] + second[0] == [QUOTE, FULL], cut
        assert first[1] + second[1] == [Control(CLOSE, b"\x03\xe8")], cut


def test_random_reads_of_a_long_stream_give_back_exactly_the_messages_sent() -> None:
    rng = random.Random(11)
    sent = [rng.randbytes(rng.choice([16, 50, 62, 162, 300, 70_000])) for _ in range(500)]
    stream = b"".join(frame(m) for m in sent)
    reader, got, at = FrameReader(), [], 0
    while at < len(stream):
        step = rng.randrange(1, 5000)
        got += reader.feed(stream[at : at + step])[0]
        at += step
    assert got == sent


def test_fragments_are_joined_into_one_message() -> None:
    data = (
        frame(b"ab", BINARY, fin=False)
        + frame(b"ping", PING)  # a control frame may come between fragments
        + frame(b"cd", 0, fin=False)
        + frame(b"ef", 0)
    )
    assert FrameReader().feed(data) == ([b"abcdef"], [Control(PING, b"ping")])


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (bytes([0x82, 0x80 | 4]) + b"mask" + b"x" * 4, "masked"),
        (bytes([0x82 | 0x40, 1, 0]), "reserved bits"),
        (frame(b"x", 0), "continuation without"),
        (frame(b"a", BINARY, fin=False) + frame(b"b"), "inside a fragmented"),
        (frame(b"p", PING, fin=False), "bad control frame"),
        (frame(b"?", 0x3), "unknown opcode"),
        (bytes([0x82, 127]) + (1 << 40).to_bytes(8, "big"), "a frame of"),
    ],
    ids=["masked", "rsv", "lone-continuation", "interleaved", "fragmented-ping", "opcode", "huge"],
)
def test_a_stream_that_breaks_the_protocol_is_refused(data: bytes, why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        FrameReader().feed(data)
