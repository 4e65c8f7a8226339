"""Alert rules over real log files: fire -> hold -> resolve, cooldowns, restarts, notifiers."""

from __future__ import annotations

import dataclasses
import email
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from infrastructure.monitoring import ConfigError, settings_from_mapping
from infrastructure.monitoring.alerts import STATE_FILE, AlertEvaluator
from infrastructure.monitoring.ops_config import AlertSettings

from .conftest import append_records, read_records

T0 = 1_800_000_000.0


def llm(ts: float, *, ok: bool = True, model: str = "gpt-4o", rt: float = 0.5, cost: float = 0.0) -> dict[str, Any]:
    return {"timestamp": ts, "module": "llm", "operation": "llm_call", "metric_type": "timer", "model": model,
            "provider": "openai", "response_time": rt, "success": ok, "cost": cost}


def alerts_settings(*rules: dict[str, Any], **extra: Any) -> AlertSettings:
    return settings_from_mapping({"alerts": {"rules": list(rules), **extra}}).alerts


def evaluator(factory: Any, settings: AlertSettings, **kwargs: Any) -> AlertEvaluator:
    return AlertEvaluator(settings, factory.settings.logging.log_dir, writer=factory.get_writer("alerts"),
                          sleep=lambda s: None, **kwargs)


def alert_lines(log_dir: Path, operation: str = "alert") -> list[dict[str, Any]]:
    path = log_dir / "alerts.log"
    return [r for r in read_records(path) if r["operation"] == operation] if path.exists() else []


