"""Alert rules evaluated from the log files, their state on disk, and their notifiers.

    from infrastructure.monitoring.alerts import AlertEvaluator
    evaluation = AlertEvaluator(settings.alerts, settings.logging.log_dir, writer=writer).evaluate()
"""

from __future__ import annotations

from .engine import STATE_FILE, AlertEvaluator, Evaluation, describe_rules
from .notifiers import Delivery, deliver, email_message, slack_payload

__all__ = [
    "STATE_FILE",
    "AlertEvaluator",
    "Delivery",
    "Evaluation",
    "deliver",
    "describe_rules",
    "email_message",
    "slack_payload",
]
