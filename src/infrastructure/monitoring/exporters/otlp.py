"""Ship records and spans to an OpenTelemetry Collector over OTLP/HTTP (protobuf).

Needs the ``otlp`` extra (``pip install '.[otlp]'``: the ``opentelemetry-proto`` messages;
no SDK, no exporter thread in the application). A scheduled job reads what the
families gained since the last run (see ``tail.py``), turns each record into an OTLP
log record — and each line of ``trace_metrics.log`` into a span — and POSTs batches to
``{endpoint}/v1/logs`` and ``{endpoint}/v1/traces``; the metrics each batch of records
adds up to (``otlp_metrics.py``: GenAI histograms, counters, gauges, system figures)
go to ``{endpoint}/v1/metrics`` with it (``otlp.metrics: false`` turns that off).

Resources are per ``service_name`` and ``environment`` of the records (the global
labels the writer adds), as ``service.name`` and ``deployment.environment.name``;
records without them take the global labels of the configuration, then
``otlp.service_name``.

Positions live in ``.otlp_offsets.json`` beside the logs, replaced atomically after
every acknowledged batch: a restart resumes after the last batch the collector
accepted, across rotations, so nothing is skipped, and at most the one batch in flight
when the process was killed is sent again (OTLP receivers are expected to tolerate
that). A batch the collector refuses stays unsent and is retried at the next run; the
failure is logged to ``exporter_metrics.log`` once per run. A refused ``/v1/metrics`` (a
collector without a metrics pipeline) drops that run's metrics but not its logs.

Attribute names follow the OpenTelemetry GenAI conventions where one exists
(``gen_ai.request.model``, ``gen_ai.provider.name``, ``gen_ai.usage.input_tokens``,
``gen_ai.usage.output_tokens``, ``gen_ai.operation.name``, ``gen_ai.tool.name``,
``error.type``); every other field keeps its own name.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from .._statefile import exclusive, load_state, save_state
from ..ops_config import OtlpSettings
from .otlp_metrics import MetricBatch, Resource, nanos, resource_of
from .tail import Chunk, Tailer

__all__ = ["OFFSETS_FILE", "OtlpShipper", "ShipResult", "log_record_attributes"]

_log = logging.getLogger("infrastructure.monitoring.otlp")

OFFSETS_FILE: Final = ".otlp_offsets.json"
_LOCK_FILE: Final = ".otlp.lock"
_TRACE_MODULE: Final = "trace"
_GENAI_OPERATIONS: Final = {"llm_call": "chat", "llm_attempt": "chat", "embedding_call": "embeddings",
                            "tool_call": "execute_tool"}
_RENAMES: Final = {"model": "gen_ai.request.model", "prompt_tokens": "gen_ai.usage.input_tokens",
                   "input_tokens": "gen_ai.usage.input_tokens", "completion_tokens": "gen_ai.usage.output_tokens",
                   "output_tokens": "gen_ai.usage.output_tokens", "error_type": "error.type",
                   "tool_name": "gen_ai.tool.name", "host": "host.name", "pid": "process.pid"}
_SKIP: Final = frozenset({"timestamp", "trace_id", "span_id", "service_name", "environment"})
"""Not attributes: the record's time and ids have fields of their own, the global labels are the resource's."""
_KINDS: Final = {"internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}


@dataclass
class ShipResult:
    records: int = 0
    spans: int = 0
    batches: int = 0
    skipped_lines: int = 0
    metric_points: int = 0
    """Data points sent to ``/v1/metrics``."""
    failed: str | None = None
    """Why the run stopped early (the collector refused or was unreachable); retried next run."""
    metrics_failed: str | None = None
    """Why ``/v1/metrics`` was refused (a collector without a metrics pipeline answers 404): the logs
    still go, and the rest of the run posts no metrics, so one missing pipeline never holds back the logs."""
    seconds: float = 0.0
    by_module: dict[str, int] = field(default_factory=dict)


def _pb() -> Any:
    try:
        # the optional otlp extra: loaded only by a process that exports
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
        from opentelemetry.proto.common.v1 import common_pb2
        from opentelemetry.proto.logs.v1 import logs_pb2
        from opentelemetry.proto.resource.v1 import resource_pb2
        from opentelemetry.proto.trace.v1 import trace_pb2
    except ImportError as exc:  # pragma: no cover - depends on the extra being installed
        raise RuntimeError("the OTLP exporter needs the 'otlp' extra: pip install 'llm-telemetry-logs[otlp]'") \
            from exc
    return logs_service_pb2, trace_service_pb2, common_pb2, logs_pb2, resource_pb2, trace_pb2


def _metrics_pb() -> dict[str, Any]:
    """The metrics messages (the same ``otlp`` extra as the logs and traces)."""
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2  # the optional otlp extra
    from opentelemetry.proto.common.v1 import common_pb2  # the optional otlp extra
    from opentelemetry.proto.metrics.v1 import metrics_pb2  # the optional otlp extra
    from opentelemetry.proto.resource.v1 import resource_pb2  # the optional otlp extra

    return {"service": metrics_service_pb2, "common": common_pb2, "metrics": metrics_pb2, "resource": resource_pb2}


def log_record_attributes(module: str, record: dict[str, Any]) -> dict[str, Any]:
    """A record's fields under OpenTelemetry names (GenAI conventions where they exist)."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key in _SKIP or value is None:
            continue
        out[_RENAMES.get(key, key)] = value
    op = record.get("operation")
    if module == "llm" or op == "tool_call":
        out["gen_ai.operation.name"] = _GENAI_OPERATIONS.get(str(op), str(op))
        if record.get("provider") is not None:
            out["gen_ai.provider.name"] = record["provider"]
            out["gen_ai.system"] = record["provider"]  # the older name, still read by many backends
    out["event.name"] = f"{module}.{op}"
    return out


