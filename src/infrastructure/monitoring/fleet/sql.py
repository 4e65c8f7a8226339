"""A ``QueryPlan`` compiled to ClickHouse SQL: the third engine computing the plan's figures.

The local engines (``query/duck.py``, ``query/pyscan.py``) read each record's fields
from its JSON; here a field is read from the table the shipper fills (``schema.py``):
from its typed column when the value had the column's type, otherwise from ``extra``,
the JSON object of every other field, under its own name. Each field is read the way
``spec.as_number`` / ``as_bool`` / ``as_text`` read a JSON value, so a condition, a
group key or an aggregate means the same thing on both sides:

* as a number: numbers, booleans (1/0) and numeric strings (surrounding whitespace
  allowed), anything else NULL;
* as a boolean: booleans, numbers (non-zero is true) and the usual words (``yes``,
  ``off``, ``1`` …, any case, surrounding whitespace allowed);
* as text: a string as it is, any other value as its JSON text (``12``, ``2.5``,
  ``true``); a whole number of a ``Float64`` column shows as ``2.0``, as it does in
  a file written by this package.

Everything runs on the server, so only each group's figures cross the network: the
filters, the window (on the table's ``ORDER BY (module, operation, timestamp)`` and
its daily partitions), the buckets (``floor(timestamp / w) * w``), the groups with the
``__other__`` cap (the ``max_groups`` groups with most records, ties by key ascending,
absent keys last — the local rule), and every figure. Percentiles interpolate
linearly between the two closest ranks, as ``quantile_cont`` does: the current
dialect with ``quantilesExactInclusive``, the legacy one (18.16) sorting each group's
values (``arraySort(groupArray(x))``) and interpolating by the local formula.

**Reading ``extra``.** A field is taken only at the top level of the object, as written:
``visitParamExtractRaw`` (both dialects; 18.16 has nothing else) takes the first
``"key":`` at any depth, and ``JSONExtractRaw`` rewrites numbers (``2.0`` as ``2``,
``1e20`` in full), so the place is found here. The shipper writes ``extra`` compactly
with orjson, so a top-level key always follows ``{`` or ``,``: where the object has no
nested ``{``/``[`` the first ``,"key":`` is the one; otherwise the object is split at
each ``,"key":`` and the brackets outside strings counted before each place. Strings are
unescaped with ``JSONExtractString`` (current) or ``visitParamExtractString`` (18.16).

**Known differences.** A whole number in a ``Float64`` column (``duration``,
``response_time``, ``cost``) reads as text ``2.0`` also when the file wrote ``2``; a
field whose value is JSON ``null`` reads as absent, as locally, but ``records()`` leaves
it out; an ``operation`` of ``""`` reads as no operation; a
record without a ``module`` field reads with its family's name.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from ..query.plan import Figure, QueryPlan
from ..query.spec import Condition
from .schema import COLUMNS, CURRENT

__all__ = ["Fields", "PlanSQL", "day_text", "extra_modes", "literal", "profile_sql", "records_sql"]

_TYPED: Final[dict[str, str]] = {c.name: c.kind for c in COLUMNS if c.kind != "fixed"}
"""Fields with a column of their own: ``str``, ``int``, ``float`` or ``bool``."""
_MAX_DAY: Final = 49_710
"""2106-02-07: the last day both dialects' ``Date`` holds; later (or negative) timestamps are clamped."""
_SPACE: Final = r"[\t\n\v\f\r ]"
_TRUE_WORDS: Final = ("true", "t", "yes", "y", "1")
_FALSE_WORDS: Final = ("false", "f", "no", "n", "0")
_DIGITS: Final = "[0-9](?:_?[0-9])*"
_UNDERSCORED: Final = f"^[+-]?(?:{_DIGITS}(?:\\.(?:{_DIGITS})?)?|\\.{_DIGITS})(?:[eE][+-]?{_DIGITS})?$"
"""A decimal number with ``_`` between digits, which ``float()`` and DuckDB read and ClickHouse does not."""
_STRING_RE: Final = r'"(?:[^"\\]|\\.)*"'
_FLAT: Final = "position(extra, '[') = 0 AND position(substring(extra, 2), '{') = 0"
"""``extra`` holds no nested object or array (a bracket inside a string counts too: the safe side)."""
RECORD_COLUMNS: Final = ("timestamp", "module", "operation", *_TYPED, "extra")
"""What ``records_sql`` selects to rebuild a record."""


