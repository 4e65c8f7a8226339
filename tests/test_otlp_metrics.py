"""OTLP /v1/metrics: what the shipper posts, decoded with opentelemetry-proto at a local receiver."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from infrastructure.monitoring import LightweightPerformanceMonitor, settings_from_mapping
from infrastructure.monitoring.exporters.otlp import OtlpShipper
from infrastructure.monitoring.exporters.otlp_metrics import GENAI_DURATION_BUCKETS, GENAI_TOKEN_BUCKETS

from .conftest import CaptureServer, append_records

DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE


def _attrs(items: Any) -> dict[str, Any]:
    out = {}
    for kv in items:
        kind = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, kind) if kind else None
    return out


def received(server: Any) -> dict[str, list[tuple[dict[str, Any], Any, dict[str, Any]]]]:
    """Metric name -> [(resource attributes, metric, point attributes) ...] for every point posted."""
    out: dict[str, list[tuple[dict[str, Any], Any, dict[str, Any]]]] = {}
    for path, headers, body in server.requests:
        if path != "/v1/metrics":
            continue
        assert headers["Content-Type"] == "application/x-protobuf"
        for rm in ExportMetricsServiceRequest.FromString(body).resource_metrics:
            resource = _attrs(rm.resource.attributes)
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    for point in getattr(metric, kind).data_points:
                        out.setdefault(metric.name, []).append((resource, metric, point))
    return out


def point(found: dict[str, list[Any]], name: str, *, without: tuple[str, ...] = (), **attrs: Any
          ) -> tuple[dict[str, Any], Any, Any]:
    """The one point of ``name`` whose attributes include ``attrs`` and none of ``without``."""
    matches = [(r, m, p) for r, m, p in found[name] if _attrs(p.attributes).items() >= attrs.items()
               and not any(k in _attrs(p.attributes) for k in without)]
    assert len(matches) == 1, (name, attrs, [_attrs(p.attributes) for _, _, p in found[name]])
    return matches[0]


def shipper(factory: Any, url: str, **otlp: Any) -> OtlpShipper:
    settings = settings_from_mapping({"otlp": {"endpoint": url, "service_name": "fallback-app",
                                               "modules": ["llm", "tool", "custom", "system"], **otlp}}).otlp
    return OtlpShipper(settings, factory.settings.logging.log_dir, labels=factory.settings.global_labels)


def test_genai_histograms_counters_and_gauges_arrive(make_factory: Any, capture_server: Any) -> None:
    """LLM calls become gen_ai.client.operation.duration and gen_ai.client.token.usage histograms with the
    conventions' buckets; record_counter a delta sum of its values, record_gauge its latest value; the
    resource carries service.name and deployment.environment.name."""
    factory = make_factory(extra={"service_name": "agent-api", "environment": "production"})
    collector = capture_server()
    llm = factory.create_monitor("llm")
    for rt, prompt in ((0.05, 100), (0.3, 1000), (3.0, 5000)):
        llm.record_llm_call(model="gpt-4o", provider="openai", response_time=rt, prompt_tokens=prompt,
                            completion_tokens=50)
    llm.record_llm_call(model="gpt-4o", provider="openai", response_time=1.0, success=False, error_type="timeout")
    custom = LightweightPerformanceMonitor(factory.get_writer("custom"))
    custom.record_counter("auth_requests", value=5)
    custom.record_counter("auth_requests", value=2)
    custom.record_gauge("queue_size", 1200)
    custom.record_gauge("queue_size", 1300)
    custom.record_timer("resize", 0.25)
    factory.create_monitor("tool").record_tool_call("search", 0.4, True)
    result = shipper(factory, collector.url).ship()
    assert result is not None
    assert result.failed is None
    found = received(collector)

    resource, metric, ok = point(found, "gen_ai.client.operation.duration", without=("error.type",), **{
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"})
    assert resource["service.name"] == "agent-api"
    assert resource["deployment.environment.name"] == "production"
    assert (metric.unit, metric.histogram.aggregation_temporality) == ("s", DELTA)
    assert list(ok.explicit_bounds) == list(GENAI_DURATION_BUCKETS)
    assert (ok.count, ok.sum, ok.min, ok.max) == (3, pytest.approx(3.35), 0.05, 3.0)
    assert sum(ok.bucket_counts) == 3
    assert list(ok.bucket_counts)[:4] == [0, 0, 0, 1]  # 0.05 in (0.04, 0.08]
    _, _, failed = point(found, "gen_ai.client.operation.duration", **{"error.type": "timeout"})
    assert failed.count == 1

    _, tokens_metric, prompt_tokens = point(found, "gen_ai.client.token.usage", **{"gen_ai.token.type": "input"})
    assert tokens_metric.unit == "{token}"
    assert list(prompt_tokens.explicit_bounds) == list(GENAI_TOKEN_BUCKETS)
    assert (prompt_tokens.count, prompt_tokens.sum) == (3, 6100)
    _, _, completion = point(found, "gen_ai.client.token.usage", **{"gen_ai.token.type": "output"})
    assert (completion.count, completion.sum) == (3, 150)

    _, count_metric, count = point(found, "monitoring.count", operation="auth_requests", module="custom")
    assert (count_metric.sum.is_monotonic, count_metric.sum.aggregation_temporality) == (True, DELTA)
    assert count.as_double == 7
    assert count.start_time_unix_nano < count.time_unix_nano
    _, gauge_metric, gauge = point(found, "monitoring.value", operation="queue_size")
    assert gauge_metric.WhichOneof("data") == "gauge"
    assert gauge.as_double == 1300
    _, _, timer = point(found, "monitoring.operation.duration", operation="resize")
    assert (timer.count, timer.sum) == (1, 0.25)
    _, _, tool = point(found, "gen_ai.execute_tool.duration", **{"gen_ai.tool.name": "search"})
    assert (tool.count, tool.sum) == (1, 0.4)
    assert result.metric_points == sum(len(v) for v in found.values())


def test_system_samples_become_semantic_convention_metrics(make_factory: Any, capture_server: Any) -> None:
    """A psutil sample: utilizations as 0..1 gauges, process figures as up-down sums, network bytes as a
    cumulative counter by direction."""
    factory = make_factory()
    collector = capture_server()
    factory.create_monitor("system").record_system_snapshot()
    assert shipper(factory, collector.url).ship() is not None
    found = received(collector)
    from .conftest import read_records

    (sample,) = read_records(factory.settings.logging.log_dir / "system_metrics.log")
    _, cpu_metric, cpu = point(found, "system.cpu.utilization")
    assert cpu_metric.unit == "1"
    assert cpu.as_double == pytest.approx(sample["cpu_percent"] / 100)
    resource, threads_metric, threads = point(found, "process.thread.count")
    assert (threads_metric.sum.is_monotonic, threads_metric.sum.aggregation_temporality) == (False, CUMULATIVE)
    assert threads.as_double == sample["process_threads"]
    assert resource["service.name"] == "fallback-app"  # no global labels: the otlp section's name
    assert "deployment.environment.name" not in resource
    _, net_metric, sent = point(found, "system.network.io", **{"network.io.direction": "transmit"})
    assert net_metric.sum.is_monotonic
    assert sent.as_double == sample["net_bytes_sent"]
    _, _, fds = point(found, "process.unix.file_descriptor.count")
    assert fds.as_double == sample["process_open_fds"]


def test_records_of_several_services_get_a_resource_each(make_factory: Any, capture_server: Any) -> None:
    """Two applications writing one folder: each record's service_name and environment pick its resource,
    for logs and metrics alike, and the labels are not repeated as log attributes."""
    factory = make_factory()
    log_dir: Path = factory.settings.logging.log_dir
    append_records(log_dir / "custom_metrics.log", [
        {"timestamp": 1.0, "metric_type": "counter", "operation": "jobs", "value": 3, "service_name": "a",
         "environment": "prod"},
        {"timestamp": 2.0, "metric_type": "counter", "operation": "jobs", "value": 4, "service_name": "b"}])
    collector = capture_server()
    assert shipper(factory, collector.url).ship() is not None
    counts = {(r["service.name"], r.get("deployment.environment.name")): p.as_double
              for r, _, p in received(collector)["monitoring.count"]}
    assert counts == {("a", "prod"): 3, ("b", None): 4}
    logs = [(_attrs(rl.resource.attributes)["service.name"], _attrs(rec.attributes))
            for path, _, body in collector.requests if path == "/v1/logs"
            for rl in ExportLogsServiceRequest.FromString(body).resource_logs
            for sl in rl.scope_logs for rec in sl.log_records]
    assert sorted(name for name, _ in logs) == ["a", "b"]
    assert all("service_name" not in attrs and "environment" not in attrs for _, attrs in logs)


def test_metrics_can_be_switched_off(factory: Any, capture_server: Any) -> None:
    """`otlp.metrics: false` posts logs only."""
    factory.get_writer("custom").log_counter("jobs", 2)
    collector = capture_server()
    result = shipper(factory, collector.url, metrics=False).ship()
    assert result is not None
    assert (result.records, result.metric_points) == (1, 0)
    assert [path for path, _, _ in collector.requests] == ["/v1/logs"]


def test_a_collector_without_a_metrics_pipeline_still_gets_every_log(factory: Any) -> None:
    """A 404 on /v1/metrics drops the metrics, once per run, and the logs move on."""
    writer = factory.get_writer("custom")
    for i in range(5):
        writer.log_counter("jobs", i + 1)
    collector = CaptureServer(by_path={"/v1/metrics": 404})  # a collector without a metrics pipeline
    try:
        first = shipper(factory, collector.url, batch_size=2).ship()
        assert first is not None
        assert first.failed is None
        assert first.metrics_failed is not None
        assert "404" in first.metrics_failed
        assert (first.records, first.batches, first.metric_points) == (5, 3, 0)
        assert [path for path, _, _ in collector.requests] == ["/v1/logs", "/v1/metrics", "/v1/logs", "/v1/logs"]
        again = shipper(factory, collector.url, batch_size=2).ship()
        assert again is not None
        assert (again.records, again.failed) == (0, None)
    finally:
        collector.close()
