"""The simulated market: a seeded random walk per instrument, its trades and its packets.

The feed is sampled, as Dhan's is: the market makes `trades_per_packet` trades between two
packets of an instrument (default 3), so highs and lows built from the packets miss some
trades, as they do live. The exchange's 1-minute bars (the intraday REST endpoint) are built
here from EVERY trade, whether or not anyone was subscribed; the packets' tape (cumulative
volume, LTT, LTP of each packet, in compact arrays) answers the admin's per-tick record.

Every trade has a quantity of at least 1, so an instrument's cumulative day volume strictly
increases packet by packet (indices trade with quantity 0 and volume 0, like Dhan's
Ticker-only index values). LTT is IST-epoch seconds of the real clock (`utc + 19800`,
dhan-api.md §3); the trades of one packet happen in that packet's second, so a minute's
close and volume equal those of its last packet and only open, high and low can differ.
"""

from __future__ import annotations

import random
import struct
from array import array
from collections.abc import Iterable

from dhanfeed.feed import protocol as p

IST_OFFSET_S = 19800
TICK_SIZE = 0.05
IDX_I, NSE_FNO = p.SEGMENT_CODES["IDX_I"], p.SEGMENT_CODES["NSE_FNO"]
FNO_LOT = 75
SESSION_ANCHOR_S = (9 * 60 + 15) * 60  # 09:15 IST: Indian intraday bars start here
TRADES_PER_PACKET = 3
# Whole packets in one pack each (header + payload, dhan-api.md §3): the market loop encodes
# every packet it sends, so it skips protocol.encode_*'s packet objects. test_sim_feed reads
# them back with a decoder written from the documented offsets.
_TICKER_PACKET = struct.Struct("<BHBIfi")
_QUOTE_PACKET = struct.Struct("<BHBIfHifIIIffff")
_FULL_PACKET = struct.Struct("<BHBIfHifIIIIIIffff" + "IIHHff" * 5)
_TABLE = 65_521  # prime: random steps drawn once, walked by every trade

DEFAULT_INSTRUMENTS = (
    "NSE_EQ:1333",
    "NSE_EQ:2885",
    "NSE_EQ:11536",
    "NSE_EQ:1594",
    "NSE_EQ:4963",
    "NSE_EQ:3045",
    "NSE_FNO:55796",
    "NSE_FNO:35001",
    "NSE_FNO:35002",
    "IDX_I:13",
    "IDX_I:25",
    "IDX_I:51",
)


def parse_instruments(text: str) -> list[tuple[int, int]]:
    """ "NSE_EQ:1333,IDX_I:13" and ranges "NSE_EQ:1000-1999" → [(segment code, security id)]."""
    out: list[tuple[int, int]] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        seg_name, sep, ids = item.partition(":")
        seg = p.SEGMENT_CODES.get(seg_name.strip().upper())
        if not sep or seg is None:
            raise ValueError(f"bad instrument {item!r}: expected SEGMENT:SECURITY_ID (or A-B)")
        low, dash, high = ids.strip().partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise ValueError(f"bad security id in {item!r}")
        first, last = int(low), int(high) if dash else int(low)
        if last < first or last - first >= 100_000:
            raise ValueError(f"bad range in {item!r}")
        out.extend((seg, sid) for sid in range(first, last + 1))
    if not out:
        raise ValueError("no instruments given")
    return out


def key_of(segment: int, security_id: int) -> str:
    return f"{p.SEGMENT_NAMES.get(segment, str(segment))}:{security_id}"