def literal(value: str) -> str:
    """A ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _number(value: Any) -> str:
    number = float(value)
    if math.isnan(number):
        return "nan"
    if math.isinf(number):
        return "inf" if number > 0 else "-inf"
    return repr(number)


def _ident(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


class Fields:
    """SQL reading one field of a record as a number, a boolean (``UInt8``), text or its raw JSON.

    The reading of ``extra`` is computed once per field, in inner queries over the table
    (``source``): the expressions returned here name their columns (``__raw0`` …), so a
    statement using them selects ``FROM {fields.source(...)}``. Each step is a query of
    its own rather than an alias: ClickHouse pastes an alias's whole expression wherever
    it is named, and the steps name each other several times.
    """

    def __init__(self, dialect: str, extra: Mapping[str, str] | None = None) -> None:
        self.dialect = dialect
        self.extra = extra
        """Field -> how the rows in scope hold it in ``extra`` (``profile_sql``): ``none`` (never: the
        typed column alone answers), ``flat`` (only in objects without nesting), ``nested``; a field
        not listed is read the general way."""
        self.layers: list[dict[str, str]] = [{} for _ in range(5)]
        """The inner queries' computed columns, alias -> SQL; each layer reads the ones before."""
        self.columns: dict[str, None] = {"timestamp": None, "module": None, "operation": None}
        """The table's columns the statement reads."""
        self._raws: dict[str, str] = {}

    def column(self, name: str) -> str:
        self.columns[name] = None
        return _ident(name)

    def source(self, table: str, where: str) -> str:
        """The inner query: the columns read and the fields of ``extra`` the statement needs."""
        layers = [layer for layer in self.layers if layer]
        first = layers[0].items() if layers else ()
        selected = [*(_ident(c) for c in self.columns), *(f"{sql} AS {alias}" for alias, sql in first)]
        source = f"(SELECT {', '.join(selected)} FROM {table} WHERE {where})"
        for layer in layers[1:]:
            source = f"(SELECT *, {', '.join(f'{sql} AS {alias}' for alias, sql in layer.items())} FROM {source})"
        return source

    # ------------------------------------------------------------------ from extra

    @property
    def looked_up(self) -> list[str]:
        """The fields read from ``extra`` so far."""
        return list(self._raws)

    def mode(self, name: str) -> str:
        return "nested" if self.extra is None else self.extra.get(name, "nested")

    def raw(self, name: str) -> str:
        """The field's JSON text in ``extra`` (top level only), NULL when absent."""
        alias = self._raws.get(name)
        if alias is not None:
            return alias
        i = len(self._raws)
        alias = self._raws[name] = f"__raw{i}"
        self.columns["extra"] = None
        self._scan(i, orjson.dumps(name).decode(), nested=self.mode(name) != "flat")
        first = f"substring({alias}, 1, 1) = '\"'"
        if self.dialect == CURRENT:
            unescaped = f"JSONExtractString(concat('[', if({first}, {alias}, '\"\"'), ']'), 1)"
        else:
            unescaped = f"visitParamExtractString(concat('{{\"v\":', if({first}, {alias}, '\"\"'), '}}'), 'v')"
        self.layers[4][f"__str{i}"] = f"if({first}, {unescaped}, NULL)"
        return alias

    def _scan(self, i: int, key: str, *, nested: bool) -> None:
        """``__raw{i}``: the text after the *top-level* ``"key":`` of ``extra``, as written (both
        dialects: ``JSONExtractRaw`` rewrites numbers, ``2.0`` as ``2`` and ``1e20`` in full).
        Without ``nested`` no row in scope has the key in a nested object: the first place is the one."""
        first, sep = "{" + key + ":", "," + key + ":"
        head, pos, parts, at = f"__head{i}", f"__pos{i}", f"__parts{i}", f"__at{i}"
        self.layers[0][head] = f"substring(extra, 1, {len(first.encode())}) = {literal(first)}"
        self.layers[0][pos] = f"position(extra, {literal(sep)})"

        def value(rest: str) -> str:
            # the closing brace ends a scalar that would otherwise end the string: 18.16 reads past the
            # end of a document such as '{"v":12' (and crashes)
            return f"visitParamExtractRaw(concat('{{\"v\":', {rest}, '}}'), 'v')"

        first_rest = f"substring(if({head}, extra, ''), {len(first.encode()) + 1})"
        if not nested:
            flat_rest = f"substring(if(NOT {head} AND {pos} > 0, extra, ''), {pos} + {len(sep.encode())})"
            self.layers[3][f"__raw{i}"] = (f"multiIf({head}, {value(first_rest)}, {pos} > 0, {value(flat_rest)}, "
                                           "NULL)")
            return
        self.layers[0]["__flat"] = _FLAT
        # each branch reads extra only on the rows it serves ('' elsewhere): 18.16 computes every branch
        self.layers[1][parts] = f"splitByString({literal(sep)}, if(NOT {head} AND {pos} > 0 AND NOT __flat, extra, ''))"
        stripped = f"replaceRegexpAll(p, {literal(_STRING_RE)}, '')"
        depth = (f"toInt64(length(replaceRegexpAll({stripped}, '[^\\\\[{{]', ''))) "
                 f"- toInt64(length(replaceRegexpAll({stripped}, '[^\\\\]}}]', '')))")
        self.layers[2][at] = (f"arrayFirstIndex((d, j) -> d = 1 AND j < length({parts}), "
                              f"arrayCumSum(arrayMap(p -> {depth}, {parts})), arrayEnumerate({parts}))")
        flat_rest = f"substring(if(NOT {head} AND {pos} > 0 AND __flat, extra, ''), {pos} + {len(sep.encode())})"
        nested_rest = f"arrayStringConcat(arraySlice({parts}, {at} + 1), {literal(sep)})"
        self.layers[3][f"__raw{i}"] = (f"multiIf({head}, {value(first_rest)}, {pos} = 0, NULL, "
                                       f"__flat, {value(flat_rest)}, {at} > 0, {value(nested_rest)}, NULL)")

    @staticmethod
    def _strip(text: str) -> str:
        return f"replaceRegexpAll({text}, {literal(f'^{_SPACE}+|{_SPACE}+$')}, '')"

    def _num_text(self, text: str) -> str:
        """A string as the local engines read it (``' 12 '``, ``'+-2'``, ``'1_000'``, ``'inf'``), else NULL."""
        word = self._strip(text)
        unsigned = f"replaceRegexpOne({word}, '^\\\\+([^+]|$)', '\\\\1')"
        plain = (f"if(position({word}, '_') = 0, {unsigned}, "
                 f"if(match({word}, {literal(_UNDERSCORED)}), replaceAll({unsigned}, '_', ''), ''))")
        return f"toFloat64OrNull({plain})"

    def _bool_text(self, text: str) -> str:
        word = f"lower({text})"
        trues = ", ".join(literal(w) for w in _TRUE_WORDS)
        falses = ", ".join(literal(w) for w in _FALSE_WORDS)
        return f"multiIf({word} IN ({trues}), toUInt8(1), {word} IN ({falses}), toUInt8(0), NULL)"

    @staticmethod
    def _string(raw: str) -> str:
        """The unescaped string of a raw JSON value that is a string (NULL for any other value)."""
        return raw.replace("__raw", "__str")

    def _text_raw(self, raw: str) -> str:
        string = self._string(raw)
        return f"multiIf(isNull({raw}), NULL, isNotNull({string}), {string}, {raw} = 'null', NULL, {raw})"

    def _num_raw(self, raw: str) -> str:
        return (f"multiIf(isNotNull({self._string(raw)}), {self._num_text(self._string(raw))}, "
                f"{raw} = 'true', toFloat64(1), {raw} = 'false', toFloat64(0), "
                f"substring({raw}, 1, 1) IN ('{{', '[', 'n'), NULL, toFloat64OrNull({raw}))")

    def _bool_raw(self, raw: str) -> str:
        return (f"multiIf(isNotNull({self._string(raw)}), {self._bool_text(self._string(raw))}, "
                f"{raw} = 'true', toUInt8(1), {raw} = 'false', toUInt8(0), "
                f"substring({raw}, 1, 1) IN ('{{', '[', 'n'), NULL, toUInt8(toFloat64OrNull({raw}) != 0))")

    # ------------------------------------------------------------------ one field, three readings

    @staticmethod
    def _float_text(column: str) -> str:
        """A ``Float64`` as the package's JSON spells it: ``2.0``, ``0.5``, ``1e-7``."""
        return (f"if(isFinite({column}) AND {column} = floor({column}) AND abs({column}) < 1e16, "
                f"concat(toString({column}), '.0'), toString({column}))")

    def _typed(self, name: str, reading: str) -> str | None:
        """The field read from its own column alone (``None``: it has none)."""
        kind = _TYPED.get(name)
        if kind is not None:
            col = self.column(name)
        elif name in ("operation", "module", "timestamp"):
            col = {"operation": "nullIf(CAST(operation AS String), '')", "module": "CAST(module AS String)",
                   "timestamp": "timestamp"}[name]
            kind = "float" if name == "timestamp" else "str"
        else:
            return None
        if reading == "text":
            return {"str": f"CAST({col} AS Nullable(String))", "int": f"toString({col})",
                    "float": self._float_text(col), "bool": f"if({col} = 1, 'true', 'false')"}[kind]
        if reading == "num":
            return self._num_text(col) if kind == "str" else f"toFloat64({col})"
        return {"str": self._bool_text(col), "bool": col}.get(kind, f"toUInt8({col} != 0)")

    def _read(self, name: str, reading: str) -> str:
        typed = self._typed(name, reading)
        if self.mode(name) == "none" or name == "timestamp":
            kind = _TYPED.get(name)
            if (reading, kind) in (("text", "str"), ("num", "float")):
                return self.column(name)  # as stored (LowCardinality groups faster than a copy)
            nothing = {"text": "Nullable(String)", "num": "Nullable(Float64)", "bool": "Nullable(UInt8)"}[reading]
            return typed if typed is not None else f"CAST(NULL AS {nothing})"
        raw = self.raw(name)
        fallback = {"text": self._text_raw, "num": self._num_raw, "bool": self._bool_raw}[reading](raw)
        if typed is None:
            return fallback
        if name == "module":  # the family's name unless the record said otherwise (kept in extra)
            return f"if(isNotNull({raw}), {fallback}, {typed})"
        present = "operation != ''" if name == "operation" else f"isNotNull({self.column(name)})"
        return f"if({present}, {typed}, {fallback})"

    def text(self, name: str) -> str:
        return self._read(name, "text")

    def num(self, name: str) -> str:
        return self._read(name, "num")

    def bool(self, name: str) -> str:
        return self._read(name, "bool")

    def present(self, name: str) -> str:
        """Does the record have the field at all (whatever its value)?"""
        if name in ("timestamp", "module"):
            return "1"
        own = "operation != ''" if name == "operation" else (
            f"isNotNull({self.column(name)})" if name in _TYPED else "0")
        if self.mode(name) == "none":
            return f"({own})"
        return f"({own} OR isNotNull({self.raw(name)}))"

    # ------------------------------------------------------------------ conditions

    def equal(self, name: str, value: Any) -> str:
        """``spec._equal``: NULL only where a side is unreadable (callers decide what NULL means)."""
        if value is None:
            return f"isNull({self.text(name)})"
        if value is True or value is False:
            return f"({self.bool(name)} = {int(value)})"
        if value.__class__ is str:
            if self.mode(name) == "none" and (_TYPED.get(name) == "str" or name in ("operation", "module")):
                # the column alone holds the text: compare it as stored (the primary key's own form)
                return f"({self.column(name)} = {literal(value)})" if value or name != "operation" else "0"
            return f"({self.text(name)} = {literal(value)})"
        return f"({self.num(name)} = {_number(value)})"

    def condition(self, c: Condition) -> str:
        """``Condition.test`` as a ``UInt8`` that is never NULL."""
        if c.op == "=":
            return f"ifNull({self.equal(c.field, c.value)}, 0)"
        if c.op == "!=":
            return f"NOT ifNull({self.equal(c.field, c.value)}, 0)"
        if c.op == "in":
            return "(" + " OR ".join(f"ifNull({self.equal(c.field, v)}, 0)" for v in c.value) + ")" \
                if c.value else "0"
        if c.op in ("<", "<=", ">", ">="):
            return f"ifNull({self.num(c.field)} {c.op} {_number(c.value)}, 0)"
        if c.op == "~":  # RE2 searching the field's text, as DuckDB does (``query/_regex.py``)
            # in a group of its own: 18.16 looks for a literal the pattern requires before running it,
            # and reads "time" out of "(?i)time" as case-sensitive ("Timeout" would not match)
            return f"ifNull(match({self.text(c.field)}, {literal('(?:' + str(c.value) + ')')}), 0)"
        raise ValueError(f"no SQL for the operator {c.op!r}")


