"""dhanfeed: a Dhan market-data collector that keeps its 24-hour token alive by itself.

The public API for users' programs is `current_token(path)`: read and check the token file,
return its `dhanfeed.token.Token` (use `.access_token` for Dhan's `access-token` header). It
raises `dhanfeed.errors.TokenFileError` (missing, unreadable, group/world-readable, a symlink,
corrupt, expired) with a clear message. Call it again after an HTTP 401: renew_token may have
replaced the token.

`read_candles(database, instrument, interval, start, end)` returns stored bars as a pandas
DataFrame with a tz-aware IST index (needs the `pandas` extra: `pip install 'dhanfeed[pandas]'`).

Layout (one concern per module; tests/test_layout.py holds the import rules):

  cli/            one module per program: parse, load config, make the clock, run, exit code
  renewal         the renewal decision, pure: token + now + policy -> action + reason
  renewer         carries it out under the token-file lock, one step after another:
                  renew_recovery (a token an earlier run could not install), renew_state
                  (what Dhan said about a token), renew_request (RenewToken or PIN+TOTP,
                  and what a failure means), renew_confirm (does Dhan still accept a
                  token: the profile check), renew_answer (may Dhan's new token become the
                  token file), renew_monitor (healthcheck pings and alerts on every way
                  out), renew_failures (each end without a new token file: sentence, log,
                  alert, runbook), renew_dry_run (what --dry-run checks), renew_outcome
                  (status word, exit code, --json shape), renew_metrics
                  (renew_token-<client id>.prom)
  dhan_api        Dhan's REST API (session and deadline passed in); credentials (PIN, TOTP)
  token           a Dhan JWT read; token_store: the token file (lock, read, durable write)
  alerts hooks    alert channels, de-dup, escalation, recovery; user hooks;
  apprise_urls    Apprise, loaded and checked only where alert URLs are configured
  collector       the collector's parts wired: feed -> pipeline -> candles -> store, status
  pipeline        the consumer: message batches -> decode -> candles, raw-tick rows; lag
  feed/           protocol and policy (pure), framing (pure), connection, shard (and
                  shard_context: what a shard is given and reports), supervisor, token_watch
  candles         ticks -> bars (pure); ticker_prints (which index prints are a swap's
                  second copy, pure)
  backfill        healing and reconciling a day from Dhan's bars (pure); backfill_run (one
                  bin/backfill run: fetch, plan, write), backfill_metrics
                  (backfill-<client id>.prom, reconcile-<client id>.prom)
  store/          the Store interface, SQLite, PostgreSQL, the writer thread, SQLite -> PG copy
  status          the collector's status file and metrics
  health          what bin/status and the page show, gathered at one instant (reads only);
                  health_verdict (how healthy, pure: facts -> findings with levels),
                  health_report (the facts, the findings and their one JSON shape)
  web/            the read-only status page; candle_reader, frames, parquet, progress and
                  console serve people (bin/status, export_candles, a terminal)
  config          the one frozen config object: a dataclass per section, with defaults;
                  config_load (TOML -> that object, every problem at once with its key)
  logs            JSON logs and redaction
  leaves          errors (the error tree, exit codes), clock (the one clock), severity (the
                  one alert vocabulary: recovery, warning, critical), files (atomic
                  write, private read, JSON state), run_timer (renew_token's whole-run
                  bound), shield (what a run timeout waits for), instruments, session
                  (the trading calendar), version (the User-Agent), database_url (a
                  postgresql:// URL checked, and shown without its password), textfiles
                  (each account's own <program>-<client id>.prom name)
  sim/            the simulator: an optional extra that the product never imports

Imports flow one way: cli -> (renewer | collector | health/web | export) -> token store,
Dhan REST, feed, candles, store, alerts -> leaves, never back up and never in a circle.
"""

from dhanfeed.frames import read_candles
from dhanfeed.token_store import current_token
from dhanfeed.version import USER_AGENT, __version__

__all__ = ["USER_AGENT", "__version__", "current_token", "read_candles"]
