"""Evaluate alert rules against the log files and remember what fires, on disk.

Each rule is a query over a sliding window ending now; its aggregate is compared with
the threshold, per group when the rule has ``group_by``. An alert moves through

    inactive ──condition──► pending ──held for ``for``──► firing ──condition gone──► resolved

and every move is one JSON line in ``alerts.log`` (``operation: "alert"``), as is every
notification attempt (``operation: "notification"``). Which alert is pending or firing
and when it last notified lives in ``.alerts_state.json`` beside the logs, replaced
atomically after each evaluation, so a restart neither forgets a firing alert nor
notifies it again; a ``flock`` on ``.alerts.lock`` lets one process evaluate at a time
when every worker runs the scheduler.

Notifications: when an alert fires (unless the same alert notified less than its
cooldown ago — a flapping alert does not page every minute), again while it keeps
firing once per cooldown, and when it resolves after having notified. A notification
no notifier could deliver is tried again at the next evaluation.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from .._statefile import exclusive, load_state, save_state
from ..ops_config import AlertRule, AlertSettings
from ..query.engine import LogParser
from ..query.spec import parse_agg
from ..schema import ALERTS_MODULE, ALERTS_STATE_FILE
from .notifiers import Delivery, deliver

__all__ = ["STATE_FILE", "AlertEvaluator", "Evaluation", "current_alerts"]

_log = logging.getLogger("infrastructure.monitoring.alerts")

STATE_FILE: Final = ALERTS_STATE_FILE
LOCK_FILE: Final = ".alerts.lock"
_STATE_VERSION: Final = 1


@dataclass
class Evaluation:
    """What one evaluation saw and did."""

    at: float
    alerts: list[dict[str, Any]] = field(default_factory=list)
    """Every pending or firing alert after this evaluation."""
    transitions: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """Rules that could not be evaluated (``name: reason``); the others still were."""

    @property
    def firing(self) -> list[dict[str, Any]]:
        return [a for a in self.alerts if a["state"] == "firing"]


def _key(rule: AlertRule, labels: dict[str, Any]) -> str:
    return rule.name + ("|" + orjson.dumps(labels, option=orjson.OPT_SORT_KEYS).decode() if labels else "")


def current_alerts(log_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Pending and firing alerts of ``log_dir`` as its last evaluation left them."""
    alerts = load_state(Path(log_dir) / STATE_FILE).get("alerts", {})
    if not isinstance(alerts, dict):
        return []
    return [a for a in alerts.values() if isinstance(a, dict) and a.get("state") in ("pending", "firing")]


