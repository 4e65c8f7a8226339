"""Prometheus metrics derived from the log files, for ``/metrics``.

The server tails the families (see ``tail.py``) and folds each new line into counters,
gauges and histograms, so a scrape costs what was written since the previous one, not a
rescan of the folder, and the counters only go up: they count what this server has read
since it started (the folder's whole content at start-up, then every new line). A server
restart is a counter reset, which ``rate()`` and ``increase()`` handle. Deleting old files
(retention) changes nothing here: lines already counted stay counted.

Each metric type keeps its Prometheus meaning:

* a **counter** record (``record_counter("auth_requests", value=5)``) adds its ``value``
  to ``monitoring_count_total`` (negative values are left out: a counter never goes down);
* a **gauge** record (``record_gauge("queue_size", 1200)``) sets ``monitoring_value`` to
  its latest value per label set, exposed with the record's own timestamp (Prometheus
  keeps a sample only while it is recent: a gauge nobody updates for hours disappears);
* a **timer** keeps its histogram (``monitoring_operation_duration_seconds``, and the
  LLM and tool latency histograms);
* the system sampler's fields are gauges (CPU, memory, disk, process threads, open files,
  process CPU and RSS) and counters (network bytes), with the sample's timestamp.

Labels are the low-cardinality fields only — ``module``, ``operation``, ``model``,
``provider``, ``tool``, ``success``, ``host``, and the global labels ``service_name`` and
``environment`` when the records carry them — and each metric holds at most
``max_series`` label sets; more fold into one series whose labels are all ``__other__``
(counted by ``monitoring_series_overflow_total``), so a flood of model names cannot
exhaust the server or Prometheus. The names and their meanings are listed in
``docs/exports.md``; the text is written by ``_exposition.py``.
"""

from __future__ import annotations

import bisect
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import orjson

from .._exposition import CONTENT_TYPE, Family, Labels, label_text, labels_of, render
from ..alerts.engine import current_alerts
from ..query.files import discover
from .otlp_metrics import number
from .tail import Tailer

__all__ = ["CONTENT_TYPE", "LiveMetrics"]

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
    "monitoring_count_total": ("counter", "Sum of the value of counter records (record_counter), per operation."),
    "monitoring_value": ("gauge", "Latest value of gauge records (record_gauge), per operation, at its own time."),
    "system_cpu_percent": ("gauge", "Latest host CPU use sampled by the system monitor."),
    "system_memory_percent": ("gauge", "Latest host memory use sampled by the system monitor."),
    "system_memory_available_bytes": ("gauge", "Latest memory available on the host."),
    "system_disk_percent": ("gauge", "Latest use of the disk holding the logs, percent."),
    "system_disk_free_bytes": ("gauge", "Latest free bytes of the disk holding the logs."),
    "system_network_sent_bytes_total": ("counter", "Bytes the host sent since it started (latest sample)."),
    "system_network_received_bytes_total": ("counter", "Bytes the host received since it started (latest sample)."),
    "system_process_rss_bytes": ("gauge", "Latest resident memory of the sampled process."),
    "system_process_cpu_percent": ("gauge", "Latest CPU use of the sampled process, percent of one core."),
    "system_process_threads": ("gauge", "Latest thread count of the sampled process."),
    "system_process_open_fds": ("gauge", "Latest open file descriptors of the sampled process."),
    "monitoring_alerts_firing": ("gauge", "1 for each alert firing now."),
    "monitoring_log_bytes": ("gauge", "Bytes on disk per log family."),
    "monitoring_log_files": ("gauge", "Files per log family (live, rotated, compressed)."),
    "monitoring_corrupt_lines_total": ("counter", "Lines that were not valid JSON records (skipped)."),
    "monitoring_series_overflow_total": ("counter", "Records folded into __other__ series (too many label sets)."),
}

_SYSTEM_FIELDS: Final = (
    ("cpu_percent", "system_cpu_percent"), ("memory_percent", "system_memory_percent"),
    ("memory_available_bytes", "system_memory_available_bytes"), ("disk_percent", "system_disk_percent"),
    ("disk_free_bytes", "system_disk_free_bytes"), ("net_bytes_sent", "system_network_sent_bytes_total"),
    ("net_bytes_recv", "system_network_received_bytes_total"), ("process_rss_bytes", "system_process_rss_bytes"),
    ("process_cpu_percent", "system_process_cpu_percent"), ("process_threads", "system_process_threads"),
    ("process_open_fds", "system_process_open_fds"),
)
"""The system sample's fields and their metrics (a ``_total`` one is a counter the host keeps)."""


