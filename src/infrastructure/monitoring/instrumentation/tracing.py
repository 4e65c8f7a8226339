"""Tracing as log lines, written the OpenTelemetry way: each finished span is one JSON record
in ``trace_metrics.log``.

    from infrastructure.monitoring.instrumentation import SpanKind, StatusCode, get_tracer

    tracer = get_tracer(__name__, "1.2.0")                   # the instrumentation scope
    with tracer.start_as_current_span("handle_request", kind=SpanKind.SERVER) as span:
        span.set_attribute("route", "/ask")
        with tracer.start_as_current_span("llm") as child:   # parent/child by context
            child.add_event("retry", {"attempt": 2})
        span.set_status(StatusCode.ERROR, "upstream refused")

The calls, their arguments and their meaning are the OpenTelemetry API's
(``opentelemetry.trace``): ``start_as_current_span`` (also as a decorator),
``start_span`` + ``use_span`` / ``span.end()``, ``set_status`` with a ``StatusCode``, a
``Status`` or their names, ``record_exception``, ``add_event``, ``update_name``,
``is_recording``, ``get_span_context`` (ids as ints), ``get_current_span``, links. The
enums mirror OpenTelemetry's names and values, and OpenTelemetry's own members are
accepted by name. What differs: spans go to the log file (no provider, processor or
exporter to set up), ``context=`` takes a ``SpanContext`` from ``extract`` or a span (not
an ``opentelemetry.context.Context``), a span that ends without a status is written
``"status": "ok"`` (reports count errors), and ``span.context`` keeps the ids as hex text.

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
import enum
import functools
import inspect
import os
import random
import re
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any, Final, TypeVar

from ..context import BOUND
from ..logger_writer import SWITCHED_ON, active_writer, default_pool

__all__ = [
    "INVALID_SPAN",
    "Link",
    "Span",
    "SpanContext",
    "SpanKind",
    "Status",
    "StatusCode",
    "Tracer",
    "extract",
    "format_span_id",
    "format_trace_id",
    "get_current_span",
    "get_tracer",
    "inject",
    "set_span_in_context",
    "trace_span",
    "use_span",
]

F = TypeVar("F", bound=Callable[..., Any])
KINDS: Final = ("internal", "server", "client", "producer", "consumer")
_TRACEPARENT_RE: Final = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_CURRENT: Final[contextvars.ContextVar[Span | None]] = contextvars.ContextVar("monitoring_span", default=None)
current_span_get: Final = _CURRENT.get
"""The current span or ``None``: one context-variable read (what the decorators check per call)."""
_MAX_EVENTS: Final = 128
_MAX_LINKS: Final = 128
_MAX_STACK: Final = 4000
_EVENT_OWN: Final = frozenset({"name", "timestamp"})
_NO_STATE: Final[Mapping[str, str]] = MappingProxyType({})


class SpanKind(enum.Enum):
    """What a span is to its neighbours: OpenTelemetry's ``SpanKind``, same names and values."""

    INTERNAL = 0
    SERVER = 1
    CLIENT = 2
    PRODUCER = 3
    CONSUMER = 4


class StatusCode(enum.Enum):
    """How a span ended: OpenTelemetry's ``StatusCode``, same names and values."""

    UNSET = 0
    OK = 1
    ERROR = 2


@dataclass(frozen=True, slots=True)
class Status:
    """``Status(StatusCode.ERROR, "why")``: OpenTelemetry's status object (a description goes with
    ``ERROR`` only, as there)."""

    status_code: StatusCode = StatusCode.UNSET
    description: str | None = None

    @property
    def is_ok(self) -> bool:
        return self.status_code is not StatusCode.ERROR

    @property
    def is_unset(self) -> bool:
        return self.status_code is StatusCode.UNSET


_KIND_NAMES: Final = {kind.name: kind.name.lower() for kind in SpanKind}
_STATUS_NAMES: Final = {code.name: code.name.lower() for code in StatusCode}


