"""Timing a call and recording it once, whatever kind of callable it is: the machinery under
``monitor.timer``, ``monitor.timed`` and the decorators of ``instrumentation``.

Every wrapper works on the four kinds of callables: plain functions, ``async``
functions, generators and async generators (a stream). A call is timed with
``perf_counter``; it is recorded once, when it returns, raises, or — for a stream — is
exhausted, raises, or is abandoned (closed or garbage-collected before its end, which is
then marked ``abandoned: true``). An exception is recorded (``success: false``,
``error_type``) and re-raised unchanged, traceback included.

LLM calls also read the returned object (``instrumentation.llm_clients``): ``model`` and
token usage from an OpenAI- or Anthropic-style response, attribute or dict alike; a failed
call keeps the ``model`` it asked for. A returned stream (an SDK ``Stream``, a stream
helper's manager, any iterator) comes back as a proxy of the very object, recorded when it
ends: its first item sets ``time_to_first_token`` and usage is merged across its events. A
decorated generator function is still driven by a generator of ours (it is the
application's own object, not the SDK's).

Inside a trace (a sampled span is current), a call of a wrapper given a ``SpanPlan`` (the
LLM, tool and task decorators) is also a child span, begun and ended with the call;
outside one, the only extra work is one context-variable read.

It sits below the monitors (``lightweight_monitor`` builds its timers here), so it takes
the monitor to record with as a lookup callable and never looks one up itself; of
``instrumentation`` it uses ``llm_clients`` and ``tracing``, which import nothing above it.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from typing import Any, TypeVar, cast

from .instrumentation.llm_clients import (
    INSTRUMENTED,
    NOT_STREAM,
    RECORDING,
    Finish,
    client_provider_of,
    llm_line,
    model_of,
    note,
    request_reader,
    scoped_aiter,
    scoped_iter,
    stepped_aiter,
    stepped_iter,
    stream_kind,
    watch,
)
from .instrumentation.tracing import Span, _activate, _deactivate, child_span, current_span_get, library_scope
from .logger_writer import SWITCHED_ON, NoOpMetricsLogger, user_fields
from .schema import FIELD_INVALID, WRITER_FIELDS

__all__ = ["Timer", "fixed", "observe_llm", "timed_by"]

F = TypeVar("F", bound=Callable[..., Any])
_clock = time.perf_counter


class Timer:
    """``with monitor.timer("embed_batch", batch=32) as t: ...; t.set(size=n)`` records one timer
    line when the block ends: its duration, ``success`` and, after an exception, ``error_type``."""

    __slots__ = ("_fields", "_monitor", "_operation", "_start", "duration")

    def __init__(self, monitor: Any, operation: str, fields: dict[str, Any]) -> None:
        self._monitor = monitor
        self._operation = operation
        self._fields = fields
        self._start = 0.0
        self.duration: float | None = None

    def set(self, **fields: Any) -> None:
        """Add fields to the line this timer will write (known only inside the block)."""
        self._fields.update(fields)

    def __enter__(self) -> Timer:
        self._start = _clock()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        self.duration = duration = _clock() - self._start
        fields = self._fields
        if kind is not None:
            fields = {**fields, "error_type": kind.__name__}
        logger = self._monitor.logger
        try:
            scrub, redact, write = logger.scrub, logger.redact, logger.write_record
        except AttributeError:  # a writer of another kind: the monitor's general method
            self._monitor.record_timer(self._operation, duration, success=kind is None,
                                       **{k: v for k, v in fields.items() if k not in ("duration", "success")})
            return
        try:
            # screened here, once, rather than by the redactor over the whole record
            record = {"timestamp": 0.0, "metric_type": "timer", "operation": scrub(self._operation),
                      "duration": duration, "success": kind is None}
            if fields:
                for key, value in redact(user_fields(fields)).items():
                    record["user_" + key if key in record else key] = value
        except Exception as bug:  # noqa: BLE001 - telemetry never breaks the block it timed
            logger.report_internal_error(bug)
            return
        write(record, screened=True)

    async def __aenter__(self) -> Timer:
        return self.__enter__()

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(kind, exc, tb)


# --------------------------------------------------------------------------- the generic wrapper


class _Call:
    """What one call recorded so far: the recorder turns it into one line."""

    __slots__ = ("abandoned", "client", "error", "first", "inner", "model", "request", "result", "sdk", "start",
                 "stream", "traced", "usage")

    def __init__(self, start: float | None = None) -> None:
        self.start = _clock() if start is None else start
        self.first: float | None = None
        self.error: BaseException | None = None
        self.result: Any = None
        self.usage: dict[str, int] | None = None
        """Token counts merged from a stream's items (``llm_clients.merge_usage``)."""
        self.model: str | None = None
        """The latest model a stream's items named."""
        self.request: str | None = None
        """The model the call asked for (its ``model`` argument)."""
        self.client: str | None = None
        """The provider of the SDK client that made the call, when known."""
        self.inner: dict[str, Any] | None = None
        """What SDK calls made inside a decorated function reported (``llm_clients.contribute``)."""
        self.sdk = False
        """A call of an SDK method patched by ``instrument()``."""
        self.stream = False
        self.abandoned = False
        self.traced: tuple[Span, SpanPlan] | None = None
        """The call's span and how it is described, when it was made inside a trace."""

    def saw(self, item: Any) -> None:
        """One item of an LLM stream went by: note the first one's time, merge its usage, keep its
        model. An item that cannot be read (a property that raises) still goes to the application:
        the line then says less, the application's loop never sees our error."""
        if self.first is None:
            self.first = _clock()
        with contextlib.suppress(Exception):  # reading a response is best effort, never the caller's problem
            note(self, item)