class Tape:
    """One instrument: its current state and every tick it has traded."""

    __slots__ = (
        "key", "segment", "security_id", "is_index", "is_fno", "lot",
        "draw", "px", "ltp", "ltq", "prev_close", "day_open", "day_high", "day_low", "cum", "turnover",
        "oi", "oi_high", "oi_low", "prev_oi", "oi_changed", "buy_qty", "sell_qty",
        "cums", "ltts", "ltps", "subscribers", "trades",
        "bar_starts", "bar_opens", "bar_highs", "bar_lows", "bar_closes", "bar_cums",
    )  # fmt: skip

    def __init__(self, segment: int, security_id: int, seed: int) -> None:
        rng = random.Random(f"{seed}:{segment}:{security_id}")
        self.key = key_of(segment, security_id)
        self.segment, self.security_id = segment, security_id
        self.is_index = segment == IDX_I
        self.is_fno = segment == NSE_FNO
        self.lot = FNO_LOT if self.is_fno else 1
        low, high = (10000, 50000) if self.is_index else (20, 600) if self.is_fno else (100, 3000)
        self.prev_close = _round_tick(rng.uniform(low, high))
        self.ltp = self.day_open = self.day_high = self.day_low = _round_tick(
            self.prev_close * (1 + rng.uniform(-0.01, 0.01))
        )
        self.px = round(self.ltp / TICK_SIZE)  # the price in ticks: the walk stays on the grid
        # Where this instrument walks the market's table of draws: its own place, so that its
        # trades repeat with the seed however the loop interleaves instruments.
        self.draw = rng.randrange(_TABLE)
        self.ltq = 0
        self.cum = 0
        self.turnover = 0.0
        self.prev_oi = rng.randrange(10_000, 500_000) * self.lot if self.is_fno else 0
        self.oi = self.oi_high = self.oi_low = self.prev_oi
        self.oi_changed = False
        self.buy_qty = rng.randrange(1_000, 100_000)
        self.sell_qty = rng.randrange(1_000, 100_000)
        self.cums = array("q")
        self.ltts = array("i")
        self.ltps = array("f")  # float32: exactly what the packet carries
        self.subscribers: dict = {}  # socket → modes; owned by the feed
        self.trades = 0
        # The exchange's 1-minute bars from every trade; the last one may still be open.
        self.bar_starts = array("q")  # UTC epoch of each minute with a trade
        self.bar_opens, self.bar_highs = array("d"), array("d")
        self.bar_lows, self.bar_closes = array("d"), array("d")
        self.bar_cums = array("q")  # cumulative volume at the minute's last trade

    @property
    def ticks(self) -> int:
        return len(self.cums)

    @property
    def atp(self) -> float:
        return self.turnover / self.cum * TICK_SIZE if self.cum else self.ltp

    # --- packets (encoded by dhanfeed.feed.protocol) ---

    def ticker_packet(self) -> bytes:
        return _TICKER_PACKET.pack(
            p.TICKER, p.TICKER_SIZE, self.segment, self.security_id, self.ltp, self.ltts[-1]
        )

    def quote_packet(self) -> bytes:
        return _QUOTE_PACKET.pack(
            p.QUOTE, p.QUOTE_SIZE, self.segment, self.security_id,
            self.ltp, self.ltq, self.ltts[-1], self.atp, self.cum, self.sell_qty, self.buy_qty,
            self.day_open, self.prev_close, self.day_high, self.day_low,
        )  # fmt: skip

    def full_packet(self) -> bytes:
        ltp, n = self.ltp, self.cum
        depth: list[float] = []
        for i in range(5):
            depth += (
                (n * 7 + i * 131) % 5000 + 1, (n * 11 + i * 97) % 5000 + 1,
                (n + i) % 40 + 1, (n + 3 * i) % 40 + 1,
                max(TICK_SIZE, ltp - TICK_SIZE * (i + 1)), ltp + TICK_SIZE * (i + 1),
            )  # fmt: skip
        return _FULL_PACKET.pack(
            p.FULL, p.FULL_SIZE, self.segment, self.security_id,
            ltp, self.ltq, self.ltts[-1], self.atp, n, self.sell_qty, self.buy_qty,
            self.oi, self.oi_high, self.oi_low,
            self.day_open, self.prev_close, self.day_high, self.day_low, *depth,
        )  # fmt: skip

    def oi_packet(self) -> bytes:
        return p.encode_oi(p.OpenInterest(self.segment, self.security_id, self.oi))

    def prev_close_packet(self) -> bytes:
        return p.encode_prev_close(
            p.PrevClose(self.segment, self.security_id, self.prev_close, self.prev_oi)
        )


def _round_tick(price: float) -> float:
    return max(TICK_SIZE, round(round(price / TICK_SIZE) * TICK_SIZE, 2))


