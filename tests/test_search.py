"""Search: ``--where 'field~regex'`` on both engines, and ``monitoring grep`` across a file family."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from infrastructure.monitoring.cli import main
from infrastructure.monitoring.errors import QueryError
from infrastructure.monitoring.query import LogParser
from infrastructure.monitoring.query.search import search
from infrastructure.monitoring.query.spec import parse_where

NOW = time.time()

VALUES: list[Any] = [
    "gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "rate limit exceeded", "Rate-Limit hit", "timed out",
    "a\nb", "line\n", "K", "\u212a", "istanbul", "\u0130stanbul", "\u0131", "caf\u00e9", "CAF\u00c9", "tab\there",
    "vt\x0bhere", "{,3}", "a{,3}", "x[y]z", "\u0663", "under_score", "", 12, 1.5, True, False, None,
    {"nested": "gpt"}, ["gpt", 1],
]
"""One record per value, its ``id`` the index: the text of each decides what a pattern finds."""

PATTERNS: list[tuple[str, set[int]]] = [
    ("gpt", {0, 1, 28, 29}),
    ("^gpt-4o$", {0}),
    ("^gpt-4o(-mini)?$", {0, 1}),
    ("(?i)rate.limit", {3, 4}),
    ("rate.limit", {3}),
    ("(?i:RATE)[- ]limit", {3}),
    ("^a.b$", set()),  # '.' does not cross a newline
    ("(?s)^a.b$", {6}),
    ("^line$", set()),  # '$' is the end of the text, even before a final newline
    ("(?m)^line$", {7}),
    (r"\s", {3, 4, 5, 6, 7, 15}),  # ASCII white space without the vertical tab
    (r"\S\x0b", {16}),
    (r"\d", {0, 1, 2, 17, 18, 23, 24, 29}),  # ASCII digits only: not the Arabic-Indic three
    ("[\u0660-\u0669]", {20}),
    (r"^\w+$", {8, 10, 21, 23, 25, 26}),  # ASCII word characters only: not the Kelvin sign, not İstanbul
    ("(?i)^k$", {8, 9}),  # the Kelvin sign folds to k in both
    ("(?i)^istanbul$", {10}),  # the Turkish dotted capital I does not fold to i (RE2)
    ("(?i)^\u0131$", {12}),
    ("(?i)caf\u00e9", {13, 14}),
    (r"\bexceeded\b", {3}),
    (r"t\b", {0, 1, 2, 3, 4, 5, 16, 28, 29}),
    (r"\{,3\}", {17, 18}),
    (r"\[y\]", {19}),
    ("^$", {22}),
    ("^(true|false)$", {25, 26}),
    (r"^1\.5$", {24}),
    ("^12$", {23}),
    ('"nested"', {28}),  # a dict's text is its JSON
    (r"^\[", {29}),
    ("x{0}[[]", {19, 29}),
    ("(?P<word>o)ut", {5}),
    ("mini|sonnet", {1, 2}),
    ("c(?:la|af)", {2, 13}),
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One llm family: every value of ``VALUES`` as ``model`` in a record."""
    logs = tmp_path_factory.mktemp("search") / "logs"
    logs.mkdir()
    lines = b"".join(orjson.dumps({"timestamp": NOW - 100 + i, "metric_type": "timer", "operation": "llm_call",
                                   "id": i, "model": v, "success": i % 3 != 0}) + b"\n"
                     for i, v in enumerate(VALUES))
    (logs / "llm_metrics.log").write_bytes(lines)
    return logs


def _ids(folder: Path, condition: str, engine: str) -> set[int]:
    rows = LogParser(folder).query("llm", where=[condition], group_by="id", aggs=["count"], engine=engine,
                                   check_fields=False).rows
    return {int(r["id"]) for r in rows}


@pytest.mark.parametrize(("pattern", "expected"), PATTERNS, ids=[p for p, _ in PATTERNS])
def test_both_engines_find_the_same_records(folder: Path, pattern: str, expected: set[int]) -> None:
    """``model~PATTERN`` gives the expected records on the Python engine and on DuckDB (RE2)."""
    python = _ids(folder, f"model~{pattern}", "python")
    duckdb = _ids(folder, f"model~{pattern}", "duckdb")
    assert python == duckdb == expected
    assert {r["id"] for r in search(LogParser(folder), pattern, field="model")} == expected


