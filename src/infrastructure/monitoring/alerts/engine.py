"""Evaluate alert rules against the log files and remember what fires, on disk.

A rule is one of three kinds (see ``AlertRule``): a threshold on a query's aggregate
over a sliding window ending now (per group with ``group_by``), an SLO's burn rate over
a long and a short window (both must exceed the factor), or an anomaly of any series a
query can produce (per group). An alert moves through

    inactive ──condition──► pending ──held for ``for``──► firing ──condition gone──► resolved

and every move is one JSON line in ``alerts.log`` (``operation: "alert"``), as is every
notification attempt (``operation: "notification"``). Which alert is pending or firing,
when it last notified and what is still to be sent lives in ``.alerts_state.json``
beside the logs, replaced atomically after each evaluation, so a restart neither forgets
a firing alert nor notifies it again; a ``flock`` on ``.alerts.lock`` lets one process
evaluate at a time when every worker runs the scheduler.

What is due to notify: an alert that fires (unless the same alert notified less than
its cooldown ago — a flapping alert does not page every minute), again while it keeps
firing once per cooldown, and its resolution after having notified. Due changes are
grouped by rule, as Alertmanager groups by ``alertname``: the changes of one rule go out
as one notification listing them all (per notifier, after routing); a rule's first
change waits ``group_wait`` for others to join it, later ones ``group_interval`` after
the rule's previous notification. A change that no notifier could deliver stays due and
is tried again at the next evaluation. Routes (``alerts.routes``) choose the notifiers
of each alert from its labels.

Alertmanager is told the state instead, on its own cadence: after the rules have run,
every firing alert not sent to it for ``resend_interval`` goes in one POST, valid for
four resend intervals (``endsAt``, as Prometheus does, so an alert whose evaluator died
ends by itself), and an alert that stopped firing is sent once more with its real
``endsAt``. What each Alertmanager last got is kept per alert in the state file; a
failed POST leaves it unchanged, so the next evaluation sends it again. Alertmanager
does its own grouping, so ``group_wait``/``group_interval`` do not apply to it.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from .._statefile import exclusive, load_state, save_state
from ..ops_config import AlertmanagerNotifier, AlertRule, AlertSettings, Notifier, PagerDutyNotifier, SloTarget
from ..query.anomaly import grouped_series_values, judge
from ..query.engine import LogParser
from ..query.source import LogSource
from ..query.spec import parse_agg
from ..schema import ALERTS_MODULE, ALERTS_STATE_FILE
from .notifiers import Delivery, _wanted, alertmanager_alert, deliver_group, notifier_name, post_alerts
from .slo import burn_rate

__all__ = ["STATE_FILE", "AlertEvaluator", "Evaluation", "current_alerts", "describe_rules"]

_log = logging.getLogger("infrastructure.monitoring.alerts")

STATE_FILE: Final = ALERTS_STATE_FILE
LOCK_FILE: Final = ".alerts.lock"
_STATE_VERSION: Final = 1
_SYNC: Final = "alertmanager"
"""Key of an alert's state: Alertmanager notifier name -> when it last got the alert firing."""
_DUE: Final = "due"
"""Key of an alert's state: the notification it still owes (an event), until one notifier took it."""
_VALID_FOR: Final = 4
"""A firing alert sent to Alertmanager stays active for this many resend intervals (Prometheus: 4)."""
_UP: Final = frozenset({"spike", "shift_up"})
_OWN_FIELDS: Final = frozenset({"host", "timestamp", "fired_at", "service_name", "environment"})
"""Event fields ``alerts.log`` lines have already (the writer adds host and the global labels)."""


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
    notifications: int = 0
    """Messages sent (one per notifier per group; PagerDuty: one per alert)."""

    @property
    def firing(self) -> list[dict[str, Any]]:
        return [a for a in self.alerts if a["state"] == "firing"]


