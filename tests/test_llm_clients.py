"""The real OpenAI and Anthropic SDKs, against a local server that answers like their APIs.

Each test drives ``openai.OpenAI`` / ``AsyncOpenAI`` and ``anthropic.Anthropic`` /
``AsyncAnthropic`` pointed at ``FakeAPI`` (stdlib ``http.server`` on a free port of
127.0.0.1): JSON answers, server-sent-event streams shaped like each API's documented
examples, 429/500 errors and a stream that fails half-way. Records are read back from
the real ``llm_metrics.log``.
"""

from __future__ import annotations

import asyncio
import gc
import http.server
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pydantic
import pytest

from infrastructure.monitoring import PerformanceMonitorFactory
from infrastructure.monitoring.config import ConfigError, load_settings, settings_from_mapping
from infrastructure.monitoring.instrumentation import instrument, llm_clients, observe_llm_call, uninstrument
from infrastructure.monitoring.instrumentation.sdk import auto_instrument

from .conftest import read_records

# --------------------------------------------------------------------------- the fake API

OPENAI_MODEL = "gpt-4o-2024-08-06"  # what the API answers for "gpt-4o"
RESPONSES_MODEL = "gpt-4.1-2025-04-14"
CLAUDE_MODEL = "claude-sonnet-4-6-20260217"
FIRST_EVENT_DELAY = 0.02
CHAT_USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17,
              "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 0}}
RESPONSES_USAGE = {"input_tokens": 20, "input_tokens_details": {"cached_tokens": 8, "cache_write_tokens": 0},
                   "output_tokens": 6, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 26}
CLAUDE_START_USAGE = {"input_tokens": 25, "output_tokens": 1, "cache_read_input_tokens": 100,
                      "cache_creation_input_tokens": 20}


def _chat_chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": OPENAI_MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}


def _response(status: str, usage: Any, text: str = "Hi there") -> dict[str, Any]:
    output = [] if status == "in_progress" else [
        {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
         "content": [{"type": "output_text", "text": text, "annotations": []}]}]
    return {"id": "resp_1", "object": "response", "created_at": 1_700_000_000, "status": status,
            "model": RESPONSES_MODEL, "output": output, "parallel_tool_calls": True, "tool_choice": "auto",
            "tools": [], "usage": usage}


def _message(usage: dict[str, Any], text: str = "Hello!") -> dict[str, Any]:
    return {"id": "msg_01", "type": "message", "role": "assistant", "model": CLAUDE_MODEL,
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": usage}


class FakeAPI:
    """OpenAI's ``/v1/chat/completions`` and ``/v1/responses`` and Anthropic's ``/v1/messages``.

    The request's model picks the answer: ``fail-429`` / ``fail-500`` answer that error,
    ``broken`` streams two events then an error event; anything else succeeds.
    """

    def __init__(self) -> None:
        outer = self
        self.requests: list[tuple[str, dict[str, Any]]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                outer.requests.append((self.path, body))
                model = str(body.get("model", ""))
                if model.startswith("fail-"):
                    self._error(int(model[5:]))
                elif self.path == "/v1/chat/completions":
                    self._chat(body)
                elif self.path == "/v1/responses":
                    self._responses(body)
                elif self.path == "/v1/messages":
                    self._messages(body)
                else:
                    self._json(404, {"error": {"message": "no such route", "type": "invalid_request_error"}})

            # ---------------------------------------------------------------- answers

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("x-request-id", "req_123")
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int) -> None:
                if self.path == "/v1/messages":
                    kind = "rate_limit_error" if status == 429 else "api_error"
                    self._json(status, {"type": "error", "error": {"type": kind, "message": "try later"}})
                else:
                    self._json(status, {"error": {"message": "try later", "type": "requests", "code": None}})

            def _events(self, events: list[tuple[str | None, Any]]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("x-request-id", "req_123")
                self.end_headers()
                time.sleep(FIRST_EVENT_DELAY)  # the model "thinks" before its first token
                try:
                    for name, data in events:
                        head = f"event: {name}\n" if name else ""
                        text = data if isinstance(data, str) else json.dumps(data)
                        self.wfile.write(f"{head}data: {text}\n\n".encode())
                        self.wfile.flush()
                        time.sleep(0.002)
                except (BrokenPipeError, ConnectionResetError):  # the client closed its stream early
                    pass

            def _chat(self, body: dict[str, Any]) -> None:
                parsed = body.get("response_format", {}).get("type") == "json_schema"
                text = '{"city": "Paris"}' if parsed else "Hello"
                if not body.get("stream"):
                    self._json(200, {"id": "chatcmpl-1", "object": "chat.completion", "created": 1_700_000_000,
                                     "model": OPENAI_MODEL, "usage": CHAT_USAGE, "choices": [
                                         {"index": 0, "finish_reason": "stop", "logprobs": None,
                                          "message": {"role": "assistant", "content": text}}]})
                    return
                with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                extra = {"usage": None} if with_usage else {}
                events: list[tuple[str | None, Any]] = [
                    (None, _chat_chunk({"role": "assistant", "content": ""}, **extra)),
                    (None, _chat_chunk({"content": text[:3]}, **extra)),
                ]
                if body.get("model") == "broken":
                    events.append((None, {"error": {"message": "upstream overloaded", "type": "server_error"}}))
                    self._events(events)
                    return
                events += [(None, _chat_chunk({"content": text[3:]}, **extra)),
                           (None, _chat_chunk({}, "stop", **extra))]
                if with_usage:
                    events.append((None, {**_chat_chunk({}), "choices": [], "usage": CHAT_USAGE}))
                events.append((None, "[DONE]"))
                self._events(events)

            def _responses(self, body: dict[str, Any]) -> None:
                if not body.get("stream"):
                    self._json(200, _response("completed", RESPONSES_USAGE))
                    return
                item = {"type": "message", "id": "msg_1", "status": "in_progress", "role": "assistant", "content": []}
                part = {"type": "output_text", "text": "", "annotations": []}
                where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
                events = [
                    {"type": "response.created", "response": _response("in_progress", None)},
                    {"type": "response.output_item.added", "output_index": 0, "item": item},
                    {"type": "response.content_part.added", **where, "part": part},
                    {"type": "response.output_text.delta", **where, "delta": "Hi", "logprobs": []},
                    {"type": "response.output_text.delta", **where, "delta": " there", "logprobs": []},
                    {"type": "response.output_text.done", **where, "text": "Hi there", "logprobs": []},
                    {"type": "response.content_part.done", **where,
                     "part": {**part, "text": "Hi there"}},
                    {"type": "response.output_item.done", "output_index": 0,
                     "item": _response("completed", None)["output"][0]},
                    {"type": "response.completed", "response": _response("completed", RESPONSES_USAGE)},
                ]
                self._events([(e["type"], {**e, "sequence_number": n}) for n, e in enumerate(events)])

            def _messages(self, body: dict[str, Any]) -> None:
                schema = ((body.get("output_config") or {}).get("format") or {}).get("type") == "json_schema"
                text = '{"city": "Paris"}' if schema else "Hello!"
                if not body.get("stream"):
                    self._json(200, _message({**CLAUDE_START_USAGE, "output_tokens": 15}, text))
                    return
                start = {**_message(CLAUDE_START_USAGE), "content": [], "stop_reason": None}
                events: list[tuple[str | None, Any]] = [
                    ("message_start", {"type": "message_start", "message": start}),
                    ("content_block_start", {"type": "content_block_start", "index": 0,
                                             "content_block": {"type": "text", "text": ""}}),
                    ("ping", {"type": "ping"}),
                    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                             "delta": {"type": "text_delta", "text": text[:4]}}),
                ]
                if body.get("model") == "broken":
                    events.append(("error", {"type": "error",
                                             "error": {"type": "overloaded_error", "message": "Overloaded"}}))
                    self._events(events)
                    return
                events += [
                    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                             "delta": {"type": "text_delta", "text": text[4:]}}),
                    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                    ("message_delta", {"type": "message_delta",
                                       "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                       "usage": {"output_tokens": 15}}),
                    ("message_stop", {"type": "message_stop"}),
                ]
                self._events(events)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def api() -> Iterator[FakeAPI]:
    server = FakeAPI()
    yield server
    server.close()


@pytest.fixture
def oai(api: FakeAPI) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=api.url + "/v1", api_key="test", max_retries=0)
    yield client
    client.close()


