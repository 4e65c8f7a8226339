"""Development output: each record also printed to stderr as one readable line, and each trace as
an indented tree when its root span ends (``logging.console: true`` or ``MONITORING_CONSOLE=1``).

    12:00:01.532 llm    llm_call gpt-4o-2024-08-06  openai  812.0 ms  tokens 120/35  ok  span=5f1c2a9e
    12:00:01.533 trace  span llm_call gpt-4o  [client]  812.4 ms  ok  trace=4bf92f35 parent=00f067aa  gen_ai...
    trace 4bf92f3577b34da6a3ce929d0e0e4736  3 spans, 1.20 s
      handle  [server]  1.20 s  ok  (my.module 1.2.0)
        llm_call gpt-4o  [client]  812.4 ms  ok  (infrastructure.monitoring 0.1.0)
        tool_call read_file  [client]  3.1 ms  ERROR FileNotFoundError: /x

A span's scope (its tracer's name and version) is shown where it differs from its parent's.

It is the last processor of every writer's chain, beside the file, never instead of it: the
line it prints is the record the file receives. Switched off, it is not in the chain at all.
To draw a tree it keeps the finished spans of the traces whose root has not ended yet (a few
fields each; at most 64 traces of 512 spans, the oldest trace dropped first): the one thing in
the package held in memory between records, and only while developing.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any, Final, TextIO

import orjson

from .interfaces import EventDict, WrappedLogger

__all__ = ["ConsoleExporter"]

_QUIET: Final = frozenset({"timestamp", "metric_type", "operation", "module", "pid", "host", "service_name",
                           "environment", "trace_id", "span_id", "parent_span_id", "duration", "response_time",
                           "success", "model", "provider", "tool_name", "task_type", "prompt_tokens",
                           "completion_tokens", "total_tokens"})
"""Fields shown in the head of the line (or not at all): the rest follow as ``key=value``."""
_SPAN_SHOWN: Final = frozenset({"name", "kind", "status", "status_message", "start_time", "scope_name",
                                "scope_version", "scope_schema_url", "attributes", "events", "links"})
_MAX_TRACES: Final = 64
_MAX_SPANS: Final = 512
_MAX_VALUE: Final = 80
_RED, _DIM, _RESET = "\033[31m", "\033[2m", "\033[0m"


def _ms(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return ""
    if seconds >= 1:
        return f"{seconds:,.2f} s"
    return f"{seconds * 1000:.1f} ms" if seconds >= 0.001 else f"{seconds * 1e6:.0f} µs"


def _value(value: Any) -> str:
    if isinstance(value, str):
        text = value if value and " " not in value else repr(value)
    elif isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, (dict, list, tuple)):
        try:
            text = orjson.dumps(value, default=str).decode()
        except TypeError:
            text = str(value)
    else:
        text = str(value)
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 1] + "…"


class _Node:
    __slots__ = ("children", "record")

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record
        self.children: list[_Node] = []


class ConsoleExporter:
    """A processor with structlog's signature that prints each record and passes it on unchanged.

    ``stream`` defaults to the ``sys.stderr`` of the moment of each print (so a redirection, or
    pytest's capture, sees it). Printing never fails the record: an error here is swallowed and
    the file still gets its line."""

    def __init__(self, stream: TextIO | None = None, *, color: bool | None = None) -> None:
        self._stream = stream
        self._color = color
        self._lock = threading.Lock()
        self._traces: dict[str, list[dict[str, Any]]] = {}

    def __call__(self, _logger: WrappedLogger, _name: str, record: EventDict) -> EventDict:
        with contextlib.suppress(Exception):  # a development aid never costs the application its record
            self._print(record)
        return record

    # ------------------------------------------------------------------ one record

    def _print(self, record: EventDict) -> None:
        stream = self._stream or sys.stderr
        color = self._color if self._color is not None else _is_tty(stream)
        span = record.get("operation") == "span" and "span_id" in record and "name" in record
        line = self._span_line(record, color) if span else self._record_line(record, color)
        tree = None
        if span:
            tree = self._collect(record, color)
        with self._lock:
            stream.write(line + "\n" + (tree or ""))
            stream.flush()

    def _stamp(self, record: EventDict, color: bool) -> str:
        stamp = record.get("timestamp")
        when = time.localtime(stamp if isinstance(stamp, (int, float)) else None)
        text = time.strftime("%H:%M:%S", when) + (f".{int((stamp % 1) * 1000):03d}" if isinstance(stamp, float) else "")
        module = str(record.get("module", "?"))
        return (f"{_DIM}{text}{_RESET} " if color else f"{text} ") + f"{module:<6} "

    def _record_line(self, record: EventDict, color: bool) -> str:
        parts = [str(record.get("operation", "?"))]
        for key in ("model", "tool_name", "task_type"):
            if record.get(key) is not None:
                parts[0] += f" {record[key]}"
        if record.get("provider"):
            parts.append(str(record["provider"]))
        took = _ms(record.get("duration", record.get("response_time")))
        if took:
            parts.append(took)
        if record.get("prompt_tokens") is not None or record.get("completion_tokens") is not None:
            parts.append(f"tokens {record.get('prompt_tokens')}/{record.get('completion_tokens')}")
        success = record.get("success")
        if success is not None:
            parts.append("ok" if success else (f"{_RED}FAILED{_RESET}" if color else "FAILED"))
        extra = [f"{k}={_value(v)}" for k, v in record.items() if k not in _QUIET and v is not None]
        if record.get("span_id"):
            extra.append(f"span={str(record['span_id'])[:8]}")
        return self._stamp(record, color) + "  ".join(parts) + ("  " + " ".join(extra) if extra else "")

    def _span_line(self, record: EventDict, color: bool) -> str:
        head = f"span {record.get('name')}  " + _summary(record, color)
        ids = f"trace={str(record.get('trace_id'))[:8]}"
        if record.get("parent_span_id"):
            ids += f" parent={str(record['parent_span_id'])[:8]}"
        attributes = record.get("attributes")
        shown = [f"{k}={_value(v)}" for k, v in attributes.items()] if isinstance(attributes, dict) else []
        shown += [f"{k}={_value(v)}" for k, v in record.items()
                  if k not in _QUIET and k not in _SPAN_SHOWN and v is not None]
        return self._stamp(record, color) + head + "  " + ids + ("  " + " ".join(shown) if shown else "")

    # ------------------------------------------------------------------ trees

    def _collect(self, record: EventDict, color: bool) -> str | None:
        """Keep the span until its trace's root ends; then the tree (``None`` while it has not)."""
        trace_id = str(record.get("trace_id"))
        kept = {k: record.get(k) for k in ("name", "kind", "duration", "status", "status_message", "span_id",
                                          "parent_span_id", "start_time", "scope_name", "scope_version")}
        with self._lock:
            spans = self._traces.pop(trace_id, None)  # popped and put back: the newest trace last
            if record.get("parent_span_id") is not None:
                spans = spans if spans is not None else []
                if len(spans) < _MAX_SPANS:
                    spans.append(kept)
                self._traces[trace_id] = spans
                while len(self._traces) > _MAX_TRACES:
                    del self._traces[next(iter(self._traces))]
                return None
        if not spans:
            return None  # a trace of one span: its line said it all
        return _tree(trace_id, kept, spans, color)


def _summary(record: Mapping[str, Any], color: bool) -> str:
    status = record.get("status", "ok")
    if status == "error":
        mark = "ERROR" + (f" {record['status_message']}" if record.get("status_message") else "")
        mark = f"{_RED}{mark}{_RESET}" if color else mark
    else:
        mark = str(status)
    return f"[{record.get('kind', 'internal')}]  {_ms(record.get('duration'))}  {mark}"


def _tree(trace_id: str, root: dict[str, Any], spans: list[dict[str, Any]], color: bool) -> str:
    nodes = {s["span_id"]: _Node(s) for s in spans}
    top = _Node(root)
    nodes[root["span_id"]] = top
    orphans: list[_Node] = []
    for node in list(nodes.values()):
        if node is top:
            continue
        parent = nodes.get(node.record.get("parent_span_id"))
        (parent.children if parent is not None and parent is not node else orphans).append(node)
    lines = [f"trace {trace_id}  {len(nodes)} spans, {_ms(root.get('duration'))}"]

    def visit(node: _Node, depth: int, outer: Any) -> None:
        r = node.record
        scope = (r.get("scope_name"), r.get("scope_version"))
        said = f"  ({' '.join(str(p) for p in scope if p)})" if scope[0] and scope != outer else ""
        lines.append(f"{'  ' * (depth + 1)}{r.get('name')}  {_summary(r, color)}{said}")
        for child in sorted(node.children, key=lambda n: n.record.get("start_time") or 0.0):
            visit(child, depth + 1, scope)

    visit(top, 0, None)
    for orphan in orphans:  # their parent was dropped (the trace outgrew the limit)
        visit(orphan, 1, None)
    return "\n".join(lines) + "\n"


def _is_tty(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
