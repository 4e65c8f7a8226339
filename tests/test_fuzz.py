"""Bad input, generated: the log parser, the config loader, the alert-rule parser and the
recording calls never crash or hang — a clear error or a counted skip, every time."""

from __future__ import annotations

import gzip
import json
import math
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from infrastructure.monitoring import ConfigError, load_settings, settings_from_mapping
from infrastructure.monitoring._sink import FileSink
from infrastructure.monitoring.logger_writer import MetricsLogger
from infrastructure.monitoring.ops_config import parse_expr
from infrastructure.monitoring.processors import Redactor
from infrastructure.monitoring.query import LogParser, SkipReport

from .test_query import assert_same_answer

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])

GOOD = b'{"timestamp": 1700000000.5, "module": "llm", "operation": "llm_call", "model": "m", "marker": 1}'
NASTY_LINES = [
    b"", b"   ", b"not json", b"\xff\xfe\x00garbage", b'{"timestamp": NaN, "marker": 1}',
    b'{"timestamp": Infinity}', b'{"timestamp": 1, "timestamp": 2, "module": "llm"}', b"[" * 5000 + b"]" * 5000,
    b'{"a":' * 3000 + b"1" + b"}" * 3000, b'{"timestamp": "yesterday"}', b"[1, 2, 3]", b'"just a string"',
    b'{"timestamp": 1e999}', b'{"timestamp": 1700000000, "model": "\\ud800"}', b"\x00" * 100,
    b'{"timestamp": 1700000000, "operation": "llm_call", "model": ' + b'"x' * 10 + b"}",
]

line_strategy = st.one_of(
    st.just(GOOD),
    st.sampled_from(NASTY_LINES),
    st.binary(max_size=300).map(lambda b: b.replace(b"\n", b" ")),
    st.text(max_size=200).map(lambda t: t.replace("\n", " ").encode("utf-8", "surrogatepass")),
)


def _query(folder: Path, engine: str = "auto") -> tuple[int, int]:
    result = LogParser(folder).query("llm", where=["marker=1"], aggs=["count"], engine=engine)
    return (result.rows[0]["count"] if result.rows else 0), result.skipped.count


def _streamed(folder: Path) -> tuple[int, int]:
    skipped = SkipReport()
    found = sum(1 for _ in LogParser(folder).records("llm", where=["marker=1"], skipped=skipped))
    return found, skipped.count


@FUZZ
@given(lines=st.lists(line_strategy, max_size=40))
@example(lines=[GOOD, *NASTY_LINES, GOOD])
def test_parser_counts_good_records_and_skips_the_rest(tmp_path_factory: pytest.TempPathFactory,
                                                       lines: list[bytes]) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "llm_metrics.log").write_bytes(b"".join(line + b"\n" for line in lines))
    good = sum(1 for line in lines if line == GOOD)
    counted = _query(folder, "python")
    assert counted[0] == good  # every good record found, never one made of garbage
    assert _query(folder, "duckdb") == counted  # both engines give the same answer and the same skipped lines
    assert _streamed(folder) == counted  # and so does the record stream
    nonblank = sum(1 for line in lines if line.strip() and line != GOOD)
    assert counted[1] <= nonblank  # skips are counted, and only lines that were there


def _record(n: int) -> bytes:
    return orjson.dumps({"timestamp": 1_700_000_000 + n / 7, "metric_type": "timer", "operation": "llm_call",
                         "model": f"m{n % 3}", "response_time": (n % 1000) / 100, "marker": 1, "module": "llm"})


damaged_logs = st.tuples(
    st.lists(st.integers(0, 10**6), min_size=1, max_size=40),
    st.lists(st.tuples(st.sampled_from(["flip", "insert", "cut", "newline"]), st.floats(0, 1), st.binary(max_size=8)),
             max_size=4),
)


def _damage(data: bytes, damage: list[tuple[str, float, bytes]]) -> bytes:
    for kind, where, junk in damage:
        at = int(where * len(data))
        if kind == "flip" and data:
            at = min(at, len(data) - 1)
            data = data[:at] + bytes([data[at] ^ 0x5A]) + data[at + 1:]
        elif kind == "insert":
            data = data[:at] + junk + data[at:]
        elif kind == "cut":
            data = data[: at]
        else:
            data = data[:at] + b"\n" + data[at:]
    return data


