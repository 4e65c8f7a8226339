"""Tracing written the OpenTelemetry way: the API's calls and shapes, decorated calls as child spans,
the console exporter, the OTLP scope and the traces command."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from opentelemetry import trace as otel_trace  # the API package only (the test extra): its enums and Link

from infrastructure.monitoring import PerformanceMonitorFactory, load_settings, settings_from_mapping
from infrastructure.monitoring.instrumentation import (
    Link,
    SpanKind,
    Status,
    StatusCode,
    get_current_span,
    get_tracer,
    observe_llm_call,
    observe_task_execution,
    observe_tool_call,
    use_span,
)
from infrastructure.monitoring.instrumentation import tracing as trace

from .conftest import read_records


@pytest.fixture
def logs(make_factory: Callable[..., PerformanceMonitorFactory]) -> Iterator[Path]:
    """The process default points at this test's folder (what ``get_tracer`` and the decorators use)."""
    factory = make_factory()
    PerformanceMonitorFactory.set_instance(factory)
    yield factory.settings.logging.log_dir
    PerformanceMonitorFactory.set_instance(None)


def spans(folder: Path) -> dict[str, dict[str, Any]]:
    path = folder / "trace_metrics.log"
    return {r["name"]: r for r in read_records(path)} if path.exists() else {}


def only(folder: Path, module: str) -> dict[str, Any]:
    (record,) = read_records(folder / f"{module}_metrics.log")
    return record


# --------------------------------------------------------------------------- the API's calls


def test_a_named_tracer_writes_its_scope_kind_and_status(logs: Path) -> None:
    """``get_tracer(__name__, "1.2.0")`` is the scope of every span it makes; kind and status come from the enums."""
    tracer = get_tracer(__name__, "1.2.0")
    assert get_tracer(__name__, "1.2.0") is tracer
    with tracer.start_as_current_span("handle", kind=SpanKind.SERVER, attributes={"route": "/ask"}) as span:
        span.set_status(StatusCode.ERROR, "why")
    with get_tracer().start_as_current_span("unnamed"):
        pass
    handle, unnamed = spans(logs)["handle"], spans(logs)["unnamed"]
    assert (handle["scope_name"], handle["scope_version"]) == (__name__, "1.2.0")
    assert (handle["kind"], handle["status"], handle["status_message"]) == ("server", "error", "why")
    assert handle["attributes"] == {"route": "/ask"}
    assert "scope_name" not in unnamed  # the old unnamed tracer writes the lines it always wrote


@pytest.mark.parametrize(("args", "expected"), [
    (("OK",), ("ok", None)),
    (("ok",), ("ok", None)),
    ((StatusCode.OK,), ("ok", None)),
    ((Status(StatusCode.OK),), ("ok", None)),
    (("error", "why"), ("error", "why")),
    ((StatusCode.ERROR, "why"), ("error", "why")),
    ((Status(StatusCode.ERROR, "why"),), ("error", "why")),
    ((otel_trace.StatusCode.ERROR, "why"), ("error", "why")),
    ((otel_trace.Status(otel_trace.StatusCode.ERROR, "why"),), ("error", "why")),
    ((otel_trace.StatusCode.OK,), ("ok", None)),
    ((StatusCode.OK, "a description goes with ERROR only"), ("ok", None)),
])
def test_every_shape_of_set_status(logs: Path, args: tuple[Any, ...], expected: tuple[str, str | None]) -> None:
    """Names in either case, our enums, our ``Status`` and OpenTelemetry's own members all mean the same."""
    with get_tracer(__name__).start_as_current_span("s") as span:
        span.set_status(*args)
    written = spans(logs)["s"]
    assert (written["status"], written.get("status_message")) == expected


