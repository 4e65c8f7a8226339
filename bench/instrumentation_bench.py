#!/usr/bin/env python3
"""What a decorator adds to an empty function (telemetry on and switched off), and what a
span costs next to an OpenTelemetry SDK span exported to a file.

Each case runs in a fresh process (so "off" really is a process started with
MONITORING_ENABLED=0): N calls of the bare function, of the wrapped one and of the floor
(below), in 20 batches each, taking turns; the fastest batch of each counts (as timeit
does: this machine is shared and noisy, and taking turns exposes all three to the same
spells). Over several rounds, the table shows the median of the cost per call and of the
overhead over the bare function measured in the same process. "On" includes writing the
line (render + one ``write``) to a rotating file.
"floor" is what rendering the same line (the case's last record, read back) with orjson and
one ``os.write`` costs in the same process — the least any logger that writes a line per
record can pay — and "x floor" the overhead in those units, which is what stays comparable
from one machine to another.

``tool call in a trace`` is ``@observe_tool_call`` called while a span is current: each call is
also a child span (a second line, in ``trace_metrics.log``); the other cases run outside any
trace, where the decorators' only extra work is one context-variable read.
``observe + response`` is ``@observe_llm_call`` on a function returning a real ``openai``
``ChatCompletion`` (model, usage and cached tokens to read, a longer line) instead of 1.
``instrument()`` is what the patched SDK method adds per call, the recording part alone:
a local class's ``create`` returning a real ``openai`` ``ChatCompletion`` (with usage),
patched by the very wrapper ``instrument("openai")`` installs (client provider, request
model, response model and tokens read, one line written), against the same method unpatched.
The SDK call itself is left out on purpose: answered in-process (an ``httpx2.MockTransport``,
no socket) it still costs 0.9-1.8 ms here and varies by more than the whole overhead from one
process to the next, so a difference of two such figures measures the machine. These two
cases need ``openai`` (``pip install -e '.[bench]'``); without it they are left out.

Spans: ``ours`` is ``Tracer.start_as_current_span`` (start, end, one JSON line written);
``otel simple`` is the OpenTelemetry SDK with a ``SimpleSpanProcessor`` and the
``ConsoleSpanExporter`` writing to a file (synchronous, like ours); ``otel batch`` uses
the ``BatchSpanProcessor`` (written later by a thread; may drop spans under load).

    python bench/instrumentation_bench.py [--n 200000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
CASES = ("observe_tool_call", "observe_llm_call", "monitor.timer", "bind + record", "observe + response",
         "instrument()", "tool call in a trace")
MODULES = {"observe_tool_call": "tool", "observe_llm_call": "llm", "monitor.timer": "task", "bind + record": "tool",
           "observe + response": "llm", "instrument()": "llm", "tool call in a trace": "tool"}
SDK_CASES = ("observe + response", "instrument()")
CHAT = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1_700_000_000, "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hello"}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17,
                  "prompt_tokens_details": {"cached_tokens": 4}}}
MESSAGES = [{"role": "user", "content": "hi"}]


def patched_local() -> tuple:
    """(bare, patched): a local ``create`` returning a real ChatCompletion, as is and behind the very
    wrapper ``instrument("openai")`` puts on ``Completions.create``."""
    import openai
    import wrapt
    from openai.types.chat import ChatCompletion

    from infrastructure.monitoring.instrumentation.decorators import _monitor_lookup
    from infrastructure.monitoring.instrumentation.sdk import _Patched, _sync_wrapper

    response = ChatCompletion.model_validate(CHAT)
    client = openai.OpenAI(api_key="bench", base_url="https://api.openai.com/v1")

    def resource() -> type:
        class Completions:
            _client = client

            def create(self, **kwargs: object) -> ChatCompletion:  # noqa: ARG002 - the SDK's signature
                return response

        return Completions

    plain, patched = resource(), resource()
    wrapt.wrap_function_wrapper(patched, "create", _sync_wrapper(_Patched(_monitor_lookup("llm"))))
    bare_obj, patched_obj = plain(), patched()
    return (lambda: bare_obj.create(model="gpt-4o", messages=MESSAGES),
            lambda: patched_obj.create(model="gpt-4o", messages=MESSAGES))


def child(case: str, n: int) -> None:
    from infrastructure.monitoring import PerformanceMonitorFactory
    from infrastructure.monitoring.instrumentation import bind, observe_llm_call, observe_tool_call

    def bare() -> int:
        return 1

    if case == "observe + response":
        from openai.types.chat import ChatCompletion

        response = ChatCompletion.model_validate(CHAT)

        def bare() -> ChatCompletion:
            return response

        fn = observe_llm_call(bare)
    elif case == "instrument()":
        bare, fn = patched_local()
    elif case == "observe_tool_call":
        fn = observe_tool_call("noop")(bare)
    elif case == "tool call in a trace":  # every call below is a child span of a request that stays open
        from infrastructure.monitoring.instrumentation import get_tracer

        fn = observe_tool_call("noop")(bare)
        get_tracer("bench").start_as_current_span("request").__enter__()
    elif case == "observe_llm_call":
        fn = observe_llm_call(model="gpt-4o")(bare)
    elif case == "monitor.timer":
        task = PerformanceMonitorFactory.get_instance().create_monitor("task")

        def fn() -> int:
            with task.timer("noop"):
                return 1
    else:
        tool = PerformanceMonitorFactory.get_instance().create_monitor("tool")
        bind(session_id="s-1", user="ada")

        def fn() -> int:
            tool.record_tool_call("noop", 0.0)
            return 1

    import orjson

    folder = os.environ["MONITORING_LOG_DIR"]
    fd = os.open(os.path.join(folder, f"floor-{os.getpid()}.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    fn()  # the floor renders the very line this case writes (an LLM line is longer than a tool line)
    written = os.path.join(folder, f"{MODULES[case]}_metrics.log")
    shape = {"timestamp": time.time(), "metric_type": "timer", "operation": "tool_call", "tool_name": "noop",
             "duration": 1.2e-6, "success": True, "module": "tool", "pid": os.getpid(), "host": "bench"}
    if os.environ["MONITORING_ENABLED"] == "1":
        with open(written, "rb") as handle:
            shape = orjson.loads(handle.read().splitlines()[-1])

    def floor() -> None:  # what any line-per-record logger must pay: render one line, one write
        os.write(fd, orjson.dumps(shape, option=orjson.OPT_APPEND_NEWLINE))

    print(json.dumps(interleaved({"bare": bare, "wrapped": fn, "floor": floor}, n)))


def interleaved(targets: dict, n: int, batches: int = 20) -> dict:
    """µs per call of each target: the fastest of ``batches`` batches, the targets' batches taking
    turns, so a slow spell of this shared machine hits all of them alike (timeit's rule — slower
    batches measure the machine, not the code — with the comparison made side by side)."""
    size = max(1, n // batches)
    best = dict.fromkeys(targets, float("inf"))
    for target in targets.values():
        for _ in range(1000):
            target()
    for _ in range(batches):
        for name, target in targets.items():
            started = time.perf_counter()
            for _ in range(size):
                target()
            best[name] = min(best[name], (time.perf_counter() - started) / size * 1e6)
    return best


SPANS = ("ours", "otel simple", "otel batch")


def span_child(case: str, n: int, folder: str) -> None:
    if case == "ours":
        from infrastructure.monitoring.instrumentation import Tracer

        tracer = Tracer(sample_rate=1.0)

        def one() -> None:
            with tracer.start_as_current_span("work", attributes={"k": 1}):
                pass
    else:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

        out = open(os.path.join(folder, f"otel-{os.getpid()}.log"), "w")  # noqa: SIM115
        exporter = ConsoleSpanExporter(out=out, formatter=lambda span: span.to_json(indent=None) + "\n")
        provider = TracerProvider()
        processor = SimpleSpanProcessor(exporter) if case == "otel simple" else BatchSpanProcessor(exporter)
        provider.add_span_processor(processor)
        otel = provider.get_tracer("bench")

        def one() -> None:
            with otel.start_as_current_span("work", attributes={"k": 1}):
                pass
    for _ in range(1000):
        one()
    started = time.perf_counter()
    for _ in range(n):
        one()
    elapsed = (time.perf_counter() - started) / n * 1e6
    print(json.dumps({"per_span": elapsed}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--span-child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    if args.span_child:
        span_child(args.span_child[0], int(args.span_child[1]), args.span_child[2])
        return
    print(f"{args.n:,} calls per run, medians of {args.rounds} rounds, fresh process each (µs per call)")
    print(f"{'case':<20}{'telemetry':>10}{'per call':>10}{'overhead':>10}{'floor':>8}{'× floor':>9}")
    try:
        import openai  # noqa: F401
        cases = CASES
    except ImportError:
        cases = tuple(c for c in CASES if c not in SDK_CASES)
    with tempfile.TemporaryDirectory() as folder:
        for case in cases:
            for mode, enabled in (("on", "1"), ("off", "0")):
                runs = []
                for _ in range(args.rounds):
                    env = {**os.environ, "MONITORING_LOG_DIR": folder, "MONITORING_ENABLED": enabled}
                    done = subprocess.run([sys.executable, __file__, "--child", case, str(args.n)], env=env,
                                          capture_output=True, text=True, check=True)
                    runs.append(json.loads(done.stdout))
                wrapped = statistics.median(r["wrapped"] for r in runs)
                overhead = statistics.median(r["wrapped"] - r["bare"] for r in runs)
                floor = statistics.median(r["floor"] for r in runs)
                ratio = statistics.median((r["wrapped"] - r["bare"]) / r["floor"] for r in runs)
                print(f"{case:<20}{mode:>10}{wrapped:>10.2f}{overhead:>10.2f}{floor:>8.2f}{ratio:>9.2f}")
        print()
        print(f"{'span':<20}{'µs/span':>10}{'vs ours':>10}")
        medians = {}
        for case in SPANS:
            runs = []
            for _ in range(args.rounds):
                env = {**os.environ, "MONITORING_LOG_DIR": folder, "MONITORING_ENABLED": "1"}
                done = subprocess.run([sys.executable, __file__, "--span-child", case, str(args.n // 4), folder],
                                      env=env, capture_output=True, text=True, check=True)
                runs.append(json.loads(done.stdout)["per_span"])
            medians[case] = statistics.median(runs)
        for case in SPANS:
            print(f"{case:<20}{medians[case]:>10.2f}{medians[case] / medians['ours']:>9.2f}x")


if __name__ == "__main__":
    main()
