"""dhanfeed: a Dhan market-data collector that keeps its 24-hour token alive by itself."""

__version__ = "0.1.0"


def current_token(path):  # type: ignore[no-untyped-def]
    """Read and check the token file at `path`; return its `dhanfeed.token.Token`.

    Use `.access_token` for Dhan's `access-token` header. Raises `dhanfeed.errors.TokenFileError`
    (missing, unreadable, group/world-readable, a symlink, corrupt, expired) with a clear
    message. Call it again after an HTTP 401: renew_token may have replaced the token.
    """
    from dhanfeed.token_store import current_token as _current_token

    return _current_token(path)