Recorder = Callable[[Any, _Call, float], Any]
"""(monitor, call, duration) -> writes the line; what it returns goes to the span plan's ``end``."""


Fast = Callable[[Any, float, Any], None]
"""(monitor, duration, result) -> writes the line of a call that returned normally (not a stream)."""


Request = Callable[[tuple[Any, ...], dict[str, Any]], Any]
"""(args, kwargs) -> the model a call asks for."""


class SpanPlan:
    """How the calls of one decorated function show in a trace: ``begin(call)`` gives the span's
    name and attributes when the call starts, ``end(span, call, recorded)`` adds what the finished
    call told (``recorded``: what the recorder returned). The span is a child of the current one,
    begins and ends with the call (same duration as its line), and is current while the call
    runs, so what the call records or traces itself nests under it."""

    __slots__ = ("begin", "end", "kind")

    def __init__(self, kind: str, begin: Callable[[_Call], tuple[str, dict[str, Any]]],
                 end: Callable[[Span, _Call, Any], None] | None = None) -> None:
        self.kind = kind
        self.begin = begin
        self.end = end

    def open(self, call: _Call) -> Span:
        name, attributes = self.begin(call)
        span = child_span(name, self.kind, attributes, call.start, library_scope())
        call.traced = (span, self)
        return span


