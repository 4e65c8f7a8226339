"""The built-in monitors write the records the design promises, with keys in a fixed order."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from infrastructure.monitoring import (
    LightweightPerformanceMonitor,
    PerformanceMonitorFactory,
    UnknownMonitorError,
)

from .conftest import read_records


def test_checkpoint_record_matches_the_design(factory: PerformanceMonitorFactory, log_dir: Path) -> None:
    """The design's example line, plus pid and host, with the same keys in the same order."""
    before = time.time()
    monitor = factory.create_monitor("checkpoint")
    monitor.record_checkpoint_save(duration=0.5, size=1024, success=True)
    monitor.record_checkpoint_load(duration=0.3, size=1024, success=True)
    save, load = read_records(log_dir / "checkpoint_metrics.log")
    assert list(save)[:7] == ["timestamp", "metric_type", "operation", "duration", "size", "success", "module"]
    assert isinstance(save["timestamp"], float)
    assert before <= save["timestamp"] <= load["timestamp"] <= time.time()
    assert {k: save[k] for k in list(save)[1:7]} == {
        "metric_type": "timer", "operation": "checkpoint_save", "duration": 0.5, "size": 1024,
        "success": True, "module": "checkpoint",
    }
    assert load["operation"] == "checkpoint_load"
    assert load["duration"] == 0.3
    assert isinstance(save["pid"], int)
    assert isinstance(save["host"], str)


def test_llm_call_record(factory: PerformanceMonitorFactory, log_dir: Path) -> None:
    """All arguments land in the record; total_tokens defaults to prompt + completion."""
    llm = factory.create_monitor("llm")
    llm.record_llm_call(model="gpt-4", provider="openai", response_time=2.1,
                        prompt_tokens=100, completion_tokens=200, total_tokens=300, success=True)
    llm.record_llm_call("claude-3-5-sonnet", "anthropic", 1.5, 40, 60, success=False, error_type="rate_limit",
                        time_to_first_token=0.4, cached_tokens=10, streaming=True, retries=2, cost=0.0012,
                        user_id="u-1")
    first, second = read_records(log_dir / "llm_metrics.log")
    assert list(first) == ["timestamp", "metric_type", "operation", "model", "provider", "response_time",
                           "prompt_tokens", "completion_tokens", "total_tokens", "success", "cost_status",
                           "price_version", "module", "pid", "host"]
    assert first["cost_status"] == "unknown_model"  # no price for it: said, never a silent 0
    assert second["cost_status"] == "provided"
    assert first["total_tokens"] == 300
    assert second["total_tokens"] == 100
    assert second["success"] is False
    assert {k: second[k] for k in ("error_type", "time_to_first_token", "cached_tokens", "streaming", "retries",
                                   "cost", "user_id")} == {
        "error_type": "rate_limit", "time_to_first_token": 0.4, "cached_tokens": 10, "streaming": True,
        "retries": 2, "cost": 0.0012, "user_id": "u-1",
    }
    assert "invalid" not in second


def test_tool_task_agent_records(factory: PerformanceMonitorFactory, log_dir: Path) -> None:
    """Tool, task and agent records carry their names, durations and extra fields."""
    factory.create_monitor("tool").record_tool_call("read_file", duration=0.012, success=True, file_size=4096)
    tasks = factory.create_monitor("task")
    tasks.record_task_execution("data_processing", duration=12.5, success=False, error_type="timeout")
    tasks.record_agent_execution("researcher", "web-agent-1", duration=48.0)
    (tool,) = read_records(log_dir / "tool_metrics.log")
    assert (tool["operation"], tool["tool_name"], tool["duration"], tool["file_size"]) == (
        "tool_call", "read_file", 0.012, 4096)
    task, agent = read_records(log_dir / "task_metrics.log")
    assert (task["operation"], task["task_type"], task["success"], task["error_type"]) == (
        "task_execution", "data_processing", False, "timeout")
    assert (agent["operation"], agent["agent_type"], agent["agent_name"], agent["success"]) == (
        "agent_execution", "researcher", "web-agent-1", True)


