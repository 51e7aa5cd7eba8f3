"""The simulated live feed: a `websockets` server speaking Dhan's v2 binary protocol.

Everything here runs on one asyncio loop. The market loop ticks every instrument and encodes
each packet once per mode. Dhan sends one packet per WebSocket message, and so do we by
default (`batch` > 1 packs up to that many packets into one message, for a benchmark that
wants to isolate decoding). One cycle's messages for a socket are framed here and written
to the transport in one write (websockets' per-message `send` costs ~10 µs, too slow for the
150,000 messages/s a benchmark may ask for); websockets still owns the handshake, pings,
pongs and the close, and we never write after it has started closing. A writer task per
socket sends its cycles in order, waits for TCP (so a slow reader slows the sender, as on
the real feed) and records, only after a write, which ticks the socket carried (as runs of
tick indexes: compact enough for 20000 instruments).

One instrument subscribed in several modes on one socket (unconfirmed at Dhan): with
`multi_mode = "last"` the last subscribed mode replaces the earlier; with "each" every
subscribed mode gets its own stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from collections.abc import Callable
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from dhanfeed.feed import protocol as p
from dhanfeed.sim import tokens
from dhanfeed.sim.market import IST_OFFSET_S, Market, Tape

logger = logging.getLogger(__name__)

MAX_SOCKETS_PER_CLIENT = 5
PING_INTERVAL_S = 10.0  # Dhan pings every 10 s ...
SILENT_CLOSE_S = 40.0  # ... and closes a client that has not answered for 40 s
KEEPALIVE_TIMEOUT = "keepalive ping timeout"  # websockets' reason when a pong never came
MAX_BATCH = 100  # --batch: packets per message at most (the old simulator's framing)
MAX_QUEUED_PACKETS = 2_000_000  # a consumer this far behind (tens of seconds) is dropped with 800
MAX_CYCLES_PER_SECOND = 20.0

TICKER, QUOTE, FULL = "ticker", "quote", "full"
SUBSCRIBE = {15: TICKER, 17: QUOTE, 21: FULL}
UNSUBSCRIBE = {16: TICKER, 18: QUOTE, 22: FULL}
MULTI_MODES = ("last", "each")  # one instrument in several modes: last mode wins / one stream each
_CLOSE = object()  # writer-queue sentinel


def ws_frame(message: bytes) -> bytes:
    """`message` as one unmasked, final, binary WebSocket frame (RFC 6455 §5.2)."""
    size = len(message)
    if size < 126:
        return bytes((0x82, size)) + message
    if size < 65536:
        return bytes((0x82, 126)) + size.to_bytes(2, "big") + message
    return bytes((0x82, 127)) + size.to_bytes(8, "big") + message


_FRAME_HEAD = {
    size: ws_frame(bytes(size))[:-size]
    for size in (p.TICKER_SIZE, p.QUOTE_SIZE, p.OI_SIZE, p.PREV_CLOSE_SIZE, p.FULL_SIZE)
}


def frames(packets: list[bytes], batch: int) -> bytes:
    """Packets as WebSocket frames, `batch` packets per message (1: Dhan's framing)."""
    if batch == 1:
        head = _FRAME_HEAD
        return b"".join([head[len(pkt)] + pkt if len(pkt) in head else ws_frame(pkt)
                         for pkt in packets])  # fmt: skip
    return b"".join(
        ws_frame(b"".join(packets[start : start + batch]))
        for start in range(0, len(packets), batch)
    )


VERDICT_CODES = {tokens.EXPIRED: 807, tokens.SUPERSEDED: 807, tokens.WRONG_CLIENT: 808}


class SimSocket:
    """One accepted WebSocket: what it subscribed and everything it was sent."""

    def __init__(self, sid: int, ws: ServerConnection, token_fp: str) -> None:
        self.id = sid
        self.ws = ws
        self.token_fp = token_fp
        self.opened_at = time.time()
        self.closed_at: float | None = None
        self.close_reason: str | None = None
        self.authorised = False
        self.closing = False
        self.subs: dict[Tape, tuple[str, ...]] = {}  # instrument → its modes on this socket
        self.packets_sent = 0
        self.messages_sent = 0
        self.queued_packets = 0
        self.queue: asyncio.Queue = asyncio.Queue()  # (frames, refs, packets, messages)
        self.runs: dict[str, list[list[int]]] = {}  # instrument key → [[first, last], ...]
        self.pending: list[bytes] = []  # this cycle's packets, flushed into frames
        self.pending_refs: list[tuple[Tape, int, int]] = []  # (tape, first tick, last tick)

    def stats(self) -> dict:
        return {
            "id": self.id,
            "token_fp": self.token_fp,
            "opened_at": self.opened_at,
            "closed_at": self.closed_at,
            "close_reason": self.close_reason,
            "instruments": len(self.subs),
            "packets_sent": self.packets_sent,
            "messages_sent": self.messages_sent,
        }

    def put(self, packets: list[bytes], batch: int, refs: list | tuple = ()) -> None:
        """Queue packets for the writer, framed `batch` to a message."""
        count = len(packets)
        self.queued_packets += count
        self.queue.put_nowait((frames(packets, batch), refs, count, -(-count // batch)))

    def record(self, refs: list[tuple[Tape, int, int]]) -> None:
        """Note ticks `first..last` of each tape as carried by this socket."""
        runs_of = self.runs
        for tape, first, last in refs:
            runs = runs_of.get(tape.key)
            if runs is None:
                runs_of[tape.key] = [[first, last]]
            elif runs[-1][1] == first - 1:
                runs[-1][1] = last
            elif runs[-1][1] < first:
                runs.append([first, last])


class FeedServer:
    def __init__(
        self,
        market: Market,
        registry: tokens.TokenRegistry,
        *,
        ticks_per_second: float,
        renew_kills_sockets: Callable[[], bool],
        ping_interval_s: float = PING_INTERVAL_S,
        silent_close_s: float = SILENT_CLOSE_S,
        batch: int = 1,
        multi_mode: str = "last",
    ) -> None:
        if not 0 < ping_interval_s < silent_close_s:
            raise ValueError("the ping interval must be positive and shorter than the silence")
        if not 1 <= batch <= MAX_BATCH:
            raise ValueError(f"batch must be 1..{MAX_BATCH} packets per message")
        if multi_mode not in MULTI_MODES:
            raise ValueError(f"multi_mode must be one of {', '.join(MULTI_MODES)}")
        self.batch = batch
        self.multi_mode = multi_mode
        self.market = market
        self.registry = registry
        self.ticks_per_second = ticks_per_second
        self.renew_kills_sockets = renew_kills_sockets
        self.ping_interval_s = ping_interval_s
        self.silent_close_s = silent_close_s
        self.sockets: list[SimSocket] = []  # every socket ever accepted, in order
        self.open: dict[int, SimSocket] = {}
        self.max_open = 0
        self.handshakes_refused = 0
        self.stall_until = 0.0
        self.refuse_until = 0.0
        self._rng = random.Random(market.seed + 1)
        self._server: Server | None = None
        self._market_task: asyncio.Task | None = None

    # --- lifecycle ---

    async def start(self, host: str, port: int) -> int:
        self._server = await serve(
            self._handle,
            host,
            port,
            process_request=self._process_request,
            compression=None,
            # websockets waits ping_timeout for the pong of each ping: a client that goes
            # silent right after a pong is closed ping_interval + ping_timeout later
            ping_interval=self.ping_interval_s,
            ping_timeout=self.silent_close_s - self.ping_interval_s,
            close_timeout=2,
            max_size=1 << 20,
            logger=logging.getLogger("dhanfeed.sim.ws"),
        )
        self._market_task = asyncio.create_task(self._run_market(), name="market")
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._market_task:
            self._market_task.cancel()
        if self._server is not None:
            for sock in list(self.open.values()):
                self._finish(sock, "server shutdown")
            self._server.close()
            try:
                await asyncio.wait_for(self._server.wait_closed(), 3)
            except TimeoutError:
                pass

    # --- handshake and authorisation ---

    def _process_request(self, connection: ServerConnection, request):  # noqa: ANN001, ANN202
        if time.monotonic() < self.refuse_until:
            self.handshakes_refused += 1
            return connection.respond(HTTPStatus.TOO_MANY_REQUESTS, "Too Many Requests\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        query = parse_qs(urlsplit(ws.request.path if ws.request else "").query)
        token = (query.get("token") or [""])[0]
        client_id = (query.get("clientId") or [""])[0]
        verdict, issued = self.registry.check(token, client_id)
        fp = issued.fingerprint if issued else tokens.fingerprint(token)
        sock = SimSocket(len(self.sockets) + 1, ws, fp)
        self.sockets.append(sock)
        self.open[sock.id] = sock
        self.max_open = max(self.max_open, len(self.open))
        writer = None
        try:
            if verdict != tokens.OK:
                code = VERDICT_CODES.get(verdict, 809)
                logger.info("socket %d refused: token %s (%s), code %d", sock.id, fp, verdict, code)
                sock.close_reason = f"{code} {verdict} token"
                await ws.send(p.encode_disconnect(code))
                sock.packets_sent += 1
                sock.messages_sent += 1
                await ws.close()
                return
            sock.authorised = True
            self._enforce_socket_limit()
            logger.info("socket %d open (token %s)", sock.id, fp)
            writer = asyncio.create_task(self._write(sock), name=f"writer-{sock.id}")
            async for message in ws:
                if isinstance(message, str) and not sock.closing:
                    self._on_request(sock, message)
                # a stray binary frame from a client is ignored, as Dhan does
        except ConnectionClosed as exc:
            if exc.sent is not None and exc.sent.reason == KEEPALIVE_TIMEOUT:
                self._finish(sock, "keepalive timeout (no pong)")
        finally:
            self._finish(sock, "connection closed")
            if writer is not None and not writer.done():
                sock.queue.put_nowait(_CLOSE)
                try:
                    await asyncio.wait_for(writer, 3)
                except (TimeoutError, asyncio.CancelledError):
                    writer.cancel()
            if sock.closed_at is None:
                sock.closed_at = time.time()
            self.open.pop(sock.id, None)
            logger.info("socket %d closed: %s", sock.id, sock.close_reason)

    def _enforce_socket_limit(self) -> None:
        live = [s for s in self.open.values() if s.authorised and not s.closing]
        while len(live) > MAX_SOCKETS_PER_CLIENT:
            oldest = min(live, key=lambda s: s.id)
            self.disconnect(oldest, 805)
            live.remove(oldest)

    # --- requests from the client ---

    def _on_request(self, sock: SimSocket, text: str) -> None:
        try:
            request = json.loads(text)
            code = int(request["RequestCode"])
        except (ValueError, KeyError, TypeError):
            logger.info("socket %d: unreadable request ignored", sock.id)
            return
        if code == p.REQUEST_DISCONNECT:
            self._finish(sock, "client request 12")
            sock.queue.put_nowait(_CLOSE)
            return
        mode = SUBSCRIBE.get(code) or UNSUBSCRIBE.get(code)
        if mode is None:
            logger.info("socket %d: unknown request code %s ignored", sock.id, code)
            return
        items = request.get("InstrumentList") or []
        if not isinstance(items, list):
            return
        if len(items) > p.MAX_PER_MESSAGE or _int(request.get("InstrumentCount")) > 100:
            self.disconnect(sock, 804)
            return
        tapes = []
        for item in items:
            try:
                seg = p.SEGMENT_CODES[str(item["ExchangeSegment"]).upper()]
                tapes.append(self.market.instrument(seg, int(item["SecurityId"])))
            except (KeyError, TypeError, ValueError):
                continue  # Dhan ignores an instrument it does not know
        if code in UNSUBSCRIBE:
            for tape in tapes:
                self._set_modes(sock, tape, tuple(m for m in sock.subs.get(tape, ()) if m != mode))
            return
        new = {t for t in tapes if t not in sock.subs}
        if len(sock.subs) + len(new) > p.MAX_PER_SOCKET:
            self.disconnect(sock, 804)
            return
        for tape in tapes:
            modes = sock.subs.get(tape, ())
            if self.multi_mode == "last":
                modes = (mode,)
            elif mode not in modes:
                modes = (*modes, mode)
            self._set_modes(sock, tape, modes)
        # Any subscription triggers a Prev Close packet per instrument.
        sock.put([tape.prev_close_packet() for tape in tapes], self.batch)

    @staticmethod
    def _set_modes(sock: SimSocket, tape: Tape, modes: tuple[str, ...]) -> None:
        if modes:
            sock.subs[tape] = tape.subscribers[sock] = modes
        elif sock.subs.pop(tape, None) is not None:
            tape.subscribers.pop(sock, None)

    # --- sending ---

    async def _write(self, sock: SimSocket) -> None:
        ws, queue = sock.ws, sock.queue
        while True:
            item = await queue.get()
            if item is _CLOSE:
                break
            blob, refs, packets, messages = item
            sock.queued_packets -= packets
            # Frames go straight to the transport in one write; websockets' own frames (pings,
            # pongs, the close) are written whole too, so they never interleave with ours.
            if ws.protocol.state is not State.OPEN or ws.transport.is_closing():
                break
            ws.transport.write(blob)
            sock.packets_sent += packets
            sock.messages_sent += messages
            if refs:
                sock.record(refs)
            try:
                await ws.drain()  # TCP flow control: a slow reader slows us down
            except Exception:  # the connection died under the write: websockets reports it
                break
        try:
            await ws.close()
        except ConnectionClosed:
            pass
        if sock.closed_at is None:
            sock.closed_at = time.time()

    def _finish(self, sock: SimSocket, reason: str) -> None:
        """Stop feeding a socket: no more market frames; keeps the first reason given."""
        if sock.close_reason is None:
            sock.close_reason = reason
        if not sock.closing:
            sock.closing = True
            for tape in sock.subs:
                tape.subscribers.pop(sock, None)

    def disconnect(self, sock: SimSocket, code: int, reason: str | None = None) -> None:
        """A code-50 packet with `code`, then close (queued behind what is already sent)."""
        if sock.closing:
            return
        logger.info("socket %d: disconnect code %d", sock.id, code)
        self._finish(sock, reason or f"{code} {p.DISCONNECT_REASONS.get(code, 'disconnect')}")
        sock.put([p.encode_disconnect(code)], 1)
        sock.queue.put_nowait(_CLOSE)

    def token_superseded(self, old_fp: str) -> None:
        """Renew/generate/issue made `old_fp` obsolete; with the kill policy its sockets go."""
        if not self.renew_kills_sockets():
            return
        for sock in list(self.open.values()):
            if sock.authorised and sock.token_fp == old_fp:
                self.disconnect(sock, 807, "807 token superseded")

    # --- the market loop ---

    async def _run_market(self) -> None:
        """Tick at `ticks_per_second` on average: each cycle makes up the rounds that the time
        since the last one owes (at most a second's worth), so a cycle that ran late on a
        busy machine costs no rate."""
        loop = asyncio.get_running_loop()
        tps = self.ticks_per_second
        interval = max(1.0 / tps, 1.0 / MAX_CYCLES_PER_SECOND)
        carry, last = tps * interval, loop.time()  # the first cycle at once
        while True:
            rounds = int(carry)
            carry -= rounds
            if rounds:
                try:
                    self.cycle(rounds)
                except Exception:  # the market must keep running
                    logger.exception("market cycle failed")
            await asyncio.sleep(max(0.0, last + interval - loop.time()))
            now = loop.time()
            carry += tps * min(now - last, 1.0)
            last = now

    def cycle(self, rounds: int = 1) -> None:
        """Tick every instrument `rounds` times (an instrument's ticks of one cycle go out
        together); each socket's packets of the cycle become one write."""
        ltt = int(time.time()) + IST_OFFSET_S
        stalled = time.monotonic() < self.stall_until
        tick, encode = self.market.tick, self._encode
        touched: set[SimSocket] = set()
        for tape in self.market.order:
            subscribers = tape.subscribers
            if not subscribers or stalled:
                for _ in range(rounds):
                    tick(tape, ltt)
                tape.oi_changed = False
                continue
            first = len(tape.cums)
            encoded: dict[str, list[bytes]] = {
                mode: [] for modes in subscribers.values() for mode in modes
            }
            for _ in range(rounds):
                tick(tape, ltt)
                for mode, packets in encoded.items():
                    packets += encode(tape, mode)
                tape.oi_changed = False
            ref = (tape, first, first + rounds - 1)
            for sock, modes in subscribers.items():
                for mode in modes:
                    sock.pending += encoded[mode]
                sock.pending_refs.append(ref)
                touched.add(sock)
        for sock in touched:
            self._flush(sock)

    @staticmethod
    def _encode(tape: Tape, mode: str) -> tuple[bytes, ...]:
        """The packets one tick sends in `mode`: Quote and OI are two packets (two messages)."""
        if tape.is_index or mode == TICKER:
            return (tape.ticker_packet(),)
        if mode == FULL:
            return (tape.full_packet(),)
        if tape.oi_changed:
            return (tape.quote_packet(), tape.oi_packet())
        return (tape.quote_packet(),)

    def _flush(self, sock: SimSocket) -> None:
        packets, refs = sock.pending, sock.pending_refs
        sock.pending, sock.pending_refs = [], []
        if sock.closing:
            return
        if sock.queued_packets > MAX_QUEUED_PACKETS:
            logger.warning("socket %d: consumer too slow, dropping it", sock.id)
            self.disconnect(sock, 800, "slow consumer")
            return
        sock.put(packets, self.batch, refs)

    # --- faults ---

    def drop_sockets(self) -> int:
        """Cut every open socket at the TCP level (no close frame)."""
        dropped = 0
        for sock in list(self.open.values()):
            self._finish(sock, "dropped (fault)")
            while not sock.queue.empty():
                sock.queue.get_nowait()
            sock.queue.put_nowait(_CLOSE)
            transport = sock.ws.transport
            if transport is not None:
                transport.abort()
            dropped += 1
        return dropped

    def stall(self, seconds: float) -> None:
        self.stall_until = time.monotonic() + seconds

    def refuse_handshakes(self, seconds: float) -> None:
        self.refuse_until = time.monotonic() + seconds

    def clear(self) -> None:
        self.stall_until = self.refuse_until = 0.0

    def send_garbage(self, count: int) -> int:
        """Random binary frames that no decoder can take for a packet: an unknown code and a
        length field longer than the frame, so a parser must stop and count, not misread."""
        rng = self._rng
        for sock in self._live():
            for _ in range(count):
                body = os.urandom(rng.randrange(0, 120))
                size = p.HEADER_SIZE + len(body)
                head = p.HEADER.pack(rng.randrange(100, 256), min(65535, size + 1 + rng.randrange(500)),
                                     rng.randrange(0, 256), rng.getrandbits(32))  # fmt: skip
                sock.queue.put_nowait((ws_frame(head + body), (), 0, 1))
        return len(self._live())

    def send_truncated(self) -> int:
        """A frame cut mid-packet: a copy of an already delivered Quote, missing its tail."""
        for sock in self._live():
            tape = next(iter(sock.subs), None) or (
                self.market.order[0] if self.market.order else None
            )
            if tape is None or not tape.ticks:
                frame = p.encode_disconnect(800)[:7]
            else:
                frame = tape.quote_packet()[: self._rng.randrange(p.HEADER_SIZE, p.QUOTE_SIZE)]
            sock.queue.put_nowait((ws_frame(frame), (), 0, 1))
        return len(self._live())

    def disconnect_all(self, code: int) -> int:
        live = self._live()
        for sock in live:
            self.disconnect(sock, code, f"{code} (fault)")
        return len(live)

    def _live(self) -> list[SimSocket]:
        return [s for s in self.open.values() if s.authorised and not s.closing]

    # --- the record ---

    def stats(self) -> dict:
        delivered = self._delivered_counts()
        instruments = {}
        for tape in self.market.order:
            ticks = tape.ticks
            instruments[tape.key] = {
                "ticks": ticks,
                "trades": tape.trades,
                "delivered": delivered.get(tape.key, 0),
                "cum_volume": tape.cum,
                "first_ltt": tape.ltts[0] if ticks else None,
                "last_ltt": tape.ltts[-1] if ticks else None,
            }
        return {
            "sockets_open": len(self.open),
            "max_sockets_open": self.max_open,
            "connections_total": len(self.sockets),
            "handshakes_refused": self.handshakes_refused,
            "instruments": instruments,
            "sockets": [s.stats() for s in self.sockets],
        }

    def _delivered_counts(self) -> dict[str, int]:
        by_key: dict[str, list[list[int]]] = {}
        for sock in self.sockets:
            for key, runs in sock.runs.items():
                by_key.setdefault(key, []).extend(runs)
        counts = {}
        for key, runs in by_key.items():
            runs.sort()
            total, reach = 0, -1
            for first, last in runs:
                if last > reach:
                    total += last - max(first, reach + 1) + 1
                    reach = last
            counts[key] = total
        return counts

    def sent(self, key: str) -> dict | None:
        tape = self.market.find(key)
        if tape is None:
            return None
        sent_on: list[list[int]] = [[] for _ in range(tape.ticks)]
        for sock in self.sockets:
            for first, last in sock.runs.get(tape.key, ()):
                for idx in range(first, last + 1):
                    sent_on[idx].append(sock.id)
        ticks = [
            [cum, ltt, ltp, on]
            for cum, ltt, ltp, on in zip(tape.cums, tape.ltts, tape.ltps, sent_on, strict=True)
        ]
        return {"ticks": ticks}


def _int(value: object) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 0
