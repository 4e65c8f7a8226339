"""LLM calls: latency, tokens, cost, errors, streaming."""

from __future__ import annotations

from typing import Any, ClassVar

from .._timing import fixed, observe_llm
from ..base_monitor import INF, BaseMonitor
from ..config import PricingSettings
from ..interfaces import MetricsWriter
from ..logger_writer import default_pool

__all__ = ["LLMPerformanceMonitor"]

_NUMBERS = ("response_time", "prompt_tokens", "completion_tokens", "total_tokens",
            "time_to_first_token", "cached_tokens", "retries", "cost")
_PRICE_CACHE = 1024
_INTEGERS = ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "retries")


def _optional_ok(ttft: Any, cached: Any, retries: Any, cost: Any) -> bool:
    """The optional numbers, when given as the usual float or int, need none of the slow checks
    (a line from an SDK response always carries ``cached_tokens``)."""
    return ((ttft is None or (ttft.__class__ is float and 0 <= ttft < INF))
            and (cached is None or (cached.__class__ is int and cached >= 0))
            and (retries is None or (retries.__class__ is int and retries >= 0))
            and (cost is None or (cost.__class__ is float and 0 <= cost < INF)))


class LLMPerformanceMonitor(BaseMonitor):
    """One line per model call, in ``logs/llm_metrics.log``.

    Use it around every request to a model provider; reports then give calls,
    error rates, latency percentiles, tokens and cost by model and provider.

        llm = factory.create_monitor("llm")
        llm.record_llm_call(model="gpt-4o", provider="openai", response_time=1.9,
                            prompt_tokens=812, completion_tokens=164, success=True)
    """

    module_name: ClassVar[str] = "llm"

    def __init__(self, logger: MetricsWriter | None = None, pricing: PricingSettings | None = None) -> None:
        if pricing is None and logger is None:  # built by hand: the process-wide configuration's prices
            pricing = default_pool().settings.pricing
        super().__init__(logger)
        self.pricing = pricing or PricingSettings()
        self._prices: dict[Any, tuple[float, float, float] | None] = {}
        self._version = self.pricing.version

    def _rates(self, model: Any) -> tuple[float, float, float] | None:
        """(input, cached input, output) per 1M tokens for ``model``, looked up once per name."""
        rates = self._prices
        try:
            return rates[model]
        except TypeError:  # an unhashable "model": flagged by the checks, never priced
            return None
        except KeyError:
            price = self.pricing.price_of(model) if isinstance(model, str) else None
            found = None if price is None else (
                price.input, price.cached_input if price.cached_input is not None else price.input, price.output)
            if len(rates) < _PRICE_CACHE:
                rates[model] = found
            return found

    def _fill_cost(self, record: dict[str, Any], model: Any, prompt: Any, completion: Any,
                   cached: Any) -> None:
        """``cost`` from the price table, and always ``cost_status``: never a silent zero."""
        rates = self._rates(model)
        if rates is None:
            record["cost_status"] = "unknown_model"
        else:
            try:
                cached_n = cached or 0
                cost = ((prompt - cached_n) * rates[0] + cached_n * rates[1] + completion * rates[2]) / 1e6
            except TypeError:  # no cost from bad counts (flagged by the checks) or unknown ones (null)
                record["cost_status"] = "unknown_tokens" if prompt is None or completion is None else "invalid_tokens"
                return
            record["cost"] = round(cost, 9)
            record["cost_status"] = "computed"
        if self._version is not None:
            record["price_version"] = self._version

    def record_llm_call(
        self,
        model: str,
        provider: str,
        response_time: float,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        total_tokens: int | None = None,
        success: bool = True,
        *,
        error_type: str | None = None,
        time_to_first_token: float | None = None,
        cached_tokens: int | None = None,
        streaming: bool | None = None,
        retries: int | None = None,
        cost: float | None = None,
        **extra: Any,
    ) -> None:
        """Record one completed (or failed) call.

        ``response_time`` and ``time_to_first_token`` are seconds; ``total_tokens``
        defaults to prompt + completion; ``cost`` is in the currency of your price
        table. Optional fields appear in the record only when given; any other
        keyword lands in the record as is (``user_id=...``, ``temperature=...``).
        """
        try:
            if total_tokens is None:
                try:
                    total_tokens = prompt_tokens + completion_tokens
                except TypeError:
                    total_tokens = None
            scrub = self.logger.scrub
            record = {"timestamp": 0.0, "metric_type": "timer", "operation": "llm_call",
                      "model": scrub(model), "provider": scrub(provider), "response_time": response_time,
                      "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": total_tokens, "success": success}
            if error_type is not None:
                record["error_type"] = scrub(error_type)
            # one test in the common case (none given), the loop only when some are
            optional = not (time_to_first_token is None and cached_tokens is None and streaming is None
                            and retries is None)
            if optional:
                for name, value in (("time_to_first_token", time_to_first_token), ("cached_tokens", cached_tokens),
                                    ("streaming", streaming), ("retries", retries)):
                    if value is not None:
                        record[name] = value
            if cost is not None:
                record["cost"] = cost
                record["cost_status"] = "provided"
                optional = True
            else:
                self._fill_cost(record, model, prompt_tokens, completion_tokens, cached_tokens)
            try:
                valid = (
                    0 <= response_time < INF and 0 <= prompt_tokens < INF
                    and 0 <= completion_tokens < INF and 0 <= total_tokens < INF  # type: ignore[operator]
                    and success.__class__ is bool
                    and (not optional or _optional_ok(time_to_first_token, cached_tokens, retries, cost))
                )
            except TypeError:
                valid = False
            if not valid:
                self._validate(record, _NUMBERS, _INTEGERS)
            if extra:
                self._merge_extra(record, extra)
            self.logger.write_record(record, screened=True)
        except Exception as exc:  # noqa: BLE001 - telemetry never breaks the caller
            self._failed(exc)

    def record_llm_attempt(
        self,
        model: str,
        provider: str,
        response_time: float,
        attempt: int,
        operation_id: str,
        success: bool = True,
        *,
        error_type: str | None = None,
        **extra: Any,
    ) -> None:
        """One try of a logical call that may be retried (``operation: llm_attempt``).

        Record every attempt with the same ``operation_id``, then close the logical call
        with ``record_llm_call(..., operation_id=..., retries=n)``: reports give error rates
        per attempt and per call.
        """
        try:
            scrub = self.logger.scrub
            record = {"timestamp": 0.0, "metric_type": "timer", "operation": "llm_attempt",
                      "model": scrub(model), "provider": scrub(provider), "response_time": response_time,
                      "attempt": attempt, "operation_id": scrub(operation_id), "success": success}
            if error_type is not None:
                record["error_type"] = scrub(error_type)
            try:
                valid = 0 <= response_time < INF and 1 <= attempt < INF and success.__class__ is bool
            except TypeError:
                valid = False
            if not valid:
                self._validate(record, ("response_time", "attempt"), ("attempt",))
            if extra:
                self._merge_extra(record, extra)
            self.logger.write_record(record, screened=True)
        except Exception as exc:  # noqa: BLE001 - telemetry never breaks the caller
            self._failed(exc)

    def observe(self, fn: Any = None, /, *, model: str | None = None, provider: str | None = None,
                **fields: Any) -> Any:
        """``@llm.observe`` / ``@llm.observe(model="gpt-4o")``: record each call of the decorated client
        function, reading model and token usage from what it returns (streams included)."""
        return observe_llm(fn, fixed(self), model=model, provider=provider, fields=fields)

    def record_embedding_call(
        self,
        model: str,
        provider: str,
        response_time: float,
        input_tokens: int = 0,
        success: bool = True,
        *,
        batch_size: int | None = None,
        error_type: str | None = None,
        **extra: Any,
    ) -> None:
        """Record one embedding request (filed as ``operation: embedding_call``)."""
        try:
            scrub = self.logger.scrub
            record = {"timestamp": 0.0, "metric_type": "timer", "operation": "embedding_call",
                      "model": scrub(model), "provider": scrub(provider), "response_time": response_time,
                      "input_tokens": input_tokens, "success": success}
            if batch_size is not None:
                record["batch_size"] = batch_size
            if error_type is not None:
                record["error_type"] = scrub(error_type)
            self._validate(record, ("response_time", "input_tokens", "batch_size"), ("input_tokens", "batch_size"))
            if extra:
                self._merge_extra(record, extra)
            self.logger.write_record(record, screened=True)
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)