@FUZZ
@given(log=damaged_logs, archive=damaged_logs)
@example(log=([0, 0, 1, 0, 0, 0, 0, 0], [("flip", 0.359375, b"")]), archive=([0], []))  # "marker" -> "marke("
def test_parser_survives_damaged_logs(tmp_path_factory: pytest.TempPathFactory,
                                      log: tuple[list[int], list[tuple[str, float, bytes]]],
                                      archive: tuple[list[int], list[tuple[str, float, bytes]]]) -> None:
    """Mostly valid records with damage injected (flipped bytes, junk, cuts, split lines), in the live
    file and inside a compressed backup: the aggregate counts exactly the records the record stream
    yields, and both count the same skipped lines."""
    folder = tmp_path_factory.mktemp("raw")
    numbers, damage = log
    (folder / "llm_metrics.log").write_bytes(_damage(b"".join(_record(n) + b"\n" for n in numbers), damage))
    undamaged = 0 if damage else len(numbers)
    numbers, damage = archive
    packed = gzip.compress(b"".join(_record(n) + b"\n" for n in numbers))
    (folder / "llm_metrics.log.1.gz").write_bytes(_damage(packed, damage))
    undamaged += 0 if damage else len(numbers)
    os.utime(folder / "llm_metrics.log.1.gz", (1_600_000_000, 1_600_000_000))
    streamed, stream_skipped = _streamed(folder)  # a flip may leave a whole record without its marker
    answers = []
    for engine in ("python", "duckdb"):
        result = LogParser(folder).query("llm", where=["marker=1"], aggs=["count", "p95:response_time"],
                                         engine=engine)
        counted = result.rows[0]["count"] if result.rows else 0
        assert counted == streamed  # the aggregate counts what the record stream yields, no more, no less
        assert result.skipped.count == stream_skipped
        answers.append(result.rows)
    assert_same_answer(answers[0], answers[1])
    assert streamed >= undamaged  # a file left whole gives every one of its records


def test_huge_lines_are_skipped_not_swallowed(tmp_path: Path) -> None:
    huge = b'{"timestamp": 1700000000, "module": "llm", "blob": "' + b"x" * (3 << 20) + b'"}'
    (tmp_path / "llm_metrics.log").write_bytes(GOOD + b"\n" + huge + b"\n" + GOOD + b"\n" + huge[:1000])
    for engine in ("python", "duckdb"):
        count, _ = _query(tmp_path, engine)
        assert count == 2


def _config_error(call: Any) -> ConfigError | None:
    """The ConfigError ``call`` raised, or None; any other exception fails the test."""
    try:
        call()
    except ConfigError as exc:
        return exc
    return None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
SECTIONS = ["enabled", "logging", "log_cleanup", "system_metrics", "pricing", "tracing", "alerts", "slos",
            "anomalies", "server", "otlp"]
KEYS = ["log_dir", "rotation", "max_bytes", "backup_count", "when", "rules", "notifiers", "name", "module", "expr",
        "window", "for", "severity", "type", "url", "host", "port", "to", "objective", "target", "period",
        "threshold", "models", "input", "output", "sample_rate", "retention_days", "log_patterns", "buckets",
        "endpoint", "modules", "where", "group_by", "cooldown", "critical"]
config_values = st.recursive(
    json_values,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(KEYS), children, max_size=5),
    max_leaves=30,
)


@FUZZ
@given(raw=st.dictionaries(st.sampled_from(SECTIONS), config_values, max_size=4))
@example(raw={"alerts": {"rules": [{"name": "x", "module": "llm", "expr": "p95(rt) > nan"}]}})
@example(raw={"slos": [{"name": "s", "module": "m", "objective": "latency", "target": 0.9, "threshold": -1}]})
@example(raw={"server": {"buckets": [1, float("nan")]}})
def test_config_loader_answers_with_settings_or_a_config_error(raw: dict[str, Any]) -> None:
    error = _config_error(lambda: settings_from_mapping(raw))
    if error is not None:
        assert error.key  # it names the key
        assert str(error)


