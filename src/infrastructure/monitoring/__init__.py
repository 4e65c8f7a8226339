"""Zero-memory structured-log telemetry: every metric is one JSON line, written now.

    from infrastructure.monitoring import PerformanceMonitorFactory
    factory = PerformanceMonitorFactory.get_instance()
    factory.create_monitor("llm").record_llm_call(model="gpt-4", provider="openai",
        response_time=2.1, prompt_tokens=100, completion_tokens=200, success=True)

Importing this package opens no file and starts no thread.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._shortcuts import (
        get_checkpoint_monitor,
        get_llm_monitor,
        get_system_monitor,
        get_task_monitor,
        get_tool_monitor,
    )
    from ._sink import FileSink
    from .base_monitor import BaseMonitor
    from .bridges import CopyToMonitoring, JsonLogHandler, MonitoringLoggerFactory, configure_structlog
    from .config import CleanupSettings, MonitoringSettings, SystemMetricsSettings, load_settings, settings_from_mapping
    from .di_config import MonitoringContainer
    from .errors import ConfigError, InvalidFieldError, MonitoringError, QueryError, UnknownMonitorError, WriteError
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

_EXPORTS: dict[str, str] = {
    "BaseMonitor": ".base_monitor",
    "CheckpointPerformanceMonitor": ".implementations",
    "CleanupResult": ".log_cleaner",
    "CleanupSettings": ".config",
    "ConfigError": ".errors",
    "CopyToMonitoring": ".bridges",
    "DropRecord": ".processors",
    "EventDict": ".interfaces",
    "FileSink": "._sink",
    "InvalidFieldError": ".errors",
    "JsonLogHandler": ".bridges",
    "LLMPerformanceMonitor": ".implementations",
    "LightweightPerformanceMonitor": ".lightweight_monitor",
    "LineSink": ".interfaces",
    "LogCleaner": ".log_cleaner",
    "LogCleanupService": ".scheduler",
    "MetricsLogger": ".logger_writer",
    "MetricsWriter": ".interfaces",
    "Monitor": ".interfaces",
    "MonitoringContainer": ".di_config",
    "MonitoringError": ".errors",
    "MonitoringLoggerFactory": ".bridges",
    "MonitoringSettings": ".config",
    "NoOpMetricsLogger": ".logger_writer",
    "PerformanceMonitorFactory": ".factory",
    "QueryError": ".errors",
    "Processor": ".interfaces",
    "Redactor": ".processors",
    "SystemMetricsSettings": ".config",
    "SystemPerformanceMonitor": ".implementations",
    "TaskPerformanceMonitor": ".implementations",
    "ToolPerformanceMonitor": ".implementations",
    "UnknownMonitorError": ".errors",
    "WriteError": ".errors",
    "WriterPool": ".logger_writer",
    "add_process_info": ".processors",
    "add_timestamp": ".processors",
    "configure_structlog": ".bridges",
    "get_checkpoint_monitor": "._shortcuts",
    "get_llm_monitor": "._shortcuts",
    "get_system_monitor": "._shortcuts",
    "get_task_monitor": "._shortcuts",
    "get_tool_monitor": "._shortcuts",
    "load_settings": ".config",
    "settings_from_mapping": ".config",
}
"""Public name -> the module that defines it. Loaded on first use (PEP 562), so importing
the package, or only its query side, does not pay for the scheduler, the container and the
bridges: an application that records metrics and never cleans does not import APScheduler."""


def __getattr__(name: str) -> Any:
    """``__version__`` is read from the installed metadata on first use (importlib.metadata is slow
    to import); every other public name is imported from its module on first use."""
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(import_module(module, __name__), name)
        globals()[name] = value
        return value
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version  # slow to import: only for __version__

        try:
            return version("llm-telemetry-logs")
        except PackageNotFoundError:  # running from a checkout that was never installed
            return "0.0.0+local"
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, "__version__"})


__all__ = [
    "BaseMonitor",
    "CheckpointPerformanceMonitor",
    "CleanupResult",
    "CleanupSettings",
    "ConfigError",
    "CopyToMonitoring",
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
    "QueryError",
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
    "get_checkpoint_monitor",
    "get_llm_monitor",
    "get_system_monitor",
    "get_task_monitor",
    "get_tool_monitor",
    "load_settings",
    "settings_from_mapping",
]