def _kind(kind: Any) -> str:
    """``"client"``, ``"CLIENT"``, ``SpanKind.CLIENT`` or OpenTelemetry's ``SpanKind.CLIENT`` -> ``"client"``."""
    if kind.__class__ is str:
        if kind in KINDS:
            return kind
        found = _KIND_NAMES.get(kind.upper())
    else:
        found = _KIND_NAMES.get(kind.name) if isinstance(kind, enum.Enum) else None
    if found is None:
        raise ValueError(f"span kind must be a SpanKind or one of {', '.join(KINDS)}, not {kind!r}")
    return found


def _status(status: Any, description: str | None) -> tuple[str, str | None]:
    """(``ok``/``error``/``unset``, description) from a name, a ``StatusCode`` (ours or
    OpenTelemetry's) or a ``Status`` (ours or OpenTelemetry's)."""
    if isinstance(status, str):
        found = _STATUS_NAMES.get(status.upper())
    elif isinstance(status, enum.Enum):
        found = _STATUS_NAMES.get(status.name)
    elif hasattr(status, "status_code"):  # a Status, ours or OpenTelemetry's
        code, _ = _status(status.status_code, None)
        return code, description if description is not None else getattr(status, "description", None)
    else:
        found = None
    if found is None:
        raise ValueError(f"span status must be a StatusCode, a Status or one of 'ok', 'error', 'unset', not {status!r}")
    return found, description


@dataclass(frozen=True, slots=True)
class SpanContext:
    """A span's identity as ``traceparent`` carries it: ids as lowercase hex text."""

    trace_id: str
    span_id: str
    sampled: bool = True
    remote: bool = False

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"


class TraceFlags(int):
    """OpenTelemetry's ``TraceFlags``: an int whose lowest bit says the trace is sampled."""

    DEFAULT = 0x00
    SAMPLED = 0x01

    @property
    def sampled(self) -> bool:
        return bool(self & TraceFlags.SAMPLED)


@dataclass(frozen=True, slots=True)
class OTelSpanContext:
    """What ``span.get_span_context()`` returns: OpenTelemetry's ``SpanContext`` shape, ids as ints
    (``format(ctx.trace_id, "032x")`` and ``format_trace_id`` give the hex text back)."""

    trace_id: int
    span_id: int
    is_remote: bool = False
    trace_flags: TraceFlags = field(default_factory=lambda: TraceFlags(TraceFlags.DEFAULT))
    trace_state: Mapping[str, str] = field(default_factory=lambda: _NO_STATE)

    @property
    def is_valid(self) -> bool:
        return self.trace_id != 0 and self.span_id != 0


def format_trace_id(trace_id: int) -> str:
    """A trace id int as the 32 hex digits of ``traceparent`` and of the log lines."""
    return format(trace_id, "032x")


def format_span_id(span_id: int) -> str:
    """A span id int as the 16 hex digits of ``traceparent`` and of the log lines."""
    return format(span_id, "016x")


def _hex_ids(context: Any) -> SpanContext | None:
    """Our ``SpanContext`` from ours, from a span, or from an OpenTelemetry-shaped one (int ids)."""
    if isinstance(context, SpanContext):
        return context
    if isinstance(context, (Span, _NonRecordingSpan)):
        context = context.get_span_context()
    trace_id, span_id = getattr(context, "trace_id", None), getattr(context, "span_id", None)
    if isinstance(trace_id, int) and isinstance(span_id, int):
        if not trace_id or not span_id:
            return None  # OpenTelemetry's INVALID_SPAN_CONTEXT: no parent
        flags = getattr(context, "trace_flags", 1)
        return SpanContext(format_trace_id(trace_id), format_span_id(span_id), bool(int(flags) & 1),
                           bool(getattr(context, "is_remote", False)))
    raise TypeError(f"context must be a SpanContext (from extract), a span or an OpenTelemetry SpanContext, "
                    f"not {type(context).__name__}")


