"""The design's module integration: ``get_checkpoint_monitor()`` and the other one-line helpers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import infrastructure.checkpoint
from infrastructure.monitoring import (
    CheckpointPerformanceMonitor,
    LLMPerformanceMonitor,
    PerformanceMonitorFactory,
    SystemPerformanceMonitor,
    TaskPerformanceMonitor,
    ToolPerformanceMonitor,
    get_checkpoint_monitor,
    get_llm_monitor,
    get_system_monitor,
    get_task_monitor,
    get_tool_monitor,
)

from .conftest import REPO_ROOT, read_records, run_python

DESIGN_SNIPPET = """
from src.infrastructure.checkpoint import get_checkpoint_monitor

monitor = get_checkpoint_monitor()

monitor.record_checkpoint_save(duration=0.5, size=1024, success=True)
monitor.record_checkpoint_load(duration=0.3, size=1024, success=True)
"""


def test_the_design_snippet_runs_from_the_repository_root(tmp_path: Path) -> None:
    """The design's lines, unchanged, in a fresh interpreter at the repository root write two checkpoint lines."""
    result = run_python(DESIGN_SNIPPET, cwd=REPO_ROOT, env={"MONITORING_LOG_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    save, load = read_records(tmp_path / "checkpoint_metrics.log")
    assert (save["operation"], save["duration"], save["size"], save["success"]) == ("checkpoint_save", 0.5, 1024, True)
    assert (load["operation"], load["duration"], load["size"]) == ("checkpoint_load", 0.3, 1024)
    assert save["module"] == "checkpoint"


def test_importing_the_checkpoint_package_is_cheap_and_both_spellings_are_one_package() -> None:
    """Importing it loads neither the factory nor its container, opens no file, and ``src.`` is an alias."""
    code = """
import os, sys, threading
fds = set(os.listdir('/proc/self/fd'))
import src.infrastructure.checkpoint as alias
from infrastructure.checkpoint import get_checkpoint_monitor
import infrastructure.checkpoint as real
assert alias is real and alias.get_checkpoint_monitor is get_checkpoint_monitor
heavy = sorted(m for m in sys.modules if m.endswith(('.factory', '.di_config', '.logger_writer'))
               or m.startswith(('dependency_injector', 'apscheduler')))
assert heavy == [], heavy
assert threading.active_count() == 1
assert set(os.listdir('/proc/self/fd')) <= fds | {str(max(map(int, fds)) + 1)}
print("ok")
"""
    result = run_python(code, cwd=REPO_ROOT)
    assert result.stdout.strip() == "ok", result.stderr


HELPERS: list[tuple[Callable[[], object], str, type]] = [
    (get_checkpoint_monitor, "checkpoint", CheckpointPerformanceMonitor),
    (get_llm_monitor, "llm", LLMPerformanceMonitor),
    (get_system_monitor, "system", SystemPerformanceMonitor),
    (get_task_monitor, "task", TaskPerformanceMonitor),
    (get_tool_monitor, "tool", ToolPerformanceMonitor),
]


@pytest.mark.parametrize(("helper", "name", "cls"), HELPERS, ids=[h[1] for h in HELPERS])
def test_each_helper_is_the_process_factorys_monitor(make_factory: Callable[..., PerformanceMonitorFactory],
                                                     helper: Callable[[], object], name: str, cls: type) -> None:
    """``get_<name>_monitor()`` is ``get_instance().create_monitor(name)``, and follows ``set_instance``."""
    first = make_factory()
    PerformanceMonitorFactory.set_instance(first)
    monitor = helper()
    assert isinstance(monitor, cls)
    assert monitor is first.create_monitor(name)
    assert helper() is monitor
    second = make_factory()
    PerformanceMonitorFactory.set_instance(second)
    assert helper() is second.create_monitor(name)
    assert helper() is not monitor


def test_helpers_write_where_the_process_default_writes(make_factory: Callable[..., PerformanceMonitorFactory],
                                                        log_dir: Path) -> None:
    """Records made through the helpers land in the default factory's folder, one file per module."""
    PerformanceMonitorFactory.set_instance(make_factory())
    get_llm_monitor().record_llm_call(model="gpt-4o", provider="openai", response_time=1.2, prompt_tokens=100,
                                      completion_tokens=20, success=True)
    get_tool_monitor().record_tool_call("read_file", duration=0.01)
    get_task_monitor().record_task_execution("index", duration=2.0)
    infrastructure.checkpoint.get_checkpoint_monitor().record_checkpoint_save(duration=0.5, size=1024)
    assert read_records(log_dir / "llm_metrics.log")[0]["total_tokens"] == 120
    assert read_records(log_dir / "tool_metrics.log")[0]["tool_name"] == "read_file"
    assert read_records(log_dir / "task_metrics.log")[0]["task_type"] == "index"
    assert read_records(log_dir / "checkpoint_metrics.log")[0]["size"] == 1024