@pytest.fixture
def aoai(api: FakeAPI) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=api.url + "/v1", api_key="test", max_retries=0)


@pytest.fixture
def claude(api: FakeAPI) -> Iterator[anthropic.Anthropic]:
    client = anthropic.Anthropic(base_url=api.url, api_key="test", max_retries=0)
    yield client
    client.close()


@pytest.fixture
def aclaude(api: FakeAPI) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=api.url, api_key="test", max_retries=0)


PRICES = {"pricing": {"models": {"gpt-4o": {"input": 2.5, "cached_input": 1.25, "output": 10.0},
                                 "claude-sonnet-4-6": {"input": 3.0, "cached_input": 0.3, "output": 15.0}}}}


@pytest.fixture
def llm(make_factory: Callable[..., PerformanceMonitorFactory]) -> Any:
    """The ``llm`` monitor of a factory writing into this test's log folder, with a price table."""
    return make_factory(extra=PRICES).create_monitor("llm")


@pytest.fixture
def lines(log_dir: Path) -> Callable[[], list[dict[str, Any]]]:
    def read() -> list[dict[str, Any]]:
        path = log_dir / "llm_metrics.log"
        return read_records(path) if path.exists() else []

    return read


@pytest.fixture
def patched(llm: Any) -> Iterator[Any]:
    """Both SDKs instrumented, recording through this test's monitor; put back afterwards."""
    assert instrument("openai", "anthropic", monitor=llm) == ("openai", "anthropic")
    yield llm
    uninstrument()


HI = [{"role": "user", "content": "hi"}]
LOCAL = "127.0.0.1"  # the provider of a client whose base_url is this server


def core(line: dict[str, Any]) -> tuple[Any, ...]:
    return (line["model"], line["provider"], line["prompt_tokens"], line["completion_tokens"], line["total_tokens"],
            line.get("cached_tokens"), line["success"])


def _claude_cost() -> float:
    return round(((145 - 100) * 3.0 + 100 * 0.3 + 15 * 15.0) / 1e6, 9)


# --------------------------------------------------------------------------- the decorator, OpenAI


