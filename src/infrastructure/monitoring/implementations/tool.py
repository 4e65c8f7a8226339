"""Tool calls made by agents: which tool, how long, whether it worked."""

from __future__ import annotations

from typing import Any, ClassVar

from ..base_monitor import BaseMonitor

__all__ = ["ToolPerformanceMonitor"]


class ToolPerformanceMonitor(BaseMonitor):
    """One line per tool call, in ``logs/tool_metrics.log``.

        tools = factory.create_monitor("tool")
        tools.record_tool_call("read_file", duration=0.012, success=True, file_size=4096)
    """

    module_name: ClassVar[str] = "tool"

    def record_tool_call(
        self,
        tool_name: str,
        duration: float,
        success: bool = True,
        *,
        error_type: str | None = None,
        **extra: Any,
    ) -> None:
        """``duration`` in seconds; extra keywords (``file_size=...``) land in the record."""
        try:
            scrub = self.logger.scrub
            record = {"timestamp": 0.0, "metric_type": "timer", "operation": "tool_call",
                      "tool_name": scrub(tool_name), "duration": duration, "success": success}
            if error_type is not None:
                record["error_type"] = scrub(error_type)
            self._finish_timer(record, extra)
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)
