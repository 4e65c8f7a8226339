"""A few seconds of a realistic agent workload, recorded through the public API.

Used by ``monitoring demo`` so a new user sees real files appear in ``logs/``.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

from .factory import PerformanceMonitorFactory

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


@dataclass(frozen=True)
class DemoResult:
    records: int
    seconds: float


def run_demo(
    factory: PerformanceMonitorFactory, seconds: float = 3.0, *, seed: int = 7, rate: float = 400.0
) -> DemoResult:
    """Record a mixed workload for ``seconds`` at about ``rate`` records per second."""
    rng = random.Random(seed)
    llm = factory.create_monitor("llm")
    tool = factory.create_monitor("tool")
    task = factory.create_monitor("task")
    checkpoint = factory.create_monitor("checkpoint")
    system = factory.create_monitor("system")
    app_log = logging.getLogger("monitoring.demo")
    app_log.propagate = False
    handler = factory.logging_handler()
    app_log.addHandler(handler)

    records = 0
    started = time.monotonic()
    next_sample = started
    try:
        while (now := time.monotonic()) - started < seconds:
            if now >= next_sample:
                system.record_system_snapshot()
                records += 1
                next_sample = now + 1.0
            roll = rng.random()
            if roll < 0.5:
                model, provider, median, err, p_mean, c_mean = rng.choice(_MODELS)
                ok = rng.random() >= err
                prompt = int(rng.lognormvariate(0, 0.8) * p_mean) + 1
                completion = int(rng.lognormvariate(0, 0.7) * c_mean) + 1 if ok else 0
                latency = rng.lognormvariate(0, 0.55) * median
                llm.record_llm_call(
                    model=model, provider=provider, response_time=round(latency, 4), prompt_tokens=prompt,
                    completion_tokens=completion, success=ok, error_type=None if ok else rng.choice(_LLM_ERRORS),
                    time_to_first_token=round(latency * rng.uniform(0.1, 0.4), 4), streaming=rng.random() < 0.6,
                )
                if not ok:
                    app_log.warning("LLM call failed", extra={"model": model, "provider": provider})
                    records += 1
            elif roll < 0.8:
                name, median = rng.choice(_TOOLS)
                ok = rng.random() >= 0.03
                tool.record_tool_call(name, round(rng.lognormvariate(0, 0.7) * median, 5), ok,
                                      error_type=None if ok else "runtime_error")
            elif roll < 0.95:
                kind = rng.choice(_TASKS)
                if rng.random() < 0.5:
                    task.record_task_execution(kind, round(rng.lognormvariate(3.5, 1.0), 3), rng.random() >= 0.04)
                else:
                    task.record_agent_execution(kind, f"{kind}-agent-{rng.randint(1, 3)}",
                                                round(rng.lognormvariate(3.0, 1.0), 3))
            else:
                size = int(rng.lognormvariate(14.5, 1.5))
                save = rng.random() < 0.6
                duration = round(size / rng.uniform(80e6, 400e6) + rng.uniform(0.001, 0.05), 5)
                if save:
                    checkpoint.record_checkpoint_save(duration=duration, size=size, success=True)
                else:
                    checkpoint.record_checkpoint_load(duration=duration, size=size, success=True)
            records += 1
            time.sleep(rng.expovariate(rate))
    finally:
        app_log.removeHandler(handler)
    return DemoResult(records, time.monotonic() - started)
