"""Names shared by the write path and the read path.

The writer and every reader (query engine, cleaner, exporters) import these, so
the two sides can never disagree about a field name or a file name.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "ALERTS_MODULE",
    "ALERTS_STATE_FILE",
    "FIELD_ENVIRONMENT",
    "FIELD_HOST",
    "FIELD_INVALID",
    "FIELD_METRIC_TYPE",
    "FIELD_MODULE",
    "FIELD_OPERATION",
    "FIELD_PID",
    "FIELD_SERVICE",
    "FIELD_SUCCESS",
    "FIELD_TIMESTAMP",
    "FIELD_TRUNCATED",
    "MAX_NESTING",
    "METRIC_TYPES",
    "MODULE_NAME_RE",
    "TRUSTED_FIELDS",
    "WRITER_FIELDS",
    "default_file_name",
]

FIELD_TIMESTAMP: Final = "timestamp"
"""Epoch seconds as a float; always the first key of a line."""
FIELD_METRIC_TYPE: Final = "metric_type"
FIELD_OPERATION: Final = "operation"
FIELD_MODULE: Final = "module"
FIELD_SUCCESS: Final = "success"
FIELD_PID: Final = "pid"
FIELD_HOST: Final = "host"
FIELD_SERVICE: Final = "service_name"
"""The global label naming the application (``service_name`` / ``MONITORING_SERVICE``); only when set."""
FIELD_ENVIRONMENT: Final = "environment"
"""The global label naming the deployment (``environment`` / ``MONITORING_ENVIRONMENT``); only when set."""
FIELD_INVALID: Final = "invalid"
"""Maps a field name to why its value was rejected (fail-safe mode)."""
FIELD_TRUNCATED: Final = "truncated"
"""Lists the fields whose values were cut to keep the line under the size cap."""

WRITER_FIELDS: Final = frozenset(
    {FIELD_TIMESTAMP, FIELD_METRIC_TYPE, FIELD_OPERATION, FIELD_MODULE, FIELD_PID, FIELD_HOST, FIELD_SERVICE,
     FIELD_ENVIRONMENT}
)
"""Fields the writer sets itself: callers' fields with these names are kept as ``user_<name>``,
and the redactor never examines their values."""
TRUSTED_FIELDS: Final = WRITER_FIELDS | {"trace_id", "span_id", "parent_span_id"}
"""Fields whose values the package makes itself (writer fields, trace and span ids): the redactor
never examines them, so a fresh span id per span costs no screening."""

MAX_NESTING: Final = 32
"""Deeper values are written as ``"<max depth>"`` (by the redactor and the renderer alike)."""

METRIC_TYPES: Final = frozenset({"timer", "counter", "gauge", "event", "log"})

MODULE_NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""A module name becomes part of a file name: no separators, no leading dot."""



ALERTS_MODULE: Final = "alerts"
"""Alert transitions and notifications go to ``alerts.log``."""
ALERTS_STATE_FILE: Final = ".alerts_state.json"
"""Which alert is pending or firing, beside the logs (hidden: neither a family nor cleaned)."""


def default_file_name(module: str) -> str:
    """``llm`` -> ``llm_metrics.log``: the family's live file (``alerts`` -> ``alerts.log``)."""
    return "alerts.log" if module == ALERTS_MODULE else f"{module}_metrics.log"
