"""One `bin/backfill` run: for each instrument, fetch Dhan's day once and write its changes.

Stateless and idempotent: everything it knows is in the database, the config and the clock.
One transaction per instrument and day (`Store.apply_backfill`), so a failure half-way leaves
every instrument either done or untouched. Dhan's Data API limit is respected by spacing the
requests (`[backfill] requests_per_second`); a rate-limit answer (429 / DH-904) backs off and
tries again; any other failure of one instrument is recorded and the run goes on (exit 1 at
the end, the next run retries). A refused token stops the run (exit 3): the next instrument
would be refused too.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from dhanfeed.backfill import DhanBar, Figures, Span, needs_dhan, plan_day
from dhanfeed.candles import IST_OFFSET_S
from dhanfeed.config import Config, Instrument
from dhanfeed.errors import DhanApiError, ExitCode, TokenRefused
from dhanfeed.severity import Alert, Severity
from dhanfeed.store import BackfillChange, HealableStore, Reconciliation

logger = logging.getLogger(__name__)

RATE_LIMIT_TRIES = 6  # a rate-limited request is tried this often in all
RATE_LIMIT_BACKOFF_S = 1.0  # doubled after every 429: 1, 2, 4, 8, 16 s
_TOKEN_CODES = ("DH-901", "DH-906", "DH-907", "807", "808", "809")


class ChartApi(Protocol):
    def intraday_minute_bars(
        self, access_token: str, *, segment: str, security_id: int, instrument: str, day: dt.date
    ) -> list[tuple[int, float, float, float, float, int]]: ...


@dataclasses.dataclass
class InstrumentResult:
    key: str
    healed_gaps: int = 0
    bars_replaced: int = 0
    bars_inserted: int = 0
    bars_rebased: int = 0
    bars_rebuilt: int = 0
    figures: Figures | None = None
    skipped: str | None = None  # why nothing was asked of Dhan for it
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "healed_gaps": self.healed_gaps,
            "bars_replaced": self.bars_replaced,
            "bars_inserted": self.bars_inserted,
            "bars_rebased": self.bars_rebased,
            "bars_rebuilt": self.bars_rebuilt,
        }
        if self.skipped:
            out["skipped"] = self.skipped
        if self.error:
            out["error"] = self.error
        return out


@dataclasses.dataclass
class RunResult:
    day: dt.date
    dry_run: bool
    results: list[InstrumentResult] = dataclasses.field(default_factory=list)
    requests: int = 0
    rate_limited: int = 0

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.FAILED if any(r.error for r in self.results) else ExitCode.OK

    def total(self, name: str) -> int:
        return sum(getattr(r, name) for r in self.results)

    def as_json(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "dry_run": self.dry_run,
            "healed_gaps": self.total("healed_gaps"),
            "bars_replaced": self.total("bars_replaced"),
            "bars_inserted": self.total("bars_inserted"),
            "bars_rebased": self.total("bars_rebased"),
            "bars_rebuilt": self.total("bars_rebuilt"),
            "requests": self.requests,
            "rate_limited": self.rate_limited,
            "reconciled": {
                r.key: {
                    "minutes_compared": r.figures.minutes_compared,
                    "minutes_differing": r.figures.minutes_differing,
                    "volume_differing": r.figures.volume_differing,
                    "worst_minute_utc": r.figures.worst_start_utc,
                    "worst_diff": r.figures.worst_diff,
                }
                for r in self.results
                if r.figures is not None
            },
            "instruments": {r.key: r.as_json() for r in self.results},
            "exit_code": int(self.exit_code),
        }


class Pacer:
    """Spaces calls at least `1/per_second` apart (Dhan's Data API: 5 requests/s)."""

    def __init__(
        self,
        per_second: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.gap_s = 1.0 / per_second
        self.clock, self.sleep = clock, sleep
        self._next = 0.0

    def wait(self) -> None:
        now = self.clock()
        if now < self._next:
            self.sleep(self._next - now)
            now = self._next
        self._next = now + self.gap_s


def ist_day_bounds(day: dt.date) -> tuple[int, int]:
    """[00:00 IST, next 00:00 IST) of `day` as epoch seconds UTC."""
    start = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) - IST_OFFSET_S
    return start, start + 86400


def run_backfill(
    config: Config,
    store: HealableStore,
    api: ChartApi,
    access_token: str,
    *,
    day: dt.date,
    now_utc: float,
    reconcile: bool = False,
    prefer_dhan: bool = False,
    dry_run: bool = False,
    pacer: Pacer | None = None,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[list[Instrument]], Iterable[Instrument]] = lambda items: items,
    alert: Alert = lambda condition, severity, message: None,
) -> RunResult:
    """Heal (and with `reconcile`, compare) every configured instrument's `day`."""
    pacer = pacer or Pacer(config.backfill.requests_per_second, sleep=sleep)
    result = RunResult(day, dry_run)
    start, end = ist_day_bounds(day)
    intervals = [int(i.total_seconds()) for i in config.collector.intervals]
    instruments = config.collector.instruments
    gaps = store.gaps(unhealed=True, start_utc=start, end_utc=end)
    for inst in progress(instruments):
        item = InstrumentResult(inst.key)
        result.results.append(item)
        mine = [g for g in gaps if (g.segment, g.security_id) == (inst.segment, inst.security_id)]
        stored = store.candles(inst.segment, inst.security_id, start_utc=start, end_utc=end)
        spans = [Span(g.start_utc, g.end_utc) for g in mine]
        if not reconcile and not needs_dhan(stored, spans, now_utc):
            continue
        kind = config.backfill.instrument_type(inst.segment, inst.security_id)
        if kind is None:
            item.skipped = "no instrument type"
            logger.warning(
                "%s: skipped: Dhan's chart API needs its instrument type; add"
                ' "%s=FUTIDX" (or OPTIDX, FUTSTK, ...) to [backfill] instrument_types',
                inst.key,
                inst.key,
            )
            continue
        try:
            theirs = _fetch(api, access_token, inst, kind, day, pacer, sleep, result)
        except DhanApiError as exc:
            if exc.status == 401 or exc.code in _TOKEN_CODES:
                raise TokenRefused(f"Dhan refused the token: {exc}") from None
            item.error = str(exc)
            logger.error("%s: %s (the next run retries)", inst.key, exc)
            continue
        plan = plan_day(
            inst.segment, inst.security_id, stored, spans, theirs, now_utc,
            intervals_s=intervals, reconcile=reconcile, prefer_dhan=prefer_dhan,
        )  # fmt: skip
        item.healed_gaps = len(plan.healed)
        item.bars_replaced, item.bars_inserted = plan.replaced, plan.inserted
        item.bars_rebased, item.bars_rebuilt = plan.rebased, plan.rebuilt
        item.figures = plan.figures
        rec = None
        if plan.figures is not None:
            f = plan.figures
            rec = Reconciliation(
                inst.segment, inst.security_id, day.isoformat(), f.minutes_compared,
                f.minutes_differing, f.volume_differing, f.worst_start_utc, f.worst_diff, now_utc,
            )  # fmt: skip
        if not dry_run and (plan.bars or plan.healed or rec):
            store.apply_backfill(
                BackfillChange(plan.bars, [mine[i] for i in plan.healed], now_utc, rec)
            )
        _log(item, dry_run)
        share = plan.figures.share_differing * 100 if plan.figures else 0.0
        if plan.figures and share > config.backfill.alert_above:
            alert(
                f"reconcile-{inst.key}",
                Severity.WARNING,
                f"{inst.key} {day}: {plan.figures.minutes_differing} of"
                f" {plan.figures.minutes_compared} minutes differ from Dhan's bars"
                f" ({share:.1f}% > {config.backfill.alert_above:g}%)",
            )
    return result


