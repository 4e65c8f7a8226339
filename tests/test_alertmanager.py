"""The Alertmanager notifier against the real Debian ``prometheus-alertmanager``, started here.

Each test starts Alertmanager on a free loopback port (clustering off, storage in tmp) whose
only route is a webhook receiver pointing at a capture server, so the tests see both what
Alertmanager holds (``GET /api/v2/alerts``) and what it would page with.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from infrastructure.monitoring import ConfigError, settings_from_mapping
from infrastructure.monitoring.alerts import AlertEvaluator, alertmanager_alert, post_alerts
from infrastructure.monitoring.alerts.notifiers import notifier_name
from infrastructure.monitoring.ops_config import AlertmanagerNotifier

from .conftest import CaptureServer, append_records, read_records, require

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
DASHBOARD = "http://dashboard.example:9464"
SLOW_MODEL = {"name": "slow_model", "module": "llm", "operation": "llm_call", "group_by": ["model"],
              "expr": "p95(response_time) > 2.0", "window": "5m", "severity": "warning",
              "description": "the model answers slowly"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _when(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Alertmanager:
    """One real Alertmanager process; ``stop``/``start`` keep its port and storage."""

    def __init__(self, folder: Path, receiver_url: str) -> None:
        assert ALERTMANAGER is not None
        self.folder = folder
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = folder / "alertmanager.yml"
        self.config.write_text(
            "route:\n  receiver: capture\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n"
            "  repeat_interval: 1h\n"
            "receivers:\n  - name: capture\n    webhook_configs:\n"
            f"      - url: {receiver_url}\n        send_resolved: true\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.folder / "alertmanager.out", "ab") as out:
            self.proc = subprocess.Popen(
                [ALERTMANAGER or "", f"--config.file={self.config}", f"--web.listen-address=127.0.0.1:{self.port}",
                 "--cluster.listen-address=", f"--storage.path={self.folder / 'data'}"],
                stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.folder / "alertmanager.out").read_text()
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("Alertmanager did not become ready")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)

    def alerts(self) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts``: the alerts Alertmanager holds as active (ended ones are left out)."""
        with urllib.request.urlopen(self.url + "/api/v2/alerts", timeout=5) as answer:
            return list(json.loads(answer.read()))


@pytest.fixture
def receiver(capture_server: Callable[..., CaptureServer]) -> CaptureServer:
    return capture_server()


@pytest.fixture
def alertmanager(tmp_path: Path, receiver: CaptureServer) -> Iterator[Alertmanager]:
    require("prometheus-alertmanager", "alertmanager")
    folder = tmp_path / "alertmanager"
    folder.mkdir()
    manager = Alertmanager(folder, receiver.url + "/am")
    manager.start()
    try:
        yield manager
    finally:
        manager.stop()


def _llm(ts: float, model: str, rt: float) -> dict[str, Any]:
    return {"timestamp": ts, "module": "llm", "operation": "llm_call", "metric_type": "timer", "model": model,
            "provider": "openai", "response_time": rt, "success": True}


def _traffic(log_dir: Path, model: str, rt: float, count: int) -> None:
    now = time.time()
    append_records(log_dir / "llm_metrics.log", [_llm(now - 0.5 + i / (2 * count), model, rt) for i in range(count)])