ERROR_RATE = {"name": "llm_errors", "module": "llm", "operation": "llm_call", "expr": "error_rate > 0.05",
              "window": "60s", "for": "120s", "severity": "critical", "description": "too many failed calls"}


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(("rule", "key", "fragment"), [
    ({**ERROR_RATE, "expr": "error_rate >> 1"}, "alerts.rules[0].expr", "AGG OP NUMBER"),
    ({**ERROR_RATE, "expr": "p95 > 1"}, "alerts.rules[0].expr", "needs a field"),
    ({**ERROR_RATE, "expr": "median(response_time) > 1"}, "alerts.rules[0].expr", "unknown aggregate"),
    ({**ERROR_RATE, "severity": "urgent"}, "alerts.rules[0].severity", "'critical'"),
    ({**ERROR_RATE, "where": ["model ?? x"]}, "alerts.rules[0].where", "filter"),
    ({**ERROR_RATE, "windw": "1m"}, "alerts.rules[0].windw", "did you mean 'window'"),
    ({k: v for k, v in ERROR_RATE.items() if k != "module"}, "alerts.rules[0].module", "every rule needs"),
    ({**ERROR_RATE, "window": "0s"}, "alerts.rules[0].window", "longer than 0"),
])
def test_bad_rules_name_the_key_the_value_and_what_is_valid(rule: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_mapping({"alerts": {"rules": [rule]}})
    assert info.value.key == key
    assert fragment in str(info.value)


def test_rule_names_must_be_unique_and_notifiers_typed() -> None:
    with pytest.raises(ConfigError, match=r"rules\[1\].name"):
        settings_from_mapping({"alerts": {"rules": [ERROR_RATE, ERROR_RATE]}})
    with pytest.raises(ConfigError, match=r"notifiers\[0\].type"):
        settings_from_mapping({"alerts": {"notifiers": [{"type": "pager", "url": "http://x"}]}})
    with pytest.raises(ConfigError, match=r"notifiers\[0\].url"):
        settings_from_mapping({"alerts": {"notifiers": [{"type": "webhook", "url": "ftp://x"}]}})


def test_expressions_parse_into_aggregates() -> None:
    rules = alerts_settings(
        {"name": "a", "module": "llm", "expr": "p95(response_time) > 2.0"},
        {"name": "b", "module": "llm", "expr": "count < 1"},
        {"name": "c", "module": "llm", "expr": "sum(cost)>=10", "window": "1d"},
        {"name": "d", "module": "llm", "expr": "p99.9:response_time <= .5"},
    ).rules
    assert [(r.agg, r.op, r.threshold) for r in rules] == [
        ("p95:response_time", ">", 2.0), ("count", "<", 1.0), ("sum:cost", ">=", 10.0),
        ("p99.9:response_time", "<=", 0.5)]
    assert rules[2].window == 86400


# --------------------------------------------------------------------------- the lifecycle


def test_fire_hold_resolve_with_webhook(factory: Any, log_dir: Path, capture_server: Any) -> None:
    hook = capture_server()
    settings = alerts_settings(ERROR_RATE, notifiers=[{"type": "webhook", "url": hook.url + "/hook"}])
    ev = evaluator(factory, settings)
    path = log_dir / "llm_metrics.log"

    def traffic(end: float, errors: bool) -> None:  # 10 calls in the minute before `end`
        append_records(path, [llm(end - 55 + i * 5, ok=not (errors and i % 2)) for i in range(10)])

    traffic(T0, errors=True)
    first = ev.evaluate(T0)
    assert [a["state"] for a in first.alerts] == ["pending"]
    assert first.alerts[0]["value"] == pytest.approx(0.5)
    traffic(T0 + 60, errors=True)
    assert [a["state"] for a in ev.evaluate(T0 + 60).alerts] == ["pending"]  # held 60 s of 120
    assert hook.requests == []
    traffic(T0 + 120, errors=True)
    fired = ev.evaluate(T0 + 120)
    assert [a["state"] for a in fired.firing] == ["firing"]
    assert len(hook.requests) == 1
    payload = json.loads(hook.requests[0][2])
    assert hook.requests[0][0] == "/hook"
    assert payload["text"].startswith("[CRITICAL] llm_errors")
    assert payload["alert"]["value"] == pytest.approx(0.5)
    assert "too many failed calls" in payload["text"]
    traffic(T0 + 180, errors=True)
    assert ev.evaluate(T0 + 180).firing  # still firing, inside the 5 min cooldown: no second message
    assert len(hook.requests) == 1
    traffic(T0 + 240, errors=False)
    done = ev.evaluate(T0 + 240)
    assert done.alerts == []
    assert [t["event"] for t in done.transitions] == ["resolved"]
    assert json.loads(hook.requests[1][2])["text"].startswith("[RESOLVED] llm_errors")

    events = [(r["event"], r["evaluated_at"]) for r in alert_lines(log_dir)]
    assert events == [("pending", T0), ("firing", T0 + 120), ("resolved", T0 + 240)]
    sent = alert_lines(log_dir, "notification")
    assert [(n["event"], n["success"], n["attempts"]) for n in sent] == [("firing", True, 1), ("resolved", True, 1)]


def test_count_below_one_fires_when_nothing_is_recorded(factory: Any, log_dir: Path) -> None:
    ev = evaluator(factory, alerts_settings({"name": "silence", "module": "llm", "expr": "count < 1",
                                             "window": "5m", "severity": "warning"}))
    append_records(log_dir / "llm_metrics.log", [llm(T0 - 10)])
    assert ev.evaluate(T0).alerts == []
    quiet = ev.evaluate(T0 + 600)  # the last record is 10 minutes old: nothing in the window
    assert [(a["state"], a["value"]) for a in quiet.alerts] == [("firing", 0.0)]
    append_records(log_dir / "llm_metrics.log", [llm(T0 + 650)])
    assert ev.evaluate(T0 + 660).alerts == []


def test_percentile_rule_per_group_fires_only_for_the_slow_model(factory: Any, log_dir: Path) -> None:
    rule = {"name": "slow", "module": "llm", "expr": "p95(response_time) > 2.0", "group_by": "model",
            "window": "10m", "severity": "error", "min_count": 5}
    ev = evaluator(factory, alerts_settings(rule))
    records = [llm(T0 - 100 - i, model="fast", rt=0.1 * i) for i in range(20)]
    records += [llm(T0 - 100 - i, model="slow", rt=1.0 + 0.1 * i) for i in range(20)]  # p95 = 2.805
    records += [llm(T0 - 50 - i, model="rare", rt=9.0) for i in range(3)]  # under min_count: no verdict
    append_records(log_dir / "llm_metrics.log", records)
    firing = ev.evaluate(T0).firing
    assert [(a["labels"], round(a["value"], 3)) for a in firing] == [({"model": "slow"}, 2.805)]


def test_daily_cost_rule(factory: Any, log_dir: Path) -> None:
    ev = evaluator(factory, alerts_settings({"name": "spend", "module": "llm", "expr": "sum(cost) > 10",
                                             "window": "1d", "severity": "info"}))
    append_records(log_dir / "llm_metrics.log", [llm(T0 - 3600 * h, cost=0.5) for h in range(20)])
    assert ev.evaluate(T0).alerts == []  # 20 x 0.5 = 10, not above
    append_records(log_dir / "llm_metrics.log", [llm(T0 + 1, cost=0.25)])
    assert ev.evaluate(T0 + 2).firing[0]["value"] == pytest.approx(10.25)
    assert ev.evaluate(T0 + 86400 + 3600).alerts == []  # the window slid past the spend


def test_restart_neither_forgets_nor_renotifies(factory: Any, log_dir: Path, capture_server: Any) -> None:
    hook = capture_server()
    settings = alerts_settings({**ERROR_RATE, "for": "0s", "cooldown": "10m"},
                               notifiers=[{"type": "webhook", "url": hook.url}])
    append_records(log_dir / "llm_metrics.log", [llm(T0 - i, ok=False) for i in range(50)])
    assert evaluator(factory, settings).evaluate(T0).firing
    assert len(hook.requests) == 1
    state = json.loads((log_dir / STATE_FILE).read_text())
    assert (log_dir / STATE_FILE).stat().st_mode & 0o777 == 0o600
    assert [a["state"] for a in state["alerts"].values()] == ["firing"]

    restarted = evaluator(factory, settings)  # a new process: only the state file carries over
    assert [a["rule"] for a in restarted.current()] == ["llm_errors"]
    append_records(log_dir / "llm_metrics.log", [llm(T0 + 300 - i, ok=False) for i in range(50)])
    assert restarted.evaluate(T0 + 300).firing
    assert len(hook.requests) == 1  # still the same firing, inside the cooldown
    assert [r["event"] for r in alert_lines(log_dir)] == ["firing"]  # no second "firing" transition
    append_records(log_dir / "llm_metrics.log", [llm(T0 + 600 - i, ok=False) for i in range(50)])
    assert restarted.evaluate(T0 + 600).firing
    assert len(hook.requests) == 2  # the cooldown passed: one reminder
    assert json.loads(hook.requests[1][2])["alert"]["repeat"] is True


def test_flapping_inside_the_cooldown_notifies_once(factory: Any, log_dir: Path, capture_server: Any) -> None:
    hook = capture_server()
    settings = alerts_settings({**ERROR_RATE, "for": "0s"}, notifiers=[{"type": "webhook", "url": hook.url}])
    ev = evaluator(factory, settings)
    path = log_dir / "llm_metrics.log"
    for step in range(6):  # bad, good, bad, good ... one minute apart, cooldown 5 min
        now = T0 + 60 * step
        append_records(path, [llm(now - i, ok=step % 2 == 1) for i in range(20)])
        ev.evaluate(now)
    assert [r["event"] for r in alert_lines(log_dir)] == ["firing", "resolved"] * 3
    texts = [json.loads(body)["text"].split()[0] for _, _, body in hook.requests]
    assert texts == ["[CRITICAL]", "[RESOLVED]"]  # the later firings fell inside the cooldown


def test_a_corrupt_state_file_is_set_aside(factory: Any, log_dir: Path) -> None:
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / STATE_FILE).write_bytes(b'{"version": 1, "alerts": {"x": ')
    ev = evaluator(factory, alerts_settings({"name": "silence", "module": "llm", "expr": "count < 1"}))
    assert ev.evaluate(T0).firing
    assert (log_dir / (STATE_FILE + ".corrupt")).exists()


