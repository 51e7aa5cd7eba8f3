"""A loopback HTTP server that answers 200 to every GET and POST and records each request:
the stand-in for healthchecks.io and for Apprise's json:// channel. Given `answer`, it answers
each request with that function's status and JSON body instead (a misbehaving Dhan)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple


class Hit(NamedTuple):
    method: str
    path: str
    body: bytes


class RecordingServer:
    def __init__(self, server: ThreadingHTTPServer, hits: list[Hit]) -> None:
        self.port = server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.hits = hits

    def paths(self) -> list[str]:
        return [hit.path for hit in self.hits]


@contextmanager
def recording_server(
    answer: Callable[[Hit], tuple[int, bytes]] | None = None,
) -> Iterator[RecordingServer]:
    hits: list[Hit] = []

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            hit = Hit(self.command, self.path, self.rfile.read(length))
            hits.append(hit)
            status, body = answer(hit) if answer else (200, b"OK")
            self.send_response(status)
            if answer:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _record  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield RecordingServer(server, hits)
    finally:
        server.shutdown()
        server.server_close()
