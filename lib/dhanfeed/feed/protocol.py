"""Dhan live-feed v2 wire format: binary packets in, JSON requests out. No I/O.

Layouts are those of shared/dhan-api.md §3 (little-endian). A frame is walked as a sequence
of packets by each header's length field (the whole packet, header included). Unknown
codes, truncated and malformed packets are skipped and counted, never raised.

The simulator imports the `encode_*` functions; the tests check both directions against
hand-written byte fixtures so that one bug cannot hide by being made twice.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

# Packets carry these segment codes; users of the protocol find them here too.
from dhanfeed.instruments import SEGMENT_CODES as SEGMENT_CODES
from dhanfeed.instruments import SEGMENT_NAMES as SEGMENT_NAMES

HEADER = struct.Struct("<BHBI")  # code, length (whole packet), segment, security id
HEADER_SIZE = HEADER.size  # 8

INDEX, TICKER, QUOTE, OI, PREV_CLOSE, MARKET_STATUS, FULL, DISCONNECT = 1, 2, 4, 5, 6, 7, 8, 50

_TICKER = struct.Struct("<fi")  # ltp, ltt
_QUOTE = struct.Struct("<fHifIIIffff")  # ltp ltq ltt atp volume sell buy open close high low
_FULL_HEAD = struct.Struct("<fHifIIIIIIffff")  # ... buy, oi, oi_high, oi_low, open..low
_DEPTH = struct.Struct("<IIHHff")  # bid qty, ask qty, bid orders, ask orders, bid px, ask px
_OI = struct.Struct("<I")
_PREV_CLOSE = struct.Struct("<fI")
_DISCONNECT = struct.Struct("<H")

TICKER_SIZE = HEADER_SIZE + _TICKER.size  # 16
QUOTE_SIZE = HEADER_SIZE + _QUOTE.size  # 50
FULL_SIZE = HEADER_SIZE + _FULL_HEAD.size + 5 * _DEPTH.size  # 162
OI_SIZE = HEADER_SIZE + _OI.size  # 12
PREV_CLOSE_SIZE = HEADER_SIZE + _PREV_CLOSE.size  # 16
DISCONNECT_SIZE = HEADER_SIZE + _DISCONNECT.size  # 10

# Decoding fast paths (Quote and Full are nearly all of a session's traffic): one unpack of the
# whole packet that skips the code and length bytes ("xxx") yields the packet's fields in
# order, segment and security id first, and `tuple.__new__` builds the NamedTuple from that
# tuple in C, without the Python-level `__new__` a keyword-capable constructor costs. A Full
# packet's depth comes out as its 100 raw bytes (a copy, whatever buffer the frame is in), to
# be decoded only if someone reads it (see `LazyDepth`).
_QUOTE_PACKET = struct.Struct("<xxxBI" + _QUOTE.format[1:])
_FULL_PACKET = struct.Struct(f"<xxxBI{_FULL_HEAD.format[1:]}{5 * _DEPTH.size}s")
_DEPTH_LEVELS = struct.Struct("<" + 5 * _DEPTH.format[1:])
_new = tuple.__new__
# A frame that is exactly one Quote or one Full packet starts with these bytes (code, length).
_QUOTE_START = bytes((QUOTE, QUOTE_SIZE, 0))
_FULL_START = bytes((FULL, FULL_SIZE, 0))

# Request codes (JSON text frames): subscribe, unsubscribe per mode; 12 = disconnect.
MODES = {"ticker": (15, 16), "quote": (17, 18), "full": (21, 22)}
REQUEST_DISCONNECT = 12
MAX_PER_MESSAGE = 100
MAX_PER_SOCKET = 5000

DISCONNECT_REASONS = {
    800: "internal server error",
    804: "too many instruments requested",
    805: "connection limit exceeded (oldest socket closed)",
    806: "Data APIs not subscribed",
    807: "access token expired",
    808: "authentication failed (client id)",
    809: "access token invalid",
    810: "client id invalid",
}


class Ticker(NamedTuple):
    segment: int
    security_id: int
    ltp: float
    ltt: int  # seconds since 1970-01-01 00:00 IST


class Quote(NamedTuple):
    segment: int
    security_id: int
    ltp: float
    ltq: int
    ltt: int  # IST-epoch
    atp: float
    volume: int  # cumulative for the day
    total_sell_qty: int
    total_buy_qty: int
    day_open: float
    day_close: float
    day_high: float
    day_low: float


class DepthLevel(NamedTuple):
    bid_qty: int
    ask_qty: int
    bid_orders: int
    ask_orders: int
    bid_price: float
    ask_price: float


class LazyDepth(Sequence[DepthLevel]):
    """The five depth levels of a decoded Full packet, decoded from its bytes on first use.

    Decoding them eagerly cost as much as the rest of the packet, and the collector never reads
    them. Reads like the tuple of `DepthLevel`s it stands for (`full.depth[0].bid_price`,
    iteration, slicing, `len`) and compares and hashes equal to it, so a decoded Full equals
    one built with a tuple; only `isinstance(depth, tuple)` tells them apart.
    """

    __slots__ = ("_raw", "_levels")

    def __init__(self, raw: bytes) -> None:
        self._raw = raw  # the 100 depth bytes of the packet, our own copy
        self._levels: tuple[DepthLevel, ...] | None = None

    def levels(self) -> tuple[DepthLevel, ...]:
        """The levels as a plain tuple (decoded once, then kept)."""
        if self._levels is None:
            v = _DEPTH_LEVELS.unpack(self._raw)
            self._levels = (
                _new(DepthLevel, v[0:6]),
                _new(DepthLevel, v[6:12]),
                _new(DepthLevel, v[12:18]),
                _new(DepthLevel, v[18:24]),
                _new(DepthLevel, v[24:30]),
            )
        return self._levels

    def __getitem__(self, index):  # noqa: ANN001, ANN204 - int or slice, as a tuple takes
        return self.levels()[index]

    def __len__(self) -> int:
        return 5

    def __iter__(self) -> Iterator[DepthLevel]:
        return iter(self.levels())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LazyDepth):
            other = other.levels()
        return self.levels() == other if isinstance(other, tuple) else NotImplemented

    def __hash__(self) -> int:
        return hash(self.levels())

    def __repr__(self) -> str:
        return repr(self.levels())


class Full(NamedTuple):
    segment: int
    security_id: int
    ltp: float
    ltq: int
    ltt: int  # IST-epoch
    atp: float
    volume: int
    total_sell_qty: int
    total_buy_qty: int
    oi: int
    oi_high: int
    oi_low: int
    day_open: float
    day_close: float
    day_high: float
    day_low: float
    depth: Sequence[DepthLevel]  # a tuple, or a LazyDepth in decoded packets


class OpenInterest(NamedTuple):
    segment: int
    security_id: int
    oi: int


class PrevClose(NamedTuple):
    segment: int
    security_id: int
    prev_close: float
    prev_oi: int


class MarketStatus(NamedTuple):
    segment: int
    security_id: int
    payload: bytes  # layout unconfirmed


class Disconnect(NamedTuple):
    segment: int
    security_id: int
    reason: int


Packet = Ticker | Quote | Full | OpenInterest | PrevClose | MarketStatus | Disconnect
TRADES = (Ticker, Quote, Full)  # packets that carry a last trade (LTP/LTT)


class Decoded(NamedTuple):
    packets: list[Packet]
    skipped: int  # unknown, truncated or malformed packets in this frame


def decode_frame(frame: bytes | bytearray | memoryview) -> Decoded:
    """Walk a binary frame packet by packet; never raises on bad input."""
    end = len(frame)
    # Dhan sends one packet per WebSocket message (the SDK parses one per message): a frame
    # that is exactly one Quote or Full packet needs no walk.
    if end == QUOTE_SIZE and frame[:3] == _QUOTE_START:
        return _new(Decoded, ([_new(Quote, _QUOTE_PACKET.unpack_from(frame))], 0))
    if end == FULL_SIZE and frame[:3] == _FULL_START:
        return _new(Decoded, ([_decode_full(frame, 0)], 0))
    packets: list[Packet] = []
    append = packets.append
    skipped = 0
    offset = 0
    unpack_header = HEADER.unpack_from
    while offset < end:
        if end - offset < HEADER_SIZE:
            return _new(Decoded, (packets, skipped + 1))  # trailing bytes too short for a header
        code, length, segment, security_id = unpack_header(frame, offset)
        if length < HEADER_SIZE or offset + length > end:
            return _new(Decoded, (packets, skipped + 1))  # cannot trust the length: stop walking
        if code == QUOTE and length >= QUOTE_SIZE:
            append(_new(Quote, _QUOTE_PACKET.unpack_from(frame, offset)))
        elif code == FULL and length >= FULL_SIZE:
            append(_decode_full(frame, offset))
        else:
            packet = _decode_one(code, segment, security_id, frame, offset, length)
            if packet is None:
                skipped += 1
            else:
                append(packet)
        offset += length
    return _new(Decoded, (packets, skipped))


_FULL_HEAD_FIELDS = len(Full._fields) - 1  # every field but depth


def _decode_full(buf, off: int) -> Full:  # noqa: ANN001
    v = _FULL_PACKET.unpack_from(buf, off)  # segment .. day_low, then the depth bytes
    return _new(Full, v[:_FULL_HEAD_FIELDS] + (LazyDepth(v[_FULL_HEAD_FIELDS]),))


def _decode_one(code: int, seg: int, sid: int, buf, off: int, length: int) -> Packet | None:  # noqa: ANN001
    """The packets that are not Quote or Full (decode_frame's fast paths)."""
    body = off + HEADER_SIZE
    if code == TICKER and length >= TICKER_SIZE:
        return Ticker(seg, sid, *_TICKER.unpack_from(buf, body))
    if code == OI and length >= OI_SIZE:
        return OpenInterest(seg, sid, *_OI.unpack_from(buf, body))
    if code == PREV_CLOSE and length >= PREV_CLOSE_SIZE:
        return PrevClose(seg, sid, *_PREV_CLOSE.unpack_from(buf, body))
    if code == DISCONNECT and length >= DISCONNECT_SIZE:
        return Disconnect(seg, sid, *_DISCONNECT.unpack_from(buf, body))
    if code == MARKET_STATUS:
        return MarketStatus(seg, sid, bytes(buf[body : off + length]))
    return None  # Index (1), unknown codes, or a known code that is too short


# ---------------------------------------------------------------------------------------------
# The collector's path: only what a candle needs from each trade packet


class Trade(NamedTuple):
    """What a candle needs from one Quote, Full or Ticker packet."""

    segment: int  # the exchange segment code (1 = NSE_EQ)
    security_id: int
    ltp: float
    ltq: int | None  # None for a Ticker
    ltt: int  # IST-epoch seconds, as Dhan sends it
    cum_volume: int | None  # the day's volume so far; None for a Ticker


class Trades(NamedTuple):
    """A frame as the collector wants it: a `Trade` for each Quote, Full and Ticker packet,
    in frame order; `others` the rest of the packets as `decode_frame` gives them; `skipped`
    as there."""

    trades: list[Trade]
    others: list[Packet]
    skipped: int


# Quote and Full begin alike (ltp, ltq, ltt, atp, volume): one unpack of the first 26 bytes,
# skipping code, length and atp, yields the `Trade` fields in order (built with tuple.__new__:
# NamedTuple's own __new__ is Python code, and this runs once per packet).
_TRADE = struct.Struct("<xxxBIfHi4xI")
_TICKER_TRADE = struct.Struct("<xxxBIfi")  # segment, security id, ltp, ltt


def decode_trades(frame: bytes | bytearray | memoryview) -> Trades:
    """`decode_frame`'s walk (same skip and stop rules), trade packets as `Trade`s."""
    end = len(frame)
    if (end == QUOTE_SIZE and frame[:3] == _QUOTE_START) or (
        end == FULL_SIZE and frame[:3] == _FULL_START
    ):
        return _new(Trades, ([_new(Trade, _TRADE.unpack_from(frame))], [], 0))
    trades: list[Trade] = []
    others: list[Packet] = []
    skipped = 0
    offset = 0
    unpack_header = HEADER.unpack_from
    while offset < end:
        if end - offset < HEADER_SIZE:
            return _new(Trades, (trades, others, skipped + 1))
        code, length, segment, security_id = unpack_header(frame, offset)
        if length < HEADER_SIZE or offset + length > end:
            return _new(Trades, (trades, others, skipped + 1))
        if (code == QUOTE and length >= QUOTE_SIZE) or (code == FULL and length >= FULL_SIZE):
            trades.append(_new(Trade, _TRADE.unpack_from(frame, offset)))
        elif code == TICKER and length >= TICKER_SIZE:
            _, _, ltp, ltt = _TICKER_TRADE.unpack_from(frame, offset)
            trades.append(_new(Trade, (segment, security_id, ltp, None, ltt, None)))
        else:
            packet = _decode_one(code, segment, security_id, frame, offset, length)
            if packet is None:
                skipped += 1
            else:
                others.append(packet)
        offset += length
    return _new(Trades, (trades, others, skipped))


# ---------------------------------------------------------------------------------------------
# Encoding (used by the simulator and by tests that build frames)


def _header(code: int, size: int, segment: int, security_id: int) -> bytes:
    return HEADER.pack(code, size, segment, security_id)


def encode_ticker(p: Ticker) -> bytes:
    return _header(TICKER, TICKER_SIZE, p.segment, p.security_id) + _TICKER.pack(p.ltp, p.ltt)


def encode_quote(p: Quote) -> bytes:
    return _header(QUOTE, QUOTE_SIZE, p.segment, p.security_id) + _QUOTE.pack(*p[2:])


def encode_full(p: Full) -> bytes:
    head = _FULL_HEAD.pack(*p[2:-1])
    depth = b"".join(_DEPTH.pack(*level) for level in p.depth)
    return _header(FULL, FULL_SIZE, p.segment, p.security_id) + head + depth


def encode_oi(p: OpenInterest) -> bytes:
    return _header(OI, OI_SIZE, p.segment, p.security_id) + _OI.pack(p.oi)


def encode_prev_close(p: PrevClose) -> bytes:
    return _header(PREV_CLOSE, PREV_CLOSE_SIZE, p.segment, p.security_id) + _PREV_CLOSE.pack(
        p.prev_close, p.prev_oi
    )


def encode_disconnect(reason: int, segment: int = 0, security_id: int = 0) -> bytes:
    return _header(DISCONNECT, DISCONNECT_SIZE, segment, security_id) + _DISCONNECT.pack(reason)


def encode_market_status(payload: bytes = b"", segment: int = 0, security_id: int = 0) -> bytes:
    return _header(MARKET_STATUS, HEADER_SIZE + len(payload), segment, security_id) + payload


_ENCODERS: dict[type, Callable[[Any], bytes]] = {
    Ticker: encode_ticker,
    Quote: encode_quote,
    Full: encode_full,
    OpenInterest: encode_oi,
    PrevClose: encode_prev_close,
}


def encode(packet: Packet) -> bytes:
    if isinstance(packet, Disconnect):
        return encode_disconnect(packet.reason, packet.segment, packet.security_id)
    if isinstance(packet, MarketStatus):
        return encode_market_status(packet.payload, packet.segment, packet.security_id)
    return _ENCODERS[type(packet)](packet)


# ---------------------------------------------------------------------------------------------
# Requests (JSON text frames)


def _requests(code: int, instruments: Sequence[tuple[str, int]]) -> list[str]:
    out = []
    for start in range(0, len(instruments), MAX_PER_MESSAGE):
        chunk = instruments[start : start + MAX_PER_MESSAGE]
        out.append(
            json.dumps(
                {
                    "RequestCode": code,
                    "InstrumentCount": len(chunk),
                    "InstrumentList": [
                        {"ExchangeSegment": seg, "SecurityId": str(sid)} for seg, sid in chunk
                    ],
                }
            )
        )
    return out


def subscribe_requests(instruments: Iterable[tuple[str, int]], mode: str = "quote") -> list[str]:
    """JSON subscribe messages of at most 100 instruments each; (segment name, security id)."""
    return _requests(MODES[mode][0], list(instruments))


def unsubscribe_requests(instruments: Iterable[tuple[str, int]], mode: str = "quote") -> list[str]:
    return _requests(MODES[mode][1], list(instruments))


def disconnect_request() -> str:
    return json.dumps({"RequestCode": REQUEST_DISCONNECT})
