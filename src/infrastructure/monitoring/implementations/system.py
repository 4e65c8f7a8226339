"""System load: one psutil sample of this process and its host, written as gauges."""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

import psutil

from ..base_monitor import BaseMonitor
from ..interfaces import MetricsWriter

__all__ = ["SystemPerformanceMonitor"]

_PRIME_SECONDS = 0.1


class SystemPerformanceMonitor(BaseMonitor):
    """One ``system_sample`` line per snapshot, in ``logs/system_metrics.log``.

    psutil measures CPU percentages between two calls, so its very first reading is
    always 0.0. The monitor primes both counters when it is created, and the first
    snapshot waits out what is left of a 0.1 s window so that it is a real reading.

        system = factory.create_monitor("system")
        system.record_system_snapshot()      # usually from the scheduler, every minute
    """

    module_name: ClassVar[str] = "system"

    def __init__(self, logger: MetricsWriter | None = None) -> None:
        super().__init__(logger)
        self._pid = -1
        self._process: psutil.Process | None = None
        self._primed_at = 0.0
        self._prime()

    def _prime(self) -> None:
        self._pid = os.getpid()
        self._process = psutil.Process(self._pid)
        psutil.cpu_percent(None)
        self._process.cpu_percent(None)
        self._primed_at = time.monotonic()

    def record_system_snapshot(self, **extra: Any) -> None:
        """Sample process RSS, CPU %, threads, open fds; host CPU %, memory %, disk and network."""
        try:
            if self._pid != os.getpid():  # forked: psutil's Process belongs to the parent
                self._prime()
            wait = _PRIME_SECONDS - (time.monotonic() - self._primed_at)
            if wait > 0:
                time.sleep(wait)
            self._primed_at = 0.0
            record = {"timestamp": 0.0, "metric_type": "gauge", "operation": "system_sample", **self._sample()}
            if extra:
                self._merge_extra(record, extra)
            self.logger.write_record(record, screened=True)
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)

    def _sample(self) -> dict[str, Any]:
        process = self._process
        assert process is not None
        with process.oneshot():
            rss = process.memory_info().rss
            process_cpu = process.cpu_percent(None)
            threads = process.num_threads()
            fds = process.num_fds() if hasattr(process, "num_fds") else None
        memory = psutil.virtual_memory()
        disk = psutil.disk_usage(_existing_folder(os.path.dirname(getattr(self.logger, "path", "") or ".")))
        net = psutil.net_io_counters()
        return {
            "cpu_percent": psutil.cpu_percent(None),
            "memory_percent": memory.percent,
            "memory_available_bytes": memory.available,
            "process_rss_bytes": rss,
            "process_cpu_percent": process_cpu,
            "process_threads": threads,
            "process_open_fds": fds,
            "disk_percent": disk.percent,
            "disk_free_bytes": disk.free,
            "net_bytes_sent": net.bytes_sent if net else None,
            "net_bytes_recv": net.bytes_recv if net else None,
        }


def _existing_folder(path: str) -> str:
    """The log folder, or its nearest existing parent while it has not been created yet."""
    path = os.path.abspath(path or ".")
    while not os.path.isdir(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path
