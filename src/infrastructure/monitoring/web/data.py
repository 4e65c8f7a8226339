"""What the dashboard shows, computed from the logs as one JSON-ready mapping.

The same mapping is embedded in the static page, served live by ``/api/metrics`` and
``/api/events``, and drawn by the page's script, so the file, the server and the API can
never disagree. Times are epoch milliseconds in chart points (what browsers count in)
and epoch seconds elsewhere; values are plain numbers.

The bucket width follows the data, not only the window: three minutes of records in a
six-hour window get 5-second buckets (and the charts zoom onto those minutes), so a
short history draws lines instead of one dot per series.
"""

from __future__ import annotations

import heapq
import math
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from ..alerts.engine import current_alerts
from ..query.engine import LogParser
from ..query.source import LogSource
from ..query.spec import Condition

__all__ = ["bucket_for", "dashboard_data"]

_WIDTHS: Final = (1, 2, 5, 10, 15, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 86400)
_WINDOW_MIN: Final = 60
"""A window alone never asks for buckets under a minute; only a short span of data does."""
_MAX_POINTS: Final = 240
_MIN_POINTS: Final = 30
"""A span of data gets at least this many buckets when narrower ones exist."""
_ZOOM: Final = 0.5
"""Charts zoom onto the data when it covers less than this share of the window."""
_TOP_SERIES: Final = 8
_SLOWEST: Final = 10

# drill-down -> (module, the operation of its calls, the field it filters on, their duration field)
_DRILL: Final = {"model": ("llm", "llm_call", "model", "response_time"),
                 "tool": ("tool", "tool_call", "tool_name", "duration")}


def bucket_for(hours: float, span: float | None = None) -> int:
    """Bucket width in seconds: the narrowest (from one minute up) that keeps the window
    under 240 points; then, when the data present spans only ``span`` seconds, narrower
    still until that span gets 30 points (down to one second)."""
    window = hours * 3600
    width = next((w for w in _WIDTHS if w >= _WINDOW_MIN and window / w <= _MAX_POINTS), _WIDTHS[-1])
    if span is None or span <= 0:
        return width
    for w in reversed(_WIDTHS):
        if w <= width and span / w >= _MIN_POINTS:
            return w
    return _WIDTHS[0]


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


class _Reader:
    """The parser, the modules present and the window, shared by every query of one picture."""

    def __init__(self, parser: LogSource, since: float, until: float) -> None:
        self.parser = parser
        self.present = set(self.parser.modules())
        self.since, self.until = since, until

    def query(self, module: str, where: list[Condition], **kwargs: Any) -> list[dict[str, Any]]:
        if module not in self.present:
            return []
        return self.parser.query(module, where=where, since=self.since, until=self.until, check_fields=False,
                                 **kwargs).rows

    def span(self, modules: list[tuple[str, list[Condition]]]) -> tuple[float, float] | None:
        """First and last timestamp of the matching records in the window."""
        lo, hi = math.inf, -math.inf
        for module, where in modules:
            for row in self.query(module, where, aggs=["min:timestamp", "max:timestamp"]):
                if row.get("min_timestamp") is not None:
                    lo, hi = min(lo, row["min_timestamp"]), max(hi, row["max_timestamp"])
        return (lo, hi) if lo <= hi else None

    def slowest(self, module: str, where: list[Condition], field: str, n: int) -> list[dict[str, Any]]:
        """The ``n`` slowest records, streamed through a heap of ``n`` (never the whole window in memory)."""
        if module not in self.present:
            return []
        timed = ((r[field], r) for r in self.parser.records(module, where=where, since=self.since, until=self.until)
                 if isinstance(r.get(field), (int, float)) and not isinstance(r.get(field), bool)
                 and math.isfinite(r[field]))
        return [r for _, r in heapq.nlargest(n, timed, key=lambda pair: pair[0])]


@dataclass(frozen=True, slots=True)
class _Scope:
    """Which records one picture reads: everything, or one model's or one tool's."""

    drill: str | None
    value: str | None

    @property
    def llm(self) -> bool:
        return self.drill != "tool"

    @property
    def tool(self) -> bool:
        return self.drill != "model"

    @property
    def system(self) -> bool:
        return self.drill is None

    def where(self, module: str) -> list[Condition]:
        """The operation, plus the drill-down's filter when it is about this module."""
        operation = next(op for drilled, op, _, _ in _DRILL.values() if drilled == module)
        conditions = [Condition("operation", "=", operation)]
        if self.drill is not None and _DRILL[self.drill][0] == module:
            conditions.append(Condition(_DRILL[self.drill][2], "=", self.value))
        return conditions