def _wrap(fn: F, lookup: Callable[[], Any], record: Recorder, *,  # noqa: PLR0915 - a wrapper per kind of callable
          watch_result: bool = False, fast: Fast | None = None, request: Request | None = None,
          span: SpanPlan | None = None) -> F:
    """Wrap ``fn`` of any kind so that each call is recorded once by ``record``; ``lookup``
    gives the monitor to record with, or ``None`` to run ``fn`` untimed (switched off).
    ``fast``, when given, records a plain call that returned normally without building the
    per-call state a stream or a failure needs. With ``watch_result`` (the LLM wrappers), a
    returned iterator (or SDK stream helper) comes back as a proxy of itself, recorded when it
    ends, and the items a decorated generator yields are read for usage and model; without
    it only the first item's time is noted (a tool's or task's items are the application's).
    ``request`` (LLM calls) reads the model a call asks for, kept for when the response
    cannot say it; while ``instrument()`` is on, each call is then also the recording in
    progress, so the SDK calls it makes add to its line instead of writing their own.
    ``span``: inside a trace (a sampled span is current) each call is also a child span
    (``SpanPlan``); outside one this costs one context-variable read per call."""

    def begin(args: tuple[Any, ...], kwargs: dict[str, Any], start: float | None = None) -> _Call:
        call = _Call(start)
        if request is not None:
            call.request = request(args, kwargs)
        return call

    scoped = request is not None
    traced = span is not None
    plan = cast("SpanPlan", span)  # used only when traced
    span_get = current_span_get

    if inspect.isasyncgenfunction(fn):
        @functools.wraps(fn)
        async def agen_wrapper(*args: Any, **kwargs: Any) -> Any:
            monitor = lookup()
            if monitor is None:
                async for item in fn(*args, **kwargs):
                    yield item
                return
            call = begin(args, kwargs)
            source = fn(*args, **kwargs)
            if scoped and INSTRUMENTED[0]:
                source = scoped_aiter(source, call)
            if traced and (parent := span_get()) is not None and parent.context.sampled:
                source = _current_aiter(source, plan.open(call))
            inner = _watch_async(source, monitor, record, call, watch_result)
            try:
                async for item in inner:
                    yield item
            finally:
                await inner.aclose()  # abandoned: record now, not when the collector gets to it

        return agen_wrapper  # type: ignore[return-value]

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            monitor = lookup()
            if monitor is None:
                return (yield from fn(*args, **kwargs))
            call = begin(args, kwargs)
            source = fn(*args, **kwargs)
            if scoped and INSTRUMENTED[0]:
                source = scoped_iter(source, call)
            if traced and (parent := span_get()) is not None and parent.context.sampled:
                source = _current_iter(source, plan.open(call))
            return (yield from _watch(source, monitor, record, call, watch_result))

        return gen_wrapper  # type: ignore[return-value]

    if _is_coroutine_function(fn):
        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            monitor = lookup()
            if monitor is None:
                return await fn(*args, **kwargs)
            if traced and (parent := span_get()) is not None and parent.context.sampled:
                return await _atraced(fn, args, kwargs, monitor, record, begin(args, kwargs), plan, watch_result,
                                      scoped)
            if scoped and INSTRUMENTED[0]:
                return await _ascoped(fn, args, kwargs, monitor, record, begin(args, kwargs), watch_result)
            start = _clock()
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                call = begin(args, kwargs, start)
                call.error = exc
                _finish(monitor, record, call)
                raise
            duration = _clock() - start
            if fast is not None and not (watch_result and _is_stream(result)):
                fast(monitor, duration, result)
                return result
            return _returned(result, monitor, record, begin(args, kwargs, start), watch_result)

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        monitor = lookup()
        if monitor is None:
            return fn(*args, **kwargs)
        if traced and (parent := span_get()) is not None and parent.context.sampled:
            return _traced(fn, args, kwargs, monitor, record, begin(args, kwargs), plan, watch_result, scoped)
        if scoped and INSTRUMENTED[0]:
            return _scoped(fn, args, kwargs, monitor, record, begin(args, kwargs), watch_result)
        start = _clock()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            call = begin(args, kwargs, start)
            call.error = exc
            _finish(monitor, record, call)
            raise
        duration = _clock() - start
        if fast is not None and not (watch_result and _is_stream(result)):
            fast(monitor, duration, result)  # fail-safe itself
            return result
        return _returned(result, monitor, record, begin(args, kwargs, start), watch_result)

    return wrapper  # type: ignore[return-value]


def _is_coroutine_function(fn: Callable[..., Any]) -> bool:
    """Also true of a plain function that ``functools.wraps`` a coroutine function, as the SDKs'
    async methods are (their argument checks are plain functions returning the coroutine)."""
    if inspect.iscoroutinefunction(fn):
        return True
    try:
        return inspect.iscoroutinefunction(inspect.unwrap(fn))
    except ValueError:  # a cycle of __wrapped__
        return False


def _scoped(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], monitor: Any, record: Recorder,
            call: _Call, watch_result: bool) -> Any:
    """A call made while ``instrument()`` is on: the recording in progress while it runs, so the
    SDK calls it makes add to its line instead of writing their own (``llm_clients.RECORDING``)."""
    token = RECORDING.set(call)
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:
        call.error = exc
        _finish(monitor, record, call)
        raise
    finally:
        RECORDING.reset(token)
    return _returned(result, monitor, record, call, watch_result)


async def _ascoped(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], monitor: Any,
                   record: Recorder, call: _Call, watch_result: bool) -> Any:
    token = RECORDING.set(call)
    try:
        result = await fn(*args, **kwargs)
    except BaseException as exc:
        call.error = exc
        _finish(monitor, record, call)
        raise
    finally:
        RECORDING.reset(token)
    return _returned(result, monitor, record, call, watch_result)