def test_ok_is_final_and_unset_changes_nothing(logs: Path) -> None:
    """As in OpenTelemetry: a status set to OK stays OK; UNSET never overrides."""
    tracer = get_tracer(__name__)
    def fails_after_ok() -> None:
        with tracer.start_as_current_span("ok-then-raise") as span:
            span.set_status(StatusCode.OK)
            raise RuntimeError("after ok")

    with pytest.raises(RuntimeError):
        fails_after_ok()
    with tracer.start_as_current_span("error-then-unset") as span:
        span.set_status(StatusCode.ERROR, "kept")
        span.set_status(StatusCode.UNSET)
    found = spans(logs)
    assert found["ok-then-raise"]["status"] == "ok"
    assert (found["error-then-unset"]["status"], found["error-then-unset"]["status_message"]) == ("error", "kept")


@pytest.mark.parametrize("kind", [SpanKind.CLIENT, "CLIENT", "client", "Client"])
def test_kinds_as_enums_and_names(logs: Path, kind: Any) -> None:
    """``kind=`` takes our ``SpanKind``, its names in any case, and OpenTelemetry's member."""
    tracer = get_tracer(__name__)
    with tracer.start_as_current_span("ours", kind=kind), \
            tracer.start_as_current_span("theirs", kind=otel_trace.SpanKind.PRODUCER):
        pass
    assert (spans(logs)["ours"]["kind"], spans(logs)["theirs"]["kind"]) == ("client", "producer")


def test_bad_kinds_and_statuses_say_what_is_valid() -> None:
    """A wrong value fails at the call with the list of valid ones (and the enums mirror OpenTelemetry's values)."""
    tracer = get_tracer(__name__)
    with pytest.raises(ValueError, match=r"^span kind must be a SpanKind or one of internal, server, client, "
                                         r"producer, consumer, not 'rpc'$"):
        tracer.start_span("x", kind="rpc")
    span = tracer.start_span("x")
    with pytest.raises(ValueError, match=r"^span status must be .* not 'fine'$"):
        span.set_status("fine")
    assert {k.name: k.value for k in SpanKind} == {k.name: k.value for k in otel_trace.SpanKind}
    assert {c.name: c.value for c in StatusCode} == {c.name: c.value for c in otel_trace.StatusCode}
    with pytest.raises(TypeError, match="takes no tracer_provider"):
        get_tracer(__name__, "1.0", otel_trace.get_tracer_provider())  # type: ignore[arg-type]


def test_an_exception_leaving_the_block_is_recorded_and_goes_on(logs: Path) -> None:
    """The exception event carries OpenTelemetry's attributes; the span is ERROR; the flags turn both off."""
    tracer = get_tracer(__name__)
    with pytest.raises(ValueError, match="boom"), tracer.start_as_current_span("fails"):
        raise ValueError("boom")
    with pytest.raises(KeyError), tracer.start_as_current_span("quiet", record_exception=False,
                                                               set_status_on_exception=False):
        raise KeyError("k")
    fails, quiet = spans(logs)["fails"], spans(logs)["quiet"]
    assert (fails["status"], fails["status_message"]) == ("error", "ValueError: boom")
    (event,) = fails["events"]
    assert (event["name"], event["exception.type"], event["exception.message"]) == ("exception", "ValueError", "boom")
    assert 'raise ValueError("boom")' in event["exception.stacktrace"]
    assert (quiet["status"], "events" in quiet) == ("ok", False)


def test_record_exception_of_a_handled_error_leaves_the_status(logs: Path) -> None:
    """``span.record_exception(exc, attributes=...)`` adds the event only (OpenTelemetry's meaning)."""
    with get_tracer(__name__).start_as_current_span("retried") as span:
        try:
            raise TimeoutError("first attempt")
        except TimeoutError as exc:
            span.record_exception(exc, attributes={"attempt": 1})
    retried = spans(logs)["retried"]
    assert retried["status"] == "ok"
    assert {k: retried["events"][0][k] for k in ("exception.type", "exception.message", "attempt")} == {
        "exception.type": "TimeoutError", "exception.message": "first attempt", "attempt": 1}


