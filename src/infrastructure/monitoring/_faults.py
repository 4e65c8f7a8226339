"""Count what went wrong, tell the operator once per period, and note the gap in the log.

A writer that cannot write must not flood the application's own log either: each kind
of fault is reported through stdlib ``logging`` on first sight and then at most once
per ``report_interval``, with the running count. When writing works again the writer
appends one ``writer_fault`` record saying how many records were dropped and when,
so a reader of the family sees the hole instead of guessing.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FaultTracker", "FaultCounts"]

_logger = logging.getLogger("infrastructure.monitoring")


@dataclass
class FaultCounts:
    """A snapshot of a writer's faults since it was created."""

    write_failures: int = 0
    dropped: int = 0
    invalid_fields: int = 0
    internal_errors: int = 0
    last_error: str | None = None
    by_kind: dict[str, int] = field(default_factory=dict)


class FaultTracker:
    """Per-writer fault bookkeeping: a few counters, never a list of records."""

    def __init__(self, module: str, path: str, report_interval: float = 60.0) -> None:
        self.module = module
        self.path = path
        self.report_interval = report_interval
        self._lock = threading.Lock()
        self._counts = FaultCounts()
        self._last_report: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        # The outage in progress: (first failure time, description, records dropped).
        self._outage: tuple[float, str, int] | None = None
        self.active = False
        """True while writes fail: a plain attribute, read on every record."""


    def snapshot(self) -> FaultCounts:
        with self._lock:
            c = self._counts
            return FaultCounts(
                c.write_failures, c.dropped, c.invalid_fields, c.internal_errors, c.last_error, dict(c.by_kind)
            )

    def write_failed(self, exc: BaseException, now: float) -> None:
        described = _describe(exc)
        with self._lock:
            self._counts.write_failures += 1
            self._counts.dropped += 1
            self._counts.last_error = described
            self._bump(type(exc).__name__)
            first, what, dropped = self._outage or (now, described, 0)
            self._outage = (first, what, dropped + 1)
            self.active = True
            emit = self._due("write", now)
        if emit:
            _logger.warning(
                "monitoring: cannot write %s records to %s (%s); %d dropped so far, the application is not affected",
                self.module, self.path, described, dropped + 1,
            )

    def recovered(self, now: float) -> dict[str, Any] | None:
        """End the outage; return the fields of the ``writer_fault`` record to append."""
        with self._lock:
            if self._outage is None:
                return None
            first, what, dropped = self._outage
            self._outage = None
            self.active = False
            self._last_report.pop("write", None)
        _logger.warning(
            "monitoring: writing %s records to %s resumed after %.1fs; %d records were dropped",
            self.module, self.path, now - first, dropped,
        )
        return {"fault": what, "dropped": dropped, "first_failure": first, "last_failure": now}

    def rotation_failed(self, exc: BaseException, now: float) -> None:
        """A rotation failed; the line was written (to the current file) and nothing is lost."""
        described = _describe(exc)
        with self._lock:
            self._bump("rotation_failed")
            self._counts.last_error = described
            emit = self._due("rotate", now)
        if emit:
            _logger.warning("monitoring: cannot rotate %s (%s); writing on to the current file, which grows past "
                            "its size limit, and retrying", self.path, described)

    def invalid_field(self, field_name: str, reason: str, now: float) -> None:
        with self._lock:
            self._counts.invalid_fields += 1
            self._bump("invalid_field")
            emit = self._due("invalid:" + field_name, now)
        if emit:
            _logger.warning("monitoring: %s record has an invalid %r (%s); written with the problem flagged",
                            self.module, field_name, reason)

    def internal_error(self, exc: BaseException, now: float) -> None:
        with self._lock:
            self._counts.internal_errors += 1
            self._counts.last_error = _describe(exc)
            self._bump(type(exc).__name__)
            emit = self._due("internal", now)
        if emit:
            _logger.error("monitoring: internal error while recording a %s metric; the record was dropped",
                          self.module, exc_info=exc)

    def _bump(self, kind: str) -> None:
        by_kind = self._counts.by_kind
        if kind in by_kind or len(by_kind) < 64:
            by_kind[kind] = by_kind.get(kind, 0) + 1

    def _due(self, key: str, now: float) -> bool:
        last = self._last_report.get(key)
        if last is not None and now - last < self.report_interval:
            return False
        if len(self._last_report) >= 256:
            self._last_report.clear()
        self._last_report[key] = now
        return True


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]
