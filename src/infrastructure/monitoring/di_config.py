"""The dependency-injector container: configuration -> writers -> monitors -> cleaner -> scheduler.

The container is the only place that knows how the parts fit; the library classes
take plain constructor arguments and never import it. Tests and applications swap
parts by overriding providers::

    container = MonitoringContainer()
    container.settings.override(providers.Object(load_settings(overrides={"logging": {"log_dir": str(tmp)}})))
    factory = PerformanceMonitorFactory(container)
"""

from __future__ import annotations

from typing import Any

from dependency_injector import containers, providers

from .config import load_settings
from .implementations import (
    CheckpointPerformanceMonitor,
    LLMPerformanceMonitor,
    SystemPerformanceMonitor,
    TaskPerformanceMonitor,
    ToolPerformanceMonitor,
)
from .log_cleaner import LogCleaner
from .logger_writer import WriterPool, default_redactor
from .scheduler import LogCleanupService

__all__ = ["MonitoringContainer"]


def _alert_evaluator(**kwargs: Any) -> Any:
    """``AlertEvaluator(**kwargs)``, imported on first use: the write path never loads the query engine."""
    from .alerts.engine import AlertEvaluator

    return AlertEvaluator(**kwargs)


def _otlp_shipper(**kwargs: Any) -> Any:
    """``OtlpShipper(**kwargs)``, imported on first use (it needs the ``otlp`` extra)."""
    from .exporters.otlp import OtlpShipper

    return OtlpShipper(**kwargs)


class MonitoringContainer(containers.DeclarativeContainer):
    """Override ``config_path`` or ``settings`` to point everything elsewhere; override
    ``processors`` (a list, empty by default) to run structlog processors on every
    record after redaction."""

    config_path: providers.Object[str | None] = providers.Object(None)
    settings = providers.Singleton(load_settings, config_path)
    redactor = providers.Singleton(default_redactor, settings)
    processors = providers.List()
    writers = providers.Singleton(WriterPool, settings=settings, processors=processors, redactor=redactor)

    llm = providers.Factory(LLMPerformanceMonitor, logger=writers.provided.get.call("llm"),
                            pricing=settings.provided.pricing)
    checkpoint = providers.Factory(CheckpointPerformanceMonitor, logger=writers.provided.get.call("checkpoint"))
    tool = providers.Factory(ToolPerformanceMonitor, logger=writers.provided.get.call("tool"))
    task = providers.Factory(TaskPerformanceMonitor, logger=writers.provided.get.call("task"))
    system = providers.Factory(SystemPerformanceMonitor, logger=writers.provided.get.call("system"))

    monitors: providers.FactoryAggregate[object] = providers.FactoryAggregate(
        llm=llm, checkpoint=checkpoint, tool=tool, task=task, system=system,  # type: ignore[arg-type]
    )

    cleaner = providers.Factory(
        LogCleaner,
        settings=settings.provided.log_cleanup,
        log_dir=settings.provided.logging.log_dir,
        audit=writers.provided.get.call("cleaner"),
        backup_count=settings.provided.logging.rotation.backup_count,
    )
    """Pass ``settings=CleanupSettings(...)`` to build one with other retention rules."""
    alerts = providers.Factory(
        _alert_evaluator,
        settings=settings.provided.alerts,
        log_dir=settings.provided.logging.log_dir,
        writer=writers.provided.get.call("alerts"),
    )
    otlp = providers.Factory(
        _otlp_shipper,
        settings=settings.provided.otlp,
        log_dir=settings.provided.logging.log_dir,
        writer=writers.provided.get.call("exporter"),
    )
    scheduler = providers.Factory(
        LogCleanupService,
        cleaner=cleaner,
        system=settings.provided.system_metrics,
        system_monitor=system.provider,
        alert_interval=settings.provided.alerts.interval_seconds,
        otlp_interval=settings.provided.otlp.interval_seconds,
    )
