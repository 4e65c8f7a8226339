"""OTLP metrics of one batch of records, for ``/v1/metrics``.

The shipper reads each family once (see ``otlp.py``); every batch of records it sends as
logs is also folded here into metrics and sent as one ``ExportMetricsServiceRequest``.
Each batch holds what happened since the previous one, so counters and histograms are
**delta** sums and histograms (start: the batch's first record of that series, end: its
last); a gauge is the batch's latest value of the series, at its record's time. A batch
sent twice after a crash (the shipper's at-least-once) counts twice, as its logs do.

The OpenTelemetry semantic conventions name what they cover (GenAI and system metrics,
with their advised histogram buckets); the rest is ours:

==============================================  =========  ===================================================
``gen_ai.client.operation.duration`` (s)         histogram  llm_call / embedding_call ``response_time``
``gen_ai.client.token.usage`` ({token})          histogram  prompt/input -> ``input``, completion -> ``output``
``gen_ai.client.operation.time_to_first_chunk``  histogram  ``time_to_first_token`` of streamed calls
``gen_ai.execute_tool.duration`` (s)             histogram  tool_call ``duration``
``llm.cost``                                     sum        ``cost``, in the price table's currency
``monitoring.count``                             sum        ``record_counter``: the sum of ``value``
``monitoring.value``                             gauge      ``record_gauge``: the latest ``value``
``monitoring.operation.duration`` (s)            histogram  other timers' ``duration``
``system.cpu.utilization`` and others            gauge/sum  the system sampler (see ``_SYSTEM``)
==============================================  =========  ===================================================

Resources are per ``service_name`` and ``environment`` of the records (``service.name``,
``deployment.environment.name``); records without them take the configured fallback.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["GENAI_DURATION_BUCKETS", "GENAI_TOKEN_BUCKETS", "MetricBatch", "nanos", "number", "resource_of"]

GENAI_DURATION_BUCKETS: Final = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96,
                                 81.92)
"""Advised by the GenAI conventions for ``gen_ai.client.operation.duration``."""
GENAI_TOKEN_BUCKETS: Final = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216,
                              67108864)
"""Advised by the GenAI conventions for ``gen_ai.client.token.usage``."""
DURATION_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
"""The conventions' advice for durations in seconds (``http.server.request.duration``)."""

_GENAI_OPERATIONS: Final = {"llm_call": "chat", "embedding_call": "embeddings"}
_SCOPE: Final = "llm-telemetry-logs"

Resource = tuple[str, str | None]
"""(service.name, deployment.environment.name)."""
Attributes = tuple[tuple[str, Any], ...]


@dataclass(frozen=True, slots=True)
class _Instrument:
    name: str
    kind: str
    """``histogram``, ``sum`` (monotonic delta), ``level`` (non-monotonic cumulative sum),
    ``total`` (monotonic cumulative sum, a counter the host keeps) or ``gauge``."""
    unit: str
    description: str
    bounds: tuple[float, ...] = ()


_DURATION = _Instrument("gen_ai.client.operation.duration", "histogram", "s", "GenAI operation duration.",
                        GENAI_DURATION_BUCKETS)
_TOKENS = _Instrument("gen_ai.client.token.usage", "histogram", "{token}", "Number of input and output tokens used.",
                      GENAI_TOKEN_BUCKETS)
_FIRST_CHUNK = _Instrument("gen_ai.client.operation.time_to_first_chunk", "histogram", "s",
                           "Time to receive the first chunk of a streamed response.", GENAI_DURATION_BUCKETS)
_TOOL = _Instrument("gen_ai.execute_tool.duration", "histogram", "s", "Tool execution duration.",
                    GENAI_DURATION_BUCKETS)
_COST = _Instrument("llm.cost", "sum", "1", "Cost of LLM calls, in the price table's currency.")
_COUNT = _Instrument("monitoring.count", "sum", "1", "Sum of the value of counter records (record_counter).")
_VALUE = _Instrument("monitoring.value", "gauge", "1", "Latest value of gauge records (record_gauge).")
_OPERATION = _Instrument("monitoring.operation.duration", "histogram", "s",
                         "Duration of timed operations outside llm and tool.", DURATION_BUCKETS)

