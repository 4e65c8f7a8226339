"""Fields bound to the current context, added by the writer to every record made in it.

    from infrastructure.monitoring.instrumentation import bind

    bind(session_id="s-42", user="ada")          # for the rest of this thread / asyncio task
    with bind(step="retrieval"):                 # only inside the block
        llm.record_llm_call(...)                 # the line carries session_id, user and step

The fields live in a ``contextvars.ContextVar`` holding an immutable mapping: each
thread and each asyncio task sees its own, a task inherits its creator's at creation,
and nothing is shared or kept beyond the contexts that use it. Thread pools and
schedulers do not pass contexts along by themselves: ``carry(fn)`` does.

The writer reads the variable once per record (a few tens of nanoseconds) and screens
bound values with its redactor once per binding, not once per record.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from types import MappingProxyType
from typing import Any, Final, ParamSpec, TypeVar

__all__ = ["Binding", "bind", "bound_fields", "carry", "submit", "unbind"]

P = ParamSpec("P")
R = TypeVar("R")

_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})
BOUND: Final[contextvars.ContextVar[Mapping[str, Any]]] = contextvars.ContextVar("monitoring_bound", default=_EMPTY)
"""The current context's bound fields (an immutable mapping; a new one per change)."""


class Binding:
    """What ``bind`` returns: already in effect; as a context manager it also ends at the block's end."""

    __slots__ = ("_token", "fields")

    def __init__(self, token: contextvars.Token[Mapping[str, Any]], fields: Mapping[str, Any]) -> None:
        self._token = token
        self.fields = fields

    def __enter__(self) -> Binding:
        return self

    def __exit__(self, *exc: object) -> None:
        BOUND.reset(self._token)

    def __repr__(self) -> str:
        return f"Binding({dict(self.fields)!r})"


def bind(**fields: Any) -> Binding:
    """Add ``fields`` to every record made in the current context (later bindings win)."""
    current = BOUND.get()
    merged = MappingProxyType({**current, **fields})
    return Binding(BOUND.set(merged), merged)


def unbind(*names: str) -> None:
    """Stop adding ``names`` in the current context."""
    current = BOUND.get()
    if any(n in current for n in names):
        BOUND.set(MappingProxyType({k: v for k, v in current.items() if k not in names}))


def bound_fields() -> dict[str, Any]:
    """A copy of the fields bound in the current context."""
    return dict(BOUND.get())


def carry(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` running, wherever it is called from, with the context (bound fields, current span)
    of the moment ``carry`` was called: for thread pools, schedulers and callbacks."""
    snapshot = contextvars.copy_context()

    @functools.wraps(fn)
    def carried(*args: P.args, **kwargs: P.kwargs) -> R:
        return snapshot.copy().run(fn, *args, **kwargs)  # a fresh copy: safe to run in several threads at once

    return carried


def submit(executor: Executor, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:
    """``executor.submit`` that keeps the caller's bound fields and span in the task."""
    return executor.submit(carry(fn), *args, **kwargs)
