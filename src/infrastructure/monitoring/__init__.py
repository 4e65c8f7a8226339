"""Zero-memory structured-log telemetry: every metric is one JSON line, written now.

    from infrastructure.monitoring import PerformanceMonitorFactory
    factory = PerformanceMonitorFactory.get_instance()
    factory.create_monitor("llm").record_llm_call(model="gpt-4", provider="openai",
        response_time=2.1, prompt_tokens=100, completion_tokens=200, success=True)

Importing this package opens no file and starts no thread.
"""

from __future__ import annotations

from typing import Any

from ._sink import FileSink
from .base_monitor import BaseMonitor
from .bridges import JsonLogHandler, MonitoringLoggerFactory, configure_structlog
from .config import (
    CleanupSettings,
    MonitoringSettings,
    SystemMetricsSettings,
    load_settings,
    settings_from_mapping,
)
from .di_config import MonitoringContainer
from .errors import ConfigError, InvalidFieldError, MonitoringError, UnknownMonitorError, WriteError
from .factory import PerformanceMonitorFactory
from .implementations import (
    CheckpointPerformanceMonitor,
    LLMPerformanceMonitor,
    SystemPerformanceMonitor,
    TaskPerformanceMonitor,
    ToolPerformanceMonitor,
)
from .interfaces import EventDict, LineSink, MetricsWriter, Monitor, Processor
from .lightweight_monitor import LightweightPerformanceMonitor
from .log_cleaner import CleanupResult, LogCleaner
from .logger_writer import MetricsLogger, NoOpMetricsLogger, WriterPool
from .processors import DropRecord, Redactor, add_process_info, add_timestamp
from .scheduler import LogCleanupService


def __getattr__(name: str) -> Any:
    """``__version__`` is read from the installed metadata on first use (importlib.metadata is slow to import)."""
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("llm-telemetry-logs")
        except PackageNotFoundError:  # running from a checkout that was never installed
            return "0.0.0+local"
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BaseMonitor",
    "CheckpointPerformanceMonitor",
    "CleanupResult",
    "CleanupSettings",
    "ConfigError",
    "DropRecord",
    "EventDict",
    "FileSink",
    "InvalidFieldError",
    "JsonLogHandler",
    "LLMPerformanceMonitor",
    "LightweightPerformanceMonitor",
    "LineSink",
    "LogCleaner",
    "LogCleanupService",
    "MetricsLogger",
    "MetricsWriter",
    "Monitor",
    "MonitoringContainer",
    "MonitoringError",
    "MonitoringLoggerFactory",
    "MonitoringSettings",
    "NoOpMetricsLogger",
    "PerformanceMonitorFactory",
    "Processor",
    "Redactor",
    "SystemMetricsSettings",
    "SystemPerformanceMonitor",
    "TaskPerformanceMonitor",
    "ToolPerformanceMonitor",
    "UnknownMonitorError",
    "WriteError",
    "WriterPool",
    "__version__",
    "add_process_info",
    "add_timestamp",
    "configure_structlog",
    "load_settings",
    "settings_from_mapping",
]
