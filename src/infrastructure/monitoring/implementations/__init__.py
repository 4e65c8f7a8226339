"""The built-in monitors, one module each."""

from .checkpoint import CheckpointPerformanceMonitor
from .llm import LLMPerformanceMonitor
from .system import SystemPerformanceMonitor
from .task import TaskPerformanceMonitor
from .tool import ToolPerformanceMonitor

BUILTIN_MONITORS = {
    "checkpoint": CheckpointPerformanceMonitor,
    "llm": LLMPerformanceMonitor,
    "system": SystemPerformanceMonitor,
    "task": TaskPerformanceMonitor,
    "tool": ToolPerformanceMonitor,
}
"""Monitor name -> class, as ``create_monitor`` knows them before any ``register_monitor``."""

__all__ = [
    "BUILTIN_MONITORS",
    "CheckpointPerformanceMonitor",
    "LLMPerformanceMonitor",
    "SystemPerformanceMonitor",
    "TaskPerformanceMonitor",
    "ToolPerformanceMonitor",
]