def dashboard_data(log_dir: str | os.PathLike[str], *, hours: float = 6.0, now: float | None = None,
                   since: float | None = None, settings: Any = None, model: str | None = None,
                   tool: str | None = None, slowest: int = _SLOWEST, parser: LogSource | None = None
                   ) -> dict[str, Any]:
    """Charts, tables and totals of the window ``[since or now - hours, now]``.

    ``model`` or ``tool`` narrows the picture to one model or one tool (a drill-down)
    and adds its slowest calls. ``settings`` (``MonitoringSettings``) adds SLOs and
    anomaly flags when it has them (not in a drill-down). ``parser`` reads the records
    from elsewhere than ``log_dir`` (a ClickHouse table of the whole fleet); the alerts
    shown are still those evaluated beside ``log_dir``."""
    if model is not None and tool is not None:
        raise ValueError("give model or tool, not both")
    started = time.perf_counter()
    until = time.time() if now is None else now
    since = until - hours * 3600 if since is None else since
    if not since < until:
        raise ValueError(f"the window is empty: since {since} is not before until {until}")
    reader = _Reader(parser if parser is not None else LogParser(Path(log_dir)), since, until)
    scope = _Scope("model", model) if model is not None else _Scope("tool", tool) if tool is not None \
        else _Scope(None, None)
    window = _window(reader, scope, since, until)
    width = window["bucket"]

    def llm(**kwargs: Any) -> list[dict[str, Any]]:
        return reader.query("llm", scope.where("llm"), bucket=width, **kwargs) if scope.llm else []

    def tools(**kwargs: Any) -> list[dict[str, Any]]:
        return reader.query("tool", scope.where("tool"), bucket=width, **kwargs) if scope.tool else []

    rows = {
        "by_model": llm(group_by="model", aggs=["count", "sum:total_tokens", "sum:cost"]),
        "overall": llm(aggs=["count", "error_rate", "p50:response_time", "p95:response_time"]),
        "by_tool": tools(group_by="tool_name", aggs=["count", "p50:duration", "p95:duration"]),
        "tool_errors": tools(aggs=["error_rate"]),
        "system": reader.query("system", [], bucket=width, aggs=["max:cpu_percent", "max:memory_percent"])
        if scope.system else [],
    }
    by_model, by_tool = rows["by_model"], rows["by_tool"]
    totals: dict[str, float] = {}
    if scope.llm:  # a tool's drill-down has no LLM totals to speak of, and a model's none of tools
        totals.update(llm_calls=sum(r["count"] for r in by_model),
                      tokens=sum(r.get("sum_total_tokens") or 0 for r in by_model),
                      cost=sum(r.get("sum_cost") or 0 for r in by_model))
    if scope.tool:
        totals["tool_calls"] = sum(r["count"] for r in by_tool)
    firing = [{"rule": a.get("rule"), "severity": a.get("severity"), "state": a.get("state"),
               "labels": " ".join(f"{k}={v}" for k, v in (a.get("labels") or {}).items()),
               "value": a.get("value"), "since": a.get("since")} for a in current_alerts(log_dir)]
    data: dict[str, Any] = {"window": window, "generated_at": until, "totals": totals,
                            "charts": _charts(scope, rows, 60.0 / width),
                            "tables": {"errors": _top_errors(reader, scope), "alerts": firing},
                            "filter": {scope.drill: scope.value} if scope.drill else {}}
    if scope.drill is not None:
        data["tables"]["slowest"] = _slowest(reader, scope, slowest)
    elif settings is not None:
        data["tables"].update(_ops_tables(reader, settings, until))
    data["seconds"] = round(time.perf_counter() - started, 3)
    return data


def _window(reader: _Reader, scope: _Scope, since: float, until: float) -> dict[str, Any]:
    """The window, its bucket width (from the span of data present) and the stretch the charts draw."""
    modules = [*([("llm", scope.where("llm"))] if scope.llm else []),
               *([("tool", scope.where("tool"))] if scope.tool else []),
               *([("system", [])] if scope.system else [])]
    extent = reader.span(modules)
    width = bucket_for((until - since) / 3600, None if extent is None else extent[1] - extent[0])
    view_since, view_until = since, until
    if extent is not None and extent[1] - extent[0] < _ZOOM * (until - since):
        view_since, view_until = max(since, extent[0] - width), min(until, extent[1] + width)
    return {"since": since, "until": until, "bucket": width, "view_since": view_since, "view_until": view_until,
            "data_since": extent[0] if extent else None, "data_until": extent[1] if extent else None}


