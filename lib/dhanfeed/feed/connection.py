"""One feed socket: a bounded handshake, subscribe, and a receive thread.

The receive thread reads whatever the socket holds, cuts it into messages in one pass
(`feed.framing`), answers pings at once, and hands the messages to a sink as one batch per
read: no decoding, no per-message hand-off, never the disk, so keepalive is never starved
however far behind the consumer is (dhan-api.md §4). websocket-client does the handshake
and every send.

The feed URL carries the token: it is built here, handed to websocket-client and never
logged; every exception text that leaves this module goes through `safe_error`, which
removes the token and anything token-shaped. Every time stamp comes from the `Clock` the
socket is given (the collector's one clock), so a shard reads its sockets on its own clock.
"""

from __future__ import annotations

import enum
import logging
import socket
import struct
import threading
from collections.abc import Callable, Sequence
from urllib.parse import urlencode

import websocket

from dhanfeed.clock import Clock, SystemClock
from dhanfeed.feed import protocol
from dhanfeed.feed.framing import CLOSE, PING, FrameReader, ProtocolError
from dhanfeed.logs import REDACTED, redact
from dhanfeed.token import Token
from dhanfeed.version import USER_AGENT

logger = logging.getLogger(__name__)

# What a socket hands on for one read: (connection, its complete binary messages (feed
# packets, undecoded), received at: UTC epoch seconds).
Sink = Callable[["FeedConnection", list[bytes], float], None]
READ_BYTES = 1 << 18  # per recv: a quarter megabyte is ~2000 one-packet messages


class SocketState(enum.StrEnum):
    """A socket's life (the status file's `state` of a socket)."""

    CONNECTING = "connecting"
    OPEN = "open"
    CLOSED = "closed"