def _notified(receiver: CaptureServer, status: str, timeout: float = 10.0) -> dict[str, Any]:
    """The first webhook message Alertmanager sent with this status (it pages within group_interval)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path, _headers, body in list(receiver.requests):
            message = json.loads(body)
            if path == "/am" and message["status"] == status:
                return dict(message)
        time.sleep(0.05)
    raise AssertionError(f"Alertmanager sent no {status!r} message: {receiver.requests}")


def _notifications(log_dir: Path) -> list[tuple[str, str, bool]]:
    path = log_dir / "alerts.log"
    return [(r["event"], r["notifier"].split()[0], r["success"]) for r in read_records(path)
            if r["operation"] == "notification"]


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(("notifier", "key", "fragment"), [
    ({"type": "alertmanager"}, "alerts.notifiers[0].url", "base URL"),
    ({"type": "alertmanager", "url": "alertmanager:9093"}, "alerts.notifiers[0].url", "http://"),
    ({"type": "alertmanager", "url": "http://am:9093", "resend_interval": "0s"},
     "alerts.notifiers[0].resend_interval", "resolve_timeout"),
    ({"type": "alertmanager", "url": "http://am:9093", "cooldown": "1m"}, "alerts.notifiers[0].cooldown",
     "unknown key"),
    ({"type": "webhook", "url": "http://hook", "body": "teams"}, "alerts.notifiers[0].body", "'slack'"),
    ({"type": "opsgenie", "url": "http://hook"}, "alerts.notifiers[0].type", "'alertmanager'"),
])
def test_bad_notifiers_name_the_key(notifier: dict[str, Any], key: str, fragment: str) -> None:
    """A bad alertmanager or webhook notifier fails at load, naming the key and what is valid."""
    with pytest.raises(ConfigError) as info:
        settings_from_mapping({"alerts": {"notifiers": [notifier]}})
    assert info.value.key == key
    assert fragment in str(info.value)


def test_alertmanager_notifier_settings() -> None:
    """Defaults: a 60 s re-send, the API v2 path appended once, server.external_url read."""
    settings = settings_from_mapping({
        "alerts": {"notifiers": [{"type": "alertmanager", "url": "http://am:9093/"},
                                 {"type": "alertmanager", "url": "http://am2:9093/api/v2/alerts",
                                  "resend_interval": "30s"}]},
        "server": {"external_url": DASHBOARD}})
    first, second = settings.alerts.notifiers
    assert isinstance(first, AlertmanagerNotifier)
    assert isinstance(second, AlertmanagerNotifier)
    assert (first.endpoint, first.resend_interval) == ("http://am:9093/api/v2/alerts", 60.0)
    assert (second.endpoint, second.resend_interval) == ("http://am2:9093/api/v2/alerts", 30.0)
    assert settings.server.external_url == DASHBOARD


def test_credentials_in_a_url_stay_out_of_logs_and_state() -> None:
    """A notifier is named without the URL's user:password and query string (alerts.log, the state file)."""
    notifiers = settings_from_mapping({"alerts": {"notifiers": [
        {"type": "alertmanager", "url": "https://ops:s3cret@am.example:9093/"},
        {"type": "webhook", "url": "https://hooks.example/T0/B1?token=s3cret"}]}}).alerts.notifiers
    assert [notifier_name(n) for n in notifiers] == ["alertmanager https://am.example:9093",
                                                     "webhook https://hooks.example/T0/B1"]


def test_label_names_alertmanager_would_reject_are_made_valid() -> None:
    """Group labels become valid label names; one named like a fixed label keeps its value under group_."""
    body = alertmanager_alert({"rule": "r", "severity": "error", "query_module": "llm", "host": "h",
                               "labels": {"gen_ai.model": "m", "severity": "x", "2xx": 5, "gone": None},
                               "value": None, "expr_agg": "count", "op": "<", "threshold": 1.0, "window": 60.0},
                              starts_at=0.0)
    assert body["labels"] == {"alertname": "r", "severity": "error", "module": "llm", "host": "h",
                              "gen_ai_model": "m", "group_severity": "x", "_2xx": "5"}
    assert body["annotations"]["value"] == "no data"
    assert body["startsAt"] == "1970-01-01T00:00:00.000Z"
    assert "endsAt" not in body
    assert "generatorURL" not in body


# --------------------------------------------------------------------------- against the real Alertmanager


