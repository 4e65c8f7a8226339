"""Every metric reaches the exports with its Prometheus meaning: the exposition module, the live
/metrics (promtool, a real Prometheus server), `monitoring export`, and OTLP /v1/metrics decoded
with opentelemetry-proto; global labels on every record and export."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from infrastructure.monitoring import LightweightPerformanceMonitor, load_settings, settings_from_mapping
from infrastructure.monitoring._exposition import Family, format_value, labels_of, render
from infrastructure.monitoring.exporters.prometheus import LiveMetrics

from .conftest import append_records, read_records, require
from .test_prometheus_scrape import _promql, _until, prometheus, served  # noqa: F401 - the fixtures

PROMTOOL = shutil.which("promtool")
NOW = 1_800_000_000.0


def promtool_ok(text: str) -> None:
    """``promtool check metrics`` accepts ``text`` (format and lint)."""
    promtool = PROMTOOL or require("promtool")
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def samples(text: str) -> dict[str, str]:
    """``name{labels}`` -> the rest of the line (value and optional timestamp)."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, rest = line.rpartition("} ") if "}" in line else line.partition(" ")
            out[series + ("}" if "}" in line else "")] = rest
    return out


def custom(ts: float, kind: str, operation: str, value: float, **fields: Any) -> dict[str, Any]:
    return {"timestamp": ts, "metric_type": kind, "operation": operation, "value": value, "module": "custom",
            "host": "web-1", **fields}


# --------------------------------------------------------------------------- the exposition module


def test_exposition_writes_what_the_format_demands() -> None:
    """Escaping, number forms, one HELP/TYPE per name, cumulative buckets, timestamps in milliseconds."""
    counter = Family("requests_total", "counter", "Requests.\nSecond line \\ kept.")
    counter.add(3, labels_of([("path", 'a"b\\c\nd'), ("path", "dropped"), ("__bad", "x"), ("ok.name", True)]))
    counter.add(None, (("path", "missing"),))  # no value: no sample
    gauge = Family("queue size", "gauge", "Queue length.")
    gauge.add(12.5, timestamp=NOW + 0.25)
    hist = Family("latency_seconds", "histogram", "Latency.")
    hist.histogram((("op", "x"),), (0.1, 1.0), (2, 3, 1), 4.5)
    summary = Family("rt_seconds", "summary", "RT.")
    summary.summary((), {0.5: 0.2, 0.99: None}, 3.0, 10)
    again = Family("requests_total", "counter", "Ignored help.")
    again.add(1, (("path", "b"),))
    empty = Family("nothing", "gauge", "Never sampled.")
    text = render([counter, gauge, hist, summary, again, empty])
    assert text == (
        "# HELP requests_total Requests.\\nSecond line \\\\ kept.\n# TYPE requests_total counter\n"
        'requests_total{path="a\\"b\\\\c\\nd",x__bad="x",ok_name="true"} 3\n'
        'requests_total{path="b"} 1\n'
        "# HELP queue_size Queue length.\n# TYPE queue_size gauge\nqueue_size 12.5 1800000000250\n"
        "# HELP latency_seconds Latency.\n# TYPE latency_seconds histogram\n"
        'latency_seconds_bucket{op="x",le="0.1"} 2\nlatency_seconds_bucket{op="x",le="1"} 5\n'
        'latency_seconds_bucket{op="x",le="+Inf"} 6\nlatency_seconds_sum{op="x"} 4.5\n'
        'latency_seconds_count{op="x"} 6\n'
        '# HELP rt_seconds RT.\n# TYPE rt_seconds summary\nrt_seconds{quantile="0.5"} 0.2\n'
        "rt_seconds_sum 3\nrt_seconds_count 10\n")
    promtool_ok(text)


@pytest.mark.parametrize(("value", "text"), [
    (3, "3"), (3.0, "3"), (0.25, "0.25"), (1e20, "1e+20"), (-2.5, "-2.5"), (math.inf, "+Inf"), (-math.inf, "-Inf"),
    (math.nan, "NaN"), (2**60, "1152921504606846976"),
])
def test_numbers_as_prometheus_writes_them(value: float, text: str) -> None:
    """Integers without '.0', floats by repr, the special values by their names."""
    assert format_value(value) == text


def test_a_family_refuses_an_unknown_type() -> None:
    """A typo in a metric type fails where the family is made, naming the valid ones."""
    with pytest.raises(ValueError, match=r"metric type must be one of \['counter', 'gauge'"):
        Family("x", "timer", "no such type")


# --------------------------------------------------------------------------- live /metrics


