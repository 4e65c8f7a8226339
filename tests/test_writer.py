"""The writer turns any record into exactly one compact JSON line, redacted and capped."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import structlog
from dependency_injector import providers

from infrastructure.monitoring import (
    DropRecord,
    FileSink,
    MetricsLogger,
    MonitoringContainer,
    PerformanceMonitorFactory,
    Redactor,
    load_settings,
)

from .conftest import read_records


class HostileRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


def writer_for(path: Path, **kwargs: Any) -> MetricsLogger:
    return MetricsLogger("test", FileSink(path), redactor=Redactor(), **kwargs)


def test_odd_values_are_rendered_never_raised(tmp_path: Path) -> None:
    """datetime, Decimal, Path, sets, bytes, hostile objects, cycles, huge ints and odd keys all render."""
    cyclic: dict[str, Any] = {"a": 1}
    cyclic["self"] = cyclic
    writer = writer_for(tmp_path / "t.log")
    writer.log_event(
        "odd", when=dt.datetime(2024, 1, 1, tzinfo=dt.UTC), price=Decimal("0.0125"),
        where=Path("/tmp/x"), tags={"a"}, raw=b"\xffok", obj=HostileRepr(), cyc=cyclic,
        big=10**30, keys={1: "one", (2, 3): "tuple"}, surrogate="bad\ud800char",
    )
    (record,) = read_records(tmp_path / "t.log")
    assert record["price"] == 0.0125
    assert record["where"] == "/tmp/x"
    assert record["tags"] == ["a"]
    assert record["raw"] == "\ufffdok"
    assert record["obj"] == "<unrepresentable HostileRepr>"
    assert record["cyc"] == {"a": 1, "self": "<cycle>"}
    assert record["big"] == str(10**30)
    assert record["keys"] == {"1": "one", "(2, 3)": "tuple"}
    assert record["surrogate"] == "bad?char"
    assert record["when"].startswith("2024-01-01T00:00:00")
    assert writer.faults.internal_errors == 0


def test_each_record_is_one_compact_line(tmp_path: Path) -> None:
    """Newlines inside values stay escaped: one record, one line, timestamp first."""
    writer = writer_for(tmp_path / "t.log")
    writer.log_event("multi", text="line1\nline2\r\n")
    raw = (tmp_path / "t.log").read_bytes()
    assert raw.count(b"\n") == 1
    assert raw.startswith(b'{"timestamp":')
    assert json.loads(raw)["text"] == "line1\nline2\r\n"


def test_oversized_values_are_truncated_and_marked(tmp_path: Path) -> None:
    """A line never exceeds max_line_bytes; the cut field is listed under ``truncated``."""
    writer = writer_for(tmp_path / "t.log", max_line_bytes=2048)
    writer.log_event("big", prompt="x" * 100_000, small="kept", nested={"deep": ["y" * 5000]})
    raw = (tmp_path / "t.log").read_bytes()
    assert len(raw) <= 2048
    record = json.loads(raw)
    assert set(record["truncated"]) <= {"prompt", "nested"}
    assert "prompt" in record["truncated"]
    assert "[truncated" in record["prompt"]
    assert record["small"] == "kept"
    assert record["operation"] == "big"


def test_secret_keys_and_values_are_redacted(tmp_path: Path) -> None:
    """Secret-named keys and credential-shaped values never reach the disk."""
    secret_key = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"
    writer = writer_for(tmp_path / "t.log")
    writer.log_event(
        "call", api_key="plain-value-123", OPENAI_API_KEY="xyz", Authorization="Bearer abcdefghijklmnopqrstuvwxyz",
        password="hunter2", headers={"x-api-key": "abc", "accept": "json"},
        error=f"401 Unauthorized: Incorrect API key provided: {secret_key}.",
        url="https://api.example.com/v1?api_key=abcd1234&q=1", prompt_tokens=12, max_tokens=100,
        note=["ghp_" + "a" * 36, "fine"],
    )
    raw = (tmp_path / "t.log").read_text()
    for secret in ("plain-value-123", "hunter2", secret_key, "abcdefghijklmnopqrstuvwxyz", "abcd1234", "a" * 36):
        assert secret not in raw
    (record,) = read_records(tmp_path / "t.log")
    assert record["api_key"] == record["OPENAI_API_KEY"] == record["password"] == "[REDACTED]"
    assert record["headers"] == {"x-api-key": "[REDACTED]", "accept": "json"}
    assert record["error"] == "401 Unauthorized: Incorrect API key provided: [REDACTED]."
    assert (record["prompt_tokens"], record["max_tokens"]) == (12, 100)
    assert record["note"] == ["[REDACTED]", "fine"]


def test_built_in_monitors_redact_their_arguments(
    make_factory: Any, log_dir: Path
) -> None:
    """The monitors' own string arguments and extras are screened too."""
    factory: PerformanceMonitorFactory = make_factory()
    llm = factory.create_monitor("llm")
    llm.record_llm_call("gpt-4", "openai", 1.0, 1, 1, success=False,
                        error_type="auth: Bearer abcdefghijklmnopqrstuvwxyz123", api_key="sk-" + "z" * 40)
    raw = (log_dir / "llm_metrics.log").read_text()
    assert "abcdefghijklmnopqrstuvwxyz123" not in raw
    assert "z" * 40 not in raw
    (record,) = read_records(log_dir / "llm_metrics.log")
    assert record["error_type"] == "auth: [REDACTED]"
    assert record["api_key"] == "[REDACTED]"