def _traced(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], monitor: Any, record: Recorder,
            call: _Call, plan: SpanPlan, watch_result: bool, scoped: bool) -> Any:
    """A call made inside a trace: its span is current while it runs and ends when it is recorded
    (now, or when the stream it returned ends)."""
    tokens = _activate(plan.open(call))
    try:
        if scoped and INSTRUMENTED[0]:
            return _scoped(fn, args, kwargs, monitor, record, call, watch_result)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            call.error = exc
            _finish(monitor, record, call)
            raise
        return _returned(result, monitor, record, call, watch_result)
    finally:
        _deactivate(tokens)


async def _atraced(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], monitor: Any,
                   record: Recorder, call: _Call, plan: SpanPlan, watch_result: bool, scoped: bool) -> Any:
    tokens = _activate(plan.open(call))
    try:
        if scoped and INSTRUMENTED[0]:
            return await _ascoped(fn, args, kwargs, monitor, record, call, watch_result)
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            call.error = exc
            _finish(monitor, record, call)
            raise
        return _returned(result, monitor, record, call, watch_result)
    finally:
        _deactivate(tokens)


def _current_iter(source: Iterator[Any], span: Span) -> Iterator[Any]:
    """A decorated generator run with its span current while its own code runs (each step), never
    while the consumer's does."""
    return stepped_iter(source, lambda: _activate(span), _deactivate)


def _current_aiter(source: AsyncIterator[Any], span: Span) -> AsyncIterator[Any]:
    """The async form of ``_current_iter``."""
    return stepped_aiter(source, lambda: _activate(span), _deactivate)


def _is_stream(result: Any) -> bool:
    """An iterator, async iterator or SDK stream helper (``stream_kind`` asks once per type)."""
    return stream_kind(type(result)) != NOT_STREAM


def _returned(result: Any, monitor: Any, record: Recorder, call: _Call, watch_result: bool) -> Any:
    """Record now, or, when the result is a stream to be consumed later, hand back a proxy of it
    that records when it ends (the object itself keeps every method and attribute it had)."""
    if watch_result and _is_stream(result):
        return watch(result, call, Finish(call, lambda: _finish(monitor, record, call)))
    call.result = result
    _finish(monitor, record, call)
    return result


def _watch(stream: Iterator[Any], monitor: Any, record: Recorder, call: _Call, read: bool) -> Iterator[Any]:
    """Pass a stream through, noting its first item (and, with ``read``, an LLM stream's latest
    usage and model); record once at its end."""
    done = False
    try:
        for item in stream:
            if read:
                call.saw(item)
            elif call.first is None:
                call.first = _clock()
            yield item
        done = True
    except GeneratorExit:  # the consumer closed it early: abandoned (marked below)
        raise
    except BaseException as exc:
        call.error = exc
        done = True
        raise
    finally:
        if not done:
            call.abandoned = True
        try:  # closed first: the generator's own clean-up is part of the call (in its span and its line)
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        finally:
            _finish(monitor, record, call)


async def _watch_async(stream: AsyncIterator[Any], monitor: Any, record: Recorder, call: _Call,
                       read: bool) -> AsyncGenerator[Any]:
    done = False
    try:
        async for item in stream:
            if read:
                call.saw(item)
            elif call.first is None:
                call.first = _clock()
            yield item
        done = True
    except GeneratorExit:  # the consumer closed it early: abandoned (marked below)
        raise
    except BaseException as exc:
        call.error = exc
        done = True
        raise
    finally:
        if not done:
            call.abandoned = True
        try:  # closed first: the generator's own clean-up is part of the call (in its span and its line)
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(RuntimeError):  # closed from a finaliser while already closing
                    await aclose()
        finally:
            _finish(monitor, record, call)


def _finish(monitor: Any, record: Recorder, call: _Call) -> None:
    if call.traced is not None:
        _finish_traced(monitor, record, call, call.traced)
        return
    try:
        record(monitor, call, _clock() - call.start)
    except Exception as exc:  # noqa: BLE001 - telemetry never breaks the caller (strict mode re-raises)
        _failed(monitor, exc)