def test_system_snapshot_is_a_real_reading(factory: PerformanceMonitorFactory, log_dir: Path) -> None:
    """The first snapshot already measures CPU (psutil's first reading would be 0.0)."""
    system = factory.create_monitor("system")
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    system.record_system_snapshot()
    (sample,) = read_records(log_dir / "system_metrics.log")
    assert sample["metric_type"] == "gauge"
    assert sample["operation"] == "system_sample"
    assert sample["process_cpu_percent"] > 10.0
    assert sample["process_rss_bytes"] > 1_000_000
    assert sample["process_threads"] >= 1
    assert sample["process_open_fds"] >= 3
    assert 0 <= sample["cpu_percent"] <= 100
    assert 0 < sample["memory_percent"] < 100
    assert sample["disk_free_bytes"] > 0
    assert sample["net_bytes_recv"] >= 0


def test_create_monitor_returns_one_instance_per_name(factory: PerformanceMonitorFactory) -> None:
    """Monitors are cheap shared objects; asking twice gives the same one."""
    assert factory.create_monitor("llm") is factory.create_monitor("llm")
    assert factory.create_monitor("llm").logger is factory.get_writer("llm")


def test_unknown_monitor_lists_known_names(factory: PerformanceMonitorFactory) -> None:
    """The error names every valid monitor and suggests the nearest."""
    with pytest.raises(UnknownMonitorError, match=r"^unknown monitor 'lm' \(did you mean 'llm'\?\); "
                       r"known monitors: checkpoint, llm, system, task, tool") as info:
        factory.create_monitor("lm")
    assert isinstance(info.value, LookupError)


class CustomPerformanceMonitor(LightweightPerformanceMonitor):
    """Written exactly as the design's guide shows."""

    def __init__(self, logger=None):  # type: ignore[no-untyped-def]
        super().__init__(logger)

    def record_custom_metric(self, metric_name: str, value: float) -> None:
        self.logger.log_timer(f"custom.{metric_name}", value)


def test_registered_custom_monitor(factory: PerformanceMonitorFactory, log_dir: Path) -> None:
    """register_monitor makes create_monitor return the subclass, writing its own family."""
    factory.register_monitor("vision", CustomPerformanceMonitor)
    monitor = factory.create_monitor("vision")
    assert isinstance(monitor, CustomPerformanceMonitor)
    monitor.record_custom_metric("resize", 0.25)
    monitor.record_counter("cache_hit", 3, cache="l1")
    monitor.record_gauge("queue_depth", 7)
    monitor.record_event("model_loaded", name="clip")
    timer, counter, gauge, event = read_records(log_dir / "vision_metrics.log")
    assert (timer["metric_type"], timer["operation"], timer["duration"], timer["module"]) == (
        "timer", "custom.resize", 0.25, "vision")
    assert (counter["metric_type"], counter["value"], counter["cache"]) == ("counter", 3, "l1")
    assert (gauge["metric_type"], gauge["value"]) == ("gauge", 7)
    assert (event["metric_type"], event["operation"], event["name"]) == ("event", "model_loaded", "clip")
    assert factory.available_monitors() == ["checkpoint", "llm", "system", "task", "tool", "vision"]


def test_custom_monitor_without_logger_uses_the_process_factory(
    monkeypatch: pytest.MonkeyPatch, log_dir: Path
) -> None:
    """``CustomPerformanceMonitor()`` with no logger writes through the singleton's writer."""
    monkeypatch.setenv("MONITORING_LOG_DIR", str(log_dir))
    monitor = CustomPerformanceMonitor()
    monitor.record_custom_metric("latency", 1.5)
    assert monitor.logger is PerformanceMonitorFactory.get_instance().get_writer("custom")
    (record,) = read_records(log_dir / "custom_metrics.log")
    assert (record["operation"], record["duration"]) == ("custom.latency", 1.5)


def test_register_monitor_rejects_bad_input(factory: PerformanceMonitorFactory) -> None:
    """A name that cannot be a file name, or a class that is not a monitor, fails at once."""
    with pytest.raises(ValueError, match="must be letters"):
        factory.register_monitor("../etc", CustomPerformanceMonitor)
    with pytest.raises(TypeError, match="must subclass LightweightPerformanceMonitor"):
        factory.register_monitor("x", dict)  # type: ignore[arg-type]


def test_extra_fields_never_overwrite_built_in_ones(factory: PerformanceMonitorFactory, log_dir: Path) -> None:
    """An extra called ``operation`` or ``module`` is kept under ``user_<name>``."""
    factory.create_monitor("tool").record_tool_call("grep", 0.1, operation="x", module="y", depth=2)
    (record,) = read_records(log_dir / "tool_metrics.log")
    assert (record["operation"], record["module"]) == ("tool_call", "tool")
    assert (record["user_operation"], record["user_module"], record["depth"]) == ("x", "y", 2)
