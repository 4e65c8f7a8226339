"""Ready-made reports for the built-in monitors, and the exports built on them.

Each report section is one query (see ``LogParser.query``) with the columns people ask
for first; a section whose module has no files is left out. ``prometheus_text`` renders
the same figures in the Prometheus text exposition format (version 0.0.4, written by
``_exposition.py``, as ``/metrics`` is): every value describes the report's window, so
counts and sums are gauges and latencies are summaries, while a gauge record keeps its
meaning — its latest value, at its own time — and a since-boot counter of the system
sampler stays a counter. The ``metrics`` section (``build_report(metrics=True)``) holds
the records of ``record_counter`` (the sum of their values), ``record_gauge`` (the
latest value) and ``record_timer`` outside the built-in modules (their latencies).
"""

from __future__ import annotations

import calendar
import csv
import io
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._exposition import Family, Labels, labels_of, render
from .engine import QueryResult, SkipReport
from .source import LogSource
from .spec import parse_agg

__all__ = ["Report", "Section", "build_report", "prometheus_text", "report_csv", "report_json", "report_trends"]


@dataclass
class Section:
    name: str
    title: str
    columns: list[str]
    rows: list[dict[str, Any]]
    hidden: list[dict[str, Any]] = field(default_factory=list)
    """Per row, figures the exports use and the table does not show (the time of a latest value)."""
    keys: list[str] = field(default_factory=list)
    """The columns that name a row (what the section groups by); the others are its figures."""


@dataclass
class Report:
    since: float | None
    until: float
    sections: list[Section] = field(default_factory=list)
    skipped: SkipReport = field(default_factory=SkipReport)
    seconds: float = 0.0

    def section(self, name: str) -> Section | None:
        return next((s for s in self.sections if s.name == name), None)


@dataclass(frozen=True)
class _Spec:
    name: str
    title: str
    module: str
    operation: str | tuple[str, ...] | None
    group_by: tuple[str, ...]
    aggs: tuple[str, ...]


_SPECS: tuple[_Spec, ...] = (
    _Spec("llm", "LLM calls by provider and model", "llm", "llm_call", ("provider", "model"),
          ("count", "errors", "error_rate", "avg:response_time", "p50:response_time", "p95:response_time",
           "p99:response_time", "p50:time_to_first_token", "p95:time_to_first_token", "sum:prompt_tokens",
           "sum:completion_tokens", "sum:total_tokens", "sum:cost")),
    _Spec("attempts", "LLM attempts (retried calls) by provider and model", "llm", "llm_attempt",
          ("provider", "model"), ("count", "errors", "error_rate", "p95:response_time", "max:attempt")),
    _Spec("embeddings", "Embedding calls by model", "llm", "embedding_call", ("provider", "model"),
          ("count", "errors", "p95:response_time", "sum:input_tokens")),
    _Spec("tools", "Tool calls by tool", "tool", "tool_call", ("tool_name",),
          ("count", "errors", "error_rate", "avg:duration", "p50:duration", "p95:duration", "max:duration")),
    _Spec("checkpoints", "Checkpoints", "checkpoint", ("checkpoint_save", "checkpoint_load"), ("operation",),
          ("count", "errors", "avg:duration", "p95:duration", "sum:size", "avg:size")),
    _Spec("tasks", "Tasks and agents", "task", None, ("operation", "task_type", "agent_name"),
          ("count", "errors", "error_rate", "avg:duration", "p50:duration", "p95:duration")),
    _Spec("system", "System by host", "system", "system_sample", ("host",),
          ("count", "latest:cpu_percent", "max:cpu_percent", "latest:memory_percent", "max:memory_percent",
           "latest:process_rss_bytes", "max:process_rss_bytes")),
)
SECTIONS = tuple(s.name for s in _SPECS)
_HIDDEN: dict[str, tuple[str, ...]] = {
    "system": ("max:timestamp", "latest:memory_available_bytes", "latest:disk_percent", "latest:disk_free_bytes",
               "latest:net_bytes_sent", "latest:net_bytes_recv", "latest:process_cpu_percent",
               "latest:process_threads", "latest:process_open_fds"),
}
"""Aggregates a section computes for the exports only (the system sampler's other fields)."""
_BUILT_IN: frozenset[str] = frozenset(s.module for s in _SPECS)
_METRIC_AGGS = ("count", "sum:value", "latest:value", "max:timestamp", "avg:duration", "p50:duration",
                "p95:duration", "p99:duration", "sum:duration")


