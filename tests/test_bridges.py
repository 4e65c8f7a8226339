"""The application's own stdlib and structlog logs land in the same files as its metrics."""

from __future__ import annotations

import logging
from pathlib import Path

import structlog

from infrastructure.monitoring import PerformanceMonitorFactory

from .conftest import read_records


def test_stdlib_logging_handler(factory: PerformanceMonitorFactory, log_dir: Path) -> None:
    """python-json-logger extracts message, extras and the traceback; the writer redacts and writes."""
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
    finally:
        logger.removeHandler(handler)
    warning, error = read_records(log_dir / "app_metrics.log")
    assert list(warning)[:6] == ["timestamp", "metric_type", "operation", "level", "logger", "message"]
    assert (warning["metric_type"], warning["level"], warning["logger"], warning["message"]) == (
        "log", "warning", "myapp.test_bridges", "slow response from model")
    assert (warning["route"], warning["user_operation"], warning["module"]) == ("/chat", "x", "app")
    assert error["level"] == "error"
    assert "ValueError: bad input" in error["exc_info"]
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
