"""Deliver alert transitions: a JSON webhook (Slack-compatible) and SMTP email.

A delivery never raises: it returns a ``Delivery`` saying whether it got through, after
how many attempts and with what error, and the evaluator writes that to ``alerts.log``.
Retries back off exponentially (``backoff``, ``2 * backoff`` …) and every attempt has a
timeout, so the worst case of one delivery is bounded and known in advance. Deliveries
run in the evaluation job's thread, never in the application's.
"""

from __future__ import annotations

import os
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Final

import orjson

from ..ops_config import SEVERITIES, EmailNotifier, WebhookNotifier

__all__ = ["Delivery", "deliver", "email_message", "slack_payload"]

_COLORS: Final = {"critical": "#b00020", "error": "#e8590c", "warning": "#f2c94c", "info": "#2f80ed",
                  "resolved": "#2e7d32"}


@dataclass(frozen=True, slots=True)
class Delivery:
    notifier: str
    ok: bool
    attempts: int
    error: str | None = None
    skipped: bool = False
    """True when the alert's severity is below the notifier's ``min_severity``."""


def _title(alert: dict[str, Any]) -> str:
    labels = alert.get("labels") or {}
    where = " ".join(f"{k}={v}" for k, v in labels.items())
    state = "RESOLVED" if alert["event"] == "resolved" else alert["severity"].upper()
    return f"[{state}] {alert['rule']}" + (f" ({where})" if where else "")


def _value_text(alert: dict[str, Any]) -> str:
    value = alert.get("value")
    shown = "no data" if value is None else f"{value:.6g}"
    return (f"{alert['expr_agg']} = {shown} "
            f"(threshold {alert['op']} {alert['threshold']:g}, window {alert['window']:g}s)")


def slack_payload(alert: dict[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook body; other receivers read the raw ``alert`` object."""
    color = _COLORS["resolved" if alert["event"] == "resolved" else alert["severity"]]
    fields = [{"title": "value", "value": _value_text(alert), "short": False},
              {"title": "module", "value": str(alert.get("module")), "short": True},
              {"title": "host", "value": str(alert.get("host")), "short": True}]
    text = _title(alert)
    if alert.get("description"):
        text += f"\n{alert['description']}"
    return {"text": text, "attachments": [{"color": color, "title": _title(alert), "fields": fields,
                                           "ts": int(alert["timestamp"])}], "alert": alert}


def email_message(alert: dict[str, Any], notifier: EmailNotifier) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = _title(alert)
    msg["From"] = notifier.sender
    msg["To"] = ", ".join(notifier.to)
    lines = [_title(alert), "", _value_text(alert)]
    if alert.get("description"):
        lines += ["", alert["description"]]
    lines += ["", orjson.dumps(alert, option=orjson.OPT_INDENT_2).decode()]
    msg.set_content("\n".join(lines))
    return msg


def _wanted(alert: dict[str, Any], min_severity: str) -> bool:
    return SEVERITIES.index(alert["severity"]) <= SEVERITIES.index(min_severity)


def _retrying(name: str, retries: int, backoff: float, attempt: Callable[[], None],
              sleep: Callable[[float], None]) -> Delivery:
    error = None
    for n in range(1, retries + 2):
        try:
            attempt()
            return Delivery(name, True, n)
        except Exception as exc:  # noqa: BLE001 - any failure is reported, never raised
            error = f"{type(exc).__name__}: {exc}"
            if n <= retries:
                sleep(backoff * 2 ** (n - 1))
    return Delivery(name, False, retries + 1, error)


def _post(notifier: WebhookNotifier, body: bytes) -> None:
    request = urllib.request.Request(notifier.url, data=body, method="POST",  # noqa: S310 - http(s) checked at load
                                     headers={"Content-Type": "application/json", **notifier.headers})
    with urllib.request.urlopen(request, timeout=notifier.timeout) as response:  # noqa: S310
        response.read(65536)
        if not 200 <= response.status < 300:
            raise urllib.error.HTTPError(notifier.url, response.status, "not a 2xx answer", response.headers, None)


def _send(notifier: EmailNotifier, message: EmailMessage) -> None:
    password = notifier.password
    if notifier.password_env:
        password = os.environ.get(notifier.password_env)
        if password is None:
            raise RuntimeError(f"environment variable {notifier.password_env} (the SMTP password) is not set")
    context = ssl.create_default_context()
    smtp: smtplib.SMTP = (smtplib.SMTP_SSL(notifier.host, notifier.port, timeout=notifier.timeout, context=context)
                          if notifier.ssl else smtplib.SMTP(notifier.host, notifier.port, timeout=notifier.timeout))
    with smtp:
        if notifier.starttls:
            smtp.starttls(context=context)
        if notifier.username:
            smtp.login(notifier.username, password or "")
        smtp.send_message(message)


def deliver(notifier: WebhookNotifier | EmailNotifier, alert: dict[str, Any], *,
            sleep: Callable[[float], None] = time.sleep) -> Delivery:
    """Send one alert event through one notifier; never raises."""
    if isinstance(notifier, WebhookNotifier):
        name = f"webhook {notifier.url.split('?')[0]}"
        if not _wanted(alert, notifier.min_severity):
            return Delivery(name, True, 0, skipped=True)
        body = orjson.dumps(slack_payload(alert))
        return _retrying(name, notifier.retries, notifier.backoff, lambda: _post(notifier, body), sleep)
    name = f"email {notifier.host}:{notifier.port}"
    if not _wanted(alert, notifier.min_severity):
        return Delivery(name, True, 0, skipped=True)
    message = email_message(alert, notifier)
    return _retrying(name, notifier.retries, notifier.backoff, lambda: _send(notifier, message), sleep)