class AlertEvaluator:
    """Runs the rules of ``settings`` over the logs in ``log_dir``.

        evaluator = AlertEvaluator(settings.alerts, settings.logging.log_dir, writer=pool.get("alerts"))
        evaluation = evaluator.evaluate()      # None when another process is evaluating
        evaluation.firing                      # [{"rule": ..., "labels": ..., "value": ...}, ...]
    """

    def __init__(
        self,
        settings: AlertSettings,
        log_dir: str | os.PathLike[str],
        *,
        writer: Any = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        host: str | None = None,
        state_mode: int = 0o600,
    ) -> None:
        self.settings = settings
        self.log_dir = Path(log_dir)
        self.parser = LogParser(self.log_dir, threads=1)
        self._writer = writer
        self._clock = clock
        self._sleep = sleep
        self.host = host or socket.gethostname()
        self.state_path = self.log_dir / STATE_FILE
        self._state_mode = state_mode

    # ------------------------------------------------------------------ reading

    def current(self) -> list[dict[str, Any]]:
        """Pending and firing alerts as of the last evaluation (from the state file)."""
        return current_alerts(self.log_dir)

    def recent(self, *, hours: float = 24.0, limit: int = 50) -> list[dict[str, Any]]:
        """The latest transitions from ``alerts.log``, newest first."""
        if not self.parser.families(ALERTS_MODULE):
            return []
        lines = [r for r in self.parser.records(ALERTS_MODULE, last=hours * 3600) if r.get("operation") == "alert"]
        return lines[::-1][:limit]

    # ------------------------------------------------------------------ evaluating

    def evaluate(self, now: float | None = None, *, wait: bool = True) -> Evaluation | None:
        """Evaluate every rule once. ``None`` when ``wait`` is off and another process holds the lock."""
        with exclusive(self.log_dir / LOCK_FILE, wait=wait) as held:
            if not held:
                return None
            at = self._clock() if now is None else now
            state = load_state(self.state_path)
            same = state.get("version") == _STATE_VERSION
            alerts: dict[str, dict[str, Any]] = state.get("alerts", {}) if same else {}
            result = Evaluation(at)
            for rule in self.settings.rules:
                try:
                    observed = self._observe(rule, at)
                except Exception as exc:  # noqa: BLE001 - one broken rule must not stop the others
                    reason = f"{type(exc).__name__}: {exc}"
                    result.errors.append(f"{rule.name}: {reason}")
                    self._write("rule_error", rule=rule.name, error=reason)
                    continue
                self._step(rule, observed, alerts, at, result)
            self._forget_old(alerts, at)
            save_state(self.state_path, {"version": _STATE_VERSION, "evaluated_at": at, "alerts": alerts},
                       mode=self._state_mode)
            result.alerts = [a for a in alerts.values() if a["state"] in ("pending", "firing")]
            return result

    def _observe(self, rule: AlertRule, at: float) -> dict[str, tuple[dict[str, Any], float | None, int]]:
        """Group key -> (labels, value or None for "no data", records in the window)."""
        agg = parse_agg(rule.agg)
        rows: list[dict[str, Any]] = []
        if self.parser.families(rule.module):  # no file yet: nothing recorded, which `count < 1` is about
            rows = self.parser.query(rule.module, operation=rule.operation, where=rule.where,
                                     since=at - rule.window, until=at, group_by=rule.group_by,
                                     aggs=[agg, "count"], max_groups=1000).rows
        observed: dict[str, tuple[dict[str, Any], float | None, int]] = {}
        for row in rows:
            labels = {k: row.get(k) for k in rule.group_by}
            count = int(row.get("count") or 0)
            value = row.get(agg.name)
            if count < rule.min_count:
                value = None
            observed[_key(rule, labels)] = (labels, None if value is None else float(value), count)
        if not rule.group_by and not observed:
            observed[_key(rule, {})] = ({}, 0.0 if rule.zero_when_empty and rule.min_count == 0 else None, 0)
        return observed

    def _step(self, rule: AlertRule, observed: dict[str, tuple[dict[str, Any], float | None, int]],
              alerts: dict[str, dict[str, Any]], at: float, result: Evaluation) -> None:
        keys = set(observed) | {k for k, a in alerts.items() if a.get("rule") == rule.name}
        cooldown = self.settings.cooldown_of(rule)
        for key in sorted(keys):
            labels, value, count = observed.get(key, (alerts.get(key, {}).get("labels", {}), None, 0))
            holds = value is not None and rule.holds(value)
            alert = alerts.get(key)
            state = alert["state"] if alert else "inactive"
            if holds:
                if state in ("inactive", "resolved"):
                    alert = alerts[key] = {**(alert or {}), "rule": rule.name, "labels": labels,
                                           "severity": rule.severity, "state": "pending", "since": at}
                    state = "pending"
                    if rule.hold > 0:
                        self._transition("pending", rule, alert, value, count, at, result)
                assert alert is not None
                alert["value"], alert["count"], alert["evaluated_at"] = value, count, at
                if state == "pending" and at - alert["since"] >= rule.hold:
                    alert["state"], alert["fired_at"] = "firing", at
                    event = self._transition("firing", rule, alert, value, count, at, result)
                    if at - alert.get("last_notified", float("-inf")) >= cooldown:
                        self._notify(event, alert, at, result)
                elif state == "firing" and at - alert.get("last_notified", float("-inf")) >= cooldown:
                    event = self._event("firing", rule, alert, value, count, at) | {"repeat": True}
                    self._notify(event, alert, at, result)
            elif alert is not None and state in ("pending", "firing"):
                alert["value"], alert["count"], alert["evaluated_at"] = value, count, at
                if state == "firing":
                    alert["state"], alert["resolved_at"] = "resolved", at
                    event = self._transition("resolved", rule, alert, value, count, at, result)
                    if alert.get("notified_firing"):
                        alert["notified_firing"] = False
                        self._notify(event, alert, at, result, resolving=True)
                else:
                    del alerts[key]  # pending that never fired: nothing to remember

    def _event(self, kind: str, rule: AlertRule, alert: dict[str, Any], value: float | None, count: int,
               at: float) -> dict[str, Any]:
        return {
            "event": kind, "rule": rule.name, "severity": rule.severity, "labels": alert["labels"],
            "value": value, "count": count, "expr": rule.expr, "expr_agg": rule.agg, "op": rule.op,
            "threshold": rule.threshold, "window": rule.window, "for": rule.hold, "since": alert["since"],
            "query_module": rule.module, "query_operation": rule.operation, "description": rule.description,
            "host": self.host, "timestamp": at,
        }

    def _transition(self, kind: str, rule: AlertRule, alert: dict[str, Any], value: float | None, count: int,
                    at: float, result: Evaluation) -> dict[str, Any]:
        event = self._event(kind, rule, alert, value, count, at)
        result.transitions.append(event)
        self._write("alert", **{k: v for k, v in event.items() if k not in ("host", "timestamp")},
                    evaluated_at=at)
        return event

    def _notify(self, event: dict[str, Any], alert: dict[str, Any], at: float, result: Evaluation, *,
                resolving: bool = False) -> None:
        if not self.settings.notifiers:
            return
        sent = False
        for notifier in self.settings.notifiers:
            delivery = deliver(notifier, event, sleep=self._sleep)
            if delivery.skipped:
                continue
            result.deliveries.append(delivery)
            sent = sent or delivery.ok
            self._write("notification", rule=event["rule"], event=event["event"], labels=event["labels"],
                        severity=event["severity"], notifier=delivery.notifier, success=delivery.ok,
                        attempts=delivery.attempts, error_message=delivery.error)
            if not delivery.ok:
                _log.warning("alert %s: %s failed after %d attempts: %s", event["rule"], delivery.notifier,
                             delivery.attempts, delivery.error)
        if not resolving and sent:  # nothing got through: try again at the next evaluation
            alert["last_notified"] = at
            alert["notified_firing"] = True

    def _forget_old(self, alerts: dict[str, dict[str, Any]], at: float) -> None:
        """Resolved alerts are kept only as long as their cooldown can still matter."""
        rules = {r.name: r for r in self.settings.rules}
        for key in list(alerts):
            alert = alerts[key]
            rule = rules.get(alert.get("rule", ""))
            if rule is None:
                del alerts[key]  # the rule was removed from the config
            elif alert["state"] == "resolved" and at - alert.get("last_notified", alert.get("resolved_at", at)) \
                    >= self.settings.cooldown_of(rule):
                del alerts[key]

    def _write(self, operation: str, **fields: Any) -> None:
        if self._writer is not None:
            self._writer.log_event(operation, **fields)


def describe_rules(rules: Iterable[AlertRule]) -> list[str]:
    return [f"{r.name}: {r.module}{'/' + r.operation if r.operation else ''} {r.expr} over {r.window:g}s"
            f"{f' for {r.hold:g}s' if r.hold else ''} [{r.severity}]" for r in rules]