def test_decorated_create_returns_the_sdk_objects_and_records_them(oai: openai.OpenAI, llm: Any, lines: Any) -> None:
    """A plain response, a stream read in a for loop, and the SDK's ``with create(stream=True) as s`` form."""

    @observe_llm_call(monitor=llm, user_id="u1")
    def ask(model: str, **options: Any) -> Any:
        return oai.chat.completions.create(model=model, messages=HI, **options)

    answer = ask("gpt-4o")
    assert isinstance(answer, openai.types.chat.ChatCompletion)
    assert answer.choices[0].message.content == "Hello"
    stream = ask("gpt-4o", stream=True, stream_options={"include_usage": True})
    assert isinstance(stream, openai.Stream)
    assert stream.response.status_code == 200
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Hello"
    with ask("gpt-4o", stream=True, stream_options={"include_usage": True}) as context_stream:
        assert isinstance(context_stream, openai.Stream)
        assert context_stream.response.headers["x-request-id"] is not None
        chunks = list(context_stream)
    assert chunks[-1].usage.total_tokens == 17
    plain, streamed, in_context = lines()
    assert core(plain) == (OPENAI_MODEL, "openai", 12, 5, 17, 4, True)
    assert plain["user_id"] == "u1"
    assert plain["cost"] == round(((12 - 4) * 2.5 + 4 * 1.25 + 5 * 10.0) / 1e6, 9)
    assert "streaming" not in plain
    assert "time_to_first_token" not in plain
    for line in (streamed, in_context):
        assert core(line) == (OPENAI_MODEL, "openai", 12, 5, 17, 4, True)
        assert line["streaming"] is True
        assert FIRST_EVENT_DELAY <= line["time_to_first_token"] < line["response_time"]
        assert "abandoned" not in line


def test_decorated_stream_without_include_usage_records_tokens_as_unknown(oai: openai.OpenAI, llm: Any,
                                                                        lines: Any) -> None:
    """OpenAI sends usage only with ``include_usage``: without it the tokens are null, never an invented 0."""
    ask = observe_llm_call(monitor=llm)(lambda: oai.chat.completions.create(model="gpt-4o", messages=HI,
                                                                             stream=True))
    assert len(list(ask())) == 4
    (line,) = lines()
    assert (line["model"], line["prompt_tokens"], line["completion_tokens"], line["total_tokens"]) == (
        OPENAI_MODEL, None, None, None)
    assert (line["streaming"], line["success"], line["cost_status"]) == (True, True, "unknown_tokens")
    assert "cost" not in line


def test_decorated_stream_closed_early_or_dropped_is_recorded_once_as_abandoned(oai: openai.OpenAI, llm: Any,
                                                                               lines: Any) -> None:
    """Breaking out and closing, leaving a ``with`` block early, or dropping the stream: one line each."""

    @observe_llm_call(monitor=llm)
    def ask() -> Any:
        return oai.chat.completions.create(model="gpt-4o", messages=HI, stream=True,
                                           stream_options={"include_usage": True})

    stream = ask()
    for _chunk in stream:
        break
    stream.close()
    stream.close()  # a second close is the SDK's business, not a second line
    with ask() as stream:
        next(stream)
    dropped = ask()
    next(dropped)
    del dropped
    gc.collect()
    first, second, third = lines()
    for line in (first, second, third):
        assert (line["abandoned"], line["success"], line["streaming"]) == (True, True, True)
        assert line["prompt_tokens"] is None  # usage comes last: not seen
        assert line["model"] == OPENAI_MODEL
    assert len(lines()) == 3


def test_decorated_stream_failing_half_way_records_the_error_and_reraises_it(oai: openai.OpenAI, llm: Any,
                                                                            lines: Any) -> None:
    """An error event in the middle of the stream: the SDK's exception reaches the caller unchanged."""
    ask = observe_llm_call(monitor=llm)(lambda: oai.chat.completions.create(model="broken", messages=HI,
                                                                             stream=True))
    seen = []
    with pytest.raises(openai.APIError, match="upstream overloaded") as caught:
        seen.extend(ask())
    assert type(caught.value) is openai.APIError
    assert len(seen) == 2
    (line,) = lines()
    assert (line["success"], line["error_type"], line["streaming"], line["model"]) == (
        False, "APIError", True, OPENAI_MODEL)
    assert "status_code" not in line  # the answer itself was a 200
    assert line["prompt_tokens"] is None


@pytest.mark.parametrize(("status", "error"), [(429, openai.RateLimitError), (500, openai.InternalServerError)])
def test_decorated_failure_keeps_the_model_asked_for_and_the_status(oai: openai.OpenAI, llm: Any, lines: Any,
                                                                   status: int, error: type) -> None:
    """A failed call records the ``model`` argument, the provider and the HTTP status; the SDK error is re-raised."""

    @observe_llm_call(monitor=llm)
    def ask(prompt: str, model: str = "gpt-4o") -> Any:
        return oai.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}])

    bound = observe_llm_call(oai.chat.completions.create, monitor=llm)  # the SDK method itself
    with pytest.raises(error) as first:
        ask("hi", model=f"fail-{status}")
    with pytest.raises(error) as second:
        bound(model=f"fail-{status}", messages=HI)
    assert first.value.status_code == second.value.status_code == status
    by_function, by_method = lines()
    assert (by_function["model"], by_function["provider"], by_function["status_code"], by_function["error_type"],
            by_function["success"]) == (f"fail-{status}", "openai", status, error.__name__, False)
    assert (by_function["prompt_tokens"], by_function["completion_tokens"]) == (0, 0)  # a refused request
    # a decorated SDK method knows its client: a custom base_url is the provider
    assert (by_method["model"], by_method["provider"], by_method["status_code"]) == (f"fail-{status}", LOCAL, status)