def test_count_if_with_a_pattern_is_computed_alike(folder: Path) -> None:
    """A ``count_if:model~...`` aggregate is named and counted the same by both engines."""
    rows = {engine: LogParser(folder).query("llm", aggs=["count", "count_if:model~^gpt"], engine=engine).rows
            for engine in ("python", "duckdb")}
    assert rows["python"] == rows["duckdb"] == [{"count": len(VALUES), "count_model_matches_gpt": 2}]


REFUSED: list[tuple[str, str]] = [
    ("(?=x)", "lookahead"),
    ("(?<=x)y", "lookbehind"),
    (r"(a)\1", "backreferences"),
    ("[[:alpha:]]", "POSIX classes"),
    (r"\pL", r"'\\p'"),
    (r"a\Z", "use \\$ for the end"),
    (r"a\z", "use \\$ for the end"),
    ("a{,3}", r"write '\{0,n\}'"),
    ("a(?i)b", r"scope them instead: \(\?i:...\)"),
    ("(?x)a b", "unknown group"),
    ("a{1001}", "above 1000"),
    ("(a{10}){101}", "above 1000"),
    ("a**", "repetition of a repetition"),
    ("a*+", "repetition of a repetition"),
    ("*a", "nothing to repeat"),
    ("[\\D]", r"'\\D' inside \[...\]"),
    (r"\u00e9", r"'\\u'"),
    ("(unclosed", r"missing '\)'"),
    ("[unclosed", r"missing '\]'"),
    ("a)", r"unbalanced '\)'"),
    ("[z-a]", "runs backwards"),
    ("(?P<a>x)(?P<a>y)", "not a regular expression"),
]


@pytest.mark.parametrize(("pattern", "message"), REFUSED, ids=[p for p, _ in REFUSED])
def test_patterns_outside_the_common_subset_are_refused(folder: Path, pattern: str, message: str) -> None:
    """A pattern one engine would read differently (or not at all) is a QueryError naming the problem."""
    with pytest.raises(QueryError, match=message):
        parse_where(f"model~{pattern}")
    for engine in ("python", "duckdb"):
        with pytest.raises(QueryError, match=message):
            LogParser(folder).query("llm", where=[f"model~{pattern}"], engine=engine)


def _family(folder: Path, now: float = NOW) -> list[dict[str, Any]]:
    """A tool family of 300 records over 3 files: ``.2.gz`` (oldest), ``.1``, the live file."""
    records = [{"timestamp": now - 3000 + 10 * i, "metric_type": "timer", "operation": "tool_call",
                "tool_name": ["web_search", "read_file", "run_tests"][i % 3], "duration": i / 100,
                "success": i % 7 != 0, **({"error": "HTTP 429: rate limit"} if i % 7 == 0 else {})}
               for i in range(300)]
    parts = [records[:100], records[100:200], records[200:]]
    folder.mkdir(parents=True, exist_ok=True)
    data = [b"".join(orjson.dumps(r) + b"\n" for r in part) for part in parts]
    (folder / "tool_metrics.log.2.gz").write_bytes(gzip.compress(data[0]))
    (folder / "tool_metrics.log.1").write_bytes(data[1])
    (folder / "tool_metrics.log").write_bytes(data[2])
    (folder / "llm_metrics.log").write_bytes(orjson.dumps({"timestamp": NOW - 1495, "metric_type": "timer",
                                                           "operation": "llm_call", "model": "gpt-4o",
                                                           "error": "rate limit"}) + b"\n")
    return records


def grep(*args: str) -> Any:
    return CliRunner().invoke(main, ["grep", *args], catch_exceptions=False)


def test_grep_prints_whole_records_across_rotated_and_gz_files(tmp_path: Path) -> None:
    """Every failed call, oldest first, from the archive, the backup and the live file, as the lines written."""
    records = _family(tmp_path)
    done = grep('"success":false', "--module", "tool", "--log-dir", str(tmp_path))
    assert done.exit_code == 0, done.output
    failed = [r for r in records if not r["success"]]
    assert done.output == "".join(orjson.dumps(r).decode() + "\n" for r in failed)
    everywhere = grep("rate limit", "--log-dir", str(tmp_path))
    found = [json.loads(line) for line in everywhere.output.splitlines()]
    assert [r["timestamp"] for r in found] == sorted([*(r["timestamp"] for r in failed), NOW - 1495])
    assert [r["operation"] for r in found].count("llm_call") == 1  # both families, merged by time


