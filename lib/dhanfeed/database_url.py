"""A `postgresql://` URL as `[collector] database` takes it: checked, and shown without secrets.

The config file never holds a database password: libpq finds it in `~/.pgpass`, in the file
`$PGPASSFILE` names (a systemd credential, for example), or it is not needed (peer or trust
authentication over the Unix socket). A URL carrying one is refused with that advice.
`redacted()` is a second line of defence for anything that prints a URL.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit

SCHEMES = ("postgresql", "postgres")
_SECRET_PARAMS = {"password"}
_MASK = "***"


def is_postgres_url(text: str) -> bool:
    return bool(re.match(rf"^({'|'.join(SCHEMES)})://", text.strip(), re.IGNORECASE))


def _userinfo(netloc: str) -> tuple[str, str]:
    """(userinfo, hosts) of a netloc; libpq allows several hosts, so no .port here."""
    userinfo, at, hosts = netloc.rpartition("@")
    return (userinfo, hosts) if at else ("", netloc)


def redact(url: str) -> str:
    """`url` with any password (in the user part or a `password=` parameter) masked."""
    parts = urlsplit(url)
    userinfo, hosts = _userinfo(parts.netloc)
    if ":" in userinfo:
        userinfo = f"{userinfo.split(':', 1)[0]}:{_MASK}"
    netloc = f"{userinfo}@{hosts}" if userinfo else hosts
    query = parts.query
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(k in _SECRET_PARAMS for k, _ in pairs):
        masked = [(k, _MASK if k in _SECRET_PARAMS else v) for k, v in pairs]
        query = urlencode(masked, safe="/*")
    # Joined by hand: urlunsplit drops the empty host of "postgresql:///db?host=/run/...".
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


class PostgresUrl(str):
    """A checked `postgresql://` URL without a password. `str()` of it is safe to log."""

    def __new__(cls, text: str) -> PostgresUrl:
        text = text.strip()
        if not is_postgres_url(text):
            raise ValueError(f"expected a postgresql:// URL, got {redact(text)!r}")
        parts = urlsplit(text)
        userinfo, _ = _userinfo(parts.netloc)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        if ":" in userinfo or _SECRET_PARAMS & set(query):
            raise ValueError(
                f"{redact(text)} holds a password; never put it in the config file: use"
                " ~/.pgpass, a file named by $PGPASSFILE (e.g. a systemd credential) or"
                " peer authentication"
            )
        return super().__new__(cls, text)

    @property
    def redacted(self) -> str:
        return redact(self)
