"""OTLP/HTTP export to a local receiver that decodes the protobuf requests."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from infrastructure.monitoring import PerformanceMonitorFactory, settings_from_mapping
from infrastructure.monitoring.exporters.otlp import OFFSETS_FILE, OtlpShipper
from infrastructure.monitoring.instrumentation.tracing import Tracer


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


def _attrs(items: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in items}


def received_logs(server: Any) -> list[dict[str, Any]]:
    out = []
    for path, headers, body in server.requests:
        if path != "/v1/logs":
            continue
        assert headers["Content-Type"] == "application/x-protobuf"
        request = ExportLogsServiceRequest.FromString(body)
        for rl in request.resource_logs:
            resource = _attrs(rl.resource.attributes)
            for sl in rl.scope_logs:
                for rec in sl.log_records:
                    out.append({**_attrs(rec.attributes), "_resource": resource, "_time": rec.time_unix_nano,
                                "_severity": rec.severity_text, "_event": rec.event_name})
    return out


def received_spans(server: Any) -> list[Any]:
    return [span for path, _, body in server.requests if path == "/v1/traces"
            for rs in ExportTraceServiceRequest.FromString(body).resource_spans
            for ss in rs.scope_spans for span in ss.spans]


def shipper(factory: Any, url: str, **otlp: Any) -> OtlpShipper:
    settings = settings_from_mapping({"otlp": {"endpoint": url, "service_name": "agent-api", **otlp}}).otlp
    return OtlpShipper(settings, factory.settings.logging.log_dir, writer=factory.get_writer("exporter"))


def test_records_and_spans_arrive_with_genai_names(log_dir: Path, capture_server: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITORING_LOG_DIR", str(log_dir))  # the tracer writes through the process's factory
    factory = PerformanceMonitorFactory.get_instance()
    collector = capture_server()
    llm = factory.create_monitor("llm")
    llm.record_llm_call(model="gpt-4o", provider="openai", response_time=1.25, prompt_tokens=120,
                        completion_tokens=30, success=False, error_type="rate_limit")
    factory.create_monitor("tool").record_tool_call("search", 0.4, True)
    tracer = Tracer(sample_rate=1.0)
    with tracer.start_as_current_span("agent_turn", kind="server") as root:
        root.set_attribute("user", "u1")
        with tracer.start_as_current_span("llm_request", kind="client") as child:
            child.add_event("retry", attempt=2)
            llm.record_llm_call(model="claude-3-5-haiku", provider="anthropic", response_time=0.5,
                                prompt_tokens=10, completion_tokens=5)
    result = shipper(factory, collector.url).ship()
    assert result is not None
    assert result.failed is None
    assert (result.records, result.spans) == (3, 2)

    logs = received_logs(collector)
    first = next(r for r in logs if r.get("gen_ai.request.model") == "gpt-4o")
    assert first["gen_ai.provider.name"] == "openai"
    assert first["gen_ai.usage.input_tokens"] == 120
    assert first["gen_ai.usage.output_tokens"] == 30
    assert first["gen_ai.operation.name"] == "chat"
    assert first["error.type"] == "rate_limit"
    assert first["_severity"] == "ERROR"
    assert first["_event"] == "llm.llm_call"
    assert first["_resource"]["service.name"] == "agent-api"
    tool = next(r for r in logs if r.get("gen_ai.tool.name") == "search")
    assert tool["gen_ai.operation.name"] == "execute_tool"

    spans = {s.name: s for s in received_spans(collector)}
    root_span, child_span = spans["agent_turn"], spans["llm_request"]
    assert child_span.parent_span_id == root_span.span_id
    assert child_span.trace_id == root_span.trace_id
    assert len(root_span.trace_id) == 16
    assert root_span.kind == 2  # server
    assert child_span.kind == 3  # client
    assert [e.name for e in child_span.events] == ["retry"]
    assert _attrs(root_span.attributes)["user"] == "u1"
    assert child_span.end_time_unix_nano >= child_span.start_time_unix_nano
    in_span = next(r for r in logs if r.get("gen_ai.request.model") == "claude-3-5-haiku")
    assert in_span["_time"] > 0


def _seqs(server: Any) -> list[int]:
    return sorted(r["seq"] for r in received_logs(server) if "seq" in r)


def test_offsets_survive_rotation_and_restart(make_factory: Any, capture_server: Any) -> None:
    factory = make_factory(rotation={"max_bytes": 4096, "backup_count": 100})
    writer = factory.get_writer("llm")
    collector = capture_server()
    for i in range(100):
        writer.log_event("llm_call", seq=i, model="m")
    first = shipper(factory, collector.url, batch_size=25)
    assert first.ship(max_batches=2) is not None  # two batches sent, then "the process stops"
    sent = _seqs(collector)
    assert 0 < len(sent) < 100
    assert sent == list(range(len(sent)))  # the oldest lines first
    for i in range(100, 300):  # the family rotates many times meanwhile
        writer.log_event("llm_call", seq=i, model="m")
    log_dir = factory.settings.logging.log_dir
    assert len(list(log_dir.glob("llm_metrics.log.*"))) > 5
    restarted = shipper(factory, collector.url, batch_size=25)  # a new process: only the offsets file carries on
    result = restarted.ship()
    assert result is not None
    assert result.failed is None
    assert _seqs(collector) == list(range(300))  # nothing twice, nothing skipped
    assert (log_dir / OFFSETS_FILE).stat().st_mode & 0o777 == 0o600
    assert restarted.ship().records == 0  # type: ignore[union-attr]


def test_a_refusing_collector_loses_nothing(factory: Any, capture_server: Any) -> None:
    writer = factory.get_writer("llm")
    for i in range(40):
        writer.log_event("llm_call", seq=i)
    down = capture_server(statuses=(503,))
    failed = shipper(factory, down.url, batch_size=10).ship()
    assert failed is not None
    assert failed.failed is not None
    assert "503" in failed.failed
    assert failed.batches == 0
    up = capture_server()
    done = shipper(factory, up.url, batch_size=10).ship()
    assert done is not None
    assert done.failed is None
    assert _seqs(up) == list(range(40))
    from .conftest import read_records

    faults = [r for r in read_records(factory.settings.logging.log_dir / "exporter_metrics.log")
              if r["operation"] == "otlp_export"]
    assert [f["success"] for f in faults] == [False]


def test_start_at_end_skips_what_was_there(factory: Any, capture_server: Any) -> None:
    writer = factory.get_writer("llm")
    for i in range(5):
        writer.log_event("llm_call", seq=i)
    collector = capture_server()
    ship = shipper(factory, collector.url, start_at="end")
    assert ship.ship().records == 0  # type: ignore[union-attr]
    writer.log_event("llm_call", seq=5)
    assert ship.ship().records == 1  # type: ignore[union-attr]
    assert _seqs(collector) == [5]


def test_the_scheduler_ships_in_the_background(make_factory: Any, capture_server: Any) -> None:
    collector = capture_server()
    factory = make_factory(extra={"otlp": {"enabled": True, "endpoint": collector.url, "interval_seconds": 1}})
    factory.get_writer("llm").log_event("llm_call", seq=1)
    service = factory.get_scheduled_cleaner()
    assert "otlp_export every 1s" in service.describe()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _seqs(collector) != [1]:
        time.sleep(0.2)
    factory.get_writer("llm").log_event("llm_call", seq=2)
    while time.monotonic() < deadline and _seqs(collector) != [1, 2]:
        time.sleep(0.2)
    assert _seqs(collector) == [1, 2]


def test_gz_files_are_read_on_the_first_run_only(factory: Any, capture_server: Any) -> None:
    import gzip

    log_dir: Path = factory.settings.logging.log_dir
    log_dir.mkdir(parents=True, exist_ok=True)
    with gzip.open(log_dir / "llm_metrics.log.2.gz", "wb") as gz:
        gz.write(b'{"timestamp": 1.0, "operation": "llm_call", "seq": 0}\n')
    (log_dir / "llm_metrics.log.1").write_bytes(b'{"timestamp": 2.0, "operation": "llm_call", "seq": 1}\n')
    collector = capture_server()
    ship = shipper(factory, collector.url)
    ship.ship()
    assert _seqs(collector) == [0, 1]
    # the cleaner compresses .1 into a new inode: already sent, not sent again
    with gzip.open(log_dir / "llm_metrics.log.1.gz", "wb") as gz:
        gz.write((log_dir / "llm_metrics.log.1").read_bytes())
    (log_dir / "llm_metrics.log.1").unlink()
    ship.ship()
    assert _seqs(collector) == [0, 1]