def test_structlog_processors_plug_into_the_writer(tmp_path: Path) -> None:
    """Any structlog processor runs in the chain; DropRecord and DropEvent drop on purpose."""

    def drop_debug(_l: Any, _n: str, ed: Any) -> Any:
        if ed.get("level") == "debug":
            raise DropRecord
        if ed.get("level") == "trace":
            raise structlog.DropEvent
        return ed

    writer = MetricsLogger(
        "test", FileSink(tmp_path / "t.log"),
        processors=[structlog.processors.UnicodeDecoder(), drop_debug],
    )
    writer.log_event("a", level="info", data=b"bytes")
    writer.log_event("b", level="debug")
    writer.log_event("c", level="trace")
    records = read_records(tmp_path / "t.log")
    assert [r["operation"] for r in records] == ["a"]
    assert records[0]["data"] == "bytes"
    assert writer.faults.internal_errors == 0


def test_container_processors_override(log_dir: Path) -> None:
    """Processors given to the container run on every record of every module."""

    def tag(_l: Any, _n: str, ed: Any) -> Any:
        ed["deployment"] = "canary"
        return ed

    container = MonitoringContainer()
    container.settings.override(providers.Object(load_settings(overrides={"logging": {"log_dir": str(log_dir)}})))
    container.processors.override(providers.List(providers.Object(tag)))
    factory = PerformanceMonitorFactory(container)
    factory.create_monitor("tool").record_tool_call("t", 0.1)
    factory.shutdown()
    (record,) = read_records(log_dir / "tool_metrics.log")
    assert record["deployment"] == "canary"


def test_redaction_can_be_switched_off(make_factory: Any, log_dir: Path) -> None:
    """With no redact keys and redact_values off, values are written as given."""
    factory = make_factory(redact_keys=[], redact_values=False)
    factory.create_monitor("tool").record_tool_call("t", 0.1, password="visible")
    (record,) = read_records(log_dir / "tool_metrics.log")
    assert record["password"] == "visible"


@pytest.mark.parametrize(
    ("key", "secret"),
    [("api_key", True), ("X-Api-Key", True), ("access_token", True), ("token", True), ("client_secret", True),
     ("prompt_tokens", False), ("max_tokens", False), ("token_count", False), ("secretary", False)],
)
def test_secret_key_names(key: str, secret: bool) -> None:
    """Secret names match whole or as a ``_suffix``, so token counts are left alone."""
    assert Redactor(keys=["api_key", "token", "secret"]).is_secret_key(key) is secret


def test_in_memory_sink_for_users_tests() -> None:
    """testing.InMemorySink lets application tests assert on records without files."""
    from infrastructure.monitoring import LLMPerformanceMonitor, Monitor
    from infrastructure.monitoring.testing import InMemorySink

    sink = InMemorySink()
    llm = LLMPerformanceMonitor(MetricsLogger("llm", sink))
    assert isinstance(llm, Monitor)
    llm.record_llm_call("gpt-4", "openai", 1.2, 10, 20)
    (record,) = sink.records()
    assert (record["operation"], record["total_tokens"], record["module"]) == ("llm_call", 30, "llm")


def test_secrets_deep_inside_nested_values_never_pass(tmp_path: Path) -> None:
    """Values nested beyond the examined depth are replaced by a marker, not written unexamined."""
    deep: Any = {"api_key": "deep-secret-value"}
    for _ in range(40):
        deep = {"level": deep}
    writer = writer_for(tmp_path / "t.log")
    writer.log_event("nested", payload=deep, shallow={"password": "hunter2"})
    raw = (tmp_path / "t.log").read_text()
    assert "deep-secret-value" not in raw
    assert "hunter2" not in raw
    assert '"<max depth>"' in raw


class FlakySink:
    """A sink that fails while ``broken`` (a full disk) and keeps the lines it was given."""

    path = "flaky.log"

    def __init__(self) -> None:
        self.broken = False
        self.lines: list[dict[str, Any]] = []

    def write(self, line: bytes, now: float) -> None:
        if self.broken:
            raise OSError(28, "No space left on device")
        self.lines.append(json.loads(line))

    def close(self) -> None:
        return None


def test_a_sampled_family_keeps_its_writer_faults_and_every_error() -> None:
    """Sampling never drops what went wrong: the writer's own ``writer_fault`` note (left unweighted), error
    spans and error-level log lines are kept like failed calls, with weight 1."""
    from infrastructure.monitoring.logger_writer import Sampler

    sink = FlakySink()
    sampler = Sampler(0.5)
    writer = MetricsLogger("sampled", sink, processors=[sampler])
    sink.broken = True
    for seq in range(3):
        writer.log_counter("lost", 1, seq=seq)
    sink.broken = False
    while not sink.lines:
        writer.log_counter("back", 1)
    for status in ("error", "ok", "ok", "ok"):
        writer.write_record({"timestamp": 0.0, "metric_type": "timer", "operation": "span", "duration": 0.1,
                             "status": status})
    for level in ("error", "CRITICAL", "info", "info"):
        writer.write_record({"timestamp": 0.0, "metric_type": "log", "operation": "log", "level": level,
                             "message": "m"})
    by_operation: dict[str, list[dict[str, Any]]] = {}
    for record in sink.lines:
        by_operation.setdefault(record["operation"], []).append(record)
    (fault,) = by_operation["writer_fault"]
    assert fault["dropped"] == 2  # of the three lost, the sampler had left one out anyway
    assert "sample_weight" not in fault
    errors = [r for r in by_operation["span"] if r["status"] == "error"]
    assert [r["sample_weight"] for r in errors] == [1]
    assert 1 <= len(by_operation["span"]) - 1 <= 2  # of the three others, one in two
    assert [(r["level"], r["sample_weight"]) for r in by_operation["log"] if r["level"] != "info"] == [
        ("error", 1), ("CRITICAL", 1)]
    assert not hasattr(sampler, "dropped")