def _charts(scope: _Scope, rows: dict[str, list[dict[str, Any]]], per_min: float) -> list[dict[str, Any]]:
    by_model, overall, by_tool = rows["by_model"], rows["overall"], rows["by_tool"]
    charts: list[dict[str, Any]] = []
    if scope.llm:
        charts.append({"id": "calls", "title": "LLM calls per minute", "unit": "calls/min", "drill": "model",
                       "series": _series(by_model, "model", "count", scale=per_min)})
    if scope.drill == "tool":
        charts.append({"id": "tool_calls", "title": "Tool calls per minute", "unit": "calls/min", "drill": "tool",
                       "series": _series(by_tool, "tool_name", "count", scale=per_min)})
    charts.append({"id": "errors", "title": "Error rate", "unit": "%",
                   "series": [*_series(overall, None, "error_rate", scale=100, name="llm"),
                              *_series(rows["tool_errors"], None, "error_rate", scale=100, name="tools")]})
    if scope.llm:
        charts += [
            {"id": "latency", "title": "LLM latency", "unit": "s",
             "series": [*_series(overall, None, "p50_response_time", name="p50"),
                        *_series(overall, None, "p95_response_time", name="p95")]},
            {"id": "tokens", "title": "Tokens by model", "unit": "tokens", "drill": "model",
             "series": _series(by_model, "model", "sum_total_tokens")},
            {"id": "cost", "title": "Cost by model", "unit": "cost", "drill": "model",
             "series": _series(by_model, "model", "sum_cost")},
        ]
    if scope.drill == "tool":
        charts.append({"id": "tools", "title": "Tool latency", "unit": "s",
                       "series": [*_series(by_tool, None, "p50_duration", name="p50"),
                                  *_series(by_tool, None, "p95_duration", name="p95")]})
    elif scope.tool:
        charts.append({"id": "tools", "title": "Tool latency (p95)", "unit": "s", "drill": "tool",
                       "series": _series(by_tool, "tool_name", "p95_duration")})
    if scope.system:
        charts.append({"id": "system", "title": "CPU and memory", "unit": "%",
                       "series": [*_series(rows["system"], None, "max_cpu_percent", name="cpu"),
                                  *_series(rows["system"], None, "max_memory_percent", name="memory")]})
    return charts


def _top_errors(reader: _Reader, scope: _Scope) -> list[dict[str, Any]]:
    """Failures grouped by what failed and how (``error_type``), the most frequent first."""
    errors: list[dict[str, Any]] = []
    failed = Condition("success", "=", False)
    for module, field, ok in (("llm", "model", scope.llm), ("tool", "tool_name", scope.tool)):
        if ok:
            errors += reader.query(module, [failed, *scope.where(module)[1:]],
                                   group_by=["operation", field, "error_type"],
                                   aggs=["count", "latest:error_message", "latest:timestamp"])
    errors.sort(key=lambda r: -r["count"])
    return [{"module": "llm" if "model" in r else "tool", "operation": r.get("operation"),
             "what": r.get("model") or r.get("tool_name"), "error_type": r.get("error_type"),
             "count": r["count"], "last_message": r.get("latest_error_message"),
             "last_seen": r.get("latest_timestamp")} for r in errors[:15]]


def _slowest(reader: _Reader, scope: _Scope, n: int) -> list[dict[str, Any]]:
    module, _, field, duration = _DRILL[str(scope.drill)]
    out = []
    for r in reader.slowest(module, scope.where(module), duration, n):
        failed = r.get("success") is False
        out.append({"time": r.get("timestamp"), "duration": r[duration], "what": r.get(field),
                    "operation": r.get("operation"), "error": r.get("error_type") or ("failed" if failed else ""),
                    "message": _short(r.get("error_message"))})
    return out


def _ops_tables(reader: _Reader, settings: Any, until: float) -> dict[str, list[dict[str, Any]]]:
    tables = {}
    if settings.slos:
        from ..alerts.slo import evaluate_slos  # objectives: only when the configuration has some

        tables["slos"] = [s.as_row() for s in evaluate_slos(reader.parser, settings.slos, now=until)]
    a = settings.anomalies
    from ..query.anomaly import detect_anomalies  # anomalies: only for the page that shows them

    tables["anomalies"] = [x.as_row() for x in detect_anomalies(
        reader.parser, window=a.window, baseline=a.baseline, k=a.k, sustain=a.sustain, min_count=a.min_count,
        now=until)]
    return tables


def _short(message: Any, limit: int = 200) -> str | None:
    if message is None:
        return None
    text = str(message)
    return text if len(text) <= limit else text[: limit - 1] + "…"
