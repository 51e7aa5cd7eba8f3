import base64
import datetime as dt
import json

import pytest

from dhanfeed.errors import TokenFormatError
from dhanfeed.token import fingerprint, format_remaining, parse_token


def b64(obj) -> str:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwt(payload) -> str:
    return f"{b64({'typ': 'JWT', 'alg': 'HS512'})}.{b64(payload)}.{b64(b'sig')}"


PAYLOAD = {
    "iss": "dhan",
    "partnerId": "",
    "exp": 1767225600,  # 2026-01-01T00:00:00Z
    "iat": 1767139200,
    "tokenConsumerType": "SELF",
    "webhookUrl": "",
    "dhanClientId": "1000000001",
}


def test_a_dhan_jwt_gives_client_id_expiry_and_type():
    tok = parse_token(jwt(PAYLOAD))
    assert tok.client_id == "1000000001"
    assert tok.expires_at == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert tok.issued_at == dt.datetime(2025, 12, 31, tzinfo=dt.UTC)
    assert tok.renewable
    assert not parse_token(jwt({**PAYLOAD, "tokenConsumerType": "APP"})).renewable


def test_the_repr_shows_the_fingerprint_never_the_token():
    raw = jwt(PAYLOAD)
    tok = parse_token(raw)
    assert raw not in repr(tok) and raw not in str(tok)
    assert fingerprint(raw) in repr(tok)
    assert len(fingerprint(raw)) == 12


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "abc",
        "a.b",
        "a.!!!.c",
        f"a.{b64([1, 2])}.c",
        jwt({"dhanClientId": "1"}),
        jwt({"exp": 5}),
    ],
)
def test_unreadable_tokens_raise_without_echoing_the_input(raw):
    with pytest.raises(TokenFormatError) as info:
        parse_token(raw)
    assert not raw or raw not in str(info.value)


def test_remaining_time_reads_like_a_person_would_say_it():
    assert format_remaining(dt.timedelta(hours=17, minutes=12, seconds=5)) == "in 17h 12m"
    assert format_remaining(dt.timedelta(minutes=3, seconds=4)) == "in 3m 04s"
    assert format_remaining(dt.timedelta(minutes=-3)) == "3m 00s ago"


@pytest.mark.parametrize("exp", [10**12, 10**20, -(10**15), "soon", None, True])
def test_an_exp_that_is_no_time_is_unreadable_without_a_hint(exp):
    with pytest.raises(TokenFormatError, match="no 'exp' that is a time"):
        parse_token(jwt({**PAYLOAD, "exp": exp}))


def test_an_exp_that_is_no_time_takes_the_expiry_hint_and_the_issue_time_from_iat():
    hint = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    tok = parse_token(jwt({**PAYLOAD, "exp": 10**12}), expires_hint=hint)
    assert tok.expires_at == hint
    assert tok.issued_at == dt.datetime.fromtimestamp(PAYLOAD["iat"], dt.UTC)


def test_a_readable_exp_wins_over_the_hint():
    hint = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    assert parse_token(jwt(PAYLOAD), expires_hint=hint).expires_at.year == 2026
