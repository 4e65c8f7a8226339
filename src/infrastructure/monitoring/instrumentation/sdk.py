"""``instrument("openai", "anthropic")``: every call of the SDKs' clients recorded, no call site changed.

    from infrastructure.monitoring.instrumentation import instrument, uninstrument

    instrument("openai", "anthropic")   # or the YAML: instrumentation: {auto: [openai, anthropic]}
    ...
    uninstrument("openai")              # the SDK's own methods are back

The methods are patched on the SDK's resource classes with ``wrapt``, so every client
instance, made before or after, sync or async, is covered: OpenAI's
``chat.completions.create`` / ``parse`` / ``stream`` (``client.beta.chat.completions``
included) and ``responses.create`` / ``parse`` / ``stream``; Anthropic's
``messages.create`` / ``parse`` / ``stream``. Each call writes one ``llm_call`` line (see
``llm_clients.llm_line``); the SDK's exceptions are re-raised unchanged and its return
values are its own objects, streams coming back as proxies that behave exactly like them.

One line per call, never two. A call made inside a function decorated with
``@observe_llm_call`` is recorded by the decorator, which wins: it is the choice made at
that call site, it carries the application's own fields, and switching ``instrument()``
on elsewhere must not change how many lines a decorated function writes. The patched
method then only adds what it knows (client, model, tokens) to the decorator's line. And
an SDK helper that calls another patched method (``chat.completions.stream`` calls
``create``) is one request, recorded once by the outer method.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from typing import Any, Final

import wrapt

from .._timing import _Call, _failed, _finish, fixed, llm_span
from ..config import INSTRUMENTABLE, MonitoringSettings
from .decorators import _monitor_lookup
from .llm_clients import (
    INSTRUMENTED,
    NOT_STREAM,
    RECORDING,
    Finish,
    contribute,
    llm_line,
    provider_of_client,
    stream_kind,
    watch,
)
from .tracing import current_span_get

__all__ = ["auto_instrument", "instrument", "uninstrument"]

_logger = logging.getLogger(__name__)

_TARGETS: Final[dict[str, tuple[tuple[str, str, str, bool], ...]]] = {
    "openai": (
        ("openai.resources.chat.completions.completions", "Completions", "create", False),
        ("openai.resources.chat.completions.completions", "Completions", "parse", False),
        ("openai.resources.chat.completions.completions", "Completions", "stream", False),
        ("openai.resources.chat.completions.completions", "AsyncCompletions", "create", True),
        ("openai.resources.chat.completions.completions", "AsyncCompletions", "parse", True),
        ("openai.resources.chat.completions.completions", "AsyncCompletions", "stream", False),
        ("openai.resources.responses.responses", "Responses", "create", False),
        ("openai.resources.responses.responses", "Responses", "parse", False),
        ("openai.resources.responses.responses", "Responses", "stream", False),
        ("openai.resources.responses.responses", "AsyncResponses", "create", True),
        ("openai.resources.responses.responses", "AsyncResponses", "parse", True),
        ("openai.resources.responses.responses", "AsyncResponses", "stream", False),
    ),
    "anthropic": (
        ("anthropic.resources.messages.messages", "Messages", "create", False),
        ("anthropic.resources.messages.messages", "Messages", "parse", False),
        ("anthropic.resources.messages.messages", "Messages", "stream", False),
        ("anthropic.resources.messages.messages", "AsyncMessages", "create", True),
        ("anthropic.resources.messages.messages", "AsyncMessages", "parse", True),
        ("anthropic.resources.messages.messages", "AsyncMessages", "stream", False),
    ),
}
"""(module, class, method, is a coroutine) per SDK. ``stream`` is a plain method in both forms: it
returns a manager that sends the request when entered. A method an SDK version lacks is skipped."""


class _Patched:
    """One SDK's patches: what was wrapped, and the monitor lookup its wrappers use."""

    __slots__ = ("active", "lookup", "wrappers")

    def __init__(self, lookup: Callable[[], Any]) -> None:
        self.lookup = lookup
        self.active = True
        self.wrappers: list[tuple[type, str, Any]] = []


_PATCHED: dict[str, _Patched] = {}
_LOCK = threading.Lock()
_SPAN: Final = llm_span(None, None, {})
"""Inside a trace, a call with a line of its own is also a span (``llm_call <model>``, as the decorator's)."""


def _record(monitor: Any, call: _Call, duration: float) -> Any:
    return llm_line(monitor, duration, call.result, call)


def _begin(instance: Any, kwargs: dict[str, Any]) -> _Call:
    client = provider_of_client(getattr(instance, "_client", None))
    call = _Call()
    call.sdk = True
    call.client = client
    model = kwargs.get("model")
    call.request = model if isinstance(model, str) else None
    return call


def _end(monitor: Any, call: _Call, outer: Any) -> None:
    """``call`` is over: its own line, or, inside a decorated function, what it adds to that line."""
    if outer is None:
        _finish(monitor, _record, call)
        return
    try:
        contribute(outer, call)
    except Exception as exc:  # noqa: BLE001 - telemetry never breaks the caller (strict mode re-raises)
        _failed(monitor, exc)


