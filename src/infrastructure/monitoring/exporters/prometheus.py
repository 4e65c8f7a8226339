"""Prometheus metrics derived from the log files, for ``/metrics``.

The server tails the families (see ``tail.py``) and folds each new line into counters
and histograms, so a scrape costs what was written since the previous one, not a
rescan of the folder, and the counters only go up: they count the lines this server
has read since it started (the folder's whole content at start-up, then every new
line). A server restart is a counter reset, which ``rate()`` and ``increase()`` handle.
Deleting old files (retention) changes nothing here: lines already counted stay counted.

Labels are the low-cardinality fields only — ``module``, ``operation``, ``model``,
``provider``, ``tool``, ``success``, ``host`` — and each metric holds at most
``max_series`` label sets; more fold into one series whose labels are all
``__other__`` (counted by ``monitoring_series_overflow_total``), so a flood of model
names cannot exhaust the server or Prometheus.

Metric names (stable; units in the names, as Prometheus recommends):

=====================================================  =========  ========================================
``llm_requests_total``                                 counter    module, operation, model, provider, success, host
``llm_tokens_total``                                   counter    … type = prompt | completion
``llm_cost_total``                                     counter    operation, model, provider, host
``llm_request_duration_seconds``                       histogram  operation, model, provider, host
``llm_time_to_first_token_seconds``                    histogram  model, provider, host
``tool_calls_total`` / ``tool_call_duration_seconds``  both       tool, success, host
``monitoring_records_total``                           counter    module, operation, success, host
``monitoring_operation_duration_seconds``              histogram  module, operation, host (``duration`` field)
``system_cpu_percent`` ``system_memory_percent``       gauge      host (latest sample)
``system_process_rss_bytes``                           gauge      host
``monitoring_alerts_firing``                           gauge      rule, severity
``monitoring_log_bytes`` ``monitoring_log_files``      gauge      module
``monitoring_corrupt_lines_total``                     counter    module
=====================================================  =========  ========================================
"""

from __future__ import annotations

import bisect
import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import orjson

from ..alerts.engine import current_alerts
from ..query.files import discover
from ..query.reports import label_value as escape_label
from .tail import Tailer

__all__ = ["CONTENT_TYPE", "LiveMetrics", "escape_label"]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_OTHER: Final = "__other__"

_HELP: Final = {
    "llm_requests_total": ("counter", "LLM requests read from the logs."),
    "llm_tokens_total": ("counter", "Tokens of LLM requests, by type (prompt or completion)."),
    "llm_cost_total": ("counter", "Cost of LLM requests, in the price table's currency."),
    "llm_request_duration_seconds": ("histogram", "LLM request latency (response_time)."),
    "llm_time_to_first_token_seconds": ("histogram", "Time to the first streamed chunk."),
    "tool_calls_total": ("counter", "Tool calls read from the logs."),
    "tool_call_duration_seconds": ("histogram", "Tool call latency."),
    "monitoring_records_total": ("counter", "Records of every family read from the logs."),
    "monitoring_operation_duration_seconds": ("histogram", "Duration of timed operations outside llm and tool."),
    "system_cpu_percent": ("gauge", "Latest CPU use sampled by the system monitor."),
    "system_memory_percent": ("gauge", "Latest memory use sampled by the system monitor."),
    "system_process_rss_bytes": ("gauge", "Latest resident memory of the sampled process."),
    "monitoring_alerts_firing": ("gauge", "1 for each alert firing now."),
    "monitoring_log_bytes": ("gauge", "Bytes on disk per log family."),
    "monitoring_log_files": ("gauge", "Files per log family (live, rotated, compressed)."),
    "monitoring_corrupt_lines_total": ("counter", "Lines that were not valid JSON records (skipped)."),
    "monitoring_series_overflow_total": ("counter", "Records folded into __other__ series (too many label sets)."),
}


def _label(value: Any) -> str:
    """A field as a label value, unescaped (escaping waits for the exposition)."""
    if value.__class__ is str:
        return value
    if value is None:
        return ""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _number(value: Any) -> float | None:
    if value.__class__ in (int, float) and value == value and value not in (math.inf, -math.inf):
        return float(value)
    return None


