"""SLO burn-rate rules (multi-window, multi-burn-rate) and anomaly rules, driven through the
evaluator over real log files, and `slo --check`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infrastructure.monitoring import ConfigError, settings_from_mapping
from infrastructure.monitoring.alerts import AlertEvaluator
from infrastructure.monitoring.alerts.engine import describe_rules

from .conftest import append_records

T0 = 1_800_000_000.0  # a multiple of 3600: anomaly windows align on it
SLO = {"name": "api", "module": "llm", "operation": "llm_call", "objective": "availability", "target": 0.999}
PAGE = {"name": "api_page", "expr": "burn_rate(api) > 14.4", "window": "1h", "short_window": "5m",
        "severity": "critical"}
TICKET = {"name": "api_ticket", "expr": "burn_rate(api) > 6", "window": "6h", "short_window": "30m",
          "severity": "warning"}


def call(ts: float, *, ok: bool = True, model: str = "gpt-4o", rt: float = 0.5) -> dict[str, Any]:
    return {"timestamp": ts, "module": "llm", "operation": "llm_call", "metric_type": "timer", "model": model,
            "provider": "openai", "response_time": rt, "success": ok}


def traffic(path: Path, start: float, end: float, *, every: float = 10.0, error_share: float = 0.0) -> None:
    """One call every ``every`` seconds in ``[start, end)``; ``error_share`` of them fail, spread evenly."""
    n = int((end - start) / every)
    fail_every = round(1 / error_share) if error_share else 0
    append_records(path, [call(start + i * every, ok=not (fail_every and i % fail_every == 0)) for i in range(n)])


def evaluator(factory: Any, *rules: dict[str, Any], **alerts: Any) -> AlertEvaluator:
    settings = settings_from_mapping({"slos": [SLO], "alerts": {"rules": list(rules), **alerts}})
    return AlertEvaluator(settings.alerts, factory.settings.logging.log_dir, writer=factory.get_writer("alerts"),
                          sleep=lambda s: None, slos=settings.slos)


def firing(ev: AlertEvaluator, at: float) -> dict[str, dict[str, Any]]:
    result = ev.evaluate(at)
    assert result is not None
    assert result.errors == []
    return {a["rule"]: a for a in result.firing}


# --------------------------------------------------------------------------- configuration


def test_burn_rate_rules_take_their_module_from_the_slo() -> None:
    """A burn-rate rule names an SLO; its module comes from it, its short window defaults to window / 12."""
    rules = settings_from_mapping({"slos": [SLO], "alerts": {"rules": [
        PAGE, {"name": "six", "expr": "burn_rate(api) >= 6", "window": "6h"}]}}).alerts.rules
    assert [(r.kind, r.slo, r.module, r.operation, r.window, r.short_window, r.threshold) for r in rules] == [
        ("burn_rate", "api", "llm", "llm_call", 3600.0, 300.0, 14.4),
        ("burn_rate", "api", "llm", "llm_call", 21600.0, 1800.0, 6.0)]
    assert describe_rules(rules)[0] == "api_page: burn_rate(api) > 14.4 over 3600s and 300s (llm/llm_call) [critical]"


@pytest.mark.parametrize(("rules", "key", "fragment"), [
    ([{**PAGE, "expr": "burn_rate(nope) > 14.4"}], "alerts.rules[0].expr", "naming an SLO of the slos list: 'api'"),
    ([{**PAGE, "expr": "burn_rate(api) < 14.4"}], "alerts.rules[0].expr", "positive FACTOR"),
    ([{**PAGE, "short_window": "2h"}], "alerts.rules[0].short_window", "shorter than window"),
    ([{**PAGE, "module": "llm"}], "alerts.rules[0].module", "watches its SLO's module"),
    ([{**PAGE, "baseline": 12}], "alerts.rules[0].baseline", "belongs to anomaly rules"),
    ([{"name": "a", "module": "llm", "expr": "anomaly(median:rt)"}], "alerts.rules[0].expr", "inside anomaly"),
    ([{"name": "a", "module": "llm", "expr": "anomaly(count) by"}], "alerts.rules[0].expr", "anomaly(AGG)"),
    ([{"name": "a", "module": "llm", "expr": "anomaly(count) > 0"}], "alerts.rules[0].expr", "a K above 0"),
    ([{"name": "a", "module": "llm", "expr": "anomaly(count)", "short_window": "5m"}],
     "alerts.rules[0].short_window", "belongs to burn_rate rules"),
])
def test_bad_burn_and_anomaly_rules_name_the_key(rules: list[dict[str, Any]], key: str, fragment: str) -> None:
    """Mistakes in the new rule kinds fail at load time, naming the key and what is valid."""
    with pytest.raises(ConfigError) as info:
        settings_from_mapping({"slos": [SLO], "alerts": {"rules": rules}})
    assert info.value.key == key
    assert fragment in str(info.value)


# --------------------------------------------------------------------------- burn rate


def test_a_fast_burn_pages_and_a_slow_burn_opens_a_ticket(factory: Any, log_dir: Path, tmp_path: Path) -> None:
    """An outage burns 1 h and 5 m above 14.4 (page); a steady 1 % error rate burns 6 h and 30 m above 6 (ticket)."""
    path = log_dir / "llm_metrics.log"
    ev = evaluator(factory, PAGE, TICKET)
    traffic(path, T0 - 6 * 3600, T0 - 600)
    traffic(path, T0 - 600, T0, error_share=0.5)  # the last ten minutes: half the calls fail
    outage = firing(ev, T0)
    assert set(outage) == {"api_page", "api_ticket"}
    page = outage["api_page"]
    # 1 h: 30 bad of 360 calls -> 8.33 % / 0.1 % allowed = 83.3; 5 m: 15 of 30 -> 500
    assert page["extra"]["burn_rate_long"] == pytest.approx(83.333, rel=1e-3)
    assert page["extra"]["burn_rate_short"] == pytest.approx(500.0)
    assert page["value"] == pytest.approx(83.333, rel=1e-3)  # the lower of the two is what must exceed 14.4

    slow = tmp_path / "slow"
    traffic(slow / "llm_metrics.log", T0 - 6 * 3600, T0, error_share=0.01)
    settings = settings_from_mapping({"slos": [SLO], "alerts": {"rules": [PAGE, TICKET]}})
    steady = firing(AlertEvaluator(settings.alerts, slow, sleep=lambda s: None, slos=settings.slos), T0)
    assert set(steady) == {"api_ticket"}  # 1 h and 5 m burn about 11 and 0: a ticket, no page
    assert steady["api_ticket"]["extra"]["burn_rate_long"] == pytest.approx(22 / 2160 / 0.001)


def test_the_short_window_ends_the_page_once_the_outage_is_over(factory: Any, log_dir: Path) -> None:
    """Ten bad minutes that ended a quarter of an hour ago still weigh on the hour, not on the last 5 m:
    the page resolves, as the workbook's short window intends."""
    path = log_dir / "llm_metrics.log"
    ev = evaluator(factory, PAGE)
    traffic(path, T0 - 3600, T0 - 900)
    traffic(path, T0 - 1500, T0 - 900, every=5.0, error_share=0.5)
    assert set(firing(ev, T0 - 900)) == {"api_page"}
    traffic(path, T0 - 900, T0)  # recovered
    result = ev.evaluate(T0)
    assert result is not None
    assert result.firing == []
    (resolved,) = result.transitions
    assert resolved["event"] == "resolved"
    assert resolved["burn_rate_long"] > 14.4  # the hour still burns fast ...
    assert resolved["burn_rate_short"] == 0.0  # ... but nothing failed in the last five minutes


