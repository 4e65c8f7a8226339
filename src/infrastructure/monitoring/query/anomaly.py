"""Flag windows that do not look like the ones before them.

A series (calls per window, error rate, p95 latency …) is cut into whole windows of
``window`` seconds aligned on the epoch; the window still in progress is left out, so
a quiet first minute of the hour never reads as a drop. The latest whole window is a
**spike** (or a **drop**) when it lies more than ``k`` standard deviations from the
mean of the ``baseline`` windows before it. The last ``sustain`` windows are a
**shift** when each lies beyond ``k / 2`` deviations on the same side of the baseline
before them: a level change that no single window shows as a spike.

The deviation has a floor of 5 % of the baseline mean (and a tiny absolute one): a
perfectly flat baseline would otherwise make any wobble infinitely surprising.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from .source import LogSource
from .spec import parse_agg

__all__ = ["DEFAULT_SERIES", "Anomaly", "Series", "detect_anomalies", "grouped_series_values", "judge",
           "series_values"]

_MIN_STD_SHARE: Final = 0.05
_MIN_STD: Final = 1e-9


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    module: str
    agg: str
    operation: str | None = None
    zero_when_empty: bool = False
    """A window without records is 0 for counts; for ratios and latencies it has no value."""


DEFAULT_SERIES: Final = (
    Series("llm calls", "llm", "count", "llm_call", zero_when_empty=True),
    Series("llm error rate", "llm", "error_rate", "llm_call"),
    Series("llm p95 latency", "llm", "p95:response_time", "llm_call"),
    Series("llm tokens", "llm", "sum:total_tokens", "llm_call", zero_when_empty=True),
    Series("tool error rate", "tool", "error_rate", "tool_call"),
    Series("tool p95 latency", "tool", "p95:duration", "tool_call"),
)


@dataclass(frozen=True, slots=True)
class Anomaly:
    series: str
    kind: str
    """``spike``, ``drop``, ``shift_up`` or ``shift_down``."""
    window_start: float
    value: float
    baseline_mean: float
    baseline_std: float
    z: float

    def as_row(self) -> dict[str, Any]:
        return {"series": self.series, "kind": self.kind,
                "window": datetime.fromtimestamp(self.window_start, UTC).strftime("%Y-%m-%dT%H:%MZ"),
                "value": self.value, "baseline": self.baseline_mean, "z": round(self.z, 2)}


def series_values(parser: LogSource, series: Series, *, window: float, count: int, now: float,
                  min_count: int = 0) -> list[tuple[float, float | None]]:
    """The ``count`` whole windows before ``now``, oldest first: (start, value or None)."""
    end = math.floor(now / window) * window
    start = end - count * window
    agg = parse_agg(series.agg)
    result = parser.query(series.module, operation=series.operation, since=start, until=end, bucket=window,
                          aggs=[agg, "count"], check_fields=False)
    by_start: dict[float, tuple[float | None, int]] = {}
    for row in result.rows:
        at = datetime.fromisoformat(row["bucket"]).timestamp()
        value = row.get(agg.name)
        by_start[at] = (None if value is None else float(value), int(row.get("count") or 0))
    values: list[tuple[float, float | None]] = []
    for i in range(count):
        at = start + i * window
        value, n = by_start.get(at, (None, 0))
        if n < min_count and not series.zero_when_empty:
            value = None
        if value is None and series.zero_when_empty:
            value = 0.0
        values.append((at, value))
    return values


def grouped_series_values(parser: LogSource, module: str, agg: str, *, window: float, count: int, now: float,
                          operation: str | None = None, where: Sequence[str] = (), group_by: Sequence[str] = (),
                          min_count: int = 0, zero_when_empty: bool = False, max_groups: int = 1000,
                          ) -> dict[tuple[Any, ...], list[tuple[float, float | None]]]:
    """Like ``series_values``, for any aggregate of any query, one series per group: the ``count``
    whole windows before ``now``, oldest first, keyed by the group's values (``()`` ungrouped)."""
    end = math.floor(now / window) * window
    start = end - count * window
    parsed = parse_agg(agg)
    rows = []
    if parser.families(module):
        rows = parser.query(module, operation=operation, where=list(where), since=start, until=end, bucket=window,
                            group_by=list(group_by), aggs=[parsed, "count"], max_groups=max_groups,
                            check_fields=False).rows
    found: dict[tuple[Any, ...], dict[float, tuple[float | None, int]]] = {}
    for row in rows:
        key = tuple(row.get(k) for k in group_by)
        at = datetime.fromisoformat(row["bucket"]).timestamp()
        value = row.get(parsed.name)
        found.setdefault(key, {})[at] = (None if value is None else float(value), int(row.get("count") or 0))
    if not group_by:
        found.setdefault((), {})
    out = {}
    for key, by_start in found.items():
        values: list[tuple[float, float | None]] = []
        for i in range(count):
            at = start + i * window
            value, n = by_start.get(at, (None, 0))
            if n < min_count and not zero_when_empty:
                value = None
            if value is None and zero_when_empty:
                value = 0.0
            values.append((at, value))
        out[key] = values
    return out


def judge(name: str, values: Sequence[tuple[float, float | None]], *, baseline: int, k: float,
          sustain: int) -> Anomaly | None:
    """The anomaly the latest windows of ``values`` (``baseline + sustain`` windows, oldest first)
    show, if any: a spike or drop of the last window, else a sustained shift of the last ``sustain``."""
    latest_start, latest = values[-1]
    history = [v for _, v in values[-1 - baseline:-1] if v is not None]
    if latest is not None and len(history) >= max(3, baseline // 2):
        mean, std = _judge(history)
        z = (latest - mean) / std
        if abs(z) > k:
            return Anomaly(name, "spike" if z > 0 else "drop", latest_start, latest, mean, std, z)
    recent = values[-sustain:]
    before = [v for _, v in values[-sustain - baseline:-sustain] if v is not None]
    if all(v is not None for _, v in recent) and len(before) >= max(3, baseline // 2):
        mean, std = _judge(before)
        zs = [((v or 0.0) - mean) / std for _, v in recent]
        if all(z > k / 2 for z in zs) or all(z < -k / 2 for z in zs):
            last_start, last = recent[-1]
            return Anomaly(name, "shift_up" if zs[-1] > 0 else "shift_down", last_start, float(last or 0.0), mean,
                           std, zs[-1])
    return None


def _judge(baseline: Sequence[float]) -> tuple[float, float]:
    mean = statistics.fmean(baseline)
    std = statistics.pstdev(baseline)
    return mean, max(std, abs(mean) * _MIN_STD_SHARE, _MIN_STD)


def detect_anomalies(parser: LogSource, *, window: float = 3600.0, baseline: int = 24, k: float = 3.0,
                     sustain: int = 3, min_count: int = 10, now: float | None = None,
                     series: Sequence[Series] = DEFAULT_SERIES) -> list[Anomaly]:
    """Spikes, drops and sustained shifts of each series whose module has logs."""
    at = time.time() if now is None else now
    present = set(parser.modules())
    found: list[Anomaly] = []
    for s in series:
        if s.module not in present:
            continue
        values = series_values(parser, s, window=window, count=baseline + sustain, now=at, min_count=min_count)
        anomaly = judge(s.name, values, baseline=baseline, k=k, sustain=sustain)
        if anomaly is not None:
            found.append(anomaly)
    return found
