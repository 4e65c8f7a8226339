"""Route an application's own logs into the same rotating JSON files as its metrics.

* stdlib ``logging``: ``JsonLogHandler`` uses python-json-logger to turn a
  ``LogRecord`` (message, ``extra=`` fields, exception and stack) into fields, then
  writes them through the module's writer: same redaction, same rotation, same
  fail-safety. ``factory.logging_handler()`` builds one.
* structlog: ``configure_structlog(writer)`` installs a chain whose last step hands
  the event to the writer, so ``structlog.get_logger().info("cache_miss", key=k)``
  lands as a line in ``logs/app_metrics.log`` next to the metrics.

Both write ``metric_type: "log"`` records: ``operation`` is ``"log"``, plus
``level``, ``logger`` and ``message``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from pythonjsonlogger.core import BaseJsonFormatter

from .interfaces import EventDict, MetricsWriter, Processor, WrappedLogger
from .logger_writer import user_fields

__all__ = ["JsonLogHandler", "MonitoringLogger", "MonitoringLoggerFactory", "configure_structlog", "event_to_record"]


class _FieldsFormatter(BaseJsonFormatter):
    """python-json-logger's field extraction, stopped before serialisation.

    ``serialize_log_record`` is its documented last step; returning the mapping
    instead of a string lets the writer do the rendering (orjson, size cap, one line).
    """

    def __init__(self) -> None:
        super().__init__(["message", "levelname", "name"])

    def serialize_log_record(self, log_data: Any) -> Any:
        return log_data


class JsonLogHandler(logging.Handler):
    """A ``logging.Handler`` that writes records as JSON lines through a metrics writer.

        logging.getLogger().addHandler(factory.logging_handler())
        logging.getLogger("myapp").warning("slow response", extra={"route": "/chat"})
    """

    def __init__(self, writer: MetricsWriter, level: int | str = logging.NOTSET) -> None:
        super().__init__(level)
        self.writer = writer
        self.setFormatter(_FieldsFormatter())
        self._busy = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self._busy, "active", False):  # a fault report about ourselves: avoid a loop
            return
        self._busy.active = True
        try:
            data: dict[str, Any] = dict(self.format(record))  # type: ignore[arg-type] # our formatter returns a mapping
            message = data.pop("message", "")
            level = str(data.pop("levelname", record.levelname)).lower()
            name = data.pop("name", record.name)
            self.writer.write_record({"timestamp": 0.0, "metric_type": "log", "operation": "log",
                                      "level": level, "logger": name, "message": message,
                                      **user_fields(data)})
        except Exception:  # noqa: BLE001
            self.handleError(record)
        finally:
            self._busy.active = False


def event_to_record(_logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Last step of a structlog chain: shape the event like every other line of the family."""
    message = event_dict.pop("event", "")
    level = event_dict.pop("level", method_name)
    event_dict.pop("timestamp", None)
    return {"timestamp": 0.0, "metric_type": "log", "operation": "log", "level": level,
            "logger": event_dict.pop("logger", None) or "structlog", "message": message,
            **user_fields(dict(event_dict))}


class MonitoringLogger:
    """The logger structlog wraps: every level method writes the event through the writer."""

    def __init__(self, writer: MetricsWriter) -> None:
        self._writer = writer

    def msg(self, **event: Any) -> None:
        self._writer.write_record(event)

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


class MonitoringLoggerFactory:
    """structlog ``logger_factory`` producing ``MonitoringLogger``s for one writer."""

    def __init__(self, writer: MetricsWriter) -> None:
        self._logger = MonitoringLogger(writer)

    def __call__(self, *args: Any) -> MonitoringLogger:
        return self._logger


def configure_structlog(
    writer: MetricsWriter,
    *,
    processors: Iterable[Processor] = (),
    level: int = logging.NOTSET,
) -> None:
    """Make ``structlog.get_logger()`` write into ``writer``'s file family.

    ``processors`` run after the context merge and before the event is handed over
    (add your own enrichers there). Levels below ``level`` are dropped at no cost.
    """
    import structlog  # imported here: the package itself must stay quick to import
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
