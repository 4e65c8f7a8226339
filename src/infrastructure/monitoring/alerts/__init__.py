"""Alert rules evaluated from the log files, their state on disk, and their notifiers.

    from infrastructure.monitoring.alerts import AlertEvaluator
    evaluation = AlertEvaluator(settings.alerts, settings.logging.log_dir, writer=writer, slos=settings.slos,
                                labels=settings.global_labels).evaluate()
"""

from __future__ import annotations

from .engine import STATE_FILE, AlertEvaluator, Evaluation, describe_rules
from .notifiers import (
    Delivery,
    alertmanager_alert,
    deliver,
    deliver_group,
    email_message,
    group_body,
    pagerduty_event,
    post_alerts,
    slack_payload,
)

__all__ = [
    "STATE_FILE",
    "AlertEvaluator",
    "Delivery",
    "Evaluation",
    "alertmanager_alert",
    "deliver",
    "deliver_group",
    "describe_rules",
    "email_message",
    "group_body",
    "pagerduty_event",
    "post_alerts",
    "slack_payload",
]
