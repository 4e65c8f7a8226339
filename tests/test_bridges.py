"""The application's own stdlib and structlog logs land in the same files as its metrics."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from infrastructure.monitoring import MonitoringLoggerFactory, PerformanceMonitorFactory
from infrastructure.monitoring.bridges import event_to_record

from .conftest import read_records


def test_stdlib_logging_handler(factory: PerformanceMonitorFactory, log_dir: Path) -> None:
    """python-json-logger extracts message, extras, traceback (`exception`) and stack (`stack`); the writer redacts."""
    logger = logging.getLogger("myapp.test_bridges")
    logger.propagate = False
    handler = factory.logging_handler()
    logger.addHandler(handler)
    try:
        logger.warning("slow response from %s", "model", extra={"route": "/chat", "operation": "x"})
        try:
            raise ValueError("bad input")
        except ValueError:
            logger.exception("failed", extra={"password": "hunter2"})
        logger.warning("where am I", stack_info=True)
    finally:
        logger.removeHandler(handler)
    warning, error, stacked = read_records(log_dir / "app_metrics.log")
    assert list(warning)[:6] == ["timestamp", "metric_type", "operation", "level", "logger", "message"]
    assert (warning["metric_type"], warning["level"], warning["logger"], warning["message"]) == (
        "log", "warning", "myapp.test_bridges", "slow response from model")
    assert (warning["route"], warning["user_operation"], warning["module"]) == ("/chat", "x", "app")
    assert error["level"] == "error"
    assert error["exception"].endswith("ValueError: bad input")
    assert "exc_info" not in error
    assert "test_stdlib_logging_handler" in stacked["stack"]
    assert "stack_info" not in stacked
    assert error["password"] == "[REDACTED]"


def test_structlog_routes_into_the_family(factory: PerformanceMonitorFactory, log_dir: Path) -> None:
    """After configure_structlog, structlog events become lines of app_metrics.log."""
    try:
        factory.configure_structlog(level=logging.INFO)
        log = structlog.get_logger()
        structlog.contextvars.bind_contextvars(request_id="r-1")
        log.info("cache_miss", key="user:42", api_key="secret-value")
        log.debug("dropped by level")
        log.error("upstream failed", status=502)
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.reset_defaults()
    info, error = read_records(log_dir / "app_metrics.log")
    assert (info["metric_type"], info["level"], info["message"], info["key"], info["request_id"]) == (
        "log", "info", "cache_miss", "user:42", "r-1")
    assert info["api_key"] == "[REDACTED]"
    assert next(iter(info)) == "timestamp"
    assert (error["level"], error["status"]) == ("error", 502)


# --------------------------------------------------------------------------- structlog through the stdlib


@pytest.fixture
def stdlib_structlog(factory: PerformanceMonitorFactory) -> Iterator[logging.Logger]:
    """structlog configured the documented stdlib way, its last step ProcessorFormatter.wrap_for_formatter,
    with our handler on the stdlib logger and nothing else."""
    target = logging.getLogger("myapp.structlog_stdlib")
    target.propagate = False
    target.setLevel(logging.DEBUG)
    handler = factory.logging_handler()
    target.addHandler(handler)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.add_log_level,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    try:
        yield target
    finally:
        target.removeHandler(handler)
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()


def test_structlog_through_processor_formatter_lands_like_the_bridge(
        stdlib_structlog: logging.Logger, log_dir: Path) -> None:
    """An event sent through wrap_for_formatter: its name is the message, its ISO timestamp is not kept."""
    log = structlog.get_logger(stdlib_structlog.name)
    structlog.contextvars.bind_contextvars(request_id="r-9")
    log.info("cache_miss", key="user:42", api_key="secret-value")
    log.warning("retry %d of %d", 2, 3)
    info, warning = read_records(log_dir / "app_metrics.log")
    assert list(info)[:6] == ["timestamp", "metric_type", "operation", "level", "logger", "message"]
    assert (info["level"], info["logger"], info["message"]) == ("info", stdlib_structlog.name, "cache_miss")
    assert (info["key"], info["request_id"], info["api_key"]) == ("user:42", "r-9", "[REDACTED]")
    assert isinstance(info["timestamp"], float)
    assert not {"event", "user_timestamp", "user_level", "user_logger", "_record", "_logger"} & set(info)
    assert (warning["level"], warning["message"]) == ("warning", "retry 2 of 3")


def test_structlog_tracebacks_through_processor_formatter(stdlib_structlog: logging.Logger, log_dir: Path) -> None:
    """log.exception, exc_info=True and exc_info=<exception> all give the traceback text under `exception`."""
    log = structlog.get_logger(stdlib_structlog.name)
    try:
        raise KeyError("missing-1")
    except KeyError:
        log.exception("one")
    try:
        raise ValueError("missing-2")
    except ValueError:
        log.error("two", exc_info=True)
    try:
        raise RuntimeError("missing-3")
    except RuntimeError as exc:
        caught = exc
    log.error("three", exc_info=caught)
    log.info("four", stack_info=True)
    one, two, three, four = read_records(log_dir / "app_metrics.log")
    assert one["exception"].startswith("Traceback (most recent call last):")
    assert one["exception"].endswith("KeyError: 'missing-1'")
    assert two["exception"].endswith("ValueError: missing-2")
    assert three["exception"].endswith("RuntimeError: missing-3")
    assert not any("exc_info" in line for line in (one, two, three))
    assert "test_structlog_tracebacks_through_processor_formatter" in four["stack"]
    assert "stack_info" not in four


def test_a_chain_that_renders_tracebacks_itself_is_not_rendered_twice(
        factory: PerformanceMonitorFactory, log_dir: Path) -> None:
    """format_exc_info before wrap_for_formatter: its `exception` is kept, with no second copy."""
    target = logging.getLogger("myapp.structlog_rendered")
    target.propagate = False
    handler = factory.logging_handler()
    target.addHandler(handler)
    structlog.configure(
        processors=[structlog.stdlib.add_log_level, structlog.processors.format_exc_info,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(), wrapper_class=structlog.stdlib.BoundLogger)
    try:
        try:
            raise ValueError("once")
        except ValueError:
            structlog.get_logger(target.name).exception("failed")
    finally:
        target.removeHandler(handler)
        structlog.reset_defaults()
    (line,) = read_records(log_dir / "app_metrics.log")
    assert line["exception"].count("ValueError: once") == 1
    assert "exc_info" not in line


def test_both_bridges_write_the_same_fields(factory: PerformanceMonitorFactory, log_dir: Path) -> None:
    """A failure logged through the stdlib handler and through the structlog bridge has the same keys."""
    plain = logging.getLogger("myapp.same_fields")
    plain.propagate = False
    handler = factory.logging_handler()
    plain.addHandler(handler)
    try:
        factory.configure_structlog()
        try:
            raise ValueError("boom")
        except ValueError:
            plain.exception("failed", extra={"attempt": 2})
            structlog.get_logger().exception("failed", attempt=2)
    finally:
        plain.removeHandler(handler)
        structlog.reset_defaults()
    from_stdlib, from_structlog = read_records(log_dir / "app_metrics.log")
    assert set(from_stdlib) == set(from_structlog)
    assert from_stdlib["exception"].endswith("ValueError: boom")
    assert from_structlog["exception"].endswith("ValueError: boom")
    assert from_structlog["message"] == from_stdlib["message"] == "failed"


# --------------------------------------------------------------------------- the application's own chain


def test_structlog_processor_copies_and_leaves_the_chain_alone(
        factory: PerformanceMonitorFactory, log_dir: Path) -> None:
    """The application's renderer prints exactly what it printed before; a copy lands in the family."""
    def run(extra: list[Any]) -> str:
        out = io.StringIO()
        structlog.configure(
            processors=[structlog.processors.add_log_level, *extra, structlog.processors.format_exc_info,
                        structlog.processors.JSONRenderer(sort_keys=True)],
            logger_factory=structlog.PrintLoggerFactory(out), cache_logger_on_first_use=False)
        try:
            log = structlog.get_logger()
            log.info("cache_miss", key="user:42")
            try:
                raise ValueError("boom")
            except ValueError:
                log.error("failed", exc_info=True)
        finally:
            structlog.reset_defaults()
        return out.getvalue()

    without = run([])
    with_copy = run([factory.structlog_processor()])
    assert with_copy == without
    assert '"exception": "Traceback' in with_copy  # the app's own format_exc_info still saw exc_info
    info, error = read_records(log_dir / "app_metrics.log")
    assert (info["message"], info["level"], info["key"]) == ("cache_miss", "info", "user:42")
    assert (error["message"], error["level"]) == ("failed", "error")
    assert error["exception"].endswith("ValueError: boom")


