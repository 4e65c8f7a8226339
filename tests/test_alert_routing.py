"""Notifications people receive: PagerDuty's Events API v2, grouping, routes, secrets from the
environment, the Slack body, global labels; against local HTTP and SMTP servers."""

from __future__ import annotations

import email
import http.server
import json
import re
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from infrastructure.monitoring import ConfigError, settings_from_mapping
from infrastructure.monitoring.alerts import AlertEvaluator
from infrastructure.monitoring.alerts.notifiers import alertmanager_alert, dedup_key

from .conftest import CaptureServer, append_records, read_records
from .test_alerts import smtp_server  # noqa: F401 - the aiosmtpd fixture

T0 = 1_800_000_000.0
ROUTING_KEY = "R0123456789abcdef0123456789abcde"  # 32 characters, as PagerDuty issues them
SLOW = {"name": "slow_model", "module": "llm", "operation": "llm_call", "expr": "p95(response_time) > 2",
        "group_by": "model", "window": "5m", "severity": "warning", "description": "the model answers slowly"}
FAILING = {"name": "model_errors", "module": "llm", "operation": "llm_call", "expr": "error_rate > 0.5",
           "group_by": "model", "window": "5m", "severity": "critical"}


def call(ts: float, model: str, *, ok: bool = True, rt: float = 0.3) -> dict[str, Any]:
    return {"timestamp": ts, "module": "llm", "operation": "llm_call", "metric_type": "timer", "model": model,
            "provider": "openai", "response_time": rt, "success": ok}


def failing(log_dir: Path, at: float, models: list[str]) -> None:
    append_records(log_dir / "llm_metrics.log", [call(at - 1 - i, m, ok=False) for m in models for i in range(3)])


def evaluator(log_dir: Path, *, labels: dict[str, str] | None = None, **alerts: Any) -> AlertEvaluator:
    settings = settings_from_mapping({"alerts": alerts})
    return AlertEvaluator(settings.alerts, log_dir, sleep=lambda s: None, labels=labels,
                          external_url="https://monitoring.example.com", writer=None)


def bodies(server: CaptureServer) -> list[dict[str, Any]]:
    return [json.loads(body) for _, _, body in server.requests]


# --------------------------------------------------------------------------- a PagerDuty stand-in


_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})$")


def events_api_problems(event: Any) -> list[str]:  # noqa: PLR0912 - one check per documented rule
    """What PagerDuty's Events API v2 would refuse in ``event`` (its documented alert-event schema)."""
    if not isinstance(event, dict):
        return ["the body is not a JSON object"]
    problems = []
    allowed = {"routing_key", "event_action", "dedup_key", "payload", "images", "links", "client", "client_url"}
    problems += [f"unknown field {k}" for k in event if k not in allowed]
    if not isinstance(event.get("routing_key"), str) or len(event["routing_key"]) != 32:
        problems.append("routing_key must be the 32-character integration key")
    action = event.get("event_action")
    if action not in ("trigger", "acknowledge", "resolve"):
        problems.append("event_action must be trigger, acknowledge or resolve")
    key = event.get("dedup_key")
    if key is not None and (not isinstance(key, str) or not 0 < len(key) <= 255):
        problems.append("dedup_key must be a string of at most 255 characters")
    if action != "trigger":
        if key is None:
            problems.append(f"{action} needs the dedup_key of the alert")
        return problems
    payload = event.get("payload")
    if not isinstance(payload, dict):
        return [*problems, "payload is required for trigger"]
    allowed_payload = {"summary", "source", "severity", "timestamp", "component", "group", "class", "custom_details"}
    problems += [f"unknown payload field {k}" for k in payload if k not in allowed_payload]
    if not isinstance(payload.get("summary"), str) or not 0 < len(payload["summary"]) <= 1024:
        problems.append("payload.summary must be 1 to 1024 characters")
    if not isinstance(payload.get("source"), str) or not payload["source"]:
        problems.append("payload.source is required")
    if payload.get("severity") not in ("critical", "error", "warning", "info"):
        problems.append("payload.severity must be critical, error, warning or info")
    if "timestamp" in payload and not _ISO.match(str(payload["timestamp"])):
        problems.append("payload.timestamp must be ISO 8601")
    if "custom_details" in payload and not isinstance(payload["custom_details"], dict):
        problems.append("payload.custom_details must be an object")
    for link in event.get("links", []):
        if not isinstance(link, dict) or "href" not in link:
            problems.append("each link needs an href")
    return problems