@dataclass(frozen=True, slots=True)
class Link:
    """``Link(other_span.get_span_context(), {"reason": "batch"})``: a span this one relates to
    without being its child (a batch's inputs, a retried request)."""

    context: Any
    attributes: Mapping[str, Any] | None = None


def _link_record(link: Any) -> dict[str, Any] | None:
    """``{"trace_id", "span_id", "attributes"?}`` of a ``Link`` (ours or OpenTelemetry's) or a bare context."""
    context = getattr(link, "context", link)
    ids = _hex_ids(context)
    if ids is None:
        return None
    out: dict[str, Any] = {"trace_id": ids.trace_id, "span_id": ids.span_id}
    attributes = getattr(link, "attributes", None)
    if attributes:
        out["attributes"] = dict(attributes)
    return out


def _new_id(bits: int) -> str:
    while True:
        value = random.getrandbits(bits)
        if value:  # all-zero ids are invalid in W3C trace context
            return f"{value:0{bits // 4}x}"


class Span:
    """One unit of work, written as one line when it ends (``end()``, or the end of its ``with``)."""

    __slots__ = ("_ended", "_events", "_links", "_record_exc", "_set_status_exc", "_start_wall", "_tracer",
                 "attributes", "context", "kind", "name", "parent_id", "scope", "start", "status", "status_message")

    def __init__(self, tracer: Tracer, name: str, kind: str, context: SpanContext, parent_id: str | None,
                 attributes: Mapping[str, Any] | None, *, scope: tuple[str, str | None, str | None] | None = None,
                 start_time: int | None = None, start: float | None = None) -> None:
        self._tracer = tracer
        self.name = name
        self.kind = kind
        self.context = context
        self.parent_id = parent_id
        self.scope = scope
        """(name, version, schema_url) of the tracer that made the span (``get_tracer(name, version)``)."""
        self.attributes: dict[str, Any] = dict(attributes) if attributes else {}
        self._events: list[dict[str, Any]] = []
        self._links: list[dict[str, Any]] | None = None
        self.status = "unset"
        self.status_message: str | None = None
        self._ended = False
        self._record_exc = self._set_status_exc = True
        now_wall, now = time.time(), time.perf_counter()
        if start_time is not None:  # OpenTelemetry's start_time: nanoseconds since the epoch
            self._start_wall = start_time / 1e9
            self.start = now - (now_wall - self._start_wall)
        elif start is not None:  # a perf_counter reading taken when the work began (the decorators')
            self._start_wall = now_wall - (now - start)
            self.start = start
        else:
            self._start_wall, self.start = now_wall, now

    # ------------------------------------------------------------------ OpenTelemetry's Span API

    def is_recording(self) -> bool:
        """Whether what is set on the span will be written: sampled and not ended yet."""
        return self.context.sampled and not self._ended

    def get_span_context(self) -> OTelSpanContext:
        """The ids as ints, as OpenTelemetry's ``span.get_span_context()`` gives them."""
        ctx = self.context
        return OTelSpanContext(int(ctx.trace_id, 16), int(ctx.span_id, 16), ctx.remote,
                               TraceFlags(TraceFlags.SAMPLED if ctx.sampled else TraceFlags.DEFAULT))

    def set_attribute(self, key: str, value: Any) -> None:
        if not self._ended:
            self.attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        if not self._ended:
            self.attributes.update(attributes)

    def update_name(self, name: str) -> None:
        if not self._ended:
            self.name = name

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None, timestamp: int | None = None,
                  **fields: Any) -> None:
        """A timestamped point inside the span (``timestamp`` in nanoseconds since the epoch, as in
        OpenTelemetry; now by default), written with the span. ``add_event("retry", attempt=2)``
        also works. At most 128 per span."""
        if not self.context.sampled or self._ended or len(self._events) >= _MAX_EVENTS:
            return
        event: dict[str, Any] = {"name": name, "timestamp": time.time() if timestamp is None else timestamp / 1e9}
        for given in (attributes, fields):
            if given:
                for key, value in given.items():
                    event["user_" + key if key in _EVENT_OWN else key] = value
        self._events.append(event)

    def add_link(self, context: Any, attributes: Mapping[str, Any] | None = None) -> None:
        """Relate this span to another one (OpenTelemetry's ``add_link``)."""
        if self._ended or not self.context.sampled:
            return
        link = _link_record(Link(context, attributes))
        if link is not None:
            links = self._links if self._links is not None else []
            if len(links) < _MAX_LINKS:
                links.append(link)
            self._links = links

    def set_status(self, status: Any, description: str | None = None) -> None:
        """``StatusCode.ERROR, "why"``, ``Status(StatusCode.OK)``, ``"OK"``, ``"error"``...

        As in OpenTelemetry: ``OK`` is final, ``UNSET`` changes nothing, and a description is
        kept with ``ERROR`` only."""
        code, text = _status(status, description)
        if self._ended or self.status == "ok" or code == "unset":
            return
        self.status = code
        self.status_message = text if code == "error" else None

    def record_exception(self, exception: BaseException, attributes: Mapping[str, Any] | None = None,
                         timestamp: int | None = None, escaped: bool = False) -> None:
        """An ``exception`` event with OpenTelemetry's attributes (``exception.type``,
        ``exception.message``, ``exception.stacktrace``). As in OpenTelemetry it does not set
        the status: an exception escaping a span's block does (``set_status_on_exception``)."""
        if not self.context.sampled or self._ended:
            return
        kind = type(exception)
        module = kind.__module__
        stack = "".join(traceback.format_exception(exception))
        event: dict[str, Any] = {
            "exception.type": f"{module}.{kind.__qualname__}" if module and module != "builtins" else kind.__qualname__,
            "exception.message": str(exception)[:500],
            "exception.stacktrace": stack if len(stack) <= _MAX_STACK else "…" + stack[-_MAX_STACK:],
        }
        if escaped:
            event["exception.escaped"] = True
        if attributes:
            event.update(attributes)
        self.add_event("exception", event, timestamp)

    def end(self, end_time: int | None = None) -> None:
        """Write the span (once; later calls do nothing). ``end_time``: nanoseconds since the epoch."""
        if self._ended:
            return
        self._ended = True
        if self.context.sampled:
            duration = time.perf_counter() - self.start if end_time is None else end_time / 1e9 - self._start_wall
            self._write(max(duration, 0.0))

    def __enter__(self) -> Span:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        """``with tracer.start_span(...) as span``: ends the span (which is not made current)."""
        if isinstance(exc, Exception):
            self._failed(exc)
        self.end()

    # ------------------------------------------------------------------ ours

    def _failed(self, exc: BaseException, record_exception: bool | None = None,
                set_status: bool | None = None) -> None:
        """An exception escaped the span's block (or the decorated call): record it, mark the span.
        What the span was started with decides, unless ``use_span``'s own flags are given."""
        if self._record_exc if record_exception is None else record_exception:
            self.record_exception(exc, escaped=True)
        if self._set_status_exc if set_status is None else set_status:
            self.set_status("error", f"{type(exc).__name__}: {exc}"[:500])

    def _end_after(self, duration: float) -> None:
        """End with a duration measured by the caller (a decorated call's, so span and record agree)."""
        if not self._ended:
            self._ended = True
            if self.context.sampled:
                self._write(duration)

    def _write(self, duration: float) -> None:
        if not SWITCHED_ON[0]:  # recording switched off at run time
            return
        writer = self._tracer._writer()
        # built here and screened here: the ids are ours, only names, attributes and events come
        # from the caller, so the redactor does not scan two fresh hex strings per span
        record: dict[str, Any] = {
            "timestamp": 0.0, "metric_type": "timer", "operation": "span", "duration": duration,
            "trace_id": self.context.trace_id, "span_id": self.context.span_id, "parent_span_id": self.parent_id,
            "name": writer.scrub(self.name), "kind": self.kind, "start_time": self._start_wall,
            "status": "ok" if self.status == "unset" else self.status,
        }
        if self.scope is not None:
            name, version, schema_url = self.scope
            record["scope_name"] = name
            if version is not None:
                record["scope_version"] = version
            if schema_url is not None:
                record["scope_schema_url"] = schema_url
        if self.status_message:
            record["status_message"] = writer.scrub(self.status_message)
        if self.attributes:
            record["attributes"] = writer.redact(self.attributes)
        if self._events:
            record["events"] = [writer.redact(event) for event in self._events]
        if self._links:
            record["links"] = [writer.redact(link) for link in self._links]
        writer.write_record(record, screened=True)

    def __repr__(self) -> str:
        return f"Span({self.name!r}, trace_id={self.context.trace_id}, span_id={self.context.span_id})"