def day_text(day: int) -> str:
    """The ``Date`` of the UTC day number ``day``, clamped to what both dialects' ``Date`` holds."""
    return time.strftime("%Y-%m-%d", time.gmtime(min(max(day, 0), _MAX_DAY) * 86400))


def _day(epoch: float) -> str:
    return day_text(math.floor(epoch / 86400))


def _window(since: float | None, until: float | None) -> list[str]:
    """The window on ``timestamp`` (the primary key) and on ``day`` (the partitions to read)."""
    parts = []
    if since is not None:
        parts += [f"timestamp >= {_number(since)}", f"day >= toDate('{_day(since)}')"]
    if until is not None:
        parts += [f"timestamp < {_number(until)}", f"day <= toDate('{_day(until)}')"]
    return parts


def _prefilters(conditions: Sequence[Condition]) -> list[str]:
    """Redundant, index-friendly forms of conditions on ``operation``: the row's column holds the
    value, or ``''`` with the value in ``extra``."""
    out = []
    for c in conditions:
        if c.field != "operation" or c.op not in ("=", "in"):
            continue
        values = c.value if c.op == "in" else (c.value,)
        if values and all(isinstance(v, str) and v for v in values):
            out.append("operation IN (" + ", ".join(literal(v) for v in (*values, "")) + ")")
    return out


