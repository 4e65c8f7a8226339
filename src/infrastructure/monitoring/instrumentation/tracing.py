"""Tracing as log lines: each finished span is one JSON record in ``trace_metrics.log``.

    tracer = get_tracer()
    with tracer.start_as_current_span("handle_request", kind="server") as span:
        span.set_attribute("route", "/ask")
        with tracer.start_as_current_span("llm") as child:      # parent/child by context
            child.add_event("retry", attempt=2)

Ids follow W3C trace context (32 hex trace id, 16 hex span id, ``traceparent`` header
``00-<trace>-<span>-<flags>``), so a trace crosses processes with ``inject``/``extract``.
The current span lives in a ``contextvars.ContextVar``: threads and asyncio tasks have
their own, ``carry`` takes it into a pool. While a span is current its ``trace_id`` and
``span_id`` are bound fields, so every metric record made inside carries them.

Sampling is decided once per trace, at its root, with probability ``sample_rate``
(``tracing.sample_rate`` in the configuration); children follow their parent, remote
ones the ``sampled`` flag of the ``traceparent``. An unsampled span costs ids and a
context switch, and writes nothing. Nothing about a span is kept after it ends.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import os
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, TypeVar

from ..context import BOUND

__all__ = ["Span", "SpanContext", "Tracer", "extract", "get_tracer", "inject", "trace_span"]

F = TypeVar("F", bound=Callable[..., Any])
KINDS: Final = ("internal", "server", "client", "producer", "consumer")
_TRACEPARENT_RE: Final = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_CURRENT: Final[contextvars.ContextVar[Span | None]] = contextvars.ContextVar("monitoring_span", default=None)


@dataclass(frozen=True, slots=True)
class SpanContext:
    trace_id: str
    span_id: str
    sampled: bool = True
    remote: bool = False

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"


def _new_id(bits: int) -> str:
    while True:
        value = random.getrandbits(bits)
        if value:  # all-zero ids are invalid in W3C trace context
            return f"{value:0{bits // 4}x}"


class Span:
    """One unit of work; ends (and is written) when its ``with`` block ends."""

    __slots__ = ("_events", "_start_wall", "_tracer", "attributes", "context", "kind", "name", "parent_id",
                 "start", "status", "status_message")

    def __init__(self, tracer: Tracer, name: str, kind: str, context: SpanContext, parent_id: str | None,
                 attributes: Mapping[str, Any] | None) -> None:
        self._tracer = tracer
        self.name = name
        self.kind = kind
        self.context = context
        self.parent_id = parent_id
        self.attributes: dict[str, Any] = dict(attributes or {})
        self._events: list[dict[str, Any]] = []
        self.status = "unset"
        self.status_message: str | None = None
        self._start_wall = time.time()
        self.start = time.perf_counter()

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        self.attributes.update(attributes)

    def add_event(self, name: str, **attributes: Any) -> None:
        """A timestamped point inside the span (kept until the span ends, then written with it)."""
        if self.context.sampled and len(self._events) < 128:
            self._events.append({"name": name, "timestamp": time.time(), **attributes})

    def set_status(self, status: str, message: str | None = None) -> None:
        if status not in ("ok", "error", "unset"):
            raise ValueError(f"span status must be 'ok', 'error' or 'unset', not {status!r}")
        self.status, self.status_message = status, message

    def record_exception(self, exc: BaseException) -> None:
        self.add_event("exception", type=type(exc).__name__, message=str(exc)[:500])
        self.set_status("error", f"{type(exc).__name__}: {exc}"[:500])

    def _end(self) -> None:
        if not self.context.sampled:
            return
        duration = time.perf_counter() - self.start
        writer = self._tracer._writer()
        # built here and screened here: the ids are ours, only names, attributes and events come
        # from the caller, so the redactor does not scan two fresh hex strings per span
        record: dict[str, Any] = {
            "timestamp": 0.0, "metric_type": "timer", "operation": "span", "duration": duration,
            "trace_id": self.context.trace_id, "span_id": self.context.span_id, "parent_span_id": self.parent_id,
            "name": writer.scrub(self.name), "kind": self.kind, "start_time": self._start_wall,
            "status": "ok" if self.status == "unset" else self.status,
        }
        if self.status_message:
            record["status_message"] = writer.scrub(self.status_message)
        if self.attributes:
            record["attributes"] = writer.redact(self.attributes)
        if self._events:
            record["events"] = [writer.redact(event) for event in self._events]
        writer.write_record(record, screened=True)

    def __repr__(self) -> str:
        return f"Span({self.name!r}, trace_id={self.context.trace_id}, span_id={self.context.span_id})"


class Tracer:
    """Makes spans and writes the finished ones to the ``trace`` family."""

    def __init__(self, *, sample_rate: float | None = None, seed: int | None = None,
                 writer: Callable[[], Any] | None = None) -> None:
        if sample_rate is not None and not 0 <= sample_rate <= 1:
            raise ValueError(f"sample_rate must be between 0 and 1, got {sample_rate!r}")
        self._sample_rate = sample_rate
        self._configured: tuple[Any, float] = (None, 1.0)
        self._random = random.Random(seed)
        self._writer = writer or _trace_writer_lookup()

    @property
    def sample_rate(self) -> float:
        """The rate given to this tracer, else the configuration's (read once per factory)."""
        if self._sample_rate is not None:
            return self._sample_rate
        from ..factory import PerformanceMonitorFactory

        factory = PerformanceMonitorFactory._instance or PerformanceMonitorFactory.get_instance()
        if self._configured[0] is not factory:
            self._configured = (factory, factory.settings.tracing.sample_rate)
        return float(self._configured[1])

    @contextmanager
    def start_as_current_span(self, name: str, *, kind: str = "internal", attributes: Mapping[str, Any] | None = None,
                              context: SpanContext | None = None) -> Iterator[Span]:
        """A span that is current inside the block: child of the current span, of a remote
        ``context`` (from ``extract``), or the root of a new trace."""
        if kind not in KINDS:
            raise ValueError(f"span kind must be one of {', '.join(KINDS)}, not {kind!r}")
        parent = context if context is not None else (s.context if (s := _CURRENT.get()) is not None else None)
        if parent is None:
            sampled = self._random.random() < self.sample_rate
            span_context = SpanContext(_new_id(128), _new_id(64), sampled)
            parent_id = None
        else:
            span_context = SpanContext(parent.trace_id, _new_id(64), parent.sampled)
            parent_id = parent.span_id
        span = Span(self, name, kind, span_context, parent_id, attributes)
        token = _CURRENT.set(span)
        bound = BOUND.set(MappingProxyType({**BOUND.get(), "trace_id": span_context.trace_id,
                                            "span_id": span_context.span_id}))
        try:
            yield span
        except BaseException as exc:
            span.record_exception(exc)
            raise
        finally:
            BOUND.reset(bound)
            _CURRENT.reset(token)
            span._end()

    @staticmethod
    def current_span() -> Span | None:
        return _CURRENT.get()


