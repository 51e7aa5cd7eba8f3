"""credentials.py: PIN and TOTP seed from the environment, 0600 files or systemd credentials;
never half a pair, never a readable-by-others file, never a secret in an error text."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyotp
import pytest

from dhanfeed.config import TotpSection
from dhanfeed.credentials import load_credentials
from dhanfeed.errors import CredentialsError, UsageError
from support.secret_scan import PLANTED_PIN, PLANTED_TOTP_SECRET

NONE = TotpSection()


def secret_file(directory: Path, name: str, text: str, mode: int = 0o600) -> Path:
    path = directory / name
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


def test_nothing_configured_means_no_automatic_regeneration():
    assert load_credentials(NONE, environ={}) is None


def test_the_environment_gives_both_and_the_seed_is_normalised():
    spaced = " ".join(PLANTED_TOTP_SECRET[i : i + 4] for i in range(0, 32, 4)).lower()
    creds = load_credentials(NONE, {"DHAN_PIN": PLANTED_PIN, "DHAN_TOTP_SECRET": spaced})
    assert creds is not None and creds.origin == "environment"
    assert (creds.pin, creds.totp_secret) == (PLANTED_PIN, PLANTED_TOTP_SECRET)


def test_files_named_in_the_config_are_read_when_private(tmp_path):
    totp = TotpSection(
        pin_file=secret_file(tmp_path, "pin", PLANTED_PIN),
        secret_file=secret_file(tmp_path, "seed", PLANTED_TOTP_SECRET),
    )
    creds = load_credentials(totp, environ={})
    assert creds is not None and creds.origin == "files" and creds.pin == PLANTED_PIN


def test_systemd_credentials_are_the_last_place_looked(tmp_path):
    secret_file(tmp_path, "dhan_pin", PLANTED_PIN)
    secret_file(tmp_path, "dhan_totp_secret", PLANTED_TOTP_SECRET)
    creds = load_credentials(NONE, {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert creds is not None and creds.origin == "systemd"


def test_a_secret_file_others_can_read_is_refused_naming_it_not_its_content(tmp_path):
    totp = TotpSection(pin_file=secret_file(tmp_path, "pin", PLANTED_PIN, mode=0o644))
    with pytest.raises(CredentialsError, match=r"pin_file .* chmod 600") as caught:
        load_credentials(totp, {"DHAN_TOTP_SECRET": PLANTED_TOTP_SECRET})
    assert caught.value.path == totp.pin_file
    assert PLANTED_PIN not in str(caught.value)


@pytest.mark.parametrize(
    ("environ", "missing"),
    [({"DHAN_PIN": PLANTED_PIN}, "no TOTP secret"), ({"DHAN_TOTP_SECRET": "ABC"}, "no PIN")],
)
def test_half_a_pair_is_a_usage_error(environ, missing):
    with pytest.raises(UsageError, match=missing):
        load_credentials(NONE, environ)


def test_a_seed_that_is_not_base32_is_refused_without_echoing_it():
    with pytest.raises(CredentialsError, match="not base32") as caught:
        load_credentials(NONE, {"DHAN_PIN": PLANTED_PIN, "DHAN_TOTP_SECRET": "not-base32!"})
    assert "not-base32!" not in str(caught.value)


def test_the_code_is_rfc_6238_at_the_given_instant_and_nothing_shows_in_repr():
    creds = load_credentials(
        NONE, {"DHAN_PIN": PLANTED_PIN, "DHAN_TOTP_SECRET": PLANTED_TOTP_SECRET}
    )
    assert creds is not None
    when = dt.datetime(2026, 1, 6, 3, 30, tzinfo=dt.UTC)
    assert creds.totp_code(when) == pyotp.TOTP(PLANTED_TOTP_SECRET).at(when)
    assert creds.totp_code(when) != creds.totp_code(when + dt.timedelta(seconds=30))
    assert PLANTED_PIN not in repr(creds) and PLANTED_TOTP_SECRET not in repr(creds)