def _finish_traced(monitor: Any, record: Recorder, call: _Call, traced: tuple[Span, SpanPlan]) -> None:
    """Record the call with its span current (the line carries the span's ids), then end the span
    with the same duration, marked as the call ended."""
    span, plan = traced
    duration = _clock() - call.start
    tokens = None if current_span_get() is span else _activate(span)
    recorded = None
    try:
        recorded = record(monitor, call, duration)
    except Exception as exc:  # noqa: BLE001 - telemetry never breaks the caller (strict mode re-raises)
        _failed(monitor, exc)
    finally:
        if tokens is not None:
            _deactivate(tokens)
        try:
            error = call.error
            if error is not None:
                span.set_attribute("error.type", type(error).__qualname__)
                if isinstance(error, Exception):  # as start_as_current_span: a cancellation is no failure
                    span._failed(error)
            elif call.abandoned:
                span.set_attribute("abandoned", True)
            if plan.end is not None:
                plan.end(span, call, recorded)
            span._end_after(duration)
        except Exception as exc:  # noqa: BLE001 - telemetry never breaks the caller (strict mode re-raises)
            _failed(monitor, exc)


def _failed(monitor: Any, exc: Exception) -> None:
    monitor.logger.report_internal_error(exc)
    if monitor.logger.strict:
        raise exc


_OWN_FIELDS = WRITER_FIELDS | {FIELD_INVALID, "duration", "success"}


def _success_template(monitor: Any, operation: str, label_key: str | None, label: str | None,
                      fields: dict[str, Any]) -> tuple[dict[str, Any], Callable[..., None]] | None:
    """The line of a call that returned normally, as a screened template and the writer to send it to.

    A decorator's label and fields never change, so they are scrubbed and redacted here,
    once per monitor, and each call copies the template and sets its duration: the same
    line the monitor's own method writes, for about a third of the work. ``None`` when the
    monitor's writer is not the package's, or a field would clash with a built-in one (the
    monitor's method then handles it, flagging the clash in the record)."""
    logger = monitor.logger
    write = getattr(logger, "write_record", None)
    scrub = getattr(logger, "scrub", None)
    redact = getattr(logger, "redact", None)
    if write is None or scrub is None or redact is None:
        return None
    prefix: dict[str, Any] = {"metric_type": "timer", "operation": operation}
    if label_key is not None:
        prefix[label_key] = scrub(label)
    extra = redact(dict(fields))
    if not _OWN_FIELDS.isdisjoint(extra) or not prefix.keys().isdisjoint(extra):
        return None
    return {"timestamp": 0.0, **prefix, "duration": 0.0, "success": True, **extra}, write


def _fast_path(make: Callable[[Any], tuple[dict[str, Any], Callable[..., None]] | None],
               fallback: Callable[[Any, float], None], plain: Callable[..., Any]) -> Fast:
    """``fast(monitor, duration, result)``: the template of the current monitor (rebuilt when the
    factory hands out another one) copied and written, else the monitor's own method.
    One call and one dictionary copy per record: this is the hot path of every decorator.
    The template writes what the built-in method ``plain`` would; a monitor whose class
    replaces that method (a class given to ``register_monitor``) has its own method called."""
    state: list[Any] = [None, None, None]  # monitor, template, write
    method = plain.__name__

    def fast(monitor: Any, duration: float, result: Any) -> None:  # noqa: ARG001 - the result is not recorded
        if state[0] is not monitor:
            made = None
            if getattr(type(monitor), method, None) is plain:
                try:
                    made = make(monitor)
                except Exception:  # noqa: BLE001 - a writer that cannot prepare: use the general path
                    made = None
            state[:] = [monitor, *(made or (None, None))]
        template = state[1]
        if template is None:
            fallback(monitor, duration)
            return
        record = template.copy()
        record["duration"] = duration
        state[2](record, screened=True)

    return fast


def fixed(monitor: Any) -> Callable[[], Any]:
    """The lookup of a monitor held by the caller (``monitor.timed``), ``None`` when it is off."""
    active = None if isinstance(monitor.logger, NoOpMetricsLogger) else monitor
    return lambda: active if SWITCHED_ON[0] else None