class ConnectFailed(Exception):
    """The handshake did not complete. `status` is the HTTP status when the server answered
    (429: too many connects). The message never holds the token or the URL."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def feed_url(base: str, token: Token) -> str:
    query = urlencode(
        {"version": "2", "token": token.access_token, "clientId": token.client_id, "authType": "2"}
    )
    return f"{base.rstrip('/')}?{query}"


def safe_error(exc: BaseException, secret: str = "") -> str:
    """`Type: message` with the token (and anything JWT- or token=-shaped) removed."""
    text = f"{type(exc).__name__}: {exc}"
    if secret:
        text = text.replace(secret, REDACTED)
    return redact(text)[:300]


class FeedConnection:
    """One WebSocket to the feed. Thread-safe: `close()` may be called from any thread."""

    def __init__(
        self,
        conn_id: int,
        shard: int,
        base_url: str,
        token: Token,
        sink: Sink,
        *,
        connect_timeout: float = 10.0,
        recv_timeout: float = 45.0,
        clock: Clock | None = None,
    ) -> None:
        self.conn_id = conn_id
        self.shard = shard
        self.token = token
        self._base_url = base_url
        self._sink = sink
        self._connect_timeout = connect_timeout
        self._recv_timeout = recv_timeout  # no frame at all (not even a ping) for this long: dead
        self._clock = clock or SystemClock()
        self._ws: websocket.WebSocket | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closing = False
        self.state = SocketState.CONNECTING
        self.closed = threading.Event()
        self.opened_at: float | None = None  # monotonic
        self.closed_at: float | None = None  # monotonic
        self.closed_utc: float | None = None  # the same moment, wall clock (for gap rows)
        self.last_data: float | None = None  # monotonic, last data packet (pings do not count)
        self.last_data_utc: float | None = None
        self.disconnect_code: int | None = None  # Dhan's code-50 reason, if one came
        self.close_reason = ""
        self.packets = 0  # binary messages received (one packet each at Dhan's framing)

    # -- life cycle ------------------------------------------------------------------------

    def connect(self) -> None:
        """Handshake (bounded by connect_timeout), then start the receive thread."""
        ws = websocket.WebSocket(enable_multithread=True, skip_utf8_validation=True)
        try:
            ws.connect(
                feed_url(self._base_url, self.token),
                timeout=self._connect_timeout,
                header=[f"User-Agent: {USER_AGENT}"],
            )
        except websocket.WebSocketBadStatusException as exc:
            ws.shutdown()
            self._mark_closed(f"handshake refused: HTTP {exc.status_code}")
            raise ConnectFailed(
                f"handshake refused: HTTP {exc.status_code}", exc.status_code
            ) from None
        except Exception as exc:  # noqa: BLE001 - any failure to connect is one outcome
            ws.shutdown()
            reason = safe_error(exc, self.token.access_token)
            self._mark_closed(f"connect failed: {reason}")
            raise ConnectFailed(f"connect failed: {reason}") from None
        ws.settimeout(self._recv_timeout)
        with self._lock:
            self._ws = ws
            if self._closing:  # closed while the handshake ran
                ws.shutdown()
                self._mark_closed("closed during connect")
                raise ConnectFailed("closed during connect")
            self.state = SocketState.OPEN
            self.opened_at = self._clock.monotonic()
        self._thread = threading.Thread(
            target=self._receive, name=f"feed-recv-{self.conn_id}", daemon=True
        )
        self._thread.start()

    def subscribe(self, instruments: Sequence[tuple[str, int]], mode: str) -> None:
        """Send the subscribe requests (≤ 100 instruments each). Raises ConnectFailed."""
        for request in protocol.subscribe_requests(instruments, mode):
            self._send_text(request)

    def close(self, timeout: float = 2.0) -> None:
        """Say goodbye, then make sure the socket and its thread are gone within `timeout`."""
        monotonic = self._clock.monotonic
        deadline = monotonic() + timeout
        with self._lock:
            already = self._closing
            self._closing = True
            ws = self._ws
        if ws is None:
            self._mark_closed(self.close_reason or "closed")
            return
        if not already and self.state is SocketState.OPEN:
            try:
                ws.settimeout(max(0.1, timeout / 2))  # bounds the sends below
                ws.send(protocol.disconnect_request())
                ws.send_close()
            except Exception:  # noqa: BLE001, S110 - the socket may be dead already
                pass
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, (deadline - monotonic()) / 2))
        self._abort(ws)
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - monotonic()))
        ws.shutdown()
        self._mark_closed(self.close_reason or "closed by us")

    @property
    def alive(self) -> bool:
        return self.state is SocketState.OPEN and not self.closed.is_set()

    # -- internals -------------------------------------------------------------------------

    def _send_text(self, text: str) -> None:
        ws = self._ws
        if ws is None or not self.alive:
            raise ConnectFailed("socket is not open")
        try:
            ws.send(text)
        except Exception as exc:  # noqa: BLE001
            raise ConnectFailed(
                f"send failed: {safe_error(exc, self.token.access_token)}"
            ) from None

    @staticmethod
    def _abort(ws: websocket.WebSocket) -> None:
        """Wake a thread blocked in recv: shut the TCP socket down under it."""
        sock = ws.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _receive(self) -> None:
        ws = self._ws
        assert ws is not None
        reason = "closed"
        try:
            reason = self._read_until_closed(ws)
        except TimeoutError:
            reason = f"no frame for {self._recv_timeout:.0f}s"
        except ProtocolError as exc:
            reason = f"protocol error: {exc}"
        except Exception as exc:  # noqa: BLE001 - every way a socket ends is an outcome
            reason = "closed by us" if self._closing else safe_error(exc, self.token.access_token)
        if self._closing:
            reason = "closed by us"
        if self.disconnect_code is not None:
            text = protocol.DISCONNECT_REASONS.get(self.disconnect_code, "unknown reason")
            reason = f"disconnect {self.disconnect_code} ({text})"
        ws.shutdown()  # the fd goes with the thread, whoever ended the socket
        self._mark_closed(reason)

    def _read_until_closed(self, ws: websocket.WebSocket) -> str:
        """Read, split, answer pings, hand over; the reason the socket ended."""
        sock = ws.sock
        assert sock is not None
        reader = FrameReader()
        recv, feed, sink = sock.recv, reader.feed, self._sink
        wall, monotonic = self._clock.time, self._clock.monotonic
        while True:
            data = recv(READ_BYTES)
            if not data:
                return "server closed the connection"
            messages, controls = feed(data)
            if messages:
                now_utc = wall()
                self.packets += len(messages)
                if self.disconnect_code is None:
                    self._note_disconnect(messages)
                self.last_data = monotonic()
                self.last_data_utc = now_utc
                sink(self, messages, now_utc)
            for opcode, payload in controls:
                if opcode == PING:
                    ws.pong(payload)
                elif opcode == CLOSE:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                    return f"server closed (ws {code})" if code else "server closed"

    def _note_disconnect(self, messages: list[bytes]) -> None:
        """Dhan's Disconnect packet (code 50) carries why the socket is about to end."""
        for message in messages:
            if message and message[0] == protocol.DISCONNECT:
                packet = protocol.decode_frame(message).packets
                if packet and isinstance(packet[0], protocol.Disconnect):
                    self.disconnect_code = packet[0].reason

    def _mark_closed(self, reason: str) -> None:
        with self._lock:
            if self.state is SocketState.CLOSED:
                return
            self.state = SocketState.CLOSED
            self.close_reason = reason
            self.closed_at = self._clock.monotonic()
            self.closed_utc = self._clock.time()
        self.closed.set()
