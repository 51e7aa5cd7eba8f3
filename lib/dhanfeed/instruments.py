"""Instruments and exchange segments: `NSE_EQ:1333` in config, code 1 in feed packets (a leaf).

Both the config (which instruments to collect) and the feed protocol (segment codes in
packets and names in subscribe requests) use these, so they live below both.
"""

from __future__ import annotations

import dataclasses

# Segment codes in packets and names in requests.
SEGMENT_NAMES = {
    0: "IDX_I",
    1: "NSE_EQ",
    2: "NSE_FNO",
    3: "NSE_CURRENCY",
    4: "BSE_EQ",
    5: "MCX_COMM",
    7: "BSE_CURRENCY",
    8: "BSE_FNO",
}
SEGMENT_CODES = {name: code for code, name in SEGMENT_NAMES.items()}
MAX_SECURITY_ID = 2**32 - 1  # a u32 in the feed's packet header


@dataclasses.dataclass(frozen=True)
class Instrument:
    segment: str  # "NSE_EQ"
    security_id: int
    name: str = ""

    @property
    def key(self) -> str:
        return f"{self.segment}:{self.security_id}"


def parse_instrument(text: str) -> Instrument:
    """ "NSE_EQ:1333" or "NSE_EQ:1333:RELIANCE" (an optional name after a second colon)."""
    if not isinstance(text, str):
        raise ValueError(f"expected 'SEGMENT:SECURITY_ID', got {text!r}")
    parts = text.strip().split(":", 2)
    if len(parts) < 2 or not (parts[1].strip().isascii() and parts[1].strip().isdigit()):
        raise ValueError(f"expected 'SEGMENT:SECURITY_ID' like 'NSE_EQ:1333', got {text!r}")
    segment = parts[0].strip().upper()
    if segment not in SEGMENT_CODES:
        raise ValueError(
            f"unknown segment {parts[0]!r} in {text!r} (known: {', '.join(SEGMENT_CODES)})"
        )
    security_id = int(parts[1])
    if security_id > MAX_SECURITY_ID:
        raise ValueError(
            f"security id {security_id} in {text!r} is above {MAX_SECURITY_ID} (Dhan's ids are u32)"
        )
    return Instrument(segment, security_id, parts[2].strip() if len(parts) > 2 else "")