class PagerDuty:
    """``POST /v2/enqueue`` as PagerDuty answers it: 202 and the dedup_key for a valid event, 400 with
    the errors otherwise; ``statuses`` forces answers first (429, 500 ...)."""

    def __init__(self, statuses: tuple[int, ...] = ()) -> None:
        self.events: list[dict[str, Any]] = []
        self.answers: list[int] = []
        self.forced = list(statuses)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    event = json.loads(raw)
                except ValueError:
                    event = None
                problems = events_api_problems(event)
                if self.path != "/v2/enqueue" or self.headers.get("Content-Type") != "application/json":
                    problems.append("POST application/json to /v2/enqueue")
                if outer.forced:
                    status, answer = outer.forced.pop(0), {"status": "throttled"}
                elif problems:
                    status, answer = 400, {"status": "invalid event", "message": "Event object is invalid",
                                           "errors": problems}
                else:
                    outer.events.append(event)
                    status = 202
                    answer = {"status": "success", "message": "Event processed", "dedup_key": event["dedup_key"]}
                outer.answers.append(status)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v2/enqueue"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def pagerduty() -> Iterator[PagerDuty]:
    server = PagerDuty()
    yield server
    server.close()


# --------------------------------------------------------------------------- PagerDuty


def test_pagerduty_triggers_repeats_and_resolves_with_one_dedup_key(log_dir: Path, pagerduty: PagerDuty,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Firing sends `trigger` with the exact Events API v2 body, a reminder the same dedup_key, the
    resolution `resolve` with it; the routing key comes from the environment."""
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", ROUTING_KEY)
    ev = evaluator(log_dir, labels={"service_name": "checkout-api", "environment": "production"},
                   rules=[{**FAILING, "cooldown": "10m"}],
                   notifiers=[{"type": "pagerduty", "url": pagerduty.url, "routing_key_env": "PAGERDUTY_ROUTING_KEY"}])
    failing(log_dir, T0, ["gpt-4o"])
    fired = ev.evaluate(T0)
    assert fired is not None
    assert [(d.ok, d.attempts) for d in fired.deliveries] == [(True, 1)]
    (trigger,) = pagerduty.events
    key = 'checkout-api/production/model_errors{"model":"gpt-4o"}'
    assert trigger == {
        "routing_key": ROUTING_KEY, "event_action": "trigger", "dedup_key": key, "client": "llm-telemetry-logs",
        "client_url": "https://monitoring.example.com/",
        "links": [{"href": "https://monitoring.example.com/", "text": "monitoring dashboard"}],
        "payload": {
            "summary": "[CRITICAL] model_errors (model=gpt-4o) on checkout-api/production: error_rate = 1 "
                       "(threshold > 0.5, window 300s)",
            "source": ev.host, "severity": "critical", "timestamp": "2027-01-15T08:00:00.000Z",
            "component": "llm", "group": "checkout-api", "class": "model_errors",
            "custom_details": {"model": "gpt-4o", "rule": "model_errors", "expr": "error_rate > 0.5", "value": 1.0,
                               "measured": "error_rate = 1 (threshold > 0.5, window 300s)",
                               "service_name": "checkout-api", "environment": "production", "host": ev.host,
                               "query_module": "llm", "query_operation": "llm_call"}}}
    assert datetime.fromisoformat(trigger["payload"]["timestamp"].replace("Z", "+00:00")).timestamp() == T0
    failing(log_dir, T0 + 600, ["gpt-4o"])
    ev.evaluate(T0 + 600)  # the cooldown passed: a reminder, on the same PagerDuty alert
    assert [(e["event_action"], e["dedup_key"]) for e in pagerduty.events[1:]] == [("trigger", key)]
    done = ev.evaluate(T0 + 1200)
    assert done is not None
    assert [t["event"] for t in done.transitions] == ["resolved"]
    assert pagerduty.events[-1] == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": key}
    assert pagerduty.answers == [202, 202, 202]


def test_pagerduty_retries_throttling_but_not_a_refused_event(log_dir: Path, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    """429 and 5xx are retried, as PagerDuty asks; a 400 (an invalid event) is not."""
    throttled = PagerDuty(statuses=(429, 503))
    try:
        ev = evaluator(log_dir, rules=[FAILING], notifiers=[
            {"type": "pagerduty", "url": throttled.url, "routing_key": ROUTING_KEY, "retries": 3, "backoff": "0s"}])
        failing(log_dir, T0, ["gpt-4o"])
        result = ev.evaluate(T0)
        assert result is not None
        assert [(d.ok, d.attempts) for d in result.deliveries] == [(True, 3)]
        assert throttled.answers == [429, 503, 202]
    finally:
        throttled.close()
    refusing = PagerDuty()
    try:
        ev = evaluator(log_dir / "other", rules=[FAILING], notifiers=[
            {"type": "pagerduty", "url": refusing.url, "routing_key": "too-short", "retries": 3, "backoff": "0s"}])
        failing(log_dir / "other", T0, ["gpt-4o"])
        result = ev.evaluate(T0)
        assert result is not None
        (delivery,) = result.deliveries
        assert (delivery.ok, delivery.attempts) == (False, 1)
        assert delivery.error is not None
        assert delivery.error.startswith("HTTP 400")
        assert "routing_key must be the 32-character integration key" in delivery.error
    finally:
        refusing.close()


def test_pagerduty_without_its_key_in_the_environment_fails_clearly(log_dir: Path, pagerduty: PagerDuty) -> None:
    """An unset routing_key_env is a failed delivery naming the variable, tried again next time."""
    ev = evaluator(log_dir, rules=[FAILING], notifiers=[
        {"type": "pagerduty", "url": pagerduty.url, "routing_key_env": "PD_KEY_NOT_SET_ANYWHERE"}])
    failing(log_dir, T0, ["gpt-4o"])
    result = ev.evaluate(T0)
    assert result is not None
    assert [(d.ok, d.error) for d in result.deliveries] == [
        (False, "environment variable PD_KEY_NOT_SET_ANYWHERE (the PagerDuty routing key) is not set")]
    assert pagerduty.events == []
    again = ev.evaluate(T0 + 60)
    assert again is not None
    assert len(again.deliveries) == 1  # still owed


def test_dedup_keys_stay_within_pagerdutys_limit() -> None:
    """A dedup key is stable and at most 255 characters, however long the labels."""
    alert = {"rule": "r", "labels": {"prompt": "x" * 400}, "service_name": "s", "environment": "e"}
    assert dedup_key(alert) == dedup_key(dict(alert))
    assert len(dedup_key(alert)) <= 255
    assert dedup_key({**alert, "labels": {"prompt": "y" * 400}}) != dedup_key(alert)


# --------------------------------------------------------------------------- grouping


def test_a_burst_of_fifty_alerts_is_one_notification(log_dir: Path, capture_server: Any) -> None:
    """Fifty models failing at once: one Slack message (20 attachments and a count of the rest) and one
    raw message listing all fifty, instead of fifty each."""
    slack, raw = capture_server(), capture_server()
    ev = evaluator(log_dir, rules=[FAILING], notifiers=[{"type": "webhook", "url": slack.url},
                                                        {"type": "webhook", "url": raw.url, "body": "alert"}])
    models = [f"model-{i:02d}" for i in range(50)]
    failing(log_dir, T0, models)
    result = ev.evaluate(T0)
    assert result is not None
    assert len(result.firing) == 50
    assert result.notifications == 2
    (message,) = bodies(slack)
    assert message["text"] == "[CRITICAL] model_errors: 50 firing"
    assert len(message["attachments"]) == 21
    assert message["attachments"][-1]["title"] == "… and 30 more"
    (group,) = bodies(raw)
    assert (group["event"], group["rule"], group["firing"], group["resolved"]) == ("firing", "model_errors", 50, 0)
    assert [a["labels"]["model"] for a in group["alerts"]] == models
    assert "queued_at" not in group["alerts"][0]  # the evaluator's bookkeeping stays out of the message


def test_group_wait_collects_alerts_that_fire_over_several_evaluations(log_dir: Path, capture_server: Any) -> None:
    """With group_wait 2m, alerts firing one minute apart go out together once the first has waited;
    later changes wait group_interval after that message."""
    hook = capture_server()
    ev = evaluator(log_dir, rules=[FAILING], group_wait="2m", group_interval="5m",
                   notifiers=[{"type": "webhook", "url": hook.url, "body": "alert"}])
    sent_per_evaluation = []
    for step, wave in enumerate([["a", "b"], ["c"], ["d", "e"]]):
        failing(log_dir, T0 + 60 * step, wave)
        ev.evaluate(T0 + 60 * step)
        sent_per_evaluation.append(len(hook.requests))
    assert sent_per_evaluation == [0, 0, 1]  # T0 + 2 min: the first alert has waited group_wait
    (first,) = bodies(hook)
    assert [a["labels"]["model"] for a in first["alerts"]] == ["a", "b", "c", "d", "e"]
    failing(log_dir, T0 + 180, ["f"])
    for minute in range(3, 8):
        ev.evaluate(T0 + 60 * minute)
    # f fired at T0+3m; the failures of a..e left the window at T0+5m..T0+7m: all wait until T0+7m
    assert len(hook.requests) == 2
    second = bodies(hook)[1]
    assert sorted((a["labels"]["model"], a["event"]) for a in second["alerts"]) == [
        ("a", "resolved"), ("b", "resolved"), ("c", "resolved"), ("d", "resolved"), ("e", "resolved"),
        ("f", "firing")]


def test_grouped_email_lists_every_alert(log_dir: Path, smtp_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """One mail for the rule's alerts, each on its own line, the SMTP password from the environment."""
    monkeypatch.setenv("ALERT_SMTP_PASSWORD", "s3cret")
    ev = evaluator(log_dir, rules=[FAILING], notifiers=[
        {"type": "email", "host": "127.0.0.1", "port": smtp_server.port, "to": "ops@example.test",
         "username": "alerts", "password_env": "ALERT_SMTP_PASSWORD", "min_severity": "critical"}])
    failing(log_dir, T0, ["a", "b", "c"])
    result = ev.evaluate(T0)
    assert result is not None
    assert [(d.ok, d.attempts) for d in result.deliveries] == [(True, 1)]
    (_, _, raw), = smtp_server.messages
    message = email.message_from_bytes(raw)
    assert message["Subject"] == "[CRITICAL] model_errors: 3 firing"
    body = message.get_payload(decode=True).decode()
    assert all(f"- [CRITICAL] model_errors (model={m}): error_rate = 1" in body for m in "abc")


# --------------------------------------------------------------------------- routing


ROUTED = {
    "rules": [FAILING, SLOW, {**SLOW, "name": "slow_tool", "module": "tool", "operation": "tool_call",
                              "expr": "p95(duration) > 2", "group_by": "tool_name"}],
    "routes": [{"match": {"severity": "critical"}, "notifiers": ["pagerduty"]},
               {"match": {"module": "llm"}, "notifiers": ["slack"]}],
}


def test_routes_choose_notifiers_by_label(log_dir: Path, capture_server: Any, pagerduty: PagerDuty) -> None:
    """Critical alerts page; llm alerts go to Slack; what no route matches goes to the unrouted email hook."""
    slack, other = capture_server(), capture_server()
    ev = evaluator(log_dir, **ROUTED, notifiers=[
        {"name": "pagerduty", "type": "pagerduty", "url": pagerduty.url, "routing_key": ROUTING_KEY},
        {"name": "slack", "type": "webhook", "url": slack.url},
        {"name": "catch_all", "type": "webhook", "url": other.url, "body": "alert"}])
    failing(log_dir, T0, ["gpt-4o"])  # model_errors: critical
    append_records(log_dir / "llm_metrics.log", [call(T0 - 5 - i, "slow-model", rt=3.0) for i in range(5)])
    append_records(log_dir / "tool_metrics.log", [
        {"timestamp": T0 - 5 - i, "operation": "tool_call", "tool_name": "search", "duration": 3.0}
        for i in range(5)])
    result = ev.evaluate(T0)
    assert result is not None
    assert sorted(a["rule"] for a in result.firing) == ["model_errors", "slow_model", "slow_tool"]
    assert [e["payload"]["class"] for e in pagerduty.events] == ["model_errors"]  # first match wins
    assert [m["text"] for m in bodies(slack)] == [
        "[WARNING] slow_model (model=slow-model)\nthe model answers slowly"]
    assert [m["rule"] for m in bodies(other)] == ["slow_tool"]  # matched no route


def test_continue_sends_to_later_routes_too(log_dir: Path, capture_server: Any, pagerduty: PagerDuty) -> None:
    """`continue: true` lets a critical llm alert page and reach Slack."""
    slack = capture_server()
    routes = [{**ROUTED["routes"][0], "continue": True}, ROUTED["routes"][1]]
    ev = evaluator(log_dir, rules=[FAILING], routes=routes, notifiers=[
        {"name": "pagerduty", "type": "pagerduty", "url": pagerduty.url, "routing_key": ROUTING_KEY},
        {"name": "slack", "type": "webhook", "url": slack.url}])
    failing(log_dir, T0, ["gpt-4o"])
    ev.evaluate(T0)
    assert len(pagerduty.events) == 1
    assert [m["text"] for m in bodies(slack)] == ["[CRITICAL] model_errors (model=gpt-4o)"]


def test_routes_match_group_labels_and_lists(log_dir: Path, capture_server: Any) -> None:
    """A route may match a group label with a list of values."""
    premium, rest = capture_server(), capture_server()
    ev = evaluator(log_dir, rules=[FAILING], routes=[
        {"match": {"model": ["gpt-4o", "claude"]}, "notifiers": ["premium"]}], notifiers=[
        {"name": "premium", "type": "webhook", "url": premium.url, "body": "alert"},
        {"name": "rest", "type": "webhook", "url": rest.url, "body": "alert"}])
    failing(log_dir, T0, ["gpt-4o", "claude", "mini"])
    ev.evaluate(T0)
    assert [a["labels"]["model"] for a in bodies(premium)[0]["alerts"]] == ["claude", "gpt-4o"]
    assert bodies(rest)[0]["labels"] == {"model": "mini"}


def test_alertmanager_follows_routes_and_reads_its_url_from_the_environment(
        log_dir: Path, capture_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Routes choose what Alertmanager is told too, and `url_env` gives its base URL."""
    manager = capture_server()
    monkeypatch.setenv("ALERTMANAGER_URL", manager.url)
    ev = evaluator(log_dir, rules=[FAILING, SLOW], routes=[{"match": {"severity": "critical"}, "notifiers": ["am"]}],
                   notifiers=[{"name": "am", "type": "alertmanager", "url_env": "ALERTMANAGER_URL"}])
    failing(log_dir, T0, ["gpt-4o"])
    append_records(log_dir / "llm_metrics.log", [call(T0 - 5 - i, "slow-model", rt=3.0) for i in range(5)])
    result = ev.evaluate(T0)
    assert result is not None
    assert len(result.firing) == 2
    ((path, _, body),) = manager.requests
    assert path == "/api/v2/alerts"
    assert [a["labels"]["alertname"] for a in json.loads(body)] == ["model_errors"]
    assert [d.notifier for d in result.deliveries] == ["alertmanager $ALERTMANAGER_URL"]


@pytest.mark.parametrize(("alerts", "key", "fragment"), [
    ({"notifiers": [{"type": "webhook", "url": "http://a"}], "routes": [{"notifiers": ["slack"]}]},
     "alerts.routes[0].notifiers", "one of 'webhook'"),
    ({"notifiers": [{"type": "webhook", "url": "http://a", "name": "x"},
                    {"type": "webhook", "url": "http://b", "name": "x"}]}, "alerts.notifiers[1].name", "no other"),
    ({"routes": [{"match": {}, "notifiers": []}]}, "alerts.routes[0].match", "a mapping of label"),
    ({"routes": [{"match": {"severity": "critical"}}]}, "alerts.routes[0].notifiers", "the names of the notifiers"),
    ({"notifiers": [{"type": "webhook"}]}, "alerts.notifiers[0].url", "or url_env"),
    ({"notifiers": [{"type": "webhook", "url": "http://a", "url_env": "X"}]}, "alerts.notifiers[0].url",
     "one or the other"),
    ({"notifiers": [{"type": "webhook", "url_env": "not a name"}]}, "alerts.notifiers[0].url_env",
     "environment variable"),
    ({"notifiers": [{"type": "pagerduty"}]}, "alerts.notifiers[0].routing_key_env", "integration key"),
    ({"group_wait": "soon"}, "alerts.group_wait", "seconds"),
])
def test_bad_routes_and_notifiers_name_the_key(alerts: dict[str, Any], key: str, fragment: str) -> None:
    """Routes, names and secrets are checked when the file is loaded."""
    with pytest.raises(ConfigError) as info:
        settings_from_mapping({"alerts": alerts})
    assert info.value.key == key
    assert fragment in str(info.value)


def test_unnamed_notifiers_are_named_after_their_type() -> None:
    """Notifiers without a name get their type, then type_2 ...; routes can use those names."""
    alerts = settings_from_mapping({"alerts": {"notifiers": [
        {"type": "webhook", "url": "http://a"}, {"type": "webhook", "url": "http://b"},
        {"type": "email", "host": "h", "to": "x@y"}], "routes": [{"notifiers": ["webhook_2"]}]}}).alerts
    assert [n.name for n in alerts.notifiers] == ["webhook", "webhook_2", "email"]


# --------------------------------------------------------------------------- secrets and bodies


def test_webhook_url_from_the_environment(log_dir: Path, capture_server: Any, monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path, make_factory: Any) -> None:
    """`url_env: SLACK_WEBHOOK_URL` posts to the URL the variable holds, and alerts.log names the
    variable, never the URL (a Slack webhook URL is a secret)."""
    hook = capture_server()
    secret_url = hook.url + "/services/T000/B000/very-secret-token"
    monkeypatch.setenv("SLACK_WEBHOOK_URL", secret_url)
    factory = make_factory(extra={"alerts": {"rules": [FAILING], "notifiers": [
        {"type": "webhook", "url_env": "SLACK_WEBHOOK_URL"}]}})
    failing(log_dir, T0, ["gpt-4o"])
    result = factory.get_alert_evaluator().evaluate(T0)
    assert result is not None
    assert [(d.ok, d.notifier) for d in result.deliveries] == [(True, "webhook $SLACK_WEBHOOK_URL")]
    assert [path for path, _, _ in hook.requests] == ["/services/T000/B000/very-secret-token"]
    logged = (log_dir / "alerts.log").read_text() + (log_dir / ".alerts_state.json").read_text()
    assert "very-secret-token" not in logged
    monkeypatch.delenv("SLACK_WEBHOOK_URL")
    failing(log_dir, T0 + 60, ["claude"])
    missing = factory.get_alert_evaluator().evaluate(T0 + 60)
    assert missing is not None
    assert [(d.ok, d.error) for d in missing.deliveries] == [
        (False, "environment variable SLACK_WEBHOOK_URL (the webhook URL) is not set")]


def test_slack_body_names_the_module_and_the_service(log_dir: Path, capture_server: Any) -> None:
    """The Slack attachment says the rule's module (it used to say None) and the global labels."""
    hook = capture_server()
    ev = evaluator(log_dir, labels={"service_name": "checkout-api", "environment": "staging"}, rules=[FAILING],
                   notifiers=[{"type": "webhook", "url": hook.url}])
    failing(log_dir, T0, ["gpt-4o"])
    ev.evaluate(T0)
    (message,) = bodies(hook)
    fields = {f["title"]: f["value"] for f in message["attachments"][0]["fields"]}
    assert fields["module"] == "llm"
    assert (fields["service_name"], fields["environment"]) == ("checkout-api", "staging")
    assert message["text"] == "[CRITICAL] model_errors (model=gpt-4o) on checkout-api/staging"
    assert (message["alert"]["service_name"], message["alert"]["environment"]) == ("checkout-api", "staging")


def test_global_labels_reach_alertmanager_labels() -> None:
    """Alertmanager gets service_name and environment as labels (a fleet's alerts say where they come from)."""
    event = {"rule": "r", "severity": "error", "labels": {"environment": "x"}, "host": "h", "query_module": "llm",
             "value": 1.0, "expr_agg": "count", "op": ">", "threshold": 0.0, "window": 60.0,
             "service_name": "checkout-api", "environment": "production"}
    labels = alertmanager_alert(event, starts_at=T0)["labels"]
    assert labels == {"alertname": "r", "severity": "error", "module": "llm", "host": "h",
                      "service_name": "checkout-api", "environment": "production", "group_environment": "x"}


def test_the_factory_evaluator_carries_the_configured_labels(make_factory: Any, log_dir: Path,
                                                             capture_server: Any) -> None:
    """Through the factory, the config's service_name and environment reach notifications and routes."""
    hook, prod = capture_server(), capture_server()
    factory = make_factory(extra={"service_name": "agent", "environment": "production", "alerts": {
        "rules": [FAILING], "routes": [{"match": {"environment": "production"}, "notifiers": ["prod"]}],
        "notifiers": [{"name": "prod", "type": "webhook", "url": prod.url, "body": "alert"},
                      {"name": "other", "type": "webhook", "url": hook.url}]}})
    factory.create_monitor("llm").record_llm_call(model="m", provider="p", response_time=0.1, success=False)
    result = factory.get_alert_evaluator().evaluate()
    assert result is not None
    assert [a["rule"] for a in result.firing] == ["model_errors"]
    (alert,) = bodies(prod)
    assert (alert["service_name"], alert["environment"]) == ("agent", "production")
    assert hook.requests == []
    written = read_records(log_dir / "llm_metrics.log")[0]
    assert (written["service_name"], written["environment"]) == ("agent", "production")


def test_pagerduty_takes_its_url_or_url_env_or_the_events_api() -> None:
    """PagerDuty's URL has a default: url and url_env are optional, but never both."""
    from infrastructure.monitoring.ops_config import PAGERDUTY_EVENTS_URL

    base = {"type": "pagerduty", "routing_key_env": "PD_KEY"}
    with pytest.raises(ConfigError) as info:
        settings_from_mapping({"alerts": {"notifiers": [{**base, "url": "http://a", "url_env": "PD_URL"}]}})
    assert info.value.key == "alerts.notifiers[0].url"
    assert "one or the other" in str(info.value)
    notifiers = settings_from_mapping({"alerts": {"notifiers": [
        base, {**base, "url_env": "PD_URL"}, {**base, "url": "http://pd.example/v2/enqueue"}]}}).alerts.notifiers
    assert [(n.url, n.url_env) for n in notifiers] == [  # type: ignore[union-attr]
        (PAGERDUTY_EVENTS_URL, None), (PAGERDUTY_EVENTS_URL, "PD_URL"), ("http://pd.example/v2/enqueue", None)]
