"""A realistic agent workload, recorded through the public API, for ``monitoring demo``.

A new user sees real files appear in ``logs/``. With a history (``--history 6h``) the
demo first writes hours of traffic stamped in the past — a daily rhythm, traces with LLM
and tool calls inside, a profile, and a model whose errors climb in the last half hour
until an alert rule fires — so the dashboard, ``traces``, ``profiles`` and ``alerts`` all
have something to show. The past is written by the ordinary monitors; a processor in the
writer's chain (the same hook applications use) stamps each record with its simulated
time instead of now.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

from dependency_injector import providers

from .alerts.engine import AlertEvaluator
from .config import settings_from_mapping
from .factory import PerformanceMonitorFactory
from .instrumentation.profiling import profile_context
from .instrumentation.tracing import get_tracer
from .interfaces import EventDict, WrappedLogger

__all__ = ["DemoResult", "run_demo"]

_MODELS = (
    # model, provider, median latency (s), error rate, prompt mean, completion mean
    ("gpt-4o", "openai", 2.2, 0.03, 1400, 380),
    ("gpt-4o-mini", "openai", 0.9, 0.02, 900, 260),
    ("claude-3-5-sonnet-20241022", "anthropic", 2.6, 0.035, 1800, 450),
    ("claude-3-haiku-20240307", "anthropic", 0.8, 0.025, 700, 200),
    ("gemini-1.5-pro", "google", 2.0, 0.04, 1500, 400),
)
_LLM_ERRORS = ("timeout", "rate_limit", "api_error", "context_length_exceeded")
_TOOLS = (("web_search", 1.2), ("python_exec", 0.4), ("file_read", 0.01), ("sql_query", 0.08), ("http_get", 0.5))
_TASKS = ("research", "coding", "summarize", "data_analysis")
_HISTORY_RATE = 1500.0
"""Records per hour of simulated history at the day's peak."""
_INCIDENT = 1800.0
"""For the last half hour of the history, one model fails far more often (the alert's cause)."""
_DEMO_RULE = {"name": "model_error_rate", "module": "llm", "operation": "llm_call", "expr": "error_rate > 0.2",
              "group_by": ["model"], "window": "15m", "for": "0s", "severity": "critical", "min_count": 5,
              "description": "More than 20% of a model's calls failed in the last 15 minutes."}


@dataclass(frozen=True)
class DemoResult:
    records: int
    seconds: float


