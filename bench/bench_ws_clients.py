"""Benchmark: the simulator's send rate, and what one message costs three WebSocket clients.

Dhan sends one packet per WebSocket message (issue 11), so a client pays its library's cost
once per packet. One `bin/dhan_sim` streams Quote packets of INSTRUMENTS equities (50 bytes,
one per message, one trade per packet so the market costs least) at an asked total RATE;
each client below runs alone, in its own process, subscribes them all and reads for
SECONDS, side by side in one run against the same server:

  raw               a plain socket: the handshake by hand, then recv_into() of 1 MiB; nothing
                    parses frames. Measures the simulator: the fastest reader there is.
  websocket-client  `ws.recv()` in a loop (the project's client library)
  websockets        asyncio client, `await ws.recv()` in a loop
  picows            its `on_ws_frame` callback (Cython)

Each client reads WARMUP_S first (so that what the kernel buffered while it connected is
gone), then tells this script that its window starts, and again when it ends; the
simulator's record is read at both marks. Per client: messages it received (the raw reader counts bytes / 52), its CPU time
(`time.process_time` in its own process: the loop only, not start-up), CPU µs per message,
and the rate the simulator achieved on that socket over the same window (its own
`messages_sent` record): a reader that cannot keep up slows a TCP sender rather than lose
data, so the achieved rate, not the asked one, is what the client was measured at. The
simulator's CPU per message sent comes from /proc/<pid>/stat over the raw window.

With `--sockets K` each client opens K sockets at once (one process each, the instruments
split between them), as the collector does: the figures are summed over the sockets.

    .venv/bin/python bench/bench_ws_clients.py [--rate 150000] [--instruments 1000]
        [--seconds 10] [--clients raw,websocket-client,websockets,picows] [--sockets 1]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import PYTHON, Row, Sim, cpu_seconds, say, sim_range  # noqa: E402

from dhanfeed.feed import protocol as p  # noqa: E402

CLIENTS = ("raw", "websocket-client", "websockets", "picows")
QUOTE_FRAME = p.QUOTE_SIZE + 2  # a 50-byte message has a 2-byte frame header
FIRST_ID = 100_000
WARMUP_S = 2.0


def mark(what: str) -> None:
    """Tell the parent that the measured window starts or ends (a line on stdout)."""
    print(what, flush=True)


# ---------------------------------------------------------------------------------------------
# The clients (each runs in its own process: `--client NAME`)


def subscriptions(first: int, instruments: int) -> list[str]:
    ids = [("NSE_EQ", sid) for sid in range(first, first + instruments)]
    return list(p.subscribe_requests(ids, "quote"))


def masked_text_frame(text: str) -> bytes:
    """A client's text frame: clients must mask (RFC 6455 §5.3)."""
    data, mask = text.encode(), os.urandom(4)
    size = len(data)
    head = (
        bytes((0x81, 0x80 | size)) if size < 126 else bytes((0x81, 0xFE)) + size.to_bytes(2, "big")
    )
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return head + mask + body


def read_raw(url: str, requests: list[str], seconds: float) -> tuple[int, float, float]:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        .encode()
    )  # fmt: skip
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"handshake refused: {head[:60]!r}")
    for text in requests:
        sock.sendall(masked_text_frame(text))
    buf = bytearray(1 << 20)
    warm = time.monotonic() + WARMUP_S
    while time.monotonic() < warm:
        sock.recv_into(buf)
    received = 0
    mark("start")
    cpu0, start = time.process_time(), time.monotonic()
    end = start + seconds
    while time.monotonic() < end:
        received += sock.recv_into(buf)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - start
    mark("end")
    sock.close()
    return received // QUOTE_FRAME, cpu, wall


