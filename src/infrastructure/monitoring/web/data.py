"""What the dashboard shows, computed from the logs as one JSON-ready mapping.

The same mapping is embedded in the static page, served live by ``/api/metrics``, and
drawn by the page's script, so the file, the server and the API can never disagree.
Times are epoch milliseconds (what browsers count in); values are plain numbers.
"""

from __future__ import annotations

import math
import os
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from ..alerts.engine import current_alerts
from ..query.engine import LogParser

__all__ = ["bucket_for", "dashboard_data"]

_WIDTHS: Final = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 86400)
_MAX_POINTS: Final = 240
_TOP_SERIES: Final = 8


def bucket_for(hours: float) -> int:
    """The narrowest bucket that keeps a chart under 240 points."""
    span = hours * 3600
    return next((w for w in _WIDTHS if span / w <= _MAX_POINTS), _WIDTHS[-1])


def _series(rows: list[dict[str, Any]], key: str | None, value: str, *, scale: float = 1.0,
            name: str | None = None) -> list[dict[str, Any]]:
    """Rows of a bucketed query -> chart series (one per ``key`` value, the busiest first)."""
    points: dict[str, list[list[float]]] = defaultdict(list)
    totals: dict[str, float] = defaultdict(float)
    for row in rows:
        v = row.get(value)
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            continue
        label = name or str(row.get(key) if key else value)
        at = _epoch_ms(row["bucket"])
        points[label].append([at, v * scale])
        totals[label] += abs(v)
    ranked = sorted(points, key=lambda s: -totals[s])[:_TOP_SERIES]
    return [{"name": s, "points": sorted(points[s])} for s in ranked]


def _epoch_ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def _query(parser: LogParser, present: set[str], module: str, **kwargs: Any) -> list[dict[str, Any]]:
    if module not in present:
        return []
    return parser.query(module, **kwargs).rows


def dashboard_data(log_dir: str | os.PathLike[str], *, hours: float = 6.0, now: float | None = None,
                   settings: Any = None) -> dict[str, Any]:
    """Charts, tables and totals of the last ``hours``. ``settings`` (``MonitoringSettings``)
    adds SLOs and anomaly flags when it has them."""
    started = time.perf_counter()
    until = time.time() if now is None else now
    since = until - hours * 3600
    width = bucket_for(hours)
    parser = LogParser(Path(log_dir))
    present = set(parser.modules())
    window = {"since": since, "until": until, "bucket": width}
    per_min = 60.0 / width

    by_model = _query(parser, present, "llm", operation="llm_call", since=since, until=until, bucket=width,
                      group_by="model", aggs=["count", "sum:total_tokens", "sum:cost"])
    overall = _query(parser, present, "llm", operation="llm_call", since=since, until=until, bucket=width,
                     aggs=["count", "error_rate", "p50:response_time", "p95:response_time"])
    tools = _query(parser, present, "tool", operation="tool_call", since=since, until=until, bucket=width,
                   group_by="tool_name", aggs=["count", "p95:duration"])
    tool_errors = _query(parser, present, "tool", operation="tool_call", since=since, until=until, bucket=width,
                         aggs=["error_rate"])
    system = _query(parser, present, "system", since=since, until=until, bucket=width,
                    aggs=["max:cpu_percent", "max:memory_percent"])

    charts = [
        {"id": "calls", "title": "LLM calls per minute", "unit": "calls/min",
         "series": _series(by_model, "model", "count", scale=per_min)},
        {"id": "errors", "title": "Error rate", "unit": "%",
         "series": [*_series(overall, None, "error_rate", scale=100, name="llm"),
                    *_series(tool_errors, None, "error_rate", scale=100, name="tools")]},
        {"id": "latency", "title": "LLM latency", "unit": "s",
         "series": [*_series(overall, None, "p50_response_time", name="p50"),
                    *_series(overall, None, "p95_response_time", name="p95")]},
        {"id": "tokens", "title": "Tokens by model", "unit": "tokens",
         "series": _series(by_model, "model", "sum_total_tokens")},
        {"id": "cost", "title": "Cost by model", "unit": "cost",
         "series": _series(by_model, "model", "sum_cost")},
        {"id": "tools", "title": "Tool latency (p95)", "unit": "s",
         "series": _series(tools, "tool_name", "p95_duration")},
        {"id": "system", "title": "CPU and memory", "unit": "%",
         "series": [*_series(system, None, "max_cpu_percent", name="cpu"),
                    *_series(system, None, "max_memory_percent", name="memory")]},
    ]

    totals = {"llm_calls": sum(r["count"] for r in by_model),
              "tokens": sum(r.get("sum_total_tokens") or 0 for r in by_model),
              "cost": sum(r.get("sum_cost") or 0 for r in by_model),
              "tool_calls": sum(r["count"] for r in tools)}
    errors: list[dict[str, Any]] = []
    for module, field in (("llm", "model"), ("tool", "tool_name")):
        errors += _query(parser, present, module, where=["success=false"], since=since, until=until,
                         group_by=["operation", field, "error_type"], aggs=["count", "latest:error_message",
                                                                             "latest:timestamp"])
    errors.sort(key=lambda r: -r["count"])
    top_errors = [{"module": "llm" if "model" in r else "tool", "operation": r.get("operation"),
                   "what": r.get("model") or r.get("tool_name"), "error_type": r.get("error_type"),
                   "count": r["count"], "last_message": r.get("latest_error_message"),
                   "last_seen": r.get("latest_timestamp")} for r in errors[:15]]
    firing = [{"rule": a.get("rule"), "severity": a.get("severity"), "state": a.get("state"),
               "labels": " ".join(f"{k}={v}" for k, v in (a.get("labels") or {}).items()),
               "value": a.get("value"), "since": a.get("since")} for a in current_alerts(log_dir)]

    data: dict[str, Any] = {"window": window, "generated_at": until, "totals": totals, "charts": charts,
                            "tables": {"errors": top_errors, "alerts": firing}}
    if settings is not None:
        if settings.slos:
            from ..alerts.slo import evaluate_slos

            data["tables"]["slos"] = [s.as_row() for s in evaluate_slos(parser, settings.slos, now=until)]
        a = settings.anomalies
        from ..query.anomaly import detect_anomalies

        data["tables"]["anomalies"] = [x.as_row() for x in detect_anomalies(
            parser, window=a.window, baseline=a.baseline, k=a.k, sustain=a.sustain, min_count=a.min_count,
            now=until)]
    data["seconds"] = round(time.perf_counter() - started, 3)
    return data
