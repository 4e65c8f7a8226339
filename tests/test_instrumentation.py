"""Decorators, timers and bound context, on every kind of callable, written to real files."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from infrastructure.monitoring import LLMPerformanceMonitor, PerformanceMonitorFactory
from infrastructure.monitoring.instrumentation import (
    bind,
    bound_fields,
    carry,
    observe_llm_call,
    observe_task_execution,
    observe_tool_call,
    submit,
    timed,
    unbind,
)

from .conftest import read_records


@pytest.fixture
def logs(log_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The process-wide factory (what the decorators use) writing into this test's folder."""
    monkeypatch.setenv("MONITORING_LOG_DIR", str(log_dir))
    PerformanceMonitorFactory.reset_instance()
    return log_dir


def records(folder: Path, module: str) -> list[dict[str, Any]]:
    path = folder / f"{module}_metrics.log"
    return read_records(path) if path.exists() else []


class BoomError(Exception):
    pass


# --------------------------------------------------------------------------- four kinds of callables


def test_plain_function_success_and_failure(logs: Path) -> None:
    @observe_tool_call("read_file", source="disk")
    def read(path: str, fail: bool = False) -> str:
        time.sleep(0.01)
        if fail:
            raise BoomError(path)
        return "data"

    assert read("a.txt") == "data"
    error = BoomError("b.txt")
    with pytest.raises(BoomError) as caught:
        read("b.txt", fail=True)
    assert caught.value.args == error.args
    assert caught.traceback[-1].name == "read"  # re-raised unchanged, its own frame last
    ok, bad = records(logs, "tool")
    assert (ok["operation"], ok["tool_name"], ok["success"], ok["source"]) == ("tool_call", "read_file", True, "disk")
    assert ok["duration"] >= 0.01
    assert (bad["success"], bad["error_type"]) == (False, "BoomError")


def test_coroutine(logs: Path) -> None:
    @observe_task_execution("data_processing")
    async def work(n: int) -> int:
        await asyncio.sleep(0.01)
        if n < 0:
            raise ValueError("negative")
        return n * 2

    assert asyncio.run(work(21)) == 42
    with pytest.raises(ValueError, match="negative"):
        asyncio.run(work(-1))
    ok, bad = records(logs, "task")
    assert (ok["task_type"], ok["success"]) == ("data_processing", True)
    assert ok["duration"] >= 0.01
    assert (bad["success"], bad["error_type"]) == (False, "ValueError")


def test_generator_consumed_failed_and_abandoned(logs: Path) -> None:
    @timed("batches", module="task")
    def batches(n: int, fail_at: int | None = None) -> Any:
        for i in range(n):
            if i == fail_at:
                raise BoomError("bad batch")
            yield i

    assert list(batches(3)) == [0, 1, 2]
    with pytest.raises(BoomError):
        list(batches(5, fail_at=2))
    stream = batches(100)
    assert next(stream) == 0
    assert next(stream) == 1
    stream.close()  # the consumer walks away
    done, failed, abandoned = records(logs, "task")
    assert (done["operation"], done["success"]) == ("batches", True)
    assert "abandoned" not in done
    assert (failed["success"], failed["error_type"]) == (False, "BoomError")
    assert abandoned["abandoned"] is True
    assert abandoned["success"] is True
    assert abandoned["time_to_first_item"] >= 0


def test_async_generator_consumed_failed_and_abandoned(logs: Path) -> None:
    @observe_tool_call("search")
    async def results(n: int, fail_at: int | None = None) -> Any:
        for i in range(n):
            await asyncio.sleep(0)
            if i == fail_at:
                raise BoomError("down")
            yield i

    async def scenario() -> None:
        assert [x async for x in results(3)] == [0, 1, 2]
        with pytest.raises(BoomError):
            [x async for x in results(5, fail_at=1)]
        stream = results(10)
        async for x in stream:
            if x == 2:
                break
        await stream.aclose()

    asyncio.run(scenario())
    done, failed, abandoned = records(logs, "tool")
    assert done["success"] is True
    assert (failed["success"], failed["error_type"]) == (False, "BoomError")
    assert abandoned["abandoned"] is True


# --------------------------------------------------------------------------- LLM responses


