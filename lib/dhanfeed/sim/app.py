"""The simulator process: token registry, market, feed server and REST server together.

The asyncio loop (main thread) owns the market and the feed; the REST server runs in its
own threads and reaches loop-owned state only through `in_loop`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from dhanfeed.sim import rest, tokens
from dhanfeed.sim.feed import FeedServer
from dhanfeed.sim.market import Market
from dhanfeed.sim.reply import RestFaults

logger = logging.getLogger(__name__)

REST_ENDPOINTS = ("RenewToken", "generateAccessToken", "profile", "intraday")


@dataclasses.dataclass(frozen=True)
class SimOptions:
    host: str = "127.0.0.1"
    rest_port: int = 0
    feed_port: int = 0
    client_id: str = "1000000001"
    token_ttl_s: float = 86400.0
    seed: int = 1
    instruments: tuple[tuple[int, int], ...] = ()
    ticks_per_second: float = 2.0
    pin: str | None = None
    totp_secret: str | None = None
    renew_field: str = "token"
    renew_kills_sockets: bool = False
    ping_interval_s: float = 10.0  # keepalive as Dhan does it; tests shorten both
    ping_timeout_s: float = 40.0  # a client that has not answered this long is closed
    batch: int = 1  # packets per WebSocket message; Dhan sends one
    trades_per_packet: int = 3  # the feed is sampled: trades the market makes per packet
    multi_mode: str = "last"  # one instrument in several modes: "last" wins, or "each" streams


@dataclasses.dataclass
class Policy:
    """The switches for dhan-api.md's unconfirmed facts; changed at run time by the admin."""

    renew_kills_sockets: bool
    renew_field: str

    def as_dict(self, sim: Simulator) -> dict:
        return {
            "renew_kills_sockets": self.renew_kills_sockets,
            "renew_field": self.renew_field,
            "token_ttl_s": sim.registry.ttl_s,
            "multi_mode": sim.feed.multi_mode,
        }


class Simulator:
    def __init__(self, options: SimOptions) -> None:
        self.options = options
        self.client_id = options.client_id
        self.pin = options.pin
        self.totp_secret = options.totp_secret
        self.policy = Policy(options.renew_kills_sockets, options.renew_field)
        self.registry = tokens.TokenRegistry(
            options.client_id, options.token_ttl_s, on_supersede=self._superseded
        )
        self.market = Market(options.seed, options.instruments, options.trades_per_packet)
        self.feed = FeedServer(
            self.market,
            self.registry,
            ticks_per_second=options.ticks_per_second,
            renew_kills_sockets=lambda: self.policy.renew_kills_sockets,
            ping_interval_s=options.ping_interval_s,
            silent_close_s=options.ping_timeout_s,
            batch=options.batch,
            multi_mode=options.multi_mode,
        )
        self.rest_faults = RestFaults()
        self._rest_calls: Counter[str] = Counter({name: 0 for name in REST_ENDPOINTS})
        self._calls_lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._httpd: rest.RestServer | None = None
        self._http_thread: threading.Thread | None = None
        self.urls: dict[str, str] = {}

    async def start(self) -> dict[str, str]:
        """Bind both servers (OSError if a port is taken); return the start-up line's fields."""
        self.loop = asyncio.get_running_loop()
        host = self.options.host
        self._httpd = rest.RestServer((host, self.options.rest_port), rest.make_handler(self))
        try:
            feed_port = await self.feed.start(host, self.options.feed_port)
        except BaseException:
            self._httpd.server_close()
            raise
        rest_port = self._httpd.server_address[1]
        self._http_thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True,
            name="rest",
        )  # fmt: skip
        self._http_thread.start()
        http_base = f"http://{_url_host(host)}:{rest_port}"
        self.urls = {
            "api_base": http_base,
            "auth_base": http_base,
            "feed_url": f"ws://{_url_host(host)}:{feed_port}",
            "admin_url": f"{http_base}/__sim",
            "client_id": self.client_id,
        }
        return self.urls

    async def stop(self) -> None:
        await self.feed.stop()
        if self._httpd is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._httpd.shutdown)
            self._httpd.server_close()

    # --- shared with the REST threads ---

    def in_loop(self, fn: Callable[..., Any], *args: Any, timeout: float = 30) -> Any:
        """Run `fn(*args)` on the event loop and return its result (from another thread)."""
        assert self.loop is not None

        async def call() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(timeout)

    def count_rest_call(self, endpoint: str) -> None:
        with self._calls_lock:
            self._rest_calls[endpoint] += 1

    def stats(self) -> dict:
        current = self.registry.current
        with self._calls_lock:
            calls = dict(self._rest_calls)
        feed = self.in_loop(self.feed.stats)
        return {
            "current_token_fp": current.fingerprint if current else None,
            "sockets_open": feed["sockets_open"],
            "max_sockets_open": feed["max_sockets_open"],
            "connections_total": feed["connections_total"],
            "handshakes_refused": feed["handshakes_refused"],
            "rest_calls": calls,
            "policy": self.policy.as_dict(self),
            "rest_faults": self.rest_faults.snapshot(),
            "instruments": feed["instruments"],
            "sockets": feed["sockets"],
        }

    def _superseded(self, old_fp: str) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.feed.token_superseded, old_fp)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
