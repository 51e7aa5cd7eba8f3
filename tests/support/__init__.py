"""What the tests share, not collected as tests (imported as `support.<module>`; tests/ is on
sys.path).

collector_timing.py  bin/collector with scaled-down delays (805/429 floors in seconds)
intraday.py          the simulator's 1-minute bars, as a test asks for them
polling.py           wait_until: the one way a test waits for something
recording_http.py    a loopback HTTP server that records every request (healthchecks, channels)
scheduling.py        the order pytest-xdist hands the tests out in under `make test`: slow first
renew.py             a temporary install for renew_token, and the `run`/`clean_environment` fixtures
secret_scan.py       the end-of-suite scan for tokens, the PIN and the TOTP seed in what was written
sim.py               where bin/ is, and the real simulator launched as bin/dhan_sim
store_queries.py     read-back queries that only tests need
token_files.py       JWT-shaped tokens and token files

No module here may share a standard library module's name: collector_timing.py runs as a
script, which puts this directory first on sys.path (an `http.py` here hid `http.server`).
"""