def build_report(parser: LogSource, *, since: float | None = None, until: float | None = None,
                 hours: float | None = None, module: str | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 anomalies: Mapping[str, Any] | None = None, metrics: bool = False) -> Report:
    """Every section whose module has files (or only ``module``'s), over the window.

    ``anomalies`` (the keyword arguments of ``detect_anomalies``: window, baseline, k …)
    adds a section flagging the series whose latest windows stand out, ending at ``until``.
    ``metrics`` adds the ``metrics`` section: counters, gauges and timers of every module
    (one more read of each family, which the exports pay and the table view does not).
    """
    started = time.perf_counter()
    now = time.time()
    if hours is not None:
        until = until if until is not None else now
        since = until - hours * 3600
    report = Report(since, until if until is not None else now)
    present = set(parser.modules())
    shared: dict[str, QueryResult] = {}
    for spec in _SPECS:
        if spec.module not in present or (module is not None and spec.module != module):
            continue
        section = _section(parser, spec, since, until, progress, shared, report.skipped)
        if section is not None:
            report.sections.append(section)
    if metrics:
        section = _metrics_section(parser, present, since, until, module, progress, report.skipped)
        if section is not None:
            report.sections.append(section)
    if anomalies is not None:
        from .anomaly import DEFAULT_SERIES, detect_anomalies  # anomalies: only when a report asks for them

        series = [s for s in DEFAULT_SERIES if module is None or s.module == module]
        found = detect_anomalies(parser, now=report.until, series=series, **anomalies)
        if found:
            rows = [a.as_row() for a in found]
            report.sections.append(Section("anomalies", "Anomalies (latest windows against their baseline)",
                                            list(rows[0]), rows, keys=["series", "kind", "window"]))
    report.seconds = time.perf_counter() - started
    return report


def _section(parser: LogSource, spec: _Spec, since: float | None, until: float | None,
             progress: Callable[[int, int], None] | None, shared: dict[str, QueryResult],
             skipped: SkipReport) -> Section | None:
    hidden = _HIDDEN.get(spec.name, ())
    if spec.module == "llm":
        if "llm" not in shared:  # one scan of the llm family answers its three sections
            shared["llm"] = _llm_scan(parser, since, until, progress)
            _merge_skips(skipped, shared["llm"])
        names = [*spec.group_by, *(parse_agg(a).name for a in spec.aggs)]
        rows = [r for r in shared["llm"].rows if r.get("operation") == spec.operation]
    else:
        result = parser.query(spec.module, operation=spec.operation, since=since, until=until,
                              group_by=list(spec.group_by), aggs=[*spec.aggs, *hidden], progress=progress,
                              check_fields=False)
        _merge_skips(skipped, result)
        names, rows = [*spec.group_by, *result.aggregates[:len(spec.aggs)]], result.rows
    columns = [c for c in names if any(r.get(c) is not None for r in rows)]
    if spec.name == "llm" and any(r.get(_UNPRICED) for r in rows):
        columns.append("unpriced")  # calls of models missing from the price table: shown, never free
        for r in rows:
            r["unpriced"] = r.get(_UNPRICED, 0)
    if not rows:
        return None
    table = [{c: r.get(c) for c in columns} for r in rows]
    extra = [{parse_agg(a).name: r.get(parse_agg(a).name) for a in hidden} for r in rows]
    return Section(spec.name, spec.title, columns, table, extra, [k for k in spec.group_by if k in columns])


