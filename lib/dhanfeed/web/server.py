"""The collector's read-only status page: `ThreadingHTTPServer` on `[web] bind:port`.

Serves the page (`static/`), `/api/status` (bin/status's JSON, read from the collector's
status file, so the page and the command never disagree), `/api/instruments` and
`/api/candles` (read through `candle_reader`, one short read-only query per request). Each
request runs in its own thread and touches nothing of the feed's: no lock of the collector
is taken, so a slow browser cannot hold up a packet. GET only; no token, only fingerprints.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from dhanfeed.config import Config
from dhanfeed.errors import DhanfeedError
from dhanfeed.health import gather, read_status_file
from dhanfeed.status import STATUS_FILE
from dhanfeed.web.api import BadRequest, candles_answer, instruments_answer

logger = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
# Every file the page may load, and nothing else: no path from the request reaches the disk.
FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
    "/static/lightweight-charts.js": (
        "vendor/lightweight-charts.standalone.production.js",
        "text/javascript; charset=utf-8",
    ),
    "/static/NOTICE": ("vendor/NOTICE", "text/plain; charset=utf-8"),
    "/static/LICENSE": ("vendor/LICENSE", "text/plain; charset=utf-8"),
}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # scripts only from here; the chart library sets inline styles on its own elements
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'",
}


class StatusPage:
    """`start()` binds and serves in a daemon thread; `stop()` shuts it down (bounded)."""

    def __init__(self, config: Config, *, clock: Callable[[], dt.datetime]) -> None:
        self.config = config
        self.clock = clock
        self._previous: dict[str, Any] | None = None  # an older status, for messages/s
        self._latest: dict[str, Any] | None = None
        self._lock = threading.Lock()  # guards the two above; only request threads take it
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def start(self) -> None:
        page = self

        class Handler(_Handler):
            owner = page

        server = ThreadingHTTPServer((self.config.web.bind, self.config.web.port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="web", daemon=True)
        self._thread.start()
        logger.info("status page on http://%s:%d/", self.config.web.bind, self.port)

    def stop(self, timeout: float = 1.0) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout)

    def status(self) -> dict[str, Any]:
        now = self.clock()
        snap, _ = read_status_file(self.config.state_dir / STATUS_FILE, now)
        with self._lock:
            if snap is not None and (
                self._latest is None or snap.get("snapshot_utc") != self._latest.get("snapshot_utc")
            ):
                self._previous, self._latest = self._latest, snap
            previous = self._previous
        return gather(self.config, now, previous=previous).as_json()


class _Handler(BaseHTTPRequestHandler):
    owner: StatusPage
    server_version = "dhanfeed"
    sys_version = ""

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        url = urlsplit(self.path)
        try:
            if url.path in FILES:
                name, kind = FILES[url.path]
                self._send(HTTPStatus.OK, (STATIC / name).read_bytes(), kind)
            elif url.path == "/api/status":
                self._json(HTTPStatus.OK, self.owner.status())
            elif url.path == "/api/instruments":
                self._json(HTTPStatus.OK, instruments_answer(self.owner.config))
            elif url.path == "/api/candles":
                query = parse_qs(url.query, keep_blank_values=True)
                self._json(
                    HTTPStatus.OK, candles_answer(self.owner.config, query, self.owner.clock())
                )
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {url.path}"})
        except BadRequest as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        except DhanfeedError as exc:  # e.g. no database yet
            self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc)})
        except Exception:  # noqa: BLE001 - never a traceback to the browser; the log has it
            logger.exception("status page: unexpected error for %s", url.path)
            self._json(
                HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "unexpected error (see the log)"}
            )

    def _json(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        data = json.dumps(body, separators=(",", ":")).encode("utf-8") + b"\n"
        self._send(status, data, "application/json")

    def _send(self, status: HTTPStatus, data: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for key, value in SECURITY_HEADERS.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
        logger.debug("web: " + format, *args)
