"""The log writer: a record in, one JSON line out, nothing kept.

Every record takes the same short path, and every step costs every record, so the
path is kept short enough to read at a glance:

1. the caller (a monitor) builds the record with its keys already in order, starting
   with a ``timestamp`` placeholder; the writer stamps the time and appends
   ``module``, ``pid``, ``host`` and the global labels (``service_name``,
   ``environment``) from one dict built once per writer;
2. the ``Redactor`` replaces secrets, then any extra processors run, structlog-style.
   Built-in monitors screen their few string arguments themselves (``scrub``) and
   pass ``screened=True``, which saves the per-key walk on the hottest path;
3. ``orjson`` renders one line; a line over ``max_line_bytes`` has its largest values cut;
4. the sink appends the line with one ``write`` and rotates when due.

Fail-safe by default: whatever goes wrong is counted, reported at a bounded rate
through stdlib ``logging`` and, once writing works again, noted in the family as a
``writer_fault`` record. With ``strict=True`` the same problems raise.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import orjson

from ._console import ConsoleExporter
from ._faults import FaultCounts, FaultTracker
from ._render import fit_line, render
from ._sink import FileSink
from .config import MonitoringSettings, load_settings
from .context import BOUND
from .errors import WriteError
from .interfaces import EventDict, LineSink, MetricsWriter, Processor
from .processors import DropRecord, Redactor, process_info
from .schema import WRITER_FIELDS

__all__ = [
    "SWITCHED_ON", "MetricsLogger", "NoOpMetricsLogger", "Sampler", "WriterPool", "active_writer", "default_pool",
    "default_redactor", "set_default_pool", "user_fields",
]

_time = time.time
_dumps = orjson.dumps
_bound_get = BOUND.get
_OPT: Final = orjson.OPT_APPEND_NEWLINE
_live_writers: weakref.WeakSet[MetricsLogger] = weakref.WeakSet()
MonitorBuilder = Callable[[str], Any]
"""``owner(name)``: the monitor of ``name`` as the factory owning a pool makes it (``None``: a name it lacks)."""


class MetricsLogger:
    """Writes the records of one module into its file family.

    One instance per module per process, shared by every monitor of that module.
    It holds no record after a call returns: the only state is the sink's open
    descriptor and a handful of fault counters.

    Example::

        writer = MetricsLogger("custom", FileSink("logs/custom_metrics.log"))
        writer.log_timer("custom.resize", 0.25, width=640)
    """

    __slots__ = (
        "__weakref__", "_bound", "_cap", "_drop", "_faults", "_include", "_labels", "_processors", "_redactor",
        "_sink", "_tail", "module", "scrub", "strict",
    )

    def __init__(
        self,
        module: str,
        sink: LineSink,
        *,
        redactor: Redactor | None = None,
        processors: Iterable[Processor] = (),
        max_line_bytes: int = 16_384,
        strict: bool = False,
        include_pid: bool = True,
        include_host: bool = True,
        fault_report_interval: float = 60.0,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        if max_line_bytes < 1024:
            raise ValueError(f"max_line_bytes must be at least 1024, got {max_line_bytes!r}")
        self.module = module
        self.strict = strict
        self._sink = sink
        self._redactor = redactor
        self._processors = tuple(processors)
        self._drop: tuple[type[BaseException], ...] = (DropRecord,)
        if self._processors:  # structlog processors signal a drop with their own DropEvent
            from structlog import DropEvent

            self._drop = (DropRecord, DropEvent)
        self.scrub = redactor.scrub_text if redactor is not None else _same
        """Screens one caller-supplied string (used by monitors that pass ``screened=True``)."""
        self._cap = max_line_bytes
        self._include = (include_pid, include_host)
        self._labels = dict(labels or {})
        """Global labels (``service_name``, ``environment``): part of the tail, so free per record."""
        self._tail: dict[str, Any] = {}
        self._bound: tuple[Any, dict[str, Any]] = (None, {})
        """The last bound-fields mapping seen and its screened form (bindings change rarely)."""
        self._faults = FaultTracker(module, sink.path, fault_report_interval)
        if hasattr(sink, "on_rotation_failure"):
            sink.on_rotation_failure = self._faults.rotation_failed
        self._refresh_tail()
        _live_writers.add(self)

    def _refresh_tail(self) -> None:
        """The fields appended to every record, rebuilt after ``fork`` (the pid changes)."""
        pid, host = process_info()
        tail: dict[str, Any] = {"module": self.module}
        if self._include[0]:
            tail["pid"] = pid
        if self._include[1]:
            tail["host"] = host
        tail.update(self._labels)
        self._tail = tail

    # ------------------------------------------------------------------ the design's API

    def log_timer(self, operation: str, duration: float, **fields: Any) -> None:
        """A duration in seconds (``metric_type: timer``)."""
        self.write_record({"timestamp": 0.0, "metric_type": "timer", "operation": operation,
                           "duration": duration, **user_fields(fields)})

    def log_counter(self, operation: str, value: float = 1, **fields: Any) -> None:
        """A count of occurrences (``metric_type: counter``); readers sum ``value``."""
        self.write_record({"timestamp": 0.0, "metric_type": "counter", "operation": operation,
                           "value": value, **user_fields(fields)})

    def log_gauge(self, operation: str, value: float, **fields: Any) -> None:
        """A level at this instant (``metric_type: gauge``); readers take the latest or the peak."""
        self.write_record({"timestamp": 0.0, "metric_type": "gauge", "operation": operation,
                           "value": value, **user_fields(fields)})

    def log_event(self, operation: str, **fields: Any) -> None:
        """Something that happened, with no single number (``metric_type: event``)."""
        self.write_record({"timestamp": 0.0, "metric_type": "event", "operation": operation,
                           **user_fields(fields)})

    # ------------------------------------------------------------------ the one path

    def write_record(self, record: dict[str, Any], *, screened: bool = False) -> None:
        """Stamp, process, render and append ``record``.

        ``record`` must start with ``timestamp`` (any placeholder) followed by
        ``metric_type`` and ``operation``; the writer owns it from here on.
        ``screened=True`` promises that no key is a secret name and that every
        caller-supplied string already went through ``scrub`` (and extra fields
        through ``redact``); the redactor then skips the record.
        """
        now = _time()
        try:
            record["timestamp"] = now
            bound = _bound_get()
            if bound:
                self._add_bound(record, bound)
            record.update(self._tail)
            if not screened and self._redactor is not None:
                record = self._redactor(self, record["metric_type"], record)  # type: ignore[assignment]
            for processor in self._processors:
                record = processor(self, record["metric_type"], record)  # type: ignore[assignment]
            try:
                line = _dumps(record, option=_OPT)
            except Exception:  # noqa: BLE001 - Decimal, Path, objects, cycles, huge ints: the careful path
                line = render(record)
            if len(line) > self._cap:
                line = fit_line(record, line, self._cap)
            self._sink.write(line, now)
        except self._drop:
            return
        except OSError as exc:
            self._faults.write_failed(exc, now)
            if self.strict:
                raise WriteError(self._sink.path, exc) from exc
            return
        except Exception as exc:
            self._faults.internal_error(exc, now)
            if self.strict:
                raise
            return
        if self._faults.active:
            self._note_recovery(now)

    def _add_bound(self, record: dict[str, Any], bound: Any) -> None:
        """The context's bound fields, screened once per binding, after the record's own fields."""
        seen, screened = self._bound
        if seen is not bound:
            screened = user_fields(self.redact(dict(bound)))
            self._bound = (bound, screened)
        for key, value in screened.items():
            if key not in record:
                record[key] = value

    def _note_recovery(self, now: float) -> None:
        summary = self._faults.recovered(now)
        if summary is not None:
            self.write_record({"timestamp": 0.0, "metric_type": "event", "operation": "writer_fault", **summary})

    # ------------------------------------------------------------------ for monitors and tools

    def redact(self, fields: dict[str, Any]) -> dict[str, Any]:
        """``fields`` with secret keys and credential-shaped values replaced."""
        if self._redactor is None:
            return fields
        return self._redactor(self, "redact", fields)  # type: ignore[return-value]

    def report_invalid(self, field: str, reason: str) -> None:
        """Count a field rejected by a monitor (the monitor flags it in the record)."""
        self._faults.invalid_field(field, reason, _time())

    def report_internal_error(self, exc: BaseException) -> None:
        """Count a bug caught at a monitor's boundary."""
        self._faults.internal_error(exc, _time())

    @property
    def faults(self) -> FaultCounts:
        """Counters of everything that went wrong in this process (for tests and status)."""
        return self._faults.snapshot()

    @property
    def path(self) -> str:
        return self._sink.path

    @property
    def sink(self) -> LineSink:
        return self._sink

    def close(self) -> None:
        self._sink.close()

    def __repr__(self) -> str:
        return f"MetricsLogger(module={self.module!r}, path={self._sink.path!r})"


