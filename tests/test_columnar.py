"""Columnar copies of settled log files: the same answer as the JSON, always; never in the way.

The whole query-test matrix (``test_query.py``: its questions and its independently computed
expectations) runs again over folders whose settled files have copies, and a list of
questions is asked both ways and compared. Mixed-type fields are fuzzed against the JSON
path. Damaged, missing and foreign copies, the cleaner and the switch are checked on real
files and real processes.
"""

from __future__ import annotations

import gzip
import inspect
import json
import logging
import math
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infrastructure.monitoring import CleanupSettings, LogCleaner, _copies
from infrastructure.monitoring.query import LogParser, QueryResult, columnar, files

from . import test_query as tq
from .conftest import REPO_ROOT, age

family = tq.family  # the matrix's family: three writers, rotations, gzipped backups, damaged lines


def _normal(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def _summary(result: QueryResult) -> dict[str, Any]:
    skipped = result.skipped
    complete = len(skipped.samples) < 100  # beyond, which 100 are listed depends on the order files are read
    return {"rows": _normal(result.rows), "skipped": skipped.count, "by_reason": skipped.by_reason,
            "samples": sorted((Path(s.file).name, s.line or 0, s.reason) for s in skipped.samples) if complete
            else len(skipped.samples),
            "matched": result.records_matched, "folded": result.folded_groups}


@pytest.fixture
def used(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many copies each DuckDB scan read (the copies really are what answered)."""
    counts: list[int] = []
    find = columnar.find_copies

    def spy(log_dir: Any, segments: Any) -> Any:
        found = find(log_dir, segments)
        counts.append(len(found))
        return found

    monkeypatch.setattr(columnar, "find_copies", spy)
    monkeypatch.setattr(LogParser, "duckdb_threshold", 0)  # tiny test folders: DuckDB, not the Python loop
    return counts


def _settle(folder: Path) -> None:
    """Backups last written a minute ago (keeping their order), as in a folder that has been running."""
    backups = sorted((p for p in folder.iterdir() if p.is_file() and ".log." in p.name),
                     key=lambda p: p.stat().st_mtime)
    now = time.time()
    for n, path in enumerate(backups):
        stamp = now - 120 + n * 0.01
        os.utime(path, (stamp, stamp))


@pytest.fixture(scope="module")
def copied(family: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The matrix's family with a copy of every settled backup (the torn one excepted)."""
    folder = tmp_path_factory.mktemp("copied") / "logs"
    shutil.copytree(family, folder)
    _settle(folder)
    built = columnar.build_pending(folder)
    assert sum(r.built for r in built) >= 10
    coverage = columnar.status(folder)
    assert [Path(p).name for p, _ in coverage.unsupported] == ["llm_metrics.log.3"]  # its torn tail: read as JSON
    assert not coverage.pending
    return folder


# --------------------------------------------------------------------------- the matrix, with copies

def _matrix(name: str, **kwargs: Any) -> None:
    """Run ``test_query``'s test ``name`` (on DuckDB, the engine that reads copies, when it takes one)."""
    test = getattr(tq, name)
    if "engine" in inspect.signature(test).parameters:
        kwargs["engine"] = "duckdb"
    test(**kwargs)


FAMILY_TESTS = [
    "test_llm_usage_by_model_matches_the_records_written",
    "test_damaged_lines_are_skipped_counted_and_located",
    "test_filters_compare_json_values",
    "test_high_cardinality_groups_fold_into_other_with_exact_top",
    "test_top_n_and_ordering",
    "test_count_if_counts_records_matching_a_filter_per_group",
]


@pytest.mark.parametrize("test", FAMILY_TESTS)
def test_the_query_matrix_holds_over_copies(test: str, copied: Path, used: list[int]) -> None:
    _matrix(test, family=copied)
    assert used
    assert max(used) >= 10  # the answers came from the copies


@pytest.fixture
def always_copied(monkeypatch: pytest.MonkeyPatch, used: list[int]) -> list[int]:
    """Every query first builds the copies of its folder, every backup counting as settled at once."""
    monkeypatch.setattr(files, "_IN_FLIGHT_SECONDS", -1.0)
    monkeypatch.setattr(columnar, "SETTLED_SECONDS", -1.0)
    run = LogParser.run

    def build_then_run(self: LogParser, *args: Any, **kwargs: Any) -> QueryResult:
        columnar.build_pending(self.log_dir)
        return run(self, *args, **kwargs)

    monkeypatch.setattr(LogParser, "run", build_then_run)
    return used


def test_windows_buckets_and_pruning_over_copies(tmp_path: Path, always_copied: list[int]) -> None:
    _matrix("test_time_windows_and_buckets", tmp_path=tmp_path)
    assert max(always_copied) >= 1


@pytest.mark.slow
def test_percentiles_over_copies(tmp_path: Path, always_copied: list[int]) -> None:
    _matrix("test_percentiles_are_exact_at_any_count_and_whatever_the_files_look_like", tmp_path=tmp_path)
    assert max(always_copied) >= 2


def test_a_damaged_archive_over_its_copy(tmp_path: Path, always_copied: list[int],
                                         caplog: pytest.LogCaptureFixture) -> None:
    _matrix("test_a_damaged_archive_is_read_as_far_as_it_goes_and_reported", tmp_path=tmp_path,
            caplog=caplog)
    assert max(always_copied) == 2  # the damaged archive and the backup beside it


def test_heavy_hitters_and_questions_over_copies(tmp_path: Path, always_copied: list[int]) -> None:
    _matrix("test_heavy_hitters_survive_among_many_one_off_keys", tmp_path=tmp_path)
    _matrix("test_questions_that_cannot_mean_anything_say_why", tmp_path=tmp_path / "q")


def test_the_generators_ground_truth_over_copies(tmp_path: Path, always_copied: list[int]) -> None:
    name = next(n for n in ("test_engines_agree_with_the_generators_ground_truth",
                            "test_answers_match_the_generators_ground_truth") if hasattr(tq, n))
    _matrix(name, tmp_path=tmp_path)
    assert max(always_copied) >= 3


# --------------------------------------------------------------------------- both ways, compared

QUESTIONS: list[dict[str, Any]] = [
    {"aggs": ["count"]},
    {"operation": "llm_call", "group_by": "model",
     "aggs": ["count", "errors", "error_rate", "rate", "sum:total_tokens", "avg:response_time", "min:response_time",
              "max:response_time", "p50:response_time", "p95:response_time", "p99:response_time",
              "p99.9:response_time", "latest:response_time", "latest:user", "count_if:success=false",
              "count_if:prompt_tokens>1500", "count_if:user in user0,user1"]},
    {"where": ["model!=gpt-4o", "prompt_tokens>=100", "response_time<2.5"], "group_by": ["provider", "success"],
     "aggs": ["count", "sum:completion_tokens"]},
    {"where": ["model in gpt-4o,llama-3.1-70b", "writer=1"], "aggs": ["count", "avg:seq"]},
    {"where": ["success=true", "prompt_tokens<=500"], "group_by": "writer", "aggs": ["count", "max:seq"]},
    {"where": ["error_type=timeout"], "aggs": ["count"]},
    {"where": {"user": ["user1", "user2"], "success": False}, "aggs": ["count"]},
    {"group_by": "user", "aggs": ["count", "sum:prompt_tokens", "p90:response_time"], "max_groups": 15},
    {"group_by": ["model", "writer"], "aggs": ["count"], "max_groups": 4},
    {"bucket": "1m", "aggs": ["count", "rate", "errors"]},
    {"group_by": "seq", "aggs": ["count"], "max_groups": 50},
    {"group_by": "success", "aggs": ["count", "sum:success", "latest:success"]},
    {"group_by": "response_time", "aggs": ["count"], "max_groups": 5},
    {"where": ["model=gpt-4o"], "group_by": "prompt_tokens", "aggs": ["latest:model", "count"], "max_groups": 20},
    {"where": ["nonexistent=3"], "aggs": ["count"]},
    {"group_by": "nonexistent", "aggs": ["count", "sum:nonexistent"]},
]


def _same(a: Any, b: Any) -> bool:
    """Equal, a float allowed to differ in its last bits only: DuckDB adds a group's doubles in the
    order it reads them (which also varies with the number of threads), so a sum or a mean of
    non-integral values may round differently. Everything else must be identical."""
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool) \
            and (isinstance(a, float) or isinstance(b, float)):  # a sum that came out whole prints as an int
        a, b = float(a), float(b)
        return a == b or (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b) and type(a) is type(b)


def _both(folder: Path, question: dict[str, Any], module: str | None = "llm") -> None:
    q = dict(question)
    plain = LogParser(folder, columnar=False).query(module, **q)
    fast = LogParser(folder, columnar=True).query(module, **q)
    assert _same(_summary(fast), _summary(plain)), (question, _summary(fast), _summary(plain))


def test_every_question_gives_the_same_answer_with_and_without_copies(copied: Path, used: list[int]) -> None:
    for question in QUESTIONS:
        _both(copied, question)
    assert sum(used) >= 10 * len(QUESTIONS) // 2


def test_windows_that_cut_files_mix_copies_and_json(copied: Path, used: list[int]) -> None:
    rows = LogParser(copied, columnar=False).query("llm", aggs=["min:timestamp", "max:timestamp"]).rows
    lo, hi = rows[0]["min_timestamp"], rows[0]["max_timestamp"]
    span = hi - lo
    for since, until in ((lo + span / 2, None), (None, lo + span / 3), (lo + span / 4, lo + 3 * span / 4)):
        _both(copied, {"since": since, "until": until, "group_by": "model", "aggs": ["count", "p95:response_time"]})
    assert min(used) >= 1


# --------------------------------------------------------------------------- fuzz: mixed-type fields

RAW_NUMBERS = ["0", "-0", "12", "2.5", "2.50", "1e3", "1E+2", "0.1000", "-0.0", "1e400", "-1e400",
               "123456789012345678901234567890", "9007199254740993", "-9223372036854775808", "18446744073709551616",
               "5e-324", "3.0", "100", "7", "1704110400.85812"]
HUGE = ["1e308", "1.7976931348623157e308", "-1.5e308"]
"""Finite, but two of them overflow when added: only in a field that is never summed (the order of
additions would decide between inf and NaN)."""
RAW_STRINGS = ["12", " 12 ", "abc", "yes", "no", "y", "n", "t", "f", "TRUE", "False", "1", "0", "2.5", "NaN", "inf",
               "-inf", "1e400", "0x10", "1_000", "", "+5", ".5", "é", "héllo wörld", "日本", "a:b", "x\"y",
               "back\\slash",
               "line\nbreak", "tab\there", "\u00e9\u0301", "🙂", "null", "[1]", "true", "false", "2024-01-01T00:00:00Z"]
RAW_OTHER = ["true", "false", "null", "{}", "[]", '{"a": [1, 2.0, "x:y"]}', '[1, "b", null]', '{"k": {"z": true}}']


def _raw_value(rng: random.Random, bias: str) -> str | None:
    pick = rng.random()
    if pick < 0.12:
        return None  # the key is absent
    if bias == "num" and pick < 0.75:
        return rng.choice(RAW_NUMBERS[:9]) if rng.random() < 0.8 else rng.choice(RAW_NUMBERS)
    if bias == "text" and pick < 0.75:
        return json.dumps(rng.choice(RAW_STRINGS[:12]), ensure_ascii=rng.random() < 0.5)
    if bias == "bool" and pick < 0.75:
        return rng.choice(["true", "false"])
    kind = rng.random()
    if kind < 0.4:
        return rng.choice(RAW_NUMBERS + (HUGE if bias == "huge" else []))
    if kind < 0.8:
        return json.dumps(rng.choice(RAW_STRINGS), ensure_ascii=rng.random() < 0.5)
    return rng.choice(RAW_OTHER)


def _fuzz_folder(folder: Path, seed: int, files_count: int = 4, per_file: int = 400) -> None:
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    t = 1_704_110_400.0
    fields = {"op": "text", "n": "num", "ok": "bool", "mix": "any", "u": "text", "deep": "huge"}
    for f in range(files_count, -1, -1):
        name = "fz_metrics.log" if f == 0 else f"fz_metrics.log.{f}"
        lines = []
        for _ in range(per_file):
            t += rng.random() * 3
            parts = [f'"timestamp": {t!r}']
            keys = list(fields)
            rng.shuffle(keys)
            for key in keys:
                raw = _raw_value(rng, fields[key])
                if raw is not None:
                    parts.append(f'"{key}": {raw}')
            if rng.random() < 0.1:
                parts.append(f'"extra{rng.randint(0, 3)}": {_raw_value(rng, "any") or "1"}')
            if rng.random() < 0.03:
                parts.append(f'"op": {json.dumps(rng.choice(RAW_STRINGS))}')  # a duplicate key: the first one counts
            sep = rng.choice([", ", ","])
            lines.append("{" + sep.join(parts) + "}")
            roll = rng.random()
            if roll < 0.01:
                lines.append('{"timestamp": 1, "op": broken')
            elif roll < 0.015:
                lines.append('{"level": "info", "msg": "not a metric: record"}')
            elif roll < 0.02:
                lines.append('[1, 2, 3]')
            elif roll < 0.025:
                lines.append('{"timestamp": "soon", "op": "x"}')
        data = ("\n".join(lines) + "\n").encode()
        path = folder / name
        if f == files_count and seed % 2:
            path = folder / (name + ".gz")
            path.write_bytes(gzip.compress(data))
        else:
            path.write_bytes(data)
    _settle(folder)


FUZZ_QUESTIONS: list[dict[str, Any]] = [
    {"group_by": "mix", "aggs": ["count", "sum:mix", "min:mix", "max:mix", "avg:mix", "latest:mix"]},
    {"group_by": "op",
     "aggs": ["count", "errors", "error_rate", "sum:n", "p50:n", "p90:mix", "latest:n", "latest:deep"]},
    {"group_by": ["ok", "u"], "aggs": ["count", "count_if:mix=true", "count_if:n>1", "count_if:u=abc"]},
    {"where": ["mix=true"], "group_by": "deep", "aggs": ["count"]},
    {"where": ["mix=12"], "group_by": "n", "aggs": ["count"]},
    {"where": ["mix>=1", "n<100"], "aggs": ["count", "sum:mix"]},
    {"where": ["mix!=abc", "u in yes,no,é"], "group_by": "ok", "aggs": ["count"]},
    {"where": ["ok=false"], "group_by": "success", "aggs": ["count", "latest:ok", "sum:ok"]},
    {"where": {"deep": None}, "aggs": ["count"]},
    {"where": ["op=abc"], "group_by": "extra1", "aggs": ["count", "sum:extra2", "latest:extra3"]},
    {"group_by": "timestamp", "aggs": ["count"], "max_groups": 3},
    {"bucket": "10m", "group_by": "u", "aggs": ["count", "rate"]},
]


@pytest.mark.parametrize("seed", range(6))
def test_mixed_type_fields_read_exactly_as_the_json_reads_them(tmp_path: Path, seed: int, used: list[int]) -> None:
    folder = tmp_path / "fz"
    _fuzz_folder(folder, seed)
    built = columnar.build_pending(folder)
    assert sum(r.built for r in built) == 4, [r.reason for r in built]
    sidecars = [json.loads(p.read_text()) for p in (folder / columnar.FOLDER).glob("*.json")]
    assert any(meta["rest_rows"] for meta in sidecars)  # values not of their column's kind were met
    for question in FUZZ_QUESTIONS:
        _both(folder, question, "fz")
    assert min(used) == 4


def test_a_file_whose_keys_are_not_all_in_its_first_lines(tmp_path: Path, used: list[int]) -> None:
    """Keys that appear late, with escapes and colons in strings: the key set is listed in full."""
    folder = tmp_path / "late"
    folder.mkdir()
    lines = [json.dumps({"timestamp": 1_704_110_400.0 + i, "op": "a", "msg": "x:y\\z"}) for i in range(3000)]
    lines += [json.dumps({"timestamp": 1_704_120_000.0 + i, "op": "b", "late": i, "nested": {"k": i}})
              for i in range(50)]
    (folder / "late_metrics.log.1").write_text("\n".join(lines) + "\n")
    (folder / "late_metrics.log").write_text(json.dumps({"timestamp": 1_704_130_000.0, "late": 5}) + "\n")
    _settle(folder)
    assert [r.built for r in columnar.build_pending(folder)] == [True]
    for q in ({"group_by": "op", "aggs": ["count", "sum:late", "latest:nested", "latest:msg"]},
              {"where": ["late>10"], "aggs": ["count"]}):
        _both(folder, q, "late")
    assert used == [1, 1]


# --------------------------------------------------------------------------- never wrong, never in the way


def _copy_files(folder: Path) -> list[Path]:
    return sorted((folder / columnar.FOLDER).glob("*.parquet"))


DAMAGE: dict[str, Callable[[Path], None]] = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "bad footer": lambda p: p.write_bytes(p.read_bytes()[:-12] + b"\0" * 8 + b"PAR1"),
    "garbage pages": lambda p: p.write_bytes(b"PAR1" + os.urandom(p.stat().st_size - 8) + b"PAR1"),
    "no sidecar": lambda p: p.with_suffix(".json").unlink(),
    "foreign sidecar": lambda p: p.with_suffix(".json").write_text(
        p.with_suffix(".json").read_text().replace('"fingerprint":"', '"fingerprint":"0')),
    "old format": lambda p: p.with_suffix(".json").write_text(
        p.with_suffix(".json").read_text().replace(f'"format":{columnar.FORMAT}', '"format":0')),
    "other columns": lambda p: p.with_suffix(".json").write_text(
        p.with_suffix(".json").read_text().replace('"columns":{', '"columns":{"zz":["q"],')),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_copy_is_ignored_with_one_warning_and_rebuilt(tmp_path: Path, damage: str, used: list[int],
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "fz"
    _fuzz_folder(folder, 2)
    columnar.build_pending(folder)
    want = _summary(LogParser(folder, columnar=False).query("fz", group_by="op", aggs=["count", "sum:n"]))
    victim = _copy_files(folder)[1]
    size_before = len(_copy_files(folder))
    DAMAGE[damage](victim)
    caplog.set_level(logging.WARNING, "infrastructure.monitoring.query.columnar")
    columnar._warned.clear()
    for _ in range(2):
        got = LogParser(folder, columnar=True).query("fz", group_by="op", aggs=["count", "sum:n"])
        assert _same(_summary(got), want)
    warnings = [r for r in caplog.records if "columnar copy" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert len(_copy_files(folder)) == size_before - 1  # set aside ...
    rebuilt = columnar.build_pending(folder)
    assert [r.built for r in rebuilt] == [True]  # ... and made again
    assert _same(_summary(LogParser(folder, columnar=True).query("fz", group_by="op", aggs=["count", "sum:n"])), want)
    assert used[-1] == 4


def test_deleting_the_copies_by_hand_loses_nothing(tmp_path: Path, used: list[int]) -> None:
    folder = tmp_path / "fz"
    _fuzz_folder(folder, 3)
    columnar.build_pending(folder)
    with_copies = _summary(LogParser(folder).query("fz", group_by="mix", aggs=["count"]))
    shutil.rmtree(folder / columnar.FOLDER)
    assert _same(_summary(LogParser(folder).query("fz", group_by="mix", aggs=["count"])), with_copies)
    assert used == [4, 0]


def test_a_copy_is_never_used_for_a_file_that_changed(tmp_path: Path, used: list[int]) -> None:
    folder = tmp_path / "fz"
    _fuzz_folder(folder, 4)
    columnar.build_pending(folder)
    one = folder / "fz_metrics.log.1"
    with open(one, "a") as handle:  # a straggler's line after the copy was made
        handle.write(json.dumps({"timestamp": 1_704_200_000.0, "op": "late"}) + "\n")
    age(one, 0.01)
    rows = LogParser(folder).query("fz", where=["op=late"]).rows
    assert rows == [{"count": 1}]
    assert used == [3]
    columnar.build_pending(folder)  # the stale copy is pruned, a new one made
    assert len(_copy_files(folder)) == 4
    assert LogParser(folder).query("fz", where=["op=late"]).rows == [{"count": 1}]


def test_copies_off_reads_json_only(tmp_path: Path, used: list[int]) -> None:
    folder = tmp_path / "fz"
    _fuzz_folder(folder, 5)
    columnar.build_pending(folder)
    LogParser(folder, columnar=False).query("fz")
    assert used == []
    columnar.set_default_enabled(False)
    try:
        LogParser(folder).query("fz")
        assert used == []
    finally:
        columnar.set_default_enabled(True)
    LogParser(folder).query("fz")
    assert used == [4]


def test_a_failed_build_is_not_retried_at_every_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import duckdb

    folder = tmp_path / "fz"
    _fuzz_folder(folder, 10, files_count=1)
    write = columnar._write

    def out_of_memory(*args: Any, **kwargs: Any) -> Any:
        raise duckdb.OutOfMemoryException("Out of Memory Error: failed to allocate")

    monkeypatch.setattr(columnar, "_write", out_of_memory)
    first = columnar.build_pending(folder)
    assert [r.reason.split(":")[0] for r in first] == ["OutOfMemoryException"]
    monkeypatch.setattr(columnar, "_write", write)
    second = columnar.build_pending(folder)
    assert all(r.reason.startswith("not copied: build failed") for r in second)
    assert not _copy_files(folder)
    for marker in (folder / columnar.FOLDER).glob("*.json"):  # an hour later
        meta = json.loads(marker.read_text())
        meta["retry_at"] = time.time() - 1
        marker.write_text(json.dumps(meta))
    assert sum(r.built for r in columnar.build_pending(folder)) == 1
    assert len(_copy_files(folder)) == 1


# --------------------------------------------------------------------------- the live files' settled part


def test_a_live_file_is_read_through_a_prefix_copy_and_its_tail_as_json(tmp_path: Path, used: list[int],
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(_copies, "PREFIX_MIN_BYTES", 20_000)
    monkeypatch.setattr(_copies, "IN_FLIGHT_MARGIN", 5_000)
    folder = tmp_path / "fz"
    _fuzz_folder(folder, 9, files_count=1, per_file=1500)
    live = folder / "fz_metrics.log"
    age(live, 0.01)
    columnar.build_pending(folder)
    state = columnar.status(folder)
    assert state.live_covered_bytes == live.stat().st_size  # idle: all of it is settled
    questions = [FUZZ_QUESTIONS[0], FUZZ_QUESTIONS[1], {"aggs": ["count"]}, {"bucket": "1h", "aggs": ["count"]}]
    for q in questions:
        _both(folder, q, "fz")
    assert min(used) == 2  # the backup's copy and the live file's prefix copy

    # the writer goes on: the new lines (and a damaged one) are read as JSON after the copied part
    with open(live, "a") as handle:
        for i in range(300):
            handle.write(json.dumps({"timestamp": 1_704_300_000.0 + i, "op": "new", "n": i, "mix": "x:y"}) + "\n")
        handle.write('{"timestamp": 1_704_400_000.0, "op": brok\n')
    for q in [*questions, {"where": ["op=new"], "aggs": ["count", "sum:n"]}]:
        _both(folder, q, "fz")
    assert LogParser(folder).query("fz", where=["op=new"], aggs=["count"]).rows == [{"count": 300}]

    # written a moment ago: the last bytes stay JSON (a line may still be in flight); doubling rule
    before = columnar.status(folder).live_covered_bytes
    assert [r.built for r in columnar.build_pending(folder)] == []  # grown too little since the last copy
    assert columnar.status(folder).live_covered_bytes == before

    # rotation: the prefix copy follows the file to .1, until its whole copy replaces it
    for older in list(folder.glob("fz_metrics.log.1*")):  # .1 or .1.gz
        older.rename(folder / older.name.replace(".log.1", ".log.2"))
    live.rename(folder / "fz_metrics.log.1")
    live.write_text(json.dumps({"timestamp": 1_704_500_000.0, "op": "newest"}) + "\n")
    used.clear()
    _both(folder, {"group_by": "op", "aggs": ["count"]}, "fz")
    assert used == [2]
    age(folder / "fz_metrics.log.1", 0.01)
    built = columnar.build_pending(folder)
    assert [Path(r.path).name for r in built if r.built] == ["fz_metrics.log.1"]
    names = [p.name for p in _copy_files(folder)]
    assert len(names) == 2  # the prefix copy of the old live file is gone with its whole copy made
    _both(folder, {"group_by": "op", "aggs": ["count"]}, "fz")

    # a live file rewritten under the same inode (copytruncate): its prefix copy no longer fits
    monkeypatch.setattr(_copies, "PREFIX_MIN_BYTES", 100)
    with open(live, "a") as handle:
        for i in range(400):
            handle.write(json.dumps({"timestamp": 1_704_600_000.0 + i, "op": "again"}) + "\n")
    age(live, 0.01)
    columnar.build_pending(folder)
    assert columnar.status(folder).live_covered_bytes == live.stat().st_size
    data = live.read_bytes()
    with open(live, "r+b") as handle:  # same size, same first line, other content at the copy's end
        handle.seek(len(data) - 30)
        handle.write(b"9" * 10)
    caplog.set_level(logging.WARNING, "infrastructure.monitoring.query.columnar")
    columnar._warned.clear()
    _both(folder, {"group_by": "op", "aggs": ["count"]}, "fz")
    assert any("differs from the copy" in r.getMessage() for r in caplog.records)


def test_the_scheduled_service_and_the_builder_agree_when_a_prefix_copy_is_due(tmp_path: Path) -> None:
    """An idle live file of a little over ``PREFIX_MIN_BYTES``: the service's cheap check (``has_work``, no
    file read) sees the work the builder does, and sees none once it is done."""
    folder = tmp_path / "logs"
    folder.mkdir()
    live = folder / "idle_metrics.log"
    line = json.dumps({"timestamp": 1_704_110_400.0, "op": "x", "pad": "p" * 100}) + "\n"
    live.write_text(line * (_copies.PREFIX_MIN_BYTES // len(line) + 100))
    assert _copies.PREFIX_MIN_BYTES < live.stat().st_size < _copies.PREFIX_MIN_BYTES + _copies.IN_FLIGHT_MARGIN
    age(live, 0.01)
    assert _copies.has_work(folder)
    assert [r.built for r in columnar.build_pending(folder)] == [True]
    assert columnar.status(folder).live_covered_bytes == live.stat().st_size
    assert not _copies.has_work(folder)


# --------------------------------------------------------------------------- the cleaner


def test_the_cleaner_keeps_copies_with_their_sources_only(tmp_path: Path, used: list[int]) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    records = tq.write_timed_family(folder, minutes=120, per_file=600)  # .1 .. .5 plain, the oldest gzipped
    (folder / ".tool_metrics.log.lock").touch()  # a family of this package
    for path in folder.glob("tool_metrics.log.*"):
        age(path, 0.5 + int(path.name.split(".")[2]) * 0.1)
    assert sum(r.built for r in columnar.build_pending(folder)) == 5
    want = _summary(LogParser(folder, columnar=False).query("tool", group_by="tool_name", aggs=["count"]))

    # compression: each copy follows its file into the archive
    result = LogCleaner(CleanupSettings(retention_days=30, compress_after_days=0.4), folder).cleanup_logs()
    assert result.files_compressed == 4
    assert columnar.status(folder).covered_files == 5
    used.clear()
    assert _summary(LogParser(folder).query("tool", group_by="tool_name", aggs=["count"])) == want
    assert used == [5]

    # retention: a copy goes with its source
    LogCleaner(CleanupSettings(retention_days=0.75), folder).cleanup_logs()
    left = sorted(p.name for p in folder.glob("tool_metrics.log.*"))
    assert len(left) == 2
    assert columnar.status(folder).covered_files == 2
    assert len(_copy_files(folder)) == 2

    # budget: copies count, and leave with their sources
    copies = sum(p.stat().st_size for p in (folder / columnar.FOLDER).iterdir())
    logs = sum(p.stat().st_size for p in folder.glob("tool_metrics.log*"))
    LogCleaner(CleanupSettings(retention_days=30, max_total_size=logs + copies - 1), folder).cleanup_logs()
    assert len(list(folder.glob("tool_metrics.log.*"))) == 1
    assert len(_copy_files(folder)) == 1

    # an orphan (its source removed behind the cleaner's back) is pruned
    next(folder.glob("tool_metrics.log.*")).unlink()
    LogCleaner(CleanupSettings(retention_days=30), folder).cleanup_logs()
    assert not [p.name for p in (folder / columnar.FOLDER).iterdir() if not p.name.startswith(".")]
    assert len(records) > 0


# --------------------------------------------------------------------------- the commands and the service


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "MONITORING_CONFIG": ""}
    return subprocess.run([sys.executable, "-m", "infrastructure.monitoring.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=120, check=False)


def test_cache_build_and_status_commands(tmp_path: Path) -> None:
    folder = tmp_path / "fz"
    _fuzz_folder(folder, 6)
    before = _cli("cache", "status", "--json", "--log-dir", str(folder), cwd=tmp_path)
    assert before.returncode == 0, before.stderr
    state = json.loads(before.stdout)
    assert (state["files"], state["covered_files"], len(state["pending"])) == (4, 0, 4)
    built = _cli("cache", "build", "--log-dir", str(folder), cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert "4 copies built; 4 of 4 settled files covered, 0 pending" in built.stdout
    after = json.loads(_cli("cache", "status", "--json", "--log-dir", str(folder), cwd=tmp_path).stdout)
    assert after["covered_bytes"] == after["bytes"] > 0
    assert 0 < after["copy_bytes"] < after["bytes"]
    text = _cli("cache", "status", "--log-dir", str(folder), cwd=tmp_path).stdout
    assert "4 of 4 covered" in text


def test_the_switch_in_the_configuration(tmp_path: Path) -> None:
    folder = tmp_path / "fz"
    _fuzz_folder(folder, 7)
    config = tmp_path / "off.yaml"
    config.write_text("query:\n  columnar_cache: false\n")
    refused = _cli("cache", "build", "--config", str(config), "--log-dir", str(folder), cwd=tmp_path)
    assert refused.returncode == 2
    assert "switched off" in refused.stderr
    assert not (folder / columnar.FOLDER).exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("query:\n  columnar_cache: sometimes\n")
    wrong = _cli("cache", "status", "--config", str(bad), "--log-dir", str(folder), cwd=tmp_path)
    assert wrong.returncode == 2
    assert "query.columnar_cache" in wrong.stderr


def test_the_scheduled_service_builds_copies_after_a_rotation(tmp_path: Path) -> None:
    from dependency_injector import providers

    from infrastructure.monitoring import MonitoringContainer, load_settings

    folder = tmp_path / "fz"
    _fuzz_folder(folder, 8)
    settings = load_settings(overrides={"logging": {"log_dir": str(folder)},
                                        "query": {"build_interval_seconds": 1, "build_in_applications": True}},
                             environ={})
    container = MonitoringContainer()
    container.settings.override(providers.Object(settings))
    service = container.scheduler()
    service.first_run_delay = 0.1
    service.start()
    try:
        deadline = time.time() + 30
        while time.time() < deadline and columnar.status(folder).covered_files < 4:
            time.sleep(0.2)
        assert "columnar_build every 1s" in service.describe()
    finally:
        service.stop()
    assert columnar.status(folder).covered_files == 4
    for query in ({"columnar_cache": False, "build_in_applications": True}, {}):  # off; an application's default
        quiet = load_settings(overrides={"logging": {"log_dir": str(folder)}, "query": query}, environ={})
        container.settings.override(providers.Object(quiet))
        stopped = container.scheduler()
        stopped.start()
        try:
            assert "columnar_build" not in stopped.describe()
        finally:
            stopped.stop()


def test_monitoring_run_builds_copies(tmp_path: Path) -> None:
    folder = tmp_path / "fz"
    _fuzz_folder(folder, 11, files_count=2)
    config = tmp_path / "fast.yaml"
    config.write_text(f"logging:\n  log_dir: {folder}\nquery:\n  build_interval_seconds: 1\n")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "MONITORING_CONFIG": ""}
    service = subprocess.Popen([sys.executable, "-m", "infrastructure.monitoring.cli", "run", "--config", str(config)],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 40
        while time.time() < deadline and columnar.status(folder).covered_files < 2:
            time.sleep(0.3)
    finally:
        service.terminate()
        out, err = service.communicate(timeout=30)
    assert columnar.status(folder).covered_files == 2, (out, err)
    assert "columnar_build every 1s" in out


@pytest.fixture(autouse=True)
def _switch_back() -> Iterator[None]:
    yield
    columnar.set_default_enabled(True)
