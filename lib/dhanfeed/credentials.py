"""PIN and TOTP seed for automatic regeneration: from the environment, 0600 files or systemd.

Order: `$DHAN_PIN` / `$DHAN_TOTP_SECRET`, then the files named in `[totp]` (refused unless
mode 0600 or stricter), then `$CREDENTIALS_DIRECTORY/dhan_pin` and `dhan_totp_secret`
(systemd `LoadCredential=`). Never from the config file itself. Nothing here ever puts a
secret in an exception text or a log line.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
from collections.abc import Mapping
from pathlib import Path

import pyotp

from dhanfeed.errors import CredentialsError, PrivateFileError
from dhanfeed.files import read_private_file
from dhanfeed.token import fingerprint

ENV_PIN = "DHAN_PIN"
ENV_SECRET = "DHAN_TOTP_SECRET"
CRED_PIN = "dhan_pin"
CRED_SECRET = "dhan_totp_secret"
_BASE32 = re.compile(r"^[A-Z2-7]+=*$")


@dataclasses.dataclass(frozen=True)
class Credentials:
    pin: str = dataclasses.field(repr=False)
    totp_secret: str = dataclasses.field(repr=False)
    origin: str  # where they came from, for logs ("environment", "files", "systemd")

    def totp_code(self, now: dt.datetime) -> str:
        return pyotp.TOTP(self.totp_secret).at(now)

    @property
    def fingerprint(self) -> str:
        """Names this PIN + seed pair (to remember that Dhan refused it) without revealing it."""
        return fingerprint(f"{self.pin}\0{self.totp_secret}")

    def __repr__(self) -> str:
        return f"Credentials(origin={self.origin})"


def load_credentials(totp: object, environ: Mapping[str, str] | None = None) -> Credentials | None:
    """PIN + TOTP seed, or None when none are configured; CredentialsError when half are."""
    env = os.environ if environ is None else environ
    pin, secret, origin = env.get(ENV_PIN, ""), env.get(ENV_SECRET, ""), "environment"
    pin_file = getattr(totp, "pin_file", None)
    secret_file = getattr(totp, "secret_file", None)
    if not pin and pin_file:
        pin, origin = _read_secret(Path(pin_file), "[totp] pin_file"), "files"
    if not secret and secret_file:
        secret, origin = _read_secret(Path(secret_file), "[totp] secret_file"), "files"
    cred_dir = env.get("CREDENTIALS_DIRECTORY", "")
    if cred_dir and (not pin or not secret):
        directory = Path(cred_dir)
        if not pin and (directory / CRED_PIN).exists():
            pin, origin = _read_secret(directory / CRED_PIN, "systemd credential"), "systemd"
        if not secret and (directory / CRED_SECRET).exists():
            secret = _read_secret(directory / CRED_SECRET, "systemd credential")
            origin = "systemd"
    if not pin and not secret:
        return None
    if not pin:
        raise CredentialsError(
            f"a TOTP secret is configured but no PIN (set ${ENV_PIN}, [totp] pin_file or "
            f"$CREDENTIALS_DIRECTORY/{CRED_PIN})"
        )
    if not secret:
        raise CredentialsError(
            f"a PIN is configured but no TOTP secret (set ${ENV_SECRET}, [totp] secret_file or "
            f"$CREDENTIALS_DIRECTORY/{CRED_SECRET})"
        )
    secret = secret.replace(" ", "").upper()
    if not _BASE32.match(secret):
        raise CredentialsError(f"the TOTP secret (from {origin}) is not base32 text")
    return Credentials(pin, secret, origin)


def _read_secret(path: Path, what: str) -> str:
    try:
        data = read_private_file(path, what=what)
    except PrivateFileError as exc:
        raise CredentialsError(str(exc), path=path) from None
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CredentialsError(f"{what} {path} is not UTF-8 text") from None
