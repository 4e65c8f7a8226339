"""What an LLM call says about itself, read from the OpenAI and Anthropic SDKs' own objects.

Responses, stream chunks and events, usage blocks, clients and errors are read by
attribute (or key, for dicts), and the SDKs are recognised by the module of their
classes: nothing here imports ``openai`` or ``anthropic``, so it works with whichever
version is installed and costs nothing when neither is.

A streamed result comes back as a ``wrapt.ObjectProxy`` of the SDK's own object, which
overrides only the iteration, context-manager and ``close`` methods: ``isinstance``,
``response``, ``get_final_message()``, ``current_completion_snapshot``... all reach the
real object. The call is recorded once, when the stream ends, fails, is closed, leaves
its ``with`` block, or is garbage-collected before its end (``abandoned: true``).

Usage is merged across a stream's events, field by field, the latest reported value
winning: Anthropic's ``message_start`` brings the model, ``input_tokens`` and the cache
counts, the last ``message_delta`` the ``output_tokens``; OpenAI's final chunk (with
``stream_options={"include_usage": True}``) or its Responses API ``response.completed``
event bring the whole usage. A stream whose usage never arrived records its tokens as
``null``: unknown, never a made-up zero.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Final
from urllib.parse import urlsplit

import wrapt

__all__ = [
    "RECORDING",
    "Finish",
    "llm_line",
    "model_of",
    "note",
    "provider_of_client",
    "request_reader",
    "scoped_aiter",
    "scoped_iter",
    "stepped_aiter",
    "stepped_iter",
    "stream_kind",
    "tokens",
    "usage_of",
    "watch",
]

_clock = time.perf_counter

RECORDING: contextvars.ContextVar[Any] = contextvars.ContextVar("llm_recording", default=None)
"""The call an outer layer is recording while it runs (a decorated function, or an SDK method
patched by ``instrument()``). An SDK method patched by ``instrument()`` that finds one does
not write a line of its own: inside another patched SDK method it is the same request (a
helper calling ``create``) and passes straight through; inside a decorated function it adds
what it knows (client, model, tokens) to the decorator's line."""

INSTRUMENTED: Final[list[bool]] = [False]
"""Whether ``instrument()`` has patched anything: only then do decorated calls open a recording
scope (a context variable set and reset), so the decorators pay nothing for it otherwise."""

NOT_STREAM, SYNC_ITER, ASYNC_ITER, SYNC_MANAGER, ASYNC_MANAGER = range(5)

_SDKS: Final = {"openai": "api.openai.com", "anthropic": "api.anthropic.com"}
_KNOWN_HOSTS: Final = {host: name for name, host in _SDKS.items()}
_MANAGERS: Final = {
    "MessageStreamManager": SYNC_MANAGER, "AsyncMessageStreamManager": ASYNC_MANAGER,
    "BetaMessageStreamManager": SYNC_MANAGER, "BetaAsyncMessageStreamManager": ASYNC_MANAGER,
    "ChatCompletionStreamManager": SYNC_MANAGER, "AsyncChatCompletionStreamManager": ASYNC_MANAGER,
    "ResponseStreamManager": SYNC_MANAGER, "AsyncResponseStreamManager": ASYNC_MANAGER,
}
"""The SDKs' stream helpers (``messages.stream()``, ``chat.completions.stream()``,
``responses.stream()``): context managers that send the request when entered."""

RAW_STREAM: Final = "_raw_stream"
"""Where a stream helper keeps the SDK stream it reads (both SDKs, every helper above)."""

_SNAPSHOTS: Final = ("current_message_snapshot", "current_completion_snapshot")


# --------------------------------------------------------------------------- reading objects


_MODELS: dict[type, bool] = {}