def test_one_evaluator_per_folder(factory: Any, log_dir: Path) -> None:
    from infrastructure.monitoring._statefile import exclusive

    ev = evaluator(factory, alerts_settings({"name": "silence", "module": "llm", "expr": "count < 1"}))
    with exclusive(log_dir / ".alerts.lock"):
        assert ev.evaluate(T0, wait=False) is None
    assert ev.evaluate(T0, wait=False) is not None


def test_a_broken_rule_is_reported_and_the_others_run(factory: Any, log_dir: Path) -> None:
    settings = alerts_settings({"name": "bad", "module": "llm", "expr": "count > 0"},
                               {"name": "silence", "module": "llm", "expr": "count < 1"})
    broken = dataclasses.replace(settings.rules[0], agg="bogus:x")  # cannot come from YAML: validated there
    ev = evaluator(factory, dataclasses.replace(settings, rules=(broken, settings.rules[1])))
    append_records(log_dir / "llm_metrics.log", [llm(T0 - 1)])
    result = ev.evaluate(T0 + 600)
    assert [a["rule"] for a in result.firing] == ["silence"]
    assert len(result.errors) == 1
    assert result.errors[0].startswith("bad: QueryError")
    assert [r["rule"] for r in alert_lines(log_dir, "rule_error")] == ["bad"]