class Market:
    """All instruments; `tick` advances one of them by one packet's worth of trades."""

    def __init__(
        self,
        seed: int,
        instruments: Iterable[tuple[int, int]] = (),
        trades_per_packet: int = TRADES_PER_PACKET,
    ) -> None:
        if trades_per_packet < 1:
            raise ValueError("trades_per_packet must be at least 1")
        self.seed = seed
        self.trades_per_packet = trades_per_packet
        self.rng = rng = random.Random(seed)
        # Random draws cost more than the rest of a trade: draw them once, walk them.
        self._steps = [rng.gauss(0.0, 0.0008) for _ in range(_TABLE)]
        self._sizes = [1 + int(rng.random() * rng.random() * 40) for _ in range(_TABLE)]
        self.tapes: dict[tuple[int, int], Tape] = {}
        self.order: list[Tape] = []  # the tick loop walks this list
        for segment, security_id in instruments:
            self.instrument(segment, security_id)

    def instrument(self, segment: int, security_id: int) -> Tape:
        """The tape of an instrument, created on first use (a subscription may add one)."""
        tape = self.tapes.get((segment, security_id))
        if tape is None:
            tape = self.tapes[(segment, security_id)] = Tape(segment, security_id, self.seed)
            self.order.append(tape)
        return tape

    def find(self, key: str) -> Tape | None:
        seg_name, _, sid = key.partition(":")
        seg = p.SEGMENT_CODES.get(seg_name.upper())
        if seg is None or not sid.isdigit():
            return None
        return self.tapes.get((seg, int(sid)))

    def tick(self, tape: Tape, ltt: int) -> None:
        """One packet's worth of trades at IST-epoch second `ltt`: each walks the price and
        adds a quantity ≥ 1 (0 for an index) and goes into the minute's bar; then the
        packet's state (LTP, LTQ, cumulative volume, book totals, OI) is recorded.

        The market loop runs this for every packet a benchmark asks for (150,000/s), so the
        price walks in whole ticks and the random draws come from tables drawn once."""
        steps, sizes, draw = self._steps, self._sizes, tape.draw
        minute = (ltt - IST_OFFSET_S) // 60 * 60
        px, cum, turnover = tape.px, tape.cum, tape.turnover  # turnover in ticks × qty
        lot = 0 if tape.is_index else tape.lot
        opened = not tape.bar_starts or tape.bar_starts[-1] != minute
        high = low = px
        if not opened:
            high, low = round(tape.bar_highs[-1] * 20), round(tape.bar_lows[-1] * 20)
        qty = 0
        for _ in range(self.trades_per_packet):
            draw += 1
            if draw == _TABLE:
                draw = 0
            px += round(px * steps[draw])
            if px < 1:
                px = 1
            qty = lot * sizes[draw]
            cum += qty
            turnover += qty * px
            if opened:
                opened = False
                high = low = px
                tape.bar_starts.append(minute)
                tape.bar_opens.append(px / 20)
                for bars in (tape.bar_highs, tape.bar_lows, tape.bar_closes):
                    bars.append(0.0)
                tape.bar_cums.append(0)
            elif px > high:
                high = px
            elif px < low:
                low = px
        tape.draw = draw
        ltp = px / 20  # the nearest double to the 2-decimal price (TICK_SIZE = 1/20)
        tape.trades += self.trades_per_packet
        tape.bar_highs[-1], tape.bar_lows[-1] = high / 20, low / 20
        tape.bar_closes[-1], tape.bar_cums[-1] = ltp, cum
        tape.px, tape.ltp, tape.cum, tape.turnover, tape.ltq = px, ltp, cum, turnover, qty
        if high / 20 > tape.day_high:
            tape.day_high = high / 20
        if low / 20 < tape.day_low:
            tape.day_low = low / 20
        if lot:
            self._book(tape, draw)
        tape.cums.append(cum)
        tape.ltts.append(ltt)
        tape.ltps.append(ltp)

    def _book(self, tape: Tape, draw: int) -> None:
        """The packet's order-book totals and open interest drift a little."""
        nudge = int(self._steps[draw - 1] * 125_000)  # about ±100
        if draw & 1:
            tape.buy_qty = max(1, tape.buy_qty + nudge)
        else:
            tape.sell_qty = max(1, tape.sell_qty + nudge)
        if tape.is_fno and self._sizes[draw - 2] % 10 < 3:  # 3 packets in 10
            tape.oi = max(0, tape.oi + tape.lot * (self._sizes[draw - 3] % 20 - 9))
            tape.oi_high = max(tape.oi_high, tape.oi)
            tape.oi_low = min(tape.oi_low, tape.oi)
            tape.oi_changed = True


BAR_FIELDS = ("open", "high", "low", "close", "volume", "timestamp")


def intraday_bars(tape: Tape, interval_min: int, from_utc: float, to_utc: float) -> dict:
    """The exchange's bars of `interval_min` minutes (anchored at 09:15 IST) that start in
    [from_utc, to_utc), shaped as Dhan's intraday endpoint answers: parallel arrays,
    `timestamp` = bar start as UTC epoch seconds, minutes without a trade absent.

    Built from the 1-minute bars of every trade; a bar's volume is the cumulative volume at
    its last trade minus that at the last trade before it, so none is lost between bars.
    """
    width = 60 * interval_min
    out: dict[str, list] = {k: [] for k in BAR_FIELDS}
    prev_cum = 0
    current: list | None = None  # [start, open, high, low, close, cum at its last trade]
    bars = zip(tape.bar_starts, tape.bar_opens, tape.bar_highs, tape.bar_lows,
               tape.bar_closes, tape.bar_cums, strict=True)  # fmt: skip
    for minute, o, h, low, c, cum in bars:
        ist = minute + IST_OFFSET_S
        anchor = ist - ist % 86400 + SESSION_ANCHOR_S - IST_OFFSET_S  # that day's 09:15 IST
        start = minute - (minute - anchor) % width
        if current is None or start != current[0]:
            if current is not None:
                prev_cum = _emit(out, current, prev_cum, from_utc, to_utc)
            current = [start, o, h, low, c, cum]
        else:
            current[2] = max(current[2], h)
            current[3] = min(current[3], low)
            current[4], current[5] = c, cum
    if current is not None:
        _emit(out, current, prev_cum, from_utc, to_utc)
    return out


def _emit(out: dict, bar: list, prev_cum: int, from_utc: float, to_utc: float) -> int:
    start, o, h, low, c, cum = bar
    if from_utc <= start < to_utc:
        out["open"].append(round(o, 2))
        out["high"].append(round(h, 2))
        out["low"].append(round(low, 2))
        out["close"].append(round(c, 2))
        out["volume"].append(cum - prev_cum)
        out["timestamp"].append(start)
    return cum