def test_decorated_chat_stream_helper_and_parse(oai: openai.OpenAI, llm: Any, lines: Any) -> None:
    """``chat.completions.stream(...)`` (iterated, or read by ``get_final_completion()``) and ``parse(...)``."""

    class City(pydantic.BaseModel):
        city: str

    @observe_llm_call(monitor=llm)
    def stream() -> Any:
        return oai.chat.completions.stream(model="gpt-4o", messages=HI, stream_options={"include_usage": True})

    parse = observe_llm_call(monitor=llm)(oai.chat.completions.parse)
    manager = stream()
    assert isinstance(manager, openai.lib.streaming.chat.ChatCompletionStreamManager)
    with manager as events:
        kinds = [event.type for event in events]
        assert events.current_completion_snapshot.choices[0].message.content == "Hello"
    assert "content.delta" in kinds
    assert events.get_final_completion().usage.total_tokens == 17
    with stream() as events:
        final = events.get_final_completion()  # read by the helper itself, not by the caller
    assert final.choices[0].message.content == "Hello"
    assert parse(model="gpt-4o", messages=HI, response_format=City).choices[0].message.parsed == City(city="Paris")
    iterated, consumed, parsed = lines()
    for line in (iterated, consumed):
        assert core(line) == (OPENAI_MODEL, "openai", 12, 5, 17, 4, True)
        assert FIRST_EVENT_DELAY <= line["time_to_first_token"] < line["response_time"]
        assert "abandoned" not in line
    assert core(parsed) == (OPENAI_MODEL, LOCAL, 12, 5, 17, 4, True)


def test_decorated_responses_api(oai: openai.OpenAI, llm: Any, lines: Any) -> None:
    """``responses.create``: usage in ``input_tokens`` / ``output_tokens`` / ``input_tokens_details``."""
    create = observe_llm_call(oai.responses.create, monitor=llm)
    assert create(model="gpt-4.1", input="hi").output_text == "Hi there"
    events = [event.type for event in create(model="gpt-4.1", input="hi", stream=True)]
    assert events[-1] == "response.completed"
    plain, streamed = lines()
    assert core(plain) == (RESPONSES_MODEL, LOCAL, 20, 6, 26, 8, True)
    assert core(streamed) == (RESPONSES_MODEL, LOCAL, 20, 6, 26, 8, True)
    assert streamed["streaming"] is True


# --------------------------------------------------------------------------- the decorator, Anthropic


def test_decorated_anthropic_message_and_stream_merge_usage_across_events(claude: anthropic.Anthropic, llm: Any,
                                                                         lines: Any) -> None:
    """Anthropic's stream: model and input/cache tokens from ``message_start``, output from ``message_delta``."""
    create = observe_llm_call(monitor=llm)(claude.messages.create)
    message = create(model="claude-sonnet-4-6", max_tokens=64, messages=HI)
    assert message.content[0].text == "Hello!"
    with create(model="claude-sonnet-4-6", max_tokens=64, messages=HI, stream=True) as stream:
        assert isinstance(stream, anthropic.Stream)
        types = [event.type for event in stream]
    assert types == ["message_start", "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_stop", "message_delta", "message_stop"]
    plain, streamed = lines()
    for line in (plain, streamed):
        # input 25 + cache reads 100 + cache writes 20: every input token, like OpenAI's prompt_tokens
        assert core(line) == (CLAUDE_MODEL, LOCAL, 145, 15, 160, 100, True)
        assert line["cache_write_tokens"] == 20
        assert line["cost"] == _claude_cost()
    assert streamed["streaming"] is True
    assert FIRST_EVENT_DELAY <= streamed["time_to_first_token"] < streamed["response_time"]


def test_decorated_anthropic_stream_helper_however_it_is_read(claude: anthropic.Anthropic, llm: Any,
                                                               lines: Any) -> None:
    """``messages.stream(...)``: iterated, through ``text_stream``, or by ``get_final_message()``: one line each."""

    @observe_llm_call(monitor=llm)
    def ask() -> Any:
        return claude.messages.stream(model="claude-sonnet-4-6", max_tokens=64, messages=HI)

    manager = ask()
    assert isinstance(manager, anthropic.lib.streaming.MessageStreamManager)
    with manager as stream:
        assert isinstance(stream, anthropic.lib.streaming.MessageStream)
        assert [event.type for event in stream][-1] == "message_stop"
        assert stream.current_message_snapshot.usage.output_tokens == 15
    assert stream.get_final_message().content[0].text == "Hello!"
    with ask() as stream:
        assert "".join(stream.text_stream) == "Hello!"
        assert stream.response.status_code == 200
    with ask() as stream:
        assert stream.get_final_text() == "Hello!"
    with ask() as stream:
        next(iter(stream))  # walks away after the first event
    assert len(lines()) == 4
    *read, left = lines()
    for line in read:
        assert core(line) == (CLAUDE_MODEL, "anthropic", 145, 15, 160, 100, True)
        assert FIRST_EVENT_DELAY <= line["time_to_first_token"] < line["response_time"]
        assert "abandoned" not in line
    assert (left["abandoned"], left["model"], left["prompt_tokens"], left["completion_tokens"]) == (
        True, CLAUDE_MODEL, 145, 1)  # what message_start said before the caller left