def scope_sql(conditions: Sequence[Condition], since: float | None, until: float | None,
              modules: Sequence[str] | None) -> str:
    """The rows a statement may need, on the table's own columns (primary key and partitions)."""
    parts = []
    if modules is not None:
        parts.append("module IN (" + ", ".join(literal(m) for m in modules) + ")")
    parts += _window(since, until)
    parts += _prefilters(conditions)
    return " AND ".join(f"({p})" for p in parts) or "1"


def filter_sql(fields: Fields, conditions: Sequence[Condition]) -> str:
    return " AND ".join(f"({fields.condition(c)})" for c in conditions) or "1"


@dataclass(frozen=True)
class PlanSQL:
    """The statements computing ``plan`` over ``table`` (restricted to ``modules`` unless ``None``).

    Result columns: ``__k0`` … (the group keys, then the bucket), then one column per
    figure in ``plan.figures`` order; in the folded form a ``__hit`` column first (0 for
    the ``__other__`` group).
    """

    plan: QueryPlan
    table: str
    dialect: str
    modules: Sequence[str] | None = None
    extra: Mapping[str, str] | None = None
    """How the rows in scope hold each field in ``extra`` (``profile_sql``); ``None``: not asked."""

    def _fields(self) -> Fields:
        return Fields(self.dialect, self.extra)

    def scope(self) -> str:
        p = self.plan
        return scope_sql(p.conditions, p.since, p.until, self.modules)

    def extra_fields(self) -> list[str]:
        """The fields the statements may look for in ``extra`` (what ``profile_sql`` asks about)."""
        fields = Fields(self.dialect)
        self.key_exprs(fields)
        for f in self.plan.figures:
            self.figure(fields, f)
        filter_sql(fields, self.plan.conditions)
        return fields.looked_up

    def _from(self, fields: Fields, conditions: Sequence[Condition] | None = None) -> str:
        """``FROM`` the rows in scope ``WHERE`` the filters hold (the conditions' SQL must have been
        made with ``fields`` before: it decides what the inner queries compute)."""
        p = self.plan
        conditions = p.conditions if conditions is None else conditions
        where = filter_sql(fields, conditions)
        scope = scope_sql(conditions, p.since, p.until, self.modules)
        if not any(fields.layers):  # nothing read from extra: the table itself
            return f"{self.table} WHERE {scope} AND {where}"
        return f"{fields.source(self.table, scope)} WHERE {where}"

    def key_exprs(self, fields: Fields) -> list[str]:
        """The group keys' SQL: each field as text, then the bucket's start (``Float64``, never NULL)."""
        exprs = [fields.text(k) for k in self.plan.keys]
        if self.plan.width:
            width = _number(self.plan.width)
            exprs.append(f"floor(timestamp / {width}) * {width}")
        return exprs

    def _encoded(self, keys: list[str]) -> str:
        """The group keys as a NULL-free tuple (``IN`` never matches a NULL)."""
        texts = len(self.plan.keys)
        return ", ".join([*(f"isNull({k}), ifNull({k}, '')" for k in keys[:texts]), *keys[texts:]])

    def _order(self, keys: list[str]) -> str:
        """Most records first, then keys ascending with absent (NULL) ones last: the local rule."""
        return f"count() DESC, {self._encoded(keys)}"

    def figure(self, fields: Fields, f: Figure) -> str:
        """The SQL of one figure (legacy percentiles: the sorted values, interpolated by ``_outer``)."""
        kind = f.kind
        if kind == "count":
            return "count()"
        if kind == "first":
            return "min(timestamp)"
        if kind == "last":
            return "max(timestamp)"
        if kind == "errors":
            return f"countIf(ifNull({fields.bool('success')} = 0, 0))"
        if kind == "judged":
            return f"count({fields.bool('success')})"
        if kind in ("n", "sum", "min", "max"):
            return f"{'count' if kind == 'n' else kind}({fields.num(str(f.field))})"
        if kind == "quantiles":
            value = fields.num(str(f.field))
            if self.dialect == CURRENT:
                qs = ", ".join(_number(q) for q in f.qs)
                return f"if(count({value}) = 0, emptyArrayFloat64(), quantilesExactInclusive({qs})({value}))"
            return f"arraySort(groupArray({value}))"
        if kind == "latest":
            return f"argMax({fields.text(str(f.field))}, timestamp)"
        if kind == "count_if":
            assert f.condition is not None
            return f"countIf({fields.condition(f.condition)})"
        raise AssertionError(f"no SQL for figure {f!r}")

    def _outer(self, i: int, f: Figure) -> str:
        """Legacy percentiles: linear interpolation between the two closest ranks of the sorted values
        (``pyscan.quantile``, term for term)."""
        if f.kind != "quantiles" or self.dialect == CURRENT:
            return f"__f{i}"
        s = f"__f{i}"
        h = f"((length({s}) - 1) * q)"
        low = f"{s}[toUInt64(floor({h})) + 1]"
        high = f"{s}[toUInt64(ceil({h})) + 1]"
        qs = ", ".join(_number(q) for q in f.qs)
        return (f"if(empty({s}), emptyArrayFloat64(), "
                f"arrayMap(q -> {low} + ({h} - floor({h})) * ({high} - {low}), [{qs}]))")

    def grouped(self, *, limit: int | None = None, fold: bool = False) -> str:
        """The figures per group; ``limit`` keeps the groups with most records (to learn whether
        folding is needed); ``fold`` keeps the ``max_groups`` first and folds every other group
        into ``__hit = 0``."""
        fields = self._fields()
        keys = self.key_exprs(fields)
        texts = len(self.plan.keys)
        figures = [f"{self.figure(fields, f)} AS __f{i}" for i, f in enumerate(self.plan.figures)]
        names = [f"__k{i}" for i in range(len(keys))]
        if fold:
            selected = [f"({self._encoded(keys)}) GLOBAL IN ({self.top_sql()}) AS __hit",
                        *(f"if(__hit, {k}, NULL) AS __k{i}" for i, k in enumerate(keys[:texts])),
                        *(f"if(__hit, {k}, 0) AS __k{texts}" for k in keys[texts:])]
            names = ["__hit", *names]
        else:
            selected = [f"{k} AS __k{i}" for i, k in enumerate(keys)]
        inner = f"SELECT {', '.join([*selected, *figures])} FROM {self._from(fields)}"
        if names:
            inner += f" GROUP BY {', '.join(names)}"
        if limit is not None and keys:
            inner += f" ORDER BY {self._order(keys)} LIMIT {int(limit)}"
        outer = [self._outer(i, f) for i, f in enumerate(self.plan.figures)]
        if all(o == f"__f{i}" for i, o in enumerate(outer)):
            return inner
        return f"SELECT {', '.join([*names, *(f'{o} AS __g{i}' for i, o in enumerate(outer))])} FROM ({inner})"

    def top_sql(self) -> str:
        """The ``max_groups`` groups with most records, ties by key ascending, absent keys last."""
        fields = self._fields()
        keys = self.key_exprs(fields)
        return (f"SELECT {self._encoded(keys)} FROM {self._from(fields)} GROUP BY {self._encoded(keys)} "
                f"ORDER BY {self._order(keys)} LIMIT {int(self.plan.max_groups)}")

    def distinct_sql(self) -> str:
        fields = self._fields()
        keys = self.key_exprs(fields)
        return f"SELECT count() FROM (SELECT 1 FROM {self._from(fields)} GROUP BY {', '.join(keys)})"

    def presence_sql(self, names: Sequence[str]) -> str:
        """Records in the window, and of them how many have each field (whatever the filters: the
        profile of ``extra``, made for the filtered scope, does not apply)."""
        fields = Fields(self.dialect)
        present = ", ".join(f"countIf({fields.present(n)})" for n in names)
        return f"SELECT count(), {present} FROM {self._from(fields, ())}"

    def field_names_sql(self, sample: int) -> tuple[str, str]:
        """The typed columns holding a value in the window; a sample of its ``extra`` objects."""
        p = self.plan
        scope = scope_sql((), p.since, p.until, self.modules)
        counts = ", ".join(f"count({_ident(c)})" for c in _TYPED)
        return (f"SELECT {counts} FROM {self.table} WHERE {scope}",
                f"SELECT extra FROM {self.table} WHERE {scope} AND extra != '{{}}' LIMIT {int(sample)}")