def _metrics_section(parser: LogSource, present: set[str], since: float | None, until: float | None,
                     module: str | None, progress: Callable[[int, int], None] | None,
                     skipped: SkipReport) -> Section | None:
    """Counters (sum of ``value``), gauges (latest ``value``) and timers (``duration``) by module
    and operation; the built-in modules' timers are left to their own sections."""
    rows: list[dict[str, Any]] = []
    hidden: list[dict[str, Any]] = []
    for name in sorted(present):
        if module is not None and name != module:
            continue
        kinds = "counter,gauge" if name in _BUILT_IN else "counter,gauge,timer"
        result = parser.query(name, where=[f"metric_type in {kinds}"], since=since, until=until,
                              group_by=["operation", "metric_type"], aggs=list(_METRIC_AGGS), progress=progress,
                              check_fields=False)
        _merge_skips(skipped, result)
        for r in result.rows:
            kind = r.get("metric_type")
            row: dict[str, Any] = {"module": name, "operation": r.get("operation"), "metric_type": kind,
                                   "count": r.get("count")}
            if kind == "counter":
                row["sum_value"] = r.get("sum_value") if r.get("sum_value") is not None else r.get("count")
            elif kind == "gauge":
                if r.get("latest_value") is None:
                    continue
                row["latest_value"] = r.get("latest_value")
            else:
                if r.get("p50_duration") is None:
                    continue  # timers without a duration (none of ours)
                for key in ("avg_duration", "p50_duration", "p95_duration", "p99_duration", "sum_duration"):
                    row[key] = r.get(key)
            rows.append(row)
            hidden.append({"at": r.get("max_timestamp")})
    if not rows:
        return None
    names = ["module", "operation", "metric_type", "count", "sum_value", "latest_value", "avg_duration",
             "p50_duration", "p95_duration", "p99_duration", "sum_duration"]
    columns = [c for c in names if any(r.get(c) is not None for r in rows)]
    table = [{c: r.get(c) for c in columns} for r in rows]
    return Section("metrics", "Counters, gauges and timers by module and operation", columns, table, hidden,
                   ["module", "operation", "metric_type"])


_UNPRICED = "count_cost_status_unknown_model"
_TRENDED = {"llm": "llm_call", "tools": "tool_call", "tasks": None}