def test_decorated_anthropic_failures(claude: anthropic.Anthropic, llm: Any, lines: Any) -> None:
    """A 429 keeps the model and status; an error event half-way through a stream is recorded and re-raised."""
    create = observe_llm_call(monitor=llm)(claude.messages.create)
    with pytest.raises(anthropic.RateLimitError):
        create(model="fail-429", max_tokens=64, messages=HI)
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"), \
            create(model="broken", max_tokens=64, messages=HI, stream=True) as stream:
        for _event in stream:
            pass
    refused, broken = lines()
    assert (refused["model"], refused["provider"], refused["status_code"], refused["error_type"],
            refused["prompt_tokens"]) == ("fail-429", LOCAL, 429, "RateLimitError", 0)
    assert (broken["model"], broken["success"], broken["error_type"], broken["prompt_tokens"]) == (
        CLAUDE_MODEL, False, "APIStatusError", 145)
    assert "abandoned" not in broken


# --------------------------------------------------------------------------- the decorator, async


def test_decorated_async_clients(aoai: openai.AsyncOpenAI, aclaude: anthropic.AsyncAnthropic, llm: Any,
                                 lines: Any) -> None:
    """``AsyncOpenAI`` and ``AsyncAnthropic``: awaited calls, ``async for``, ``async with``, early ``aclose``."""

    @observe_llm_call(monitor=llm)
    async def chat(model: str = "gpt-4o", **options: Any) -> Any:
        return await aoai.chat.completions.create(model=model, messages=HI, **options)

    @observe_llm_call(monitor=llm)
    def helper() -> Any:
        return aclaude.messages.stream(model="claude-sonnet-4-6", max_tokens=64, messages=HI)

    messages = observe_llm_call(monitor=llm)(aclaude.messages.create)

    async def scenario() -> None:
        assert (await chat()).choices[0].message.content == "Hello"
        stream = await chat(stream=True, stream_options={"include_usage": True})
        assert isinstance(stream, openai.AsyncStream)
        assert len([chunk async for chunk in stream]) == 5
        async with await chat(stream=True) as stream:
            async for _chunk in stream:
                break
        async with helper() as events:
            assert isinstance(events, anthropic.lib.streaming.AsyncMessageStream)
            assert (await events.get_final_message()).usage.output_tokens == 15
        stream = await messages(model="claude-sonnet-4-6", max_tokens=64, messages=HI, stream=True)
        assert not hasattr(stream, "aclose")  # exactly the SDK's object: Anthropic's AsyncStream has none
        await anext(stream)
        await stream.close()
        with pytest.raises(openai.RateLimitError):
            await chat(model="fail-429")

    asyncio.run(scenario())
    plain, streamed, left, final, closed, failed = lines()
    assert core(plain) == (OPENAI_MODEL, "openai", 12, 5, 17, 4, True)
    assert core(streamed)[:5] == (OPENAI_MODEL, "openai", 12, 5, 17)
    assert FIRST_EVENT_DELAY <= streamed["time_to_first_token"] < streamed["response_time"]
    assert (left["abandoned"], left["prompt_tokens"]) == (True, None)
    assert core(final) == (CLAUDE_MODEL, "anthropic", 145, 15, 160, 100, True)
    assert final["time_to_first_token"] >= FIRST_EVENT_DELAY
    assert (closed["abandoned"], closed["model"], closed["provider"]) == (True, CLAUDE_MODEL, LOCAL)
    assert (failed["model"], failed["status_code"], failed["success"]) == ("fail-429", 429, False)


# --------------------------------------------------------------------------- instrument()


def test_instrumented_sync_clients_record_every_call_once(oai: openai.OpenAI, claude: anthropic.Anthropic,
                                                          patched: Any, lines: Any) -> None:
    """No call site changed: plain, streamed (``with`` form too), helpers, ``parse`` and the Responses API."""

    class City(pydantic.BaseModel):
        city: str

    assert oai.chat.completions.create(model="gpt-4o", messages=HI).choices[0].message.content == "Hello"
    with oai.chat.completions.create(model="gpt-4o", messages=HI, stream=True,
                                     stream_options={"include_usage": True}) as stream:
        assert isinstance(stream, openai.Stream)
        assert len(list(stream)) == 5
    with oai.chat.completions.stream(model="gpt-4o", messages=HI, stream_options={"include_usage": True}) as events:
        assert events.get_final_completion().choices[0].message.content == "Hello"  # stream() calls create(): once
    assert oai.chat.completions.parse(model="gpt-4o", messages=HI, response_format=City).choices[0].message.parsed
    assert oai.responses.create(model="gpt-4.1", input="hi").output_text == "Hi there"
    with oai.responses.stream(model="gpt-4.1", input="hi") as events:
        assert events.get_final_response().output_text == "Hi there"
    assert claude.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=HI).content[0].text == "Hello!"
    assert len(list(claude.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=HI,
                                           stream=True))) == 7
    with claude.messages.stream(model="claude-sonnet-4-6", max_tokens=64, messages=HI) as message_stream:
        assert message_stream.get_final_text() == "Hello!"
    with pytest.raises(anthropic.RateLimitError) as refused:
        claude.messages.create(model="fail-429", max_tokens=64, messages=HI)
    assert refused.value.status_code == 429
    *records, failed = lines()
    assert (failed["model"], failed["provider"], failed["status_code"], failed["error_type"], failed["success"],
            failed["prompt_tokens"]) == ("fail-429", LOCAL, 429, "RateLimitError", False, 0)
    chat = (OPENAI_MODEL, LOCAL, 12, 5, 17, 4, True)
    responses = (RESPONSES_MODEL, LOCAL, 20, 6, 26, 8, True)
    claude_line = (CLAUDE_MODEL, LOCAL, 145, 15, 160, 100, True)
    assert [core(r) for r in records] == [chat] * 4 + [responses] * 2 + [claude_line] * 3
    assert [r.get("streaming", False) for r in records] == [False, True, True, False, False, True, False, True, True]
    for line in records:
        if line.get("streaming"):
            assert FIRST_EVENT_DELAY <= line["time_to_first_token"] < line["response_time"]
        assert "abandoned" not in line
    assert records[6]["cache_write_tokens"] == 20