# --------------------------------------------------------------------------- notifiers


def test_webhook_retries_with_backoff_then_reports_failure(factory: Any, log_dir: Path, capture_server: Any) -> None:
    flaky = capture_server(statuses=(500, 503, 200))
    down = capture_server(statuses=(500,))
    waits: list[float] = []
    settings = alerts_settings({"name": "silence", "module": "llm", "expr": "count < 1"}, notifiers=[
        {"type": "webhook", "url": flaky.url, "retries": 3, "backoff": "0.5s"},
        {"type": "webhook", "url": down.url, "retries": 2, "backoff": "1s"}])
    ev = AlertEvaluator(settings, log_dir, writer=factory.get_writer("alerts"), sleep=waits.append)
    result = ev.evaluate(T0)
    assert [(d.ok, d.attempts) for d in result.deliveries] == [(True, 3), (False, 3)]
    assert waits == [0.5, 1.0, 1.0, 2.0]
    assert len(flaky.requests) == 3
    assert len(down.requests) == 3
    failed = [n for n in alert_lines(log_dir, "notification") if not n["success"]]
    assert len(failed) == 1
    assert "500" in failed[0]["error_message"]


def test_webhook_timeout_bounds_the_delivery(factory: Any, log_dir: Path, capture_server: Any) -> None:
    slow = capture_server(delay=2.0)
    settings = alerts_settings({"name": "silence", "module": "llm", "expr": "count < 1"}, notifiers=[
        {"type": "webhook", "url": slow.url, "timeout": "0.3s", "retries": 1, "backoff": "0s"}])
    started = time.monotonic()
    result = evaluator(factory, settings).evaluate(T0)
    assert time.monotonic() - started < 1.5
    assert [(d.ok, d.attempts) for d in result.deliveries] == [(False, 2)]
    assert "timed out" in (result.deliveries[0].error or "")


def test_min_severity_filters_notifications(factory: Any, log_dir: Path, capture_server: Any) -> None:
    hook = capture_server()
    settings = alerts_settings({"name": "silence", "module": "llm", "expr": "count < 1", "severity": "info"},
                               notifiers=[{"type": "webhook", "url": hook.url, "min_severity": "warning"}])
    assert evaluator(factory, settings).evaluate(T0).firing
    assert hook.requests == []


@pytest.fixture
def smtp_server() -> Any:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    class Inbox:
        def __init__(self) -> None:
            self.messages: list[tuple[str, list[str], bytes]] = []

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
            return "250 OK"

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login == b"alerts" and data.password == b"s3cret"
        return AuthResult(success=ok, handled=False)

    inbox = Inbox()
    with socket.socket() as probe:  # aiosmtpd needs a concrete port to check its own start-up
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port, authenticator=authenticate,
                            auth_require_tls=False)
    controller.start()
    inbox.port = port  # type: ignore[attr-defined]
    yield inbox
    controller.stop()