def _global(r: dict[str, Any]) -> Labels:
    """The record's global labels (``service_name``, ``environment``), when it has them."""
    service, environment = r.get("service_name"), r.get("environment")
    if service is None and environment is None:
        return ()
    return tuple((k, label_text(v)) for k, v in (("service_name", service), ("environment", environment))
                 if v is not None)


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
        self._counters: dict[str, dict[Labels, float]] = {}
        self._histograms: dict[str, dict[Labels, list[float]]] = {}
        self._gauges: dict[str, dict[Labels, tuple[float, float]]] = {}

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

    def _labels(self, metric: str, table: dict[Any, Any], labels: Labels) -> Labels:
        if labels in table or len(table) < self.max_series:
            return labels
        self._inc("monitoring_series_overflow_total", (("metric", metric),))
        return tuple((k, _OTHER) for k, _ in labels)

    def _inc(self, metric: str, labels: Labels, by: float = 1.0) -> None:
        table = self._counters.setdefault(metric, {})
        labels = self._labels(metric, table, labels) if metric != "monitoring_series_overflow_total" else labels
        table[labels] = table.get(labels, 0.0) + by

    def _observe(self, metric: str, labels: Labels, value: float) -> None:
        table = self._histograms.setdefault(metric, {})
        labels = self._labels(metric, table, labels)
        row = table.get(labels)
        if row is None:
            row = table[labels] = [0.0] * (len(self.buckets) + 2)  # per-bucket counts, +Inf, sum
        row[bisect.bisect_left(self.buckets, value)] += 1
        row[-1] += value

    def _gauge(self, metric: str, labels: Labels, ts: float, value: float) -> None:
        table = self._gauges.setdefault(metric, {})
        labels = self._labels(metric, table, labels)
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
        op = label_text(r.get("operation"))
        success = r.get("success")
        ok = "true" if success is True else "false" if success is False else ""
        host = label_text(r.get("host"))
        extra = _global(r)
        self._inc("monitoring_records_total",
                  (("module", module), ("operation", op), ("success", ok), ("host", host), *extra))
        kind = r.get("metric_type")
        if kind in ("counter", "gauge"):
            self._fold_metric(r, kind, (("module", module), ("operation", op), ("host", host), *extra))
        if module == "llm":
            self._fold_llm(r, module, op, ok, (("host", host), *extra))
            return
        duration = number(r.get("duration"))
        if module == "tool" and op == "tool_call":
            tool = label_text(r.get("tool_name"))
            self._inc("tool_calls_total", (("tool", tool), ("success", ok), ("host", host), *extra))
            if duration is not None:
                self._observe("tool_call_duration_seconds", (("tool", tool), ("host", host), *extra), duration)
            return
        if module == "system" and op == "system_sample":
            ts = number(r.get("timestamp")) or 0.0
            for field_name, metric in _SYSTEM_FIELDS:
                value = number(r.get(field_name))
                if value is not None:
                    self._gauge(metric, (("host", host), *extra), ts, value)
            return
        if duration is not None:
            self._observe("monitoring_operation_duration_seconds",
                          (("module", module), ("operation", op), ("host", host), *extra), duration)

    def _fold_metric(self, r: dict[str, Any], kind: str, labels: Labels) -> None:
        """A ``record_counter`` adds its value; a ``record_gauge`` sets the latest one."""
        raw = r.get("value", 1 if kind == "counter" else None)
        value = number(raw)
        if value is None:
            return
        if kind == "counter":
            if value >= 0:
                self._inc("monitoring_count_total", labels, value)
        else:
            self._gauge("monitoring_value", labels, number(r.get("timestamp")) or 0.0, value)

    def _fold_llm(self, r: dict[str, Any], module: str, op: str, ok: str, where: Labels) -> None:
        model, provider = label_text(r.get("model")), label_text(r.get("provider"))
        base = (("operation", op), ("model", model), ("provider", provider))
        self._inc("llm_requests_total", (("module", module), *base, ("success", ok), *where))
        for kind in ("prompt", "completion"):
            n = number(r.get(f"{kind}_tokens"))
            if n:
                self._inc("llm_tokens_total", (*base, ("type", kind), *where), n)
        cost = number(r.get("cost"))
        if cost:
            self._inc("llm_cost_total", (*base, *where), cost)
        rt = number(r.get("response_time"))
        if rt is not None:
            self._observe("llm_request_duration_seconds", (*base, *where), rt)
        ttft = number(r.get("time_to_first_token"))
        if ttft is not None:
            self._observe("llm_time_to_first_token_seconds", (("model", model), ("provider", provider), *where),
                          ttft)
        duration = number(r.get("duration"))
        if duration is not None:  # a timer of the llm module's own (record_timer)
            self._observe("monitoring_operation_duration_seconds",
                          (("module", module), ("operation", op), *where), duration)

    # ------------------------------------------------------------------ exposition

    def render(self, *, refresh: bool = True) -> str:
        """The text exposition format (0.0.4); passes ``promtool check metrics``."""
        if refresh:
            self.refresh(wait=False)
        families: list[Family] = []
        with self._lock:
            for metric, table in self._counters.items():
                fam = self._family(metric, families)
                for labels, value in sorted(table.items()):
                    fam.add(value, labels)
            for metric, rows in self._histograms.items():
                fam = self._family(metric, families)
                for labels, row in sorted(rows.items()):
                    fam.histogram(labels, self.buckets, row[:-1], row[-1])
            for metric, gauges in self._gauges.items():
                fam = self._family(metric, families)
                for labels, (ts, value) in sorted(gauges.items()):
                    fam.add(value, labels, timestamp=ts or None)
        families += self._folder_gauges()
        return render(sorted(families, key=lambda f: f.name))

    @staticmethod
    def _family(metric: str, families: list[Family]) -> Family:
        kind, help_text = _HELP[metric]
        fam = Family(metric, kind, help_text)
        families.append(fam)
        return fam

    def _folder_gauges(self) -> list[Family]:
        sizes = self._family("monitoring_log_bytes", [])
        counts = self._family("monitoring_log_files", [])
        for module, files in sorted(discover(self.log_dir).items()):
            sizes.add(sum(f.size for f in files), (("module", module),))
            counts.add(len(files), (("module", module),))
        firing = self._family("monitoring_alerts_firing", [])
        alerts = {labels_of({"rule": a.get("rule"), "severity": a.get("severity"),
                             **{k: v for k, v in (a.get("labels") or {}).items() if k.isidentifier()}})
                  for a in current_alerts(self.log_dir) if a.get("state") == "firing"}
        for labels in sorted(alerts):
            firing.add(1, labels)
        return [sizes, counts, firing]
