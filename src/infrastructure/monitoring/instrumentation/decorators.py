"""One line of code per call site: decorators and a timer that record as JSON lines.

Every wrapper works on the four kinds of callables: plain functions, ``async``
functions, generators and async generators (a stream). A call is timed with
``perf_counter``; it is recorded once, when it returns, raises, or — for a stream — is
exhausted, raises, or is abandoned (closed or garbage-collected before its end, which is
then marked ``abandoned: true``). An exception is recorded (``success: false``,
``error_type``) and re-raised unchanged, traceback included.

The wrappers look their monitor up through the process-wide factory on each call (a
dictionary read), so they follow ``PerformanceMonitorFactory.reset_instance()`` and a
switched-off configuration: then the wrapped callable runs with no timing at all.

LLM calls also read the returned object: ``model`` and token usage from an OpenAI-style
response (``usage.prompt_tokens`` / ``completion_tokens`` / ``total_tokens``, cached
tokens in ``usage.prompt_tokens_details.cached_tokens``) or an Anthropic-style one
(``usage.input_tokens`` / ``output_tokens``, ``cache_read_input_tokens``), attribute or
dict alike. A stream's chunks are passed through untouched; the first one sets
``time_to_first_token`` and the last usage seen (OpenAI's final chunk, Anthropic's
``message_delta``) fills the tokens. Nothing but the latest usage object is kept.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

from ..logger_writer import NoOpMetricsLogger, user_fields
from ..schema import FIELD_INVALID, WRITER_FIELDS

__all__ = ["Timer", "observe_llm_call", "observe_task_execution", "observe_tool_call", "timed"]

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

    __slots__ = ("abandoned", "error", "first", "result", "start", "usage")

    def __init__(self, start: float | None = None) -> None:
        self.start = _clock() if start is None else start
        self.first: float | None = None
        self.error: BaseException | None = None
        self.result: Any = None
        self.usage: Any = None
        self.abandoned = False

    def saw(self, item: Any) -> None:
        """One item of a stream went by: note the first one's time and keep only the latest usage."""
        if self.first is None:
            self.first = _clock()
        usage = _usage_of(item)
        if usage is not None:
            self.usage = usage
            self.result = item


Recorder = Callable[[Any, _Call, float], None]
"""(monitor, call, duration) -> writes the line."""


Fast = Callable[[Any, float, Any], None]
"""(monitor, duration, result) -> writes the line of a call that returned normally (not a stream)."""


def _wrap(fn: F, lookup: Callable[[], Any], record: Recorder, *, watch_result: bool = False,
          fast: Fast | None = None) -> F:
    """Wrap ``fn`` of any kind so that each call is recorded once by ``record``; ``lookup``
    gives the monitor to record with, or ``None`` to run ``fn`` untimed (switched off).
    ``fast``, when given, records a plain call that returned normally without building the
    per-call state a stream or a failure needs. With ``watch_result``, a returned iterator
    is a stream, recorded when it ends."""

    if inspect.isasyncgenfunction(fn):
        @functools.wraps(fn)
        async def agen_wrapper(*args: Any, **kwargs: Any) -> Any:
            monitor = lookup()
            if monitor is None:
                async for item in fn(*args, **kwargs):
                    yield item
                return
            inner = _watch_async(fn(*args, **kwargs), monitor, record, _Call())
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
            return (yield from _watch(fn(*args, **kwargs), monitor, record, _Call()))

        return gen_wrapper  # type: ignore[return-value]

    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            monitor = lookup()
            if monitor is None:
                return await fn(*args, **kwargs)
            start = _clock()
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                call = _Call(start)
                call.error = exc
                _finish(monitor, record, call)
                raise
            duration = _clock() - start
            if fast is not None and not (watch_result and _is_stream(result)):
                fast(monitor, duration, result)
                return result
            return _returned(result, monitor, record, _Call(start), watch_result)

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        monitor = lookup()
        if monitor is None:
            return fn(*args, **kwargs)
        start = _clock()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            call = _Call(start)
            call.error = exc
            _finish(monitor, record, call)
            raise
        duration = _clock() - start
        if fast is not None and not (watch_result and _is_stream(result)):
            fast(monitor, duration, result)  # fail-safe itself
            return result
        return _returned(result, monitor, record, _Call(start), watch_result)

    return wrapper  # type: ignore[return-value]


