"""The log parser: answers, reports and exports computed straight from the log files.

    from infrastructure.monitoring.query import LogParser
    result = LogParser("logs").query("llm", last="1h", group_by="model",
                                     aggs=["count", "error_rate", "p95:response_time"])
    for row in result.rows: ...

It reads files, never the writers' memory: it knows the file naming and the record
schema (``schema.py``) and nothing else about the write path.
"""

from __future__ import annotations

from .engine import LogParser, QueryResult, SkippedLine, SkipReport
from .plan import QueryPlan
from .spec import Aggregate, Condition, QueryError, parse_agg, parse_where

__all__ = [
    "Aggregate",
    "Condition",
    "LogParser",
    "QueryError",
    "QueryPlan",
    "QueryResult",
    "SkipReport",
    "SkippedLine",
    "parse_agg",
    "parse_where",
]
