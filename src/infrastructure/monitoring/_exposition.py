"""The Prometheus text exposition format (0.0.4), written in one place.

Both ways out in Prometheus text use it: the live ``/metrics`` of ``monitoring serve``
(``exporters/prometheus.py``) and ``monitoring export --format prometheus``
(``query/reports.py``). A ``Family`` is one metric name with its ``# HELP`` and
``# TYPE`` and its samples; ``render`` writes families in the order given, leaving out
the empty ones, so a scrape never shows a ``# TYPE`` line without a sample.

What the format demands and this module guarantees:

* metric and label names match ``[a-zA-Z_:][a-zA-Z0-9_:]*`` / ``[a-zA-Z_][a-zA-Z0-9_]*``
  (anything else becomes ``_``; label names starting with ``__`` are reserved by
  Prometheus and get a leading ``x``);
* label values escape ``\\``, ``"`` and newlines; a label is written once per sample;
* numbers are ``NaN``, ``+Inf``, ``-Inf``, integers without a ``.0`` or ``repr`` floats;
* a histogram's ``_bucket`` lines are cumulative, end with ``le="+Inf"`` and agree with
  ``_count``; a summary's quantiles are written only when known;
* a sample may carry a timestamp (milliseconds since the epoch): a gauge read from a
  log line says when it was true, not when it was scraped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

__all__ = ["CONTENT_TYPE", "Family", "Labels", "escape", "format_value", "label_name", "label_text", "labels_of",
           "metric_name", "render"]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

Labels = tuple[tuple[str, str], ...]
"""Label pairs in the order they are written."""

_KINDS: Final = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})
_NAME_BAD: Final = re.compile(r"[^a-zA-Z0-9_:]")
_LABEL_BAD: Final = re.compile(r"[^a-zA-Z0-9_]")
_LABEL_OK: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def metric_name(name: str) -> str:
    """``name`` made valid as a metric name (``gen_ai.tokens`` -> ``gen_ai_tokens``)."""
    cleaned = _NAME_BAD.sub("_", name)
    return "_" + cleaned if not cleaned or cleaned[0].isdigit() else cleaned


def label_name(name: str) -> str:
    """``name`` made valid as a label name (``gen_ai.model`` -> ``gen_ai_model``, ``2xx`` -> ``_2xx``),
    kept out of the ``__`` names Prometheus reserves (``__name__`` -> ``x__name__``)."""
    if _LABEL_OK.fullmatch(name) and not name.startswith("__"):
        return name
    cleaned = _LABEL_BAD.sub("_", name)
    if not cleaned or cleaned[0].isdigit():
        cleaned = "_" + cleaned
    return "x" + cleaned if cleaned.startswith("__") else cleaned


def label_text(value: Any) -> str:
    """A record's field as a label value, before escaping: ``None`` is empty, booleans as JSON spells them."""
    if value.__class__ is str:
        return str(value)
    if value is None:
        return ""
    return str(value).lower() if isinstance(value, bool) else str(value)


def escape(text: str) -> str:
    """A label value escaped for the text format."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def labels_of(pairs: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> Labels:
    """Label pairs from a mapping or pairs of any values (``None`` -> empty, ``True`` -> ``true``)."""
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    return tuple((str(k), label_text(v)) for k, v in items)


def format_value(value: float) -> str:
    """A sample value as Prometheus writes it (``3``, ``0.25``, ``1e+20``, ``NaN``, ``+Inf``)."""
    if value != value:  # NaN is the one value unequal to itself
        return "NaN"
    if value in (math.inf, -math.inf):
        return "+Inf" if value > 0 else "-Inf"
    if isinstance(value, int):
        return str(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(float(value))


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def _render_labels(labels: Labels) -> str:
    if not labels:
        return ""
    seen: set[str] = set()
    parts = []
    for name, value in labels:
        key = label_name(name)
        if key in seen:
            continue  # the format allows each label once per sample: the first one given wins
        seen.add(key)
        parts.append(f'{key}="{escape(value)}"')
    return "{" + ",".join(parts) + "}"


class Family:
    """One metric: its name, type and help, and its samples as lines.

        requests = Family("llm_requests_total", "counter", "LLM requests read from the logs.")
        requests.add(60, (("model", "gpt-4o"),))
        render([requests])
    """

    __slots__ = ("help", "kind", "lines", "name")

    def __init__(self, name: str, kind: str, help_text: str) -> None:
        if kind not in _KINDS:
            raise ValueError(f"metric type must be one of {sorted(_KINDS)}, got {kind!r}")
        self.name = metric_name(name)
        self.kind = kind
        self.help = help_text
        self.lines: list[str] = []

    def add(self, value: Any, labels: Labels = (), *, suffix: str = "", timestamp: float | None = None) -> None:
        """One sample; a value that is not a number (``None``, text, a boolean) is left out.

        ``timestamp`` is in seconds since the epoch (written in milliseconds)."""
        number = _number(value)
        if number is None:
            return
        line = f"{self.name}{suffix}{_render_labels(labels)} {format_value(number)}"
        if timestamp is not None and math.isfinite(timestamp):
            line += f" {int(timestamp * 1000)}"
        self.lines.append(line)

    def histogram(self, labels: Labels, bounds: Sequence[float], counts: Sequence[float], total: float) -> None:
        """A histogram's samples from per-bucket (not cumulative) ``counts``: one per bound, then
        the count above the last bound; ``total`` is the sum of the observed values."""
        if len(counts) != len(bounds) + 1:
            raise ValueError(f"a histogram needs {len(bounds) + 1} counts (one per bound and +Inf), "
                             f"got {len(counts)}")
        running = 0.0
        for bound, n in zip((*bounds, math.inf), counts, strict=True):
            running += n
            le = "+Inf" if bound == math.inf else format_value(float(bound))
            self.add(running, (*labels, ("le", le)), suffix="_bucket")
        self.add(total, labels, suffix="_sum")
        self.add(running, labels, suffix="_count")

    def summary(self, labels: Labels, quantiles: Mapping[float, Any], total: Any, count: Any) -> None:
        """A summary's samples: each known quantile, then ``_sum`` and ``_count`` (both or neither)."""
        for q, value in quantiles.items():
            self.add(value, (*labels, ("quantile", format_value(float(q)))))
        if _number(total) is not None and _number(count) is not None:
            self.add(total, labels, suffix="_sum")
            self.add(count, labels, suffix="_count")

    def render(self) -> str:
        if not self.lines:
            return ""
        return f"# HELP {self.name} {_help(self.help)}\n# TYPE {self.name} {self.kind}\n" + "\n".join(self.lines) + "\n"


def _help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def render(families: Iterable[Family]) -> str:
    """The families as one exposition, in the order given; empty ones are left out. A name
    given twice is written once, its samples merged under the first HELP and TYPE; a
    second family of that name with another type is left out (one type per name)."""
    merged: dict[str, Family] = {}
    for family in families:
        first = merged.get(family.name)
        if first is None:
            merged[family.name] = family
        elif first is not family and first.kind == family.kind:
            first.lines.extend(family.lines)
    return "".join(f.render() for f in merged.values())