def _trace_writer_lookup() -> Callable[[], Any]:
    """The ``trace`` writer of the current process-wide factory (one attribute read per span)."""
    from ..factory import PerformanceMonitorFactory

    cache: list[Any] = [None, None]

    def writer() -> Any:
        factory = PerformanceMonitorFactory._instance
        if factory is None or cache[0] is not factory:
            factory = factory or PerformanceMonitorFactory.get_instance()
            cache[0], cache[1] = factory, factory.get_writer("trace")
        return cache[1]

    return writer


_DEFAULT: list[Tracer] = []


def get_tracer() -> Tracer:
    """The process's tracer (sampling from ``tracing.sample_rate``)."""
    if not _DEFAULT:
        _DEFAULT.append(Tracer())
    return _DEFAULT[0]


def trace_span(name: str | None = None, *, kind: str = "internal", tracer: Tracer | None = None,
               **attributes: Any) -> Callable[[F], F]:
    """``@trace_span()`` / ``@trace_span("load", kind="client")``: each call runs in its own span."""

    def decorate(fn: F) -> F:
        label = name or fn.__qualname__

        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with (tracer or get_tracer()).start_as_current_span(label, kind=kind, attributes=attributes):
                    return await fn(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with (tracer or get_tracer()).start_as_current_span(label, kind=kind, attributes=attributes):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def inject(carrier: dict[str, str] | None = None) -> dict[str, str]:
    """Put the current span's ``traceparent`` into ``carrier`` (HTTP headers, a job's metadata)."""
    carrier = {} if carrier is None else carrier
    span = _CURRENT.get()
    if span is not None:
        carrier["traceparent"] = span.context.traceparent
    return carrier


def extract(carrier: Mapping[str, str] | None = None) -> SpanContext | None:
    """The remote parent named by ``carrier["traceparent"]`` (or ``$TRACEPARENT``), if well formed."""
    value = (carrier or {}).get("traceparent") if carrier is not None else os.environ.get("TRACEPARENT")
    match = _TRACEPARENT_RE.match((value or "").strip().lower())
    if not match or set(match.group(1)) == {"0"} or set(match.group(2)) == {"0"}:
        return None
    return SpanContext(match.group(1), match.group(2), bool(int(match.group(3), 16) & 1), remote=True)