def test_llm_call_reads_openai_and_anthropic_responses(logs: Path) -> None:
    @observe_llm_call
    def openai_style(prompt: str) -> Any:
        usage = SimpleNamespace(prompt_tokens=12, completion_tokens=30, total_tokens=42,
                                prompt_tokens_details=SimpleNamespace(cached_tokens=4))
        return SimpleNamespace(model="gpt-4o-2024-08-06", usage=usage, choices=[])

    @observe_llm_call(provider="anthropic-bedrock", user_id="u1")
    async def anthropic_style(prompt: str) -> dict[str, Any]:
        return {"model": "claude-3-5-sonnet", "usage": {"input_tokens": 100, "output_tokens": 7,
                                                          "cache_read_input_tokens": 50}}

    @observe_llm_call(model="my-local-model")
    def failing(prompt: str) -> Any:
        raise TimeoutError("slow")

    openai_style("hi")
    asyncio.run(anthropic_style("hi"))
    with pytest.raises(TimeoutError):
        failing("hi")
    a, b, c = records(logs, "llm")
    assert (a["model"], a["provider"], a["prompt_tokens"], a["completion_tokens"], a["total_tokens"],
            a["cached_tokens"], a["success"]) == ("gpt-4o-2024-08-06", "openai", 12, 30, 42, 4, True)
    # Anthropic's input_tokens leaves the 50 cache reads out; prompt_tokens counts them, as OpenAI's does
    assert (b["model"], b["provider"], b["prompt_tokens"], b["completion_tokens"], b["total_tokens"],
            b["cached_tokens"], b["user_id"]) == ("claude-3-5-sonnet", "anthropic-bedrock", 150, 7, 157, 50, "u1")
    assert (c["model"], c["provider"], c["success"], c["error_type"]) == ("my-local-model", "unknown", False,
                                                                          "TimeoutError")
    assert all(r["response_time"] >= 0 for r in (a, b, c))


def test_llm_streams_record_time_to_first_token_and_final_usage(logs: Path) -> None:
    def chunks() -> Any:
        time.sleep(0.02)
        yield SimpleNamespace(model="gpt-4o", usage=None, delta="Hel")
        time.sleep(0.02)
        yield SimpleNamespace(model="gpt-4o", usage=None, delta="lo")
        yield SimpleNamespace(model="gpt-4o", delta="", usage=SimpleNamespace(prompt_tokens=5, completion_tokens=2,
                                                                              total_tokens=7))

    @observe_llm_call
    def stream_client(prompt: str) -> Any:  # returns an iterator, like a streaming SDK call
        return chunks()

    @observe_llm_call(model="claude-3-haiku")
    async def async_stream(prompt: str) -> Any:
        yield {"type": "message_start", "message": {"usage": {"input_tokens": 9, "output_tokens": 1}}}
        await asyncio.sleep(0.01)
        yield {"type": "message_delta", "usage": {"input_tokens": 9, "output_tokens": 25}}

    text = "".join(c.delta for c in stream_client("hi"))
    assert text == "Hello"

    async def consume() -> list[Any]:
        return [c async for c in async_stream("hi")]

    assert len(asyncio.run(consume())) == 2
    abandoned_stream = stream_client("again")
    next(abandoned_stream)
    abandoned_stream.close()
    done, anthropic, abandoned = records(logs, "llm")
    assert (done["streaming"], done["prompt_tokens"], done["completion_tokens"], done["total_tokens"]) == (
        True, 5, 2, 7)
    assert 0.015 < done["time_to_first_token"] < done["response_time"]
    assert done["response_time"] >= 0.04
    assert (anthropic["model"], anthropic["provider"], anthropic["prompt_tokens"],
            anthropic["completion_tokens"]) == ("claude-3-haiku", "anthropic", 9, 25)
    assert abandoned["abandoned"] is True
    assert abandoned["prompt_tokens"] is None  # no usage seen before the consumer left: unknown, not 0


