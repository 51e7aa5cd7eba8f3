"""Argument parsing shared by the executables."""

from __future__ import annotations

import argparse
from typing import NoReturn

from dhanfeed.errors import UsageError


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line and exit 2, like every other bad input."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see --help)")
