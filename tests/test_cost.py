"""Cost from the price table, retries as attempts, and how reports show both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from infrastructure.monitoring import ConfigError, PerformanceMonitorFactory, load_settings
from infrastructure.monitoring.query import LogParser
from infrastructure.monitoring.query.reports import build_report

from .conftest import read_records

PRICES = {"version": "2026-11-test", "currency": "EUR", "models": {
    "gpt-4o": {"input": 2.5, "output": 10.0, "cached_input": 1.25},
    "gpt-4o-mini": {"input": 0.15, "output": 0.6},
    "Claude-3-5-Sonnet": {"input": 3.0, "output": 15.0, "cached_input": 0.3},
}}


@pytest.fixture
def priced(log_dir: Path) -> Iterator[PerformanceMonitorFactory]:
    from dependency_injector import providers

    from infrastructure.monitoring import MonitoringContainer

    container = MonitoringContainer()
    container.settings.override(providers.Object(load_settings(
        overrides={"logging": {"log_dir": str(log_dir)}, "pricing": PRICES}, environ={})))
    factory = PerformanceMonitorFactory(container)
    yield factory
    factory.shutdown()


def test_cost_is_computed_provided_or_said_unknown(priced: PerformanceMonitorFactory, log_dir: Path) -> None:
    llm = priced.create_monitor("llm")
    llm.record_llm_call("gpt-4o-2024-08-06", "openai", 1.0, 1_000_000, 200_000)  # longest prefix: gpt-4o
    llm.record_llm_call("gpt-4o-mini", "openai", 1.0, 10_000, 1_000, cached_tokens=4_000)  # no cached price
    llm.record_llm_call("claude-3-5-sonnet-20241022", "anthropic", 1.0, 2_000, 500, cached_tokens=1_500)
    llm.record_llm_call("gpt-4o", "openai", 1.0, 10, 10, cost=0.5)
    llm.record_llm_call("llama-3.1-70b", "together", 1.0, 10, 10)
    a, b, c, d, e = read_records(log_dir / "llm_metrics.log")
    assert (a["cost"], a["cost_status"], a["price_version"]) == (pytest.approx(2.5 + 2.0), "computed",
                                                                 "2026-11-test")
    assert b["cost"] == pytest.approx((10_000 * 0.15 + 1_000 * 0.6) / 1e6)  # cached billed as input
    assert c["cost"] == pytest.approx((500 * 3.0 + 1_500 * 0.3 + 500 * 15.0) / 1e6)
    assert (d["cost"], d["cost_status"]) == (0.5, "provided")
    assert "cost" not in e
    assert e["cost_status"] == "unknown_model"


def test_price_table_is_validated(tmp_path: Path) -> None:
    for bad, message in [
        ({"models": {"gpt-4o": {"input": 1.0}}}, r"pricing\.models\.gpt-4o\.output"),
        ({"models": {"gpt-4o": {"input": -1, "output": 1}}}, r"pricing\.models\.gpt-4o\.input.*-1"),
        ({"models": {"gpt-4o": {"input": 1, "outptu": 1}}}, r"did you mean 'output'"),
        ({"models": ["gpt-4o"]}, r"pricing\.models.*a mapping of model name"),
        ({"version": ""}, r"pricing\.version"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_settings(overrides={"pricing": bad}, environ={})


def test_retries_as_attempts_and_reports(priced: PerformanceMonitorFactory, log_dir: Path) -> None:
    llm = priced.create_monitor("llm")
    # three logical calls: one succeeds at once, one after two failures, one fails three times
    plan: list[tuple[str, list[bool]]] = [("op-1", [True]), ("op-2", [False, False, True]),
                                          ("op-3", [False, False, False])]
    for op, outcomes in plan:
        for n, ok in enumerate(outcomes, start=1):
            llm.record_llm_attempt("gpt-4o", "openai", 0.5, n, op, ok, error_type=None if ok else "rate_limit")
        llm.record_llm_call("gpt-4o", "openai", 0.5 * len(outcomes), 100, 10 if outcomes[-1] else 0,
                            success=outcomes[-1], operation_id=op, retries=len(outcomes) - 1,
                            error_type=None if outcomes[-1] else "rate_limit")
    llm.record_llm_call("mystery-model", "x", 1.0, 5, 5)
    report = build_report(LogParser(log_dir), hours=1)
    attempts = report.section("attempts")
    assert attempts is not None
    (row,) = attempts.rows
    assert (row["count"], row["errors"], row["max_attempt"]) == (7, 5, 3)
    assert row["error_rate"] == pytest.approx(5 / 7)  # per attempt
    calls = {r["model"]: r for r in report.section("llm").rows}  # type: ignore[union-attr]
    assert (calls["gpt-4o"]["count"], calls["gpt-4o"]["errors"]) == (3, 1)
    assert calls["gpt-4o"]["error_rate"] == pytest.approx(1 / 3)  # per logical call
    assert calls["gpt-4o"]["sum_cost"] == pytest.approx(3 * 100 * 2.5 / 1e6 + 2 * 10 * 10.0 / 1e6)
    assert (calls["gpt-4o"]["unpriced"], calls["mystery-model"]["unpriced"]) == (0, 1)


def test_report_command_shows_unpriced(priced: PerformanceMonitorFactory, log_dir: Path) -> None:
    import subprocess
    import sys

    priced.create_monitor("llm").record_llm_call("mystery-model", "x", 1.0, 5, 5)
    exe = Path(sys.executable).with_name("monitoring")
    out = subprocess.run([str(exe), "report", "--log-dir", str(log_dir)], capture_output=True, text=True,
                         check=True).stdout
    assert "unpriced" in out