_SYSTEM: Final[tuple[tuple[str, _Instrument, float, Attributes], ...]] = (
    ("cpu_percent", _Instrument("system.cpu.utilization", "gauge", "1", "Host CPU use, 0 to 1."), 0.01, ()),
    ("memory_percent", _Instrument("system.memory.utilization", "gauge", "1", "Host memory use, 0 to 1."), 0.01, ()),
    ("disk_percent", _Instrument("system.filesystem.utilization", "gauge", "1",
                                 "Use of the filesystem holding the logs, 0 to 1."), 0.01, ()),
    ("disk_free_bytes", _Instrument("system.filesystem.usage", "level", "By",
                                    "Bytes of the filesystem holding the logs, by state."), 1.0,
     (("system.filesystem.state", "free"),)),
    ("net_bytes_sent", _Instrument("system.network.io", "total", "By", "Bytes the host sent and received."), 1.0,
     (("network.io.direction", "transmit"),)),
    ("net_bytes_recv", _Instrument("system.network.io", "total", "By", "Bytes the host sent and received."), 1.0,
     (("network.io.direction", "receive"),)),
    ("process_rss_bytes", _Instrument("process.memory.usage", "level", "By", "Resident memory of the process."),
     1.0, ()),
    ("process_threads", _Instrument("process.thread.count", "level", "{thread}", "Threads of the process."), 1.0,
     ()),
    ("process_open_fds", _Instrument("process.unix.file_descriptor.count", "level", "{file_descriptor}",
                                     "File descriptors the process has open."), 1.0, ()),
)
"""System sample field -> instrument, the factor from our unit to its unit, fixed attributes."""


def number(value: Any) -> float | None:
    """A record's field as a metric value, for ``/v1/metrics`` and the live ``/metrics`` alike: a finite
    JSON number, else ``None`` (a boolean or a numeric string is not a measurement)."""
    if value.__class__ in (int, float) and value == value and value not in (math.inf, -math.inf):
        return float(value)
    return None


def resource_of(record: Mapping[str, Any], fallback: Resource) -> Resource:
    """The record's (service, environment), each falling back to the configured one."""
    service = record.get("service_name")
    environment = record.get("environment")
    return (str(service) if service is not None else fallback[0],
            str(environment) if environment is not None else fallback[1])


@dataclass
class _Point:
    start: float
    end: float
    value: float = 0.0
    counts: list[int] = field(default_factory=list)
    count: int = 0
    low: float = math.inf
    high: float = -math.inf


class MetricBatch:
    """The metrics of one batch, folded record by record, then ``request``-ed as protobuf bytes."""

    def __init__(self, fallback: Resource) -> None:
        self.fallback = fallback
        self._points: dict[_Instrument, dict[tuple[Resource, Attributes], _Point]] = {}

    def __len__(self) -> int:
        return sum(len(p) for p in self._points.values())

    # ------------------------------------------------------------------ folding

    def _point(self, instrument: _Instrument, resource: Resource, attributes: Attributes, ts: float) -> _Point:
        table = self._points.setdefault(instrument, {})
        key = (resource, attributes)
        point = table.get(key)
        if point is None:
            point = table[key] = _Point(ts, ts, counts=[0] * (len(instrument.bounds) + 1))
        point.start, point.end = min(point.start, ts), max(point.end, ts)
        return point

    def _record(self, instrument: _Instrument, resource: Resource, attributes: Attributes, ts: float,
                value: float) -> None:
        if instrument.kind == "histogram":
            if value < 0:
                return
            point = self._point(instrument, resource, attributes, ts)
            point.counts[bisect.bisect_left(instrument.bounds, value)] += 1
            point.count += 1
            point.value += value
            point.low, point.high = min(point.low, value), max(point.high, value)
        elif instrument.kind == "sum":
            if value >= 0:  # a monotonic sum never goes down
                self._point(instrument, resource, attributes, ts).value += value
        else:  # gauge, level, total: the latest value of the batch
            table = self._points.setdefault(instrument, {})
            old = table.get((resource, attributes))
            if old is None or ts >= old.end:
                table[(resource, attributes)] = _Point(ts, ts, value)

    def add(self, module: str, record: Mapping[str, Any]) -> None:
        """Fold one record of ``module``."""
        ts = number(record.get("timestamp")) or 0.0
        resource = resource_of(record, self.fallback)
        op = str(record.get("operation"))
        host = record.get("host")
        where: Attributes = (("host.name", str(host)),) if host is not None else ()
        kind = record.get("metric_type")
        if kind in ("counter", "gauge"):
            value = number(record.get("value", 1 if kind == "counter" else None))
            if value is not None:
                self._record(_COUNT if kind == "counter" else _VALUE, resource,
                             (("module", module), ("operation", op), *where), ts, value)
        if module == "llm" and (op in _GENAI_OPERATIONS or op == "llm_attempt"):
            self._llm(record, op, resource, where, ts)
        elif module == "tool" and op == "tool_call":
            duration = number(record.get("duration"))
            if duration is not None:
                attrs: Attributes = (("gen_ai.operation.name", "execute_tool"),
                                     ("gen_ai.tool.name", str(record.get("tool_name"))), *_error(record), *where)
                self._record(_TOOL, resource, attrs, ts, duration)
        elif module == "system" and op == "system_sample":
            for name, instrument, factor, fixed in _SYSTEM:
                value = number(record.get(name))
                if value is not None:
                    self._record(instrument, resource, (*fixed, *where), ts, value * factor)
        else:
            duration = number(record.get("duration"))
            if duration is not None:
                self._record(_OPERATION, resource, (("module", module), ("operation", op), *where), ts, duration)

    def _llm(self, record: Mapping[str, Any], op: str, resource: Resource, where: Attributes, ts: float) -> None:
        operation = _GENAI_OPERATIONS.get(op)
        if operation is None:
            return  # attempts are parts of a call; other operations are no GenAI call
        base: Attributes = (("gen_ai.operation.name", operation),
                            *((("gen_ai.provider.name", str(record["provider"])),) if record.get("provider") else ()),
                            *((("gen_ai.request.model", str(record["model"])),) if record.get("model") else ()))
        duration = number(record.get("response_time"))
        if duration is not None:
            self._record(_DURATION, resource, (*base, *_error(record), *where), ts, duration)
        for name, token_type in (("prompt_tokens", "input"), ("input_tokens", "input"),
                                 ("completion_tokens", "output"), ("output_tokens", "output")):
            tokens = number(record.get(name))
            if tokens:  # 0 is what the writer records when the count is unknown (a failed call): not a usage
                self._record(_TOKENS, resource, (*base, ("gen_ai.token.type", token_type), *where), ts, tokens)
        first = number(record.get("time_to_first_token"))
        if first is not None:
            self._record(_FIRST_CHUNK, resource, (*base, *where), ts, first)
        cost = number(record.get("cost"))
        if cost:
            self._record(_COST, resource, (*base, *where), ts, cost)

    # ------------------------------------------------------------------ the request

    def request(self, pb: Mapping[str, Any], any_value: Callable[[Any], Any]) -> bytes:
        """The ``ExportMetricsServiceRequest`` of everything folded (``pb``: the protobuf modules)."""
        metrics_pb2, common_pb2, resource_pb2 = pb["metrics"], pb["common"], pb["resource"]
        by_resource: dict[Resource, list[Any]] = {}
        for instrument, table in self._points.items():
            per_resource: dict[Resource, list[Any]] = {}
            for (resource, attributes), point in sorted(table.items(), key=lambda kv: repr(kv[0])):
                per_resource.setdefault(resource, []).append(
                    _data_point(metrics_pb2, common_pb2, any_value, instrument, attributes, point))
            for resource, points in per_resource.items():
                by_resource.setdefault(resource, []).append(_metric(metrics_pb2, instrument, points))
        out = []
        for (service, environment), metrics in by_resource.items():
            attrs = {"service.name": service, "deployment.environment.name": environment,
                     "telemetry.sdk.name": _SCOPE}
            resource = resource_pb2.Resource(attributes=[
                common_pb2.KeyValue(key=k, value=any_value(v)) for k, v in attrs.items() if v is not None])
            out.append(metrics_pb2.ResourceMetrics(resource=resource, scope_metrics=[metrics_pb2.ScopeMetrics(
                scope=common_pb2.InstrumentationScope(name=_SCOPE), metrics=metrics)]))
        request = pb["service"].ExportMetricsServiceRequest(resource_metrics=out)
        return bytes(request.SerializeToString())