_STREAM_TYPES: dict[type, bool] = {}
"""Is a result of this type a stream (an iterator or async iterator)? Asked once per type: the
protocol lives on the type, and a call site returns the same few types again and again."""


def _is_stream(result: Any) -> bool:
    kind = type(result)
    try:
        return _STREAM_TYPES[kind]
    except KeyError:
        pass
    stream = not issubclass(kind, (str, bytes, dict, list, tuple)) and (
        hasattr(kind, "__anext__") or hasattr(kind, "__next__"))
    if len(_STREAM_TYPES) >= 256:  # types made on the fly: keep the table bounded
        _STREAM_TYPES.clear()
    _STREAM_TYPES[kind] = stream
    return stream


def _returned(result: Any, monitor: Any, record: Recorder, call: _Call, watch_result: bool) -> Any:
    """Record now, or, when the result is a stream to be consumed later, when it ends."""
    if watch_result and _is_stream(result):
        if hasattr(type(result), "__anext__"):
            return _watch_async(result, monitor, record, call)
        return _watch(result, monitor, record, call)
    call.result = result
    _finish(monitor, record, call)
    return result


def _watch(stream: Iterator[Any], monitor: Any, record: Recorder, call: _Call) -> Iterator[Any]:
    """Pass a stream through, noting its first item and its latest usage; record once at its end."""
    done = False
    try:
        for item in stream:
            call.saw(item)
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
        _finish(monitor, record, call)
        close = getattr(stream, "close", None)
        if close is not None:
            close()


async def _watch_async(stream: AsyncIterator[Any], monitor: Any, record: Recorder, call: _Call) -> AsyncGenerator[Any]:
    done = False
    try:
        async for item in stream:
            call.saw(item)
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
        _finish(monitor, record, call)
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(RuntimeError):  # closed from a finaliser while already closing
                await aclose()


def _finish(monitor: Any, record: Recorder, call: _Call) -> None:
    try:
        record(monitor, call, _clock() - call.start)
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
               fallback: Callable[[Any, float], None]) -> Fast:
    """``fast(monitor, duration, result)``: the template of the current monitor (rebuilt when the
    factory hands out another one) copied and written, else the monitor's own method.
    One call and one dictionary copy per record: this is the hot path of every decorator."""
    state: list[Any] = [None, None, None]  # monitor, template, write

    def fast(monitor: Any, duration: float, result: Any) -> None:  # noqa: ARG001 - the result is not recorded
        if state[0] is not monitor:
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
    return lambda: active


def _monitor_lookup(name: str) -> Callable[[], Any]:
    """The monitor ``name`` of the current process-wide factory, or ``None`` when it is switched off.
    A call costs one class-attribute read while the factory stays the same."""
    from ..factory import PerformanceMonitorFactory

    cache: list[Any] = [None, None]  # factory, monitor

    def lookup() -> Any:
        factory = PerformanceMonitorFactory._instance
        if factory is None or cache[0] is not factory:
            factory = factory or PerformanceMonitorFactory.get_instance()
            monitor = factory.create_monitor(name)
            cache[0], cache[1] = factory, (None if isinstance(monitor.logger, NoOpMetricsLogger) else monitor)
        return cache[1]

    return lookup


# --------------------------------------------------------------------------- public decorators


def timed(operation: str, *, module: str = "task", monitor: Any = None, **fields: Any) -> Callable[[F], F]:
    """``@timed("rerank")``: one timer line per call in ``<module>_metrics.log`` (or through ``monitor``)."""
    lookup = fixed(monitor) if monitor is not None else _monitor_lookup(module)

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

    fast = _fast_path(lambda m: _success_template(m, operation, None, None, fields), general)

    def decorate(fn: F) -> F:
        return _wrap(fn, lookup, record, fast=fast)

    return decorate


_LABELS = {"record_tool_call": ("tool_call", "tool_name"), "record_task_execution": ("task_execution", "task_type")}


def _named(module: str, method: str, label: str, fields: dict[str, Any]) -> Callable[[F], F]:
    """A decorator recording each call with ``monitor.<method>(label, duration, success, ...)``."""

    def record(monitor: Any, call: _Call, duration: float) -> None:
        extra = dict(fields)
        if call.error is not None:
            extra["error_type"] = type(call.error).__name__
        if call.abandoned:
            extra["abandoned"] = True
        getattr(monitor, method)(label, duration, call.error is None, **extra)

    def general(monitor: Any, duration: float) -> None:
        getattr(monitor, method)(label, duration, True, **fields)

    operation, label_key = _LABELS[method]
    fast = _fast_path(lambda m: _success_template(m, operation, label_key, label, fields), general)

    def decorate(fn: F) -> F:
        return _wrap(fn, _monitor_lookup(module), record, fast=fast)

    return decorate


