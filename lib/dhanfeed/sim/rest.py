"""The simulated REST API (dhan-api.md §1–2) and the admin endpoint, on one HTTP server.

Stdlib `ThreadingHTTPServer`: one thread per request, so a "hang" fault sleeps in its own
thread and nothing else waits. Query strings (PIN, TOTP) and tokens are never logged.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import pyotp

from dhanfeed.sim import admin, tokens
from dhanfeed.sim.market import BAR_FIELDS, intraday_bars
from dhanfeed.sim.reply import Reply, RestFaults

if TYPE_CHECKING:
    from dhanfeed.sim.app import Simulator

logger = logging.getLogger(__name__)

HANG_S = 30.0  # longer than any client timeout
OTHER_CLIENT = "2000000002"  # the client id of the `other_client` fault's token
INTRADAY_PER_SECOND = 5  # Data APIs: 5 requests/s
INTERVALS = {1, 5, 15, 25, 60}
INSTRUMENT_TYPES = {"EQUITY", "INDEX", "FUTIDX", "FUTSTK", "OPTIDX", "OPTSTK", "FUTCUR",
                    "OPTCUR", "FUTCOM", "OPTFUT"}  # fmt: skip

DH_901 = (401, "Invalid_Authentication", "DH-901",
          "Client ID or user generated access token is invalid or expired.")  # fmt: skip
DH_904 = (429, "Rate_Limit", "DH-904",
          "Too many requests on server from single user breaching rate limits. "
          "Try throttling API calls.")  # fmt: skip
DH_905 = (400, "Input_Exception", "DH-905",
          "Missing required fields, bad values for parameters etc.")  # fmt: skip
DH_908 = (500, "Internal_Server_Error", "DH-908",
          "Server was not able to process API request. This will only occur rarely.")  # fmt: skip

HTML_ERROR = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)


def dh_error(error: tuple, message: str | None = None) -> Reply:
    status, kind, code, text = error
    return Reply(status, {"errorType": kind, "errorCode": code, "errorMessage": message or text})


def fault_reply(mode: str) -> Reply:
    if mode == "hang":
        time.sleep(HANG_S)
        return Reply(504, HTML_ERROR, "text/html")
    if mode == "malformed":
        return Reply(200, b'{"accessToken": "eyJ', "application/json")
    if mode == "html":
        return Reply(502, HTML_ERROR, "text/html")
    if mode == "no_token":  # a success status with a body that holds no token
        return Reply(200, {"status": "success", "expiryTime": "2026-01-01T00:00:00.000"})
    if mode == "429":
        return dh_error(DH_904)
    if mode == "ragged":
        return Reply(200, {"open": [1.0, 2.0], "high": [1.0], "low": [], "close": [1.0],
                           "volume": [5], "timestamp": [1_700_000_000]})  # fmt: skip
    return dh_error(DH_908)


class DhanApi:
    """The Dhan endpoints. Each returns a Reply; the handler only does HTTP."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self._intraday_calls: deque[float] = deque()
        self._intraday_lock = threading.Lock()

    def route(self, method: str, path: str, query: dict, headers, body: bytes) -> Reply | None:  # noqa: ANN001
        path = path.rstrip("/")
        if path == "/v2/RenewToken":
            return self._call("RenewToken", self.renew_token, method, headers)
        if path == "/app/generateAccessToken":
            return self._call("generateAccessToken", self.generate, method, query)
        if path == "/v2/profile":
            return self._call("profile", self.profile, method, headers)
        if path == "/v2/charts/intraday":
            return self._call("intraday", self.intraday, method, headers, body)
        return None

    def _call(self, endpoint: str, handler, *args) -> Reply:  # noqa: ANN001
        self.sim.count_rest_call(endpoint)
        mode = self.sim.rest_faults.take(endpoint)
        if mode in RestFaults.ISSUING and endpoint == "RenewToken":
            logger.info("REST %s: fault %s", endpoint, mode)
            return handler(*args, odd=mode)
        if mode is not None:
            logger.info("REST %s: fault %s", endpoint, mode)
            return fault_reply(mode)
        return handler(*args)

    def _authorise(self, headers) -> tokens.Issued | None:  # noqa: ANN001
        client_id = headers.get("dhanClientId") or headers.get("client-id")
        verdict, issued = self.sim.registry.check(headers.get("access-token"), client_id)
        return issued if verdict == tokens.OK else None

    # GET /v2/RenewToken (headers access-token, dhanClientId)
    def renew_token(self, method: str, headers, odd: str | None = None) -> Reply:  # noqa: ANN001
        if method != "GET":
            return dh_error(DH_905)
        if not headers.get("dhanClientId"):
            return dh_error(DH_905, "Missing required header dhanClientId")
        issued = self._authorise(headers)
        if issued is None or issued.consumer_type != tokens.SELF:
            return dh_error(DH_901)
        registry = self.sim.registry
        if odd == "bad_exp":
            new = registry.mint(tokens.SELF, claims={"exp": 10**12})  # year 33658
        elif odd == "other_client":
            new = registry.mint(tokens.SELF, claims={"dhanClientId": OTHER_CLIENT})
        elif odd == "expired":
            new = registry.mint(tokens.SELF, -60)
        else:
            new = registry.mint(tokens.SELF)
        logger.info("RenewToken: %s → %s", issued.fingerprint, new.fingerprint)
        expiry = "0001-01-01T00:00:00.000" if odd == "expiry_0001" else tokens.ist_no_zone(new.exp)
        return Reply(200, {self.sim.policy.renew_field: new.access_token, "expiryTime": expiry})

    # POST /app/generateAccessToken?dhanClientId&pin&totp
    def generate(self, method: str, query: dict) -> Reply:
        def failure(message: str, status: int = 400) -> Reply:
            return Reply(status, {"message": message, "status": "error"})

        if method != "POST":
            return failure("Method Not Allowed", 405)
        client_id = query.get("dhanClientId", [""])[0]
        pin = query.get("pin", [""])[0]
        code = query.get("totp", [""])[0]
        sim = self.sim
        if not sim.pin or not sim.totp_secret:
            return failure("TOTP is not enabled for this account")
        if client_id != sim.client_id:
            return failure("Invalid Client ID")
        if pin != sim.pin:
            return failure("Invalid Pin")
        if not pyotp.TOTP(sim.totp_secret).verify(code, valid_window=1):
            return failure("Invalid TOTP")
        issued = sim.registry.mint(tokens.APP)
        logger.info("generateAccessToken: new APP token %s", issued.fingerprint)
        return Reply(
            200,
            {
                "dhanClientId": sim.client_id,
                "dhanClientName": "SIM TRADER",
                "dhanClientUcc": "SIMU12345X",
                "givenPowerOfAttorney": False,
                "accessToken": issued.access_token,
                "expiryTime": tokens.ist_no_zone(issued.exp),
            },
        )

    # GET /v2/profile
    def profile(self, method: str, headers) -> Reply:  # noqa: ANN001
        if method != "GET":
            return dh_error(DH_905)
        issued = self._authorise(headers)
        if issued is None:
            return dh_error(DH_901)
        return Reply(
            200,
            {
                "dhanClientId": self.sim.client_id,
                "tokenValidity": tokens.ist_profile(issued.exp),
                "activeSegment": "Equity, Derivative, Currency, Commodity",
                "ddpi": "Active",
                "mtf": "Active",
                "dataPlan": "Active",
                "dataValidity": "2099-12-31 23:59:59.0",
            },
        )

    # POST /v2/charts/intraday
    def intraday(self, method: str, headers, body: bytes) -> Reply:  # noqa: ANN001
        if method != "POST":
            return dh_error(DH_905)
        if self._issued_for_data(headers) is None:
            return dh_error(DH_901)
        if not self._within_rate_limit():
            return dh_error(DH_904)
        try:
            request = json.loads(body or b"{}")
            segment = str(request["exchangeSegment"])
            security_id = int(str(request["securityId"]))
            interval = int(str(request.get("interval", "1")))
            instrument = request["instrument"]
            from_utc = admin.parse_ist(str(request["fromDate"]), end=False)
            to_utc = admin.parse_ist(str(request["toDate"]), end=True)
        except (ValueError, KeyError, TypeError):
            return dh_error(DH_905)
        if interval not in INTERVALS:
            return dh_error(DH_905, "interval must be one of 1, 5, 15, 25, 60")
        if instrument not in INSTRUMENT_TYPES:
            return dh_error(
                DH_905, "instrument must be one of " + ", ".join(sorted(INSTRUMENT_TYPES))
            )
        if from_utc >= to_utc:
            return dh_error(DH_905, "fromDate must be before toDate")
        key = f"{segment.upper()}:{security_id}"

        def bars() -> dict:
            tape = self.sim.market.find(key)
            if tape is None:
                return {k: [] for k in BAR_FIELDS}
            return intraday_bars(tape, interval, from_utc, to_utc)

        return Reply(200, self.sim.in_loop(bars))

    def _issued_for_data(self, headers) -> tokens.Issued | None:  # noqa: ANN001
        verdict, issued = self.sim.registry.check(headers.get("access-token"))
        return issued if verdict == tokens.OK else None

    def _within_rate_limit(self) -> bool:
        now = time.monotonic()
        with self._intraday_lock:
            calls = self._intraday_calls
            while calls and now - calls[0] >= 1.0:
                calls.popleft()
            if len(calls) >= INTRADAY_PER_SECOND:
                return False
            calls.append(now)
            return True


