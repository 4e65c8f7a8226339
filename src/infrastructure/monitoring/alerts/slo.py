"""Service level objectives measured from the logs, with the error budget left.

Every objective is a share of good events over its period:

* ``availability``: calls with ``success`` not false; target 0.995 allows 0.5 % failures;
* ``latency``: calls whose ``field`` (``response_time``) is at most ``threshold``
  seconds; "p95 under 2 s" is target 0.95 with threshold 2 — only records that carry
  the field count;
* ``error_rate``: failures / calls must stay at most ``target`` (0.01).

The budget is what the target allows to go wrong over the period: budget left =
1 - bad / (allowed share * calls), so 1.0 is untouched, 0 is spent and negative is
overspent. The burn rate is the bad share of the last hour divided by the allowed
share: 1 spends the budget exactly over the period, 14.4 spends 30 days' in 2 days.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Final

from ..ops_config import SloTarget
from ..query.source import LogSource

__all__ = ["SloStatus", "burn_rate", "evaluate_slos"]

_BURN_WINDOW: Final = 3600.0


@dataclass(frozen=True, slots=True)
class SloStatus:
    name: str
    objective: str
    target: float
    period: float
    events: int
    bad: int
    measured: float | None
    """Good share (availability, latency) or error rate (error_rate); None without events."""
    budget_left: float | None
    burn_rate: float | None
    status: str
    """``met``, ``breached`` or ``no data``."""
    percentile: float | None = None
    """Latency objectives: the measured percentile of the field at the target share."""

    def as_row(self) -> dict[str, Any]:
        return {"slo": self.name, "objective": self.objective, "target": self.target,
                "period_days": round(self.period / 86400, 3), "events": self.events, "bad": self.bad,
                "measured": self.measured, "budget_left": self.budget_left, "burn_rate_1h": self.burn_rate,
                "status": self.status, "percentile": self.percentile}


def _counts(parser: LogSource, slo: SloTarget, since: float, until: float, *,
            percentile: bool = True) -> tuple[int, int, float | None]:
    where = list(slo.where)
    if slo.objective == "latency":
        where.append(f"{slo.field}>=0")  # only records that carry the latency
        pct = f"p{slo.target * 100:g}:{slo.field}"
        aggs = ["count", f"count_if:{slo.field}>{slo.threshold:g}", *([pct] if percentile else [])]
    else:
        aggs = ["count", "errors"]
    if not parser.families(slo.module):
        return 0, 0, None  # nothing recorded yet for this module
    result = parser.query(slo.module, operation=slo.operation, where=where, since=since, until=until, aggs=aggs,
                          check_fields=False)
    row = result.rows[0] if result.rows else {}
    names = result.aggregates
    events, bad = int(row.get("count") or 0), int(row.get(names[1]) or 0)
    return events, bad, (row.get(names[2]) if len(names) > 2 else None)


def burn_rate(parser: LogSource, slo: SloTarget, since: float, until: float) -> tuple[float | None, int, int]:
    """How fast ``[since, until)`` spends the error budget: its bad share over the share the target
    allows (1: exactly over the period; 14.4: 30 days' budget in 50 hours), with the events and
    bad events it counted. ``None`` without events, or when the target allows no bad event."""
    events, bad, _ = _counts(parser, slo, since, until, percentile=False)
    allowed = slo.target if slo.objective == "error_rate" else 1 - slo.target
    if not events or allowed <= 0:
        return None, events, bad
    return (bad / events) / allowed, events, bad


def evaluate_slos(parser: LogSource, slos: tuple[SloTarget, ...] | list[SloTarget], *,
                  now: float | None = None) -> list[SloStatus]:
    at = time.time() if now is None else now
    out = []
    for slo in slos:
        events, bad, percentile = _counts(parser, slo, at - slo.period, at)
        allowed = slo.target if slo.objective == "error_rate" else 1 - slo.target
        if events == 0:
            out.append(SloStatus(slo.name, slo.objective, slo.target, slo.period, 0, 0, None, None, None,
                                 "no data", percentile))
            continue
        bad_share = bad / events
        measured = bad_share if slo.objective == "error_rate" else 1 - bad_share
        met = bad_share <= allowed
        budget = (1 - bad_share / allowed) if allowed > 0 else (1.0 if bad == 0 else float("-inf"))
        burn, _, _ = burn_rate(parser, slo, at - min(_BURN_WINDOW, slo.period), at)
        out.append(SloStatus(slo.name, slo.objective, slo.target, slo.period, events, bad, measured, budget, burn,
                             "met" if met else "breached", percentile))
    return out
