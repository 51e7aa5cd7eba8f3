"""Benchmark 1: decode and aggregate throughput, against Dhan's official SDK.

The stream: 1,000,000 packets from the simulator's own market and encoder (seed 7), 5000
instruments (2500 NSE_EQ in Quote mode, 2500 NSE_FNO in Full mode, interleaved), every
instrument ticking twice a simulated second for 100 s. It is generated once and cached in
bench/.cache/. Each packet is its own frame: the SDK's `MarketFeed.process_data` parses one
packet per call, so that is the common ground.

Measured in one process, one thread (one core), runs interleaved, median of the runs:
  (a) `dhanfeed.feed.protocol.decode_frame` on every frame (the full packets);
  (b) the collector's path: `decode_trades` (each trade packet as a plain tuple of what a
      candle needs) + `dhanfeed.candles.CandleBuilder` (1-minute bars): `add_trade` for every
      trade as the collector's pipeline calls it, `close_due` once per simulated half-second;
  (c) the SDK's `MarketFeed.process_data` on the same frames, one call per packet.
Extra rows: `decode_trades` alone, Quote-only and Full-only substreams, and (a) on frames of
100 packets (how the simulator batches a cycle).

    .venv/bin/python bench/bench_decode.py [--runs 3] [--packets 1000000]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import CACHE, Row, fmt_rate, median, say  # noqa: E402

SEED = 7
INSTRUMENTS = 5000
TICKS_PER_SECOND = 2  # per instrument: one cycle of the market every half second
START_LTT = 1_767_605_700  # 2026-01-05 09:35:00 as Dhan's IST-epoch (a Monday)
IST_OFFSET_S = 19800
DEFAULT_PACKETS = 1_000_000


# ---------------------------------------------------------------------------------------------
# The stream


def generate(path: Path, packets: int) -> None:
    """Run the simulator's market and encoders; write the packets back to back."""
    from dhanfeed.sim.market import Market

    half = INSTRUMENTS // 2
    pairs = []
    for i in range(half):  # interleaved: Quote, Full, Quote, Full, ...
        pairs.append((1, 100_000 + i))  # NSE_EQ, Quote mode
        pairs.append((2, 200_000 + i))  # NSE_FNO, Full mode
    market = Market(SEED, pairs)
    out = bytearray()
    written = 0
    cycle = 0
    while written < packets:
        ltt = START_LTT + cycle // TICKS_PER_SECOND
        for tape in market.order:
            market.tick(tape, ltt)
            out += tape.full_packet() if tape.is_fno else tape.quote_packet()
            written += 1
            if written == packets:
                break
        cycle += 1
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(out)
    tmp.replace(path)


def load_frames(packets: int) -> list[bytes]:
    path = CACHE / f"stream-seed{SEED}-{INSTRUMENTS}-{packets}.bin"
    if not path.exists():
        say(f"  generating {packets:,} packets into {path.relative_to(path.parents[2])} ...")
        started = time.perf_counter()
        generate(path, packets)
        say(f"  generated in {time.perf_counter() - started:.1f}s")
    data = path.read_bytes()
    frames = []
    offset, end = 0, len(data)
    while offset < end:
        length = data[offset + 1] | data[offset + 2] << 8
        frames.append(data[offset : offset + length])
        offset += length
    if len(frames) != packets:
        raise RuntimeError(f"{path} holds {len(frames)} packets, not {packets}")
    return frames


# ---------------------------------------------------------------------------------------------
# The three contenders. Each returns the number of packets it handled.


def run_decode(frames: list[bytes]) -> int:
    from dhanfeed.feed.protocol import decode_frame

    n = 0
    for frame in frames:
        n += len(decode_frame(frame).packets)
    return n


def run_decode_trades(frames: list[bytes]) -> int:
    from dhanfeed.feed.protocol import decode_trades

    n = 0
    for frame in frames:
        trades, others, _ = decode_trades(frame)
        n += len(trades) + len(others)
    return n


def run_decode_candles(frames: list[bytes]) -> int:
    """decode_trades + CandleBuilder the way dhanfeed.collector.Pipeline drives them."""
    from dhanfeed.candles import CandleBuilder
    from dhanfeed.feed.protocol import SEGMENT_NAMES, decode_trades

    builder = CandleBuilder([60], grace_s=1.0)
    add_trade = builder.add_trade
    per_cycle = INSTRUMENTS
    n = bars = 0
    for start in range(0, len(frames), per_cycle):
        cycle = start // per_cycle
        now = START_LTT - IST_OFFSET_S + cycle / TICKS_PER_SECOND + 0.01  # received just after
        for frame in frames[start : start + per_cycle]:
            trades, others, _ = decode_trades(frame)
            n += len(trades) + len(others)
            for segment_code, security_id, ltp, _ltq, ltt, cum in trades:
                add_trade(SEGMENT_NAMES[segment_code], security_id, ltp, ltt, cum, now)
        bars += len(builder.close_due(now))
    bars += len(builder.flush())
    if builder.duplicates or builder.late or builder.accepted != n or not bars:
        raise RuntimeError(
            f"candles wrong: accepted {builder.accepted} of {n}, dup {builder.duplicates},"
            f" late {builder.late}, bars {bars}"
        )
    return n