def test_instrumented_async_clients_and_failures(aoai: openai.AsyncOpenAI, aclaude: anthropic.AsyncAnthropic,
                                                 patched: Any, lines: Any) -> None:
    """The async clients, and failed calls: the SDK's exception, the model asked for, the status code."""

    async def scenario() -> None:
        await aoai.chat.completions.create(model="gpt-4o", messages=HI)
        stream = await aoai.chat.completions.create(model="gpt-4o", messages=HI, stream=True)
        assert isinstance(stream, openai.AsyncStream)
        assert len([chunk async for chunk in stream]) == 4
        async with aoai.chat.completions.stream(model="gpt-4o", messages=HI,
                                                stream_options={"include_usage": True}) as events:
            async for _event in events:
                pass
        async with aclaude.messages.stream(model="claude-sonnet-4-6", max_tokens=64, messages=HI) as message_stream:
            assert "".join([text async for text in message_stream.text_stream]) == "Hello!"
        async with await aclaude.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=HI,
                                                 stream=True) as raw:
            await anext(raw)  # leaves after message_start
        events_seen = [e.type async for e in await aoai.responses.create(model="gpt-4.1", input="hi", stream=True)]
        assert events_seen[-1] == "response.completed"
        with pytest.raises(openai.RateLimitError) as refused:
            await aoai.chat.completions.create(model="fail-429", messages=HI)
        assert refused.value.response.status_code == 429
        with pytest.raises(anthropic.InternalServerError):
            await aclaude.messages.create(model="fail-500", max_tokens=64, messages=HI)
        with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
            async with aclaude.messages.stream(model="broken", max_tokens=64, messages=HI) as broken:
                await broken.get_final_message()

    asyncio.run(scenario())
    plain, unknown, helper, claude_helper, left, responses, rate, server, broken = lines()
    assert core(plain) == (OPENAI_MODEL, LOCAL, 12, 5, 17, 4, True)
    assert (unknown["model"], unknown["prompt_tokens"], unknown["streaming"]) == (OPENAI_MODEL, None, True)
    assert core(helper) == (OPENAI_MODEL, LOCAL, 12, 5, 17, 4, True)
    assert core(claude_helper) == (CLAUDE_MODEL, LOCAL, 145, 15, 160, 100, True)
    assert claude_helper["time_to_first_token"] >= FIRST_EVENT_DELAY
    assert (left["abandoned"], left["model"], left["prompt_tokens"], left["completion_tokens"]) == (
        True, CLAUDE_MODEL, 145, 1)
    assert core(responses) == (RESPONSES_MODEL, LOCAL, 20, 6, 26, 8, True)
    assert (rate["model"], rate["provider"], rate["status_code"], rate["error_type"], rate["success"]) == (
        "fail-429", LOCAL, 429, "RateLimitError", False)
    assert (server["model"], server["status_code"], server["error_type"]) == ("fail-500", 500, "InternalServerError")
    assert (broken["model"], broken["success"], broken["error_type"], broken["streaming"]) == (
        CLAUDE_MODEL, False, "APIStatusError", True)


def test_a_decorated_call_is_recorded_once_by_its_decorator(oai: openai.OpenAI, aoai: openai.AsyncOpenAI,
                                                            claude: anthropic.Anthropic, patched: Any,
                                                            lines: Any) -> None:
    """Decorator and ``instrument()`` together write one line, the decorator's, completed by the SDK call."""

    @observe_llm_call(monitor=patched, feature="response")
    def ask() -> Any:
        return oai.chat.completions.create(model="gpt-4o", messages=HI)

    @observe_llm_call(monitor=patched, feature="text")
    def text() -> str:  # the text only: the tokens come from the SDK call made inside
        return oai.chat.completions.create(model="gpt-4o", messages=HI).choices[0].message.content or ""

    @observe_llm_call(monitor=patched, feature="deltas")
    async def deltas() -> Any:
        stream = await aoai.chat.completions.create(model="gpt-4o", messages=HI, stream=True,
                                                    stream_options={"include_usage": True})
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                yield chunk.choices[0].delta.content

    @observe_llm_call(monitor=patched, feature="sync deltas")
    def sync_deltas() -> Any:
        for chunk in claude.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=HI, stream=True):
            if chunk.type == "content_block_delta":
                yield chunk.delta.text

    @observe_llm_call(monitor=patched, feature="helper")
    def helper() -> Any:
        return claude.messages.stream(model="claude-sonnet-4-6", max_tokens=64, messages=HI)

    @observe_llm_call(monitor=patched, feature="twice")
    def twice() -> None:
        text_of = [oai.chat.completions.create(model="gpt-4o", messages=HI) for _ in range(2)]
        assert len(text_of) == 2

    ask()
    assert text() == "Hello"

    async def collect() -> str:
        return "".join([piece async for piece in deltas()])

    assert asyncio.run(collect()) == "Hello"
    assert "".join(sync_deltas()) == "Hello!"
    with helper() as stream:
        assert stream.get_final_message().usage.output_tokens == 15
    twice()
    records = lines()
    assert [r["feature"] for r in records] == ["response", "text", "deltas", "sync deltas", "helper", "twice"]
    response, text_line, delta_line, sync_line, helper_line, twice_line = records
    for line in (response, text_line, delta_line):  # the client's provider, the SDK call's usage
        assert core(line) == (OPENAI_MODEL, LOCAL, 12, 5, 17, 4, True)
    assert delta_line["streaming"] is True
    for line in (sync_line, helper_line):
        assert core(line) == (CLAUDE_MODEL, LOCAL, 145, 15, 160, 100, True)
    assert (twice_line["prompt_tokens"], twice_line["completion_tokens"], twice_line["total_tokens"]) == (24, 10, 34)


