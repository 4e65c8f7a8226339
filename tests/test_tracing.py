"""Tracing as log lines: trees across threads, tasks and processes, sampling, the traces command."""

from __future__ import annotations

import asyncio
import random
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from infrastructure.monitoring import ConfigError, PerformanceMonitorFactory, load_settings
from infrastructure.monitoring.instrumentation import Tracer, carry, extract, get_tracer, inject, trace_span

from .conftest import REPO_ROOT, read_records


@pytest.fixture
def logs(log_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MONITORING_LOG_DIR", str(log_dir))
    PerformanceMonitorFactory.reset_instance()
    return log_dir


def spans(folder: Path) -> dict[str, dict]:
    return {r["name"]: r for r in read_records(folder / "trace_metrics.log")}


def test_a_tree_across_threads_and_tasks_with_ids_on_metric_records(logs: Path) -> None:
    tracer = Tracer(sample_rate=1.0)
    tool = PerformanceMonitorFactory.get_instance().create_monitor("tool")

    async def fetch(i: int) -> None:
        with tracer.start_as_current_span(f"fetch-{i}", kind="client"):
            await asyncio.sleep(0.001)

    async def fan_out() -> None:
        await asyncio.gather(fetch(1), fetch(2))

    def in_thread() -> None:
        with tracer.start_as_current_span("in-thread"):
            pass

    with tracer.start_as_current_span("request", kind="server", attributes={"route": "/ask"}) as root:
        tool.record_tool_call("search", 0.01)
        with ThreadPoolExecutor(1) as pool:
            pool.submit(carry(in_thread)).result()  # carried: a child of the request
            pool.submit(in_thread).result()  # not carried: the root of a trace of its own
        asyncio.run(fan_out())
        root.add_event("answered", tokens=12)
    found = spans(logs)
    request = found["request"]
    assert re.fullmatch(r"[0-9a-f]{32}", request["trace_id"])
    assert re.fullmatch(r"[0-9a-f]{16}", request["span_id"])
    assert request["parent_span_id"] is None
    assert (request["kind"], request["status"], request["attributes"]) == ("server", "ok", {"route": "/ask"})
    assert request["events"][0]["name"] == "answered"
    assert request["events"][0]["tokens"] == 12
    for child in ("fetch-1", "fetch-2"):
        assert found[child]["trace_id"] == request["trace_id"]
        assert found[child]["parent_span_id"] == request["span_id"]
    in_threads = [r for r in read_records(logs / "trace_metrics.log") if r["name"] == "in-thread"]
    assert [(r["trace_id"] == request["trace_id"], r["parent_span_id"]) for r in in_threads] == [
        (True, request["span_id"]), (False, None)]
    (search,) = read_records(logs / "tool_metrics.log")
    assert (search["trace_id"], search["span_id"]) == (request["trace_id"], request["span_id"])


def test_errors_mark_the_span_and_propagate(logs: Path) -> None:
    tracer = Tracer(sample_rate=1.0)

    @trace_span("parse", tracer=tracer)
    def parse() -> None:
        raise ValueError("bad json")

    with pytest.raises(ValueError, match="bad json"), tracer.start_as_current_span("job"):
        parse()
    found = spans(logs)
    assert (found["parse"]["status"], found["parse"]["status_message"]) == ("error", "ValueError: bad json")
    assert found["parse"]["events"][0]["name"] == "exception"
    assert found["job"]["status"] == "error"
    assert found["parse"]["parent_span_id"] == found["job"]["span_id"]


def test_a_trace_crosses_processes_through_traceparent(logs: Path) -> None:
    tracer = Tracer(sample_rate=1.0)
    with tracer.start_as_current_span("parent", kind="producer"):
        headers = inject({})
    child = subprocess.run(
        [sys.executable, "-c",
         "from infrastructure.monitoring.instrumentation import Tracer, extract\n"
         "with Tracer(sample_rate=1.0).start_as_current_span('worker', kind='consumer', context=extract()):\n"
         "    pass\n"],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT / "src"), "MONITORING_LOG_DIR": str(logs),
             "TRACEPARENT": headers["traceparent"]},
        cwd=REPO_ROOT, capture_output=True, text=True, check=False,
    )
    assert child.returncode == 0, child.stderr
    found = spans(logs)
    assert found["worker"]["trace_id"] == found["parent"]["trace_id"]
    assert found["worker"]["parent_span_id"] == found["parent"]["span_id"]
    assert found["worker"]["pid"] != found["parent"]["pid"]


def test_traceparent_format_and_bad_headers() -> None:
    good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    ctx = extract({"traceparent": good})
    assert ctx is not None
    assert (ctx.trace_id, ctx.span_id, ctx.sampled, ctx.traceparent) == (
        "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", True, good)
    for bad in ("", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "00-xyz-00f067aa0ba902b7-01",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "garbage"):
        assert extract({"traceparent": bad}) is None
    assert extract({}) is None


def test_sampling_is_decided_once_per_trace_with_an_exact_count(logs: Path) -> None:
    tracer = Tracer(sample_rate=0.3, seed=1234)
    for _ in range(500):
        with tracer.start_as_current_span("root"), tracer.start_as_current_span("child"), \
                tracer.start_as_current_span("grandchild"):
            pass
    draws = random.Random(1234)
    expected_roots = sum(1 for _ in range(500) if draws.random() < 0.3)
    lines = read_records(logs / "trace_metrics.log")
    by_name = {name: sum(1 for r in lines if r["name"] == name) for name in ("root", "child", "grandchild")}
    assert by_name == {"root": expected_roots, "child": expected_roots, "grandchild": expected_roots}
    assert 100 < expected_roots < 200


def test_sample_rate_from_the_configuration(logs: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("tracing: {sample_rate: 0.0}\n")
    monkeypatch.setenv("MONITORING_CONFIG", str(config))
    PerformanceMonitorFactory.reset_instance()
    with get_tracer().start_as_current_span("never"):
        pass
    assert not (logs / "trace_metrics.log").exists()
    with pytest.raises(ConfigError, match=r"tracing\.sample_rate.*1\.5"):
        load_settings(overrides={"tracing": {"sample_rate": 1.5}}, environ={})


def test_traces_command_prints_trees(logs: Path) -> None:
    tracer = Tracer(sample_rate=1.0)
    for i in range(3):
        with tracer.start_as_current_span(f"request-{i}", kind="server"):
            with tracer.start_as_current_span("llm", kind="client"):
                pass
            try:
                with tracer.start_as_current_span("tool"):
                    raise RuntimeError("no")
            except RuntimeError:
                pass
    exe = Path(sys.executable).with_name("monitoring")
    out = subprocess.run([str(exe), "traces", "--limit", "2", "--log-dir", str(logs)], capture_output=True,
                         text=True, check=True).stdout
    assert out.count("trace ") == 2
    assert "request-2  [server]" in out
    assert "request-0" not in out  # only the two newest
    lines = out.splitlines()
    root_at = next(i for i, line in enumerate(lines) if "request-2" in line)
    assert lines[root_at + 1].startswith("    llm  [client]")  # indented under its root
    assert "ERROR RuntimeError: no" in lines[root_at + 2]
    one = spans(logs)["request-1"]["trace_id"]
    single = subprocess.run([str(exe), "traces", "--trace", one, "--log-dir", str(logs)], capture_output=True,
                            text=True, check=True).stdout
    assert single.count("trace ") == 1
    assert "request-1" in single
