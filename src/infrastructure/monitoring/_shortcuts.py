"""One line to the built-in monitors: ``get_llm_monitor()`` and its siblings (the design's module integration).

    from infrastructure.monitoring import get_tool_monitor
    get_tool_monitor().record_tool_call("read_file", duration=0.012, success=True)

Each returns the process-wide factory's monitor, ``PerformanceMonitorFactory.get_instance()
.create_monitor(name)``: the same object on every call while the process default stays, and
the new default's after ``PerformanceMonitorFactory.set_instance`` / ``reset_instance``. A
module that keeps the monitor (``monitor = get_llm_monitor()`` at import time) keeps that
object; calling the helper where the record is made always follows the current default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from .implementations import (
        CheckpointPerformanceMonitor,
        LLMPerformanceMonitor,
        SystemPerformanceMonitor,
        TaskPerformanceMonitor,
        ToolPerformanceMonitor,
    )

__all__ = ["get_checkpoint_monitor", "get_llm_monitor", "get_system_monitor", "get_task_monitor",
           "get_tool_monitor"]


def _monitor(name: str) -> Any:
    # the factory brings the DI container and the scheduler (about 0.3 s): loaded at the first
    # call, so importing a package that only re-exports a helper (infrastructure.checkpoint) stays cheap
    from .factory import PerformanceMonitorFactory

    return PerformanceMonitorFactory.get_instance().create_monitor(name)


def get_checkpoint_monitor() -> CheckpointPerformanceMonitor:
    """The process's checkpoint monitor (``logs/checkpoint_metrics.log``)."""
    return cast("CheckpointPerformanceMonitor", _monitor("checkpoint"))


def get_llm_monitor() -> LLMPerformanceMonitor:
    """The process's LLM monitor (``logs/llm_metrics.log``; cost from the configured prices)."""
    return cast("LLMPerformanceMonitor", _monitor("llm"))


def get_system_monitor() -> SystemPerformanceMonitor:
    """The process's system monitor (``logs/system_metrics.log``)."""
    return cast("SystemPerformanceMonitor", _monitor("system"))


def get_task_monitor() -> TaskPerformanceMonitor:
    """The process's task and agent monitor (``logs/task_metrics.log``)."""
    return cast("TaskPerformanceMonitor", _monitor("task"))


def get_tool_monitor() -> ToolPerformanceMonitor:
    """The process's tool monitor (``logs/tool_metrics.log``)."""
    return cast("ToolPerformanceMonitor", _monitor("tool"))
