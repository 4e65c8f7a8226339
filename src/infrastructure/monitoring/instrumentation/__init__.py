"""Instrumentation: decorators, timers and bound context, every result one JSON line.

    from infrastructure.monitoring.instrumentation import bind, observe_llm_call, observe_tool_call

    @observe_llm_call
    def ask(prompt): return client.chat.completions.create(model="gpt-4o", messages=[...])

    @observe_tool_call("read_file")
    async def read_file(path): ...

    bind(session_id="s-42")          # every record made in this context carries it
"""

from __future__ import annotations

from ..context import Binding, bind, bound_fields, carry, submit, unbind
from .decorators import Timer, observe_llm_call, observe_task_execution, observe_tool_call, timed
from .profiling import profile, profile_context
from .sessions import Session, end_task, session_summary, start_session, start_task
from .tracing import Span, SpanContext, Tracer, extract, get_tracer, inject, trace_span

__all__ = [
    "Binding",
    "Session",
    "Span",
    "SpanContext",
    "Timer",
    "Tracer",
    "bind",
    "bound_fields",
    "carry",
    "end_task",
    "extract",
    "get_tracer",
    "inject",
    "observe_llm_call",
    "observe_task_execution",
    "observe_tool_call",
    "profile",
    "profile_context",
    "session_summary",
    "start_session",
    "start_task",
    "submit",
    "timed",
    "trace_span",
    "unbind",
]
