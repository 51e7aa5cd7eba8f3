"""WebSocket frames from a server, split out of raw socket reads in bulk (RFC 6455 §5.2).

websocket-client does the handshake and every send (subscribe, pong, close); its `recv`
costs about 12 µs of Python per message, more than everything else the collector does with
a one-packet message. So the receive thread reads the socket itself, as much as is there,
and `FrameReader.feed` cuts every complete frame out of it in one pass: data messages in
order (continuations joined), control frames (ping, pong, close) beside them.

Pure: no socket, no clock. A server never masks its frames; a masked or oversized frame is
a `ProtocolError`, after which the connection must be dropped.
"""

from __future__ import annotations

from typing import NamedTuple

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_MESSAGE = 1 << 22  # a feed message is one packet (≤ 162 bytes); 4 MB is plainly wrong


class ProtocolError(Exception):
    """The byte stream is not a valid sequence of server frames."""


class Control(NamedTuple):
    opcode: int  # CLOSE, PING or PONG
    payload: bytes


class FrameReader:
    """Incremental: `feed(data)` returns what `data` completed; the rest waits for more."""

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self.max_message = max_message
        self._rest = b""  # an incomplete frame from the previous read
        self._fragments: list[bytes] | None = None  # a fragmented message being joined

    def feed(self, data: bytes) -> tuple[list[bytes], list[Control]]:
        """(complete data messages, control frames), each in stream order."""
        buf = self._rest + data if self._rest else data
        end = len(buf)
        messages: list[bytes] = []
        controls: list[Control] = []
        append = messages.append
        unfragmented = self._fragments is None
        i = 0
        while end - i >= 2:
            b0 = buf[i]
            size = buf[i + 1]
            if size & 0x80:
                raise ProtocolError("the server masked a frame")
            head = 2
            if size >= 126:
                if size == 126:
                    if end - i < 4:
                        break
                    size = int.from_bytes(buf[i + 2 : i + 4], "big")
                    head = 4
                else:
                    if end - i < 10:
                        break
                    size = int.from_bytes(buf[i + 2 : i + 10], "big")
                    head = 10
                if size > self.max_message:
                    raise ProtocolError(f"a frame of {size} bytes")
            start = i + head
            stop = start + size
            if stop > end:
                break
            i = stop
            if b0 == 0x82 and unfragmented:  # FIN + binary: every feed packet
                append(buf[start:stop])
                continue
            self._other(b0, buf[start:stop], messages, controls)
            unfragmented = self._fragments is None
        self._rest = buf[i:]
        return messages, controls

    def _other(
        self, b0: int, payload: bytes, messages: list[bytes], controls: list[Control]
    ) -> None:
        if b0 & 0x70:
            raise ProtocolError("reserved bits set (no extension was negotiated)")
        opcode, fin = b0 & 0x0F, b0 & 0x80
        if opcode >= CLOSE:
            if not fin or len(payload) > 125 or opcode not in (CLOSE, PING, PONG):
                raise ProtocolError(f"bad control frame (opcode {opcode:#x})")
            controls.append(Control(opcode, payload))
        elif opcode in (TEXT, BINARY):
            if self._fragments is not None:
                raise ProtocolError("a new message inside a fragmented one")
            if fin:
                messages.append(payload)
            else:
                self._fragments = [payload]
        elif opcode == CONTINUATION:
            if self._fragments is None:
                raise ProtocolError("a continuation without a message")
            self._fragments.append(payload)
            if sum(map(len, self._fragments)) > self.max_message:
                raise ProtocolError("a fragmented message too large")
            if fin:
                messages.append(b"".join(self._fragments))
                self._fragments = None
        else:
            raise ProtocolError(f"unknown opcode {opcode:#x}")