def make_handler(sim: Simulator) -> type[BaseHTTPRequestHandler]:
    api = DhanApi(sim)

    class Handler(BaseHTTPRequestHandler):
        server_version = "dhan-sim/1"
        sys_version = ""

        def _dispatch(self, method: str) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
            try:
                reply: Reply | None
                if url.path.startswith(admin.PREFIX):
                    reply = admin.handle(sim, method, url.path[len(admin.PREFIX) :], query, body)
                else:
                    reply = api.route(method, url.path, query, self.headers, body)
                if reply is None:
                    reply = Reply(404, {"errorType": "Not_Found", "errorCode": "DH-905",
                                        "errorMessage": f"no such endpoint {url.path}"})  # fmt: skip
            except Exception:
                logger.exception("REST %s %s failed", method, url.path)
                reply = dh_error(DH_908)
            self._send(reply)

        def _send(self, reply: Reply) -> None:
            body = reply.body
            if not isinstance(body, bytes):
                body = json.dumps(body).encode("utf-8")
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (e.g. timed out during a hang)

        def do_GET(self) -> None:  # noqa: N802
            self._dispatch("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._dispatch("POST")

        def do_PUT(self) -> None:  # noqa: N802
            self._dispatch("PUT")

        def do_DELETE(self) -> None:  # noqa: N802
            self._dispatch("DELETE")

        def log_message(self, format: str, *args) -> None:  # noqa: A002, ANN002
            # The request line holds the PIN and TOTP of generateAccessToken: log the path only.
            logger.debug("REST %s %s", self.command, urlsplit(self.path).path)

    return Handler


class RestServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