def timed_by(operation: str, lookup: Callable[[], Any], fields: dict[str, Any],
             plain: Callable[..., Any]) -> Callable[[F], F]:
    """A decorator recording each call as one timer line of ``operation`` through the monitor
    ``lookup`` gives (``None``: switched off, the call runs untimed). ``plain``: the built-in
    ``record_timer`` (the monitors' module, above this one, hands it in)."""

    def record(monitor: Any, call: _Call, duration: float) -> None:
        extra = dict(fields)
        if call.error is not None:
            extra["error_type"] = type(call.error).__name__
        if call.first is not None:
            extra["time_to_first_item"] = call.first - call.start
        if call.abandoned:
            extra["abandoned"] = True
        monitor.record_timer(operation, duration, success=call.error is None, **extra)

    def general(monitor: Any, duration: float) -> None:
        monitor.record_timer(operation, duration, success=True, **fields)

    fast = _fast_path(lambda m: _success_template(m, operation, None, None, fields), general, plain)

    def decorate(fn: F) -> F:
        return _wrap(fn, lookup, record, fast=fast)

    return decorate


def observe_llm(fn: F | None, lookup: Callable[[], Any], *, model: str | None, provider: str | None,
                fields: dict[str, Any]) -> Any:
    """``observe_llm_call``'s work, with the monitor given by ``lookup`` (see there)."""

    def decorate(target: F) -> F:
        client = client_provider_of(target)

        def record(monitor: Any, call: _Call, duration: float) -> Any:
            return llm_line(monitor, duration, call.result, call, model=model, provider=provider, client=client,
                            fields=fields)

        def fast(monitor: Any, duration: float, result: Any) -> None:
            try:
                llm_line(monitor, duration, result, model=model, provider=provider, client=client, fields=fields)
            except Exception as exc:  # noqa: BLE001 - telemetry never breaks the caller (strict mode re-raises)
                _failed(monitor, exc)

        return _wrap(target, lookup, record, watch_result=True, fast=fast, request=request_reader(target),
                     span=llm_span(model, provider, fields))

    return decorate(fn) if fn is not None else decorate


def llm_span(model: str | None, provider: str | None, fields: dict[str, Any]) -> SpanPlan:
    """An LLM call's span: ``llm_call <model>``, kind client, GenAI attributes (``gen_ai.request.model``,
    ``gen_ai.response.model``, ``gen_ai.provider.name``, ``gen_ai.usage.input_tokens`` / ``output_tokens``)."""

    def begin(call: _Call) -> tuple[str, dict[str, Any]]:
        asked = call.request or model
        attributes: dict[str, Any] = {**fields}
        if asked:
            attributes["gen_ai.request.model"] = asked
        if provider:
            attributes["gen_ai.provider.name"] = provider
        return (f"llm_call {asked}" if asked else "llm_call"), attributes

    def end(span: Span, call: _Call, recorded: Any) -> None:
        answered = call.model or model_of(call.result)
        if isinstance(answered, str) and answered:
            span.set_attribute("gen_ai.response.model", answered)
        if recorded is None:  # the line could not be made: the span says what the call said
            return
        name, chosen, prompt, completion = recorded
        if span.name == "llm_call" and name != "unknown":
            span.update_name(f"llm_call {name}")
        span.set_attribute("gen_ai.provider.name", chosen)
        span.set_attribute("gen_ai.system", chosen)  # the older name, still read by many backends
        if prompt is not None:
            span.set_attribute("gen_ai.usage.input_tokens", prompt)
        if completion is not None:
            span.set_attribute("gen_ai.usage.output_tokens", completion)
        if call.first is not None:
            span.set_attribute("time_to_first_chunk", call.first - call.start)  # "token" keys are redacted

    return SpanPlan("client", begin, end)


def named_span(operation: str, label_key: str, label: str, fields: dict[str, Any]) -> SpanPlan:
    """A tool or task call's span: ``tool_call read_file`` (kind client, ``gen_ai.tool.name``) or
    ``task_execution data_processing`` (kind internal, ``task_type``)."""
    name = f"{operation} {label}"
    if operation == "tool_call":
        kind = "client"
        attributes = {**fields, "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": label}
    else:
        kind = "internal"
        attributes = {**fields, label_key: label}

    def begin(call: _Call) -> tuple[str, dict[str, Any]]:  # noqa: ARG001 - the same for every call
        return name, attributes

    return SpanPlan(kind, begin)
