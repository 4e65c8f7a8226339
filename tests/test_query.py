"""The query engine on real log families: rotated, gzipped, torn, corrupt, several writers.

Every expected value is computed here from the records the test itself wrote (stdlib
``statistics`` for percentiles: its ``inclusive`` method is the same linear
interpolation as DuckDB's ``quantile_cont``), never by the engine under test. Both
engines answer every question and must agree with that.
"""

from __future__ import annotations

import gzip
import json
import math
import multiprocessing
import os
import random
import statistics
import time
import zlib
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from infrastructure.monitoring import CleanupSettings, LogCleaner
from infrastructure.monitoring.query import LogParser, QueryError, SkipReport

from .conftest import REPO_ROOT, age, run_python

ENGINES = ["python", "duckdb"]
MODELS = ["gpt-4o", "claude-3-5-sonnet", "llama-3.1-70b"]
WRITERS = 3
PER_WRITER = 1200


def record_values(writer: int, seq: int) -> dict[str, Any]:
    """The deterministic content of record ``seq`` of ``writer`` (what the test expects)."""
    rng = random.Random(writer * 100_003 + seq)
    model = MODELS[(seq + writer) % len(MODELS)]
    ok = rng.random() > 0.08
    return {
        "model": model, "provider": "openai" if model.startswith("gpt") else "other",
        "response_time": round(rng.lognormvariate(0.3, 0.7), 6),
        "prompt_tokens": rng.randint(10, 2000), "completion_tokens": 0 if not ok else rng.randint(1, 800),
        "success": ok, "writer": writer, "seq": seq, "user": f"user{int(rng.expovariate(1 / 25))}",
    }


