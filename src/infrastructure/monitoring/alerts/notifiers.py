"""Deliver alert notifications: a JSON webhook (Slack-compatible or the raw alert), SMTP
email, PagerDuty's Events API v2, and Prometheus Alertmanager's API v2.

A notification carries one or several events of one rule (the evaluator groups the
alerts of a rule that change together, see ``engine.py``): a webhook or an email is one
message listing them all; PagerDuty gets one event per alert, each with its own stable
``dedup_key``, because an Events API v2 request holds one event.

A delivery never raises: it returns a ``Delivery`` saying whether it got through, after
how many attempts and with what error, and the evaluator writes that to ``alerts.log``.
Retries back off exponentially (``backoff``, ``2 * backoff`` …) and every attempt has a
timeout, so the worst case of one delivery is bounded and known in advance. Deliveries
run in the evaluation job's thread, never in the application's. Secrets given as
environment variables (``url_env``, ``routing_key_env``, ``password_env``) are read at
each delivery and never written anywhere: ``notifier_name`` shows the variable's name.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import smtplib
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Final

import orjson

from .._exposition import label_name
from ..ops_config import (
    SEVERITIES,
    AlertmanagerNotifier,
    EmailNotifier,
    Notifier,
    PagerDutyNotifier,
    WebhookNotifier,
    endpoint_of,
)

__all__ = ["Delivery", "alertmanager_alert", "dedup_key", "deliver", "deliver_group", "email_message", "group_body",
           "notifier_name", "pagerduty_event", "post_alerts", "slack_payload", "value_text"]

_COLORS: Final = {"critical": "#b00020", "error": "#e8590c", "warning": "#f2c94c", "info": "#2f80ed",
                  "resolved": "#2e7d32"}
_MAX_ATTACHMENTS: Final = 20
"""Slack shows at most this many alerts of a group one by one; the rest are counted."""
_PAGERDUTY_SEVERITY: Final = {"critical": "critical", "error": "error", "warning": "warning", "info": "info"}
"""Our severities are PagerDuty's (``payload.severity``)."""
_CLIENT: Final = "llm-telemetry-logs"


@dataclass(frozen=True, slots=True)
class Delivery:
    notifier: str
    ok: bool
    attempts: int
    error: str | None = None
    skipped: bool = False
    """True when the alert's severity is below the notifier's ``min_severity``."""


# --------------------------------------------------------------------------- texts


def _where(alert: Mapping[str, Any]) -> str:
    """``checkout-api/production`` (the global labels), or empty."""
    return "/".join(str(alert[k]) for k in ("service_name", "environment") if alert.get(k))


def _title(alert: Mapping[str, Any]) -> str:
    labels = alert.get("labels") or {}
    where = " ".join(f"{k}={v}" for k, v in labels.items())
    state = "RESOLVED" if alert["event"] == "resolved" else alert["severity"].upper()
    origin = _where(alert)
    return f"[{state}] {alert['rule']}" + (f" ({where})" if where else "") + (f" on {origin}" if origin else "")


def _group_title(events: Sequence[Mapping[str, Any]]) -> str:
    if len(events) == 1:
        return _title(events[0])
    first = events[0]
    firing = sum(1 for e in events if e["event"] != "resolved")
    resolved = len(events) - firing
    state = first["severity"].upper() if firing else "RESOLVED"
    counts = ", ".join(part for part in (f"{firing} firing" if firing else "",
                                         f"{resolved} resolved" if resolved else "") if part)
    origin = _where(first)
    return f"[{state}] {first['rule']}: {counts}" + (f" on {origin}" if origin else "")


def _shown(value: Any) -> str:
    return "no data" if value is None else f"{value:.6g}"


