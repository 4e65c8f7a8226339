"""Helpers for testing code that records metrics, without touching the disk.

    from infrastructure.monitoring import LLMPerformanceMonitor, MetricsLogger
    from infrastructure.monitoring.testing import InMemorySink

    sink = InMemorySink()
    llm = LLMPerformanceMonitor(MetricsLogger("llm", sink))
    llm.record_llm_call("gpt-4", "openai", 1.2, 10, 20)
    assert sink.records()[0]["total_tokens"] == 30

The sink keeps every line it is given: meant for tests, never for production.
"""

from __future__ import annotations

import threading
from typing import Any

import orjson

__all__ = ["InMemorySink"]


class InMemorySink:
    """A ``LineSink`` that keeps the rendered lines in a list (thread-safe)."""

    path = "<memory>"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lines: list[bytes] = []
        self.closed = False

    def write(self, line: bytes, now: float) -> None:  # noqa: ARG002 - the LineSink signature
        if self.closed:
            raise OSError("InMemorySink is closed")
        with self._lock:
            self._lines.append(line)

    def close(self) -> None:
        self.closed = True

    @property
    def lines(self) -> list[bytes]:
        with self._lock:
            return list(self._lines)

    def records(self) -> list[dict[str, Any]]:
        """Every line parsed back, in the order written."""
        return [orjson.loads(line) for line in self.lines]

    def clear(self) -> None:
        with self._lock:
            self._lines.clear()