def test_instrument_is_idempotent_and_uninstrument_restores_the_originals(oai: openai.OpenAI, llm: Any,
                                                                          lines: Any) -> None:
    """A second ``instrument()`` wraps nothing twice; ``uninstrument`` puts back the very same functions."""
    from anthropic.resources.messages.messages import AsyncMessages, Messages
    from openai.resources.chat.completions.completions import AsyncCompletions, Completions
    from openai.resources.responses.responses import AsyncResponses, Responses

    owners = {"openai": (Completions, AsyncCompletions, Responses, AsyncResponses),
              "anthropic": (Messages, AsyncMessages)}
    originals = {(cls, name): vars(cls)[name] for group in owners.values() for cls in group
                 for name in ("create", "parse", "stream")}

    def current(name: str) -> list[Any]:
        return [vars(cls)[method] for cls in owners[name] for method in ("create", "parse", "stream")]

    try:
        assert instrument("openai", "anthropic", monitor=llm) == ("openai", "anthropic")
        first = current("openai") + current("anthropic")
        assert not any(f is originals[key] for f, key in zip(first, originals, strict=True))
        assert instrument("openai", monitor=llm) == ("openai",)
        assert current("openai") + current("anthropic") == first  # the same wrappers, not wrapped again
        oai.chat.completions.create(model="gpt-4o", messages=HI)
        assert len(lines()) == 1
        assert uninstrument("openai") == ("openai",)
        assert current("openai") == [originals[(cls, m)] for cls in owners["openai"]
                                     for m in ("create", "parse", "stream")]
        assert current("anthropic") == first[12:]  # still instrumented
        oai.chat.completions.create(model="gpt-4o", messages=HI)
        assert len(lines()) == 1
    finally:
        assert uninstrument() == ("anthropic",)
    assert all(vars(cls)[name] is fn for (cls, name), fn in originals.items())
    assert uninstrument() == ()


def test_instrument_warns_about_a_library_that_is_not_installed(monkeypatch: pytest.MonkeyPatch,
                                                                caplog: pytest.LogCaptureFixture, llm: Any) -> None:
    """A missing SDK is skipped with one warning line; a name that is no SDK known is a ``ValueError``."""
    monkeypatch.setitem(sys.modules, "anthropic", None)  # what an environment without it looks like
    with caplog.at_level(logging.WARNING, logger="infrastructure.monitoring.instrumentation.sdk"):
        try:
            assert instrument("anthropic", "openai", monitor=llm) == ("openai",)
        finally:
            uninstrument()
    assert [r.getMessage() for r in caplog.records] == [
        "instrument('anthropic'): the 'anthropic' package is not installed, nothing to instrument"]
    with pytest.raises(ValueError, match=r"^cannot instrument 'notinstalled': the SDKs known are 'anthropic', "
                                         r"'openai'$"):
        instrument("notinstalled")


