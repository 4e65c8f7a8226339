"""The dependency-injector container: configuration -> writers -> monitors -> cleaner -> scheduler.

The container is the only place that knows how the parts fit; the library classes
take plain constructor arguments and never import it. Tests and applications swap
parts by overriding providers::

    container = MonitoringContainer()
    container.settings.override(providers.Object(load_settings(overrides={"logging": {"log_dir": str(tmp)}})))
    factory = PerformanceMonitorFactory(container)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dependency_injector import containers, providers

from ._copies import build_in_worker
from .config import MonitoringSettings, load_settings
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
    from .alerts.engine import AlertEvaluator  # the query engine: only processes that evaluate rules load it

    return AlertEvaluator(**kwargs)


def _otlp_shipper(**kwargs: Any) -> Any:
    """``OtlpShipper(**kwargs)``, imported on first use (it needs the ``otlp`` extra)."""
    from .exporters.otlp import OtlpShipper  # the optional otlp extra: only processes that export load it

    return OtlpShipper(**kwargs)


def _clickhouse_shipper(settings: MonitoringSettings, **kwargs: Any) -> Any:
    """``ClickHouseShipper`` of the ``clickhouse`` section, imported on first use (HTTP code stays out
    of processes that do not ship)."""
    from .fleet.shipper import ClickHouseShipper  # HTTP code only in processes that ship

    return ClickHouseShipper(settings.clickhouse, settings.logging.log_dir,
                             retention_days=settings.log_cleanup.retention_days, **kwargs)


def _clickhouse_job(settings: MonitoringSettings, build: Callable[[], Any]) -> Callable[[], Any] | None:
    return build if settings.clickhouse.ship else None


def _alert_job(settings: MonitoringSettings, build: Callable[[], Any]) -> Callable[[], Any] | None:
    """The scheduler's alert job: only when alerting is on and there is a rule to evaluate."""
    return build if settings.alerts.enabled and settings.alerts.rules else None


def _columnar_job(settings: MonitoringSettings) -> Callable[[], Any] | None:
    """The scheduler's columnar build (``query.columnar_cache``): missing copies, in a child process."""
    if not settings.query.columnar_cache:
        return None
    query = settings.query

    def build() -> int:
        return build_in_worker(settings.logging.log_dir, max_seconds=query.build_max_seconds,
                               memory_limit=f"{max(16, query.build_memory >> 20)}MB")

    return build


def _otlp_job(settings: MonitoringSettings, build: Callable[[], Any]) -> Callable[[], Any] | None:
    return build if settings.otlp.enabled else None


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
        external_url=settings.provided.server.external_url,
        slos=settings.provided.slos,
        labels=settings.provided.global_labels,
    )
    otlp = providers.Factory(
        _otlp_shipper,
        settings=settings.provided.otlp,
        log_dir=settings.provided.logging.log_dir,
        writer=writers.provided.get.call("exporter"),
        labels=settings.provided.global_labels,
    )
    clickhouse = providers.Factory(_clickhouse_shipper, settings, writer=writers.provided.get.call("exporter"))
    scheduler = providers.Factory(
        LogCleanupService,
        cleaner=cleaner,
        system=settings.provided.system_metrics,
        system_monitor=system.provider,
        alerts=providers.Callable(_alert_job, settings, alerts.provider),
        alert_interval=settings.provided.alerts.interval_seconds,
        otlp=providers.Callable(_otlp_job, settings, otlp.provider),
        otlp_interval=settings.provided.otlp.interval_seconds,
        clickhouse=providers.Callable(_clickhouse_job, settings, clickhouse.provider),
        clickhouse_interval=settings.provided.clickhouse.batch_seconds,
        columnar=providers.Callable(_columnar_job, settings),
        columnar_interval=settings.provided.query.build_interval_seconds,
        build_copies=settings.provided.query.build_in_applications,
    )
    """The scheduled jobs, each built when it first runs: cleanup, system sampling, alert
    evaluation and OTLP export (the last two only when configured)."""