def test_monitor_timer_and_timed(logs: Path) -> None:
    factory = PerformanceMonitorFactory.get_instance()
    checkpoint = factory.create_monitor("checkpoint")
    with checkpoint.timer("shard_upload", shard=3) as t:
        time.sleep(0.01)
        t.set(size=2048)
    with pytest.raises(BoomError), checkpoint.timer("shard_upload", shard=4):
        raise BoomError
    llm = factory.create_monitor("llm")

    @llm.observe(model="gpt-4o-mini")
    def ask() -> dict[str, Any]:
        return {"usage": {"prompt_tokens": 1, "completion_tokens": 2}}

    @checkpoint.timed("compact")
    def compact() -> str:
        return "ok"

    ask()
    assert compact() == "ok"
    upload, failed, compacted = records(logs, "checkpoint")
    assert (upload["operation"], upload["shard"], upload["size"], upload["success"]) == ("shard_upload", 3, 2048, True)
    assert upload["duration"] >= 0.01
    assert t.duration == pytest.approx(upload["duration"])
    assert (failed["success"], failed["error_type"], failed["shard"]) == (False, "BoomError", 4)
    assert compacted["operation"] == "compact"
    (call,) = records(logs, "llm")
    assert (call["model"], call["total_tokens"]) == ("gpt-4o-mini", 3)


# --------------------------------------------------------------------------- bound context


def test_bound_fields_join_every_record_and_end_with_their_block(logs: Path) -> None:
    tool = PerformanceMonitorFactory.get_instance().create_monitor("tool")
    bind(session_id="s-1")
    with bind(step="retrieval", api_key="sk-live-abcdefghijklmnopqrstuvwxyz", operation="mine"):
        tool.record_tool_call("search", 0.1)
        assert bound_fields()["step"] == "retrieval"
    tool.record_tool_call("search", 0.2)
    unbind("session_id")
    tool.record_tool_call("search", 0.3)
    first, second, third = records(logs, "tool")
    assert (first["session_id"], first["step"], first["user_operation"]) == ("s-1", "retrieval", "mine")
    assert first["operation"] == "tool_call"  # the record's own fields always win
    assert first["api_key"] == "[REDACTED]"
    assert "sk-live" not in (logs / "tool_metrics.log").read_text()
    assert (second["session_id"], "step" in second) == ("s-1", False)
    assert "session_id" not in third