@dataclass(frozen=True, slots=True)
class _Seen:
    """One group's observation: its labels, the value shown, the records counted, whether the
    condition holds (``None``: no data), and what else the notification says."""

    labels: dict[str, Any]
    value: float | None
    count: int
    holds: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


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

        evaluator = AlertEvaluator(settings.alerts, settings.logging.log_dir, writer=pool.get("alerts"),
                                   slos=settings.slos, labels=settings.global_labels)
        evaluation = evaluator.evaluate()      # None when another process is evaluating
        evaluation.firing                      # [{"rule": ..., "labels": ..., "value": ...}, ...]

    ``slos`` are the targets burn-rate rules name; ``labels`` (``service_name``,
    ``environment``) go into every notification and route.
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
        external_url: str | None = None,
        slos: Sequence[SloTarget] = (),
        labels: Mapping[str, str] | None = None,
        parser: LogSource | None = None,
    ) -> None:
        self.settings = settings
        self.log_dir = Path(log_dir)
        self._local = LogParser(self.log_dir, threads=1)
        self.parser: LogSource = parser if parser is not None else self._local
        """Where the rules read the records: the folder, or a ClickHouse table of the whole fleet
        (``fleet.reader.ClickHouseParser``); the state and the transitions stay in ``log_dir``."""
        self._writer = writer
        self._clock = clock
        self._sleep = sleep
        self.host = host or socket.gethostname()
        self.state_path = self.log_dir / STATE_FILE
        self._state_mode = state_mode
        self.generator_url = external_url.rstrip("/") + "/" if external_url else None
        """The dashboard (``server.external_url``): the link alerts carry in Alertmanager and PagerDuty."""
        self.slos = {s.name: s for s in slos}
        self.labels = {k: v for k, v in (labels or {}).items() if v}
        self._anomalies: dict[str, tuple[float, dict[str, _Seen]]] = {}
        """Per anomaly rule: the end of the last whole window judged, and what was seen then."""

    # ------------------------------------------------------------------ reading

    def current(self) -> list[dict[str, Any]]:
        """Pending and firing alerts as of the last evaluation (from the state file)."""
        return current_alerts(self.log_dir)

    def recent(self, *, hours: float = 24.0, limit: int = 50) -> list[dict[str, Any]]:
        """The latest transitions from ``alerts.log``, newest first."""
        if not self._local.families(ALERTS_MODULE):
            return []
        lines = [r for r in self._local.records(ALERTS_MODULE, last=hours * 3600) if r.get("operation") == "alert"]
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
            groups: dict[str, dict[str, Any]] = state.get("groups", {}) if same else {}
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
            self._notify_groups(alerts, groups, at, result)
            self._sync_alertmanagers(alerts, at, result)
            self._forget_old(alerts, groups, at)
            save_state(self.state_path, {"version": _STATE_VERSION, "evaluated_at": at, "alerts": alerts,
                                         "groups": groups}, mode=self._state_mode)
            result.alerts = [a for a in alerts.values() if a["state"] in ("pending", "firing")]
            return result

    def _observe(self, rule: AlertRule, at: float) -> dict[str, _Seen]:
        if rule.kind == "burn_rate":
            return self._observe_burn(rule, at)
        if rule.kind == "anomaly":
            return self._observe_anomaly(rule, at)
        return self._observe_threshold(rule, at)

    def _observe_threshold(self, rule: AlertRule, at: float) -> dict[str, _Seen]:
        """Group key -> what the window shows (value ``None``: no data)."""
        agg = parse_agg(rule.agg)
        rows: list[dict[str, Any]] = []
        if self.parser.families(rule.module):  # no file yet: nothing recorded, which `count < 1` is about
            rows = self.parser.query(rule.module, operation=rule.operation, where=rule.where,
                                     since=at - rule.window, until=at, group_by=rule.group_by,
                                     aggs=[agg, "count"], max_groups=1000, check_fields=False).rows
        observed: dict[str, _Seen] = {}
        for row in rows:
            labels = {k: row.get(k) for k in rule.group_by}
            count = int(row.get("count") or 0)
            value = row.get(agg.name)
            if count < rule.min_count:
                value = None
            number = None if value is None else float(value)
            observed[_key(rule, labels)] = _Seen(labels, number, count, number is not None and rule.holds(number))
        if not rule.group_by and not observed:
            value = 0.0 if rule.zero_when_empty and rule.min_count == 0 else None
            observed[_key(rule, {})] = _Seen({}, value, 0, value is not None and rule.holds(value))
        return observed

    def _observe_burn(self, rule: AlertRule, at: float) -> dict[str, _Seen]:
        """Both burn rates above the factor; the value is the lower of the two (what must exceed it)."""
        slo = self.slos.get(str(rule.slo))
        if slo is None:
            raise LookupError(f"no SLO named {rule.slo!r} was given to the evaluator (slos=...)")
        long_burn, events, bad = burn_rate(self.parser, slo, at - rule.window, at)
        short_burn, _, _ = burn_rate(self.parser, slo, at - float(rule.short_window or 0), at)
        extra = {"slo": slo.name, "objective": slo.objective, "target": slo.target, "short_window": rule.short_window,
                 "burn_rate_long": long_burn, "burn_rate_short": short_burn, "bad": bad}
        if long_burn is None or short_burn is None or events < rule.min_count:
            return {_key(rule, {}): _Seen({}, None, events, False, extra)}
        value = min(long_burn, short_burn)
        return {_key(rule, {}): _Seen({}, value, events, rule.holds(value), extra)}

    def _observe_anomaly(self, rule: AlertRule, at: float) -> dict[str, _Seen]:
        """Per group, the anomaly of the latest whole windows; judged once per window (cached)."""
        end = math.floor(at / rule.window) * rule.window
        cached = self._anomalies.get(rule.name)
        if cached is not None and cached[0] == end:
            return cached[1]
        series = grouped_series_values(
            self.parser, rule.module, rule.agg, window=rule.window, count=rule.baseline + rule.sustain, now=at,
            operation=rule.operation, where=rule.where, group_by=rule.group_by, min_count=rule.min_count,
            zero_when_empty=rule.zero_when_empty)
        observed: dict[str, _Seen] = {}
        for key, values in series.items():
            labels = dict(zip(rule.group_by, key, strict=True))
            found = judge(rule.name, values, baseline=rule.baseline, k=rule.threshold, sustain=rule.sustain)
            latest = values[-1][1]
            if found is not None and (rule.direction == "both" or (found.kind in _UP) == (rule.direction == "up")):
                extra = {"anomaly": found.kind, "observed": found.value, "baseline_mean": found.baseline_mean,
                         "baseline_std": found.baseline_std, "window_start": found.window_start}
                observed[_key(rule, labels)] = _Seen(labels, found.z, 0, True, extra)
            else:
                observed[_key(rule, labels)] = _Seen(labels, None if latest is None else 0.0, 0, False,
                                                     {"anomaly": None, "observed": latest})
        self._anomalies[rule.name] = (end, observed)
        return observed

    def _step(self, rule: AlertRule, observed: dict[str, _Seen], alerts: dict[str, dict[str, Any]], at: float,
              result: Evaluation) -> None:
        keys = set(observed) | {k for k, a in alerts.items() if a.get("rule") == rule.name}
        cooldown = self.settings.cooldown_of(rule)
        for key in sorted(keys):
            seen = observed.get(key) or _Seen(alerts.get(key, {}).get("labels", {}), None, 0)
            alert = alerts.get(key)
            state = alert["state"] if alert else "inactive"
            if seen.holds:
                if state in ("inactive", "resolved"):
                    alert = alerts[key] = {**(alert or {}), "rule": rule.name, "labels": seen.labels,
                                           "severity": rule.severity, "state": "pending", "since": at}
                    state = "pending"
                    if rule.hold > 0:
                        self._transition("pending", rule, alert, seen, at, result)
                assert alert is not None
                alert["value"], alert["count"], alert["evaluated_at"] = seen.value, seen.count, at
                alert["extra"] = seen.extra
                if state == "pending" and at - alert["since"] >= rule.hold:
                    alert["state"], alert["fired_at"] = "firing", at
                    event = self._transition("firing", rule, alert, seen, at, result)
                    due = alert.get(_DUE)
                    if due is not None and due["event"] == "resolved":  # never sent: receivers still see it firing
                        del alert[_DUE]
                        alert["notified_firing"] = True
                    if at - alert.get("last_notified", float("-inf")) >= cooldown:
                        self._queue(alert, event, at)
                elif state == "firing" and at - alert.get("last_notified", float("-inf")) >= cooldown:
                    self._queue(alert, self._event("firing", rule, alert, seen, at) | {"repeat": True}, at)
            elif alert is not None and state in ("pending", "firing"):
                alert["value"], alert["count"], alert["evaluated_at"] = seen.value, seen.count, at
                alert["extra"] = seen.extra or alert.get("extra", {})
                if state == "firing":
                    alert["state"], alert["resolved_at"] = "resolved", at
                    event = self._transition("resolved", rule, alert, seen, at, result)
                    alert.pop(_DUE, None)  # a firing not sent yet has nothing to resolve
                    if alert.get("notified_firing"):
                        alert["notified_firing"] = False
                        self._queue(alert, event, at)
                else:
                    del alerts[key]  # pending that never fired: nothing to remember

    def _queue(self, alert: dict[str, Any], event: dict[str, Any], at: float) -> None:
        """Owe ``event`` to the notifiers; a later event of a firing alert refreshes the one owed."""
        due = alert.get(_DUE)
        if due is not None and due["event"] == "firing" and event["event"] == "firing":
            alert[_DUE] = {**event, "repeat": due.get("repeat", False), "queued_at": due["queued_at"]}
            return
        alert[_DUE] = {**event, "queued_at": at}

    def _event(self, kind: str, rule: AlertRule, alert: dict[str, Any], seen: _Seen, at: float) -> dict[str, Any]:
        event = {
            "event": kind, "rule": rule.name, "severity": rule.severity, "labels": alert["labels"],
            "value": seen.value, "count": seen.count, "expr": rule.expr, "expr_agg": rule.agg, "op": rule.op,
            "threshold": rule.threshold, "window": rule.window, "for": rule.hold, "since": alert["since"],
            "query_module": rule.module, "query_operation": rule.operation, "description": rule.description,
            "rule_kind": rule.kind, **seen.extra, **self.labels, "host": self.host, "timestamp": at,
        }
        if alert.get("fired_at") is not None:
            event["fired_at"] = alert["fired_at"]
        return event

    def _transition(self, kind: str, rule: AlertRule, alert: dict[str, Any], seen: _Seen, at: float,
                    result: Evaluation) -> dict[str, Any]:
        event = self._event(kind, rule, alert, seen, at)
        result.transitions.append(event)
        self._write("alert", **{k: v for k, v in event.items() if k not in _OWN_FIELDS}, evaluated_at=at)
        return event

    # ------------------------------------------------------------------ notifying

    def _route_labels(self, rule: AlertRule, alert: dict[str, Any]) -> dict[str, Any]:
        """What routes match on: the rule's name, severity, module and operation, the global
        labels, then the group's labels."""
        return {"rule": rule.name, "alertname": rule.name, "severity": rule.severity, "module": rule.module,
                "operation": rule.operation, **self.labels, **(alert.get("labels") or {})}

    def _destinations(self, rule: AlertRule, alert: dict[str, Any]) -> tuple[Notifier, ...]:
        return self.settings.route(self._route_labels(rule, alert))

    def _notify_groups(self, alerts: dict[str, dict[str, Any]], groups: dict[str, dict[str, Any]], at: float,
                       result: Evaluation) -> None:
        """Send each rule's owed events, as one notification per notifier, when the group's wait is over."""
        rules = {r.name: r for r in self.settings.rules}
        owed: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for key in sorted(alerts):
            alert = alerts[key]
            if _DUE in alert and alert.get("rule") in rules:
                owed.setdefault(alert["rule"], []).append((key, alert))
        for name, items in owed.items():
            rule = rules[name]
            wait, interval = self.settings.group_timing(rule)
            group = groups.setdefault(name, {})
            first = min(float(a[_DUE].get("queued_at", at)) for _, a in items)
            ready = first + wait if "last_sent" not in group else max(first, group["last_sent"] + interval)
            if at < ready:
                continue
            self._send_group(rule, items, group, at, result)

    def _send_group(self, rule: AlertRule, items: list[tuple[str, dict[str, Any]]], group: dict[str, Any],
                    at: float, result: Evaluation) -> None:
        by_notifier: dict[str, tuple[Notifier, list[dict[str, Any]]]] = {}
        target: Notifier
        nowhere: set[int] = set()
        for _, alert in items:
            targets = [n for n in self._destinations(rule, alert) if not isinstance(n, AlertmanagerNotifier)]
            if not any(_wanted(alert[_DUE], n.min_severity) for n in targets):
                nowhere.add(id(alert))  # nobody to tell: nothing stays owed (and nothing counts as told)
                alert.pop(_DUE)
                continue
            for target in targets:
                by_notifier.setdefault(target.name, (target, []))[1].append(alert)
        told: set[int] = set()
        for notifier, members in by_notifier.values():
            wanted = [a for a in members if _wanted(a[_DUE], notifier.min_severity)]
            events = [{k: v for k, v in a[_DUE].items() if k != "queued_at"} for a in members]
            deliveries = deliver_group(notifier, events, sleep=self._sleep, generator_url=self.generator_url)
            # PagerDuty: one delivery per alert, in order; the others: one message for all
            covers = [[a] for a in wanted] if isinstance(notifier, PagerDutyNotifier) else [wanted]
            for delivery, covered in zip(deliveries, covers, strict=False):
                if delivery.skipped:
                    continue
                result.deliveries.append(delivery)
                result.notifications += 1
                self._log_delivery(delivery, covered)
                if delivery.ok:
                    told.update(id(a) for a in covered)
        for _, alert in items:
            if id(alert) in nowhere or id(alert) not in told:
                continue  # not sent anywhere: owed still, tried again at the next evaluation
            event = alert.pop(_DUE)
            if event["event"] == "firing":
                alert["last_notified"] = at
                alert["notified_firing"] = True
        if told:
            group["last_sent"] = at

    def _log_delivery(self, delivery: Delivery, alerts: Iterable[dict[str, Any]]) -> None:
        for alert in alerts:
            event = alert[_DUE]
            self._write("notification", rule=event["rule"], event=event["event"], labels=event["labels"],
                        severity=event["severity"], notifier=delivery.notifier, success=delivery.ok,
                        attempts=delivery.attempts, error_message=delivery.error)
        if not delivery.ok:
            _log.warning("alerts: %s failed after %d attempts: %s", delivery.notifier, delivery.attempts,
                         delivery.error)

    def _forget_old(self, alerts: dict[str, dict[str, Any]], groups: dict[str, dict[str, Any]], at: float) -> None:
        """Resolved alerts are kept only as long as their cooldown can still matter or they owe a
        notification; a rule's group timing only while the rule has alerts."""
        rules = {r.name: r for r in self.settings.rules}
        for key in list(alerts):
            alert = alerts[key]
            rule = rules.get(alert.get("rule", ""))
            if rule is None:
                del alerts[key]  # the rule was removed from the config (Alertmanager ends it by itself)
            elif alert["state"] == "resolved" and not alert.get(_SYNC) and _DUE not in alert and \
                    at - alert.get("last_notified", alert.get("resolved_at", at)) >= self.settings.cooldown_of(rule):
                del alerts[key]
        active = {a["rule"] for a in alerts.values() if a["state"] in ("pending", "firing") or _DUE in a}
        for name in list(groups):
            if name not in active:
                del groups[name]  # the group is over: its next alert waits group_wait again

    # ------------------------------------------------------------------ Alertmanager

    def _sync_alertmanagers(self, alerts: dict[str, dict[str, Any]], at: float, result: Evaluation) -> None:
        """Send each Alertmanager what changed or is due: firing alerts every ``resend_interval``,
        ended ones once with their ``endsAt``; one POST per Alertmanager per evaluation."""
        targets = {notifier_name(n): n for n in self.settings.notifiers if isinstance(n, AlertmanagerNotifier)}
        for alert in alerts.values():  # forget Alertmanagers no longer configured
            synced = alert.get(_SYNC)
            if synced and not targets.keys() >= synced.keys():
                alert[_SYNC] = {k: v for k, v in synced.items() if k in targets}
        for name, notifier in targets.items():
            batch, sent = self._alertmanager_batch(name, notifier, alerts, at)
            if not batch:
                continue
            delivery = post_alerts(notifier, batch, sleep=self._sleep)
            result.deliveries.append(delivery)
            result.notifications += 1
            for alert, kind, first in sent:
                if delivery.ok:
                    synced = alert.setdefault(_SYNC, {})
                    if kind == "firing":
                        synced[name] = at
                    else:
                        synced.pop(name, None)
                if first or not delivery.ok:  # routine re-sends that got through are not logged
                    self._write("notification", rule=alert["rule"], event=kind, labels=alert["labels"],
                                severity=alert["severity"], notifier=name, success=delivery.ok,
                                attempts=delivery.attempts, error_message=delivery.error)
            if not delivery.ok:
                _log.warning("alerts: %s failed after %d attempts (%d alerts, sent again at the next evaluation): %s",
                             name, delivery.attempts, len(batch), delivery.error)

    def _alertmanager_batch(
        self, name: str, notifier: AlertmanagerNotifier, alerts: dict[str, dict[str, Any]], at: float,
    ) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], str, bool]]]:
        """The bodies due for one Alertmanager, and for each (alert, event, first send of this state)."""
        rules = {r.name: r for r in self.settings.rules}
        valid_for = _VALID_FOR * max(notifier.resend_interval, self.settings.interval_seconds)
        batch: list[dict[str, Any]] = []
        sent: list[tuple[dict[str, Any], str, bool]] = []
        for alert in alerts.values():
            rule = rules.get(alert.get("rule", ""))
            synced = alert.get(_SYNC) or {}
            last = synced.get(name)
            if rule is None or not _wanted(alert, notifier.min_severity) or \
                    notifier not in self._destinations(rule, alert):
                continue
            if alert["state"] == "firing":
                if last is not None and at - last < notifier.resend_interval:
                    continue
                kind, ends_at = "firing", at + valid_for
            elif last is None:
                continue
            elif at >= last + valid_for:  # the Alertmanager has ended it by itself
                del synced[name]
                continue
            else:
                kind, ends_at = "resolved", alert.get("resolved_at", at)
            seen = _Seen(alert["labels"], alert.get("value"), alert.get("count", 0), extra=alert.get("extra") or {})
            event = self._event(kind, rule, alert, seen, at)
            batch.append(alertmanager_alert(event, starts_at=alert.get("fired_at", alert["since"]),
                                            ends_at=ends_at, generator_url=self.generator_url))
            sent.append((alert, kind, last is None or kind == "resolved"))
        return batch, sent

    def _write(self, operation: str, **fields: Any) -> None:
        if self._writer is not None:
            self._writer.log_event(operation, **fields)


def describe_rules(rules: Iterable[AlertRule]) -> list[str]:
    """One line per rule, as ``monitoring validate-config`` and the scheduler show them."""
    out = []
    for r in rules:
        where = f"{r.module}{'/' + r.operation if r.operation else ''}"
        if r.kind == "burn_rate":
            what = f"{r.expr} over {r.window:g}s and {r.short_window or 0:g}s ({where})"
        elif r.kind == "anomaly":
            what = f"{where} {r.expr} in windows of {r.window:g}s against {r.baseline} before"
        else:
            what = f"{where} {r.expr} over {r.window:g}s"
        out.append(f"{r.name}: {what}{f' for {r.hold:g}s' if r.hold else ''} [{r.severity}]")
    return out