def _error(record: Mapping[str, Any]) -> Attributes:
    """``error.type`` of a failed call (its ``error_type``, else the conventions' ``_OTHER``)."""
    if record.get("success") is not False:
        return ()
    return (("error.type", str(record.get("error_type") or "_OTHER")),)


def nanos(seconds: Any) -> int:
    """Seconds since the epoch as OTLP's nanoseconds; 0 (unknown) for what is not a number."""
    return int(float(seconds) * 1e9) if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) else 0


def _data_point(metrics_pb2: Any, common_pb2: Any, any_value: Callable[[Any], Any], instrument: _Instrument,
                attributes: Attributes, point: _Point) -> Any:
    attrs = [common_pb2.KeyValue(key=k, value=any_value(v)) for k, v in attributes]
    if instrument.kind == "histogram":
        return metrics_pb2.HistogramDataPoint(
            attributes=attrs, start_time_unix_nano=nanos(point.start), time_unix_nano=nanos(point.end),
            count=point.count, sum=point.value, bucket_counts=point.counts, explicit_bounds=list(instrument.bounds),
            min=point.low, max=point.high)
    start = nanos(point.start) if instrument.kind == "sum" else 0
    return metrics_pb2.NumberDataPoint(attributes=attrs, start_time_unix_nano=start,
                                       time_unix_nano=nanos(point.end), as_double=point.value)


def _metric(metrics_pb2: Any, instrument: _Instrument, points: Iterable[Any]) -> Any:
    fields = {"name": instrument.name, "unit": instrument.unit, "description": instrument.description}
    delta, cumulative = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA, metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    if instrument.kind == "histogram":
        return metrics_pb2.Metric(**fields, histogram=metrics_pb2.Histogram(data_points=list(points),
                                                                            aggregation_temporality=delta))
    if instrument.kind == "gauge":
        return metrics_pb2.Metric(**fields, gauge=metrics_pb2.Gauge(data_points=list(points)))
    monotonic = instrument.kind in ("sum", "total")
    temporality = delta if instrument.kind == "sum" else cumulative
    return metrics_pb2.Metric(**fields, sum=metrics_pb2.Sum(data_points=list(points), is_monotonic=monotonic,
                                                            aggregation_temporality=temporality))
