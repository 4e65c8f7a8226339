"""What the read side asks of a source of records: the local files (``LogParser``) or a
ClickHouse table the shipper fills (``fleet.reader.ClickHouseParser``).

Reports, alerts, SLOs, anomalies, traces and the dashboard take any ``LogSource``, so
the same code answers from one host's ``logs/`` or from the whole fleet; both sources
compute the same ``QueryPlan`` (``plan.py``) and give the same rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .engine import QueryResult, SkipReport
    from .spec import Aggregate, Condition

__all__ = ["LogSource"]


class LogSource(Protocol):
    """Records by module (family), asked through one query interface.

    ``families(module)`` is empty when ``module`` has nothing recorded (a check made
    before asking); ``modules()`` lists the modules present; ``query`` filters, groups
    and aggregates (see ``LogParser.query``; raises ``QueryError`` for a bad question);
    ``records`` streams the matching records themselves, oldest first within a module.
    """

    def families(self, module: str | None = None) -> Mapping[str, Sequence[Any]]: ...

    def modules(self) -> list[str]: ...

    def query(
        self,
        module: str | Sequence[str] | None = None,
        *,
        operation: str | Sequence[str] | None = None,
        where: Iterable[str | Condition] | Mapping[str, Any] = (),
        since: str | float | datetime | None = None,
        until: str | float | datetime | None = None,
        last: str | float | None = None,
        group_by: str | Sequence[str] = (),
        bucket: str | float | None = None,
        aggs: Sequence[str | Aggregate] = ("count",),
        order_by: str | None = None,
        descending: bool = True,
        limit: int | None = None,
        max_groups: int = 10_000,
        progress: Callable[[int, int], None] | None = None,
        check_fields: bool = True,
        engine: str = "auto",
    ) -> QueryResult: ...

    def records(
        self,
        module: str | Sequence[str] | None = None,
        *,
        where: Iterable[str | Condition] | Mapping[str, Any] = (),
        since: str | float | datetime | None = None,
        until: str | float | datetime | None = None,
        last: str | float | None = None,
        skipped: SkipReport | None = None,
    ) -> Iterator[dict[str, Any]]: ...