def read_websocket_client(
    url: str, requests: list[str], seconds: float
) -> tuple[int, float, float]:
    import websocket

    ws = websocket.create_connection(url, timeout=10)
    for text in requests:
        ws.send(text)
    recv = ws.recv
    warm = time.monotonic() + WARMUP_S
    while time.monotonic() < warm:
        recv()
    count = 0
    mark("start")
    cpu0, start = time.process_time(), time.monotonic()
    end = start + seconds
    while True:
        recv()
        count += 1
        if not count & 255 and time.monotonic() >= end:
            break
    cpu, wall = time.process_time() - cpu0, time.monotonic() - start
    mark("end")
    ws.close()
    return count, cpu, wall


def read_websockets(url: str, requests: list[str], seconds: float) -> tuple[int, float, float]:
    from websockets.asyncio.client import connect

    async def run() -> tuple[int, float, float]:
        async with connect(url, max_size=None, compression=None) as ws:
            for text in requests:
                await ws.send(text)
            recv = ws.recv
            warm = time.monotonic() + WARMUP_S
            while time.monotonic() < warm:
                await recv()
            count = 0
            mark("start")
            cpu0, start = time.process_time(), time.monotonic()
            end = start + seconds
            while True:
                await recv()
                count += 1
                if not count & 255 and time.monotonic() >= end:
                    break
            cpu, wall = time.process_time() - cpu0, time.monotonic() - start
            mark("end")
            return count, cpu, wall

    return asyncio.run(run())


def read_picows(url: str, requests: list[str], seconds: float) -> tuple[int, float, float]:
    from picows import WSListener, WSMsgType, ws_connect

    class Counter(WSListener):
        def __init__(self) -> None:
            self.count = 0
            self.end = 0.0
            self.done = asyncio.get_running_loop().create_future()

        def on_ws_frame(self, transport, frame) -> None:  # noqa: ANN001
            if frame.msg_type != WSMsgType.BINARY:
                return
            self.count += 1
            if not self.count & 255 and self.end and time.monotonic() >= self.end:
                if not self.done.done():
                    self.done.set_result(None)

    async def run() -> tuple[int, float, float]:
        transport, listener = await ws_connect(Counter, url, max_frame_size=1 << 20)
        for text in requests:
            transport.send(WSMsgType.TEXT, text.encode())
        await asyncio.sleep(WARMUP_S)
        listener.count = 0
        mark("start")
        cpu0, start = time.process_time(), time.monotonic()
        listener.end = start + seconds
        await listener.done
        cpu, wall, count = time.process_time() - cpu0, time.monotonic() - start, listener.count
        mark("end")
        transport.disconnect()
        return count, cpu, wall

    return asyncio.run(run())


READERS = {
    "raw": read_raw,
    "websocket-client": read_websocket_client,
    "websockets": read_websockets,
    "picows": read_picows,
}


def client_main(name: str, first: int, instruments: int, seconds: float) -> None:
    url = os.environ["BENCH_FEED_URL"]  # holds the token: never printed
    count, cpu, wall = READERS[name](url, subscriptions(first, instruments), seconds)
    print(json.dumps({"messages": count, "cpu_s": cpu, "wall_s": wall}), flush=True)


# ---------------------------------------------------------------------------------------------
# The run


def socket_sent(sim: Sim) -> int:
    return sum(s["messages_sent"] for s in sim.admin("stats")["sockets"])