def _fmt(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


class LiveMetrics:
    """Counters, histograms and gauges of one log folder, refreshed from the files on demand."""

    def __init__(self, log_dir: str | os.PathLike[str], *, buckets: Sequence[float],
                 max_series: int = 10_000) -> None:
        self.log_dir = Path(log_dir)
        self.buckets = tuple(buckets)
        self.max_series = max_series
        self._tailer = Tailer(self.log_dir)
        self._lock = threading.Lock()
        """Guards the tables; held per chunk of lines, so a scrape never waits for a long read."""
        self._reading = threading.Lock()
        """One reader of the files at a time."""
        self._counters: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        self._histograms: dict[str, dict[tuple[tuple[str, str], ...], list[float]]] = {}
        self._gauges: dict[str, dict[tuple[tuple[str, str], ...], tuple[float, float]]] = {}

    # ------------------------------------------------------------------ folding lines

    def refresh(self, *, wait: bool = True) -> int:
        """Read what was appended since the last call; returns the number of lines.

        With ``wait`` off, a refresh already under way (the first read of a large folder,
        started by ``warm_up``) is not waited for: the caller renders what is folded so far.
        """
        if not self._reading.acquire(blocking=wait):
            return 0
        read = 0
        try:
            for chunk in self._tailer.chunks(max_lines=5000):
                with self._lock:
                    for line in chunk.lines:
                        self._fold(chunk.module, line)
                    self._tailer.commit(chunk)
                read += len(chunk.lines)
        finally:
            self._reading.release()
        return read

    def warm_up(self) -> threading.Thread:
        """Fold the folder's current content in a background thread (a server's first read)."""
        thread = threading.Thread(target=self.refresh, name="metrics-warm-up", daemon=True)
        thread.start()
        return thread

    def _labels(self, metric: str, table: dict[Any, Any], labels: tuple[tuple[str, str], ...]
                ) -> tuple[tuple[str, str], ...]:
        if labels in table or len(table) < self.max_series:
            return labels
        self._inc("monitoring_series_overflow_total", (("metric", metric),))
        return tuple((k, _OTHER) for k, _ in labels)

    def _inc(self, metric: str, labels: tuple[tuple[str, str], ...], by: float = 1.0) -> None:
        table = self._counters.setdefault(metric, {})
        labels = self._labels(metric, table, labels) if metric != "monitoring_series_overflow_total" else labels
        table[labels] = table.get(labels, 0.0) + by

    def _observe(self, metric: str, labels: tuple[tuple[str, str], ...], value: float) -> None:
        table = self._histograms.setdefault(metric, {})
        labels = self._labels(metric, table, labels)
        row = table.get(labels)
        if row is None:
            row = table[labels] = [0.0] * (len(self.buckets) + 2)  # per-bucket counts, +Inf, sum
        row[bisect.bisect_left(self.buckets, value)] += 1
        row[-1] += value

    def _gauge(self, metric: str, labels: tuple[tuple[str, str], ...], ts: float, value: float) -> None:
        table = self._gauges.setdefault(metric, {})
        old = table.get(labels)
        if old is None or ts >= old[0]:
            table[labels] = (ts, value)

    def _fold(self, module: str, line: bytes) -> None:
        try:
            r = orjson.loads(line)
        except orjson.JSONDecodeError:
            r = None
        if not isinstance(r, dict):
            if line.strip():
                self._inc("monitoring_corrupt_lines_total", (("module", module),))
            return
        op = _label(r.get("operation"))
        success = r.get("success")
        ok = "true" if success is True else "false" if success is False else ""
        host = _label(r.get("host"))
        self._inc("monitoring_records_total", (("module", module), ("operation", op), ("success", ok), ("host", host)))
        if module == "llm":
            self._fold_llm(r, module, op, ok, host)
            return
        duration = _number(r.get("duration"))
        if module == "tool" and op == "tool_call":
            tool = _label(r.get("tool_name"))
            self._inc("tool_calls_total", (("tool", tool), ("success", ok), ("host", host)))
            if duration is not None:
                self._observe("tool_call_duration_seconds", (("tool", tool), ("host", host)), duration)
            return
        if module == "system":
            ts = _number(r.get("timestamp")) or 0.0
            for field_name, metric in (("cpu_percent", "system_cpu_percent"),
                                       ("memory_percent", "system_memory_percent"),
                                       ("process_rss_bytes", "system_process_rss_bytes")):
                value = _number(r.get(field_name))
                if value is not None:
                    self._gauge(metric, (("host", host),), ts, value)
            return
        if duration is not None:
            self._observe("monitoring_operation_duration_seconds", (("module", module), ("operation", op),
                                                                    ("host", host)), duration)

    def _fold_llm(self, r: dict[str, Any], module: str, op: str, ok: str, host: str) -> None:
        model, provider = _label(r.get("model")), _label(r.get("provider"))
        base = (("operation", op), ("model", model), ("provider", provider))
        self._inc("llm_requests_total", (("module", module), *base, ("success", ok), ("host", host)))
        for kind in ("prompt", "completion"):
            n = _number(r.get(f"{kind}_tokens"))
            if n:
                self._inc("llm_tokens_total", (*base, ("type", kind), ("host", host)), n)
        cost = _number(r.get("cost"))
        if cost:
            self._inc("llm_cost_total", (*base, ("host", host)), cost)
        rt = _number(r.get("response_time"))
        if rt is not None:
            self._observe("llm_request_duration_seconds", (*base, ("host", host)), rt)
        ttft = _number(r.get("time_to_first_token"))
        if ttft is not None:
            self._observe("llm_time_to_first_token_seconds", (("model", model), ("provider", provider),
                                                              ("host", host)), ttft)

    # ------------------------------------------------------------------ exposition

    def render(self, *, refresh: bool = True) -> str:
        """The text exposition format (0.0.4); passes ``promtool check metrics``."""
        if refresh:
            self.refresh(wait=False)
        out: dict[str, list[str]] = {}
        with self._lock:
            for metric, table in self._counters.items():
                out[metric] = [f"{metric}{self._render_labels(k)} {_fmt(v)}" for k, v in sorted(table.items())]
            for metric, rows in self._histograms.items():
                lines = out[metric] = []
                for labels, row in sorted(rows.items()):
                    running = 0.0
                    for bound, n in zip((*self.buckets, math.inf), row[:-1], strict=True):
                        running += n
                        le = "+Inf" if bound == math.inf else _fmt(float(bound))
                        lines.append(f"{metric}_bucket{self._render_labels((*labels, ('le', le)))} {_fmt(running)}")
                    lines.append(f"{metric}_sum{self._render_labels(labels)} {_fmt(row[-1])}")
                    lines.append(f"{metric}_count{self._render_labels(labels)} {_fmt(running)}")
            for metric, gauges in self._gauges.items():
                out[metric] = [f"{metric}{self._render_labels(k)} {_fmt(v)}" for k, (_, v) in sorted(gauges.items())]
        out.update(self._folder_gauges())
        text = []
        for metric in sorted(out):
            if not out[metric]:
                continue
            kind, help_text = _HELP[metric]
            text += [f"# HELP {metric} {help_text}", f"# TYPE {metric} {kind}", *out[metric]]
        return "\n".join(text) + "\n"

    @staticmethod
    def _render_labels(labels: tuple[tuple[str, str], ...]) -> str:
        return "{" + ",".join(f'{k}="{escape_label(v)}"' for k, v in labels) + "}" if labels else ""

    def _folder_gauges(self) -> dict[str, list[str]]:
        sizes, counts = [], []
        for module, files in discover(self.log_dir).items():
            label = escape_label(module)
            sizes.append(f'monitoring_log_bytes{{module="{label}"}} {sum(f.size for f in files)}')
            counts.append(f'monitoring_log_files{{module="{label}"}} {len(files)}')
        firing = []
        for alert in current_alerts(self.log_dir):
            if alert.get("state") == "firing":
                labels = {"rule": alert.get("rule"), "severity": alert.get("severity"), **(alert.get("labels") or {})}
                rendered = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items() if k.isidentifier())
                firing.append(f"monitoring_alerts_firing{{{rendered}}} 1")
        return {"monitoring_log_bytes": sizes, "monitoring_log_files": counts,
                "monitoring_alerts_firing": sorted(set(firing))}