def test_no_traffic_is_no_data_not_a_burn(factory: Any, log_dir: Path) -> None:
    """Without events in a window the burn rate is unknown: nothing fires."""
    traffic(log_dir / "llm_metrics.log", T0 - 7200, T0 - 3700, error_share=0.5)
    ev = evaluator(factory, PAGE)
    result = ev.evaluate(T0)
    assert result is not None
    assert result.alerts == []


def test_burn_rate_notification_says_both_windows(factory: Any, log_dir: Path, capture_server: Any) -> None:
    """The Slack message of a burn-rate alert shows the SLO and the two burn rates."""
    hook = capture_server()
    traffic(log_dir / "llm_metrics.log", T0 - 3600, T0, error_share=0.5)
    ev = evaluator(factory, PAGE, notifiers=[{"type": "webhook", "url": hook.url}])
    assert set(firing(ev, T0)) == {"api_page"}
    (message,) = [json.loads(body) for _, _, body in hook.requests]
    assert message["text"] == "[CRITICAL] api_page"
    (field,) = [f for f in message["attachments"][0]["fields"] if f["title"] == "value"]
    assert field["value"] == "burn rate of SLO api: 500 over 3600s and 500 over 300s (threshold > 14.4 in both)"
    assert message["alert"]["slo"] == "api"


# --------------------------------------------------------------------------- anomaly rules


def hourly(path: Path, hours: range, rt_of: Any, models: tuple[str, ...] = ("gpt-4o", "claude")) -> None:
    """Twenty calls per model in each hour before T0 (``hours`` counts back from T0)."""
    records = []
    for h in hours:
        start = T0 - (h + 1) * 3600
        for model in models:
            records += [call(start + 60 + i * 150, model=model, rt=rt_of(h, model, i)) for i in range(20)]
    append_records(path, records)


