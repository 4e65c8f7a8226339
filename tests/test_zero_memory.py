"""Nothing accumulates per record: memory stays flat however many records are written."""

from __future__ import annotations

from pathlib import Path

from .conftest import run_python

RSS_SCENARIO = """
import gc, os, sys, psutil
from infrastructure.monitoring import FileSink, MetricsLogger, LLMPerformanceMonitor, Redactor
log_dir = sys.argv[1] if len(sys.argv) > 1 else {log_dir!r}
writer = MetricsLogger("llm", FileSink(log_dir + "/llm_metrics.log", max_bytes=4_000_000, backup_count=2),
                       redactor=Redactor())
llm = LLMPerformanceMonitor(writer)
proc = psutil.Process()
def burst(n):
    for i in range(n):
        llm.record_llm_call(model="gpt-4o", provider="openai", response_time=1.0 + i % 7, prompt_tokens=i % 900,
                            completion_tokens=i % 300, success=i % 50 != 0, user_id="user-%d" % i,
                            error_type=None if i % 50 else "timeout-%d" % i)
burst(20_000)  # warm up caches, allocator pools and rotation
gc.collect()
before = proc.memory_info().rss
burst({count})
gc.collect()
growth = proc.memory_info().rss - before
print(growth)
"""


def test_rss_does_not_grow_with_records(tmp_path: Path) -> None:
    """300,000 LLM records with unique user ids and error strings grow RSS by under 2 MiB."""
    result = run_python(RSS_SCENARIO.format(log_dir=str(tmp_path), count=300_000), timeout=300)
    assert result.returncode == 0, result.stderr
    growth = int(result.stdout.strip())
    assert growth < 2 * 1024 * 1024, f"RSS grew by {growth} bytes"