def test_start_span_is_not_current_until_use_span(logs: Path) -> None:
    """``start_span`` + ``use_span`` / ``end()``: current only inside ``use_span``, written once at its end."""
    tracer = get_tracer(__name__)
    outer = tracer.start_span("outer", kind=SpanKind.CONSUMER)
    assert get_current_span() is trace.INVALID_SPAN
    assert outer.is_recording()
    with use_span(outer):
        assert get_current_span() is outer
        with tracer.start_as_current_span("inner"):
            pass
    assert not (logs / "trace_metrics.log").read_text().count('"outer"')  # not ended by use_span
    outer.end()
    outer.end()
    assert not outer.is_recording()
    with tracer.start_span("managed") as managed:  # a with block ends it without making it current
        assert get_current_span() is trace.INVALID_SPAN
        assert managed.is_recording()
    found = read_records(logs / "trace_metrics.log")
    assert [r["name"] for r in found] == ["inner", "outer", "managed"]
    assert found[0]["parent_span_id"] == found[1]["span_id"]
    assert found[1]["kind"] == "consumer"


def test_outside_any_span_the_current_span_ignores_every_call(logs: Path) -> None:
    """``get_current_span()`` never returns ``None``: code written for OpenTelemetry calls it unchecked."""
    span = get_current_span()
    span.set_attribute("a", 1)
    span.add_event("e", {"x": 1})
    span.set_status(StatusCode.ERROR)
    span.record_exception(ValueError("no"))
    span.end()
    assert (span.is_recording(), span.get_span_context().is_valid) == (False, False)
    assert not (logs / "trace_metrics.log").exists()


def test_span_context_ids_are_ints_like_opentelemetry(logs: Path) -> None:
    """``get_span_context()`` gives int ids; ``format_trace_id`` turns them back into the line's hex."""
    with get_tracer(__name__).start_as_current_span("s") as span:
        ctx = span.get_span_context()
    assert isinstance(ctx.trace_id, int)
    assert isinstance(ctx.span_id, int)
    assert (ctx.is_valid, ctx.is_remote, ctx.trace_flags.sampled) == (True, False, True)
    written = spans(logs)["s"]
    assert trace.format_trace_id(ctx.trace_id) == written["trace_id"] == span.context.trace_id
    assert format(ctx.span_id, "016x") == written["span_id"]


