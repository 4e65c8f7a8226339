"""SLO arithmetic against hand-computed values, and anomaly flags in reports."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from infrastructure.monitoring import ConfigError, settings_from_mapping
from infrastructure.monitoring.alerts.slo import evaluate_slos
from infrastructure.monitoring.query import LogParser
from infrastructure.monitoring.query.anomaly import DEFAULT_SERIES, Series, detect_anomalies
from infrastructure.monitoring.query.reports import build_report

from .conftest import append_records

NOW = 1_800_000_000.0  # a multiple of 3600: windows align on it


def llm(ts: float, *, ok: bool = True, rt: float = 0.5, model: str = "gpt-4o") -> dict[str, Any]:
    return {"timestamp": ts, "module": "llm", "operation": "llm_call", "model": model, "provider": "openai",
            "response_time": rt, "success": ok, "total_tokens": 100}


SLOS = [
    {"name": "availability", "module": "llm", "operation": "llm_call", "objective": "availability",
     "target": 0.99, "period": "7d"},
    {"name": "latency", "module": "llm", "operation": "llm_call", "objective": "latency", "target": 0.9,
     "threshold": 2.0, "period": "7d"},
    {"name": "errors", "module": "llm", "objective": "error_rate", "target": 0.05, "period": "1d"},
    {"name": "empty", "module": "tool", "objective": "availability", "target": 0.999},
]


def test_slo_figures_match_hand_computed_values(log_dir: Path) -> None:
    records = []
    # 1000 calls over the last 6 days: 6 failures; 50 slower than 2 s; 2 records without response_time
    for i in range(1000):
        ts = NOW - 6 * 86400 + i * 500
        records.append(llm(ts, ok=i % 167 != 1, rt=3.0 if i % 20 == 0 else 1.0))
    records += [{"timestamp": NOW - 10, "module": "llm", "operation": "llm_call", "success": True}] * 2
    records += [llm(NOW - 8 * 86400, ok=False)] * 30  # outside every period
    append_records(log_dir / "llm_metrics.log", records)
    rows = {s.name: s for s in evaluate_slos(LogParser(log_dir), settings_from_mapping({"slos": SLOS}).slos,
                                              now=NOW)}

    avail = rows["availability"]
    failures = sum(1 for i in range(1000) if i % 167 == 1)
    assert (avail.events, avail.bad) == (1002, failures)
    assert avail.measured == pytest.approx(1 - failures / 1002)
    assert avail.budget_left == pytest.approx(1 - (failures / 1002) / 0.01)
    assert avail.status == "met"

    lat = rows["latency"]
    assert (lat.events, lat.bad) == (1000, 50)  # the two records without the field are not latency events
    assert lat.measured == pytest.approx(0.95)
    assert lat.budget_left == pytest.approx(1 - 0.05 / 0.1)
    assert lat.percentile == pytest.approx(1.0)  # p90 of 950 x 1.0 s and 50 x 3.0 s
    assert lat.status == "met"

    err = rows["errors"]  # the last day: calls from NOW-86400 on
    day = [i for i in range(1000) if NOW - 6 * 86400 + i * 500 >= NOW - 86400]
    bad = sum(1 for i in day if i % 167 == 1)
    assert (err.events, err.bad) == (len(day) + 2, bad)
    assert err.measured == pytest.approx(bad / (len(day) + 2))
    assert err.budget_left == pytest.approx(1 - err.measured / 0.05)

    assert rows["empty"].status == "no data"
    assert rows["empty"].budget_left is None


def test_a_breached_slo_has_negative_budget_and_a_burn_rate(log_dir: Path) -> None:
    calls = [llm(NOW - 7200 + i * 10, ok=i % 10 != 0) for i in range(720)]  # 10 % failures, last 2 hours
    append_records(log_dir / "llm_metrics.log", calls)
    status = evaluate_slos(LogParser(log_dir), settings_from_mapping({"slos": SLOS[:1]}).slos, now=NOW)[0]
    assert status.status == "breached"
    assert status.budget_left == pytest.approx(1 - 0.1 / 0.01)
    assert status.burn_rate == pytest.approx(10.0)


@pytest.mark.parametrize(("slo", "key"), [
    ({"name": "x", "module": "llm", "objective": "latency", "target": 0.9}, "slos[0].threshold"),
    ({"name": "x", "module": "llm", "objective": "uptime", "target": 0.9}, "slos[0].objective"),
    ({"name": "x", "module": "llm", "objective": "availability", "target": 1.0}, "slos[0].target"),
    ({"name": "x", "module": "llm", "objective": "availability"}, "slos[0].target"),
])
def test_bad_slos_are_config_errors(slo: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_mapping({"slos": [slo]})
    assert info.value.key == key


def _hourly(log_dir: Path, per_hour: list[int], *, error_hours: set[int] = frozenset()) -> None:  # type: ignore[assignment]
    records = []
    hours = len(per_hour)
    for h, n in enumerate(per_hour):
        start = NOW - (hours - h) * 3600
        records += [llm(start + (i + 0.5) * 3600 / n, ok=not (h in error_hours and i % 2)) for i in range(n)]
    append_records(log_dir / "llm_metrics.log", records)


def test_a_spike_in_the_latest_window_is_flagged(log_dir: Path) -> None:
    baseline = [100 + (h % 5) for h in range(24)]  # 100..104 calls an hour
    _hourly(log_dir, [*baseline, 300])
    found = detect_anomalies(LogParser(log_dir), now=NOW + 1800, series=DEFAULT_SERIES[:2])
    assert [(a.series, a.kind, a.value) for a in found] == [("llm calls", "spike", 300.0)]
    assert found[0].window_start == NOW - 3600
    mean = sum(baseline) / 24
    std = math.sqrt(sum((b - mean) ** 2 for b in baseline) / 24)
    assert found[0].z == pytest.approx((300 - mean) / max(std, 0.05 * mean))


def test_a_sustained_shift_is_flagged_and_a_normal_hour_is_not(log_dir: Path) -> None:
    calm = [100 + (h % 5) * 4 for h in range(24)]  # mean 108, sd ~5.7; floor 5.4
    _hourly(log_dir, [*calm, 128, 127, 129])  # each ~3.5 sd up: no spike at k=5, a shift at k/2
    parser = LogParser(log_dir)
    shifted = detect_anomalies(parser, now=NOW, k=5.0, series=DEFAULT_SERIES[:1])
    assert [(a.kind, a.value) for a in shifted] == [("shift_up", 129.0)]
    assert detect_anomalies(parser, now=NOW - 3 * 3600, k=5.0, series=DEFAULT_SERIES[:1]) == []


def test_error_rate_spike_needs_enough_calls(log_dir: Path) -> None:
    _hourly(log_dir, [50] * 24 + [50], error_hours={24})
    series = [Series("llm error rate", "llm", "error_rate", "llm_call")]
    found = detect_anomalies(LogParser(log_dir), now=NOW, series=series)
    assert [(a.kind, a.value) for a in found] == [("spike", 0.5)]
    assert detect_anomalies(LogParser(log_dir), now=NOW, series=series, min_count=60) == []


def test_report_carries_an_anomalies_section(log_dir: Path) -> None:
    _hourly(log_dir, [100] * 24 + [5])
    report = build_report(LogParser(log_dir), until=NOW, hours=24,
                          anomalies={"window": 3600, "baseline": 24, "k": 3.0})
    section = report.section("anomalies")
    assert section is not None
    assert [(r["series"], r["kind"], r["value"]) for r in section.rows] == [("llm calls", "drop", 5.0),
                                                                         ("llm tokens", "drop", 500.0)]


def test_slo_cli_prints_targets(log_dir: Path, tmp_path: Path) -> None:
    now = time.time()
    append_records(log_dir / "llm_metrics.log", [llm(now - 60 - i, ok=i % 50 != 0) for i in range(500)])
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({"logging": {"log_dir": str(log_dir)}, "slos": SLOS[:2]}))
    exe = Path(sys.executable).with_name("monitoring")
    out = subprocess.run([str(exe), "slo", "--config", str(config), "--format", "json"], capture_output=True,
                         text=True, check=False, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = {r["slo"]: r for r in json.loads(out.stdout)}
    assert rows["availability"]["events"] == 500
    assert rows["availability"]["bad"] == 10
    assert rows["availability"]["status"] == "breached"  # 2 % failures against a 1 % allowance
    table = subprocess.run([str(exe), "slo", "--config", str(config)], capture_output=True, text=True,
                           check=False, timeout=60)
    assert "availability" in table.stdout
    assert "breached" in table.stdout