def observe_tool_call(tool_name: str, **fields: Any) -> Callable[[F], F]:
    """``@observe_tool_call("read_file")``: a ``tool_call`` line per call (duration, success, error_type)."""
    return _named("tool", "record_tool_call", tool_name, fields)


def observe_task_execution(task_type: str, **fields: Any) -> Callable[[F], F]:
    """``@observe_task_execution("data_processing")``: a ``task_execution`` line per call."""
    return _named("task", "record_task_execution", task_type, fields)


def observe_llm_call(fn: F | None = None, /, *, model: str | None = None, provider: str | None = None,
                     monitor: Any = None, **fields: Any) -> Any:
    """``@observe_llm_call`` or ``@observe_llm_call(model="gpt-4o", provider="openai")``.

    Model, provider and tokens come from the response when it says them, else from the
    arguments; ``provider`` is guessed from the model name when neither says it.
    """

    def line(monitor: Any, result: Any, usage: Any, duration: float, success: bool, extra: dict[str, Any]) -> None:
        name = str(_get(result, "model") or model or "unknown")
        prompt, completion, total, cached = _tokens(usage)
        if cached is not None:
            extra = {**extra, "cached_tokens": cached}
        monitor.record_llm_call(name, provider or _provider_of(name), duration, prompt, completion, total,
                                success, **extra)

    def record(monitor: Any, call: _Call, duration: float) -> None:
        extra = dict(fields) if fields else {}  # only what is known: every keyword costs on the write path
        if call.error is not None:
            extra["error_type"] = type(call.error).__name__
        if call.first is not None:
            extra["time_to_first_token"] = call.first - call.start
            extra["streaming"] = True
        if call.abandoned:
            extra["abandoned"] = True
        usage = call.usage if call.usage is not None else _usage_of(call.result)
        line(monitor, call.result, usage, duration, call.error is None, extra)

    def fast(monitor: Any, duration: float, result: Any) -> None:
        try:
            line(monitor, result, _usage_of(result), duration, True, fields)
        except Exception as exc:  # noqa: BLE001 - telemetry never breaks the caller (strict mode re-raises)
            _failed(monitor, exc)

    lookup = fixed(monitor) if monitor is not None else _monitor_lookup("llm")

    def decorate(target: F) -> F:
        return _wrap(target, lookup, record, watch_result=True, fast=fast)

    return decorate(fn) if fn is not None else decorate


# --------------------------------------------------------------------------- reading responses


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def _usage_of(obj: Any) -> Any:
    """The usage block of a response or stream chunk (``usage``, or Anthropic's ``message.usage``)."""
    usage = _get(obj, "usage")
    if usage is None:
        usage = _get(_get(obj, "message"), "usage")
    return usage


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _tokens(usage: Any) -> tuple[int, int, int | None, int | None]:
    """(prompt, completion, total, cached) from OpenAI- or Anthropic-style usage."""
    if usage is None:
        return 0, 0, None, None
    prompt = _count(_get(usage, "prompt_tokens"))
    completion = _count(_get(usage, "completion_tokens"))
    cached = _count(_get(_get(usage, "prompt_tokens_details"), "cached_tokens"))
    if prompt is None and completion is None:  # Anthropic
        prompt = _count(_get(usage, "input_tokens"))
        completion = _count(_get(usage, "output_tokens"))
        cached = _count(_get(usage, "cache_read_input_tokens"))
    total = _count(_get(usage, "total_tokens"))
    return prompt or 0, completion or 0, total, cached


_PROVIDERS = (("gpt", "openai"), ("o1", "openai"), ("o3", "openai"), ("o4", "openai"), ("text-embedding", "openai"),
              ("claude", "anthropic"), ("gemini", "google"), ("mistral", "mistral"), ("llama", "meta"),
              ("command", "cohere"))


@functools.lru_cache(maxsize=256)
def _provider_of(model: str) -> str:
    lowered = model.lower()
    for prefix, provider in _PROVIDERS:
        if lowered.startswith(prefix):
            return provider
    return "unknown"