class NoOpMetricsLogger:
    """The writer used when monitoring is switched off: every call returns at once."""

    __slots__ = ("module",)
    strict = False
    path = "/dev/null"

    def __init__(self, module: str) -> None:
        self.module = module

    def log_timer(self, operation: str, duration: float, **fields: Any) -> None:
        return None

    def log_counter(self, operation: str, value: float = 1, **fields: Any) -> None:
        return None

    def log_gauge(self, operation: str, value: float, **fields: Any) -> None:
        return None

    def log_event(self, operation: str, **fields: Any) -> None:
        return None

    def write_record(self, record: dict[str, Any], *, screened: bool = False) -> None:
        return None

    @staticmethod
    def scrub(value: Any) -> Any:
        return value

    @staticmethod
    def redact(fields: dict[str, Any]) -> dict[str, Any]:
        return fields

    def report_invalid(self, field: str, reason: str) -> None:
        return None

    def report_internal_error(self, exc: BaseException) -> None:
        return None

    @property
    def faults(self) -> FaultCounts:
        return FaultCounts()

    def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"NoOpMetricsLogger(module={self.module!r})"


def _refresh_writers_in_child() -> None:
    for writer in list(_live_writers):
        writer._refresh_tail()


os.register_at_fork(after_in_child=_refresh_writers_in_child)