def sdk_parser():  # noqa: ANN201
    """The SDK's MarketFeed with no network: process_data needs nothing from __init__."""
    from dhanhq.marketfeed import MarketFeed

    return MarketFeed.__new__(MarketFeed)


def run_sdk(frames: list[bytes]) -> int:
    process_data = sdk_parser().process_data
    n = 0
    for frame in frames:
        if process_data(frame) is not None:
            n += 1
    return n


def batched(frames: list[bytes], size: int = 100) -> list[bytes]:
    return [b"".join(frames[i : i + size]) for i in range(0, len(frames), size)]


def timed(fn, frames: list[bytes]) -> tuple[float, int]:  # noqa: ANN001
    gc.collect()
    started = time.perf_counter()
    n = fn(frames)
    return time.perf_counter() - started, n


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> list[Row]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--packets", type=int, default=DEFAULT_PACKETS)
    args = ap.parse_args(argv)

    say("== 1. decode and aggregate throughput")
    frames = load_frames(args.packets)
    quotes = [f for f in frames if f[0] == 4]
    fulls = [f for f in frames if f[0] == 8]
    big = batched(frames)
    say(
        f"  {len(frames):,} packets ({len(quotes):,} Quote, {len(fulls):,} Full), one per frame;"
        f" {args.runs} runs each, interleaved"
    )
    contenders = {
        "a": ("(a) ours: decode_frame", run_decode, frames),
        "t": ("ours: decode_trades", run_decode_trades, frames),
        "b": ("(b) ours: decode_trades + CandleBuilder", run_decode_candles, frames),
        "c": ("(c) SDK: MarketFeed.process_data", run_sdk, frames),
        "aq": ("(a) ours, Quote only", run_decode, quotes),
        "cq": ("(c) SDK, Quote only", run_sdk, quotes),
        "af": ("(a) ours, Full only", run_decode, fulls),
        "cf": ("(c) SDK, Full only", run_sdk, fulls),
        "a100": ("(a) ours, 100 packets per frame", run_decode, big),
    }
    rates: dict[str, list[float]] = {k: [] for k in contenders}
    for run in range(args.runs):
        for key, (_, fn, data) in contenders.items():
            seconds, n = timed(fn, data)
            expected = len(frames) if data is big else len(data)
            if n != expected:
                raise RuntimeError(f"{key}: handled {n} packets of {expected}")
            rates[key].append(n / seconds)
        say(f"  run {run + 1}: " + ", ".join(f"{k} {rates[k][-1]:,.0f}/s" for k in contenders))
    med = {k: median(v) for k, v in rates.items()}
    for key, (label, _, _) in contenders.items():
        say(f"  {label:<40} {med[key]:>12,.0f} packets/s  (runs: "
            + ", ".join(f"{r:,.0f}" for r in rates[key]) + ")")  # fmt: skip
    ratio_b = med["b"] / med["c"]
    ratio_a = med["a"] / med["c"]
    say(f"  ratio (a)/(c) = {ratio_a:.2f}x, (b)/(c) = {ratio_b:.2f}x")
    return [
        Row("1 decode", "(a) decode_frame, mixed", fmt_rate(med["a"]), ">= 1,000,000/s",
            med["a"] >= 1_000_000),
        Row("1 decode", "decode_trades, mixed", fmt_rate(med["t"])),
        Row("1 decode", "(b) decode_trades + candles, mixed", fmt_rate(med["b"])),
        Row("1 decode", "(c) SDK process_data, mixed", fmt_rate(med["c"])),
        Row("1 decode", "ratio (b)/(c)", f"{ratio_b:.2f}x", ">= 4x", ratio_b >= 4),
        Row("1 decode", "ratio (a)/(c)", f"{ratio_a:.2f}x"),
        Row("1 decode", "(a) / (c) Quote only",
            f"{fmt_rate(med['aq'])} / {fmt_rate(med['cq'])}"),
        Row("1 decode", "(a) / (c) Full only", f"{fmt_rate(med['af'])} / {fmt_rate(med['cf'])}"),
        Row("1 decode", "(a) 100 packets per frame", fmt_rate(med["a100"])),
    ]  # fmt: skip


if __name__ == "__main__":
    main()
