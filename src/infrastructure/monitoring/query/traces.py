"""Recent traces rebuilt from ``trace_metrics.log``: one span per line, linked by parent id."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .source import LogSource

__all__ = ["SpanNode", "Trace", "recent_traces"]


@dataclass
class SpanNode:
    record: dict[str, Any]
    children: list[SpanNode] = field(default_factory=list)

    @property
    def start(self) -> float:
        return float(self.record.get("start_time") or self.record.get("timestamp") or 0.0)


@dataclass
class Trace:
    trace_id: str
    roots: list[SpanNode]
    spans: int
    end: float

    def walk(self) -> list[tuple[int, SpanNode]]:
        """(depth, span) in display order: each span before its children, siblings by start time."""
        out: list[tuple[int, SpanNode]] = []

        def visit(node: SpanNode, depth: int) -> None:
            out.append((depth, node))
            for child in sorted(node.children, key=lambda n: n.start):
                visit(child, depth + 1)

        for root in sorted(self.roots, key=lambda n: n.start):
            visit(root, 0)
        return out


def recent_traces(parser: LogSource, *, limit: int = 10, trace_id: str | None = None) -> list[Trace]:
    """The ``limit`` traces that ended last (or the one named), newest first."""
    if "trace" not in parser.modules():
        return []
    if trace_id is not None:
        wanted = {trace_id}
    else:
        ends: dict[str, float] = {}
        for r in parser.records("trace", where=["operation=span"]):
            tid = r.get("trace_id")
            if isinstance(tid, str):
                ends[tid] = max(ends.get(tid, 0.0), float(r.get("timestamp") or 0.0))
        wanted = set(sorted(ends, key=ends.__getitem__, reverse=True)[:limit])
    spans: dict[str, list[dict[str, Any]]] = {t: [] for t in wanted}
    for r in parser.records("trace", where=["operation=span"]):
        tid = r.get("trace_id")
        if tid in spans:
            spans[tid].append(r)
    traces = []
    for tid, records in spans.items():
        if not records:
            continue
        nodes = {r.get("span_id"): SpanNode(r) for r in records}
        roots: list[SpanNode] = []
        for node in nodes.values():
            parent = nodes.get(node.record.get("parent_span_id"))
            (parent.children if parent is not None and parent is not node else roots).append(node)
        traces.append(Trace(tid, roots, len(records), max(float(r.get("timestamp") or 0.0) for r in records)))
    return sorted(traces, key=lambda t: t.end, reverse=True)
