"""A loopback HTTP server that answers 200 to every GET and POST and records each request:
the stand-in for healthchecks.io and for Apprise's json:// channel."""

from __future__ import annotations

import threading
from collections.abc import Iterator
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
def recording_server() -> Iterator[RecordingServer]:
    hits: list[Hit] = []

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            hits.append(Hit(self.command, self.path, self.rfile.read(length)))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")

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