def _write_family(log_dir: str, writer: int, count: int) -> None:
    from dependency_injector import providers

    from infrastructure.monitoring import MonitoringContainer, PerformanceMonitorFactory, load_settings

    container = MonitoringContainer()
    container.settings.override(providers.Object(load_settings(
        overrides={"logging": {"log_dir": log_dir, "rotation": {"max_bytes": 16384, "backup_count": 500}}},
        environ={})))
    factory = PerformanceMonitorFactory(container)
    llm = factory.create_monitor("llm")
    for seq in range(count):
        v = record_values(writer, seq)
        llm.record_llm_call(v.pop("model"), v.pop("provider"), v.pop("response_time"), v.pop("prompt_tokens"),
                            v.pop("completion_tokens"), success=v.pop("success"), **v)
    factory.shutdown()


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three processes write the llm family at once (rotating every 16 KiB); then the oldest
    backups are gzipped by the cleaner, and three damaged lines are planted."""
    log_dir = tmp_path_factory.mktemp("query") / "logs"
    log_dir.mkdir()
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_write_family, args=(str(log_dir), w, PER_WRITER)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    backups = sorted((p for p in log_dir.glob("llm_metrics.log.*")), key=lambda p: int(p.name.split(".")[-1]))
    assert len(backups) > 10
    for old in backups[-4:]:
        age(old, 3)
    time.sleep(2.1)  # the cleaner leaves a family alone for a moment after it rotated
    result = LogCleaner(CleanupSettings(retention_days=30, compress_after_days=1), log_dir).cleanup_logs()
    assert result.files_compressed == 4
    # damage: a corrupt line in the middle of .2, a foreign line in .1, a torn tail on .3
    two = log_dir / "llm_metrics.log.2"
    lines = two.read_bytes().split(b"\n")
    lines.insert(5, b'{"timestamp": 1700000000.0, "model": "gpt-4o", "response_ti')
    two.write_bytes(b"\n".join(lines))
    with open(log_dir / "llm_metrics.log.1", "ab") as handle:
        handle.write(b'{"level": "info", "msg": "another tool wrote this"}\n')
    with open(log_dir / "llm_metrics.log.3", "ab") as handle:
        handle.write(b'{"timestamp": 1700000001.0, "metric_type": "timer", "operat')
    age(log_dir / "llm_metrics.log.3", 0.5)  # its writer died long ago (a fresh partial line may still grow)
    return log_dir


def expected_records() -> list[dict[str, Any]]:
    out = []
    for w in range(WRITERS):
        for seq in range(PER_WRITER):
            v = record_values(w, seq)
            v["total_tokens"] = v["prompt_tokens"] + v["completion_tokens"]
            out.append(v)
    return out


def assert_same_answer(got: Any, want: Any) -> None:
    """Equal: counts, keys and whole numbers to the bit; a float from interpolation or a sum to within
    1e-12 relative (no two engines round the last bit of a floating-point operation the same way)."""
    if isinstance(want, float) and isinstance(got, float):
        assert got == pytest.approx(want, rel=1e-12, abs=1e-300)
    elif isinstance(want, (list, tuple)):
        assert isinstance(got, (list, tuple))
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert_same_answer(g, w)
    elif isinstance(want, dict):
        assert isinstance(got, dict)
        assert got.keys() == want.keys()
        for key in want:
            assert_same_answer(got[key], want[key])
    else:
        assert got == want


def pct(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


@pytest.mark.parametrize("engine", ENGINES)
def test_llm_usage_by_model_matches_the_records_written(family: Path, engine: str) -> None:
    result = LogParser(family).query(
        "llm", operation="llm_call", group_by="model", engine=engine,
        aggs=["count", "errors", "error_rate", "sum:total_tokens", "avg:response_time", "min:response_time",
              "max:response_time", "p50:response_time", "p95:response_time", "p99:response_time"],
    )
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in expected_records():
        by_model[r["model"]].append(r)
    assert [row["model"] for row in result.rows] == sorted(by_model)
    for row in result.rows:
        recs = by_model[row["model"]]
        times = [r["response_time"] for r in recs]
        errors = sum(1 for r in recs if not r["success"])
        assert row["count"] == len(recs)
        assert row["errors"] == errors
        assert row["error_rate"] == pytest.approx(errors / len(recs))
        assert row["sum_total_tokens"] == sum(r["total_tokens"] for r in recs)
        assert row["avg_response_time"] == pytest.approx(statistics.fmean(times), rel=1e-12)
        assert (row["min_response_time"], row["max_response_time"]) == (min(times), max(times))
        for p in (50, 95, 99):
            assert row[f"p{p}_response_time"] == pytest.approx(pct(times, p), rel=1e-12)
    assert result.records_matched == WRITERS * PER_WRITER


@pytest.mark.parametrize("engine", ENGINES)
def test_damaged_lines_are_skipped_counted_and_located(family: Path, engine: str) -> None:
    result = LogParser(family).query("llm", aggs=["count"], engine=engine)
    assert result.rows == [{"count": WRITERS * PER_WRITER}]
    skipped = result.skipped
    assert skipped.count == 3
    assert skipped.by_reason == {"corrupt": 1, "not a record": 1, "torn": 1}
    where = {(Path(s.file).name, s.reason): s.line for s in skipped.samples}
    lines_in = {name: (family / name).read_bytes().count(b"\n") for name in ("llm_metrics.log.1",
                                                                              "llm_metrics.log.3")}
    assert where[("llm_metrics.log.2", "corrupt")] == 6
    assert where[("llm_metrics.log.1", "not a record")] == lines_in["llm_metrics.log.1"]
    assert where[("llm_metrics.log.3", "torn")] == lines_in["llm_metrics.log.3"] + 1
    assert "3 lines skipped" in skipped.summary()


@pytest.mark.parametrize("engine", ENGINES)
def test_filters_compare_json_values(family: Path, engine: str) -> None:
    parser = LogParser(family)
    records = expected_records()
    cases: list[tuple[list[str] | dict[str, Any], int]] = [
        (["success=false"], sum(1 for r in records if not r["success"])),
        (["success=true", "model=gpt-4o"], sum(1 for r in records if r["success"] and r["model"] == "gpt-4o")),
        (["model!=gpt-4o"], sum(1 for r in records if r["model"] != "gpt-4o")),
        (["prompt_tokens>1500"], sum(1 for r in records if r["prompt_tokens"] > 1500)),
        (["prompt_tokens<=100", "response_time>=1.5"],
         sum(1 for r in records if r["prompt_tokens"] <= 100 and r["response_time"] >= 1.5)),
        (["model in gpt-4o,llama-3.1-70b"], sum(1 for r in records if r["model"] in ("gpt-4o", "llama-3.1-70b"))),
        ({"writer": 1, "model": ["gpt-4o", "claude-3-5-sonnet"]},
         sum(1 for r in records if r["writer"] == 1 and r["model"] != "llama-3.1-70b")),
        (["error_type=timeout"], 0),
    ]
    for where, want in cases:
        rows = parser.query("llm", operation="llm_call", where=where, engine=engine).rows
        assert (rows[0]["count"] if rows else 0) == want, where


def _status_family(folder: Path) -> None:
    """Five records whose ``code`` is a number and ``flag`` a boolean, and a line with no timestamp."""
    folder.mkdir()
    lines = [json.dumps({"timestamp": 1_700_000_000.0 + i, "operation": "x", "code": 404, "flag": True,
                         "ratio": 0.5, "tags": [1]}) for i in range(5)]
    (folder / "web.log").write_text("\n".join([*lines, '{"operation": "x"}']) + "\n")
    age(folder / "web.log", 0.01)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_text_filter_matches_numbers_and_booleans_by_their_json_text(tmp_path: Path, engine: str) -> None:
    """``code="404"`` compares the text of the value, as DuckDB reads a JSON number as text: the 404s match."""
    _status_family(tmp_path / "logs")
    parser = LogParser(tmp_path / "logs")
    for where in (['code="404"'], ['flag="true"'], {"code": "404"}, ['ratio="0.5"'], ['tags="[1]"'],
                  ['operation=x', 'code="404"']):
        result = parser.query("web", where=where, engine=engine)
        assert result.rows == [{"count": 5}], where
        assert result.skipped.count == 1, where
        assert len(list(parser.records("web", where=where))) == 5, where  # nothing counted: the pre-filter reads


@pytest.mark.parametrize("engine", ENGINES)
def test_a_damaged_line_is_counted_whatever_the_filter(tmp_path: Path, engine: str) -> None:
    """The line with no timestamp is skipped and counted by both engines, even under a filter it lacks."""
    _status_family(tmp_path / "logs")
    parser = LogParser(tmp_path / "logs")
    for where in (["operation=y"], ["operation=x"], ["code=404"], []):
        skipped = parser.query("web", where=where, engine=engine).skipped
        assert (skipped.count, skipped.by_reason) == (1, {"not a record": 1}), where
        report = SkipReport()
        list(parser.records("web", where=where, skipped=report))
        assert report.count == 1, where


@pytest.mark.parametrize("engine", ENGINES)
def test_integers_are_aggregated_as_doubles(tmp_path: Path, engine: str) -> None:
    """DuckDB reads a number field as DOUBLE: 2**60 + 1 becomes 2**60, in both engines alike."""
    folder = tmp_path / "logs"
    folder.mkdir()
    big = 2**60 + 1
    (folder / "big.log").write_text("".join(json.dumps({"timestamp": 1_700_000_000.0 + i, "n": big + i}) + "\n"
                                            for i in range(3)))
    age(folder / "big.log", 0.01)
    row = LogParser(folder).query("big", aggs=["sum:n", "min:n", "max:n", "avg:n"], engine=engine).rows[0]
    assert row == {"sum_n": float(big) * 3, "min_n": float(big), "max_n": float(big + 2), "avg_n": float(big)}
    assert all(type(v) is float for v in row.values())


@pytest.mark.parametrize("engine", ENGINES)
def test_high_cardinality_groups_fold_into_other_with_exact_top(family: Path, engine: str) -> None:
    counts = Counter(r["user"] for r in expected_records())
    assert len(counts) > 100
    result = LogParser(family).query("llm", group_by="user", aggs=["count", "sum:prompt_tokens"], max_groups=20,
                                     order_by="count", engine=engine)
    top = counts.most_common()
    rows = result.rows
    assert rows[-1]["user"] == "__other__"
    kept = {r["user"]: r["count"] for r in rows[:-1]}
    assert len(kept) == 20
    assert all(counts[user] == n for user, n in kept.items())  # exact counts of the kept groups ...
    assert sorted(kept.values(), reverse=True) == [n for _, n in top[:20]]  # ... which are the top 20
    assert rows[-1]["count"] == sum(counts.values()) - sum(kept.values())
    tokens: dict[str, int] = defaultdict(int)
    for r in expected_records():
        tokens[r["user"]] += r["prompt_tokens"]
    assert rows[-1]["sum_prompt_tokens"] == sum(t for u, t in tokens.items() if u not in kept)
    assert result.folded_groups == len(counts) - 20


@pytest.mark.parametrize("engine", ENGINES)
def test_heavy_hitters_survive_among_many_one_off_keys(tmp_path: Path, engine: str) -> None:
    """60,000 records: a third from 7 frequent users, the rest each from a different user. Memory for
    the ranking stays bounded (40 keys for max_groups=10) and the frequent users come out exact."""
    folder = tmp_path / "logs"
    folder.mkdir()
    with open(folder / "u_metrics.log", "w") as handle:
        for i in range(60_000):
            user = f"heavy{i % 7}" if i % 3 == 0 else f"once{i}"
            handle.write(json.dumps({"timestamp": T0 + i, "user": user, "n": i}) + "\n")
    result = LogParser(folder).query("u", group_by="user", aggs=["count", "sum:n"], max_groups=10,
                                     order_by="count", engine=engine)
    heavy = {r["user"]: r for r in result.rows if r["user"].startswith("heavy")}
    assert {u: r["count"] for u, r in heavy.items()} == {f"heavy{k}": sum(1 for i in range(0, 60_000, 3)
                                                                          if i % 7 == k) for k in range(7)}
    assert heavy["heavy0"]["sum_n"] == sum(i for i in range(0, 60_000, 3) if i % 7 == 0)
    assert result.rows[-1]["user"] == "__other__"
    assert sum(r["count"] for r in result.rows) == 60_000
    assert len(result.rows) == 11


@pytest.mark.parametrize("engine", ENGINES)
def test_top_n_and_ordering(family: Path, engine: str) -> None:
    rows = LogParser(family).query("llm", group_by=["model", "success"], aggs=["count"], order_by="count",
                                   limit=2, engine=engine).rows
    counts = Counter((r["model"], "true" if r["success"] else "false") for r in expected_records())
    assert [(r["model"], r["success"], r["count"]) for r in rows] == [(*k, n) for k, n in counts.most_common(2)]


# --------------------------------------------------------------------------- time windows on known timestamps

T0 = 1_704_110_400.0  # 2024-01-01T12:00:00Z


def write_timed_family(folder: Path, minutes: int = 600, per_minute: int = 30, per_file: int = 3000) -> list[dict]:
    """A rotated family (newest = base) with one record every 2 s, oldest in the highest ``.N``."""
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(minutes * per_minute):
        ts = T0 + i * (60 / per_minute) + (0.7 if i % 7 == 0 else 0)  # a little disorder too
        records.append({"timestamp": ts, "metric_type": "timer", "operation": "tool_call", "module": "tool",
                        "tool_name": ["grep", "sed", "awk"][i % 3], "duration": (i % 97) / 10, "success": i % 13 != 0})
    chunks = [records[i:i + per_file] for i in range(0, len(records), per_file)]
    for n, chunk in enumerate(reversed(chunks)):
        name = "tool_metrics.log" if n == 0 else f"tool_metrics.log.{n}"
        (folder / name).write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in chunk))
    if len(chunks) > 1:
        oldest = folder / f"tool_metrics.log.{len(chunks) - 1}"
        oldest.with_name(oldest.name + ".gz").write_bytes(gzip.compress(oldest.read_bytes()))
        oldest.unlink()
    return records


@pytest.mark.parametrize("engine", ENGINES)
def test_time_windows_and_buckets(tmp_path: Path, engine: str) -> None:
    records = write_timed_family(tmp_path / "logs")
    parser = LogParser(tmp_path / "logs", clock=lambda: T0 + 600 * 60)
    since, until = T0 + 3600 * 2 + 30, T0 + 3600 * 5 + 15
    want = [r for r in records if since <= r["timestamp"] < until]
    result = parser.query("tool", since=since, until=until, bucket="1h", aggs=["count", "rate", "max:duration"],
                          engine=engine)
    buckets: dict[float, list[dict]] = defaultdict(list)
    for r in want:
        buckets[math.floor(r["timestamp"] / 3600) * 3600].append(r)
    assert [row["bucket"] for row in result.rows] == [
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(b)) for b in sorted(buckets)]
    assert [row["count"] for row in result.rows] == [len(buckets[b]) for b in sorted(buckets)]
    assert [row["rate"] for row in result.rows] == pytest.approx([len(buckets[b]) / 3600 for b in sorted(buckets)])
    assert result.bytes_read < sum(p.stat().st_size for p in (tmp_path / "logs").iterdir()) * 0.8  # pruned

    last = parser.query("tool", last="90m", group_by="tool_name", aggs=["count", "errors"], engine=engine)
    window = [r for r in records if r["timestamp"] >= T0 + 600 * 60 - 5400]
    assert {row["tool_name"]: row["count"] for row in last.rows} == Counter(r["tool_name"] for r in window)
    iso = parser.query("tool", since="2024-01-01T14:00:00Z", until="2024-01-01T14:10:00", engine=engine)
    assert iso.rows[0]["count"] == sum(1 for r in records if T0 + 7200 <= r["timestamp"] < T0 + 7800)


def test_a_small_window_reads_a_small_part_of_a_large_family(tmp_path: Path) -> None:
    records = write_timed_family(tmp_path / "logs", minutes=3000, per_file=10_000)
    total = sum(p.stat().st_size for p in (tmp_path / "logs").iterdir())
    parser = LogParser(tmp_path / "logs")
    since = T0 + 1500 * 60
    result = parser.query("tool", since=since, until=since + 600)
    assert result.rows[0]["count"] == sum(1 for r in records if since <= r["timestamp"] < since + 600)
    assert result.bytes_read < total / 50  # bisection inside one file, other files never opened
    assert result.files_read == 1


def test_questions_that_cannot_mean_anything_say_why(tmp_path: Path) -> None:
    write_timed_family(tmp_path / "logs", minutes=5)
    parser = LogParser(tmp_path / "logs")
    for kwargs, message in [
        ({"aggs": ["p95"]}, "needs a field"),
        ({"aggs": ["median:x"]}, "unknown aggregate"),
        ({"where": ["x>abc"]}, "not a number"),
        ({"where": ["what"]}, "cannot read filter"),
        ({"since": "yesterday"}, "cannot read time"),
        ({"last": "1h", "since": 5}, "either last or since"),
        ({"order_by": "nope"}, "neither a group-by field nor an aggregate"),
        ({"engine": "spark"}, "engine must be"),
    ]:
        with pytest.raises(QueryError, match=message):
            parser.query("tool", **kwargs)
    with pytest.raises(QueryError, match=r"no log files for module 'llm'.*modules here: tool"):
        parser.query("llm")


# --------------------------------------------------------------------------- reading while writers write


def _keep_writing(log_dir: str, writer: int, stop_at: float, progress: Any) -> None:
    from infrastructure.monitoring import FileSink, MetricsLogger

    sink = FileSink(os.path.join(log_dir, "live_metrics.log"), max_bytes=8192, backup_count=100_000)
    writer_log = MetricsLogger("live", sink)
    seq = 0
    while time.time() < stop_at:
        writer_log.log_counter("tick", 1, writer=writer, seq=seq)
        progress[writer] = seq  # written and complete
        seq += 1
    sink.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_queries_during_writes_and_rotations_neither_miss_nor_double_count(tmp_path: Path, engine: str) -> None:
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    context = multiprocessing.get_context("fork")
    progress = context.Array("q", [-1, -1])
    stop_at = time.time() + 3
    procs = [context.Process(target=_keep_writing, args=(str(log_dir), w, stop_at, progress)) for w in range(2)]
    for p in procs:
        p.start()
    parser = LogParser(log_dir)
    queries = 0
    while any(p.is_alive() for p in procs) or queries < 3:
        done_before = list(progress)
        if min(done_before) < 0:
            continue
        result = parser.query("live", group_by="writer", aggs=["count", "min:seq", "max:seq"], engine=engine)
        for row in result.rows:
            w = int(row["writer"])
            assert row["min_seq"] == 0
            assert row["count"] == row["max_seq"] + 1  # contiguous: nothing missing, nothing twice
            assert row["max_seq"] >= done_before[w]  # everything complete at the start is there
        assert not result.skipped, result.skipped.summary()
        queries += 1
    for p in procs:
        p.join(10)
    final = parser.query("live", group_by="writer", aggs=["count"], engine=engine)
    assert [row["count"] for row in final.rows] == [progress[0] + 1, progress[1] + 1]
    assert queries >= 3


# --------------------------------------------------------------------------- one answer, however it is read


def test_percentiles_are_exact_at_any_count_and_whatever_the_files_look_like(tmp_path: Path) -> None:
    """More than 200,000 values in one group: the percentiles are the exact linear interpolation
    (no sketch above a threshold), the same from either engine, and the same whether the records
    sit in plain backups, a compressed one, the live file, or a window that cuts files in the middle."""
    rng = random.Random(5)
    n = 210_000
    values = [rng.lognormvariate(0, 1.5) for _ in range(n)]
    t0 = 1_704_110_400.0
    records = [{"timestamp": t0 + i * 0.01, "metric_type": "timer", "operation": "llm_call", "model": "m",
                "response_time": v, "success": i % 11 != 0} for i, v in enumerate(values)]
    lines = [json.dumps(r).encode() + b"\n" for r in records]
    layouts = {
        "live": {"llm_metrics.log": lines},
        "backups": {f"llm_metrics.log.{4 - k}": lines[k * n // 4:(k + 1) * n // 4] for k in range(3)}
                   | {"llm_metrics.log": lines[3 * n // 4:]},
        "gzipped": {"llm_metrics.log.2.gz": lines[: n // 2], "llm_metrics.log.1": lines[n // 2: n - 10],
                    "llm_metrics.log": lines[n - 10:]},
    }
    ordered = sorted(values)
    exact = {q: statistics.quantiles(ordered, n=1000, method="inclusive")[round(q * 1000) - 1]
             for q in (0.5, 0.9, 0.95, 0.99, 0.999)}
    answers = []
    for name, files in layouts.items():
        folder = tmp_path / name
        folder.mkdir()
        for file_name, part in files.items():
            data = b"".join(part)
            (folder / file_name).write_bytes(gzip.compress(data) if file_name.endswith(".gz") else data)
            age(folder / file_name, 0.01)
        parser = LogParser(folder)
        for engine in ENGINES:
            whole = parser.query("llm", group_by="model", engine=engine,
                                 aggs=["count", "p50:response_time", "p90:response_time", "p95:response_time",
                                       "p99:response_time", "p99.9:response_time", "error_rate"]).rows
            (row,) = whole
            assert row["count"] == n, (name, engine)
            for q, want in exact.items():
                label = f"{q * 100:.6g}".replace(".", "_")
                assert row[f"p{label}_response_time"] == pytest.approx(want, rel=1e-12), (name, engine, q)
            cut = parser.query("llm", since=t0 + 100.005, until=t0 + 2000.005, aggs=["count", "p95:response_time"],
                               engine=engine).rows
            window = sorted(values[10_001:200_001])
            assert cut[0]["count"] == len(window), (name, engine)
            assert cut[0]["p95_response_time"] == pytest.approx(pct(window, 95), rel=1e-12), (name, engine)
            answers.append((whole, cut))
    for answer in answers[1:]:
        assert_same_answer(answer, answers[0])  # whatever the engine and the layout


def test_engines_agree_with_the_generators_ground_truth(tmp_path: Path) -> None:
    """The shared generator's manifest: per-model counts, errors and tokens, full and last hour."""
    out = tmp_path / "gen"
    generator = REPO_ROOT.parent / "shared" / "bench" / "gen_logs.py"
    done = run_python(f"import runpy, sys; sys.argv = ['gen', '--size-mb', '6', '--rotate-mb', '1', "
                      f"'--out', {str(out)!r}]; runpy.run_path({str(generator)!r}, run_name='__main__')")
    if done.returncode != 0 and not generator.exists():
        pytest.skip("the shared log generator is not beside the project here")
    assert done.returncode == 0, done.stderr
    truth = json.loads((out / "manifest.json").read_text())
    parser = LogParser(out)
    for engine in ENGINES:
        for window, since in (("full", None), ("last_hour", truth["last_hour_since"])):
            rows = parser.query("llm", operation="llm_call", since=since, group_by="model", engine=engine,
                                aggs=["count", "errors", "sum:total_tokens", "sum:response_time"]).rows
            want = truth["llm_call"][window]
            assert {r["model"]: (r["count"], r["errors"], r["sum_total_tokens"]) for r in rows} == {
                m: (v["count"], v["errors"], v["tokens"]) for m, v in want.items()}, (engine, window)
            for r in rows:
                assert r["sum_response_time"] == pytest.approx(want[r["model"]]["rt_sum"], rel=1e-9)
        failures = parser.query(where=["success=false"], group_by="operation", engine=engine).rows
        assert {r["operation"]: r["count"] for r in failures} == truth["failures_per_operation"]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_damaged_archive_is_read_as_far_as_it_goes_and_reported(tmp_path: Path, engine: str,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "logs"
    records = write_timed_family(folder, minutes=60, per_file=600)  # .1 .. .5 plain, oldest gzipped
    archive = next(folder.glob("tool_metrics.log.*.gz"))
    whole = archive.read_bytes()
    archive.write_bytes(whole[: len(whole) // 2])  # cut in the middle
    result = LogParser(folder).query("tool", aggs=["count"], engine=engine)
    survived = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(whole[: len(whole) // 2])  # all that can be
    complete_lines = survived.count(b"\n")
    assert result.rows[0]["count"] == len(records) - 600 + complete_lines
    assert result.skipped.by_reason.get("damaged archive") == 1
    assert any(s.file.endswith(archive.name) for s in result.skipped.samples)


@pytest.mark.parametrize("engine", ENGINES)
def test_count_if_counts_records_matching_a_filter_per_group(family: Path, engine: str) -> None:
    rows = LogParser(family).query("llm", operation="llm_call", group_by="model", engine=engine,
                                   aggs=["count", "count_if:success=false", "count_if:prompt_tokens>1500",
                                         "count_if:user in user0,user1"]).rows
    records = expected_records()
    for row in rows:
        mine = [r for r in records if r["model"] == row["model"]]
        assert row["count_success_false"] == sum(1 for r in mine if not r["success"])
        assert row["count_prompt_tokens_gt_1500"] == sum(1 for r in mine if r["prompt_tokens"] > 1500)
        assert row["count_user_in_user0_user1"] == sum(1 for r in mine if r["user"] in ("user0", "user1"))


def test_repeated_scans_give_the_same_answer_and_find_new_damage(
        tmp_path: Path) -> None:
    """Scanning a family again gives the same rows and locates the same damaged line; a line torn
    into a settled backup later, and a backup damaged in place (same size and mtime), are found."""
    from .conftest import append_records

    logs = tmp_path / "logs"
    names = ["llm_metrics.log.3", "llm_metrics.log.2", "llm_metrics.log.1", "llm_metrics.log"]
    start = time.time() - 4 * 3600
    for i, name in enumerate(names):
        append_records(logs / name, [{"timestamp": start + i * 3600 + k, "metric_type": "timer",
                                      "operation": "llm_call", "model": MODELS[k % 3], "success": k % 10 != 0}
                                     for k in range(300)])
    for name in names[:3]:
        age(logs / name, 0.01)
    two = logs / "llm_metrics.log.2"
    two.write_bytes(two.read_bytes().replace(b"\n", b'\n{"timestamp": 1700000000.0, "mod\n', 1))
    age(two, 0.01)

    def ask() -> Any:
        return LogParser(logs).query("llm", group_by="model", aggs=["count", "errors"])

    want = [{"model": m, "count": 400, "errors": 40} for m in sorted(MODELS)]
    first = ask()
    assert first.rows == want
    assert first.skipped.count == 1

    second = ask()
    assert second.rows == want
    assert second.skipped.count == 1
    assert second.skipped.samples[0].line == 2
    assert Path(second.skipped.samples[0].file).name == "llm_metrics.log.2"

    one = logs / "llm_metrics.log.1"  # a straggler's line, torn by a crash
    with open(one, "ab") as handle:
        handle.write(b'{"timestamp": 1700000002.0, "operation": "llm_call"\n')
    age(one, 0.01)
    third = ask()
    assert third.rows == want
    assert third.skipped.count == 2

    three = logs / "llm_metrics.log.3"  # damaged in place, same size, same mtime
    st = three.stat()
    data = three.read_bytes()
    cut = data.index(b"\n") + 1
    three.write_bytes(data[:cut] + b"#" + data[cut + 1:])  # line 2 no longer JSON
    os.utime(three, ns=(st.st_atime_ns, st.st_mtime_ns))
    fourth = ask()
    assert fourth.skipped.count == 3
    assert sum(r["count"] for r in fourth.rows) == 1199
    assert {(Path(s.file).name, s.line) for s in fourth.skipped.samples} >= {("llm_metrics.log.3", 2),
                                                                          ("llm_metrics.log.2", 2)}
