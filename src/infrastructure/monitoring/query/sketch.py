"""Percentiles that mean what DuckDB's ``quantile_cont`` and numpy's default mean.

``Quantiles`` keeps every value (8 bytes each, in an ``array``) up to ``EXACT_LIMIT``
values, and answers by linear interpolation between the two closest ranks:
``x[floor(h)] + (h - floor(h)) * (x[floor(h)+1] - x[floor(h)])`` with ``h = q * (n - 1)``.

Beyond that a log-bucket sketch (DDSketch: buckets ``(gamma^(i-1), gamma^i]`` with
``gamma = (1 + alpha) / (1 - alpha)``) stands in. Any value is then known to within a relative
error ``alpha = 0.5 %``; interpolating between the two estimated neighbours keeps the
answer within 1 % of the exact percentile. Memory is bounded by the number of buckets
(about 230 per factor of ten between the smallest and largest value), not by the values.
"""

from __future__ import annotations

import math
from array import array
from typing import Final

__all__ = ["EXACT_LIMIT", "RELATIVE_ACCURACY", "Quantiles", "exact_quantile"]

EXACT_LIMIT: Final = 100_000
RELATIVE_ACCURACY: Final = 0.005
_GAMMA: Final = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA: Final = math.log(_GAMMA)


def exact_quantile(ordered: list[float] | array[float], q: float) -> float:
    h = q * (len(ordered) - 1)
    lo = math.floor(h)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (h - lo) * (ordered[hi] - ordered[lo])


class Quantiles:
    """Collects the values of one group for one field."""

    __slots__ = ("_neg", "_pos", "_values", "_zeros", "count")

    def __init__(self) -> None:
        self._values: array[float] | None = array("d")
        self._pos: dict[int, int] = {}
        self._neg: dict[int, int] = {}
        self._zeros = 0
        self.count = 0

    @property
    def exact(self) -> bool:
        return self._values is not None

    def add(self, value: float) -> None:
        self.count += 1
        values = self._values
        if values is not None:
            values.append(value)
            if len(values) > EXACT_LIMIT:
                self._to_sketch()
        else:
            self._bucket(value)

    def _to_sketch(self) -> None:
        values, self._values = self._values, None
        for v in values or ():
            self._bucket(v)

    def _bucket(self, value: float) -> None:
        if value > 0:
            key = math.ceil(math.log(value) / _LOG_GAMMA)
            self._pos[key] = self._pos.get(key, 0) + 1
        elif value < 0:
            key = math.ceil(math.log(-value) / _LOG_GAMMA)
            self._neg[key] = self._neg.get(key, 0) + 1
        else:
            self._zeros += 1

    def quantiles(self, qs: list[float]) -> list[float | None]:
        """Several percentiles at once (the values are sorted once)."""
        if not self.count:
            return [None] * len(qs)
        if self._values is not None:
            ordered = sorted(self._values)
            return [exact_quantile(ordered, q) for q in qs]
        return [self.quantile(q) for q in qs]

    def quantile(self, q: float) -> float | None:
        if not self.count:
            return None
        if self._values is not None:
            return exact_quantile(sorted(self._values), q)
        h = q * (self.count - 1)
        lo = math.floor(h)
        low, high = self._value_at(lo), self._value_at(min(lo + 1, self.count - 1))
        return low + (h - lo) * (high - low)

    def _value_at(self, rank: int) -> float:
        """The estimated value of the ``rank``-th smallest (0-based)."""
        seen = 0
        for key in sorted(self._neg, reverse=True):  # most negative first
            seen += self._neg[key]
            if rank < seen:
                return -2 * _GAMMA**key / (_GAMMA + 1)
        seen += self._zeros
        if rank < seen:
            return 0.0
        for key in sorted(self._pos):
            seen += self._pos[key]
            if rank < seen:
                return 2 * _GAMMA**key / (_GAMMA + 1)
        return 2 * _GAMMA ** max(self._pos, default=0) / (_GAMMA + 1)