def test_anomaly_rule_fires_for_the_slow_model_only(factory: Any, log_dir: Path) -> None:
    """`anomaly(p95:response_time) by model`: one model's p95 jumps in the last whole hour; only it fires."""
    path = log_dir / "llm_metrics.log"
    hourly(path, range(1, 27), lambda h, m, i: 0.5 + 0.01 * (h % 3) + 0.001 * i)  # a calm, slightly noisy day
    hourly(path, range(1), lambda h, m, i: 4.0 if m == "claude" else 0.5 + 0.001 * i)  # the last hour
    rule = {"name": "latency_anomaly", "module": "llm", "operation": "llm_call",
            "expr": "anomaly(p95(response_time)) by model", "severity": "warning"}
    ev = evaluator(factory, rule)
    found = firing(ev, T0 + 10)
    assert list(found) == ["latency_anomaly"]
    alert = found["latency_anomaly"]
    assert alert["labels"] == {"model": "claude"}
    assert alert["extra"]["anomaly"] == "spike"
    assert alert["extra"]["observed"] == pytest.approx(4.0)
    assert alert["value"] > 3  # the z-score
    path.unlink()  # within the same hour the verdict of the last whole hour stands: the files are not read again
    assert [a["labels"] for a in firing(ev, T0 + 1800).values()] == [{"model": "claude"}]
    assert firing(ev, T0 + 3600) == {}  # the next hour is judged afresh (and has no data now)


def test_anomaly_rule_on_a_count_respects_its_direction(factory: Any, log_dir: Path) -> None:
    """`anomaly(count)` with direction down fires on a traffic drop; direction up does not."""
    path = log_dir / "llm_metrics.log"
    hourly(path, range(1, 27), lambda h, m, i: 0.5, models=("a",))
    append_records(path, [call(T0 - 3000 + i * 60, model="a") for i in range(2)])  # 2 calls instead of 20
    down = {"name": "traffic_drop", "module": "llm", "expr": "anomaly(count) > 4", "direction": "down",
            "min_count": 0}
    up = {**down, "name": "traffic_spike", "direction": "up"}
    found = firing(evaluator(factory, down, up), T0 + 10)
    assert list(found) == ["traffic_drop"]
    assert found["traffic_drop"]["extra"]["anomaly"] == "drop"
    assert found["traffic_drop"]["extra"]["observed"] == 2.0


def test_anomaly_rules_read_the_anomalies_section() -> None:
    """An anomaly rule without its own K, window or baseline takes the anomalies section's."""
    settings = settings_from_mapping({"anomalies": {"window": "30m", "k": 2.5, "baseline": 12, "sustain": 2},
                                      "alerts": {"rules": [{"name": "a", "module": "tool",
                                                            "expr": "anomaly(error_rate) by tool_name"}]}})
    (rule,) = settings.alerts.rules
    assert (rule.window, rule.threshold, rule.baseline, rule.sustain, rule.group_by) == (1800.0, 2.5, 12, 2,
                                                                                        ("tool_name",))
    assert rule.expr == "anomaly(error_rate) by tool_name > 2.5"


# --------------------------------------------------------------------------- slo --check


def test_slo_check_exits_1_on_a_breach(log_dir: Path, tmp_path: Path) -> None:
    """`monitoring slo --check` exits 1 while an objective is breached and 0 once it is met."""
    import time

    now = time.time()
    path = log_dir / "llm_metrics.log"
    append_records(path, [call(now - 100 - i, ok=i % 10 != 0) for i in range(100)])  # 10 % failures
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({"logging": {"log_dir": str(log_dir)},
                                  "slos": [{**SLO, "target": 0.99, "period": "1d"}]}))
    exe = Path(sys.executable).with_name("monitoring")
    breached = subprocess.run([str(exe), "slo", "--check", "--config", str(config)], capture_output=True,
                              text=True, check=False, timeout=60)
    assert breached.returncode == 1, breached.stderr
    assert "breached" in breached.stdout
    append_records(path, [call(now - 50) for _ in range(2000)])  # 10 of 2100 failed: 0.48 %, within 1 %
    met = subprocess.run([str(exe), "slo", "--check", "--config", str(config)], capture_output=True, text=True,
                         check=False, timeout=60)
    assert met.returncode == 0, met.stdout + met.stderr


@pytest.mark.parametrize("slo_name", ["threshold", "anomaly", "burn_rate"])
def test_an_slo_may_be_named_like_a_rule_kind(slo_name: str) -> None:
    """The rule's kind comes from its expression, never from the name of the SLO it watches."""
    slo = {**SLO, "name": slo_name}
    rule = settings_from_mapping({"slos": [slo], "alerts": {"rules": [
        {**PAGE, "expr": f"burn_rate({slo_name}) > 14.4"}]}}).alerts.rules[0]
    assert (rule.kind, rule.slo, rule.module, rule.operation, rule.short_window) == (
        "burn_rate", slo_name, "llm", "llm_call", 300.0)
    assert rule.expr == f"burn_rate({slo_name}) > 14.4"