def test_events_links_and_renames(logs: Path) -> None:
    """``add_event(name, attributes, timestamp)``, ``update_name``, ``links=`` with our and OpenTelemetry's ``Link``."""
    tracer = get_tracer(__name__)
    with tracer.start_as_current_span("first") as first:
        pass
    theirs = otel_trace.Link(otel_trace.SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, True))
    with tracer.start_as_current_span("draft", links=[Link(first.get_span_context(), {"why": "batch"}), theirs]) as s:
        s.update_name("final")
        s.add_event("chunk", {"n": 3, "name": "clash"}, timestamp=1_700_000_000_500_000_000)
        s.add_event("legacy", attempt=2)
    final = spans(logs)["final"]
    assert final["links"] == [
        {"trace_id": first.context.trace_id, "span_id": first.context.span_id, "attributes": {"why": "batch"}},
        {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"},
    ]
    chunk, legacy = final["events"]
    assert chunk == {"name": "chunk", "timestamp": 1_700_000_000.5, "n": 3, "user_name": "clash"}
    assert (legacy["name"], legacy["attempt"]) == ("legacy", 2)


def test_start_as_current_span_decorates_functions_and_coroutines(logs: Path) -> None:
    """``@tracer.start_as_current_span("work")``: a new span per call, the coroutine timed to its end."""
    tracer = get_tracer(__name__)

    @tracer.start_as_current_span("sync-work")
    def work() -> int:
        return 1

    @tracer.start_as_current_span("async-work", kind=SpanKind.CLIENT)
    async def awork() -> int:
        await asyncio.sleep(0.02)
        return 2

    assert (work(), work(), asyncio.run(awork())) == (1, 1, 2)
    found = read_records(logs / "trace_metrics.log")
    assert [r["name"] for r in found] == ["sync-work", "sync-work", "async-work"]
    assert found[0]["trace_id"] != found[1]["trace_id"]
    assert found[2]["duration"] >= 0.02


# --------------------------------------------------------------------------- decorated calls as child spans


@observe_llm_call(model="gpt-4o")
def ask(prompt: str) -> dict[str, Any]:
    return {"model": "gpt-4o-2024-08-06", "usage": {"prompt_tokens": 12, "completion_tokens": 5}}


@observe_tool_call("read_file")
def read_file(path: str) -> str:
    raise FileNotFoundError(path)


@observe_task_execution("answer")
def answer(question: str) -> str:
    ask(question)
    with contextlib.suppress(FileNotFoundError):
        read_file("/missing")
    return "done"


def test_llm_and_tool_calls_are_child_spans_of_the_trace(logs: Path) -> None:
    """A task inside a request: its LLM and tool calls nest under it with GenAI attributes and the call's duration."""
    tracer = get_tracer(__name__)
    with tracer.start_as_current_span("handle", kind=SpanKind.SERVER) as root:
        answer("why?")
    ask("outside any trace")  # no span: the trace file holds the four spans of the request only
    found = spans(logs)
    assert len(read_records(logs / "trace_metrics.log")) == 4
    task, llm, tool = found["task_execution answer"], found["llm_call gpt-4o"], found["tool_call read_file"]
    assert task["parent_span_id"] == root.context.span_id
    assert llm["parent_span_id"] == tool["parent_span_id"] == task["span_id"]
    assert {llm["trace_id"], tool["trace_id"], task["trace_id"]} == {root.context.trace_id}
    assert (llm["kind"], tool["kind"], task["kind"]) == ("client", "client", "internal")
    assert (llm["scope_name"], tool["scope_name"]) == ("infrastructure.monitoring", "infrastructure.monitoring")
    assert llm["attributes"] == {
        "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.provider.name": "openai", "gen_ai.system": "openai",
        "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 5}
    assert tool["attributes"] == {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "read_file",
                                  "error.type": "FileNotFoundError"}
    assert (tool["status"], tool["status_message"]) == ("error", "FileNotFoundError: /missing")
    assert tool["events"][0]["exception.type"] == "FileNotFoundError"
    llm_lines = read_records(logs / "llm_metrics.log")
    inside, outside = llm_lines
    assert (inside["span_id"], inside["trace_id"]) == (llm["span_id"], llm["trace_id"])  # the line joins its span
    assert "span_id" not in outside
    assert llm["duration"] == inside["response_time"]
    tool_line, task_line = only(logs, "tool"), only(logs, "task")
    assert tool["duration"] == tool_line["duration"]
    assert task["duration"] == task_line["duration"]
    assert task_line["span_id"] == task["span_id"]


def test_a_streamed_llm_call_ends_its_span_when_the_stream_is_consumed(logs: Path) -> None:
    """The span opens with the call and ends with the stream; it is not current while the caller reads it."""
    tracer = get_tracer(__name__)

    @observe_llm_call
    def stream(model: str) -> Iterator[dict[str, Any]]:
        def chunks() -> Iterator[dict[str, Any]]:
            time.sleep(0.01)
            yield {"model": model}
            time.sleep(0.01)
            yield {"usage": {"input_tokens": 7, "output_tokens": 3}}
        return chunks()

    with tracer.start_as_current_span("chat") as root:
        reply = stream(model="claude-3-5-haiku")
        assert "llm_call claude-3-5-haiku" not in spans(logs)  # not ended by the call's return
        for _ in reply:
            with tracer.start_as_current_span("render"):  # the caller's work between chunks
                pass
        llm = spans(logs)["llm_call claude-3-5-haiku"]
    line = only(logs, "llm")
    assert llm["duration"] == line["response_time"] >= 0.02
    assert llm["parent_span_id"] == root.context.span_id
    assert spans(logs)["render"]["parent_span_id"] == root.context.span_id
    assert (llm["attributes"]["gen_ai.usage.input_tokens"], llm["attributes"]["gen_ai.usage.output_tokens"]) == (7, 3)
    assert 0 < llm["attributes"]["time_to_first_chunk"] == line["time_to_first_token"]


def test_an_async_generator_stream_closed_early_ends_its_span_abandoned(logs: Path) -> None:
    """A decorated async generator is a span until it is closed; closed early, its span says so, as its line does."""
    tracer = get_tracer(__name__)

    @observe_llm_call(model="gpt-4o-mini")
    async def tokens() -> Any:
        for n in range(5):
            yield {"usage": {"prompt_tokens": 3, "completion_tokens": n}}

    async def main() -> None:
        with tracer.start_as_current_span("chat"):
            stream = tokens()
            async for chunk in stream:
                if chunk["usage"]["completion_tokens"] == 1:
                    break
            await stream.aclose()

    asyncio.run(main())
    llm, line = spans(logs)["llm_call gpt-4o-mini"], only(logs, "llm")
    assert (llm["status"], llm["attributes"]["abandoned"], line["abandoned"]) == ("ok", True, True)
    assert llm["duration"] == line["response_time"]
    assert llm["parent_span_id"] == spans(logs)["chat"]["span_id"]


def test_async_and_generator_calls_are_spans_current_only_while_they_run(logs: Path) -> None:
    """An async tool call and a decorated generator each get a span; a span the generator opens nests under it."""
    tracer = get_tracer(__name__)

    @observe_tool_call("fetch")
    async def fetch() -> int:
        await asyncio.sleep(0.001)
        return 1

    @observe_task_execution("pages")
    def pages() -> Iterator[int]:
        for n in range(2):
            with tracer.start_as_current_span(f"page-{n}"):
                yield n

    async def main() -> None:
        with tracer.start_as_current_span("root"):
            await fetch()
            for _ in pages():
                with tracer.start_as_current_span("consume"):
                    pass

    asyncio.run(main())
    found = read_records(logs / "trace_metrics.log")
    by_name: dict[str, list[dict[str, Any]]] = {}
    for r in found:
        by_name.setdefault(r["name"], []).append(r)
    root = by_name["root"][0]
    assert by_name["tool_call fetch"][0]["parent_span_id"] == root["span_id"]
    task = by_name["task_execution pages"][0]
    assert task["parent_span_id"] == root["span_id"]
    assert [r["parent_span_id"] for r in by_name["page-0"] + by_name["page-1"]] == [task["span_id"]] * 2
    assert [r["parent_span_id"] for r in by_name["consume"]] == [root["span_id"]] * 2


HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def api() -> Iterator[Any]:
    """The local server that answers like OpenAI's and Anthropic's APIs (``test_llm_clients``)."""
    from .test_llm_clients import FakeAPI

    server = FakeAPI()
    yield server
    server.close()


def test_a_real_sdk_stream_and_an_instrumented_call_are_spans(logs: Path, api: Any) -> None:
    """OpenAI's own ``Stream`` returned by a decorated function ends its span when read to its end;
    a call patched by ``instrument()`` is a span of its own, ``client.messages.create`` included."""
    import anthropic
    import openai

    from infrastructure.monitoring.instrumentation.sdk import instrument, uninstrument

    oai = openai.OpenAI(base_url=api.url + "/v1", api_key="test", max_retries=0)
    claude = anthropic.Anthropic(base_url=api.url, api_key="test", max_retries=0)

    @observe_llm_call
    def chat(model: str) -> Any:
        return oai.chat.completions.create(model=model, messages=HI, stream=True,
                                           stream_options={"include_usage": True})

    tracer = get_tracer(__name__)
    assert instrument("anthropic") == ("anthropic",)
    try:
        with tracer.start_as_current_span("turn") as root:
            stream = chat("gpt-4o")
            assert isinstance(stream, openai.Stream)
            assert "llm_call gpt-4o" not in spans(logs)
            assert len(list(stream)) == 5
            claude.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=HI)
    finally:
        uninstrument("anthropic")
        oai.close()
        claude.close()
    found = spans(logs)
    streamed, patched = found["llm_call gpt-4o"], found["llm_call claude-sonnet-4-6"]
    openai_line, claude_line = read_records(logs / "llm_metrics.log")
    assert streamed["parent_span_id"] == patched["parent_span_id"] == root.context.span_id
    assert streamed["duration"] == openai_line["response_time"]
    assert (streamed["attributes"]["gen_ai.response.model"], streamed["attributes"]["gen_ai.usage.input_tokens"],
            streamed["attributes"]["gen_ai.usage.output_tokens"]) == ("gpt-4o-2024-08-06", 12, 5)
    assert (patched["attributes"]["gen_ai.request.model"], patched["attributes"]["gen_ai.provider.name"]) == (
        "claude-sonnet-4-6", "127.0.0.1")
    assert patched["attributes"]["gen_ai.usage.output_tokens"] == claude_line["completion_tokens"]
    assert claude_line["span_id"] == patched["span_id"]


def test_a_cancelled_call_is_no_error_span(logs: Path) -> None:
    """A decorated coroutine cancelled inside a trace: its line says ``CancelledError`` and not a success,
    its span is not an error (as ``start_as_current_span`` treats what is not an ``Exception``)."""
    tracer = get_tracer(__name__)

    @observe_tool_call("slow")
    async def slow() -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        with tracer.start_as_current_span("root"):
            running = asyncio.ensure_future(slow())
            await asyncio.sleep(0.01)
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running

    asyncio.run(main())
    line = only(logs, "tool")
    assert (line["success"], line["error_type"]) == (False, "CancelledError")
    span = spans(logs)["tool_call slow"]
    assert (span["status"], "status_message" in span, "events" in span) == ("ok", False, False)
    assert span["attributes"]["error.type"] == "CancelledError"
    assert span["parent_span_id"] == spans(logs)["root"]["span_id"]


def test_use_span_flags_decide_what_an_escaping_exception_does(logs: Path) -> None:
    """``use_span``'s own ``record_exception`` / ``set_status_on_exception`` apply to its block, over the span's."""
    tracer = get_tracer(__name__)
    quiet = tracer.start_span("quiet", record_exception=False, set_status_on_exception=False)
    with pytest.raises(ValueError, match="loud"), use_span(quiet, end_on_exit=True):
        raise ValueError("loud")
    status_only = tracer.start_span("status_only")
    with pytest.raises(ValueError, match="x"), use_span(status_only, end_on_exit=True, record_exception=False):
        raise ValueError("x")
    event_only = tracer.start_span("event_only")
    with pytest.raises(ValueError, match="y"), use_span(event_only, end_on_exit=True, set_status_on_exception=False):
        raise ValueError("y")
    found = spans(logs)
    assert (found["quiet"]["status"], found["quiet"]["events"][0]["exception.message"]) == ("error", "loud")
    assert (found["status_only"]["status"], "events" in found["status_only"]) == ("error", False)
    assert (found["event_only"]["status"], found["event_only"]["events"][0]["exception.type"]) == (
        "ok", "ValueError")


def test_no_span_under_an_unsampled_trace(logs: Path) -> None:
    """A trace that is not sampled writes no span for its calls; their lines are written as always."""
    with trace.Tracer(__name__, sample_rate=0.0).start_as_current_span("unsampled"):
        answer("q")
    assert not (logs / "trace_metrics.log").exists()
    assert only(logs, "task")["success"] is True


# --------------------------------------------------------------------------- console, OTLP, the traces command


def test_the_console_prints_records_and_the_tree_beside_the_file(
        make_factory: Callable[..., PerformanceMonitorFactory], capsys: pytest.CaptureFixture[str]) -> None:
    """``logging.console: true``: one line per record and the trace as a tree on stderr; the files are unchanged."""
    factory = make_factory(console=True)
    PerformanceMonitorFactory.set_instance(factory)
    with get_tracer(__name__, "1.2.0").start_as_current_span("handle", kind=SpanKind.SERVER) as root:
        answer("why?")
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} llm    llm_call gpt-4o-2024-08-06  openai  \S+ [µm]?s  "
                        r"tokens 12/5  ok  (\S+=\S+ )*span=[0-9a-f]{8}", lines[0])
    assert any(re.fullmatch(r"\S+ tool   tool_call read_file  \S+ [µm]?s  FAILED  error_type=FileNotFoundError "
                            r"span=[0-9a-f]{8}", line) for line in lines)
    tree_at = next(i for i, line in enumerate(lines) if line.startswith(f"trace {root.context.trace_id}  4 spans, "))
    tree = [re.sub(r"  \d[\d.,]* [µm]?s  ", "  T  ", line) for line in lines[tree_at + 1:]]
    assert tree == [
        "  handle  [server]  T  ok  (tests.test_tracing_otel 1.2.0)",
        "    task_execution answer  [internal]  T  ok  (infrastructure.monitoring " + _version() + ")",
        "      llm_call gpt-4o  [client]  T  ok",
        "      tool_call read_file  [client]  T  ERROR FileNotFoundError: /missing",
    ]
    folder = factory.settings.logging.log_dir
    assert len(read_records(folder / "trace_metrics.log")) == 4
    assert only(folder, "llm")["prompt_tokens"] == 12