def user_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Keep caller fields from overwriting the ones the writer owns: ``operation=`` becomes ``user_operation``."""
    if not fields or WRITER_FIELDS.isdisjoint(fields):
        return fields
    return {(f"user_{k}" if k in WRITER_FIELDS else k): v for k, v in fields.items()}


class WriterPool:
    """One writer per module and one sink per file, created on first use, for one process.

    The pool is what the DI container hands out as a singleton; it is bounded by the
    number of module names, never by the number of records.
    """

    def __init__(
        self,
        settings: MonitoringSettings,
        processors: Iterable[Processor] = (),
        redactor: Redactor | None = None,
    ) -> None:
        self.settings = settings
        self._processors = tuple(processors)
        self._redactor = redactor
        self._console = ConsoleExporter() if settings.logging.console else None
        """Last in every writer's chain when ``logging.console`` is on (one per pool: it draws the trees)."""
        self._lock = threading.Lock()
        self._writers: dict[str, MetricsWriter] = {}
        self._sinks: dict[str, FileSink] = {}
        self._monitor_lock = threading.RLock()  # a monitor's constructor may ask for another monitor
        self._monitors: dict[str, Any] = {}
        self._owner: MonitorBuilder | None = None

    def get(self, module: str) -> MetricsWriter:
        """The writer of ``module`` (a no-op writer when monitoring or the module is off)."""
        writer = self._writers.get(module)
        if writer is not None:
            return writer
        with self._lock:
            writer = self._writers.get(module)
            if writer is None:
                writer = self._build(module)
                self._writers[module] = writer
            return writer

    def _build(self, module: str) -> MetricsWriter:
        log = self.settings.logging
        module_settings = log.module(module)
        if not self.settings.enabled or not module_settings.enabled:
            return NoOpMetricsLogger(module)
        path = str(log.log_dir / module_settings.file)
        sink = self._sinks.get(path)
        if sink is None:
            rot = log.rotation
            sink = FileSink(
                path, max_bytes=rot.max_bytes, backup_count=rot.backup_count, when=rot.when,
                interval=rot.interval, utc=rot.utc, file_mode=log.file_mode, fsync=log.fsync,
                check_interval=log.reopen_check_interval, module=module,
            )
            self._sinks[path] = sink
        processors = self._processors
        if module_settings.sample_rate < 1.0:
            processors = (*processors, Sampler(module_settings.sample_rate))
        if self._console is not None:  # last: it prints what the file receives
            processors = (*processors, self._console)
        return MetricsLogger(
            module, sink, redactor=self._redactor, processors=processors,
            max_line_bytes=log.max_line_bytes, strict=log.strict,
            include_pid=log.include_pid, include_host=log.include_host,
            fault_report_interval=log.fault_report_interval, labels=self.settings.global_labels,
        )

    def modules(self) -> list[str]:
        return sorted(self._writers)

    # ------------------------------------------------------------------ one monitor per name

    def monitor(self, name: str, build: Callable[[WriterPool, str], Any]) -> Any:
        """The one monitor of ``name`` over this pool, made on first use.

        The factory and the decorators both ask here, so a process has one ``llm`` monitor
        (one price table) and a class registered with the factory, or a container
        override, is what the decorators record with too. The factory that owns the pool
        (``attach``) makes the names it knows; any other name, or every name when no
        factory owns the pool, is made by ``build(pool, name)``.
        """
        monitor = self._monitors.get(name)
        if monitor is None:
            with self._monitor_lock:
                monitor = self._monitors.get(name)
                if monitor is None:
                    owner = self._owner
                    monitor = owner(name) if owner is not None else None
                    if monitor is None:
                        monitor = build(self, name)
                    self._monitors[name] = monitor
        return monitor

    def attach(self, owner: MonitorBuilder) -> None:
        """Let the factory that uses this pool make its monitors: ``owner(name)`` returns the
        monitor of a name it knows, ``None`` for any other."""
        with self._monitor_lock:
            self._owner = owner

    def forget_monitor(self, name: str) -> None:
        """Drop the monitor of ``name`` (its class was registered again): the next ask makes a new one."""
        with self._monitor_lock:
            self._monitors.pop(name, None)

    def close(self) -> None:
        """Close every file; a second call does nothing."""
        with self._lock:
            for sink in self._sinks.values():
                sink.close()
            self._sinks.clear()
            self._writers.clear()
        with self._monitor_lock:
            self._monitors.clear()