def records_sql(dialect: str, table: str, conditions: Sequence[Condition], since: float | None,
                until: float | None, modules: Sequence[str] | None, extra: Mapping[str, str] | None = None) -> str:
    """The matching rows, with every column a record is rebuilt from, oldest first within a module."""
    fields = Fields(dialect, extra)
    for c in RECORD_COLUMNS:
        fields.column(c)
    fields.columns.update({"source_host": None, "source_file": None, "source_offset": None})
    where = filter_sql(fields, conditions)
    columns = ", ".join(_ident(c) for c in RECORD_COLUMNS)
    return (f"SELECT {columns} FROM {fields.source(table, scope_sql(conditions, since, until, modules))} "
            f"WHERE {where} ORDER BY module, timestamp, source_host, source_file, source_offset")


def profile_sql(table: str, scope: str, names: Sequence[str]) -> list[tuple[list[str], str]]:
    """Statements asking, for each of ``names``, how many rows in scope may hold it in ``extra`` and how
    many of those nest objects or arrays (``"key":`` anywhere: a superset, so the answer is safe).

    A field with a column of its own can be in ``extra`` only where that column is empty, so those
    fields' statement reads ``extra`` only there (``PREWHERE``): for most fields, nowhere at all."""
    def counts(fields: Sequence[tuple[str, str]]) -> str:
        parts = []
        for name, empty in fields:
            found = f"{empty} AND position(extra, {literal(orjson.dumps(name).decode() + ':')}) > 0"
            parts += [f"countIf({found})", f"countIf({found} AND NOT ({_FLAT}))"]
        return ", ".join(parts)

    typed: list[tuple[str, str]] = []
    loose: list[tuple[str, str]] = []
    for name in names:
        if name in _TYPED:
            typed.append((name, f"isNull({_ident(name)})"))
        elif name == "operation":
            typed.append((name, "operation = ''"))
        else:
            loose.append((name, "1"))
    statements = []
    if typed:
        empty = " OR ".join(e for _, e in typed)
        statements.append(([n for n, _ in typed],
                           f"SELECT {counts(typed)} FROM {table} PREWHERE {empty} WHERE {scope}"))
    if loose:
        statements.append(([n for n, _ in loose],
                           f"SELECT {counts(loose)} FROM {table} PREWHERE extra != '{{}}' WHERE {scope}"))
    return statements


def extra_modes(names: Sequence[str], counts: Sequence[Any]) -> dict[str, str]:
    """``profile_sql``'s answer as ``Fields.extra``."""
    return {name: "none" if not int(counts[2 * i]) else "flat" if not int(counts[2 * i + 1]) else "nested"
            for i, name in enumerate(names)}
