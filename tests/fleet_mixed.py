"""A family whose fields take every type a typed column refuses, for the cluster's equal-answer tests.

Each record is written as a JSON line, spread over a ``.gz`` backup, a plain backup and the
live file, across a UTC midnight (two partitions). The values probe what the query side
must read alike from a file and from the table: numbers in text columns, strings in
number columns, booleans spelled as words or numbers, a field only nested in an object,
a nested key before the top-level one, a string holding ``,"key":``, a different
``module``, a non-string ``operation``, nulls, huge integers.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson

BASE = 1704151800.0
"""2024-01-01T23:30:00Z: half an hour before midnight."""

KNOWN_TEXT_DIFFERENCES = ("duration", "cost")
"""Fields whose *text* differs on purpose (docs/fleet.md): a whole number in a ``Float64`` column
reads ``2.0`` where the file says ``2``."""


def mixed_records() -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []

    def add(dt: float, **fields: Any) -> None:
        records.append({"timestamp": BASE + dt, "metric_type": "event", "module": "mixed", **fields})

    add(0, operation="op_a", model="m1", success=True, duration=0.5, prompt_tokens=10, flag="yes", score=3, note="x",
        host="h1")
    add(1, operation="op_a", model=7, success="no", duration="1.25", prompt_tokens=12.5, flag=1, score="4", host="h2")
    add(2, operation="op_b", success=1, duration=True, prompt_tokens="12", flag="off", score=True, host=12)
    add(3, operation="op_b", success="maybe", duration="fast", prompt_tokens=None, score=None, flag=None)
    add(4, operation=5, success=0, duration=2, cost=0, score=" 7 ")
    add(5, operation="op_a", module="other", success=" TRUE ", duration=2.0, cost=2.0, score="+2")
    add(6, operation="op_c", nested={"score": 100, "model": "nested", "flag": "no"}, score=2, flag=" Yes")
    add(7, operation="op_c", meta={"flag": "yes", "score": 50})
    add(8, operation="op_c", score="1e3", text='a,"score":99', flag="false", error="time out")
    add(9, operation="op_c", **{'weird"score': 5, "score": 6, "error": "Timeout"})
    add(10, operation="op_d", pid=2**63, big=1e20, score=[1, 2])
    add(11, operation="op_d", tags=["a", {"score": 5}], score={"x": 1}, error="rate limited")
    add(12, operation="op_d", score=-1.5, model="m1", success=False, error_type="boom", host="h1")
    add(13, operation="op_d", score="1_000", duration="+-2", success=" yes", flag="on", prompt_tokens="٣")
    add(1800, operation="op_a", model="m2", success=True, duration=0.75, score=1, host="h2")
    add(1801, operation="op_a", model="m2", success=False, duration=3.5, score=2.5, error_type=7)
    add(3600, operation="op_b", model="m1", success=True, duration=0.1, score="x")
    for i in range(40):
        add(100 + i, operation="op_e", model=f"bulk{i % 7}", success=i % 5 != 0, duration=(i * 37 % 11) / 10,
            score=i, seq=i, host=f"h{i % 3}")
    return records


def write_mixed(folder: Path) -> int:
    """The records as ``mixed_metrics.log.2.gz``, ``.1`` and the live file; returns how many."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [orjson.dumps(r) for r in mixed_records()]
    (folder / "mixed_metrics.log.2.gz").write_bytes(gzip.compress(b"\n".join(lines[:20]) + b"\n"))
    (folder / "mixed_metrics.log.1").write_bytes(b"\n".join(lines[20:40]) + b"\n")
    (folder / "mixed_metrics.log").write_bytes(b"\n".join(lines[40:]) + b"\n")
    return len(lines)