class _NonRecordingSpan:
    """What ``get_current_span()`` returns outside any span: every call does nothing (as
    OpenTelemetry's ``INVALID_SPAN``), so code can use it without checking."""

    __slots__ = ()
    name = ""
    context = None
    attributes: Mapping[str, Any] = MappingProxyType({})

    def is_recording(self) -> bool:
        return False

    def get_span_context(self) -> OTelSpanContext:
        return OTelSpanContext(0, 0)

    # the methods of Span, accepting the same arguments and doing nothing

    def set_attribute(self, *_: Any, **__: Any) -> None:
        return None

    def set_attributes(self, *_: Any, **__: Any) -> None:
        return None

    def update_name(self, *_: Any, **__: Any) -> None:
        return None

    def add_event(self, *_: Any, **__: Any) -> None:
        return None

    def add_link(self, *_: Any, **__: Any) -> None:
        return None

    def set_status(self, *_: Any, **__: Any) -> None:
        return None

    def record_exception(self, *_: Any, **__: Any) -> None:
        return None

    def end(self, *_: Any, **__: Any) -> None:
        return None

    def __enter__(self) -> _NonRecordingSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __repr__(self) -> str:
        return "INVALID_SPAN"


INVALID_SPAN: Final = _NonRecordingSpan()


def _activate(span: Span) -> tuple[contextvars.Token[Span | None], contextvars.Token[Mapping[str, Any]]]:
    """Make ``span`` current and bind its ids to every record made meanwhile."""
    token = _CURRENT.set(span)
    bound = BOUND.set(MappingProxyType({**BOUND.get(), "trace_id": span.context.trace_id,
                                        "span_id": span.context.span_id}))
    return token, bound


