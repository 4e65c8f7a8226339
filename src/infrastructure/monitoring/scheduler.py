"""``LogCleanupService``: the periodic jobs of a process, on APScheduler 3.x.

Two jobs share one ``BackgroundScheduler`` (a daemon thread plus a small pool):

* ``log_cleanup`` runs ``LogCleaner.cleanup_logs`` every ``check_interval_hours``, a
  first time shortly after start (``run_on_start``), so a process restarted more often
  than the interval still cleans;
* ``system_metrics`` takes a psutil snapshot through the ``system`` monitor every
  ``system_metrics.interval_seconds`` when ``system_metrics.enabled`` is true;
* ``alert_evaluation`` evaluates the alert rules every ``alerts.interval_seconds`` when
  there are rules (one process per folder at a time: the evaluator holds a lock);
* ``otlp_export`` ships new lines to an OpenTelemetry Collector when ``otlp.enabled``;
* ``clickhouse_ship`` ships new lines to ClickHouse every ``clickhouse.batch_seconds`` when
  ``clickhouse.ship`` (one process per folder at a time; backs off while the server is down);
* ``columnar_build`` writes the columnar copies of newly settled backups every
  ``query.build_interval_seconds`` when ``query.columnar_cache`` (in a child process at low
  priority, one file at a time, DuckDB on one thread within ``query.build_memory``) — in the
  service of ``monitoring run``, and in an application's own service only with
  ``query.build_in_applications`` (``build_copies``).

Missed runs (a suspended laptop, a long stop of the world) coalesce into one run, and
a job never overlaps itself. A job that raises is logged with its traceback and the
scheduler carries on. When every gunicorn worker starts the service, the cleaner's
folder lock and its "finished recently" stamp make one cleanup happen per interval,
not one per worker; every worker samples its own process.

A scheduler's threads do not survive ``fork``: a child sees the service as stopped and
may ``start()`` its own.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from .config import CleanupSettings, SystemMetricsSettings
from .log_cleaner import CleanupResult, LogCleaner

__all__ = ["ALERT_JOB", "CLEANUP_JOB", "CLICKHOUSE_JOB", "COLUMNAR_JOB", "OTLP_JOB", "SYSTEM_JOB", "LogCleanupService"]

_log = logging.getLogger("infrastructure.monitoring.scheduler")

CLEANUP_JOB: Final = "log_cleanup"
SYSTEM_JOB: Final = "system_metrics"
ALERT_JOB: Final = "alert_evaluation"
OTLP_JOB: Final = "otlp_export"
CLICKHOUSE_JOB: Final = "clickhouse_ship"
COLUMNAR_JOB: Final = "columnar_build"
_FIRST_RUN_DELAY: Final = 5.0
_live_services: weakref.WeakSet[LogCleanupService] = weakref.WeakSet()


class LogCleanupService:
    """Runs the cleaner (and the optional system sampler) in the background.

        service = factory.get_scheduled_cleaner()    # started; idempotent
        service.next_run_time                        # when the next cleanup happens (UTC)
        service.stop()                               # idempotent; start() again later is fine

    ``system_monitor`` is a callable returning the ``system`` monitor, called only when
    sampling is on (building it primes psutil's CPU counters).
    """

    def __init__(
        self,
        cleaner: LogCleaner,
        *,
        cleanup: CleanupSettings | None = None,
        system: SystemMetricsSettings | None = None,
        system_monitor: Callable[[], Any] | None = None,
        alerts: Callable[[], Any] | None = None,
        alert_interval: float = 60.0,
        otlp: Callable[[], Any] | None = None,
        otlp_interval: float = 30.0,
        clickhouse: Callable[[], Any] | None = None,
        clickhouse_interval: float = 5.0,
        columnar: Callable[[], Any] | None = None,
        columnar_interval: float = 60.0,
        build_copies: bool = False,
        first_run_delay: float = _FIRST_RUN_DELAY,
    ) -> None:
        self._cleaner = cleaner
        self.cleanup_settings = cleanup if cleanup is not None else cleaner.settings
        self.system_settings = system if system is not None else SystemMetricsSettings()
        self._system_monitor = system_monitor
        self._system: Any = None
        self._alerts_factory = alerts
        self._alerts: Any = None
        self.alert_interval = alert_interval
        self._otlp_factory = otlp
        self._otlp: Any = None
        self.otlp_interval = otlp_interval
        self._clickhouse_factory = clickhouse
        self._clickhouse: Any = None
        self.clickhouse_interval = clickhouse_interval
        self._columnar_build = columnar
        self.columnar_interval = columnar_interval
        self.build_copies = build_copies
        """Schedule ``columnar_build`` (``monitoring run`` sets it; an application's service leaves the
        copies to that dedicated process unless ``query.build_in_applications``)."""
        self.first_run_delay = first_run_delay
        self._lock = threading.RLock()
        self._scheduler: BackgroundScheduler | None = None
        self._owner_pid = -1
        self.runs = 0
        self.job_errors = 0
        self.last_result: CleanupResult | None = None
        """The latest cleanup's summary (one object, replaced at every run)."""
        _live_services.add(self)

    # ------------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        scheduler = self._scheduler
        return scheduler is not None and scheduler.running and self._owner_pid == os.getpid()

    def start(self) -> bool:
        """Start the jobs; ``False`` when they were already running (nothing changes)."""
        with self._lock:
            if self.running:
                return False
            scheduler = BackgroundScheduler(
                executors={"default": ThreadPoolExecutor(max_workers=2)},
                job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
                timezone=UTC,
                daemon=True,
            )
            scheduler.add_listener(self._on_missed, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
            self._add_jobs(scheduler)
            scheduler.start()
            self._scheduler = scheduler
            self._owner_pid = os.getpid()
            _log.info("monitoring jobs started: %s", self.describe())
            return True

    def _add_jobs(self, scheduler: BackgroundScheduler) -> None:
        now = datetime.now(UTC)
        interval = timedelta(hours=self.cleanup_settings.check_interval_hours)
        first = now + (timedelta(seconds=self.first_run_delay) if self.cleanup_settings.run_on_start else interval)
        scheduler.add_job(self._cleanup_job, "interval", seconds=interval.total_seconds(), id=CLEANUP_JOB,
                          name="log cleanup", next_run_time=first, replace_existing=True)
        if self.system_settings.enabled and self._system_monitor is not None:
            every = self.system_settings.interval_seconds
            scheduler.add_job(self._system_job, "interval", seconds=every, id=SYSTEM_JOB,
                              name="system metrics", next_run_time=now + timedelta(seconds=min(every, 1.0)),
                              replace_existing=True)
        if self._alerts_factory is not None:
            first_alert = now + timedelta(seconds=min(self.alert_interval, 1.0))
            scheduler.add_job(self._alert_job, "interval", seconds=self.alert_interval, id=ALERT_JOB,
                              name="alert evaluation", next_run_time=first_alert, replace_existing=True)
        if self._otlp_factory is not None:
            scheduler.add_job(self._otlp_job, "interval", seconds=self.otlp_interval, id=OTLP_JOB,
                              name="OTLP export", next_run_time=now + timedelta(seconds=min(self.otlp_interval, 1.0)),
                              replace_existing=True)
        if self._clickhouse_factory is not None:
            scheduler.add_job(self._clickhouse_job, "interval", seconds=self.clickhouse_interval, id=CLICKHOUSE_JOB,
                              name="ClickHouse shipping", replace_existing=True,
                              next_run_time=now + timedelta(seconds=min(self.clickhouse_interval, 1.0)))

        if self._columnar_build is not None and self.build_copies:
            scheduler.add_job(self._columnar_job, "interval", seconds=self.columnar_interval, id=COLUMNAR_JOB,
                              name="columnar copies", replace_existing=True,
                              next_run_time=now + timedelta(seconds=self.columnar_interval))

    def stop(self, wait: bool = True) -> None:
        """Stop the jobs; with ``wait`` a cleanup in progress finishes first. Idempotent."""
        with self._lock:
            scheduler, self._scheduler = self._scheduler, None
            if scheduler is None or self._owner_pid != os.getpid():
                return
            if scheduler.running:
                scheduler.shutdown(wait=wait)
            _log.info("monitoring jobs stopped after %d cleanup runs", self.runs)

    def pause(self) -> None:
        """Hold every job (for maintenance); runs missed meanwhile coalesce into one on ``resume``."""
        scheduler = self._scheduler
        if scheduler is not None and self.running:
            scheduler.pause()

    def resume(self) -> None:
        scheduler = self._scheduler
        if scheduler is not None and self.running:
            scheduler.resume()

    def __enter__(self) -> LogCleanupService:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ what is scheduled

    @property
    def cleaner(self) -> LogCleaner:
        return self._cleaner

    @cleaner.setter
    def cleaner(self, cleaner: LogCleaner) -> None:
        """Swap the cleaner; a changed interval takes effect from now on."""
        with self._lock:
            interval_changed = cleaner.settings.check_interval_hours != self.cleanup_settings.check_interval_hours
            self._cleaner = cleaner
            self.cleanup_settings = cleaner.settings
            scheduler = self._scheduler
            if interval_changed and scheduler is not None and self.running:
                scheduler.reschedule_job(CLEANUP_JOB, trigger="interval",
                                         seconds=cleaner.settings.check_interval_hours * 3600)

    def next_run_times(self) -> dict[str, datetime]:
        """Job id -> next run time (timezone-aware, UTC); empty when stopped."""
        scheduler = self._scheduler
        if scheduler is None or not self.running:
            return {}
        return {job.id: job.next_run_time for job in scheduler.get_jobs() if job.next_run_time is not None}

    @property
    def next_run_time(self) -> datetime | None:
        """When the next cleanup runs, or ``None`` when the service is stopped."""
        return self.next_run_times().get(CLEANUP_JOB)

    def describe(self) -> str:
        jobs = self.next_run_times()
        parts = [f"{CLEANUP_JOB} every {self.cleanup_settings.check_interval_hours:g}h"]
        if SYSTEM_JOB in jobs:
            parts.append(f"{SYSTEM_JOB} every {self.system_settings.interval_seconds:g}s")
        if ALERT_JOB in jobs:
            parts.append(f"{ALERT_JOB} every {self.alert_interval:g}s")
        if OTLP_JOB in jobs:
            parts.append(f"{OTLP_JOB} every {self.otlp_interval:g}s")
        if CLICKHOUSE_JOB in jobs:
            parts.append(f"{CLICKHOUSE_JOB} every {self.clickhouse_interval:g}s")
        if COLUMNAR_JOB in jobs:
            parts.append(f"{COLUMNAR_JOB} every {self.columnar_interval:g}s")
        nxt = jobs.get(CLEANUP_JOB)
        if nxt is not None:
            parts.append(f"next cleanup at {nxt.isoformat(timespec='seconds')}")
        return ", ".join(parts)

    def run_now(self) -> CleanupResult:
        """One cleanup in the calling thread (ignores the "finished recently" stamp)."""
        return self._record(self._cleaner.cleanup_logs())

    # ------------------------------------------------------------------ the jobs

    def _cleanup_job(self) -> None:
        try:
            interval = self.cleanup_settings.check_interval_hours * 3600
            self._record(self._cleaner.cleanup_logs(min_interval=interval / 2))
        except Exception:  # noqa: BLE001 - the scheduler must outlive a failing job
            self.job_errors += 1
            _log.exception("scheduled log cleanup raised; the next run is still scheduled")

    def _system_job(self) -> None:
        try:
            monitor = self._system
            if monitor is None and self._system_monitor is not None:
                monitor = self._system = self._system_monitor()  # once: it keeps psutil's CPU baseline
            if monitor is not None:
                monitor.record_system_snapshot()
        except Exception:  # noqa: BLE001 - same: log it, keep the schedule
            self.job_errors += 1
            _log.exception("scheduled system snapshot raised; the next one is still scheduled")

    def _alert_job(self) -> None:
        try:
            if self._alerts is None and self._alerts_factory is not None:
                self._alerts = self._alerts_factory()
            if self._alerts is not None:
                self._alerts.evaluate(wait=False)  # another worker evaluating this folder: skip this round
        except Exception:  # noqa: BLE001 - same: log it, keep the schedule
            self.job_errors += 1
            _log.exception("scheduled alert evaluation raised; the next one is still scheduled")

    def _otlp_job(self) -> None:
        try:
            if self._otlp is None and self._otlp_factory is not None:
                self._otlp = self._otlp_factory()
            if self._otlp is not None:
                self._otlp.ship(wait=False)
        except Exception:  # noqa: BLE001 - same: log it, keep the schedule
            self.job_errors += 1
            _log.exception("scheduled OTLP export raised; the next one is still scheduled")

    def _clickhouse_job(self) -> None:
        try:
            if self._clickhouse is None and self._clickhouse_factory is not None:
                self._clickhouse = self._clickhouse_factory()
            if self._clickhouse is not None:
                self._clickhouse.run_job()  # backing off, or another process ships: returns at once
        except Exception:  # noqa: BLE001 - same: log it, keep the schedule
            self.job_errors += 1
            _log.exception("scheduled ClickHouse shipping raised; the next run is still scheduled")

    def _columnar_job(self) -> None:
        try:
            if self._columnar_build is not None:
                self._columnar_build()  # a child process: the copies' memory never stays in this one
        except Exception:  # noqa: BLE001 - same: log it, keep the schedule
            self.job_errors += 1
            _log.exception("scheduled columnar build raised; the next run is still scheduled")

    def _record(self, result: CleanupResult) -> CleanupResult:
        self.runs += 1
        self.last_result = result
        if result.errors:
            _log.warning("%s", result)
        return result

    @staticmethod
    def _on_missed(event: JobEvent) -> None:
        _log.warning("scheduled job %s could not run at its time (busy or late); it will run once when it can",
                     event.job_id)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"LogCleanupService({state}; {self.describe()})"


def _forget_schedulers_in_child() -> None:
    for service in list(_live_services):
        service._scheduler = None  # its threads stayed in the parent
        service._lock = threading.RLock()


os.register_at_fork(after_in_child=_forget_schedulers_in_child)
