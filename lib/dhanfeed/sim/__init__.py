"""A local Dhan for the demo, the tests and the benchmarks (`bin/dhan_sim`).

tokens.py  JWT-shaped tokens (HS512 header, dhan-api.md §1 payload), one active at a time
market.py  seeded random walk, N trades per packet, the packets' tape, the exchange's bars
feed.py    the v2 live feed (websockets): auth codes, limits, modes, one packet per message
           (or --batch N), bulk-written frames, feed faults
rest.py    RenewToken, generateAccessToken, profile, charts/intraday; REST faults
admin.py   /__sim/: stats, sent, issue-token, policy, fault, clear-faults
reply.py   the REST reply and the armed REST faults (a leaf below rest and admin)
app.py     both servers in one process (asyncio loop + a threaded HTTP server)
process.py SimProcess: bin/dhan_sim started on free ports, for the demo, tests and benchmarks
config_file.py  the config file the demo, the tests and the benchmarks write (one writer)

Admin API (JSON over HTTP on the REST port):
  GET  /__sim/stats          current_token_fp, sockets_open, max_sockets_open,
                             connections_total, handshakes_refused, rest_calls{4 endpoints},
                             policy, rest_faults, instruments{KEY: ticks, delivered,
                             trades, cum_volume, first_ltt, last_ltt}, sockets[{id, token_fp,
                             opened_at, closed_at, close_reason, instruments, packets_sent}]
  GET  /__sim/sent?instrument=NSE_EQ:1333   {"ticks": [[cum, ltt, ltp, [socket ids]], ...]}
  POST /__sim/issue-token    {"ttl_s"?, "path"?} → {access_token, expires_at, fingerprint}
  POST /__sim/policy         {"renew_kills_sockets"?, "renew_field"?, "token_ttl_s"?,
                             "multi_mode"? ("last" | "each", for later subscriptions)}
  POST /__sim/fault          {"kind": drop_sockets | stall+seconds | garbage+count |
                             truncated | disconnect+code | handshake_429+seconds |
                             rest+endpoint+mode(500|429|hang|malformed|html|no_token|
                             ragged (intraday arrays of unequal length), or for
                             RenewToken only, answers after issuing a new token:
                             bad_exp|expiry_0001|other_client|expired)+count}
  POST /__sim/clear-faults
"""
