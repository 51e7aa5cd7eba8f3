"""dhanfeed: a Dhan market-data collector that keeps its 24-hour token alive by itself.

The public API for users' programs is `current_token(path)`: read and check the token file,
return its `dhanfeed.token.Token` (use `.access_token` for Dhan's `access-token` header). It
raises `dhanfeed.errors.TokenFileError` (missing, unreadable, group/world-readable, a symlink,
corrupt, expired) with a clear message. Call it again after an HTTP 401: renew_token may have
replaced the token.

`read_candles(database, instrument, interval, start, end)` returns stored bars as a pandas
DataFrame with a tz-aware IST index (needs the `pandas` extra: `pip install 'dhanfeed[pandas]'`).
"""

from dhanfeed.frames import read_candles
from dhanfeed.token_store import current_token
from dhanfeed.version import USER_AGENT, __version__

__all__ = ["USER_AGENT", "__version__", "current_token", "read_candles"]
