"""Checkpoint saves and loads: how long, how big, whether they worked."""

from __future__ import annotations

from typing import Any, ClassVar

from ..base_monitor import BaseMonitor

__all__ = ["CheckpointPerformanceMonitor"]


class CheckpointPerformanceMonitor(BaseMonitor):
    """One line per checkpoint save or load, in ``logs/checkpoint_metrics.log``.

        ckpt = factory.create_monitor("checkpoint")
        ckpt.record_checkpoint_save(duration=0.5, size=1024, success=True)
        ckpt.record_checkpoint_load(duration=0.3, size=1024, success=True)
    """

    module_name: ClassVar[str] = "checkpoint"

    def record_checkpoint_save(self, duration: float, size: int, success: bool = True, **extra: Any) -> None:
        """A checkpoint written: ``duration`` in seconds, ``size`` in bytes."""
        self._record("checkpoint_save", duration, size, success, extra)

    def record_checkpoint_load(self, duration: float, size: int, success: bool = True, **extra: Any) -> None:
        """A checkpoint read back: ``duration`` in seconds, ``size`` in bytes."""
        self._record("checkpoint_load", duration, size, success, extra)

    def _record(self, operation: str, duration: float, size: int, success: bool, extra: dict[str, Any]) -> None:
        try:
            record = {"timestamp": 0.0, "metric_type": "timer", "operation": operation,
                      "duration": duration, "size": size, "success": success}
            self._finish_timer(record, extra, size=True)
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)