def test_email_over_smtp_with_login(factory: Any, log_dir: Path, smtp_server: Any,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERT_SMTP_PASSWORD", "s3cret")
    settings = alerts_settings({"name": "silence", "module": "llm", "expr": "count < 1", "severity": "error"},
                               notifiers=[{"type": "email", "host": "127.0.0.1", "port": smtp_server.port,
                                           "from": "bot@example.test", "to": ["ops@example.test"],
                                           "username": "alerts", "password_env": "ALERT_SMTP_PASSWORD"}])
    result = evaluator(factory, settings).evaluate(T0)
    assert [(d.ok, d.attempts) for d in result.deliveries] == [(True, 1)]
    sender, rcpts, raw = smtp_server.messages[0]
    message = email.message_from_bytes(raw)
    assert (sender, rcpts) == ("bot@example.test", ["ops@example.test"])
    assert message["Subject"] == "[ERROR] silence"
    assert "count = 0" in message.get_payload()


def test_email_with_a_wrong_password_is_a_counted_failure(factory: Any, log_dir: Path, smtp_server: Any) -> None:
    settings = alerts_settings({"name": "silence", "module": "llm", "expr": "count < 1", "severity": "error"},
                               notifiers=[{"type": "email", "host": "127.0.0.1", "port": smtp_server.port,
                                           "to": "ops@example.test", "username": "alerts", "password": "nope",
                                           "retries": 0}])
    result = evaluator(factory, settings).evaluate(T0)
    assert [(d.ok, d.attempts) for d in result.deliveries] == [(False, 1)]
    assert "Authentication" in (result.deliveries[0].error or "")
    assert smtp_server.messages == []


# --------------------------------------------------------------------------- scheduler and CLI


def test_the_scheduler_evaluates_rules_in_the_background(make_factory: Any, log_dir: Path) -> None:
    factory = make_factory(extra={"alerts": {"interval_seconds": 1, "rules": [
        {"name": "silence", "module": "llm", "expr": "count < 1", "window": "1m", "severity": "warning"}]}})
    service = factory.get_scheduled_cleaner()
    assert "alert_evaluation every 1s" in service.describe()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not alert_lines(log_dir):
        time.sleep(0.2)
    assert [r["event"] for r in alert_lines(log_dir)] == ["firing"]
    factory.create_monitor("llm").record_llm_call(model="m", provider="p", response_time=0.1, success=True)
    while time.monotonic() < deadline and len(alert_lines(log_dir)) < 2:
        time.sleep(0.2)
    assert [r["event"] for r in alert_lines(log_dir)] == ["firing", "resolved"]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("monitoring")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=cwd, timeout=120, check=False)