def test_switched_off_monitoring_leaves_instrumented_and_decorated_calls_unrecorded(
        oai: openai.OpenAI, log_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``MONITORING_ENABLED=0``: the calls run and return the SDK's own objects; nothing is written."""
    monkeypatch.setenv("MONITORING_LOG_DIR", str(log_dir))
    monkeypatch.setenv("MONITORING_ENABLED", "0")
    PerformanceMonitorFactory.reset_instance()
    instrument("openai")  # the process-wide llm monitor
    try:
        ask = observe_llm_call(lambda: oai.chat.completions.create(model="gpt-4o", messages=HI, stream=True))
        with ask() as stream:
            assert type(stream) is openai.Stream  # not even a proxy
            assert len(list(stream)) == 4
        assert type(oai.chat.completions.create(model="gpt-4o", messages=HI)) is openai.types.chat.ChatCompletion
    finally:
        uninstrument()
    assert not log_dir.exists() or not any(log_dir.iterdir())


def test_instrumentation_auto_in_the_configuration(oai: openai.OpenAI, log_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``instrumentation.auto: [openai]`` instruments at start-up (``auto_instrument``); bad names fail loudly."""
    assert settings_from_mapping({"instrumentation": {"auto": ["openai", "openai"]}}).instrumentation.auto == (
        "openai",)
    with pytest.raises(ConfigError, match=r"^invalid value for 'instrumentation.auto' in <mapping>: 'cohere'; "
                                          r"expected a list of SDK names among 'anthropic', 'openai'$"):
        settings_from_mapping({"instrumentation": {"auto": ["openai", "cohere"]}})
    with pytest.raises(ConfigError, match=r"^invalid value for 'instrumentation.auto' in <mapping>: 'openai'"):
        settings_from_mapping({"instrumentation": {"auto": "openai"}})
    monkeypatch.setenv("MONITORING_LOG_DIR", str(log_dir))
    PerformanceMonitorFactory.reset_instance()
    config = {"instrumentation": {"auto": ["openai"]}}
    assert auto_instrument(load_settings(overrides={**config, "enabled": False}, environ={})) == ()
    try:
        assert auto_instrument(load_settings(overrides=config, environ={})) == ("openai",)
        oai.chat.completions.create(model="gpt-4o", messages=HI)
    finally:
        uninstrument()
    (line,) = read_records(log_dir / "llm_metrics.log")
    assert core(line) == (OPENAI_MODEL, LOCAL, 12, 5, 17, 4, True)
    # the same key in the YAML: the process-wide factory instruments as it starts
    path = log_dir.parent / "auto.yaml"
    path.write_text("instrumentation: {auto: [openai]}\n")
    monkeypatch.setenv("MONITORING_CONFIG", str(path))
    PerformanceMonitorFactory.reset_instance()
    try:
        PerformanceMonitorFactory.get_instance()
        oai.chat.completions.create(model="gpt-4o", messages=HI)
    finally:
        uninstrument()
    assert len(read_records(log_dir / "llm_metrics.log")) == 2


def test_a_helper_of_unknown_shape_is_read_from_its_final_snapshot(claude: anthropic.Anthropic, oai: openai.OpenAI,
                                                                   patched: Any, lines: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """When a helper keeps its SDK stream elsewhere, the helper itself is proxied and its snapshot read at the end."""
    monkeypatch.setattr(llm_clients, "RAW_STREAM", "_no_such_attribute")
    with claude.messages.stream(model="claude-sonnet-4-6", max_tokens=64, messages=HI) as stream:
        assert isinstance(stream, anthropic.lib.streaming.MessageStream)
        assert [event.type for event in stream][-1] == "message_stop"
    with oai.chat.completions.stream(model="gpt-4o", messages=HI, stream_options={"include_usage": True}) as events:
        events.until_done()
    claude_line, chat_line = lines()
    assert core(claude_line) == (CLAUDE_MODEL, LOCAL, 145, 15, 160, 100, True)
    assert claude_line["time_to_first_token"] >= FIRST_EVENT_DELAY
    assert core(chat_line) == (OPENAI_MODEL, LOCAL, 12, 5, 17, 4, True)
    assert "abandoned" not in chat_line  # read to its end by the helper itself: its snapshot says it finished
    with oai.chat.completions.stream(model="gpt-4o", messages=HI) as events:
        next(iter(events))
    assert lines()[-1]["abandoned"] is True


def test_a_returned_iterator_keeps_exactly_what_it_could_do(llm: Any, lines: Any) -> None:
    """Any iterator a decorated function returns is proxied, not replaced: no method appears or vanishes."""

    @observe_llm_call(monitor=llm, model="local")
    def numbers() -> Any:
        return iter([1, 2, 3])

    @observe_llm_call(monitor=llm, model="local")
    def generator() -> Any:
        return (n for n in range(3))

    plain = numbers()
    assert not hasattr(plain, "close")
    refused = r"^'list_iterator' object does not support the context manager protocol$"
    with pytest.raises(TypeError, match=refused), plain:
        pass
    assert list(plain) == [1, 2, 3]
    made = generator()
    assert made.send(None) == 0  # a generator's own methods still reach it
    made.close()
    first, second = lines()
    assert (first["model"], first["streaming"], first["success"]) == ("local", True, True)
    assert "abandoned" not in first
    assert second["abandoned"] is True


def test_instrument_records_with_a_class_registered_with_the_factory(oai: openai.OpenAI, log_dir: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """``instrument()`` without ``monitor=`` records with the process-wide factory's ``llm`` monitor,
    whatever class was registered for it."""
    from infrastructure.monitoring import LLMPerformanceMonitor

    seen: list[str] = []

    class AuditedLLM(LLMPerformanceMonitor):
        def record_llm_call(self, model: str, *args: Any, **kwargs: Any) -> None:
            seen.append(model)
            super().record_llm_call(model, *args, **kwargs)

    monkeypatch.setenv("MONITORING_LOG_DIR", str(log_dir))
    PerformanceMonitorFactory.reset_instance()
    PerformanceMonitorFactory.get_instance().register_monitor("llm", AuditedLLM)
    instrument("openai")
    try:
        oai.chat.completions.create(model="gpt-4o", messages=HI)
    finally:
        uninstrument()
    assert seen == [OPENAI_MODEL]
    (line,) = read_records(log_dir / "llm_metrics.log")
    assert core(line) == (OPENAI_MODEL, LOCAL, 12, 5, 17, 4, True)


def test_a_decorated_generator_closes_inside_its_recording(oai: openai.OpenAI, log_dir: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """An SDK call a decorated generator makes while it is being closed early adds to the generator's own
    line (written once the clean-up is over): one line, as for the calls it makes while it runs."""
    monkeypatch.setenv("MONITORING_LOG_DIR", str(log_dir))
    PerformanceMonitorFactory.reset_instance()

    @observe_llm_call(model="gpt-4o")
    def chat() -> Iterator[str]:
        try:
            yield "first"
            yield "second"
        finally:
            oai.chat.completions.create(model="gpt-4o", messages=HI)

    instrument("openai")
    try:
        stream = chat()
        assert next(stream) == "first"
        stream.close()
    finally:
        uninstrument()
    (line,) = read_records(log_dir / "llm_metrics.log")
    assert (line["abandoned"], line["model"], line["prompt_tokens"], line["completion_tokens"]) == (
        True, OPENAI_MODEL, 12, 5)
