"""The admin endpoint under `/__sim/`: stats, the per-tick record, tokens, policy, faults.

Tests and the demo script the simulator through it. Everything that touches the feed or
the market runs on the simulator's event loop (`sim.in_loop`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import TYPE_CHECKING

from dhanfeed.sim import tokens
from dhanfeed.sim.feed import MULTI_MODES
from dhanfeed.sim.reply import Reply, RestFaults
from dhanfeed.token import IST

if TYPE_CHECKING:
    from dhanfeed.sim.app import Simulator
logger = logging.getLogger(__name__)

PREFIX = "/__sim/"
FEED_FAULTS = ("drop_sockets", "stall", "garbage", "truncated", "disconnect", "handshake_429")


class BadRequest(ValueError):
    pass


def parse_ist(text: str, *, end: bool) -> float:
    """A Dhan chart date ("YYYY-MM-DD" or "YYYY-MM-DD HH:MM[:SS]", IST) → UTC epoch.

    A bare date as the end of a range means the whole of that day.
    """
    text = text.strip()
    if len(text) == 10:
        day = dt.datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=IST)
        return (day + dt.timedelta(days=1 if end else 0)).timestamp()
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"):
        try:
            return dt.datetime.strptime(text, fmt).replace(tzinfo=IST).timestamp()
        except ValueError:
            continue
    raise ValueError(f"bad date {text!r}")


def handle(sim: Simulator, method: str, path: str, query: dict, body: bytes) -> Reply:
    try:
        payload = json.loads(body) if body.strip() else {}
        if not isinstance(payload, dict):
            raise BadRequest("the body must be a JSON object")
        route = (method, path.strip("/"))
        if route == ("GET", "stats"):
            return Reply(200, sim.stats())
        if route == ("GET", "sent"):
            key = (query.get("instrument") or [""])[0]
            record = sim.in_loop(sim.feed.sent, key)
            if record is None:
                return Reply(404, {"error": f"unknown instrument {key!r}"})
            return Reply(200, record)
        if route == ("POST", "issue-token"):
            return Reply(200, issue_token(sim, payload))
        if route == ("POST", "policy"):
            return Reply(200, set_policy(sim, payload))
        if route == ("POST", "fault"):
            return Reply(200, fault(sim, payload))
        if route == ("POST", "clear-faults"):
            sim.rest_faults.clear()
            sim.in_loop(sim.feed.clear)
            return Reply(200, {"ok": True})
        return Reply(404, {"error": f"no admin route {method} {PREFIX}{path}"})
    except (BadRequest, ValueError, TypeError) as exc:
        return Reply(400, {"error": str(exc)})


def issue_token(sim: Simulator, payload: dict) -> dict:
    """A new SELF token, as if a person generated it on Dhan Web; supersedes the current one."""
    ttl = payload.get("ttl_s")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0):
        raise BadRequest("ttl_s must be a positive number")
    issued = sim.registry.mint(tokens.SELF, ttl)
    if payload.get("path"):
        record = tokens.token_file_record(issued, sim.client_id, "manual")
        tokens.write_token_file(str(payload["path"]), record)
    logger.info("admin: issued SELF token %s", issued.fingerprint)
    return {
        "access_token": issued.access_token,
        "expires_at": issued.expires_at.isoformat(),
        "fingerprint": issued.fingerprint,
    }


def set_policy(sim: Simulator, payload: dict) -> dict:
    policy = sim.policy
    unknown = set(payload) - {"renew_kills_sockets", "renew_field", "token_ttl_s", "multi_mode"}
    if unknown:
        raise BadRequest(f"unknown policy keys: {', '.join(sorted(unknown))}")
    if "renew_kills_sockets" in payload:
        if not isinstance(payload["renew_kills_sockets"], bool):
            raise BadRequest("renew_kills_sockets must be true or false")
        policy.renew_kills_sockets = payload["renew_kills_sockets"]
    if "renew_field" in payload:
        if payload["renew_field"] not in ("token", "accessToken"):
            raise BadRequest("renew_field must be 'token' or 'accessToken'")
        policy.renew_field = payload["renew_field"]
    if "token_ttl_s" in payload:
        ttl = payload["token_ttl_s"]
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0:
            raise BadRequest("token_ttl_s must be a positive number")
        sim.registry.ttl_s = float(ttl)
    if "multi_mode" in payload:
        if payload["multi_mode"] not in MULTI_MODES:
            raise BadRequest(f"multi_mode must be one of {', '.join(MULTI_MODES)}")
        sim.feed.multi_mode = payload["multi_mode"]  # applies to later subscriptions
    logger.info("admin: policy %s", policy.as_dict(sim))
    return policy.as_dict(sim)


def _number(payload: dict, key: str, default: float | None = None) -> float:
    value = payload.get(key, default)
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"{key!r} must be a number")
    if value < 0:
        raise BadRequest(f"{key!r} must not be negative")
    return value


def fault(sim: Simulator, payload: dict) -> dict:
    kind = payload.get("kind")
    feed = sim.feed
    logger.info("admin: fault %s", kind)
    if kind == "rest":
        endpoint = payload.get("endpoint", "*")
        mode = str(payload.get("mode", "500"))
        count = int(_number(payload, "count", 1))
        if endpoint not in RestFaults.ENDPOINTS:
            raise BadRequest(f"endpoint must be one of {', '.join(RestFaults.ENDPOINTS)}")
        if mode not in RestFaults.MODES:
            raise BadRequest(f"mode must be one of {', '.join(RestFaults.MODES)}")
        sim.rest_faults.arm(endpoint, mode, count)
        return {"ok": True, "armed": sim.rest_faults.snapshot()}
    if kind == "drop_sockets":
        return {"ok": True, "sockets": sim.in_loop(feed.drop_sockets)}
    if kind == "stall":
        sim.in_loop(feed.stall, _number(payload, "seconds"))
        return {"ok": True}
    if kind == "handshake_429":
        sim.in_loop(feed.refuse_handshakes, _number(payload, "seconds"))
        return {"ok": True}
    if kind == "garbage":
        count = int(_number(payload, "count", 1))
        return {"ok": True, "sockets": sim.in_loop(feed.send_garbage, count)}
    if kind == "truncated":
        return {"ok": True, "sockets": sim.in_loop(feed.send_truncated)}
    if kind == "disconnect":
        code = int(_number(payload, "code", 800))
        if not 0 <= code <= 65535:
            raise BadRequest("code must fit in a u16")
        return {"ok": True, "sockets": sim.in_loop(feed.disconnect_all, code)}
    raise BadRequest(f"kind must be 'rest' or one of {', '.join(FEED_FAULTS)}")