class _Attributes:
    """``.get(name)`` over an object's attributes (a response class of the application's own)."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def get(self, name: str) -> Any:
        return getattr(self.obj, name, None)


_NOTHING: Final[dict[str, Any]] = {}


def fields(obj: Any) -> Any:
    """Something whose ``.get(name)`` reads ``obj``'s fields: the dict itself, a pydantic model's
    instance ``__dict__``, or its attributes.

    The SDKs' objects are pydantic models whose fields live in the instance ``__dict__``
    (fields the API added beyond the SDK's in ``__pydantic_extra__``): read there, an absent
    field costs a dict miss instead of pydantic's ``__getattr__`` raising ``AttributeError``."""
    if obj is None:
        return _NOTHING
    if isinstance(obj, dict):
        return obj
    if _is_model(type(obj)):
        extra = obj.__pydantic_extra__
        return {**extra, **obj.__dict__} if extra else obj.__dict__
    return _Attributes(obj)


def _is_model(kind: type) -> bool:
    model = _MODELS.get(kind)
    if model is None:
        model = hasattr(kind, "__pydantic_fields__") and hasattr(kind, "__pydantic_extra__")
        if len(_MODELS) >= 256:
            _MODELS.clear()
        _MODELS[kind] = model
    return model


def get(obj: Any, name: str) -> Any:
    """``obj.name`` or ``obj[name]`` for a dict; ``None`` when absent (read as ``fields`` does)."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    model = _MODELS.get(type(obj))
    if model is None:
        model = _is_model(type(obj))
    if model:
        value = obj.__dict__.get(name)
        if value is None:
            extra = obj.__pydantic_extra__
            if extra:
                value = extra.get(name)
        return value
    return getattr(obj, name, None)


def usage_of(obj: Any) -> Any:
    """The usage block of a response, chunk or event: its own ``usage``, else that of its
    ``message`` (Anthropic's ``message_start``) or ``response`` (OpenAI Responses events)."""
    usage = get(obj, "usage")
    if usage is None:
        usage = get(get(obj, "message"), "usage")
        if usage is None:
            usage = get(get(obj, "response"), "usage")
    return usage


def model_of(obj: Any) -> Any:
    """The model a response, chunk or event names (its own, its ``message``'s or ``response``'s)."""
    model = get(obj, "model")
    if model:
        return model
    for holder in ("message", "response"):
        model = get(get(obj, holder), "model")
        if isinstance(model, str) and model:
            return model
    return None


def _count(value: Any) -> int | None:
    return value if value.__class__ is int or (isinstance(value, int) and not isinstance(value, bool)) else None


_FLAT: Final = ("prompt_tokens", "completion_tokens", "total_tokens", "input_tokens", "output_tokens",
                "cache_read_input_tokens", "cache_creation_input_tokens", "cached_tokens", "cache_write_tokens")
_DETAILS: Final = ("cached_tokens", "cache_write_tokens")


def merge_usage(merged: dict[str, int] | None, usage: Any) -> dict[str, int]:
    """Fold one usage block into the counts seen so far: each field reported replaces the last."""
    merged = {} if merged is None else merged
    counts = fields(usage)
    for name in _FLAT:
        value = _count(counts.get(name))
        if value is not None:
            merged[name] = value
    details = counts.get("prompt_tokens_details") or counts.get("input_tokens_details")
    if details is not None:
        details = fields(details)
        for name in _DETAILS:
            value = _count(details.get(name))
            if value is not None:
                merged[name] = value
    return merged


def tokens(usage: Any) -> tuple[int | None, int | None, int | None, int | None, int | None]:
    """(prompt, completion, total, cached, cache written) from OpenAI- or Anthropic-style usage.

    ``prompt`` counts every input token, cached ones included, for both SDKs (OpenAI's
    ``prompt_tokens`` / ``input_tokens`` already do; Anthropic's ``input_tokens`` leaves out
    ``cache_read_input_tokens`` and ``cache_creation_input_tokens``, which are added), so
    ``cached`` is always a part of ``prompt`` and prices apply the same way. ``None`` where
    the usage does not say."""
    counts = fields(usage)
    details = fields(counts.get("prompt_tokens_details") or counts.get("input_tokens_details"))
    cached = _count(details.get("cached_tokens"))
    if cached is None:
        cached = _count(counts.get("cached_tokens"))
    written = _count(details.get("cache_write_tokens"))
    if written is None:
        written = _count(counts.get("cache_write_tokens"))
    prompt = _count(counts.get("prompt_tokens"))
    completion = _count(counts.get("completion_tokens"))
    if prompt is None and completion is None:
        prompt = _count(counts.get("input_tokens"))
        completion = _count(counts.get("output_tokens"))
        read = _count(counts.get("cache_read_input_tokens"))
        created = _count(counts.get("cache_creation_input_tokens"))
        if read is not None or created is not None:  # Anthropic: cache reads and writes are not in input_tokens
            prompt = (prompt or 0) + (read or 0) + (created or 0)
            cached, written = read, created
    return prompt, completion, _count(counts.get("total_tokens")), cached, written


def note(call: Any, item: Any) -> None:
    """Fold what one response, chunk or event says (usage, model) into ``call``."""
    usage = usage_of(item)
    if usage is not None:
        call.usage = merge_usage(call.usage, usage)
    model = model_of(item)
    if isinstance(model, str) and model:
        call.model = model


_SDK_OF_TYPE: dict[type, str | None] = {}


def sdk_of(obj: Any) -> str | None:
    """``"openai"`` or ``"anthropic"`` when ``obj``'s class comes from that SDK."""
    kind = type(obj)
    try:
        return _SDK_OF_TYPE[kind]
    except KeyError:
        pass
    top = (getattr(kind, "__module__", None) or "").partition(".")[0]
    name = top if top in _SDKS else None
    if len(_SDK_OF_TYPE) >= 256:
        _SDK_OF_TYPE.clear()
    _SDK_OF_TYPE[kind] = name
    return name


@functools.lru_cache(maxsize=64)
def _provider_of_url(url: str, sdk: str | None) -> str | None:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        host = None
    if not host:
        return sdk
    return _KNOWN_HOSTS.get(host, host)


_BASE_URLS: dict[int, tuple[Any, str | None]] = {}
"""id(a client's ``_base_url`` object) -> (that object, provider): both SDKs keep that URL object
until ``base_url`` is set again, so the URL is read and parsed once, not on every call."""


def provider_of_client(client: Any) -> str | None:
    """``openai`` / ``anthropic`` for a client of the provider's own API, else the host of its
    ``base_url`` (a gateway, Azure, a local server); ``None`` for an object that is no client."""
    if client is None:
        return None
    key = getattr(client, "__dict__", _NOTHING).get("_base_url")  # replaced whenever base_url is set
    if key is not None:
        known = _BASE_URLS.get(id(key))
        if known is not None and known[0] is key:
            return known[1]
    base = getattr(client, "base_url", None)
    provider = sdk_of(client) if base is None else _provider_of_url(str(base), sdk_of(client))
    if key is not None:
        if len(_BASE_URLS) >= 256:
            _BASE_URLS.clear()
        _BASE_URLS[id(key)] = (key, provider)
    return provider


def client_provider_of(fn: Any) -> str | None:
    """The provider of the client behind a bound SDK method (``client.chat.completions.create``)."""
    resource = getattr(fn, "__self__", None)
    client = getattr(resource, "_client", None)
    return provider_of_client(client) if sdk_of(client) is not None else None


def status_code_of(error: BaseException) -> int | None:
    """The HTTP status of a failed request (``APIStatusError.status_code`` in both SDKs)."""
    code = _count(getattr(error, "status_code", None))
    if code is None:
        code = _count(getattr(getattr(error, "response", None), "status_code", None))
    return code if code is not None and 400 <= code < 600 else None


def request_reader(fn: Callable[..., Any]) -> Callable[[tuple[Any, ...], dict[str, Any]], str | None]:
    """``read(args, kwargs)``: the ``model`` a call of ``fn`` asks for, by keyword or position."""
    position = None
    try:
        for index, parameter in enumerate(inspect.signature(fn).parameters.values()):
            if parameter.name == "model":
                if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
                    position = index
                break
    except (TypeError, ValueError):  # a callable without a signature: keywords only
        pass

    def read(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        model = kwargs.get("model")
        if model is None and position is not None and len(args) > position:
            model = args[position]
        return model if isinstance(model, str) else None

    return read


_PROVIDERS: Final = (("gpt", "openai"), ("o1", "openai"), ("o3", "openai"), ("o4", "openai"),
                     ("text-embedding", "openai"), ("claude", "anthropic"), ("gemini", "google"),
                     ("mistral", "mistral"), ("llama", "meta"), ("command", "cohere"))


@functools.lru_cache(maxsize=256)
def provider_of_model(model: str) -> str:
    """The provider a model name suggests, when nothing else says it."""
    lowered = model.lower()
    for prefix, provider in _PROVIDERS:
        if lowered.startswith(prefix):
            return provider
    return "unknown"


# --------------------------------------------------------------------------- the line


_NO_FIELDS: Final[dict[str, Any]] = {}
_OPAQUE: Final = frozenset({str, bytes, int, float, bool, type(None), list, tuple})
"""Results that name no model and carry no usage (a decorated function that returns the text)."""


def llm_line(monitor: Any, duration: float, result: Any, call: Any = None, *, model: str | None = None,
             provider: str | None = None, client: str | None = None,
             fields: dict[str, Any] = _NO_FIELDS) -> tuple[str, str, int | None, int | None]:
    """Write the ``llm_call`` line of one call through ``monitor.record_llm_call``; returns what it
    said (model, provider, prompt and completion tokens) for the call's span.

    ``call`` (absent on a decorator's fast path) carries what the call saw: its error, its
    stream's first-item time and merged usage, the model it asked for, its client, and what
    SDK calls made inside a decorated function reported. The model is the one the response
    names, else the one the call asked for, else ``model``; the provider is ``provider``,
    else the client's, else the SDK of the response or error, else a guess from the model.
    """
    inner = None
    if call is None:  # the hot path: a decorated call that returned
        extra = fields  # copied below only if a field is added
        if type(result) in _OPAQUE:
            usage, name = None, model
        else:
            usage = usage_of(result)
            name = model_of(result) or model
        unknown = False
    else:
        extra = dict(fields)
        usage = call.usage if call.usage is not None else usage_of(result)
        inner = call.inner
        name = call.model or model_of(result) or (inner and inner.get("model")) or call.request or model
        client = call.client or client or (inner and inner.get("client"))
        unknown = _call_fields(call, extra)
    if usage is not None:
        prompt, completion, total, cached, written = tokens(usage)
    elif inner is not None and "prompt" in inner:
        prompt, completion, total = inner["prompt"], inner.get("completion"), None
        cached, written = inner.get("cached"), inner.get("written")
    else:
        prompt = completion = total = cached = written = None
    if prompt is None and completion is None and not unknown:
        prompt = completion = 0
    if cached is not None or written:
        extra = dict(extra) if extra is fields else extra
        if cached is not None:
            extra["cached_tokens"] = cached
        if written:
            extra["cache_write_tokens"] = written
    name = str(name or "unknown")
    chosen = provider or client
    if not chosen:
        chosen = sdk_of(result) or (sdk_of(call.error) if call is not None and call.error is not None else None) \
            or provider_of_model(name)
    monitor.record_llm_call(name, chosen, duration, prompt, completion, total, call is None or call.error is None,
                            **extra)
    return name, chosen, prompt, completion


def _call_fields(call: Any, extra: dict[str, Any]) -> bool:
    """Add what the call itself saw to ``extra``; whether tokens it did not see are unknown (not 0)."""
    error = call.error
    if error is not None:
        extra["error_type"] = type(error).__name__
        status = status_code_of(error)
        if status is not None:
            extra["status_code"] = status
    if call.first is not None:
        extra["time_to_first_token"] = call.first - call.start
    if call.stream or call.first is not None:
        extra["streaming"] = True
    if call.abandoned:
        extra["abandoned"] = True
    # a stream that went by, or an SDK call that answered, without saying its usage: unknown;
    # a request that failed before any answer used no tokens
    return bool((call.stream and (error is None or call.first is not None)) or (call.sdk and error is None))


def contribute(outer: Any, call: Any) -> None:
    """Add what an SDK call made inside a decorated function learnt to the decorator's call: its
    tokens (summed over such calls), its model and its client. The decorator writes the line."""
    found = outer.inner if outer.inner is not None else {}
    usage = call.usage if call.usage is not None else usage_of(call.result)
    if usage is not None:
        prompt, completion, _total, cached, written = tokens(usage)
        for key, value in (("prompt", prompt), ("completion", completion), ("cached", cached), ("written", written)):
            if value is not None:
                found[key] = found.get(key, 0) + value
    model = call.model or model_of(call.result) or call.request
    if model:
        found["model"] = model
    if call.client:
        found["client"] = call.client
    outer.inner = found


# --------------------------------------------------------------------------- streams


class Finish:
    """Writes a call's line once, whichever comes first: the stream's end, a failure, a close,
    the end of its ``with`` block or its garbage collection (the last two mark it abandoned
    when the stream had not ended). ``helper``: a stream helper read for its final snapshot
    when no event went by where it could be seen."""

    __slots__ = ("call", "done", "helper", "write")

    def __init__(self, call: Any, write: Callable[[], None]) -> None:
        self.call = call
        self.write = write
        self.done = False
        self.helper: Any = None

    def __call__(self, abandoned: bool = False) -> None:
        if self.done:
            return
        self.done = True
        call = self.call
        snapshot = self._snapshot() if self.helper is not None else None
        if snapshot is not None:
            with contextlib.suppress(Exception):  # a snapshot that cannot be read: the line says less
                if not call.usage:
                    note(call, snapshot)
                abandoned = abandoned and not _complete(snapshot)  # the helper may have read it to its end
        if abandoned and call.error is None:
            call.abandoned = True
        self.write()

    def _snapshot(self) -> Any:
        for name in _SNAPSHOTS:
            try:
                snapshot = getattr(self.helper, name, None)
            except Exception:  # noqa: BLE001 - a helper not read yet asserts; nothing to take then
                snapshot = None
            if snapshot is not None:
                return snapshot
        return None

    def fail(self, error: BaseException) -> None:
        if not self.done:
            self.call.error = error
            self(False)


def _complete(snapshot: Any) -> bool:
    """Whether a helper's accumulated message says the model finished (a stop or finish reason)."""
    if get(snapshot, "stop_reason"):
        return True
    choices = get(snapshot, "choices") or ()
    return bool(choices) and all(get(choice, "finish_reason") for choice in choices)


def _no_context(obj: Any) -> TypeError:
    return TypeError(f"{type(obj).__name__!r} object does not support the context manager protocol")


class _Proxy(wrapt.ObjectProxy[Any]):
    """The SDK's object, with its call's recording attached."""

    def __init__(self, wrapped: Any, call: Any, finish: Finish) -> None:
        super().__init__(wrapped)
        self._self_call = call
        self._self_finish = finish

    def _self_saw(self, item: Any) -> None:
        with contextlib.suppress(Exception):  # an item that cannot be read still goes to the application
            self._self_call.saw(item)

    @property
    def close(self) -> Callable[..., Any]:
        """The object's own ``close``, which also ends the recording (abandoned if not at the end)."""
        return _closing(self.__wrapped__.close, self._self_finish)

    @property
    def aclose(self) -> Callable[..., Any]:
        return _closing(self.__wrapped__.aclose, self._self_finish)

    def __del__(self) -> None:
        finish = getattr(self, "_self_finish", None)
        if finish is not None and not finish.done:
            finish(True)


def _closing(close: Callable[..., Any], finish: Finish) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(close):
        @functools.wraps(close)
        async def aclosing(*args: Any, **kwargs: Any) -> Any:
            try:
                return await close(*args, **kwargs)
            finally:
                finish(True)

        return aclosing

    @functools.wraps(close)
    def closing(*args: Any, **kwargs: Any) -> Any:
        try:
            return close(*args, **kwargs)
        finally:
            finish(True)

    return closing


class SyncStream(_Proxy):
    """An SDK ``Stream`` (or any iterator) recorded as it is read."""

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            item = self.__wrapped__.__next__()
        except StopIteration:
            self._self_finish()
            raise
        except BaseException as exc:
            self._self_finish.fail(exc)
            raise
        self._self_saw(item)
        return item

    def __enter__(self) -> Any:
        if not hasattr(type(self.__wrapped__), "__enter__"):
            raise _no_context(self.__wrapped__)
        entered = self.__wrapped__.__enter__()
        return self if entered is self.__wrapped__ else entered

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(kind, exc, tb)
        finally:
            self._self_finish(True)


class AsyncStream(_Proxy):
    """An SDK ``AsyncStream`` (or any async iterator) recorded as it is read."""

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        try:
            item = await self.__wrapped__.__anext__()
        except StopAsyncIteration:
            self._self_finish()
            raise
        except BaseException as exc:
            self._self_finish.fail(exc)
            raise
        self._self_saw(item)
        return item

    async def __aenter__(self) -> Any:
        if not hasattr(type(self.__wrapped__), "__aenter__"):
            raise _no_context(self.__wrapped__)
        entered = await self.__wrapped__.__aenter__()
        return self if entered is self.__wrapped__ else entered

    async def __aexit__(self, kind: Any, exc: Any, tb: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(kind, exc, tb)
        finally:
            self._self_finish(True)


def _helper(helper: Any, call: Any, finish: Finish) -> Any:
    """The stream a helper's manager handed out, observed where its events go by: the SDK stream
    it reads is swapped for a recording proxy (so events count however the helper is read:
    iterated, ``text_stream``, ``get_final_message()``, ``until_done()``), and the helper itself
    is returned unchanged. A helper of unknown shape is proxied instead, and its final snapshot
    read when it is done."""
    with contextlib.suppress(Exception):  # a helper that refuses: observed from outside instead
        raw = getattr(helper, RAW_STREAM, None)
        kind = stream_kind(type(raw)) if raw is not None else NOT_STREAM
        if kind in (SYNC_ITER, ASYNC_ITER):
            setattr(helper, RAW_STREAM, (SyncStream if kind == SYNC_ITER else AsyncStream)(raw, call, finish))
            return helper
    finish.helper = helper
    kind = stream_kind(type(helper))
    if kind == SYNC_ITER:
        return SyncStream(helper, call, finish)
    if kind == ASYNC_ITER:
        return AsyncStream(helper, call, finish)
    return helper


class SyncStreamManager(_Proxy):
    """``messages.stream(...)`` / ``chat.completions.stream(...)``: the request is sent, and timed
    from, when the ``with`` block is entered; recorded when it ends."""

    _self_entered = False

    def __enter__(self) -> Any:
        call, finish = self._self_call, self._self_finish
        call.start = _clock()
        self._self_entered = True
        token = RECORDING.set(call)
        try:
            helper = self.__wrapped__.__enter__()
        except BaseException as exc:
            finish.fail(exc)
            raise
        finally:
            RECORDING.reset(token)
        return _helper(helper, call, finish)

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(kind, exc, tb)
        finally:
            self._self_finish(True)

    def __del__(self) -> None:
        if self._self_entered:  # a manager never entered sent no request: nothing to record
            super().__del__()


class AsyncStreamManager(_Proxy):
    """The ``async with`` form of ``SyncStreamManager``."""

    _self_entered = False

    async def __aenter__(self) -> Any:
        call, finish = self._self_call, self._self_finish
        call.start = _clock()
        self._self_entered = True
        token = RECORDING.set(call)
        try:
            helper = await self.__wrapped__.__aenter__()
        except BaseException as exc:
            finish.fail(exc)
            raise
        finally:
            RECORDING.reset(token)
        return _helper(helper, call, finish)

    async def __aexit__(self, kind: Any, exc: Any, tb: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(kind, exc, tb)
        finally:
            self._self_finish(True)

    def __del__(self) -> None:
        if self._self_entered:
            super().__del__()


_PROXIES: Final[dict[type, int]] = {SyncStream: SYNC_ITER, AsyncStream: ASYNC_ITER, SyncStreamManager: SYNC_MANAGER,
                   AsyncStreamManager: ASYNC_MANAGER}
_WATCHERS: Final[dict[int, type[_Proxy]]] = {kind: cls for cls, kind in _PROXIES.items()}
_KINDS: dict[type, int] = {}


def stream_kind(kind: type) -> int:
    """What a result of this type is: not a stream, an (async) iterator, or an SDK stream helper's
    (async) manager. Worked out once per type: a call site returns the same few types."""
    try:
        return _KINDS[kind]
    except KeyError:
        pass
    found = _PROXIES.get(kind)
    if found is None:
        found = NOT_STREAM
        if issubclass(kind, (str, bytes, bytearray, dict, list, tuple)):
            pass
        elif kind.__name__ in _MANAGERS and (kind.__module__ or "").partition(".")[0] in _SDKS:
            found = _MANAGERS[kind.__name__]
        elif hasattr(kind, "__anext__"):
            found = ASYNC_ITER
        elif hasattr(kind, "__next__"):
            found = SYNC_ITER
    if len(_KINDS) >= 256:  # types made on the fly: keep the table bounded
        _KINDS.clear()
    _KINDS[kind] = found
    return found


def watch(result: Any, call: Any, finish: Finish) -> Any:
    """``result`` (a stream or a stream helper's manager) as a proxy that records ``call`` with
    ``finish``; anything else unchanged."""
    kind = stream_kind(type(result))
    if kind == NOT_STREAM:
        return result
    call.stream = True
    return _WATCHERS[kind](result, call, finish)


# --------------------------------------------------------------------------- decorated generators


def stepped_iter(source: Iterator[Any], enter: Callable[[], Any], leave: Callable[[Any], None]) -> Iterator[Any]:
    """``source`` (a decorated generator) driven one step at a time with a context set around each
    step and around its closing: ``enter()`` sets it and returns what ``leave`` takes to put the
    previous one back. The context holds while the generator's own code runs, never while the
    consumer's does (a generator suspended at ``yield`` must not leak it to the loop around it)."""
    try:
        while True:
            token = enter()
            try:
                item = next(source)
            except StopIteration:
                return
            finally:
                leave(token)
            yield item
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            token = enter()
            try:
                close()
            finally:
                leave(token)


async def stepped_aiter(source: AsyncIterator[Any], enter: Callable[[], Any],
                        leave: Callable[[Any], None]) -> AsyncIterator[Any]:
    """The async form of ``stepped_iter``."""
    try:
        while True:
            token = enter()
            try:
                item = await source.__anext__()
            except StopAsyncIteration:
                return
            finally:
                leave(token)
            yield item
    finally:
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            token = enter()
            try:
                await aclose()
            finally:
                leave(token)


def scoped_iter(source: Iterator[Any], call: Any) -> Iterator[Any]:
    """``source`` (a decorated generator) run with ``call`` as the recording in progress while it
    runs, so SDK calls made inside it add to the decorator's line instead of writing their own."""
    return stepped_iter(source, lambda: RECORDING.set(call), RECORDING.reset)


def scoped_aiter(source: AsyncIterator[Any], call: Any) -> AsyncIterator[Any]:
    """The async form of ``scoped_iter``."""
    return stepped_aiter(source, lambda: RECORDING.set(call), RECORDING.reset)