def _deactivate(tokens: tuple[contextvars.Token[Span | None], contextvars.Token[Mapping[str, Any]]]) -> None:
    BOUND.reset(tokens[1])
    _CURRENT.reset(tokens[0])


class _CurrentSpan:
    """What ``start_as_current_span`` returns: a context manager (the span is current inside) and,
    like OpenTelemetry's, a decorator (a new span per call of a function or coroutine function)."""

    __slots__ = ("_end_on_exit", "_name", "_options", "_span", "_tokens", "_tracer")

    def __init__(self, tracer: Tracer, name: str, options: tuple[Any, ...], end_on_exit: bool) -> None:
        self._tracer = tracer
        self._name = name
        self._options = options
        self._end_on_exit = end_on_exit
        self._span: Span | None = None

    def __enter__(self) -> Span:
        span = self._span = self._tracer._start(self._name, *self._options)
        self._tokens = _activate(span)
        return span

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        span = self._span
        assert span is not None  # entered before exited
        try:
            if isinstance(exc, Exception):  # as OpenTelemetry: GeneratorExit, KeyboardInterrupt are no errors
                span._failed(exc)
        finally:
            _deactivate(self._tokens)
            if self._end_on_exit:
                span.end()

    def __call__(self, fn: F) -> F:
        tracer, name, options, end_on_exit = self._tracer, self._name, self._options, self._end_on_exit

        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with _CurrentSpan(tracer, name, options, end_on_exit):
                    return await fn(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with _CurrentSpan(tracer, name, options, end_on_exit):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


class Tracer:
    """Makes spans and writes the finished ones to the ``trace`` family.

    ``name`` and ``version`` are the instrumentation scope (``get_tracer(__name__, "1.2.0")``),
    written as ``scope_name`` / ``scope_version`` on each of its spans and exported as the
    OTLP scope."""

    def __init__(self, name: str | None = None, version: str | None = None, *, schema_url: str | None = None,
                 sample_rate: float | None = None, seed: int | None = None,
                 writer: Callable[[], Any] | None = None) -> None:
        if sample_rate is not None and not 0 <= sample_rate <= 1:
            raise ValueError(f"sample_rate must be between 0 and 1, got {sample_rate!r}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"a tracer's name must be a string such as __name__, not {type(name).__name__}")
        self._sample_rate = sample_rate
        self._configured: tuple[Any, float] = (None, 1.0)
        self._random = random.Random(seed)
        self._writer = writer or _trace_writer
        self._scope = (name, version, schema_url) if name else None

    @property
    def sample_rate(self) -> float:
        """The rate given to this tracer, else the process configuration's (read once per pool)."""
        if self._sample_rate is not None:
            return self._sample_rate
        pool = default_pool()
        if self._configured[0] is not pool:
            self._configured = (pool, pool.settings.tracing.sample_rate)
        return float(self._configured[1])

    def start_as_current_span(self, name: str, context: Any = None, kind: Any = "internal",
                              attributes: Mapping[str, Any] | None = None, links: Sequence[Any] | None = None,
                              start_time: int | None = None, record_exception: bool = True,
                              set_status_on_exception: bool = True, end_on_exit: bool = True) -> _CurrentSpan:
        """A span that is current inside the ``with`` block (or each call of a decorated function):
        child of the current span, of ``context`` (a ``SpanContext`` from ``extract``, or a span),
        or the root of a new trace. An exception leaving the block is recorded on the span, which
        is marked ``error``, and goes on unchanged."""
        return _CurrentSpan(self, name, (context, kind, attributes, links, start_time, record_exception,
                                         set_status_on_exception), end_on_exit)

    def start_span(self, name: str, context: Any = None, kind: Any = "internal",
                   attributes: Mapping[str, Any] | None = None, links: Sequence[Any] | None = None,
                   start_time: int | None = None, record_exception: bool = True,
                   set_status_on_exception: bool = True) -> Span:
        """A span that is not made current: end it with ``span.end()`` (or a ``with`` block);
        ``use_span(span)`` makes it current for a while."""
        return self._start(name, context, kind, attributes, links, start_time, record_exception,
                           set_status_on_exception)

    def _start(self, name: str, context: Any, kind: Any, attributes: Mapping[str, Any] | None,
               links: Sequence[Any] | None, start_time: int | None, record_exception: bool,
               set_status_on_exception: bool) -> Span:
        kind = _kind(kind)
        if context is None:
            current = _CURRENT.get()
            parent = current.context if current is not None else None
        else:
            parent = _hex_ids(context)
        if parent is None:
            sampled = self._random.random() < self.sample_rate
            span_context = SpanContext(_new_id(128), _new_id(64), sampled)
            parent_id = None
        else:
            span_context = SpanContext(parent.trace_id, _new_id(64), parent.sampled)
            parent_id = parent.span_id
        span = Span(self, name, kind, span_context, parent_id, attributes, scope=self._scope, start_time=start_time)
        if not (record_exception and set_status_on_exception):
            span._record_exc, span._set_status_exc = record_exception, set_status_on_exception
        if links and span_context.sampled:
            for link in links:
                span.add_link(getattr(link, "context", link), getattr(link, "attributes", None))
        return span

    @staticmethod
    def current_span() -> Span | None:
        return _CURRENT.get()


def child_span(name: str, kind: str, attributes: Mapping[str, Any] | None, start: float,
               scope: tuple[str, str | None, str | None] | None) -> Span:
    """A span under the current (sampled) one, begun at ``start`` (a ``perf_counter`` reading): how
    the decorators show the calls they record. The caller checked that a sampled span is current."""
    parent = _CURRENT.get()
    assert parent is not None  # checked by the caller, on its hot path
    return Span(parent._tracer, name, kind, SpanContext(parent.context.trace_id, _new_id(64), True),
                parent.context.span_id, attributes, scope=scope, start=start)


_LIBRARY_SCOPE: list[tuple[str, str | None, str | None]] = []


def library_scope() -> tuple[str, str | None, str | None]:
    """The instrumentation scope of the spans this package makes itself (its decorators')."""
    if not _LIBRARY_SCOPE:
        from importlib.metadata import PackageNotFoundError, version  # importlib.metadata is slow to import

        try:
            found: str | None = version("llm-telemetry-logs")
        except PackageNotFoundError:  # running from a checkout that was never installed
            found = None
        _LIBRARY_SCOPE.append(("infrastructure.monitoring", found, None))
    return _LIBRARY_SCOPE[0]


def _trace_writer() -> Any:
    """The ``trace`` writer of the process default pool (a no-op one while recording is switched off)."""
    return active_writer("trace")


_DEFAULT: list[Tracer] = []
_NAMED: dict[tuple[str, str | None, str | None], Tracer] = {}


def get_tracer(instrumenting_module_name: str | None = None, instrumenting_library_version: str | None = None,
               tracer_provider: None = None, schema_url: str | None = None) -> Tracer:
    """``get_tracer(__name__, "1.2.0")``: the tracer of that instrumentation scope (one per name
    and version); ``get_tracer()``: the process's unnamed tracer. Sampling from
    ``tracing.sample_rate``. OpenTelemetry's ``tracer_provider`` has no meaning here (spans go
    to the log file) and is refused."""
    if tracer_provider is not None:
        raise TypeError("get_tracer() writes spans to trace_metrics.log and takes no tracer_provider; "
                        "drop the argument (or use opentelemetry.trace.get_tracer for an SDK provider)")
    if not instrumenting_module_name:
        if not _DEFAULT:
            _DEFAULT.append(Tracer())
        return _DEFAULT[0]
    key = (instrumenting_module_name, instrumenting_library_version, schema_url)
    tracer = _NAMED.get(key)
    if tracer is None:
        tracer = _NAMED.setdefault(key, Tracer(*key[:2], schema_url=schema_url))
    return tracer


def get_current_span() -> Span | _NonRecordingSpan:
    """The current span, or ``INVALID_SPAN`` (which ignores every call) outside any span."""
    span = _CURRENT.get()
    return INVALID_SPAN if span is None else span


def set_span_in_context(span: Span) -> SpanContext:
    """``tracer.start_span("x", context=set_span_in_context(parent))``: a child of ``parent``
    without making it current (what OpenTelemetry's function is used for with ``context=``)."""
    return span.context


@contextmanager
def use_span(span: Span, end_on_exit: bool = False, record_exception: bool = True,
             set_status_on_exception: bool = True) -> Iterator[Span]:
    """Make ``span`` (from ``start_span``) current inside the block; ends it after with ``end_on_exit``."""
    tokens = _activate(span)
    try:
        yield span
    except Exception as exc:
        span._failed(exc, record_exception, set_status_on_exception)
        raise
    finally:
        _deactivate(tokens)
        if end_on_exit:
            span.end()


def trace_span(name: str | None = None, *, kind: Any = "internal", tracer: Tracer | None = None,
               **attributes: Any) -> Callable[[F], F]:
    """``@trace_span()`` / ``@trace_span("load", kind=SpanKind.CLIENT)``: each call runs in its own span."""
    kind = _kind(kind)

    def decorate(fn: F) -> F:
        return (tracer or get_tracer()).start_as_current_span(name or fn.__qualname__, kind=kind,
                                                              attributes=attributes)(fn)

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