def test_cli_check_exits_non_zero_while_firing(log_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"""
logging: {{log_dir: {log_dir}}}
alerts:
  rules:
    - {{name: llm_errors, module: llm, expr: "error_rate > 0.1", window: 1h, severity: critical}}
""")
    now = time.time()
    append_records(log_dir / "llm_metrics.log", [llm(now - 10 - i, ok=i % 4 != 0) for i in range(40)])
    firing = _cli("alerts", "--check", "--config", str(config), cwd=tmp_path)
    assert firing.returncode == 1, firing.stderr
    assert "llm_errors" in firing.stdout
    assert "firing" in firing.stdout
    listed = _cli("alerts", "--format", "json", "--config", str(config), cwd=tmp_path)
    assert listed.returncode == 0
    data = json.loads(listed.stdout)
    assert [a["state"] for a in data["current"]] == ["firing"]
    assert [r["event"] for r in data["recent"]] == ["firing"]
    append_records(log_dir / "llm_metrics.log", [llm(now - 5, ok=True) for _ in range(400)])
    calm = _cli("alerts", "--check", "--config", str(config), cwd=tmp_path)
    assert calm.returncode == 0, calm.stdout + calm.stderr
    lines = [orjson.loads(x) for x in (log_dir / "alerts.log").read_bytes().splitlines()]
    assert [x["event"] for x in lines if x["operation"] == "alert"] == ["firing", "resolved"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("alerts:\n  rules:\n    - {name: x, module: llm, expr: 'error_rate >> 2'}\n")
    broken = _cli("alerts", "--check", "--config", str(bad), cwd=tmp_path)
    assert broken.returncode == 2  # a configuration error, not bad news
    assert "alerts.rules[0].expr" in broken.stderr


BAD_AND_GOOD = {
    # rule kind: (expr, a bad minute of records, a good minute of records)
    "error_rate": ("error_rate > 0.2", lambda t: [llm(t - i, ok=i % 2 == 0) for i in range(10)],
                   lambda t: [llm(t - i) for i in range(10)]),
    "p95": ("p95(response_time) > 2.0", lambda t: [llm(t - i, rt=3.0) for i in range(10)],
            lambda t: [llm(t - i, rt=0.2) for i in range(10)]),
    "count_low": ("count < 1", lambda t: [], lambda t: [llm(t - 1)]),
    "sum_cost": ("sum(cost) > 1", lambda t: [llm(t - 1 - i, cost=0.5) for i in range(3)],
                 lambda t: [llm(t - i, cost=0.01) for i in range(3)]),
    "avg_latency": ("avg(response_time) >= 1.5", lambda t: [llm(t - i, rt=2.0) for i in range(5)],
                    lambda t: [llm(t - i, rt=0.5) for i in range(5)]),
}


@pytest.mark.parametrize("kind", sorted(BAD_AND_GOOD))
def test_each_rule_kind_fires_after_holding_and_resolves(factory: Any, log_dir: Path, kind: str) -> None:
    expr, bad, good = BAD_AND_GOOD[kind]
    ev = evaluator(factory, alerts_settings({"name": kind, "module": "llm", "expr": expr, "window": "60s",
                                             "for": "90s", "severity": "error"}))
    path = log_dir / "llm_metrics.log"
    append_records(path, [llm(T0 - 3600)])  # the family exists, long before the window
    states = []
    for step, records in enumerate([bad, bad, bad, good, good]):
        now = T0 + 60 * step
        append_records(path, records(now))
        states.append([a["state"] for a in ev.evaluate(now).alerts])
    assert states == [["pending"], ["pending"], ["firing"], [], []]
    assert [r["event"] for r in alert_lines(log_dir)] == ["pending", "firing", "resolved"]


def test_where_as_a_mapping_keeps_types(factory: Any, log_dir: Path) -> None:
    rule = {"name": "m", "module": "llm", "expr": "count >= 2", "window": "1h",
            "where": {"success": False, "model": ["gpt-4o", "200"]}}
    ev = evaluator(factory, alerts_settings(rule))
    append_records(log_dir / "llm_metrics.log", [llm(T0 - 5, ok=False), llm(T0 - 4, ok=False, model="200"),
                                                 llm(T0 - 3, ok=True), llm(T0 - 2, ok=False, model="other")])
    firing = ev.evaluate(T0).firing
    assert [a["value"] for a in firing] == [2.0]


def test_an_undelivered_notification_is_tried_again_next_time(factory: Any, log_dir: Path,
                                                              capture_server: Any) -> None:
    hook = capture_server(statuses=(503, 503, 200))
    settings = alerts_settings({"name": "silence", "module": "llm", "expr": "count < 1", "severity": "critical"},
                               notifiers=[{"type": "webhook", "url": hook.url, "retries": 1, "backoff": "0s"}])
    ev = evaluator(factory, settings)
    first = ev.evaluate(T0)
    assert [(d.ok, d.attempts) for d in first.deliveries] == [(False, 2)]
    second = ev.evaluate(T0 + 60)  # inside the cooldown, but nothing was delivered yet
    assert [(d.ok, d.attempts) for d in second.deliveries] == [(True, 1)]
    assert ev.evaluate(T0 + 120).deliveries == []  # delivered: now the cooldown holds
    assert len(hook.requests) == 3


def test_alertmanager_labels_are_named_as_prometheus_names_them() -> None:
    """A group label gets the name the /metrics exposition gives it, reserved ``__`` names included."""
    from infrastructure.monitoring._exposition import label_name
    from infrastructure.monitoring.alerts import alertmanager_alert

    groups = {"__name__": "a", "__meta": "b", "gen_ai.model": "m", "2xx": 5}
    body = alertmanager_alert({"rule": "r", "severity": "error", "query_module": "llm", "host": "h",
                               "labels": groups, "value": None, "expr_agg": "count", "op": "<", "threshold": 1.0,
                               "window": 60.0}, starts_at=0.0)
    assert {k: v for k, v in body["labels"].items() if k not in ("alertname", "severity", "module", "host")} == {
        "x__name__": "a", "x__meta": "b", "gen_ai_model": "m", "_2xx": "5"}
    assert all(label_name(k) in body["labels"] for k in groups)