def test_counters_sum_their_values_and_gauges_keep_the_latest(log_dir: Path) -> None:
    """record_counter(value=5) counts 5, not one line; record_gauge shows its latest value at its own time,
    whatever order the lines arrive in; a timer keeps its histogram."""
    append_records(log_dir / "custom_metrics.log", [
        custom(NOW - 30, "counter", "auth_requests", 5), custom(NOW - 20, "counter", "auth_requests", 2),
        custom(NOW - 15, "counter", "auth_requests", -4),  # a counter never goes down: left out
        custom(NOW - 10, "gauge", "queue_size", 1200), custom(NOW - 40, "gauge", "queue_size", 9999),  # older
        custom(NOW - 5, "gauge", "queue_size", 1100, queue="mail"),
        {"timestamp": NOW - 3, "metric_type": "timer", "operation": "resize", "duration": 0.3, "module": "custom",
         "host": "web-1"}])
    text = LiveMetrics(log_dir, buckets=(0.1, 0.5)).render()
    found = samples(text)
    assert found['monitoring_count_total{module="custom",operation="auth_requests",host="web-1"}'] == "7"
    assert found['monitoring_value{module="custom",operation="queue_size",host="web-1"}'] == \
        f"1100 {int((NOW - 5) * 1000)}"
    assert found['monitoring_operation_duration_seconds_bucket{module="custom",operation="resize",host="web-1",'
                 'le="0.5"}'] == "1"
    assert found['monitoring_records_total{module="custom",operation="queue_size",success="",host="web-1"}'] == "3"
    assert "# TYPE monitoring_value gauge" in text
    assert "# TYPE monitoring_count_total counter" in text
    promtool_ok(text)


def test_the_system_samplers_fields_all_appear(log_dir: Path, make_factory: Any) -> None:
    """A real psutil sample: disk, network and process fields become series, with the sample's time."""
    factory = make_factory(include_host=True)
    factory.create_monitor("system").record_system_snapshot()
    (record,) = read_records(log_dir / "system_metrics.log")
    text = LiveMetrics(log_dir, buckets=(1.0,)).render()
    found = samples(text)
    stamp = str(int(record["timestamp"] * 1000))
    host = record["host"]
    for name, field in [("system_disk_percent", "disk_percent"), ("system_disk_free_bytes", "disk_free_bytes"),
                        ("system_network_sent_bytes_total", "net_bytes_sent"),
                        ("system_network_received_bytes_total", "net_bytes_recv"),
                        ("system_process_threads", "process_threads"), ("system_process_open_fds", "process_open_fds"),
                        ("system_process_cpu_percent", "process_cpu_percent"),
                        ("system_memory_available_bytes", "memory_available_bytes")]:
        value, _, when = found[f'{name}{{host="{host}"}}'].partition(" ")
        assert float(value) == pytest.approx(record[field]), name
        assert when == stamp
    assert "# TYPE system_network_sent_bytes_total counter" in text
    promtool_ok(text)


def test_the_cardinality_cap_holds_for_custom_metrics(log_dir: Path) -> None:
    """A flood of operation names folds into __other__ beyond max_series, counted."""
    append_records(log_dir / "custom_metrics.log", [custom(NOW, "counter", f"op{i}", 2) for i in range(30)])
    text = LiveMetrics(log_dir, buckets=(1.0,), max_series=10).render()
    lines = [x for x in text.splitlines() if x.startswith("monitoring_count_total{")]
    assert len(lines) == 11
    assert 'monitoring_count_total{module="__other__",operation="__other__",host="__other__"} 40' in text
    assert 'monitoring_series_overflow_total{metric="monitoring_count_total"} 20' in text


def test_a_real_prometheus_scrapes_counters_gauges_and_system_fields(prometheus: str, log_dir: Path) -> None:  # noqa: F811
    """Prometheus scraping `monitoring serve` answers PromQL with the counter's sum and the gauge's latest value."""
    now = time.time()
    append_records(log_dir / "custom_metrics.log", [
        custom(now - 20, "counter", "auth_requests", 5), custom(now - 10, "counter", "auth_requests", 2),
        custom(now - 8, "gauge", "queue_size", 1200), custom(now - 4, "gauge", "queue_size", 1300)])
    append_records(log_dir / "system_metrics.log", [
        {"timestamp": now - 3, "metric_type": "gauge", "operation": "system_sample", "module": "system",
         "host": "web-1", "process_threads": 17, "process_open_fds": 42, "disk_percent": 61.5}])
    deadline = time.monotonic() + 90
    _until(prometheus, 'sum(monitoring_count_total{operation="auth_requests"})', 7, deadline)
    _until(prometheus, 'monitoring_value{operation="queue_size"}', 1300, deadline)
    _until(prometheus, 'system_process_threads{host="web-1"}', 17, deadline)
    assert float(_promql(prometheus, 'system_process_open_fds{host="web-1"}')[0]["value"][1]) == 42
    append_records(log_dir / "custom_metrics.log", [custom(time.time(), "counter", "auth_requests", 3)])
    _until(prometheus, 'sum(monitoring_count_total{operation="auth_requests"})', 10, deadline)


# --------------------------------------------------------------------------- monitoring export