def measure(sim: Sim, name: str, instruments: int, seconds: float, sockets: int) -> dict:
    """Run `sockets` reader processes at once, the instruments split between them; sum."""
    token = sim.admin("issue-token", {})["access_token"]
    url = f"{sim.feed_url}/?version=2&token={token}&clientId={sim.client_id}&authType=2"
    per = instruments // sockets
    children = [
        subprocess.Popen(
            [
                PYTHON,
                __file__,
                "--client",
                name,
                "--first",
                str(FIRST_ID + i * per),
                "--instruments",
                str(per),
                "--seconds",
                f"{seconds:g}",
            ],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "BENCH_FEED_URL": url},
        )  # fmt: skip
        for i in range(sockets)
    ]
    outs = [child.stdout for child in children if child.stdout is not None]
    if any(out.readline().strip() != "start" for out in outs):
        for child in children:
            child.kill()
        raise RuntimeError(f"client {name} did not start")
    sent0, sim_cpu0, t0 = socket_sent(sim), cpu_seconds(sim.proc.pid), time.monotonic()
    for out in outs:
        out.readline()  # "end"
    sent1, sim_cpu1, t1 = socket_sent(sim), cpu_seconds(sim.proc.pid), time.monotonic()
    parts = []
    for child, out in zip(children, outs, strict=True):
        line = out.read()  # the result line
        child.wait(timeout=60)
        if child.returncode != 0:
            raise RuntimeError(f"client {name} failed ({child.returncode})")
        parts.append(json.loads(line.strip().splitlines()[-1]))
    result = {
        "messages": sum(r["messages"] for r in parts),
        "cpu_s": sum(r["cpu_s"] for r in parts),
        "wall_s": max(r["wall_s"] for r in parts),
    }
    result["sim_rate"] = (sent1 - sent0) / (t1 - t0)
    result["sim_cpu_us"] = (sim_cpu1 - sim_cpu0) / max(1, sent1 - sent0) * 1e6
    result["rate"] = result["messages"] / result["wall_s"]
    result["us_per_msg"] = result["cpu_s"] / max(1, result["messages"]) * 1e6
    time.sleep(1.0)  # the closed sockets leave the simulator's record before the next ones
    return result


def run(
    rate: float, instruments: int, seconds: float, clients: list[str], sockets: int = 1
) -> list[Row]:
    tps = rate / instruments
    sim = Sim("--instruments", sim_range(instruments, first=FIRST_ID), "--ticks-per-second",
              f"{tps:g}", "--trades-per-packet", "1")  # fmt: skip
    rows: list[Row] = []
    load0 = os.getloadavg()[0]
    try:
        results = {name: measure(sim, name, instruments, seconds, sockets) for name in clients}
    finally:
        sim.stop()
    load1 = os.getloadavg()[0]
    say(f"  asked {rate:,.0f} messages/s ({instruments} instruments x {tps:g}/s, Quote, one "
        f"packet per message), {sockets} socket(s), {seconds:g} s per client; load average {load0:.1f} -> "
        f"{load1:.1f} on {os.cpu_count()} cores (shared machine)")  # fmt: skip
    say(f"  {'client':<17} {'sim sent/s':>11} {'sim µs/msg':>11} {'received/s':>11} "
        f"{'CPU µs/msg':>11} {'core':>6}")  # fmt: skip
    for name, r in results.items():
        say(f"  {name:<17} {r['sim_rate']:>11,.0f} {r['sim_cpu_us']:>11.2f} {r['rate']:>11,.0f} "
            f"{r['us_per_msg']:>11.2f} {r['cpu_s'] / r['wall_s']:>6.0%}")  # fmt: skip
        if name == "raw":
            rows.append(Row("ws", f"simulator send rate (asked {rate:,.0f}/s), raw reader x {sockets}",
                            f"{r['sim_rate']:,.0f}/s, sim CPU {r['sim_cpu_us']:.2f} µs/msg",
                            ">= 150,000/s", r["sim_rate"] >= 150_000))  # fmt: skip
        else:
            rows.append(Row("ws", f"{name}: CPU per one-packet message",
                            f"{r['us_per_msg']:.2f} µs (at {r['sim_rate']:,.0f}/s sent)"))  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> list[Row]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=150_000.0, help="messages/s asked in total")
    ap.add_argument("--instruments", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clients", default=",".join(CLIENTS))
    ap.add_argument("--sockets", type=int, default=1, choices=range(1, 5), metavar="1..4")
    ap.add_argument("--client", choices=CLIENTS, help=argparse.SUPPRESS)  # a child process
    ap.add_argument("--first", type=int, default=FIRST_ID, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.client:
        client_main(args.client, args.first, args.instruments, args.seconds)
        return []
    say("bench ws: simulator send rate and client receive cost per message")
    return run(args.rate, args.instruments, args.seconds, args.clients.split(","), args.sockets)


if __name__ == "__main__":
    rows = main()
    sys.exit(0 if all(r.ok is not False for r in rows) else 1)