def value_text(alert: Mapping[str, Any]) -> str:
    """What was measured against what, in one line, for each kind of rule."""
    kind = alert.get("rule_kind", "threshold")
    if kind == "burn_rate":
        return (f"burn rate of SLO {alert.get('slo')}: {_shown(alert.get('burn_rate_long'))} over "
                f"{alert['window']:g}s and {_shown(alert.get('burn_rate_short'))} over "
                f"{alert.get('short_window') or 0:g}s (threshold {alert['op']} {alert['threshold']:g} in both)")
    if kind == "anomaly":
        found = alert.get("anomaly")
        if not found:
            return (f"{alert['expr_agg']}: no anomaly (|z| within {alert['threshold']:g} of the baseline, "
                    f"windows of {alert['window']:g}s)")
        return (f"{alert['expr_agg']} = {_shown(alert.get('observed'))}: {found}, z = {_shown(alert.get('value'))} "
                f"against a baseline of {_shown(alert.get('baseline_mean'))} (K {alert['threshold']:g}, "
                f"windows of {alert['window']:g}s)")
    return (f"{alert['expr_agg']} = {_shown(alert.get('value'))} "
            f"(threshold {alert['op']} {alert['threshold']:g}, window {alert['window']:g}s)")


def _module(alert: Mapping[str, Any]) -> str:
    return str(alert.get("query_module") or alert.get("module") or "")