def test_grep_field_window_limit_and_case(tmp_path: Path) -> None:
    """``--field`` matches one field's text; ``--last``/``--since`` cut by time; ``--limit`` keeps the newest."""
    now = time.time()  # records 10 s apart: ``--last 505s`` cuts 5 s from any of them, whenever this runs
    records = _family(tmp_path, now)
    by_field = grep("^run", "--field", "tool_name", "--log-dir", str(tmp_path))
    assert [json.loads(x)["timestamp"] for x in by_field.output.splitlines()] == \
        [r["timestamp"] for r in records if r["tool_name"] == "run_tests"]
    recent = grep("^run", "--field", "tool_name", "--last", "505s", "--log-dir", str(tmp_path))
    assert [json.loads(x)["timestamp"] for x in recent.output.splitlines()] == \
        [r["timestamp"] for r in records if r["tool_name"] == "run_tests" and r["timestamp"] >= now - 505]
    since = grep("run_tests", "--since", str(now - 1000), "--until", str(now - 900), "--log-dir", str(tmp_path))
    assert [json.loads(x)["timestamp"] for x in since.output.splitlines()] == \
        [r["timestamp"] for r in records if r["tool_name"] == "run_tests" and now - 1000 <= r["timestamp"] < now - 900]
    newest = grep("RATE LIMIT", "-i", "--module", "tool", "--limit", "2", "--log-dir", str(tmp_path))
    assert [json.loads(x)["timestamp"] for x in newest.output.splitlines()] == \
        [r["timestamp"] for r in records if not r["success"]][-2:]
    with_where = grep("web", "--where", "duration>2.9", "--module", "tool", "--log-dir", str(tmp_path))
    assert [json.loads(x)["duration"] for x in with_where.output.splitlines()] == \
        [r["duration"] for r in records if r["tool_name"] == "web_search" and r["duration"] > 2.9]


def test_families_merge_by_time_whatever_the_timestamps_spelling(tmp_path: Path) -> None:
    """A timestamp kept as a numeric string (``"+-5"`` reads as -5, as DuckDB reads it) orders the merge
    of two families like any number."""
    (tmp_path / "a.log").write_text('{"timestamp": "+-5", "n": 1}\n{"timestamp": 10, "n": 3}\n')
    (tmp_path / "b.log").write_text('{"timestamp": " 3 ", "n": 2}\n')
    assert [r["n"] for r in search(LogParser(tmp_path), "n")] == [1, 2, 3]


def test_search_takes_its_filters_as_queries_do(tmp_path: Path) -> None:
    """``where`` as a mapping, as ``LogParser.query`` and ``records`` take it."""
    records = _family(tmp_path)
    found = search(LogParser(tmp_path), "rate", module="tool", where={"tool_name": "web_search"})
    assert [r["timestamp"] for r in found] == [r["timestamp"] for r in records
                                                if r["tool_name"] == "web_search" and not r["success"]]
    with pytest.raises(QueryError, match="no log files for module 'nope'") as missing:
        search(LogParser(tmp_path), "x", module="nope")
    assert missing.value.params == ("module",)


def test_grep_exit_status_follows_grep(tmp_path: Path) -> None:
    """0 with a match, 1 with none, 2 for a pattern both engines would not read alike or a missing module."""
    _family(tmp_path)
    assert grep("read_file", "--log-dir", str(tmp_path)).exit_code == 0
    nothing = grep("no such text", "--log-dir", str(tmp_path))
    assert (nothing.exit_code, nothing.output) == (1, "")
    bad = grep("(?<=x)y", "--log-dir", str(tmp_path))
    assert bad.exit_code == 2
    assert "lookbehind '(?<=' is not supported" in bad.output
    missing = grep("x", "--module", "nope", "--log-dir", str(tmp_path))
    assert missing.exit_code == 2
    assert "no log files for module 'nope'" in missing.output


def test_query_command_filters_with_a_pattern(tmp_path: Path) -> None:
    """``monitoring query --where 'field~regex'`` counts what the pattern finds."""
    records = _family(tmp_path)
    done = CliRunner().invoke(main, ["query", "--module", "tool", "--where", "tool_name~^(web|read)_",
                                     "--group-by", "tool_name", "--format", "json", "--log-dir", str(tmp_path)])
    assert done.exit_code == 0, done.output
    assert {r["tool_name"]: r["count"] for r in json.loads(done.output)} == {
        name: sum(1 for r in records if r["tool_name"] == name) for name in ("read_file", "web_search")}
