"""The simulated market: a seeded random walk per instrument and its full tape.

Every trade has a quantity of at least 1, so an instrument's cumulative day volume strictly
increases tick by tick (indices trade with quantity 0 and volume 0, like Dhan's Ticker-only
index values). LTT is IST-epoch seconds of the real clock (`utc + 19800`, dhan-api.md §3).

The tape (cumulative volume, LTT, LTP of every tick) is kept in compact arrays: it answers
the admin's per-tick record and the intraday endpoint's 1-minute bars.
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Iterable

from dhanfeed.feed import protocol as p

IST_OFFSET_S = 19800
TICK_SIZE = 0.05
IDX_I, NSE_FNO = p.SEGMENT_CODES["IDX_I"], p.SEGMENT_CODES["NSE_FNO"]
FNO_LOT = 75
SESSION_ANCHOR_S = (9 * 60 + 15) * 60  # 09:15 IST: Indian intraday bars start here

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
        "ltp", "ltq", "prev_close", "day_open", "day_high", "day_low", "cum", "turnover",
        "oi", "oi_high", "oi_low", "prev_oi", "oi_changed", "buy_qty", "sell_qty",
        "cums", "ltts", "ltps", "subscribers",
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
        self.subscribers: dict = {}  # socket → mode; owned by the feed

    @property
    def ticks(self) -> int:
        return len(self.cums)

    @property
    def atp(self) -> float:
        return self.turnover / self.cum if self.cum else self.ltp

    # --- packets (encoded by dhanfeed.feed.protocol) ---

    def ticker_packet(self) -> bytes:
        return p.encode_ticker(p.Ticker(self.segment, self.security_id, self.ltp, self.ltts[-1]))

    def quote_packet(self) -> bytes:
        return p.encode_quote(
            p.Quote(
                self.segment, self.security_id, self.ltp, self.ltq, self.ltts[-1], self.atp,
                self.cum, self.sell_qty, self.buy_qty,
                self.day_open, self.prev_close, self.day_high, self.day_low,
            )
        )  # fmt: skip

    def full_packet(self) -> bytes:
        ltp, n = self.ltp, self.cum
        depth = tuple(
            p.DepthLevel(
                (n * 7 + i * 131) % 5000 + 1, (n * 11 + i * 97) % 5000 + 1,
                (n + i) % 40 + 1, (n + 3 * i) % 40 + 1,
                max(TICK_SIZE, ltp - TICK_SIZE * (i + 1)), ltp + TICK_SIZE * (i + 1),
            )
            for i in range(5)
        )  # fmt: skip
        return p.encode_full(
            p.Full(
                self.segment, self.security_id, ltp, self.ltq, self.ltts[-1], self.atp,
                n, self.sell_qty, self.buy_qty, self.oi, self.oi_high, self.oi_low,
                self.day_open, self.prev_close, self.day_high, self.day_low, depth,
            )
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
    """All instruments; `tick` advances one of them by one trade."""

    def __init__(self, seed: int, instruments: Iterable[tuple[int, int]] = ()) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
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
        """One trade: random-walk the price, add a quantity ≥ 1 (0 for an index), record it."""
        rng = self.rng
        ltp = tape.ltp * (1.0 + rng.gauss(0.0, 0.0008))
        ltp = max(TICK_SIZE, round(round(ltp / TICK_SIZE) * TICK_SIZE, 2))
        tape.ltp = ltp
        if ltp > tape.day_high:
            tape.day_high = ltp
        elif ltp < tape.day_low:
            tape.day_low = ltp
        if tape.is_index:
            qty = 0
        else:
            qty = tape.lot * (1 + int(rng.random() * rng.random() * 40))
            tape.cum += qty
            tape.turnover += qty * ltp
            if rng.random() < 0.5:
                tape.buy_qty = max(1, tape.buy_qty + int((rng.random() - 0.5) * 200))
            else:
                tape.sell_qty = max(1, tape.sell_qty + int((rng.random() - 0.5) * 200))
            if tape.is_fno and rng.random() < 0.3:
                tape.oi = max(0, tape.oi + tape.lot * int((rng.random() - 0.45) * 20))
                tape.oi_high = max(tape.oi_high, tape.oi)
                tape.oi_low = min(tape.oi_low, tape.oi)
                tape.oi_changed = True
        tape.ltq = qty
        tape.cums.append(tape.cum)
        tape.ltts.append(ltt)
        tape.ltps.append(ltp)


def intraday_bars(tape: Tape, interval_min: int, from_utc: float, to_utc: float) -> dict:
    """Bars of `interval_min` minutes (anchored at 09:15 IST) from the tape, as Dhan's REST
    intraday endpoint shapes them: parallel arrays, `timestamp` = bar start as UTC epoch.

    A bar's volume is the cumulative volume at its last tick minus that at the last tick
    before it, so volume traded between bars is never lost.
    """
    width = 60 * interval_min
    out: dict[str, list] = {k: [] for k in ("open", "high", "low", "close", "volume", "timestamp")}
    prev_cum = 0
    current = None  # [start, open, high, low, close, cum_at_last]
    bar_start_of = _bar_start_fn(width)
    for cum, ltt, ltp in zip(tape.cums, tape.ltts, tape.ltps, strict=True):
        start = bar_start_of(ltt - IST_OFFSET_S)
        if current is None or start != current[0]:
            if current is not None:
                prev_cum = _emit(out, current, prev_cum, from_utc, to_utc)
            current = [start, ltp, ltp, ltp, ltp, cum]
        else:
            current[2] = max(current[2], ltp)
            current[3] = min(current[3], ltp)
            current[4] = ltp
            current[5] = cum
    if current is not None:
        _emit(out, current, prev_cum, from_utc, to_utc)
    return out


def _bar_start_fn(width: int):  # noqa: ANN202
    anchor = SESSION_ANCHOR_S - IST_OFFSET_S  # 09:15 IST as seconds after UTC midnight

    def start(utc: int) -> int:
        return utc - (utc - anchor) % width

    return start


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