def _any(common_pb2: Any, value: Any) -> Any:
    if isinstance(value, bool):
        return common_pb2.AnyValue(bool_value=value)
    if isinstance(value, int) and -(2**63) <= value < 2**63:
        return common_pb2.AnyValue(int_value=value)
    if isinstance(value, float):
        return common_pb2.AnyValue(double_value=value)
    if isinstance(value, str):
        return common_pb2.AnyValue(string_value=value)
    if isinstance(value, list):
        return common_pb2.AnyValue(array_value=common_pb2.ArrayValue(values=[_any(common_pb2, v) for v in value]))
    if isinstance(value, dict):
        return common_pb2.AnyValue(kvlist_value=common_pb2.KeyValueList(values=_kvs(common_pb2, value)))
    return common_pb2.AnyValue(string_value=str(value))


def _kvs(common_pb2: Any, attributes: dict[str, Any]) -> list[Any]:
    return [common_pb2.KeyValue(key=str(k), value=_any(common_pb2, v)) for k, v in attributes.items()
            if v is not None]


def _id(hex_text: Any, size: int) -> bytes:
    try:
        raw = bytes.fromhex(str(hex_text))
    except ValueError:
        return b""
    return raw if len(raw) == size else b""


class OtlpShipper:
    """Sends new log lines to a collector; one shipper per folder at a time (a lock)."""

    def __init__(self, settings: OtlpSettings, log_dir: str | os.PathLike[str], *, writer: Any = None,
                 labels: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.log_dir = Path(log_dir)
        self.state_path = self.log_dir / OFFSETS_FILE
        self._writer = writer
        self._pb = _pb()
        self._metrics_pb = _metrics_pb() if settings.metrics else {}
        self._host = socket.gethostname()
        given = labels or {}
        self.fallback: Resource = (given.get("service_name") or settings.service_name, given.get("environment"))
        """``service.name`` and ``deployment.environment.name`` of records without global labels."""

    def ship(self, *, wait: bool = True, max_batches: int | None = None) -> ShipResult | None:
        """Send everything new (or ``max_batches`` batches); ``None`` when another process is shipping."""
        with exclusive(self.log_dir / _LOCK_FILE, wait=wait) as held:
            if not held:
                return None
            started = time.perf_counter()
            state = load_state(self.state_path)
            positions = state.get("positions") if state.get("endpoint") == self.settings.endpoint else None
            tailer = Tailer(self.log_dir, self.settings.modules, positions=positions,
                            start_at=self.settings.start_at)
            result = ShipResult()
            try:
                for chunk in tailer.chunks(max_lines=self.settings.batch_size):
                    self._send(chunk, result)
                    tailer.commit(chunk)
                    self._save(tailer)
                    result.batches += 1
                    if max_batches is not None and result.batches >= max_batches:
                        break
                else:
                    self._save(tailer)  # forget files that are gone
            except _Refused as exc:
                result.failed = str(exc)
                _log.warning("OTLP export to %s stopped: %s (retried at the next run)", self.settings.endpoint, exc)
                if self._writer is not None:
                    self._writer.log_event("otlp_export", success=False, error_message=str(exc),
                                           endpoint=self.settings.endpoint, sent_batches=result.batches)
            result.seconds = time.perf_counter() - started
            return result

    def _save(self, tailer: Tailer) -> None:
        save_state(self.state_path, {"version": 1, "endpoint": self.settings.endpoint, "positions": tailer.positions,
                                     "saved_at": time.time()})

    def _send(self, chunk: Chunk, result: ShipResult) -> None:
        records = []
        for line in chunk.lines:
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                record = None
            if isinstance(record, dict):
                records.append(record)
            elif line.strip():
                result.skipped_lines += 1
        if not records:
            return
        if chunk.module == _TRACE_MODULE:
            body, path = self._spans(records), "/v1/traces"
            result.spans += len(records)
        else:
            body, path = self._logs(chunk.module, records), "/v1/logs"
            result.records += len(records)
        result.by_module[chunk.module] = result.by_module.get(chunk.module, 0) + len(records)
        self._post(path, body)
        if self._metrics_pb and chunk.module != _TRACE_MODULE:
            batch = MetricBatch(self.fallback)
            for record in records:
                batch.add(chunk.module, record)
            if len(batch) and result.metrics_failed is None:
                try:
                    self._post("/v1/metrics", batch.request(self._metrics_pb, lambda v: _any(self._pb[2], v)))
                except _Refused as exc:
                    self._metrics_refused(result, exc)
                else:
                    result.metric_points += len(batch)

    def _metrics_refused(self, result: ShipResult, exc: _Refused) -> None:
        """Drop this run's metrics, once: they are derived from the logs, which stay the thing to deliver."""
        result.metrics_failed = str(exc)
        _log.warning("OTLP metrics to %s dropped for this run: %s (logs still sent)", self.settings.endpoint, exc)
        if self._writer is not None:
            self._writer.log_event("otlp_export", success=False, error_message=str(exc),
                                   endpoint=self.settings.endpoint, signal="metrics")

    def _resource(self, resource: Resource) -> Any:
        common_pb2, resource_pb2 = self._pb[2], self._pb[4]
        service, environment = resource
        return resource_pb2.Resource(attributes=_kvs(common_pb2, {
            "service.name": service, "deployment.environment.name": environment,
            "telemetry.sdk.name": "llm-telemetry-logs", "exporter.host.name": self._host}))

    def _by_resource(self, records: list[dict[str, Any]]) -> dict[Resource, list[dict[str, Any]]]:
        out: dict[Resource, list[dict[str, Any]]] = {}
        for r in records:
            out.setdefault(resource_of(r, self.fallback), []).append(r)
        return out

    def _logs(self, module: str, records: list[dict[str, Any]]) -> bytes:
        logs_service_pb2, _, common_pb2, logs_pb2, _, _ = self._pb
        request = logs_service_pb2.ExportLogsServiceRequest(resource_logs=[logs_pb2.ResourceLogs(
            resource=self._resource(resource), scope_logs=[logs_pb2.ScopeLogs(
                scope=common_pb2.InstrumentationScope(name=f"llm-telemetry-logs.{module}"),
                log_records=self._log_records(module, group))])
            for resource, group in self._by_resource(records).items()])
        return bytes(request.SerializeToString())

    def _log_records(self, module: str, records: list[dict[str, Any]]) -> list[Any]:
        _, _, common_pb2, logs_pb2, _, _ = self._pb
        out = []
        for r in records:
            failed = r.get("success") is False
            out.append(logs_pb2.LogRecord(
                time_unix_nano=nanos(r.get("timestamp")), observed_time_unix_nano=time.time_ns(),
                severity_number=logs_pb2.SEVERITY_NUMBER_ERROR if failed else logs_pb2.SEVERITY_NUMBER_INFO,
                severity_text="ERROR" if failed else "INFO",
                body=common_pb2.AnyValue(string_value=f"{module}.{r.get('operation')}"),
                attributes=_kvs(common_pb2, log_record_attributes(module, r)),
                trace_id=_id(r.get("trace_id"), 16), span_id=_id(r.get("span_id"), 8),
                event_name=f"{module}.{r.get('operation')}"))
        return out

    def _spans(self, records: list[dict[str, Any]]) -> bytes:
        _, trace_service_pb2, common_pb2, _, _, trace_pb2 = self._pb
        request = trace_service_pb2.ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans(
            resource=self._resource(resource), scope_spans=[trace_pb2.ScopeSpans(
                scope=common_pb2.InstrumentationScope(name=str(name or "llm-telemetry-logs.trace"),
                                                      version=str(version or "")),
                schema_url=str(schema_url or ""), spans=self._span_list(spans))
                for (name, version, schema_url), spans in _by_scope(group).items()])
            for resource, group in self._by_resource(records).items()])
        return bytes(request.SerializeToString())

    def _span_list(self, records: list[dict[str, Any]]) -> list[Any]:
        _, _, common_pb2, _, _, trace_pb2 = self._pb
        spans = []
        for r in records:
            start = r.get("start_time", r.get("timestamp"))
            raw_duration = r.get("duration")
            duration = float(raw_duration) if isinstance(raw_duration, (int, float)) else 0.0
            events = []
            for e in r.get("events") or []:
                if isinstance(e, dict):
                    attrs = {k: v for k, v in e.items() if k not in ("name", "timestamp")}
                    events.append(trace_pb2.Span.Event(name=str(e.get("name", "")),
                                                       time_unix_nano=nanos(e.get("timestamp")),
                                                       attributes=_kvs(common_pb2, attrs)))
            status = r.get("status")
            attributes = dict(r.get("attributes") or {}) if isinstance(r.get("attributes"), dict) else {}
            for key in ("host", "pid", "session_id"):
                if r.get(key) is not None:
                    attributes[_RENAMES.get(key, key)] = r[key]
            links = [trace_pb2.Span.Link(trace_id=_id(link.get("trace_id"), 16), span_id=_id(link.get("span_id"), 8),
                                         attributes=_kvs(common_pb2, dict(link.get("attributes") or {})))
                     for link in r.get("links") or [] if isinstance(link, dict)]
            spans.append(trace_pb2.Span(
                trace_id=_id(r.get("trace_id"), 16), span_id=_id(r.get("span_id"), 8), links=links,
                parent_span_id=_id(r.get("parent_span_id"), 8), name=str(r.get("name", "")),
                kind=_KINDS.get(str(r.get("kind")), 1), start_time_unix_nano=nanos(start),
                end_time_unix_nano=nanos(start) + int(duration * 1e9),
                attributes=_kvs(common_pb2, attributes), events=events,
                status=trace_pb2.Status(code=2 if status == "error" else 1 if status == "ok" else 0,
                                        message=str(r.get("status_message") or ""))))
        return spans

    def _post(self, path: str, body: bytes) -> None:
        url = self.settings.endpoint + path
        request = urllib.request.Request(url, data=body, method="POST",  # noqa: S310 - http(s) checked at load
                                         headers={"Content-Type": "application/x-protobuf",
                                                  **self.settings.headers})
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout) as response:  # noqa: S310
                response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                raise _Refused(f"{url} answered {exc.code}") from None
        except OSError as exc:
            raise _Refused(f"{url} unreachable: {exc}") from None


def _by_scope(records: list[dict[str, Any]]) -> dict[tuple[Any, Any, Any], list[dict[str, Any]]]:
    """Spans by instrumentation scope (their tracer's ``get_tracer(name, version)``), in order."""
    out: dict[tuple[Any, Any, Any], list[dict[str, Any]]] = {}
    for r in records:
        key = (r.get("scope_name"), r.get("scope_version"), r.get("scope_schema_url"))
        out.setdefault(key, []).append(r)
    return out


class _Refused(Exception):  # noqa: N818 - internal signal, never leaves this module
    pass