@dataclass
class _SimulatedClock:
    """A processor: records made while ``at`` is set carry that time (and spans their simulated length)."""

    at: float | None = None
    span_seconds: dict[str, float] = field(default_factory=dict)

    def __call__(self, _logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
        if self.at is None:
            return event
        event["timestamp"] = self.at
        seconds = self.span_seconds.pop(str(event.get("span_id")), None)
        if seconds is not None:
            event["duration"] = seconds
            event["start_time"] = self.at - seconds
        return event


class _Workload:
    """One event of a realistic mix at a time, through the factory's monitors."""

    def __init__(self, factory: PerformanceMonitorFactory, rng: random.Random) -> None:
        self.rng = rng
        self.llm = factory.create_monitor("llm")
        self.tool = factory.create_monitor("tool")
        self.task = factory.create_monitor("task")
        self.checkpoint = factory.create_monitor("checkpoint")
        self.app_log = logging.getLogger("monitoring.demo")
        self.app_log.propagate = False
        self.records = 0

    def llm_call(self, *, failing: str | None = None) -> tuple[str, float]:
        rng = self.rng
        model, provider, median, err, p_mean, c_mean = rng.choice(_MODELS)
        ok = rng.random() >= (0.4 if model == failing else err)
        prompt = int(rng.lognormvariate(0, 0.8) * p_mean) + 1
        completion = int(rng.lognormvariate(0, 0.7) * c_mean) + 1 if ok else 0
        latency = rng.lognormvariate(0, 0.55) * median
        self.llm.record_llm_call(
            model=model, provider=provider, response_time=round(latency, 4), prompt_tokens=prompt,
            completion_tokens=completion, success=ok, error_type=None if ok else rng.choice(_LLM_ERRORS),
            time_to_first_token=round(latency * rng.uniform(0.1, 0.4), 4), streaming=rng.random() < 0.6,
        )
        self.records += 1
        if not ok:
            self.app_log.warning("LLM call failed", extra={"model": model, "provider": provider})
            self.records += 1
        return model, latency

    def tool_call(self) -> tuple[str, float]:
        name, median = self.rng.choice(_TOOLS)
        ok = self.rng.random() >= 0.03
        duration = round(self.rng.lognormvariate(0, 0.7) * median, 5)
        self.tool.record_tool_call(name, duration, ok, error_type=None if ok else "runtime_error")
        self.records += 1
        return name, duration

    def one(self, *, failing: str | None = None) -> None:
        rng = self.rng
        roll = rng.random()
        if roll < 0.5:
            self.llm_call(failing=failing)
        elif roll < 0.8:
            self.tool_call()
        elif roll < 0.95:
            kind = rng.choice(_TASKS)
            if rng.random() < 0.5:
                self.task.record_task_execution(kind, round(rng.lognormvariate(3.5, 1.0), 3), rng.random() >= 0.04)
            else:
                self.task.record_agent_execution(kind, f"{kind}-agent-{rng.randint(1, 3)}",
                                                 round(rng.lognormvariate(3.0, 1.0), 3))
            self.records += 1
        else:
            size = int(rng.lognormvariate(14.5, 1.5))
            duration = round(size / rng.uniform(80e6, 400e6) + rng.uniform(0.001, 0.05), 5)
            if rng.random() < 0.6:
                self.checkpoint.record_checkpoint_save(duration=duration, size=size, success=True)
            else:
                self.checkpoint.record_checkpoint_load(duration=duration, size=size, success=True)
            self.records += 1


def run_demo(
    factory: PerformanceMonitorFactory, seconds: float = 3.0, *, seed: int = 7, rate: float = 400.0,
    history: float | None = None,
) -> DemoResult:
    """Record a mixed workload for ``seconds`` at about ``rate`` records per second, after
    ``history`` seconds of simulated past when given."""
    started = time.monotonic()
    rng = random.Random(seed)
    clock = _SimulatedClock()
    if history:
        factory.container.processors.override(providers.List(providers.Object(clock)))
    previous = PerformanceMonitorFactory.set_instance(factory)  # the tracer and the profiler write through it
    workload = _Workload(factory, rng)
    handler = factory.logging_handler()
    workload.app_log.addHandler(handler)
    try:
        if history:
            _history(factory, workload, clock, history)
        _live(factory, workload, seconds, rate)
    finally:
        workload.app_log.removeHandler(handler)
        PerformanceMonitorFactory.set_instance(previous)
    return DemoResult(workload.records, time.monotonic() - started)


def _live(factory: PerformanceMonitorFactory, workload: _Workload, seconds: float, rate: float) -> None:
    system = factory.create_monitor("system")
    started = time.monotonic()
    next_sample = started
    while (now := time.monotonic()) - started < seconds:
        if now >= next_sample:
            system.record_system_snapshot()
            workload.records += 1
            next_sample = now + 1.0
        workload.one()
        time.sleep(workload.rng.expovariate(rate))


def _history(factory: PerformanceMonitorFactory, workload: _Workload, clock: _SimulatedClock, span: float) -> None:
    rng = workload.rng
    end = time.time()
    at = end - span
    system = factory.create_monitor("system")
    tracer = get_tracer()
    next_sample = next_trace = at
    failing = _MODELS[4][0]
    profiled = False
    while at < end:
        clock.at = at
        if at >= next_sample:
            system.record_gauge("queue_depth", max(0, int(40 + 30 * math.sin(at / 3600) + rng.gauss(0, 5))))
            workload.records += 1
            next_sample = at + 60.0
        if at >= next_trace:
            _trace(tracer, workload, clock)
            next_trace = at + rng.expovariate(1 / 300.0)
        if not profiled and at >= end - span / 2:
            with profile_context("rank_documents", kind="function"):
                sorted(rng.random() for _ in range(20_000))
            workload.records += 1
            profiled = True
        workload.one(failing=failing if end - at < _INCIDENT else None)
        daily = 0.55 + 0.45 * math.sin(2 * math.pi * (at % 86_400) / 86_400)  # a daily rhythm
        at += rng.expovariate(_HISTORY_RATE * daily / 3600.0)
    clock.at = None
    _raise_alert(factory, end)


def _trace(tracer: Any, workload: _Workload, clock: _SimulatedClock) -> None:
    """A request: one LLM call, one or two tool calls, a second LLM call, as a span tree."""
    with tracer.start_as_current_span("handle_request", kind="server") as root:
        total = 0.0
        for step in ("plan", "tool", "tool", "answer"):
            if step == "tool" and workload.rng.random() < 0.5:
                continue
            with tracer.start_as_current_span(step, kind="client") as child:
                name, seconds = workload.tool_call() if step == "tool" else workload.llm_call()
                child.set_attribute("target", name)
                clock.span_seconds[child.context.span_id] = seconds
                total += seconds
        clock.span_seconds[root.context.span_id] = total + 0.05


def _raise_alert(factory: PerformanceMonitorFactory, now: float) -> None:
    """Evaluate the demo's rule over what was just written: the failing model's alert fires."""
    rules = settings_from_mapping({"alerts": {"rules": [_DEMO_RULE]}}, source="the demo").alerts
    AlertEvaluator(rules, factory.settings.logging.log_dir, writer=factory.get_writer("alerts"),
                   clock=lambda: now).evaluate()
