"""Instrumentation: decorators, timers and bound context, every result one JSON line.

    from infrastructure.monitoring.instrumentation import bind, observe_llm_call, observe_tool_call

    @observe_llm_call
    def ask(prompt): return client.chat.completions.create(model="gpt-4o", messages=[...])

    @observe_tool_call("read_file")
    async def read_file(path): ...

    bind(session_id="s-42")          # every record made in this context carries it

    instrument("openai", "anthropic") # every SDK client call recorded, no call site changed
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS: dict[str, str] = {
    "Binding": "..context",
    "Link": ".tracing",
    "ProfileRecord": ".profiling",
    "ProfileType": ".profiling",
    "Session": ".sessions",
    "Span": ".tracing",
    "SpanContext": ".tracing",
    "SpanKind": ".tracing",
    "Status": ".tracing",
    "StatusCode": ".tracing",
    "Task": ".tasks",
    "Timer": ".decorators",
    "Tracer": ".tracing",
    "bind": "..context",
    "bound_fields": "..context",
    "carry": "..context",
    "end_task": ".sessions",
    "extract": ".tracing",
    "get_current_span": ".tracing",
    "get_tracer": ".tracing",
    "inject": ".tracing",
    "instrument": ".sdk",
    "observe_llm_call": ".decorators",
    "observe_task_execution": ".decorators",
    "observe_tool_call": ".decorators",
    "profile": ".profiling",
    "profile_context": ".profiling",
    "record_code_change": ".tasks",
    "session_summary": "..query.sessions",
    "start_session": ".sessions",
    "start_profiling": ".profiling",
    "start_task": ".sessions",
    "stop_profiling": ".profiling",
    "submit": "..context",
    "task": ".tasks",
    "timed": ".decorators",
    "trace_span": ".tracing",
    "unbind": "..context",
    "uninstrument": ".sdk",
    "use_span": ".tracing",
}
"""Public name -> the module that defines it, loaded on first use (PEP 562): the monitors'
own timers use ``llm_clients`` below without loading the decorators above them, and
``session_summary`` (the read side) loads the query engine only when asked for."""


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    "Binding",
    "Link",
    "ProfileRecord",
    "ProfileType",
    "Session",
    "Span",
    "SpanContext",
    "SpanKind",
    "Status",
    "StatusCode",
    "Task",
    "Timer",
    "Tracer",
    "bind",
    "bound_fields",
    "carry",
    "end_task",
    "extract",
    "get_current_span",
    "get_tracer",
    "inject",
    "instrument",
    "observe_llm_call",
    "observe_task_execution",
    "observe_tool_call",
    "profile",
    "profile_context",
    "record_code_change",
    "session_summary",
    "start_session",
    "start_profiling",
    "start_task",
    "stop_profiling",
    "submit",
    "task",
    "timed",
    "trace_span",
    "unbind",
    "uninstrument",
    "use_span",
]