def group_body(events: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The raw body of a notification (``body: alert``): the alert itself when it is alone, else
    the rule's fields with ``alerts`` listing each one (and how many fire and resolved)."""
    if len(events) == 1:
        return events[0]
    first = events[0]
    shared = {k: v for k, v in first.items() if k not in ("labels", "value", "count", "since", "event", "repeat")
              and all(e.get(k) == v for e in events)}
    firing = sum(1 for e in events if e["event"] != "resolved")
    return {"event": "firing" if firing else "resolved", **shared, "firing": firing,
            "resolved": len(events) - firing, "alerts": list(events)}


def slack_payload(alert: dict[str, Any] | Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A Slack incoming-webhook body for one alert or a group of one rule's alerts (one
    attachment each, at most 20); other receivers read the raw ``alert``."""
    events = [alert] if isinstance(alert, dict) else list(alert)
    attachments = []
    for event in events[:_MAX_ATTACHMENTS]:
        fields = [{"title": "value", "value": value_text(event), "short": False},
                  {"title": "module", "value": _module(event), "short": True},
                  {"title": "host", "value": str(event.get("host")), "short": True}]
        for key in ("service_name", "environment"):
            if event.get(key):
                fields.append({"title": key, "value": str(event[key]), "short": True})
        color = _COLORS["resolved" if event["event"] == "resolved" else event["severity"]]
        attachments.append({"color": color, "title": _title(event), "fields": fields, "ts": int(event["timestamp"])})
    if len(events) > _MAX_ATTACHMENTS:
        attachments.append({"color": _COLORS["info"], "title": f"… and {len(events) - _MAX_ATTACHMENTS} more",
                            "fields": [], "ts": int(events[-1]["timestamp"])})
    text = _group_title(events)
    if events[0].get("description"):
        text += f"\n{events[0]['description']}"
    return {"text": text, "attachments": attachments, "alert": group_body(events)}


def email_message(alert: dict[str, Any] | Sequence[dict[str, Any]], notifier: EmailNotifier) -> EmailMessage:
    """One mail for one alert or a group of one rule's alerts."""
    events = [alert] if isinstance(alert, dict) else list(alert)
    msg = EmailMessage()
    msg["Subject"] = _group_title(events)
    msg["From"] = notifier.sender
    msg["To"] = ", ".join(notifier.to)
    lines = [_group_title(events), ""]
    if len(events) == 1:
        lines.append(value_text(events[0]))
    else:
        lines += [f"- {_title(e)}: {value_text(e)}" for e in events]
    if events[0].get("description"):
        lines += ["", events[0]["description"]]
    lines += ["", orjson.dumps(group_body(events), option=orjson.OPT_INDENT_2).decode()]
    msg.set_content("\n".join(lines))
    return msg


def _wanted(alert: Mapping[str, Any], min_severity: str) -> bool:
    return SEVERITIES.index(alert["severity"]) <= SEVERITIES.index(min_severity)


# --------------------------------------------------------------------------- sending


class _RejectedError(Exception):
    """The receiver answered, but not with a 2xx: the message says its status and reason."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class _SecretMissingError(Exception):
    """The environment variable a notifier's secret comes from is not set (or not usable)."""


def _retrying(name: str, retries: int, backoff: float, attempt: Callable[[], None],
              sleep: Callable[[float], None], *, final: Callable[[Exception], bool] | None = None) -> Delivery:
    """``attempt`` until it succeeds, ``retries`` more times at most; ``final`` says which
    failures retrying cannot help (PagerDuty's 400: the event itself is wrong)."""
    error = None
    for n in range(1, retries + 2):
        try:
            attempt()
            return Delivery(name, True, n)
        except Exception as exc:  # noqa: BLE001 - any failure is reported, never raised
            error = str(exc) if isinstance(exc, (_RejectedError, _SecretMissingError)) else \
                f"{type(exc).__name__}: {exc}"
            if isinstance(exc, _SecretMissingError) or (final is not None and final(exc)):
                return Delivery(name, False, n, error)
            if n <= retries:
                sleep(backoff * 2 ** (n - 1))
    return Delivery(name, False, retries + 1, error)


def _post(url: str, headers: Mapping[str, str], timeout: float, body: bytes) -> None:
    """POST ``body``; anything but a 2xx answer raises, with the start of the receiver's reason."""
    request = urllib.request.Request(url, data=body, method="POST",  # noqa: S310 - http(s) checked before
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            response.read(65536)
            status = response.status
    except urllib.error.HTTPError as exc:
        reason = exc.read(300).decode("utf-8", "replace").strip() if exc.fp is not None else ""
        raise _RejectedError(f"HTTP {exc.code} {exc.reason}" + (f": {reason}" if reason else ""), exc.code) \
            from None
    if not 200 <= status < 300:
        raise _RejectedError(f"HTTP {status}: not a 2xx answer", status)


def _secret(variable: str, what: str) -> str:
    value = os.environ.get(variable)
    if not value:
        raise _SecretMissingError(f"environment variable {variable} ({what}) is not set")
    return value


def _url(notifier: WebhookNotifier | AlertmanagerNotifier | PagerDutyNotifier) -> str:
    """The notifier's URL, from the environment when ``url_env`` names a variable."""
    if not notifier.url_env:
        return notifier.url
    url = _secret(notifier.url_env, f"the {notifier.kind} URL").strip()
    if not re.match(r"^https?://[^\s/]+", url):
        raise _SecretMissingError(f"environment variable {notifier.url_env} does not hold an http:// or https:// "
                                  "URL")
    return url


def _send(notifier: EmailNotifier, message: EmailMessage) -> None:
    password = notifier.password
    if notifier.password_env:
        password = _secret(notifier.password_env, "the SMTP password")
    context = ssl.create_default_context()
    smtp: smtplib.SMTP = (smtplib.SMTP_SSL(notifier.host, notifier.port, timeout=notifier.timeout, context=context)
                          if notifier.ssl else smtplib.SMTP(notifier.host, notifier.port, timeout=notifier.timeout))
    with smtp:
        if notifier.starttls:
            smtp.starttls(context=context)
        if notifier.username:
            smtp.login(notifier.username, password or "")
        smtp.send_message(message)


def notifier_name(notifier: Notifier) -> str:
    """How ``alerts.log`` and the state file name a notifier: without the query string and
    the ``user:password@`` part of the URL, which may hold credentials, and by the name of
    its variable when the URL comes from the environment."""
    if isinstance(notifier, EmailNotifier):
        return f"email {notifier.host}:{notifier.port}"
    if notifier.url_env:
        return f"{notifier.kind} ${notifier.url_env}"
    parts = urllib.parse.urlsplit(notifier.url)
    return f"{notifier.kind} {parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


# --------------------------------------------------------------------------- PagerDuty


def dedup_key(alert: Mapping[str, Any]) -> str:
    """The alert's PagerDuty ``dedup_key``: the same for every event of one alert (its rule, its
    group's labels, the service and environment), so repeats update it and ``resolve`` closes it."""
    labels = orjson.dumps(alert.get("labels") or {}, option=orjson.OPT_SORT_KEYS).decode()
    key = "/".join(str(alert.get(k) or "") for k in ("service_name", "environment")) + f"/{alert['rule']}"
    key += "" if labels == "{}" else labels
    if len(key) <= 255:
        return key
    return key[:200] + "#" + hashlib.sha256(key.encode()).hexdigest()[:32]


def pagerduty_event(alert: Mapping[str, Any], routing_key: str, *, generator_url: str | None = None
                    ) -> dict[str, Any]:
    """One Events API v2 event: ``trigger`` for a firing alert, ``resolve`` for a resolved one."""
    if alert["event"] == "resolved":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key(alert)}
    details: dict[str, Any] = {**(alert.get("labels") or {}), "rule": alert["rule"], "expr": alert.get("expr"),
                               "value": alert.get("value"), "measured": value_text(alert)}
    for key in ("description", "service_name", "environment", "host", "query_module", "query_operation"):
        if alert.get(key):
            details[key] = alert[key]
    payload: dict[str, Any] = {
        "summary": f"{_title(alert)}: {value_text(alert)}"[:1024],
        "source": str(alert.get("host") or "unknown"),
        "severity": _PAGERDUTY_SEVERITY[alert["severity"]],
        "timestamp": _rfc3339(float(alert["timestamp"])),
        "component": _module(alert) or "monitoring",
        "class": str(alert["rule"]),
        "custom_details": details,
    }
    if alert.get("service_name"):
        payload["group"] = str(alert["service_name"])
    event: dict[str, Any] = {"routing_key": routing_key, "event_action": "trigger", "dedup_key": dedup_key(alert),
                             "payload": payload, "client": _CLIENT}
    if generator_url:
        event["client_url"] = generator_url
        event["links"] = [{"href": generator_url, "text": "monitoring dashboard"}]
    return event


def _pagerduty_final(exc: Exception) -> bool:
    """Retry on 429, 5xx and network errors, as PagerDuty asks; a 4xx other than 429 is final."""
    status = exc.status if isinstance(exc, _RejectedError) else None
    return status is not None and 400 <= status < 500 and status != 429


def _pagerduty(notifier: PagerDutyNotifier, events: Sequence[dict[str, Any]], sleep: Callable[[float], None],
               generator_url: str | None) -> list[Delivery]:
    name = notifier_name(notifier)
    try:
        url = _url(notifier)
        key = notifier.routing_key or _secret(str(notifier.routing_key_env), "the PagerDuty routing key")
    except _SecretMissingError as exc:
        return [Delivery(name, False, 1, str(exc)) for _ in events]
    out = []
    for alert in events:
        body = orjson.dumps(pagerduty_event(alert, key, generator_url=generator_url))
        out.append(_retrying(name, notifier.retries, notifier.backoff,
                             functools.partial(_post, url, notifier.headers, notifier.timeout, body),
                             sleep, final=_pagerduty_final))
    return out


# --------------------------------------------------------------------------- Alertmanager

def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _label_value(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def alertmanager_alert(alert: dict[str, Any], *, starts_at: float, ends_at: float | None = None,
                       generator_url: str | None = None) -> dict[str, Any]:
    """One alert in Alertmanager's API v2 schema (``postableAlert``).

    Labels identify it (Alertmanager deduplicates on them): ``alertname`` (the rule),
    ``severity``, the rule's ``module``, the evaluating ``host`` and the global labels
    ``service_name`` and ``environment`` when set, plus the group's labels (a group label
    named like one of these becomes ``group_<name>``; a missing group value is left out,
    as Prometheus does). Annotations are free text that the latest send replaces:
    ``summary``, ``description`` and ``value``.
    """
    fixed = {"alertname": str(alert["rule"]), "severity": str(alert["severity"]), "module": _module(alert),
             "host": str(alert.get("host")), "service_name": str(alert.get("service_name") or ""),
             "environment": str(alert.get("environment") or "")}
    labels = {k: v for k, v in fixed.items() if v}
    for name, value in (alert.get("labels") or {}).items():
        if value is None:
            continue
        label = label_name(str(name))  # Alertmanager takes Prometheus' label names
        labels["group_" + label if label in fixed else label] = _label_value(value)
    value = alert.get("value")
    annotations = {"summary": f"{alert['rule']}: {value_text(alert)}",
                   "value": "no data" if value is None else f"{value:.6g}"}
    if alert.get("description"):
        annotations["description"] = str(alert["description"])
    body: dict[str, Any] = {"labels": labels, "annotations": annotations, "startsAt": _rfc3339(starts_at)}
    if ends_at is not None:
        body["endsAt"] = _rfc3339(ends_at)
    if generator_url:
        body["generatorURL"] = generator_url
    return body


def post_alerts(notifier: AlertmanagerNotifier, alerts: Sequence[dict[str, Any]], *,
                sleep: Callable[[float], None] = time.sleep) -> Delivery:
    """POST ``alerts`` (``alertmanager_alert`` bodies) in one request; never raises."""
    name = notifier_name(notifier)
    try:
        endpoint = endpoint_of(_url(notifier))
    except _SecretMissingError as exc:
        return Delivery(name, False, 1, str(exc))
    body = orjson.dumps(list(alerts))
    return _retrying(name, notifier.retries, notifier.backoff,
                     lambda: _post(endpoint, notifier.headers, notifier.timeout, body), sleep)


# --------------------------------------------------------------------------- one notification


def deliver_group(notifier: Notifier, events: Sequence[dict[str, Any]], *,
                  sleep: Callable[[float], None] = time.sleep, generator_url: str | None = None) -> list[Delivery]:
    """Send the events of one rule through one notifier; never raises.

    Events below the notifier's ``min_severity`` are left out (one skipped ``Delivery`` when
    none is left). A webhook or an email is one message for all the events; PagerDuty one
    event each; Alertmanager one POST (without the re-sends the evaluator makes).
    """
    name = notifier_name(notifier)
    wanted = [e for e in events if _wanted(e, notifier.min_severity)]
    if not wanted:
        return [Delivery(name, True, 0, skipped=True)]
    if isinstance(notifier, PagerDutyNotifier):
        return _pagerduty(notifier, wanted, sleep, generator_url)
    if isinstance(notifier, AlertmanagerNotifier):
        bodies = [alertmanager_alert(e, starts_at=e.get("fired_at") or e["since"],
                                     ends_at=e["timestamp"] if e["event"] == "resolved" else None,
                                     generator_url=generator_url) for e in wanted]
        return [post_alerts(notifier, bodies, sleep=sleep)]
    if isinstance(notifier, WebhookNotifier):
        try:
            url = _url(notifier)
        except _SecretMissingError as exc:
            return [Delivery(name, False, 1, str(exc))]
        body = orjson.dumps(slack_payload(wanted) if notifier.body == "slack" else group_body(wanted))
        return [_retrying(name, notifier.retries, notifier.backoff,
                          lambda: _post(url, notifier.headers, notifier.timeout, body), sleep)]
    message = email_message(wanted, notifier)
    return [_retrying(name, notifier.retries, notifier.backoff, lambda: _send(notifier, message), sleep)]


def deliver(notifier: Notifier, alert: dict[str, Any], *,
            sleep: Callable[[float], None] = time.sleep) -> Delivery:
    """Send one alert event through one notifier; never raises (``deliver_group`` of one)."""
    return deliver_group(notifier, [alert], sleep=sleep)[0]