def _returned(result: Any, monitor: Any, call: _Call, outer: Any) -> Any:
    if stream_kind(type(result)) != NOT_STREAM:
        return watch(result, call, Finish(call, lambda: _end(monitor, call, outer)))
    call.result = result
    _end(monitor, call, outer)
    return result


def _sync_wrapper(state: _Patched) -> Callable[..., Any]:
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        outer = RECORDING.get()
        if not state.active or (outer is not None and outer.sdk):  # the same request, already recorded
            return wrapped(*args, **kwargs)
        monitor = state.lookup()
        if monitor is None:  # switched off
            return wrapped(*args, **kwargs)
        call = _begin(instance, kwargs)
        if outer is None and (parent := current_span_get()) is not None and parent.context.sampled:
            _SPAN.open(call)
        token = RECORDING.set(call)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            call.error = exc
            _end(monitor, call, outer)
            raise
        finally:
            RECORDING.reset(token)
        return _returned(result, monitor, call, outer)

    return wrapper


def _async_wrapper(state: _Patched) -> Callable[..., Any]:
    async def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> Any:
        outer = RECORDING.get()
        if not state.active or (outer is not None and outer.sdk):
            return await wrapped(*args, **kwargs)
        monitor = state.lookup()
        if monitor is None:
            return await wrapped(*args, **kwargs)
        call = _begin(instance, kwargs)
        if outer is None and (parent := current_span_get()) is not None and parent.context.sampled:
            _SPAN.open(call)
        token = RECORDING.set(call)
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            call.error = exc
            _end(monitor, call, outer)
            raise
        finally:
            RECORDING.reset(token)
        return _returned(result, monitor, call, outer)

    return wrapper


def _names(libraries: tuple[str, ...]) -> tuple[str, ...]:
    for name in libraries:
        if name not in INSTRUMENTABLE:
            valid = ", ".join(repr(n) for n in INSTRUMENTABLE)
            raise ValueError(f"cannot instrument {name!r}: the SDKs known are {valid}")
    return tuple(dict.fromkeys(libraries or INSTRUMENTABLE))


def instrument(*libraries: str, monitor: Any = None) -> tuple[str, ...]:
    """Patch the clients of ``libraries`` (default: every SDK known) so each call is recorded.

    Returns the SDKs instrumented now or before. Calling it again patches nothing twice
    (``monitor``, when given, becomes the monitor those calls record with); an SDK that is
    not installed is skipped with a one-line warning. ``monitor`` defaults to the
    process-wide ``llm`` monitor; when monitoring is switched off the calls run unrecorded.
    An unknown name raises ``ValueError`` listing the known ones.
    """
    names = _names(libraries)
    lookup = fixed(monitor) if monitor is not None else _monitor_lookup("llm")
    done: list[str] = []
    with _LOCK:
        for name in names:
            state = _PATCHED.get(name)
            if state is not None:
                if monitor is not None:
                    state.lookup = lookup
                done.append(name)
                continue
            try:
                importlib.import_module(name)
            except ImportError:
                _logger.warning("instrument(%r): the %r package is not installed, nothing to instrument", name, name)
                continue
            state = _Patched(lookup)
            for module_name, owner_name, method, is_async in _TARGETS[name]:
                try:
                    owner = getattr(importlib.import_module(module_name), owner_name)
                except (ImportError, AttributeError):
                    owner = None
                if not isinstance(owner, type) or method not in vars(owner):
                    _logger.debug("instrument(%r): %s.%s.%s not found, skipped", name, module_name, owner_name, method)
                    continue
                wrapper = _async_wrapper(state) if is_async else _sync_wrapper(state)
                wrapt.wrap_function_wrapper(owner, method, wrapper)
                state.wrappers.append((owner, method, vars(owner)[method]))
            _PATCHED[name] = state
            done.append(name)
        INSTRUMENTED[0] = bool(_PATCHED)
    return tuple(done)


def uninstrument(*libraries: str) -> tuple[str, ...]:
    """Put back the SDK methods ``instrument()`` patched (default: every SDK); returns those restored.

    A method another library wrapped again after us cannot be unwrapped from under its
    wrapper: ours is left in place but passes every call straight through."""
    names = _names(libraries)
    restored: list[str] = []
    with _LOCK:
        for name in names:
            state = _PATCHED.pop(name, None)
            if state is None:
                continue
            state.active = False
            for owner, method, patched in reversed(state.wrappers):
                if vars(owner).get(method) is patched:
                    setattr(owner, method, patched.__wrapped__)
                else:
                    _logger.warning("uninstrument(%r): %s.%s was wrapped again by another library; ours now "
                                    "passes calls through", name, owner.__name__, method)
            restored.append(name)
        INSTRUMENTED[0] = bool(_PATCHED)
    return tuple(restored)


def auto_instrument(settings: MonitoringSettings) -> tuple[str, ...]:
    """Instrument the SDKs listed in ``instrumentation.auto`` (nothing when monitoring is off)."""
    auto = settings.instrumentation.auto
    if not settings.enabled or not auto:
        return ()
    return instrument(*auto)
