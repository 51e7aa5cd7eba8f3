"""Dhan's live feed, from bytes to sockets kept alive across token swaps.

- `protocol`: packets and requests (pure).
- `policy`: delays, sharding, backoff, when a feed is stale (pure).
- `framing`: WebSocket frames cut out of raw socket reads in bulk (pure).
- `connection`: one WebSocket: bounded handshake, subscribe, the receive thread.
- `shard`: one shard's worker: reconnects, 805/807 handling, make-before-break swaps.
- `shard_context`: what a worker is given and reports: socket and token interfaces, the state
  its shards share (counters, once-only alerts, 805 window, refusal, swap slot), gap and swap
  records.
- `supervisor`: one worker per shard, their sockets opened through `connection`, one status.
- `token_watch`: notices a new token file.
"""