def _fetch(
    api: ChartApi,
    token: str,
    inst: Instrument,
    kind: str,
    day: dt.date,
    pacer: Pacer,
    sleep: Callable[[float], None],
    result: RunResult,
) -> Sequence[DhanBar]:
    """Dhan's 1-minute bars of the day (one request), backing off on rate-limit answers."""
    for attempt in range(RATE_LIMIT_TRIES):
        pacer.wait()
        result.requests += 1
        try:
            rows = api.intraday_minute_bars(
                token, segment=inst.segment, security_id=inst.security_id, instrument=kind, day=day
            )
        except DhanApiError as exc:
            if not (exc.status == 429 or exc.code == "DH-904") or attempt + 1 == RATE_LIMIT_TRIES:
                raise
            result.rate_limited += 1
            pause = RATE_LIMIT_BACKOFF_S * 2**attempt
            logger.warning("%s: Dhan's rate limit (%s); waiting %gs", inst.key, exc, pause)
            sleep(pause)
            continue
        return [DhanBar(*row) for row in rows]
    raise AssertionError("unreachable")


def _log(item: InstrumentResult, dry_run: bool) -> None:
    what = "would write" if dry_run else "wrote"
    logger.info(
        "%s: %s: %d bars replaced, %d inserted, %d re-based, %d longer rebuilt; %d gaps healed",
        item.key,
        what,
        item.bars_replaced,
        item.bars_inserted,
        item.bars_rebased,
        item.bars_rebuilt,
        item.healed_gaps,
    )
    if item.figures is not None:
        f = item.figures
        logger.info(
            "%s: reconciled %d minutes: %d differ in price, %d in volume",
            item.key,
            f.minutes_compared,
            f.minutes_differing,
            f.volume_differing,
        )