def test_fire_resend_and_resolve_in_alertmanager(make_factory: Any, log_dir: Path, alertmanager: Alertmanager,
                                                 receiver: CaptureServer) -> None:
    """A firing alert reaches Alertmanager with its labels and annotations, is re-sent, then ends."""
    factory = make_factory(extra={
        "alerts": {"rules": [SLOW_MODEL], "notifiers": [
            {"type": "alertmanager", "url": alertmanager.url, "resend_interval": "1s", "retries": 0}]},
        "server": {"external_url": DASHBOARD}})
    evaluator = factory.get_alert_evaluator()
    _traffic(log_dir, "big", 3.0, 20)
    _traffic(log_dir, "small", 0.1, 20)

    fired = evaluator.evaluate()
    assert [(a["labels"], a["state"]) for a in fired.alerts] == [({"model": "big"}, "firing")]
    assert [(d.notifier.split()[0], d.ok) for d in fired.deliveries] == [("alertmanager", True)]
    (held,) = alertmanager.alerts()
    assert held["labels"] == {"alertname": "slow_model", "severity": "warning", "module": "llm",
                              "host": socket.gethostname(), "model": "big"}
    assert held["annotations"] == {"summary": "slow_model: p95:response_time = 3 (threshold > 2, window 300s)",
                                   "description": "the model answers slowly", "value": "3"}
    assert held["status"]["state"] == "active"
    assert held["generatorURL"] == DASHBOARD + "/"
    fired_at = fired.alerts[0]["fired_at"]
    assert _when(held["startsAt"]) == pytest.approx(fired_at, abs=0.001)
    assert _when(held["endsAt"]) == pytest.approx(fired_at + 4 * 60, abs=0.001)  # 4 x max(resend, interval)
    paged = _notified(receiver, "firing")
    assert paged["alerts"][0]["labels"]["model"] == "big"

    assert evaluator.evaluate(now=fired.at + 0.5).deliveries == []  # inside resend_interval: nothing sent
    time.sleep(1.05)
    resent = evaluator.evaluate()
    assert [d.ok for d in resent.deliveries] == [True]
    (again,) = alertmanager.alerts()
    assert _when(again["updatedAt"]) > _when(held["updatedAt"])
    assert again["startsAt"] == held["startsAt"]  # the same alert, not a new one

    _traffic(log_dir, "big", 0.1, 600)  # p95 back under 2 s
    resolved = evaluator.evaluate()
    assert [t["event"] for t in resolved.transitions] == ["resolved"]
    assert [d.ok for d in resolved.deliveries] == [True]
    assert alertmanager.alerts() == []  # ended: no longer active
    ended = _notified(receiver, "resolved")["alerts"][0]
    assert (ended["status"], ended["labels"]["model"]) == ("resolved", "big")
    assert _when(ended["endsAt"]) == pytest.approx(resolved.at, abs=0.001)
    assert evaluator.evaluate().deliveries == []  # told once; nothing more to send
    # alerts.log: the first send and the resolution; routine re-sends are not logged
    assert _notifications(log_dir) == [("firing", "alertmanager", True), ("resolved", "alertmanager", True)]


def test_a_rejected_body_is_a_failed_delivery_with_alertmanagers_reason(alertmanager: Alertmanager) -> None:
    """Alertmanager's 400 (here: an alert ending before it starts) is a failure, retried, reason kept."""
    notifier = AlertmanagerNotifier(url=alertmanager.url, retries=2, backoff=0.0)
    event = {"rule": "r", "severity": "error", "labels": {}, "host": "h", "query_module": "llm", "value": 1.0,
             "expr_agg": "count", "op": ">", "threshold": 0.0, "window": 60.0}
    naps: list[float] = []
    bad = post_alerts(notifier, [alertmanager_alert(event, starts_at=time.time(), ends_at=time.time() - 60)],
                      sleep=naps.append)
    assert (bad.ok, bad.attempts) == (False, 3)
    assert bad.error is not None
    assert "HTTP 400" in bad.error
    assert "start time must be before end time" in bad.error
    assert len(naps) == 2
    assert alertmanager.alerts() == []
    good = post_alerts(notifier, [alertmanager_alert(event, starts_at=time.time())])
    assert (good.ok, good.attempts) == (True, 1)
    assert [a["labels"]["alertname"] for a in alertmanager.alerts()] == ["r"]


def test_a_non_2xx_answer_is_retried_at_the_next_evaluation(make_factory: Any, log_dir: Path,
                                                            alertmanager: Alertmanager) -> None:
    """A 404 (wrong path) fails every evaluation; Alertmanager down, then back: the next evaluation delivers."""
    rule = {**SLOW_MODEL, "severity": "critical"}
    wrong = make_factory(extra={"alerts": {"rules": [rule], "notifiers": [
        {"type": "alertmanager", "url": alertmanager.url + "/not-here", "resend_interval": "1h", "retries": 1,
         "backoff": "0s"}]}})
    _traffic(log_dir, "big", 3.0, 20)
    evaluator = wrong.get_alert_evaluator()
    for _ in range(2):  # still due: every evaluation tries again, however long the resend interval
        (delivery,) = evaluator.evaluate().deliveries
        assert (delivery.ok, delivery.attempts) == (False, 2)
        assert delivery.error is not None
        assert delivery.error.startswith("HTTP 404")
    assert alertmanager.alerts() == []
    assert _notifications(log_dir) == [("firing", "alertmanager", False)] * 2

    alertmanager.stop()
    right = make_factory(extra={"alerts": {"rules": [rule], "notifiers": [
        {"type": "alertmanager", "url": alertmanager.url, "resend_interval": "1h", "retries": 0}]}})
    evaluator = right.get_alert_evaluator()
    (down,) = evaluator.evaluate().deliveries
    assert not down.ok
    assert down.error is not None
    assert "Connection refused" in down.error
    alertmanager.start()
    (back,) = evaluator.evaluate().deliveries  # within the hour: sent because nothing got through
    assert back.ok
    assert [a["labels"]["severity"] for a in alertmanager.alerts()] == ["critical"]
    assert evaluator.evaluate().deliveries == []  # delivered: now the resend interval holds