def test_export_gives_counters_gauges_and_timers_their_meaning(tmp_path: Path) -> None:
    """`monitoring export --format prometheus`: counter sums, the gauge's latest value at its time, a timer's
    summary, the system sampler's fields, the global labels on every sample; promtool accepts it."""
    folder = tmp_path / "logs"
    now = time.time()
    append_records(folder / "custom_metrics.log", [
        custom(now - 30, "counter", "auth_requests", 5), custom(now - 20, "counter", "auth_requests", 2),
        custom(now - 10, "gauge", "queue_size", 1200), custom(now - 40, "gauge", "queue_size", 7),
        *({"timestamp": now - 5 - i, "metric_type": "timer", "operation": "resize", "duration": 0.1 * (i + 1),
           "module": "custom", "host": "web-1"} for i in range(10))])
    append_records(folder / "system_metrics.log", [
        {"timestamp": now - 2, "metric_type": "gauge", "operation": "system_sample", "module": "system",
         "host": "web-1", "cpu_percent": 12.0, "process_threads": 9, "net_bytes_sent": 1000}])
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({"logging": {"log_dir": str(folder)}, "service_name": "checkout-api"}))
    exe = Path(sys.executable).with_name("monitoring")
    done = subprocess.run([str(exe), "export", "--format", "prometheus", "--hours", "1", "--output", "-",
                           "--config", str(config)], capture_output=True, text=True, check=False, timeout=60,
                          env={**os.environ, "MONITORING_ENVIRONMENT": "staging"})
    assert done.returncode == 0, done.stderr
    found = samples(done.stdout)
    where = 'service_name="checkout-api",environment="staging"'
    assert found[f'monitoring_count_in_window{{module="custom",operation="auth_requests",{where}}}'] == "7"
    assert found[f'monitoring_value{{module="custom",operation="queue_size",{where}}}'] == \
        f"1200 {int((now - 10) * 1000)}"
    assert found[f'monitoring_timer_duration_seconds_count{{module="custom",operation="resize",{where}}}'] == "10"
    assert float(found[f'monitoring_timer_duration_seconds{{module="custom",operation="resize",{where},'
                       'quantile="0.5"}']) == pytest.approx(0.55)
    assert found[f'monitoring_process_threads{{host="web-1",{where}}}'] == f"9 {int((now - 2) * 1000)}"
    assert found[f'monitoring_system_network_sent_bytes_total{{host="web-1",{where}}}'].startswith("1000 ")
    assert found[f"monitoring_report_window_seconds{{{where}}}"] == "3600"
    promtool_ok(done.stdout)
    as_json = subprocess.run([str(exe), "export", "--format", "json", "--hours", "1", "--output", "-", "--config",
                              str(config)], capture_output=True, text=True, check=False, timeout=60)
    rows = json.loads(as_json.stdout)["sections"]["metrics"]
    assert {(r["operation"], r["metric_type"]) for r in rows} == {("auth_requests", "counter"),
                                                                    ("queue_size", "gauge"), ("resize", "timer")}


# --------------------------------------------------------------------------- global labels


def test_global_labels_are_part_of_every_record(make_factory: Any, log_dir: Path) -> None:
    """service_name and environment go on every record, from the writer's tail; a caller's own
    `environment=` field is kept as user_environment."""
    factory = make_factory(extra={"service_name": "checkout-api", "environment": "production"})
    llm = factory.create_monitor("llm")
    llm.record_llm_call(model="m", provider="p", response_time=0.1)
    LightweightPerformanceMonitor(factory.get_writer("custom")).record_gauge("queue", 3, environment="mine")
    (call,) = read_records(log_dir / "llm_metrics.log")
    (gauge,) = read_records(log_dir / "custom_metrics.log")
    assert (call["service_name"], call["environment"]) == ("checkout-api", "production")
    assert (gauge["environment"], gauge["user_environment"]) == ("production", "mine")
    assert list(call)[-3:] == ["host", "service_name", "environment"]


def test_the_environment_overrides_the_file_and_an_argument_overrides_both(tmp_path: Path) -> None:
    """MONITORING_SERVICE / MONITORING_ENVIRONMENT beat the YAML; explicit overrides beat the environment."""
    config = tmp_path / "c.yaml"
    config.write_text("service_name: from-file\nenvironment: staging\n")
    env = {"MONITORING_SERVICE": "from-env", "MONITORING_ENVIRONMENT": "production"}
    assert load_settings(config, environ=env).global_labels == {"service_name": "from-env",
                                                                "environment": "production"}
    assert load_settings(config, environ={}).global_labels == {"service_name": "from-file", "environment": "staging"}
    given = load_settings(config, environ=env, overrides={"service_name": "given"})
    assert given.global_labels == {"service_name": "given", "environment": "production"}
    assert load_settings(environ={}).global_labels == {}
    with pytest.raises(ValueError, match=r"service_name"):
        settings_from_mapping({"service_name": "two\nlines"})