def _version() -> str:
    from importlib.metadata import version  # the installed package's version, as the scope says it

    return version("llm-telemetry-logs")


def test_the_console_is_off_by_default_and_follows_the_environment(
        logs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Off: nothing on stderr. ``MONITORING_CONSOLE`` switches it, a bad value is reported and ignored."""
    with get_tracer(__name__).start_as_current_span("quiet"):
        ask("q")
    assert capsys.readouterr().err == ""
    assert load_settings(environ={"MONITORING_CONSOLE": "1"}).logging.console is True
    assert load_settings(environ={"MONITORING_CONSOLE": "off"},
                         overrides={"logging": {"console": True}}).logging.console is True
    problems: list[str] = []
    assert load_settings(environ={"MONITORING_CONSOLE": "loud"}, problems=problems).logging.console is False
    assert problems == ["ignoring environment variable MONITORING_CONSOLE='loud': " + problems[0].split(": ", 1)[1]]
    assert settings_from_mapping({"logging": {"console": True}}).logging.console is True


def test_otlp_export_carries_the_scope_and_links(logs: Path, capture_server: Any) -> None:
    """Each tracer's spans arrive under their own ``InstrumentationScope`` (name and version), links included."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from infrastructure.monitoring.exporters.otlp import OtlpShipper

    tracer = get_tracer(__name__, "1.2.0")
    with tracer.start_as_current_span("first") as first:
        pass
    with tracer.start_as_current_span("handle", kind=SpanKind.SERVER, links=[Link(first.get_span_context())]):
        ask("q")
    collector = capture_server()
    settings = settings_from_mapping({"otlp": {"endpoint": collector.url, "metrics": False}}).otlp
    result = OtlpShipper(settings, logs).ship()
    assert result is not None
    assert (result.failed, result.spans) == (None, 3)
    scopes = {}
    for path, _, body in collector.requests:
        if path == "/v1/traces":
            for rs in ExportTraceServiceRequest.FromString(body).resource_spans:
                for ss in rs.scope_spans:
                    scopes[(ss.scope.name, ss.scope.version)] = {s.name: s for s in ss.spans}
    assert set(scopes) == {(__name__, "1.2.0"), ("infrastructure.monitoring", _version())}
    handle = scopes[(__name__, "1.2.0")]["handle"]
    llm = scopes[("infrastructure.monitoring", _version())]["llm_call gpt-4o"]
    assert llm.parent_span_id == handle.span_id
    assert llm.kind == 3  # SPAN_KIND_CLIENT
    (link,) = handle.links
    assert link.span_id.hex() == first.context.span_id


def test_the_traces_command_nests_the_calls_under_their_parents(logs: Path) -> None:
    """``monitoring traces`` shows the decorated calls under the task under the request, scopes where they change."""
    from infrastructure.monitoring.cli import main

    with get_tracer(__name__, "1.2.0").start_as_current_span("handle", kind=SpanKind.SERVER):
        answer("why?")
    result = CliRunner().invoke(main, ["traces", "--log-dir", str(logs)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = [re.sub(r"  [\d.,]+ ms  ", "  T  ", line) for line in result.output.splitlines()]
    assert lines[1:] == [
        "  handle  [server]  T  ok  (tests.test_tracing_otel 1.2.0)",
        "    task_execution answer  [internal]  T  ok  (infrastructure.monitoring " + _version() + ")",
        "      llm_call gpt-4o  [client]  T  ok",
        "      tool_call read_file  [client]  T  ERROR FileNotFoundError: /missing",
    ]
