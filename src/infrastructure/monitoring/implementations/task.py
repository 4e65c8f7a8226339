"""Tasks and agents: what ran, for how long, and whether it succeeded."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from ..base_monitor import BaseMonitor

__all__ = ["TaskPerformanceMonitor"]

_CHANGE_COUNTS = ("files_changed", "lines_added", "lines_removed")


class TaskPerformanceMonitor(BaseMonitor):
    """One line per task or agent run, in ``logs/task_metrics.log``.

        tasks = factory.create_monitor("task")
        tasks.record_task_execution("data_processing", duration=12.5, success=True)
        tasks.record_agent_execution("researcher", "web-agent-1", duration=48.0)
        tasks.record_code_change(files_changed=["app.py", "test_app.py"], lines_added=42, lines_removed=7)
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

    def record_code_change(
        self,
        files_changed: int | Iterable[str],
        lines_added: int = 0,
        lines_removed: int = 0,
        **extra: Any,
    ) -> None:
        """What a coding agent changed: a number of files, or their paths (kept in ``files``,
        counted in ``files_changed``), and the lines added and removed. Inside a task the line
        carries its ``task_id``; ``session_summary`` adds them up per task and per session."""
        try:
            record: dict[str, Any] = {"timestamp": 0.0, "metric_type": "event", "operation": "code_change"}
            files = None
            if isinstance(files_changed, Iterable) and not isinstance(files_changed, (str, bytes)):
                files = [self.logger.scrub(str(path)) for path in files_changed]
                files_changed = len(files)
            record.update(files_changed=files_changed, lines_added=lines_added, lines_removed=lines_removed)
            if files is not None:
                record["files"] = files
            counts = (files_changed, lines_added, lines_removed)
            if not all(n.__class__ is int and n >= 0 for n in counts):
                self._validate(record, _CHANGE_COUNTS, _CHANGE_COUNTS)
            if extra:
                self._merge_extra(record, extra)
            self.logger.write_record(record, screened=True)
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)

    def _record(self, record: dict[str, Any], error_type: str | None, extra: dict[str, Any]) -> None:
        try:
            if error_type is not None:
                record["error_type"] = self.logger.scrub(error_type)
            self._finish_timer(record, extra)
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)
