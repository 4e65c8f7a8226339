"""``PerformanceMonitorFactory``: the one object applications talk to.

It asks the DI container for its parts and remembers one cheap monitor per name, so
``create_monitor("llm")`` anywhere in a process returns the same object writing to
the same files. Nothing is created before it is needed: importing the package opens
no file and starts no thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar

from dependency_injector import providers

from .bridges import CopyToMonitoring, JsonLogHandler, configure_structlog
from .config import CleanupSettings, MonitoringSettings, settings_from_mapping
from .di_config import MonitoringContainer
from .errors import MonitoringError, UnknownMonitorError
from .instrumentation.sdk import auto_instrument
from .interfaces import MetricsWriter, Processor
from .lightweight_monitor import LightweightPerformanceMonitor, set_recording, switch_off
from .log_cleaner import CleanupResult, LogCleaner
from .logger_writer import SWITCHED_ON, NoOpMetricsLogger, WriterPool, default_pool, set_default_pool
from .scheduler import LogCleanupService
from .schema import MODULE_NAME_RE

__all__ = ["PerformanceMonitorFactory"]


class PerformanceMonitorFactory:
    """Builds and caches monitors; the process-wide instance comes from ``get_instance()``.

        factory = PerformanceMonitorFactory.get_instance()
        llm = factory.create_monitor("llm")
        llm.record_llm_call(model="gpt-4", provider="openai", response_time=2.1,
                            prompt_tokens=100, completion_tokens=200, success=True)

    Build a private one with ``PerformanceMonitorFactory(container)`` (tests, or an
    application that wants two separate log folders).
    """

    _instance: ClassVar[PerformanceMonitorFactory | None] = None
    _instance_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, container: MonitoringContainer | None = None) -> None:
        self.container = container if container is not None else MonitoringContainer()
        self._lock = threading.Lock()
        self._custom: dict[str, type[LightweightPerformanceMonitor]] = {}
        self._pool: WriterPool | None = None
        """The container's writer pool once this factory has used it (what ``shutdown`` closes)."""
        self._cleaner: LogCleaner | None = None
        self._service: LogCleanupService | None = None

    # ------------------------------------------------------------------ the singleton

    @classmethod
    def get_instance(cls) -> PerformanceMonitorFactory:
        """The process-wide factory: a façade over the process's default writer pool
        (``logger_writer.default_pool``, built on first use from the YAML and the environment),
        so its monitors and the decorators' write to the same open files."""
        instance = cls._instance
        if instance is None:
            with cls._instance_lock:
                instance = cls._instance
                if instance is None:  # the configuration is read (and checked) on first use, as before
                    container = MonitoringContainer()
                    container.writers.override(providers.Callable(default_pool))
                    container.settings.override(providers.Callable(_default_settings))
                    instance = cls._instance = cls(container)
                    instance._auto_instrument()
        return instance

    def _auto_instrument(self) -> None:
        """``instrumentation.auto``: patch the SDKs it names as the process-wide factory starts."""
        try:
            settings = self.settings
            self._writers()  # from now on the decorators record with this factory's monitors
        except MonitoringError:
            return  # a broken configuration is reported at first use, where it always was
        auto_instrument(settings)

    @classmethod
    def set_instance(cls, factory: PerformanceMonitorFactory | None) -> PerformanceMonitorFactory | None:
        """Make ``factory`` the process-wide one: what ``get_instance()``, the decorators, the
        tracer and sessions write through from now on (``None``: rebuild from the configuration
        on next use). Returns the previous one, not shut down."""
        with cls._instance_lock:
            previous, cls._instance = cls._instance, factory
            set_default_pool(factory._writers() if factory is not None else None)
        return previous

    @classmethod
    def reset_instance(cls) -> None:
        """Close the process-wide factory's files and forget it (the next call rebuilds it)."""
        with cls._instance_lock:
            instance, cls._instance = cls._instance, None
            pool = set_default_pool(None)
        if instance is not None:
            instance.shutdown()
        elif pool is not None:  # used by decorators or monitors only, never through a factory
            pool.close()

    # ------------------------------------------------------------------ monitors

    @property
    def settings(self) -> MonitoringSettings:
        return self.container.settings()

    def available_monitors(self) -> list[str]:
        """Every name ``create_monitor`` accepts right now."""
        return sorted({*self.container.monitors.providers, *self._custom})

    def create_monitor(self, name: str) -> Any:
        """The monitor registered as ``name``, the same instance on every call.

        The instance lives in this factory's writer pool (``WriterPool.monitor``), where the
        decorators and ``instrument()`` find it too when this is the process-wide factory.
        Raises ``UnknownMonitorError`` (a ``LookupError``) listing the known names.
        """
        if name not in self._custom and name not in self.container.monitors.providers:
            raise UnknownMonitorError(name, self.available_monitors())
        return self._writers().monitor(name, self._make)

    def _build_monitor(self, name: str) -> Any:
        """The monitor of ``name`` as this factory makes it (a registered class, else the
        container's), or ``None`` for a name it does not know (the pool's caller makes that one)."""
        custom = self._custom.get(name)
        if custom is not None:
            monitor: Any = custom(self.get_writer(name))
        elif name in self.container.monitors.providers:
            monitor = self.container.monitors(name)
        else:
            return None
        if isinstance(monitor.logger, NoOpMetricsLogger):  # monitoring or this module is switched off
            switch_off(monitor)
        return monitor

    def _make(self, _pool: WriterPool, name: str) -> Any:
        """``create_monitor``'s own way to make a name it knows, should another factory own the pool."""
        return self._build_monitor(name)

    def register_monitor(self, name: str, monitor_class: type[LightweightPerformanceMonitor]) -> None:
        """Make ``create_monitor(name)`` return a ``monitor_class`` writing to ``<name>_metrics.log``.

        Registering a name again replaces the class (and the cached instance). On the
        process-wide factory the decorators recording to ``name`` use the new class too.
        """
        if not isinstance(name, str) or not MODULE_NAME_RE.match(name):
            raise ValueError(f"monitor name {name!r} must be letters, digits, '_', '.', '-' (it names a file)")
        if not (isinstance(monitor_class, type) and issubclass(monitor_class, LightweightPerformanceMonitor)):
            raise TypeError(f"monitor_class must subclass LightweightPerformanceMonitor, got {monitor_class!r}")
        with self._lock:
            self._custom[name] = monitor_class
        try:
            pool = self._writers()
        except MonitoringError:
            return  # a broken configuration is reported at first use, where it always was
        pool.forget_monitor(name)

    def get_writer(self, module: str) -> MetricsWriter:
        """The writer of ``module``'s file family (shared by all its monitors)."""
        return self._writers().get(module)

    def _writers(self) -> WriterPool:
        """The container's pool, which from now on makes its monitors the way this factory does."""
        pool = self._pool
        if pool is None:
            pool = self._pool = self.container.writers()
            pool.attach(self._build_monitor)
        return pool

    # ------------------------------------------------------------------ the application's own logs

    def logging_handler(self, module: str = "app", level: int | str = logging.NOTSET) -> logging.Handler:
        """A stdlib ``logging.Handler`` writing JSON lines into ``<module>_metrics.log``."""
        return JsonLogHandler(self.get_writer(module), level)

    def structlog_processor(self, module: str = "app") -> CopyToMonitoring:
        """A processor for the application's own structlog chain (before its renderer) that
        copies every event into ``<module>_metrics.log`` and leaves the rest of the chain alone."""
        return CopyToMonitoring(self.get_writer(module))

    def configure_structlog(
        self, module: str = "app", *, processors: list[Processor] | None = None, level: int = logging.NOTSET,
        replace: bool = False,
    ) -> bool:
        """Route ``structlog.get_logger()`` events into ``<module>_metrics.log``.

        Leaves a structlog configuration the application made itself in place (logs a
        warning, returns ``False``) unless ``replace=True``; see ``structlog_processor``."""
        return configure_structlog(self.get_writer(module), processors=processors or (), level=level,
                                   replace=replace)

    # ------------------------------------------------------------------ retention and scheduled jobs

    def get_log_cleaner(self) -> LogCleaner:
        """The cleaner built from the ``log_cleanup`` settings (or the last ``setup_log_cleaner``)."""
        cleaner = self._cleaner
        if cleaner is None:
            self._writers()  # its audit writer comes from this factory's pool
            with self._lock:
                cleaner = self._cleaner
                if cleaner is None:
                    cleaner = self._cleaner = self.container.cleaner()
        return cleaner

    def force_log_cleanup(self, *, dry_run: bool | None = None, retention_days: float | None = None) -> CleanupResult:
        """Run one cleanup now, in this thread, with the configured rules (or these overrides).

        Never raises for a file it cannot handle: those are counted in ``result.errors``
        and listed in ``result.failures``.
        """
        return self.get_log_cleaner().cleanup_logs(dry_run=dry_run, retention_days=retention_days)

    def setup_log_cleaner(self, config: Mapping[str, Any] | CleanupSettings | None = None) -> LogCleaner:
        """Replace the cleaner's rules: the given keys of the ``log_cleanup`` section, validated
        like the YAML (an unknown key or a bad value raises ``ConfigError``), over the
        configured ones. ``force_log_cleanup`` and the scheduled service use it from now on."""
        if isinstance(config, CleanupSettings):
            rules = config
        else:
            given = dict(config or {})
            parsed = settings_from_mapping({"log_cleanup": given}, source="setup_log_cleaner").log_cleanup
            rules = replace(self.settings.log_cleanup, **{key: getattr(parsed, key) for key in given})
        self._writers()
        cleaner = self.container.cleaner(settings=rules)
        with self._lock:
            self._cleaner = cleaner
            service = self._service
        if service is not None:
            service.cleaner = cleaner
        return cleaner

    def get_scheduled_cleaner(self, *, start: bool = True) -> LogCleanupService:
        """The process's ``LogCleanupService`` (one per factory), started unless ``start=False``.

        Safe to call from every worker process: cleanups of one folder never overlap and
        happen once per interval, whichever worker gets there first.
        """
        cleaner = self.get_log_cleaner()
        with self._lock:
            service = self._service
            if service is None:
                service = self._service = self.container.scheduler(cleaner=cleaner)
        if start:
            service.start()
        return service

    def get_alert_evaluator(self, **overrides: Any) -> Any:
        """The ``AlertEvaluator`` of the configured rules; transitions go to ``alerts.log``.
        ``overrides`` replace its arguments (``parser=`` to read the records from a ClickHouse table)."""
        self._writers()
        return self.container.alerts(**overrides)

    def get_otlp_shipper(self) -> Any:
        """The ``OtlpShipper`` of the ``otlp`` section (needs ``pip install '.[otlp]'``)."""
        self._writers()
        return self.container.otlp()

    # ------------------------------------------------------------------ switching recording at run time

    @staticmethod
    def disable() -> None:
        """Stop recording in this process, now, without a restart: every monitor, decorator, span
        and session call returns at once (a switched-off call costs what ``enabled: false`` costs).
        Files stay open; ``enable()`` resumes."""
        set_recording(False)

    @staticmethod
    def enable() -> None:
        """Resume recording after ``disable()`` (a configuration with ``enabled: false`` stays off)."""
        set_recording(True)

    def is_enabled(self) -> bool:
        """Records are being written: neither ``disable()``-d nor switched off by the configuration."""
        return SWITCHED_ON[0] and self.settings.enabled

    # ------------------------------------------------------------------ lifecycle

    def shutdown(self) -> None:
        """Stop the scheduled jobs (letting a running cleanup finish) and close every file this
        factory opened. Records made afterwards are counted as faults."""
        with self._lock:
            service, self._service = self._service, None
            self._cleaner = None
        if service is not None:
            service.stop(wait=True)
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:  # never built (or its configuration was bad): nothing to close; its monitors go with it
            pool.close()
            self.container.writers.reset()

    def __repr__(self) -> str:
        return f"PerformanceMonitorFactory(log_dir={str(self.settings.logging.log_dir)!r})"


def _default_settings() -> MonitoringSettings:
    return default_pool().settings

