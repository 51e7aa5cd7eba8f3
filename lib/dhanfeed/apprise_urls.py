"""Apprise, loaded only where alert URLs are configured, and checked with its own parser.

A leaf: `config` uses it to report an unparseable `[alerts] urls` entry at load time (with its
key), `alerts` to send. Apprise is imported lazily: it is heavy (it loads every plugin) and
a config without alert URLs never needs it.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from types import ModuleType


@contextlib.contextmanager
def quiet_deprecations() -> Iterator[None]:
    """Apprise's plugins import modules that Python 3.11 deprecates (imghdr); not our concern."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def load_apprise() -> ModuleType:
    with quiet_deprecations():
        import apprise  # lazy: heavy (loads its plugins), needed only with alert URLs

    return apprise


def unparseable(urls: list[str]) -> list[int]:
    """The indexes of the URLs that Apprise cannot parse (its own `Apprise.add` says no)."""
    apprise = load_apprise()
    with quiet_deprecations():
        return [
            i
            for i, url in enumerate(urls)
            if isinstance(url, str) and not apprise.Apprise().add(url)
        ]


def scheme(url: str) -> str:
    """What of a URL may be shown: its scheme (the rest holds keys and tokens)."""
    return url.split(":", 1)[0] + "://..."
