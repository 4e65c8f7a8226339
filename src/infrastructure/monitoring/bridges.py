"""Route an application's own logs into the same rotating JSON files as its metrics.

* stdlib ``logging``: ``JsonLogHandler`` uses python-json-logger to turn a
  ``LogRecord`` (message, ``extra=`` fields, exception and stack) into fields, then
  writes them through the module's writer: same redaction, same rotation, same
  fail-safety. ``factory.logging_handler()`` builds one. structlog events sent through
  the standard library (``ProcessorFormatter.wrap_for_formatter`` as the last step of
  the chain) are recognised and written like the structlog bridge writes them.
* structlog, in the application's own chain: ``CopyToMonitoring(writer)``
  (``factory.structlog_processor()``) writes a copy of each event and hands it on
  unchanged, so the application keeps its renderer and output.
* structlog, routed here only: ``configure_structlog(writer)`` installs a chain whose
  last step hands the event to the writer — unless the application configured
  structlog already, which it leaves alone (with a warning) unless told ``replace=True``.

Every path writes the same shape of ``metric_type: "log"`` record: ``operation`` is
``"log"``, plus ``level``, ``logger`` and ``message`` (structlog's ``event``); a traceback
is under ``exception`` and a stack under ``stack`` whichever path wrote it; structlog's
own ``timestamp`` is dropped (the line's ``timestamp`` is the moment it was written).
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Final

from pythonjsonlogger.core import BaseJsonFormatter

from .interfaces import EventDict, MetricsWriter, Processor, WrappedLogger
from .logger_writer import user_fields

__all__ = [
    "FIELD_EXCEPTION",
    "FIELD_STACK",
    "CopyToMonitoring",
    "JsonLogHandler",
    "MonitoringLogger",
    "MonitoringLoggerFactory",
    "configure_structlog",
    "event_to_record",
]

FIELD_EXCEPTION: Final = "exception"
"""The formatted traceback of a log record, from either bridge (structlog's name for it)."""
FIELD_STACK: Final = "stack"
"""The formatted stack of a record logged with ``stack_info=True`` (structlog's name for it)."""

_log = logging.getLogger("infrastructure.monitoring")
_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
# Frames skipped when a stack is rendered here rather than by the application's chain.
_NOT_THE_APP: Final = ["logging", "infrastructure.monitoring"]
_STRUCTLOG_META: Final = ("_record", "_from_structlog")  # ProcessorFormatter's own keys


def _exc_info(value: Any, fallback: Any = None) -> _ExcInfo | None:
    """structlog's and logging's spellings of "this exception": an exception, a
    ``sys.exc_info()`` tuple, or ``True`` for the one being handled."""
    if isinstance(value, BaseException):
        return type(value), value, value.__traceback__
    if isinstance(value, tuple) and len(value) == 3 and isinstance(value[1], BaseException):
        return value
    if value:
        if isinstance(fallback, tuple) and len(fallback) == 3 and isinstance(fallback[1], BaseException):
            return fallback
        current = sys.exc_info()
        if current[1] is not None:
            return current
    return None


def _tracebacks(fields: dict[str, Any], record_exc_info: Any = None) -> None:
    """Put a traceback under ``exception`` and a stack under ``stack``, whatever wrote them.

    python-json-logger calls them ``exc_info``/``stack_info``; structlog's renderers
    ``exception``/``stack``; an unrendered structlog event still holds ``exc_info=True``.
    """
    exc = fields.pop("exc_info", None)
    if exc and FIELD_EXCEPTION not in fields:
        if isinstance(exc, str):
            fields[FIELD_EXCEPTION] = exc
        else:
            info = _exc_info(exc, record_exc_info)
            if info is not None:
                fields[FIELD_EXCEPTION] = "".join(traceback.format_exception(*info)).rstrip("\n")
    stack = fields.pop("stack_info", None)
    if stack and FIELD_STACK not in fields:
        if isinstance(stack, str):
            fields[FIELD_STACK] = stack
        else:  # structlog's stack_info=True that no StackInfoRenderer rendered: render it like one
            import structlog

            fields.update(structlog.processors.StackInfoRenderer(_NOT_THE_APP)(None, "", {"stack_info": True}))


class _FieldsFormatter(BaseJsonFormatter):
    """python-json-logger's field extraction, stopped before serialisation.

    ``serialize_log_record`` is its documented last step; returning the mapping
    instead of a string lets the writer do the rendering (orjson, size cap, one line).
    """

    def __init__(self) -> None:
        super().__init__(["message", "levelname", "name"])

    def serialize_log_record(self, log_data: Any) -> Any:
        return log_data


def _from_structlog(record: logging.LogRecord) -> bool:
    """Was this record made by ``ProcessorFormatter.wrap_for_formatter``? (structlog's own test)"""
    return isinstance(record.msg, dict) and hasattr(record, "_logger") and hasattr(record, "_name")


class JsonLogHandler(logging.Handler):
    """A ``logging.Handler`` that writes records as JSON lines through a metrics writer.

        logging.getLogger().addHandler(factory.logging_handler())
        logging.getLogger("myapp").warning("slow response", extra={"route": "/chat"})

    Keep its own formatter: it extracts fields. With structlog routed through the standard
    library, end the structlog chain with ``ProcessorFormatter.wrap_for_formatter`` and add
    this handler; the event name becomes ``message``.
    """

    def __init__(self, writer: MetricsWriter, level: int | str = logging.NOTSET) -> None:
        super().__init__(level)
        self.writer = writer
        self.setFormatter(_FieldsFormatter())
        self._busy = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        busy = self._busy
        if getattr(busy, "active", False):
            # A record logged while we write one is about that write (a fault, a truncated
            # file): written right after it. Those logged while writing these are dropped,
            # so a failing file cannot loop.
            pending = getattr(busy, "pending", None)
            if pending is not None and len(pending) < 8:
                pending.append(record)
            return
        busy.active, busy.pending = True, []
        try:
            self._write(record)
            pending, busy.pending = busy.pending, None
            for nested in pending:
                self._write(nested)
        finally:
            busy.active, busy.pending = False, None

    def _write(self, record: logging.LogRecord) -> None:
        try:
            formatted: Any = self.format(record)
            # another formatter set on this handler returns text: that text is the message
            data: dict[str, Any] = {"message": formatted} if isinstance(formatted, str) else dict(formatted)
            message = data.pop("message", "")
            level = str(data.pop("levelname", record.levelname)).lower()
            name = data.pop("name", record.name)
            if _from_structlog(record):
                message = data.pop("event", message)
                for key in ("timestamp", "level", "logger", *_STRUCTLOG_META):
                    data.pop(key, None)
            _tracebacks(data, record.exc_info)
            self.writer.write_record({"timestamp": 0.0, "metric_type": "log", "operation": "log",
                                      "level": level, "logger": name, "message": message,
                                      **user_fields(data)})
        except Exception:  # noqa: BLE001
            self.handleError(record)


def event_to_record(_logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Last step of a structlog chain: shape the event like every other line of the family."""
    return _to_record(method_name, event_dict)


def _to_record(method_name: str, event_dict: EventDict) -> dict[str, Any]:
    message = event_dict.pop("event", "")
    level = event_dict.pop("level", method_name)
    for key in ("timestamp", *_STRUCTLOG_META):
        event_dict.pop(key, None)
    logger = event_dict.pop("logger", None) or "structlog"
    fields = dict(event_dict)
    _tracebacks(fields)
    return {"timestamp": 0.0, "metric_type": "log", "operation": "log", "level": level,
            "logger": logger, "message": message, **user_fields(fields)}


class CopyToMonitoring:
    """A structlog processor that writes a copy of each event into a module's file family
    and hands the event on unchanged: the application keeps its own chain and output.

        structlog.configure(processors=[
            structlog.contextvars.merge_contextvars, structlog.processors.add_log_level,
            factory.structlog_processor(),          # <- a copy into logs/app_metrics.log
            structlog.processors.JSONRenderer(),     # the application's own renderer
        ])

    Put it after the steps that enrich or drop events and before the renderer. An
    exception is rendered from ``exc_info`` if no ``format_exc_info`` ran before it.
    Like every write, a failure is counted by the writer, not raised (unless strict mode).
    """

    __slots__ = ("_writer",)

    def __init__(self, writer: MetricsWriter) -> None:
        self._writer = writer

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        self._writer.write_record(_to_record(method_name, dict(event_dict)))
        return event_dict


class MonitoringLogger:
    """The logger structlog wraps: every level method writes the event through the writer."""

    def __init__(self, writer: MetricsWriter) -> None:
        self._writer = writer

    def msg(self, **event: Any) -> None:
        self._writer.write_record(event)

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


class MonitoringLoggerFactory:
    """structlog ``logger_factory`` producing ``MonitoringLogger``s for one writer.

    For a chain of your own that writes only here, end it with ``event_to_record``:
    ``structlog.configure(processors=[..., event_to_record], logger_factory=MonitoringLoggerFactory(writer))``.
    """

    def __init__(self, writer: MetricsWriter) -> None:
        self._logger = MonitoringLogger(writer)

    def __call__(self, *args: Any) -> MonitoringLogger:
        return self._logger


def configure_structlog(
    writer: MetricsWriter,
    *,
    processors: Iterable[Processor] = (),
    level: int = logging.NOTSET,
    replace: bool = False,
) -> bool:
    """Make ``structlog.get_logger()`` write into ``writer``'s file family.

    ``processors`` run after the context merge and before the event is handed over
    (add your own enrichers there). Levels below ``level`` are dropped at no cost.

    An application that configured structlog itself keeps its configuration: this
    logs a warning and returns ``False`` unless ``replace=True`` (add ``CopyToMonitoring``
    to your chain instead). Replacing a configuration made here is always allowed.
    """
    import structlog  # imported here: the package itself must stay quick to import

    if structlog.is_configured() and not replace and not isinstance(
            structlog.get_config().get("logger_factory"), MonitoringLoggerFactory):
        _log.warning("monitoring: structlog is already configured by the application and was left as it is; "
                     "add factory.structlog_processor() to its processors (before the renderer) to copy events "
                     "into the log files, or call configure_structlog(replace=True) to replace it")
        return False
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            *processors,
            event_to_record,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=MonitoringLoggerFactory(writer),
        cache_logger_on_first_use=True,
    )
    return True