def report_trends(parser: LogSource, report: Report, slices: int = 24
                  ) -> dict[str, dict[tuple[Any, ...], list[float | None]]]:
    """Calls per time slice for each row of the llm, tools and tasks sections (``slices`` from the
    first record of the window to its end): what a sparkline beside each row draws."""
    out: dict[str, dict[tuple[Any, ...], list[float | None]]] = {}
    specs = {s.name: s for s in _SPECS}
    for section in report.sections:
        if section.name not in _TRENDED:
            continue
        spec = specs[section.name]
        keys = section.keys
        first = parser.query(spec.module, operation=spec.operation, since=report.since, until=report.until,
                             aggs=["min:timestamp"], check_fields=False)
        since = first.rows[0]["min_timestamp"] if first.rows else None  # the span of the data, not the window
        if since is None or report.until <= since:
            continue
        width = max(1.0, (report.until - since) / slices)
        start = since // width * width
        result = parser.query(spec.module, operation=spec.operation, since=since, until=report.until,
                              group_by=keys, bucket=width, aggs=["count"], check_fields=False)
        table = out.setdefault(section.name, {})
        for row in result.rows:
            series = table.setdefault(tuple(row.get(k) for k in keys), [0.0] * (slices + 1))
            at = int((calendar.timegm(time.strptime(row["bucket"], "%Y-%m-%dT%H:%M:%SZ")) - start) // width)
            if 0 <= at < len(series):
                series[at] = row["count"]
    return out


def _llm_scan(parser: LogSource, since: float | None, until: float | None,
              progress: Callable[[int, int], None] | None) -> QueryResult:
    specs = [s for s in _SPECS if s.module == "llm"]
    aggs = list(dict.fromkeys(a for s in specs for a in s.aggs))
    return parser.query("llm", operation=[str(s.operation) for s in specs], since=since, until=until,
                        group_by=["operation", "provider", "model"], aggs=[*aggs, "count_if:cost_status=unknown_model"],
                        progress=progress, check_fields=False)


def _merge_skips(total: SkipReport, result: QueryResult) -> None:
    skipped = result.skipped
    total.count += skipped.count
    for reason, n in skipped.by_reason.items():
        total.by_reason[reason] = total.by_reason.get(reason, 0) + n
    total.samples.extend(skipped.samples[: max(0, 100 - len(total.samples))])


# --------------------------------------------------------------------------- exports


def report_json(report: Report) -> dict[str, Any]:
    return {
        "since": report.since,
        "until": report.until,
        "sections": {s.name: s.rows for s in report.sections},
        "skipped_lines": report.skipped.count,
        "skipped_by_reason": report.skipped.by_reason,
    }


def report_csv(report: Report) -> str:
    """One table: a ``section`` column, then the union of every section's columns."""
    columns: list[str] = ["section"]
    for s in report.sections:
        columns += [c for c in s.columns if c not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for s in report.sections:
        for row in s.rows:
            writer.writerow({"section": s.name, **{k: ("" if v is None else v) for k, v in row.items()}})
    return out.getvalue()


class _Families:
    """The families of one exposition, in order, each sample with the report's constant labels."""

    def __init__(self, constant: Labels) -> None:
        self.constant = constant
        self.all: list[Family] = []

    def __call__(self, name: str, kind: str, help_text: str) -> Family:
        fam = Family(name, kind, help_text)
        self.all.append(fam)
        return fam

    def labels(self, row: Mapping[str, Any], names: Iterable[str], **extra: Any) -> Labels:
        return labels_of([*((n, row.get(n)) for n in names), *extra.items()]) + self.constant


FamilyMaker = _Families


def prometheus_text(report: Report, *, labels: Mapping[str, str] | None = None) -> str:
    """The report as Prometheus metrics (each value describes the report's window); ``labels``
    (the global ``service_name`` and ``environment``) go on every sample."""
    family = _Families(labels_of(labels or {}))
    window = family("monitoring_report_window_seconds", "gauge", "Length of the window these figures describe.")
    window.add(report.until - report.since if report.since is not None else None, family.constant)
    skipped = family("monitoring_skipped_lines", "gauge", "Log lines that could not be read in the window.")
    skipped.add(report.skipped.count, family.constant)
    for name, draw in (("llm", _prom_llm), ("tools", _prom_tools), ("checkpoints", _prom_checkpoints),
                       ("system", _prom_system), ("metrics", _prom_metrics)):
        section = report.section(name)
        if section is not None:
            draw(section, family)
    return render(family.all)


def _summary(fam: Family, family: FamilyMaker, row: dict[str, Any], keys: tuple[str, ...], field_name: str,
             quantiles: tuple[str, ...]) -> None:
    avg, count = row.get(f"avg_{field_name}"), row.get("count")
    total = avg * count if avg is not None and count else None
    fam.summary(family.labels(row, keys), {float(f"0.{q}"): row.get(f"p{q}_{field_name}") for q in quantiles},
                total, count if total is not None else None)


def _prom_llm(section: Section, family: FamilyMaker) -> None:
    keys = ("provider", "model")
    calls = family("monitoring_llm_calls", "gauge", "LLM calls in the window.")
    errors = family("monitoring_llm_errors", "gauge", "Failed LLM calls in the window.")
    latency = family("monitoring_llm_response_time_seconds", "summary", "LLM call latency in the window.")
    tokens = family("monitoring_llm_tokens", "gauge", "Tokens used in the window, by kind.")
    cost = family("monitoring_llm_cost", "gauge", "Cost of LLM calls in the window, in the price table's currency.")
    for row in section.rows:
        labels = family.labels(row, keys)
        calls.add(row.get("count"), labels)
        errors.add(row.get("errors"), labels)
        _summary(latency, family, row, keys, "response_time", ("50", "95", "99"))
        for kind in ("prompt", "completion", "total"):
            tokens.add(row.get(f"sum_{kind}_tokens"), family.labels(row, keys, kind=kind))
        cost.add(row.get("sum_cost"), labels)


def _prom_tools(section: Section, family: FamilyMaker) -> None:
    keys = ("tool_name",)
    calls = family("monitoring_tool_calls", "gauge", "Tool calls in the window.")
    errors = family("monitoring_tool_errors", "gauge", "Failed tool calls in the window.")
    latency = family("monitoring_tool_duration_seconds", "summary", "Tool call duration in the window.")
    for row in section.rows:
        calls.add(row.get("count"), family.labels(row, keys))
        errors.add(row.get("errors"), family.labels(row, keys))
        _summary(latency, family, row, keys, "duration", ("50", "95"))


def _prom_checkpoints(section: Section, family: FamilyMaker) -> None:
    ops = family("monitoring_checkpoint_operations", "gauge", "Checkpoint saves and loads in the window.")
    size = family("monitoring_checkpoint_size_bytes", "gauge", "Bytes saved or loaded in the window.")
    for row in section.rows:
        ops.add(row.get("count"), family.labels(row, ("operation",)))
        size.add(row.get("sum_size"), family.labels(row, ("operation",)))


_SYSTEM_EXPORT = (
    ("latest_cpu_percent", "monitoring_system_cpu_percent", "gauge", "Latest host CPU use, percent."),
    ("latest_memory_percent", "monitoring_system_memory_percent", "gauge", "Latest host memory use, percent."),
    ("latest_memory_available_bytes", "monitoring_system_memory_available_bytes", "gauge",
     "Latest memory available on the host."),
    ("latest_disk_percent", "monitoring_system_disk_percent", "gauge", "Latest use of the disk holding the logs."),
    ("latest_disk_free_bytes", "monitoring_system_disk_free_bytes", "gauge",
     "Latest free bytes of the disk holding the logs."),
    ("latest_net_bytes_sent", "monitoring_system_network_sent_bytes_total", "counter",
     "Bytes the host sent since it started (latest sample)."),
    ("latest_net_bytes_recv", "monitoring_system_network_received_bytes_total", "counter",
     "Bytes the host received since it started (latest sample)."),
    ("latest_process_rss_bytes", "monitoring_process_resident_memory_bytes", "gauge",
     "Latest resident memory of the process."),
    ("latest_process_cpu_percent", "monitoring_process_cpu_percent", "gauge",
     "Latest CPU use of the sampled process, percent of one core."),
    ("latest_process_threads", "monitoring_process_threads", "gauge", "Latest thread count of the sampled process."),
    ("latest_process_open_fds", "monitoring_process_open_fds", "gauge",
     "Latest open file descriptors of the sampled process."),
)


def _prom_system(section: Section, family: FamilyMaker) -> None:
    """The latest sample of each host, at the time it was taken."""
    out = [(key, family(name, kind, help_text)) for key, name, kind, help_text in _SYSTEM_EXPORT]
    for i, row in enumerate(section.rows):
        hidden = section.hidden[i] if i < len(section.hidden) else {}
        values = {**hidden, **row}
        at = hidden.get("max_timestamp")
        labels = family.labels(row, ("host",))
        for key, fam in out:
            fam.add(values.get(key), labels, timestamp=at if isinstance(at, (int, float)) else None)


def _prom_metrics(section: Section, family: FamilyMaker) -> None:
    """``record_counter``: the sum of its values in the window; ``record_gauge``: the latest
    value, at its own time; ``record_timer``: a summary of the window's durations."""
    keys = ("module", "operation")
    sums = family("monitoring_count_in_window", "gauge", "Sum of the value of counter records (record_counter) in "
                  "the window.")
    gauges = family("monitoring_value", "gauge", "Latest value of gauge records (record_gauge), at its own time.")
    timers = family("monitoring_timer_duration_seconds", "summary", "Duration of timer records (record_timer) in "
                    "the window.")
    for i, row in enumerate(section.rows):
        kind = row.get("metric_type")
        labels = family.labels(row, keys)
        if kind == "counter":
            sums.add(row.get("sum_value"), labels)
        elif kind == "gauge":
            at = section.hidden[i].get("at") if i < len(section.hidden) else None
            gauges.add(row.get("latest_value"), labels, timestamp=at if isinstance(at, (int, float)) else None)
        else:
            _summary(timers, family, row, keys, "duration", ("50", "95", "99"))