class Sampler:
    """Keeps a deterministic share of a high-volume family's records (``modules.<name>.sample_rate``).

    Of every ``1 / rate`` records one is kept, by a counter (no randomness: the same calls
    keep the same records, and the share is exact over any run). A kept record carries
    ``sample_weight`` (how many records it stands for), so ``--agg sum:sample_weight`` scales
    totals back. A failure is always kept, with weight 1, so error counts stay exact: ``success``
    false, an error span (``status: "error"``) or an error-level log line. The writer's own
    ``writer_fault`` notes pass untouched: they say how many records an outage cost, and a
    sampled family needs that count as much as any other. A processor in the writer's chain: a
    family that is not sampled does not pay for it.
    """

    __slots__ = ("_credit", "_lock", "rate", "weight")

    def __init__(self, rate: float) -> None:
        if not 0 < rate <= 1:
            raise ValueError(f"sample_rate must be in (0, 1], got {rate!r}")
        self.rate = rate
        self.weight = 1.0 / rate
        self._credit = 1.0 - rate  # the first record is kept
        self._lock = threading.Lock()

    def __call__(self, _logger: Any, _name: str, record: EventDict) -> EventDict:
        if record.get("operation") in _NEVER_SAMPLED and record.get("metric_type") == "event":
            return record
        if _failed(record):
            record["sample_weight"] = 1
            return record
        with self._lock:
            self._credit += self.rate
            keep = self._credit >= 1.0
            if keep:
                self._credit -= 1.0
        if not keep:
            raise DropRecord
        record["sample_weight"] = self.weight
        return record


_NEVER_SAMPLED: Final = frozenset({"writer_fault"})
"""Events the package writes about its own faults: always kept, never weighted."""
_FAILED_LEVELS: Final = frozenset({"error", "critical", "fatal", "exception"})


def _failed(record: EventDict) -> bool:
    """A record of something that went wrong: a failed call, an error span, an error-level log line."""
    if record.get("success") is False or record.get("status") == "error":
        return True
    level = record.get("level")
    return isinstance(level, str) and level.lower() in _FAILED_LEVELS


def default_redactor(settings: MonitoringSettings) -> Redactor | None:
    """The redactor built from ``logging.redact_keys`` / ``redact_values`` (``None`` when both are off)."""
    log = settings.logging
    if not log.redact_keys and not log.redact_values:
        return None
    return Redactor(keys=log.redact_keys, values=log.redact_values)


def _same(value: Any) -> Any:
    return value


# --------------------------------------------------------------------------- the process default

SWITCHED_ON: Final[list[bool]] = [True]
"""Recording switched on in this process (``PerformanceMonitorFactory.disable()`` / ``enable()``):
the decorators, the tracer and sessions read it once per call; monitors are switched as a whole
(``lightweight_monitor.set_recording``), so a switched-off record call costs what it costs when
the configuration says ``enabled: false``."""

_DEFAULT: list[WriterPool | None] = [None]
"""The process-wide pool (one cell, read without a lock on every lookup)."""
_default_lock = threading.Lock()


def default_pool() -> WriterPool:
    """The pool every monitor, decorator, tracer and session writes through unless given another.

    Like prometheus_client's ``REGISTRY`` it lives beside what it holds, so nothing on the
    write path reaches up to the factory for it. It is built on first use from the
    configuration (``load_settings()``: the YAML, then the environment);
    ``PerformanceMonitorFactory.get_instance()`` is a façade over this same pool, and
    ``set_default_pool`` (or ``PerformanceMonitorFactory.set_instance``) replaces it.
    """
    pool = _DEFAULT[0]
    if pool is None:
        with _default_lock:
            pool = _DEFAULT[0]
            if pool is None:
                settings = load_settings()
                pool = _DEFAULT[0] = WriterPool(settings, redactor=default_redactor(settings))
    return pool


def active_writer(module: str) -> MetricsWriter:
    """The writer of ``module`` in the process default pool, or a no-op one while recording is
    switched off (``PerformanceMonitorFactory.disable()``): what tasks, sessions, profiles and
    spans write through, read once per record so ``disable()`` stops them at once."""
    if not SWITCHED_ON[0]:
        return NoOpMetricsLogger(module)
    return default_pool().get(module)


def set_default_pool(pool: WriterPool | None) -> WriterPool | None:
    """Make ``pool`` the process default (``None``: build a new one on next use); returns the
    previous one, left open (its owner closes it)."""
    with _default_lock:
        previous, _DEFAULT[0] = _DEFAULT[0], pool
    return previous