def test_an_undelivered_resolution_is_sent_again(make_factory: Any, log_dir: Path,
                                                 alertmanager: Alertmanager) -> None:
    """Alertmanager down when the alert resolves: the resolution goes out at the next evaluation."""
    factory = make_factory(extra={"alerts": {"rules": [SLOW_MODEL], "notifiers": [
        {"type": "alertmanager", "url": alertmanager.url, "resend_interval": "1h", "retries": 0}]}})
    evaluator = factory.get_alert_evaluator()
    _traffic(log_dir, "big", 3.0, 20)
    assert [d.ok for d in evaluator.evaluate().deliveries] == [True]
    assert len(alertmanager.alerts()) == 1
    alertmanager.stop()
    _traffic(log_dir, "big", 0.1, 600)
    resolved = evaluator.evaluate()
    assert [t["event"] for t in resolved.transitions] == ["resolved"]
    assert [d.ok for d in resolved.deliveries] == [False]
    alertmanager.start()  # it forgot everything on restart; the resolution is sent anyway
    assert [d.ok for d in evaluator.evaluate().deliveries] == [True]
    assert evaluator.evaluate().deliveries == []
    assert alertmanager.alerts() == []


# --------------------------------------------------------------------------- the webhook's body


def test_webhook_body_alert_posts_the_raw_alert(factory: Any, log_dir: Path,
                                                capture_server: Callable[..., CaptureServer]) -> None:
    """`body: alert` sends the alert object itself; `body: slack` (the default) the Slack message."""
    raw, slack = capture_server(), capture_server()
    settings = settings_from_mapping({"alerts": {
        "rules": [{"name": "silence", "module": "llm", "expr": "count < 1", "severity": "error"}],
        "notifiers": [{"type": "webhook", "url": raw.url, "body": "alert"}, {"type": "webhook", "url": slack.url}]},
    }).alerts
    evaluator = AlertEvaluator(settings, log_dir, writer=factory.get_writer("alerts"), sleep=lambda s: None)
    evaluator.evaluate(1_800_000_000.0)
    (alert,) = [json.loads(body) for _, _, body in raw.requests]
    assert (alert["event"], alert["rule"], alert["severity"], alert["value"]) == ("firing", "silence", "error", 0.0)
    assert "text" not in alert
    (message,) = [json.loads(body) for _, _, body in slack.requests]
    assert message["text"].startswith("[ERROR] silence")
    assert message["alert"] == alert


def test_a_webhook_that_answers_non_2xx_reports_its_reason(factory: Any, log_dir: Path) -> None:
    """A receiver's error text is kept in the delivery's error (a Slack body sent to Alertmanager: 400)."""
    require("prometheus-alertmanager", "alertmanager")
    folder = log_dir.parent / "am-webhook"
    folder.mkdir()
    manager = Alertmanager(folder, "http://127.0.0.1:9/unused")
    manager.start()
    try:
        settings = settings_from_mapping({"alerts": {
            "rules": [{"name": "silence", "module": "llm", "expr": "count < 1", "severity": "error"}],
            "notifiers": [{"type": "webhook", "url": manager.url + "/api/v2/alerts", "retries": 0}]}}).alerts
        evaluator = AlertEvaluator(settings, log_dir, writer=factory.get_writer("alerts"), sleep=lambda s: None)
        (delivery,) = evaluator.evaluate().deliveries
    finally:
        manager.stop()
    assert not delivery.ok
    assert delivery.error is not None
    assert delivery.error.startswith("HTTP 400")
    assert "cannot unmarshal object" in delivery.error