def test_monitoring_logger_factory_in_a_chain_of_your_own(factory: PerformanceMonitorFactory, log_dir: Path) -> None:
    """MonitoringLoggerFactory plus event_to_record: the documented way to write only into the family."""
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso"),
                    event_to_record],
        logger_factory=MonitoringLoggerFactory(factory.get_writer("app")))
    try:
        structlog.get_logger().warning("disk_low", free_mb=12)
    finally:
        structlog.reset_defaults()
    (line,) = read_records(log_dir / "app_metrics.log")
    assert (line["level"], line["message"], line["free_mb"]) == ("warning", "disk_low", 12)
    assert "user_timestamp" not in line


def test_configure_structlog_keeps_the_applications_configuration(
        factory: PerformanceMonitorFactory, log_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An application's own structlog setup is left in place (with a warning) unless replace=True."""
    out = io.StringIO()
    structlog.configure(processors=[structlog.processors.JSONRenderer()],
                        logger_factory=structlog.PrintLoggerFactory(out))
    try:
        with caplog.at_level(logging.WARNING, logger="infrastructure.monitoring"):
            assert factory.configure_structlog() is False
        assert "structlog_processor()" in caplog.text
        assert "replace=True" in caplog.text
        structlog.get_logger().info("still_mine")
        assert '"event": "still_mine"' in out.getvalue()
        assert not (log_dir / "app_metrics.log").exists()

        assert factory.configure_structlog(replace=True) is True
        assert factory.configure_structlog() is True  # replacing our own configuration is fine
        structlog.get_logger().info("now_ours")
    finally:
        structlog.reset_defaults()
    assert "now_ours" not in out.getvalue()
    assert [r["message"] for r in read_records(log_dir / "app_metrics.log")] == ["now_ours"]


def test_reports_about_the_handlers_own_writes_cannot_loop(factory: PerformanceMonitorFactory,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """A handler on the root logger whose file is gone: the fault reports it causes end, the app goes on."""
    root = logging.getLogger()
    handler = factory.logging_handler()
    root.addHandler(handler)
    try:
        factory.shutdown()  # from now on every write is a counted fault, reported through logging
        with caplog.at_level(logging.WARNING):
            for _ in range(3):
                logging.getLogger("myapp.after_shutdown").error("still logging")
    finally:
        root.removeHandler(handler)
    assert [r.getMessage() for r in caplog.records].count("still logging") == 3
    assert any(r.name == "infrastructure.monitoring" for r in caplog.records)  # the fault was reported