@FUZZ
@given(data=st.binary(max_size=2000) | st.text(max_size=500).map(lambda t: t.encode("utf-8", "surrogatepass")))
@example(data=b"!!python/object/apply:os.system ['echo owned']")
@example(data=b"a: &a [*a, *a]\nb: *a\n")
@example(data=b"logging: {log_dir: !!binary aGVsbG8=}\n")
@example(data=b"\xff\xfe")
@example(data=b"[" * 10000)
def test_config_files_of_any_bytes(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    """Any bytes: either settings loaded from this very file, or a ConfigError naming the file, the key
    at fault and what would be valid; never another exception."""
    path = tmp_path_factory.mktemp("cfg") / "monitoring.yaml"
    path.write_bytes(data)
    loaded: list[Any] = []
    error = _config_error(lambda: loaded.append(load_settings(path, environ={})))
    if error is None:
        assert loaded[0].source == str(path)
        assert loaded[0].logging.log_dir.is_absolute()
    else:
        assert error.key
        assert str(path) in str(error)
        assert "expected" in str(error) or "valid keys" in str(error)


def test_yaml_tags_that_build_objects_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "owned"
    path = tmp_path / "c.yaml"
    path.write_text(f"enabled: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError):
        load_settings(path, environ={})
    assert not marker.exists()


@FUZZ
@given(expr=st.text(max_size=60) | st.from_regex(r"[a-z0-9_]{1,6}(\([a-z_.]{0,8}\))?\s*[<>=!]{1,2}\s*[-+.0-9eE]{0,8}",
                                                 fullmatch=True))
@example(expr="p95(response_time) > 1e999")
@example(expr="p101(x) > 1")
@example(expr="count < -0")
def test_alert_expressions_parse_or_explain(expr: str) -> None:
    parsed: list[Any] = []
    error = _config_error(lambda: parsed.extend(parse_expr(expr, "alerts.rules[0].expr", "<fuzz>")))
    if error is not None:
        assert error.key == "alerts.rules[0].expr"
        return
    agg, op, threshold = parsed
    assert op in (">", ">=", "<", "<=", "==", "!=")
    assert isinstance(threshold, float)
    assert agg


class Raises:
    def __repr__(self) -> str:
        raise RuntimeError("repr")

    def __str__(self) -> str:
        raise RuntimeError("str")


class Heavy:
    def __repr__(self) -> str:
        return "h" * 1_000_000


def _hostile() -> Any:
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    nested: Any = []
    for _ in range(5000):
        nested = [nested]
    return st.one_of(json_values, st.sampled_from([Raises(), cyclic, nested, math.nan, -math.inf,
                                                   b"\xff" * 10, {1, 2}, "x" * 200_000, 10**400]))


@FUZZ
@given(fields=st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True), _hostile(), max_size=6))
def test_recording_hostile_values_never_raises_and_caps_the_line(tmp_path_factory: pytest.TempPathFactory,
                                                                 fields: dict[str, Any]) -> None:
    path = tmp_path_factory.mktemp("rec") / "t.log"
    writer = MetricsLogger("t", FileSink(path), redactor=Redactor(), max_line_bytes=4096)
    writer.log_event("hostile", **fields)
    raw = path.read_bytes()
    assert raw.count(b"\n") == 1
    assert len(raw) <= 4096
    record = orjson.loads(raw)
    assert record["operation"] == "hostile"
    if len(json.dumps(fields, default=str)) > 8192 if _dumpable(fields) else False:
        assert record.get("truncated")


def _dumpable(fields: dict[str, Any]) -> bool:
    try:
        json.dumps(fields, default=str)
    except (ValueError, RecursionError, RuntimeError, TypeError):
        return False
    return True


def test_a_value_with_a_huge_repr_is_cut(tmp_path: Path) -> None:
    """An object with no JSON form is written as its repr, cut to 200 characters."""
    writer = MetricsLogger("t", FileSink(tmp_path / "t.log"), redactor=Redactor(), max_line_bytes=4096)
    writer.log_event("heavy", obj=Heavy(), small=1)
    raw = (tmp_path / "t.log").read_bytes()
    assert len(raw) <= 4096
    record = orjson.loads(raw)
    assert record["obj"] == "h" * 197 + "..."
    assert record["small"] == 1


def test_numbers_json_has_no_word_for_are_records_in_both_engines(tmp_path: Path) -> None:
    """``NaN``, ``Infinity`` and ``1e400`` outside the timestamp: DuckDB reads such a line, and so does
    the line reader; a lone surrogate is refused by both."""
    lines = [b'{"timestamp": 1700000000.5, "marker": 1, "x": NaN}',
             b'{"timestamp": 1700000001.5, "marker": 1, "x": Infinity}',
             b'{"timestamp": 1700000002.5, "marker": 1, "x": -Infinity}',
             b'{"timestamp": 1700000003.5, "marker": 1, "x": 1e400}',
             b'{"timestamp": 1700000004.5, "marker": 1, "x": "\\ud800"}']
    (tmp_path / "llm_metrics.log").write_bytes(b"".join(line + b"\n" for line in lines))
    assert _query(tmp_path, "python") == _query(tmp_path, "duckdb") == (4, 1)
    assert _streamed(tmp_path) == (4, 1)
