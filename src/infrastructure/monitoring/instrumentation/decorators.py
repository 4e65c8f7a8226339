"""One line of code per call site: decorators and a timer that record as JSON lines.

Every wrapper works on the four kinds of callables: plain functions, ``async``
functions, generators and async generators (a stream). A call is timed with
``perf_counter``; it is recorded once, when it returns, raises, or — for a stream — is
exhausted, raises, or is abandoned (closed or garbage-collected before its end, which is
then marked ``abandoned: true``). An exception is recorded (``success: false``,
``error_type``) and re-raised unchanged, traceback included.

Inside a trace, each call of ``observe_llm_call``, ``observe_tool_call`` and
``observe_task_execution`` is also a child span (``llm_call gpt-4o``, ``tool_call
read_file``, ``task_execution answer``) with the call's duration, current while the call
runs; outside a trace they make none (see ``docs/tracing.md``).

The wrappers look their monitor up on each call in the process's default writer pool
(one dictionary read), where the process-wide factory keeps its monitors: they record
with the very object ``create_monitor`` returns (a class given to ``register_monitor``
included), follow ``PerformanceMonitorFactory.set_instance()`` / ``reset_instance()``,
and run the wrapped callable with no timing at all when switched off. Pass ``monitor=``
to record through a monitor of your own. The timing itself is ``_timing``'s, shared with
``monitor.timer`` and ``monitor.timed``.

LLM calls also read the returned object (``llm_clients``): ``model`` and token usage
from an OpenAI- or Anthropic-style response, attribute or dict alike; a failed call keeps
the ``model`` it asked for. A returned stream (an SDK ``Stream``, a stream helper's
manager, any iterator) comes back as a proxy of the very object, recorded when it ends:
its first item sets ``time_to_first_token`` and usage is merged across its events. A
decorated generator function is still driven by a generator of ours (it is the
application's own object, not the SDK's).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from .._timing import Timer, _Call, _fast_path, _success_template, _wrap, fixed, named_span, observe_llm, timed_by
from ..implementations import BUILTIN_MONITORS
from ..lightweight_monitor import LightweightPerformanceMonitor, switch_off
from ..logger_writer import SWITCHED_ON, NoOpMetricsLogger, WriterPool, default_pool

__all__ = ["Timer", "observe_llm_call", "observe_task_execution", "observe_tool_call", "timed"]

F = TypeVar("F", bound=Callable[..., Any])


def _monitor_lookup(name: str) -> Callable[[], Any]:
    """The process's monitor ``name`` (``monitor_of``), or ``None`` when recording or that module
    is switched off. A call costs a dictionary read; a new default (``PerformanceMonitorFactory
    .set_instance``, ``reset_instance``) or a class registered again is picked up at the next call."""
    cache: list[Any] = [None, None]  # the pool's monitor, what the wrappers record with (None: its module is off)

    def lookup() -> Any:
        if not SWITCHED_ON[0]:  # switched off at run time
            return None
        monitor = default_pool().monitor(name, builtin_monitor)  # monitor_of(name), inlined: runs on every call
        if monitor is not cache[0]:
            off = isinstance(getattr(monitor, "logger", None), NoOpMetricsLogger)
            cache[0], cache[1] = monitor, None if off else monitor
        return cache[1]

    return lookup


def monitor_of(name: str) -> Any:
    """The monitor ``name`` of the process default pool: the very object
    ``PerformanceMonitorFactory.get_instance().create_monitor(name)`` returns (a class registered
    with that factory, a container override), made as the built-in one when no factory owns the pool."""
    return default_pool().monitor(name, builtin_monitor)


def builtin_monitor(pool: WriterPool, name: str) -> Any:
    """The built-in class of ``name`` writing through ``pool`` (a plain monitor for another name),
    switched off when its module is: the monitor a pool that no factory owns records with."""
    writer = pool.get(name)
    cls = BUILTIN_MONITORS.get(name)
    if cls is None:
        monitor: LightweightPerformanceMonitor = LightweightPerformanceMonitor(writer)
    elif name == "llm":
        monitor = cls(writer, pricing=pool.settings.pricing)
    else:
        monitor = cls(writer)
    if isinstance(writer, NoOpMetricsLogger):
        switch_off(monitor)
    return monitor


# --------------------------------------------------------------------------- public decorators


def timed(operation: str, *, module: str = "task", monitor: Any = None, **fields: Any) -> Callable[[F], F]:
    """``@timed("rerank")``: one timer line per call in ``<module>_metrics.log`` (or through ``monitor``)."""
    return timed_by(operation, fixed(monitor) if monitor is not None else _monitor_lookup(module), fields,
                    LightweightPerformanceMonitor.record_timer)


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
    fast = _fast_path(lambda m: _success_template(m, operation, label_key, label, fields), general,
                      getattr(BUILTIN_MONITORS[module], method))
    span = named_span(operation, label_key, label, fields)

    def decorate(fn: F) -> F:
        return _wrap(fn, _monitor_lookup(module), record, fast=fast, span=span)

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
    call (its ``model`` argument; the client, for a decorated SDK method), else from the
    decorator's arguments; ``provider`` is guessed from the model name when nothing says
    it. A returned stream or stream helper behaves exactly as the SDK's own object.
    """
    lookup = fixed(monitor) if monitor is not None else _monitor_lookup("llm")
    return observe_llm(fn, lookup, model=model, provider=provider, fields=fields)
