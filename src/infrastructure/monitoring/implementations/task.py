"""Tasks and agents: what ran, for how long, and whether it succeeded."""

from __future__ import annotations

from typing import Any, ClassVar

from ..base_monitor import BaseMonitor

__all__ = ["TaskPerformanceMonitor"]


class TaskPerformanceMonitor(BaseMonitor):
    """One line per task or agent run, in ``logs/task_metrics.log``.

        tasks = factory.create_monitor("task")
        tasks.record_task_execution("data_processing", duration=12.5, success=True)
        tasks.record_agent_execution("researcher", "web-agent-1", duration=48.0)
    """

    module_name: ClassVar[str] = "task"

    def record_task_execution(
        self,
        task_type: str,
        duration: float,
        success: bool = True,
        *,
        error_type: str | None = None,
        **extra: Any,
    ) -> None:
        """A finished task of kind ``task_type``; ``duration`` in seconds."""
        self._record({"timestamp": 0.0, "metric_type": "timer", "operation": "task_execution",
                      "task_type": self.logger.scrub(task_type), "duration": duration, "success": success},
                     error_type, extra)

    def record_agent_execution(
        self,
        agent_type: str,
        agent_name: str,
        duration: float,
        success: bool = True,
        *,
        error_type: str | None = None,
        **extra: Any,
    ) -> None:
        """A finished run of agent ``agent_name`` (of kind ``agent_type``); ``duration`` in seconds."""
        self._record({"timestamp": 0.0, "metric_type": "timer", "operation": "agent_execution",
                      "agent_type": self.logger.scrub(agent_type), "agent_name": self.logger.scrub(agent_name),
                      "duration": duration,
                      "success": success}, error_type, extra)

    def _record(self, record: dict[str, Any], error_type: str | None, extra: dict[str, Any]) -> None:
        try:
            if error_type is not None:
                record["error_type"] = self.logger.scrub(error_type)
            self._finish_timer(record, extra)
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)
