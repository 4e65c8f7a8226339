"""Ready-made reports for the built-in monitors, and the exports built on them.

Each report section is one query (see ``LogParser.query``) with the columns people ask
for first; a section whose module has no files is left out. ``prometheus_text`` renders
the same figures in the Prometheus text exposition format (version 0.0.4): every value
describes the report's window, so counts are gauges and latencies are summaries.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .engine import LogParser, QueryResult, SkipReport
from .spec import parse_agg

__all__ = ["Report", "Section", "build_report", "prometheus_text", "report_csv", "report_json"]


@dataclass
class Section:
    name: str
    title: str
    columns: list[str]
    rows: list[dict[str, Any]]


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


def build_report(parser: LogParser, *, since: float | None = None, until: float | None = None,
                 hours: float | None = None, module: str | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 anomalies: Mapping[str, Any] | None = None) -> Report:
    """Every section whose module has files (or only ``module``'s), over the window.

    ``anomalies`` (the keyword arguments of ``detect_anomalies``: window, baseline, k …)
    adds a section flagging the series whose latest windows stand out, ending at ``until``.
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
        if spec.module == "llm":
            if "llm" not in shared:  # one scan of the llm family answers its three sections
                shared["llm"] = _llm_scan(parser, since, until, progress)
                _merge_skips(report.skipped, shared["llm"])
            names = [*spec.group_by, *(parse_agg(a).name for a in spec.aggs)]
            rows = [r for r in shared["llm"].rows if r.get("operation") == spec.operation]
        else:
            result = parser.query(spec.module, operation=spec.operation, since=since, until=until,
                                  group_by=list(spec.group_by), aggs=list(spec.aggs), progress=progress)
            _merge_skips(report.skipped, result)
            names, rows = [*spec.group_by, *result.aggregates], result.rows
        columns = [c for c in names if any(r.get(c) is not None for r in rows)]
        if spec.name == "llm" and any(r.get(_UNPRICED) for r in rows):
            columns.append("unpriced")  # calls of models missing from the price table: shown, never free
            for r in rows:
                r["unpriced"] = r.get(_UNPRICED, 0)
        if rows:
            table = [{c: r.get(c) for c in columns} for r in rows]
            report.sections.append(Section(spec.name, spec.title, columns, table))
    if anomalies is not None:
        from .anomaly import DEFAULT_SERIES, detect_anomalies

        series = [s for s in DEFAULT_SERIES if module is None or s.module == module]
        found = detect_anomalies(parser, now=report.until, series=series, **anomalies)
        if found:
            rows = [a.as_row() for a in found]
            report.sections.append(Section("anomalies", "Anomalies (latest windows against their baseline)",
                                            list(rows[0]), rows))
    report.seconds = time.perf_counter() - started
    return report


_UNPRICED = "count_cost_status_unknown_model"


def _llm_scan(parser: LogParser, since: float | None, until: float | None,
              progress: Callable[[int, int], None] | None) -> QueryResult:
    specs = [s for s in _SPECS if s.module == "llm"]
    aggs = list(dict.fromkeys(a for s in specs for a in s.aggs))
    return parser.query("llm", operation=[str(s.operation) for s in specs], since=since, until=until,
                        group_by=["operation", "provider", "model"], aggs=[*aggs, "count_if:cost_status=unknown_model"],
                        progress=progress)


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


def label_value(value: Any) -> str:
    """A value as a Prometheus label value: escaped, booleans as JSON spells them."""
    text = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(row: dict[str, Any], names: Iterable[str], extra: dict[str, str] | None = None) -> str:
    pairs = [(n, row.get(n)) for n in names]
    pairs += list((extra or {}).items())
    return "{" + ",".join(f'{n}="{label_value(v)}"' for n, v in pairs) + "}"


def _number(value: Any) -> str | None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if isinstance(value, float) else str(value)


class _Family:
    def __init__(self, name: str, kind: str, help_text: str) -> None:
        self.name, self.kind, self.help = name, kind, help_text
        self.samples: list[str] = []

    def add(self, suffix: str, labels: str, value: Any) -> None:
        number = _number(value)
        if number is not None:
            self.samples.append(f"{self.name}{suffix}{labels} {number}")

    def render(self) -> str:
        if not self.samples:
            return ""
        return f"# HELP {self.name} {self.help}\n# TYPE {self.name} {self.kind}\n" + "\n".join(self.samples) + "\n"


FamilyMaker = Callable[[str, str, str], "_Family"]


def prometheus_text(report: Report) -> str:
    """The report as Prometheus metrics (each value describes the report's window)."""
    families: list[_Family] = []

    def family(name: str, kind: str, help_text: str) -> _Family:
        fam = _Family(name, kind, help_text)
        families.append(fam)
        return fam

    window = family("monitoring_report_window_seconds", "gauge", "Length of the window these figures describe.")
    window.add("", "", report.until - report.since if report.since is not None else None)
    skipped = family("monitoring_skipped_lines", "gauge", "Log lines that could not be read in the window.")
    skipped.add("", "", report.skipped.count)
    for name, render in (("llm", _prom_llm), ("tools", _prom_tools), ("checkpoints", _prom_checkpoints),
                         ("system", _prom_system)):
        section = report.section(name)
        if section is not None:
            render(section, family)
    return "".join(f.render() for f in families)


def _summary(fam: _Family, row: dict[str, Any], keys: tuple[str, ...], field_name: str,
             quantiles: tuple[str, ...]) -> None:
    for q in quantiles:
        fam.add("", _labels(row, keys, {"quantile": f"0.{q}"}), row.get(f"p{q}_{field_name}"))
    avg, count = row.get(f"avg_{field_name}"), row.get("count")
    if avg is not None and count:
        fam.add("_sum", _labels(row, keys), avg * count)
        fam.add("_count", _labels(row, keys), count)


def _prom_llm(section: Section, family: FamilyMaker) -> None:
    keys = ("provider", "model")
    calls = family("monitoring_llm_calls", "gauge", "LLM calls in the window.")
    errors = family("monitoring_llm_errors", "gauge", "Failed LLM calls in the window.")
    latency = family("monitoring_llm_response_time_seconds", "summary", "LLM call latency in the window.")
    tokens = family("monitoring_llm_tokens", "gauge", "Tokens used in the window, by kind.")
    cost = family("monitoring_llm_cost", "gauge", "Cost of LLM calls in the window, in the price table's currency.")
    for row in section.rows:
        labels = _labels(row, keys)
        calls.add("", labels, row.get("count"))
        errors.add("", labels, row.get("errors"))
        _summary(latency, row, keys, "response_time", ("50", "95", "99"))
        for kind in ("prompt", "completion", "total"):
            tokens.add("", _labels(row, keys, {"kind": kind}), row.get(f"sum_{kind}_tokens"))
        cost.add("", labels, row.get("sum_cost"))


def _prom_tools(section: Section, family: FamilyMaker) -> None:
    keys = ("tool_name",)
    calls = family("monitoring_tool_calls", "gauge", "Tool calls in the window.")
    errors = family("monitoring_tool_errors", "gauge", "Failed tool calls in the window.")
    latency = family("monitoring_tool_duration_seconds", "summary", "Tool call duration in the window.")
    for row in section.rows:
        calls.add("", _labels(row, keys), row.get("count"))
        errors.add("", _labels(row, keys), row.get("errors"))
        _summary(latency, row, keys, "duration", ("50", "95"))


def _prom_checkpoints(section: Section, family: FamilyMaker) -> None:
    ops = family("monitoring_checkpoint_operations", "gauge", "Checkpoint saves and loads in the window.")
    size = family("monitoring_checkpoint_size_bytes", "gauge", "Bytes saved or loaded in the window.")
    for row in section.rows:
        ops.add("", _labels(row, ("operation",)), row.get("count"))
        size.add("", _labels(row, ("operation",)), row.get("sum_size"))


def _prom_system(section: Section, family: FamilyMaker) -> None:
    cpu = family("monitoring_system_cpu_percent", "gauge", "Latest host CPU use, percent.")
    memory = family("monitoring_system_memory_percent", "gauge", "Latest host memory use, percent.")
    rss = family("monitoring_process_resident_memory_bytes", "gauge", "Latest resident memory of the process.")
    for row in section.rows:
        labels = _labels(row, ("host",))
        cpu.add("", labels, row.get("latest_cpu_percent"))
        memory.add("", labels, row.get("latest_memory_percent"))
        rss.add("", labels, row.get("latest_process_rss_bytes"))
