"""One query plan, every aggregate defined once, whatever runs it.

A question (filters, a time window, group-by fields, an optional time bucket, the
aggregates asked for) is parsed once into a ``QueryPlan``. The plan says which
per-group *figures* must be computed — a count, a sum of a field, a list of
percentiles of a field, … — and ``AGGREGATES`` says, once for each aggregate, which
figures it needs and how its value follows from them. An engine only knows how to
compute figures: DuckDB over the local files (``duck.py``) or a ClickHouse cluster
filled by the shipper. The same plan therefore gives the same answer wherever it runs:
percentiles are exact everywhere (linear interpolation between the two closest ranks,
DuckDB's ``quantile_cont``, ClickHouse's ``quantileExactInclusive``, numpy's default).

Fields are read the way each use needs, the way ``read_json`` types a column: a field
compared with numbers or aggregated as a number is read as a number (numeric strings and
booleans convert, anything else is NULL), a field compared with ``true``/``false`` as a
boolean, anything else — group keys included — as text (a number shows as its JSON text,
``12`` or ``2.5``). A field used several ways is read once per way (``field_roles``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from .spec import Aggregate, Condition

__all__ = ["AGGREGATES", "OTHER", "Figure", "QueryPlan", "build_rows", "field_roles", "suspicious_fields"]

OTHER: Final = "__other__"
"""The group key of every group folded away beyond ``max_groups``."""


@dataclass(frozen=True, slots=True)
class Figure:
    """One number (or list) an engine computes per group.

    ``kind`` is one of ``count``, ``first``/``last`` (min/max timestamp), ``errors``
    (records with ``success`` false), ``judged`` (records with a readable ``success``),
    ``n``/``sum``/``min``/``max`` of a numeric ``field``, ``quantiles`` of a field at
    ``qs``, ``latest`` (the text of ``field`` in the newest record that has it) and
    ``count_if`` (records matching ``condition``).
    """

    kind: str
    field: str | None = None
    qs: tuple[float, ...] = ()
    condition: Condition | None = None


Figures = Mapping[Figure, Any]


@dataclass(frozen=True, slots=True)
class _Kind:
    figures: Callable[[Aggregate, QueryPlan], tuple[Figure, ...]]
    value: Callable[[Aggregate, QueryPlan, Figures, float | None], Any]


def _count_figures(_a: Aggregate, _p: QueryPlan) -> tuple[Figure, ...]:
    return (Figure("count"),)


def _num_figures(kind: str) -> Callable[[Aggregate, QueryPlan], tuple[Figure, ...]]:
    def figures(a: Aggregate, _p: QueryPlan) -> tuple[Figure, ...]:
        return Figure("n", a.field), Figure(kind, a.field)

    return figures


def _whole(total: Any) -> Any:
    """A whole number reads as an int (token sums print ``366051``, not ``366051.0``)."""
    if isinstance(total, float) and total.is_integer() and abs(total) < 2**53:
        return int(total)
    return total


def _sum(a: Aggregate, _p: QueryPlan, f: Figures, _s: float | None) -> Any:
    return _whole(f[Figure("sum", a.field)]) if f[Figure("n", a.field)] else None


def _avg(a: Aggregate, _p: QueryPlan, f: Figures, _s: float | None) -> Any:
    n = f[Figure("n", a.field)]
    return f[Figure("sum", a.field)] / n if n else None


def _extreme(kind: str) -> Callable[[Aggregate, QueryPlan, Figures, float | None], Any]:
    def value(a: Aggregate, _p: QueryPlan, f: Figures, _s: float | None) -> Any:
        return _whole(f[Figure(kind, a.field)]) if f[Figure("n", a.field)] else None

    return value


def _quantile_figure(a: Aggregate, p: QueryPlan) -> tuple[Figure, ...]:
    return (Figure("quantiles", a.field, p.quantiles_of(str(a.field))),)


def _percentile(a: Aggregate, p: QueryPlan, f: Figures, _s: float | None) -> Any:
    qs = p.quantiles_of(str(a.field))
    values = f[Figure("quantiles", a.field, qs)]
    return None if values is None else values[qs.index(float(a.q or 0.0))]


def _latest(a: Aggregate, _p: QueryPlan, f: Figures, _s: float | None) -> Any:
    text = f[Figure("latest", a.field)]
    if text is None:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
    return value if value.__class__ in (int, float) else text


def _rate(_a: Aggregate, _p: QueryPlan, f: Figures, seconds: float | None) -> Any:
    return f[Figure("count")] / seconds if seconds else None


def _error_rate(_a: Aggregate, _p: QueryPlan, f: Figures, _s: float | None) -> Any:
    judged = f[Figure("judged")]
    return f[Figure("errors")] / judged if judged else None


AGGREGATES: Final[Mapping[str, _Kind]] = {
    "count": _Kind(_count_figures, lambda _a, _p, f, _s: f[Figure("count")]),
    "errors": _Kind(lambda _a, _p: (Figure("errors"),), lambda _a, _p, f, _s: f[Figure("errors")]),
    "error_rate": _Kind(lambda _a, _p: (Figure("errors"), Figure("judged")), _error_rate),
    "rate": _Kind(lambda _a, _p: (Figure("count"), Figure("first"), Figure("last")), _rate),
    "sum": _Kind(_num_figures("sum"), _sum),
    "avg": _Kind(_num_figures("sum"), _avg),
    "min": _Kind(_num_figures("min"), _extreme("min")),
    "max": _Kind(_num_figures("max"), _extreme("max")),
    "percentile": _Kind(_quantile_figure, _percentile),
    "latest": _Kind(lambda a, _p: (Figure("latest", a.field),), _latest),
    "count_if": _Kind(lambda a, _p: (Figure("count_if", condition=a.condition),),
                      lambda a, _p, f, _s: f[Figure("count_if", condition=a.condition)]),
}
"""Each aggregate once: the figures it needs, and its value from them (and the span in seconds)."""


@dataclass(frozen=True)
class QueryPlan:
    """What to compute: ``[since, until)``, the filters, the group keys (plus a time bucket of
    ``width`` seconds), the aggregates; at most ``max_groups`` groups, the rest folded into
    one ``__other__`` group."""

    conditions: tuple[Condition, ...] = ()
    aggregates: tuple[Aggregate, ...] = (Aggregate("count"),)
    keys: tuple[str, ...] = ()
    width: float | None = None
    since: float | None = None
    until: float | None = None
    max_groups: int = 10_000
    figures: tuple[Figure, ...] = field(init=False)
    """Every figure the aggregates need, each once, ``count`` always first."""

    def __post_init__(self) -> None:
        wanted: dict[Figure, None] = {Figure("count"): None}
        for agg in self.aggregates:
            for figure in AGGREGATES[agg.kind].figures(agg, self):
                wanted[figure] = None
        object.__setattr__(self, "figures", tuple(wanted))

    def quantiles_of(self, name: str) -> tuple[float, ...]:
        """The percentiles asked of ``name``, in the order asked (one figure computes them all)."""
        qs: dict[float, None] = {}
        for a in self.aggregates:
            if a.kind == "percentile" and a.field == name and a.q is not None:
                qs[float(a.q)] = None
        return tuple(qs)

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.aggregates]

    @property
    def group_names(self) -> list[str]:
        """The row keys that name a group: the group-by fields, then ``bucket`` when bucketed."""
        return [*self.keys, *(["bucket"] if self.width else [])]

    def fields(self) -> list[str]:
        """Every record field the plan reads (for reports of a field that occurs nowhere)."""
        names: dict[str, None] = {}
        for c in self.conditions:
            names[c.field] = None
        for k in self.keys:
            names[k] = None
        for agg in self.aggregates:
            if agg.field:
                names[agg.field] = None
            if agg.condition is not None:
                names[agg.condition.field] = None
        return list(names)


def suspicious_fields(plan: QueryPlan, groups: Mapping[tuple[Any, ...], Figures]) -> list[str]:
    """Fields the plan names whose every figure came out empty: perhaps misspelt (``modle``),
    perhaps legitimately absent from the window. An engine then checks whether each occurs
    in any record of the window at all. Nothing matched: every field is a suspect."""
    fields = [f for f in plan.fields() if f != "timestamp"]
    if not groups or not any(figures.get(Figure("count")) for figures in groups.values()):
        return fields
    suspects: dict[str, None] = {}
    for i, key in enumerate(plan.keys):
        if all(k[i] is None for k in groups):
            suspects[key] = None
    for f in plan.figures:
        values = [figures.get(f) for figures in groups.values()]
        if f.kind in ("n", "quantiles", "latest") and all(v in (None, 0) for v in values):
            suspects[str(f.field)] = None
        elif f.kind == "count_if" and f.condition is not None and not any(values):
            suspects[f.condition.field] = None
        elif f.kind == "judged" and not any(values):
            suspects["success"] = None
    return list(suspects)


def field_roles(plan: QueryPlan) -> dict[str, frozenset[str]]:
    """``field -> {"num", "bool", "text"}``: each way the plan reads a field. A field read one way
    is read as that type; one read several ways (summed and grouped by, say) is read once per
    way, each with the conversion a column of that type alone would apply, so an aggregate never
    depends on what else the question asks of the same field."""
    roles: dict[str, set[str]] = {"timestamp": {"num"}}

    def role(name: str, kind: str) -> None:
        if name != "timestamp":
            roles.setdefault(name, set()).add(kind)

    for key in plan.keys:
        role(key, "text")
    conditions = [*plan.conditions, *(f.condition for f in plan.figures if f.condition is not None)]
    for c in conditions:
        values = c.value if c.op == "in" else (c.value,)
        for v in values:
            if c.op in ("<", "<=", ">", ">=") or v.__class__ in (int, float):
                role(c.field, "num")
            elif v is True or v is False:
                role(c.field, "bool")
            else:
                role(c.field, "text")
    for f in plan.figures:
        if f.kind in ("n", "sum", "min", "max", "quantiles"):
            role(str(f.field), "num")
        elif f.kind == "latest":
            role(str(f.field), "text")
        elif f.kind in ("errors", "judged"):
            role("success", "bool")
    return {name: frozenset(kinds) for name, kinds in roles.items()}


def build_rows(plan: QueryPlan, groups: Iterable[tuple[tuple[Any, ...], Figures]]) -> list[dict[str, Any]]:
    """Result rows from each group's figures, sorted by their group keys (buckets in time order)."""
    out = []
    for key, figures in sorted(groups, key=lambda kv: _sort_key(kv[0])):
        if not figures[Figure("count")]:
            continue
        row: dict[str, Any] = dict(zip(plan.keys, key, strict=False))
        if plan.width:
            start = key[-1]
            row["bucket"] = start if start == OTHER else _iso(start)
        seconds = plan.width or _span(plan, figures)
        for agg in plan.aggregates:
            row[agg.name] = AGGREGATES[agg.kind].value(agg, plan, figures, seconds)
        out.append(row)
    return out


def _span(plan: QueryPlan, figures: Figures) -> float | None:
    lo = plan.since if plan.since is not None else figures.get(Figure("first"))
    hi = plan.until if plan.until is not None else figures.get(Figure("last"))
    if lo is None or hi is None:
        return None
    span = hi - lo
    return span if span > 0 else None


def _sort_key(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((v == OTHER, v is None, type(v).__name__, v if v is not None else 0) for v in key)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def order_rows(rows: list[dict[str, Any]], order_by: str | None, descending: bool,
               limit: int | None) -> list[dict[str, Any]]:
    """``order_by`` a key or an aggregate (absent values last, the ``__other__`` row always last),
    then the first ``limit`` rows."""
    if order_by is not None:
        present = [r for r in rows if r.get(order_by) is not None and r.get(order_by) != OTHER]
        absent = [r for r in rows if r.get(order_by) is None or r.get(order_by) == OTHER]
        present.sort(key=lambda r: r[order_by], reverse=descending)
        rows = present + absent
        other = [r for r in rows if OTHER in r.values()]
        rows = [r for r in rows if OTHER not in r.values()] + other
    return rows if limit is None else rows[:limit]