def test_threads_and_tasks_keep_their_own_bindings_and_carry_crosses_pools(logs: Path) -> None:
    tool = PerformanceMonitorFactory.get_instance().create_monitor("tool")
    barrier = threading.Barrier(4)

    def worker(user: str) -> None:
        bind(user=user)
        barrier.wait()
        for _ in range(20):
            tool.record_tool_call("t", 0.0, marker=user)

    threads = [threading.Thread(target=worker, args=(f"u{i}",)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()

    async def task(user: str) -> None:
        bind(user=user)
        await asyncio.sleep(0)
        tool.record_tool_call("t", 0.0, marker=user)

    async def main() -> None:
        await asyncio.gather(*(task(f"a{i}") for i in range(5)))

    asyncio.run(main())
    with bind(request="r-9"), ThreadPoolExecutor(2) as pool:
        submit(pool, tool.record_tool_call, "pooled", 0.0).result()
        pool.submit(carry(lambda: tool.record_tool_call("carried", 0.0))).result()
        pool.submit(tool.record_tool_call, "bare", 0.0).result()
    lines = records(logs, "tool")
    marked = [r for r in lines if "marker" in r]
    assert len(marked) == 85
    assert all(r["user"] == r["marker"] for r in marked)
    by_name = {r["tool_name"]: r for r in lines if r["tool_name"] in ("pooled", "carried", "bare")}
    assert by_name["pooled"]["request"] == "r-9"
    assert by_name["carried"]["request"] == "r-9"
    assert "request" not in by_name["bare"]  # a plain submission does not carry the context


# --------------------------------------------------------------------------- switched off


def test_switched_off_decorators_run_the_code_and_write_nothing(log_dir: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITORING_LOG_DIR", str(log_dir))
    monkeypatch.setenv("MONITORING_ENABLED", "0")
    PerformanceMonitorFactory.reset_instance()

    @observe_llm_call
    def ask() -> str:
        return "answer"

    @observe_tool_call("t")
    def gen() -> Any:
        yield 1

    assert ask() == "answer"
    assert list(gen()) == [1]
    with PerformanceMonitorFactory.get_instance().create_monitor("task").timer("x"):
        pass
    assert not log_dir.exists() or not any(log_dir.iterdir())


def test_switched_off_monitors_are_no_ops_that_keep_their_interface(log_dir: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITORING_LOG_DIR", str(log_dir))
    monkeypatch.setenv("MONITORING_ENABLED", "false")
    PerformanceMonitorFactory.reset_instance()
    factory = PerformanceMonitorFactory.get_instance()
    llm = factory.create_monitor("llm")
    assert isinstance(llm, LLMPerformanceMonitor)  # same class to the caller, methods that do nothing
    assert type(llm) is not LLMPerformanceMonitor
    assert llm.record_llm_call("m", "p", 1.0, 1, 1) is None
    factory.create_monitor("system").record_system_snapshot()  # not even a psutil sample

    def plain() -> int:
        return 7

    assert llm.observe(plain) is plain  # nothing wraps the function at all
    assert llm.observe(model="x")(plain) is plain
    assert factory.create_monitor("tool").timed("op")(plain) is plain
    with factory.create_monitor("task").timer("op") as t:
        t.set(rows=1)
    assert t.duration is None
    assert not log_dir.exists() or not any(log_dir.iterdir())


def test_timer_fields_named_like_built_in_ones_are_kept_aside_not_raised(logs: Path) -> None:
    task = PerformanceMonitorFactory.get_instance().create_monitor("task")
    with task.timer("clash", success="maybe", duration=-1, operation="x") as t:
        t.set(module="m", rows=2)
    (record,) = read_records(logs / "task_metrics.log")
    assert record["success"] is True
    assert record["duration"] >= 0
    assert (record["user_success"], record["user_duration"], record["user_operation"]) == ("maybe", -1, "x")
    assert (record["user_module"], record["rows"], record["module"]) == ("m", 2, "task")


def test_decorators_write_the_same_line_on_the_fast_path(logs: Path) -> None:
    """A decorated call that returns writes exactly what the monitor's own method writes."""
    from infrastructure.monitoring.instrumentation import observe_tool_call

    @observe_tool_call("search", index="docs", api_key="sk-" + "k" * 30)
    def search() -> int:
        return 1

    search()
    tool = PerformanceMonitorFactory.get_instance().create_monitor("tool")
    tool.record_tool_call("search", 0.5, True, index="docs", api_key="sk-" + "k" * 30)
    fast, general = read_records(logs / "tool_metrics.log")
    assert list(fast) == list(general)  # same fields, same order
    assert {k: v for k, v in fast.items() if k not in ("timestamp", "duration")} == \
        {k: v for k, v in general.items() if k not in ("timestamp", "duration")}
    assert fast["api_key"] == "[REDACTED]"


def test_llm_fast_path_survives_odd_responses_and_spots_iterator_classes(logs: Path, make_factory: Any) -> None:
    """A response whose attributes raise is still returned (the fault counted, strict mode raises);
    an instance of a hand-written iterator class is a stream, recorded when it ends."""

    class Hostile:
        @property
        def model(self) -> str:
            raise RuntimeError("lazy attribute failed")

    class Chunks:  # an iterator by class, not a generator
        def __init__(self) -> None:
            self.left = [SimpleNamespace(usage=None), SimpleNamespace(usage={"prompt_tokens": 3,
                                                                             "completion_tokens": 4})]

        def __iter__(self) -> Chunks:
            return self

        def __next__(self) -> Any:
            if not self.left:
                raise StopIteration
            time.sleep(0.01)
            return self.left.pop(0)

    hostile = Hostile()

    @observe_llm_call(model="gpt-4o")
    def odd() -> Any:
        return hostile

    @observe_llm_call(model="gpt-4o")
    def streamed() -> Any:
        return Chunks()

    assert odd() is hostile
    assert PerformanceMonitorFactory.get_instance().create_monitor("llm").logger.faults.internal_errors == 1
    assert len(list(streamed())) == 2
    (line,) = records(logs, "llm")
    assert (line["streaming"], line["prompt_tokens"], line["completion_tokens"]) == (True, 3, 4)
    assert 0 < line["time_to_first_token"] < line["response_time"]

    strict = observe_llm_call(model="gpt-4o", monitor=make_factory(strict=True).create_monitor("llm"))(
        lambda: hostile)
    with pytest.raises(RuntimeError, match="lazy attribute failed"):
        strict()


# --------------------------------------------------------------------------- one monitor per name


def test_decorators_record_with_the_monitor_the_factory_hands_out(logs: Path) -> None:
    """A class registered with the process-wide factory is what ``@observe_tool_call`` records with,
    before and after the decorator first ran, and the decorators share the factory's ``llm`` monitor."""
    from infrastructure.monitoring import ToolPerformanceMonitor
    from infrastructure.monitoring.instrumentation.decorators import monitor_of

    seen: list[tuple[str, bool]] = []

    class AuditedTool(ToolPerformanceMonitor):
        def record_tool_call(self, tool_name: str, duration: float, success: bool = True, **extra: Any) -> None:
            seen.append((tool_name, success))
            super().record_tool_call(tool_name, duration, success, **extra)

    @observe_tool_call("y")
    def use(fail: bool = False) -> int:
        if fail:
            raise BoomError
        return 1

    @observe_llm_call(model="gpt-4o")
    def ask() -> dict[str, Any]:
        return {"usage": {"prompt_tokens": 1, "completion_tokens": 1}}

    assert use() == 1  # the built-in monitor, made before any registration
    factory = PerformanceMonitorFactory.get_instance()
    factory.register_monitor("tool", AuditedTool)
    assert use() == 1
    with pytest.raises(BoomError):
        use(fail=True)
    assert seen == [("y", True), ("y", False)]
    assert monitor_of("tool") is factory.create_monitor("tool")
    assert type(factory.create_monitor("tool")) is AuditedTool
    ask()
    assert monitor_of("llm") is factory.create_monitor("llm")  # one llm monitor (one price table) per process
    assert [r["tool_name"] for r in records(logs, "tool")] == ["y", "y", "y"]


def test_a_container_override_reaches_the_decorators(logs: Path) -> None:
    """What the process-wide factory's container makes is what the decorators record with."""
    from dependency_injector import providers

    from infrastructure.monitoring import TaskPerformanceMonitor

    made: list[str] = []

    class CountingTask(TaskPerformanceMonitor):
        def record_task_execution(self, task_type: str, duration: float, success: bool = True,
                                  **extra: Any) -> None:
            made.append(task_type)
            super().record_task_execution(task_type, duration, success, **extra)

    factory = PerformanceMonitorFactory.get_instance()
    factory.container.task.override(providers.Factory(CountingTask, logger=factory.get_writer("task")))

    @observe_task_execution("answer")
    def answer() -> str:
        return "42"

    assert answer() == "42"
    assert made == ["answer"]
    assert records(logs, "task")[0]["task_type"] == "answer"


def test_unknown_names_still_raise_after_a_decorator_used_them(logs: Path) -> None:
    """``@timed(module="etl")`` records through a plain monitor; the factory still knows no ``etl`` monitor."""
    from infrastructure.monitoring import UnknownMonitorError

    @timed("load", module="etl")
    def load() -> int:
        return 1

    assert load() == 1
    assert records(logs, "etl")[0]["operation"] == "load"
    with pytest.raises(UnknownMonitorError):
        PerformanceMonitorFactory.get_instance().create_monitor("etl")


# --------------------------------------------------------------------------- the items of a generator


class Chunk:
    """An item whose ``usage`` property raises: an application object, not an LLM response."""

    @property
    def usage(self) -> Any:
        raise RuntimeError("not loaded")


def test_timed_generator_items_are_not_read(logs: Path) -> None:
    """``@timed`` over a generator passes its items through untouched: an item whose property raises
    never breaks the loop, and the call is recorded as the success it was."""

    @timed("rows")
    def rows() -> Any:
        yield Chunk()
        yield Chunk()

    @timed("arows")
    async def arows() -> Any:
        yield Chunk()

    async def drain() -> int:
        return len([item async for item in arows()])

    assert len(list(rows())) == 2
    assert asyncio.run(drain()) == 1
    first, second = records(logs, "task")
    assert (first["operation"], first["success"], "error_type" in first) == ("rows", True, False)
    assert (second["operation"], second["success"]) == ("arows", True)
    assert first["time_to_first_item"] >= 0


def test_an_llm_generator_item_that_cannot_be_read_is_passed_on(logs: Path) -> None:
    """A decorated LLM generator reads its items for usage, but one that cannot be read still goes to the loop."""

    @observe_llm_call(model="gpt-4o")
    def chunks() -> Any:
        yield Chunk()
        yield SimpleNamespace(usage={"prompt_tokens": 2, "completion_tokens": 3})

    assert len(list(chunks())) == 2
    (line,) = records(logs, "llm")
    assert (line["success"], line["prompt_tokens"], line["completion_tokens"]) == (True, 2, 3)
