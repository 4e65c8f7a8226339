"""The same questions answered from the files and from ClickHouse: one plan, three engines, equal answers.

Two hosts' folders (rotations, ``.gz`` backups, three families, one of them full of values
of the wrong type) are shipped by the real shipper into the Debian server (18.16, the
legacy dialect), once into a plain table and once through the two-shard ``Distributed``
table; a third folder holds both hosts' files for the local engines. Every question is
asked of ``LogParser`` (Python and DuckDB engines) and of ``ClickHouseParser`` over both
tables: counts and integer sums must be equal, other sums and percentiles within 1e-9
relative. The current dialect's SQL runs on chdb (an embedded current ClickHouse).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from infrastructure.monitoring.cli import main
from infrastructure.monitoring.config import CleanupSettings
from infrastructure.monitoring.errors import QueryError
from infrastructure.monitoring.fleet.clickhouse import ClickHouseClient, ClickHouseError
from infrastructure.monitoring.fleet.reader import ClickHouseParser, record_of
from infrastructure.monitoring.fleet.schema import CURRENT
from infrastructure.monitoring.fleet.settings import ClickHouseSettings
from infrastructure.monitoring.fleet.shipper import ClickHouseShipper
from infrastructure.monitoring.log_cleaner import LogCleaner
from infrastructure.monitoring.query import LogParser, QueryResult
from infrastructure.monitoring.query.reports import build_report
from infrastructure.monitoring.schema import ALERTS_STATE_FILE
from infrastructure.monitoring.web.data import dashboard_data

from .clickhouse_server import CLUSTER, ClickHouseServer, clickhouse
from .fleet_data import write_llm_family, write_tool_family
from .fleet_mixed import BASE, KNOWN_TEXT_DIFFERENCES, write_mixed

__all__ = ["clickhouse"]  # the session's server, used by name below

PREFIX = "fq_"
"""A table prefix of this module's own: the shards' databases are shared by every test of the session."""


# --------------------------------------------------------------------------- the fleet


@dataclass
class Fleet:
    server: ClickHouseServer
    union: Path
    """Both hosts' files in one folder: what the local engines read."""
    host_a: Path
    plain: ClickHouseParser
    dist: ClickHouseParser
    hosts: tuple[str, str]


def _compress_rotated(folder: Path) -> None:
    settings = CleanupSettings(retention_days=30, compress_after_days=0, log_patterns=("*.log", "*.log.*"))
    result = LogCleaner(settings, folder, clock=lambda: time.time() + 60).cleanup_logs()
    assert result.errors == 0, result.failures


def _backup_index(name: str) -> int:
    found = re.match(r"^[a-z]+_metrics\.log\.(\d+)", name)
    return int(found.group(1)) if found else 0


def _union(target: Path, newer: Path, older: Path) -> None:
    """``newer``'s files as they are, then ``older``'s as older backups of the same families."""
    shutil.copytree(newer, target, ignore=shutil.ignore_patterns(".*"))
    for module in {p.name.split("_metrics")[0] for p in older.glob("*_metrics.log*")}:
        top = max((_backup_index(p.name) for p in target.glob(f"{module}_metrics.log*")), default=0)
        files = sorted(older.glob(f"{module}_metrics.log*"), key=lambda p: _backup_index(p.name))
        for i, path in enumerate(files, start=top + 1):
            suffix = ".gz" if path.name.endswith(".gz") else ""
            shutil.copy2(path, target / f"{module}_metrics.log.{i}{suffix}")


def _two_shards(server: ClickHouseServer) -> tuple[str, str]:
    """Two host names the Distributed table sends to different shards."""
    names = [f"host-{i}" for i in range(16)]
    shard = dict(zip(names, server.query("SELECT " + ", ".join(f"cityHash64('{n}') % 2" for n in names)).split(),
                     strict=True))
    return next(n for n in names if shard[n] == "0"), next(n for n in names if shard[n] == "1")


@pytest.fixture(scope="module")
def fleet(clickhouse: ClickHouseServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet_query")
    host_b = root / "host_b"  # written first: its records are the older ones
    write_llm_family(host_b, 500, seed=5, max_bytes=6000)
    host_a = root / "host_a"
    write_llm_family(host_a, 900, seed=1)
    write_tool_family(host_a, 300)
    write_mixed(host_a)
    _compress_rotated(host_a)
    union = root / "union"
    _union(union, host_a, host_b)
    hosts = _two_shards(clickhouse)
    for database in ("fq_plain", "fq_dist"):
        clickhouse.query(f"DROP DATABASE IF EXISTS {database}")
    for shard in ("shard1", "shard2"):
        clickhouse.query(f"DROP TABLE IF EXISTS {shard}.{PREFIX}records_local")
    plain = ClickHouseSettings(url=clickhouse.url, database="fq_plain", table_prefix=PREFIX, batch_rows=400)
    dist = ClickHouseSettings(url=clickhouse.url, database="fq_dist", table_prefix=PREFIX, batch_rows=400,
                              cluster=CLUSTER)
    for folder, host in ((host_a, hosts[0]), (host_b, hosts[1])):
        for settings in (plain, dist):
            with ClickHouseShipper(replace(settings, source_host=host), folder) as shipper:
                result = shipper.ship_once()
            assert result is not None
            assert (result.failed, result.caught_up) == (None, True)
    with ClickHouseParser(plain) as p, ClickHouseParser(dist) as d:
        yield Fleet(clickhouse, union, host_a, p, d, hosts)


# --------------------------------------------------------------------------- comparing answers


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return bool(a == b)
    if isinstance(a, int) and isinstance(b, int):
        return a == b  # counts and integer sums: exactly
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def assert_same(got: QueryResult, want: QueryResult, what: str = "") -> None:
    """Same rows in the same order, same keys; numbers as the module docstring says."""
    assert [list(r) for r in got.rows] == [list(r) for r in want.rows], what
    for g, w in zip(got.rows, want.rows, strict=True):
        bad = {k: (g[k], w[k]) for k in g if not _close(g[k], w[k])}
        assert not bad, f"{what}: {bad} in {w}"
    assert got.records_matched == want.records_matched, what
    assert got.folded_groups == want.folded_groups, what
    assert got.unknown_fields == want.unknown_fields, what


CLEAN: list[tuple[str, dict[str, Any]]] = [
    ("every aggregate by model", {"module": "llm", "group_by": "model", "aggs": [
        "count", "errors", "error_rate", "rate", "avg:duration", "min:duration", "max:duration", "sum:duration",
        "p0:duration", "p50:duration", "p95:duration", "p99.9:duration", "p100:duration", "sum:prompt_tokens",
        "sum:cost", "latest:error_type", "count_if:success=false", "count_if:prompt_tokens>=2000"]}),
    ("every module by operation", {"group_by": ["module", "operation"], "aggs": ["count", "errors", "sum:duration"]}),
    ("numbers and !=", {"where": ["prompt_tokens>2000", "model!=gpt-4o"], "group_by": "provider",
                            "aggs": ["count", "p90:completion_tokens"]}),
    ("in and booleans", {"where": ["model in gpt-4o,claude-3-5-sonnet", "success=false"], "group_by": "error_type",
                             "aggs": ["count"]}),
    ("!= keeps a missing field", {"module": "llm", "where": ["error_type!=timeout"], "group_by": "model",
                                      "aggs": ["count"]}),
    ("<= and >=", {"where": ["duration<=0.5", "completion_tokens>=100"], "aggs": ["count", "avg:duration"]}),
    ("regular expression", {"module": "llm", "where": ["error_type~^time"], "group_by": "model", "aggs": ["count"]}),
    ("a field nowhere", {"where": ["nothere=1"], "aggs": ["count"]}),
    ("a key only nested in an object", {"module": "tool", "where": ["q=x"], "aggs": ["count"]}),
    ("a misspelt group", {"module": "llm", "group_by": "modle", "aggs": ["count"]}),
    ("tools", {"module": "tool", "group_by": "tool_name",
               "aggs": ["count", "errors", "p50:duration", "max:duration"]}),
    ("folding with ties", {"module": "llm", "group_by": "seq", "max_groups": 25,
                           "aggs": ["count", "sum:prompt_tokens"]}),
    ("folding many keys", {"module": "llm", "group_by": ["model", "error_type"], "max_groups": 3,
                               "aggs": ["count", "p50:duration"]}),
    ("several modules", {"module": ["llm", "tool"], "operation": ["llm_call", "tool_call"], "group_by": "module",
                             "aggs": ["count"]}),
    ("order and limit", {"module": "llm", "group_by": "model", "aggs": ["count"], "order_by": "count", "limit": 2}),
]


def _window_questions(union: Path) -> list[tuple[str, dict[str, Any]]]:
    """Windows cut through the middle of the data (and exactly at a record's timestamp)."""
    stamps = sorted(r["timestamp"] for r in LogParser(union).records("llm"))
    middle, late = stamps[len(stamps) // 2], stamps[(len(stamps) * 9) // 10]
    return [
        ("since/until", {"module": "llm", "since": middle, "until": late, "group_by": "model",
                             "aggs": ["count", "p50:duration", "rate"]}),
        ("buckets", {"module": "llm", "since": stamps[0], "bucket": "1s", "aggs": ["count", "errors", "p95:duration"]}),
        ("buckets by model", {"module": "llm", "bucket": "2s", "group_by": "model", "aggs": ["count", "sum:cost"]}),
    ]


def _ask_all(fleet: Fleet, name: str, question: dict[str, Any], *, duckdb: bool = True) -> None:
    local = LogParser(fleet.union)
    want = local.query(**question, engine="python")
    if duckdb:
        assert_same(local.query(**question, engine="duckdb"), want, f"{name}: the local engines")
    assert_same(fleet.plain.query(**question), want, f"{name}: the table")
    assert_same(fleet.dist.query(**question), want, f"{name}: the Distributed table")


@pytest.mark.parametrize(("name", "question"), CLEAN, ids=[n for n, _ in CLEAN])
def test_a_question_gets_the_local_answer_from_the_table_and_the_two_shards(fleet: Fleet, name: str,
                                                                            question: dict[str, Any]) -> None:
    """Filters of every operator, missing fields, groups, folding and every aggregate: the files' answer."""
    _ask_all(fleet, name, question)


def test_windows_and_buckets_cut_where_the_files_cut(fleet: Fleet) -> None:
    """Time windows (an end exclusive at a record's own timestamp) and buckets give the files' answer."""
    for name, question in _window_questions(fleet.union):
        _ask_all(fleet, name, question)


def test_folding_with_a_bucket_matches_the_python_engine(fleet: Fleet) -> None:
    """Beyond max_groups with a time bucket, the same groups stay and the rest fold into __other__."""
    stamps = sorted(r["timestamp"] for r in LogParser(fleet.union).records("llm"))
    question = {"module": "llm", "since": stamps[0], "bucket": "1s", "group_by": "model", "max_groups": 3,
                    "aggs": ["count", "p50:duration"]}
    result = fleet.plain.query(**question)
    assert result.folded_groups > 0
    assert result.rows[-1]["bucket"] == "__other__"
    _ask_all(fleet, "bucket and folding", question, duckdb=False)  # duck.py's fold refuses a bucket key


MIXED_FIELDS = ("operation", "module", "model", "success", "duration", "prompt_tokens", "flag", "score", "host",
                "cost", "error_type", "pid", "big", "note", "text", "nested", "tags", "meta", "error")


def _mixed_questions() -> list[dict[str, Any]]:
    questions: list[dict[str, Any]] = []
    for f in MIXED_FIELDS:
        aggs = ["count", f"sum:{f}", f"min:{f}", f"max:{f}", f"avg:{f}", f"p50:{f}", f"p90:{f}",
                *([f"latest:{f}"] if f != "nested" else []), f"count_if:{f}=true", f"count_if:{f}=1", "errors",
                "error_rate"]
        questions.append({"module": "mixed", "aggs": aggs, "check_fields": False})
        if f not in KNOWN_TEXT_DIFFERENCES:
            questions.append({"module": "mixed", "group_by": f, "aggs": aggs})
        conditions = (f"{f}=true", f"{f}=false", f"{f}=1", f"{f}=7", f"{f}=12", f"{f}>1", f"{f}<=2", f"{f}!=m1",
                      f"{f}=m1", f"{f}=null", f"{f}!=null", f"{f} in 1,yes,m1,op_a", f"{f}~^[a-z]+[0-9]$")
        questions.append({"module": "mixed", "aggs": [f"count_if:{c}" for c in conditions], "check_fields": False})
        if f in ("score", "success", "model", "flag"):
            questions += [{"module": "mixed", "where": [c], "aggs": ["count"], "check_fields": False}
                          for c in conditions]
    questions += [
        {"module": "mixed", "since": BASE + 5, "until": BASE + 1801, "group_by": "operation",
         "aggs": ["count", "rate"]},
        {"module": "mixed", "bucket": "10m", "group_by": "model", "aggs": ["count", "p50:duration"]},
        {"module": "mixed", "group_by": "model", "max_groups": 3, "aggs": ["count", "sum:score"]},
        {"module": "mixed", "group_by": "host", "aggs": ["count", "errors"]},
        {"module": "mixed", "operation": "op_e", "where": ["note=x"], "aggs": ["count"]},  # note: elsewhere only
    ]
    return questions


def _mismatches(source: Any, local: LogParser, questions: list[dict[str, Any]]) -> list[str]:
    bad = []
    for question in questions:
        want = local.query(**question, engine="python")
        try:
            assert_same(source.query(**question), want, str(question))
        except AssertionError as exc:
            bad.append(str(exc)[:300])
    return bad


def test_values_of_every_type_read_as_the_files_read_them(fleet: Fleet) -> None:
    """Numbers in text columns, words in boolean ones, nested keys, nulls, a record's own module: each field
    is read as the local engine reads its JSON (the reference: the Python engine)."""
    questions = _mixed_questions()
    assert len(questions) > 100
    local = LogParser(fleet.union)
    assert _mismatches(fleet.plain, local, questions) == []
    assert _mismatches(fleet.dist, local, questions[::5]) == []


def test_a_nested_key_is_not_the_field_and_text_keeps_its_known_spellings(fleet: Fleet) -> None:
    """``score`` nested in an object is not ``score``; a string holding ',"score":' is not either; the two
    documented spellings differ as documented."""
    rows = fleet.plain.query("mixed", where=["operation=op_c"], group_by="score", aggs=["count"]).rows
    assert {r["score"]: r["count"] for r in rows} == {"2": 1, None: 1, "1e3": 1, "6": 1}
    by_duration = {r["duration"] for r in fleet.plain.query("mixed", group_by="duration").rows}
    local = {r["duration"] for r in LogParser(fleet.union).query("mixed", group_by="duration").rows}
    assert local - by_duration == {"2"}  # the file's int 2 in a Float64 column reads 2.0, as the file's 2.0 does
    assert by_duration <= local


def test_unknown_fields_are_reported_with_the_same_suggestion(fleet: Fleet) -> None:
    """A misspelt field is found missing in the table too, with the same nearest field."""
    result = fleet.plain.query("llm", group_by="modle")
    assert result.unknown_fields == {"modle": "model"}
    assert result.records_scanned == LogParser(fleet.union).query("llm").rows[0]["count"]
    assert "did you mean 'model'?" in result.warnings()[0]


def test_records_are_rebuilt_from_their_rows(fleet: Fleet) -> None:
    """``records()`` streams what the files hold (a null field is absent, a whole Float64 reads as a float)."""
    local = LogParser(fleet.union)

    def normal(records: Iterator[dict[str, Any]]) -> list[bytes]:
        return sorted(orjson.dumps({k: v for k, v in r.items() if v is not None}, option=orjson.OPT_SORT_KEYS)
                      for r in records)

    for where in ([], ["score>2"], ["model in m1,m2"], ["success=false"], ["error~(?i)time"]):
        for source in (fleet.plain, fleet.dist):
            got = [orjson.loads(x) for x in normal(source.records("mixed", where=where))]
            want = [orjson.loads(x) for x in normal(local.records("mixed", where=where))]
            assert got == want, where
    window = {"since": BASE + 1, "until": BASE + 1801}
    assert len(list(fleet.plain.records("mixed", **window))) == len(list(local.records("mixed", **window))) == 54
    oldest_first = [r["timestamp"] for r in fleet.plain.records("llm")]
    assert oldest_first == sorted(oldest_first)
    assert len(oldest_first) == 1400


def test_the_distributed_table_spreads_the_hosts_over_both_shards(fleet: Fleet) -> None:
    """Each host's rows on its own shard; the Distributed table's answers are the plain table's."""
    per_shard = {db: int(fleet.server.scalar(f"SELECT count() FROM {db}.{PREFIX}records_local"))
                 for db in ("shard1", "shard2")}
    assert per_shard["shard1"] > 0
    assert per_shard["shard2"] > 0
    assert sum(per_shard.values()) == int(fleet.server.scalar(f"SELECT count() FROM fq_plain.{PREFIX}records"))
    by_host = fleet.dist.query(group_by="source_host", check_fields=False).rows
    assert by_host == [{"source_host": None, "count": sum(per_shard.values())}]  # a column, not a record field


def test_modules_families_and_what_cannot_be_asked(fleet: Fleet) -> None:
    """Modules as the folder has them; an unknown module and a missing table are errors naming what exists."""
    assert fleet.plain.modules() == LogParser(fleet.union).modules() == ["llm", "mixed", "tool"]
    assert fleet.plain.families("tool") == {"tool": []}
    assert fleet.plain.families("nope") == {}
    with pytest.raises(QueryError, match=r"^no records of module 'nope' in .* \(modules here: llm, mixed, tool\)"):
        fleet.plain.query("nope")
    with pytest.raises(ClickHouseError, match=r"the table does not exist; ship logs into it first"), \
            ClickHouseParser(ClickHouseSettings(url=fleet.server.url, database="fq_none")) as missing:
        missing.query()
    with pytest.raises(QueryError, match="order_by 'x' is neither"):
        fleet.plain.query("llm", order_by="x")


class _Counting(ClickHouseClient):
    """The client, keeping every statement and counting the bytes of every answer."""

    received = 0
    sent: list[bytes]

    def request(self, body: bytes, *, params: Mapping[str, Any] | None = None, retry: bool = False) -> bytes:
        answer = super().request(body, params=params, retry=retry)
        self.received += len(answer)
        self.sent = [*getattr(self, "sent", []), body]
        return answer


def test_only_aggregates_cross_the_network_and_windows_read_less(fleet: Fleet) -> None:
    """A question over every record brings back a few hundred bytes per group, not the records; a window
    reads only its partitions and primary-key ranges."""
    client = _Counting(fleet.server.url)
    with ClickHouseParser(ClickHouseSettings(url=fleet.server.url, database="fq_plain", table_prefix=PREFIX),
                          client=client) as parser:
        parser.modules()  # the server's version and the modules: asked once, not counted below
        client.received = 0
        result = parser.query("llm", group_by="model", aggs=["count", "p50:duration", "p99:duration", "sum:cost"])
        assert len(result.rows) == 4
        assert client.received < 3000  # the 1,400 records are ~300 KB of JSON
        grouped = [b for b in client.sent if b"GROUP BY" in b]
        assert len(grouped) == 1
        assert b"extra" not in grouped[0]  # no llm record holds these fields in extra: the columns alone
        everything = parser.query("mixed", check_fields=False)
        window = parser.query("mixed", since=BASE + 1800, until=BASE + 1802, operation="op_a", check_fields=False)
    assert window.rows[0]["count"] == 2
    assert 0 < window.bytes_read < everything.bytes_read


def test_one_parser_answers_many_threads_at_once(fleet: Fleet) -> None:
    """The dashboard server asks from many threads: each gets its own answer, whole."""
    from concurrent.futures import ThreadPoolExecutor

    questions = [{"module": "llm", "group_by": "model", "aggs": ["count", "p50:duration"]},
                 {"module": "tool", "group_by": "tool_name", "aggs": ["count"]},
                 {"module": "mixed", "group_by": "operation", "aggs": ["count", "sum:score"]}] * 4
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda q: fleet.dist.query(**q).rows, questions))
    for question, rows in zip(questions, answers, strict=True):
        assert rows == fleet.dist.query(**question).rows


# --------------------------------------------------------------------------- the read side on the cluster


def test_the_report_and_the_dashboard_read_the_cluster_alike(fleet: Fleet, tmp_path: Path) -> None:
    """The ready-made report (every section, the metrics one too) and the dashboard's data are the files'."""
    local = LogParser(fleet.union)
    for parser in (fleet.plain, fleet.dist):
        got, want = build_report(parser, metrics=True), build_report(local, metrics=True)
        assert [s.name for s in got.sections] == [s.name for s in want.sections]
        for g, w in zip(got.sections, want.sections, strict=True):
            assert g.columns == w.columns, g.name
            for gr, wr in zip(g.rows, w.rows, strict=True):
                assert all(_close(gr[k], wr[k]) for k in wr), (g.name, gr, wr)
    now = max(r["timestamp"] for r in local.records("llm")) + 1
    got_data = dashboard_data(tmp_path, hours=1, now=now, parser=fleet.dist)
    want_data = dashboard_data(fleet.union, hours=1, now=now)
    assert got_data["window"] == want_data["window"]
    assert got_data["charts"]
    assert _same_json(got_data["charts"], want_data["charts"])
    assert _same_json(got_data["totals"], want_data["totals"])
    assert got_data["tables"]["errors"] == want_data["tables"]["errors"]


def _config(tmp_path: Path, fleet: Fleet, log_dir: Path) -> Path:
    config = tmp_path / "monitoring.yaml"
    config.write_text(f"""
logging: {{log_dir: {log_dir}}}
clickhouse: {{url: "{fleet.server.url}", database: fq_dist, table_prefix: {PREFIX}, cluster: {CLUSTER}}}
slos:
  - {{name: llm-availability, module: llm, operation: llm_call, objective: availability, target: 0.99, period: 30d}}
  - {{name: llm-latency, module: llm, operation: llm_call, objective: latency, target: 0.9, threshold: 2.0,
     period: 30d}}
alerts:
  rules:
    - {{name: llm_errors, module: llm, operation: llm_call, expr: "error_rate > 0.05", window: 30d, for: 0s,
       group_by: [model], severity: warning}}
    - {{name: slow_tools, module: tool, expr: "p95(duration) > 0.5", window: 30d, for: 0s, severity: info}}
""")
    return config


def _cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _same_json(got: Any, want: Any) -> bool:
    if isinstance(got, dict) and isinstance(want, dict):
        return got.keys() == want.keys() and all(_same_json(got[k], want[k]) for k in got)
    if isinstance(got, list) and isinstance(want, list):
        return len(got) == len(want) and all(_same_json(g, w) for g, w in zip(got, want, strict=True))
    return _close(got, want)


def test_the_commands_give_the_same_output_with_clickhouse(fleet: Fleet, tmp_path: Path) -> None:
    """query, report, slo and alerts --check print the same JSON from --clickhouse (or --source clickhouse)
    as from --log-dir; status shows the table's modules."""
    state = tmp_path / "state"
    config = str(_config(tmp_path, fleet, state))
    url = ["--clickhouse", fleet.server.url, "--database", "fq_plain"]
    question = ["query", "--module", "llm", "--group-by", "model", "--agg", "count", "--agg", "p95:duration",
                "--agg", "error_rate", "--where", "prompt_tokens>100", "--format", "json", "--config", config]
    files = _cli(*question, "--log-dir", str(fleet.union))
    assert files.exit_code == 0, files.output
    for source in (["--source", "clickhouse"], url):
        cluster = _cli(*question, *source)
        assert cluster.exit_code == 0, cluster.output
        assert _same_json(json.loads(cluster.stdout), json.loads(files.stdout))
    by_host = [json.loads(_cli("query", "--group-by", "host", "--agg", "count", "--agg", "errors", "--format", "json",
                               "--config", config, *extra).stdout) for extra in (["--log-dir", str(fleet.union)], url)]
    assert _same_json(by_host[1], by_host[0])
    assert len(by_host[0]) == 6  # the fleet by host: vm, h0, h1, h2, 12 and none
    report = [json.loads(_cli("report", "--all", "--format", "json", "--config", config, *extra).stdout)["sections"]
              for extra in (["--log-dir", str(fleet.union)], url)]
    assert _same_json(report[1], report[0])
    slos = [json.loads(_cli("slo", "--format", "json", "--config", config, *extra).stdout)
            for extra in (["--log-dir", str(fleet.union)], ["--source", "clickhouse"])]
    assert _same_json(slos[1], slos[0])
    assert slos[0][0]["events"] == 1400
    alerts = []
    files_state = tmp_path / "files"  # the evaluator writes its state and transitions beside the logs
    shutil.copytree(fleet.union, files_state)
    for extra, folder in ((["--log-dir", str(files_state)], files_state), (["--source", "clickhouse"], state)):
        done = _cli("alerts", "--check", "--format", "json", "--config", config, *extra)
        assert done.exit_code == 1, done.output  # a rule fires
        current = json.loads(done.stdout)["current"]
        alerts.append(sorted((a["rule"], json.dumps(a["labels"]), a["state"], a["value"]) for a in current))
        assert (folder / ALERTS_STATE_FILE).exists()  # the state stays in the log folder
    assert alerts[1] == alerts[0]
    assert alerts[0]
    status = _cli("status", "--config", config, "--source", "clickhouse")
    assert status.exit_code == 0, status.output
    assert re.search(r"llm\s+1,?400\s+2\s", status.stdout), status.stdout
    assert re.search(r"on disk: 1,?757 rows in \d+ parts", status.stdout), status.stdout


def test_the_cli_says_what_is_wrong_with_a_cluster_source(fleet: Fleet, tmp_path: Path) -> None:
    """An unreachable server and a missing table are problems (exit 2) naming the URL, never a password."""
    config = tmp_path / "monitoring.yaml"
    config.write_text(f"logging: {{log_dir: {tmp_path / 'logs'}}}\n")
    down = _cli("query", "--clickhouse", "http://127.0.0.1:9", "--config", str(config))
    assert down.exit_code == 2
    assert "http://127.0.0.1:9 unreachable" in down.output
    missing = _cli("report", "--clickhouse", fleet.server.url, "--database", "fq_missing", "--config", str(config))
    assert missing.exit_code == 2
    assert "the table does not exist" in missing.output
    alone = _cli("query", "--database", "fq_plain", "--config", str(config))
    assert alone.exit_code == 2
    assert "--database names a ClickHouse database" in alone.output
    secret = _cli("query", "--clickhouse", "http://user:s3cr3t@127.0.0.1:8123", "--config", str(config))
    assert secret.exit_code == 2
    assert "a URL without user or password" in secret.output
    assert "s3cr3t" not in secret.output


def test_dashboard_and_server_answer_from_the_cluster(fleet: Fleet, tmp_path: Path) -> None:
    """``dashboard --clickhouse`` writes the page from the table; the server's status is the table's."""
    from infrastructure.monitoring.config import load_settings
    from infrastructure.monitoring.web.server import DashboardServer

    config = str(_config(tmp_path, fleet, tmp_path / "state"))
    until = str(max(r["timestamp"] for r in LogParser(fleet.union).records("llm")) + 1)
    pages = []
    for extra in (["--log-dir", str(fleet.union)], ["--source", "clickhouse"]):
        out = tmp_path / f"d{len(pages)}.html"
        done = _cli("dashboard", "--output", str(out), "--hours", "1", "--until", until, "--config", config, *extra)
        assert done.exit_code == 0, done.output
        pages.append(re.findall(r"\d+ charts, \d+ series", done.stdout))
    assert pages[0] == pages[1] != []
    settings = load_settings(config, environ={})
    server = DashboardServer(settings, port=0, parser=fleet.dist)
    try:
        status = server.status()
        assert [m["module"] for m in status["modules"]] == ["llm", "mixed", "tool"]
        assert status["rows"] >= 1400
    finally:
        server.httpd.server_close()


# --------------------------------------------------------------------------- the current dialect


class ChdbClient(ClickHouseClient):
    """The client answered by an embedded current ClickHouse: the same statements, no HTTP."""

    def __init__(self, session: Any) -> None:
        super().__init__("http://chdb.invalid:8123")
        self.session = session

    def _run(self, sql: str, fmt: str, settings: Mapping[str, Any] | None) -> bytes:
        if settings:
            sql += " SETTINGS " + ", ".join(f"{k} = {v}" for k, v in settings.items())
        try:
            return bytes(self.session.query(sql, fmt).bytes())
        except RuntimeError as exc:
            found = re.search(r"Code: (\d+)", str(exc))
            raise ClickHouseError(str(exc), int(found.group(1)) if found else 0) from None

    def query(self, sql: str, *, settings: Mapping[str, Any] | None = None, query_id: str | None = None) -> bytes:
        head, _, fmt = sql.rpartition("\nFORMAT ")
        return self._run(head, fmt, settings) if head else self._run(sql, "TabSeparated", settings)

    def lines(self, sql: str, *, settings: Mapping[str, Any] | None = None) -> Iterator[bytes]:
        head, _, fmt = sql.rpartition("\nFORMAT ")
        yield from self._run(head, fmt, settings).splitlines()

    def insert(self, statement: str, body: bytes, *, settings: Mapping[str, Any] | None = None,
               query_id: str | None = None) -> None:
        head, _, fmt = statement.partition(" FORMAT ")
        given = ", ".join(f"{k} = {v}" for k, v in (settings or {}).items())
        self._run(f"{head} SETTINGS {given} FORMAT {fmt}\n{body.decode()}", "TabSeparated", None)

    def version(self) -> str:
        return self._run("SELECT version()", "TabSeparated", None).decode().strip()


def test_the_current_dialect_gives_the_local_answers_on_chdb(fleet: Fleet, tmp_path: Path) -> None:
    """On a current ClickHouse (quantilesExactInclusive, JSONExtractString, LowCardinality columns) the
    same questions get the files' answers."""
    folder = tmp_path / "host_a"
    shutil.copytree(fleet.host_a, folder, ignore=shutil.ignore_patterns(".*"))
    from chdb import session as chdb_session  # chdb-core, in the test extra

    session = chdb_session.Session(str(tmp_path / "chdb"))
    try:
        client = ChdbClient(session)
        settings = ClickHouseSettings(database="fq_current", batch_rows=300)
        with ClickHouseShipper(settings, folder, client=client) as shipper:
            assert shipper.ship_once().rows == 1257
        parser = ClickHouseParser(settings, client=client)
        assert parser.dialect == CURRENT
        local = LogParser(folder)
        questions = [q for _, q in CLEAN] + [q for _, q in _window_questions(folder)]
        for question in questions:
            assert_same(parser.query(**question), local.query(**question, engine="python"), str(question))
        assert _mismatches(parser, local, _mixed_questions()[::3]) == []
        got = sorted(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in parser.records("mixed", where=["score>2"]))
        want = sorted(orjson.dumps({k: v for k, v in r.items() if v is not None}, option=orjson.OPT_SORT_KEYS)
                      for r in local.records("mixed", where=["score>2"]))
        assert [orjson.loads(g) for g in got] == [orjson.loads(w) for w in want]
    finally:
        session.close()


def test_a_row_rebuilds_its_record() -> None:
    """Typed columns that hold a value, then extra; an empty operation and the family's own module are left
    as the record had them."""
    row = {"timestamp": 12, "module": "llm", "operation": "", "model": "m", "success": 0, "duration": 2,
           "pid": None, "extra": '{"module":"other","n":1}'}
    assert record_of(row) == {"timestamp": 12.0, "model": "m", "success": False, "duration": 2.0, "module": "other",
                              "n": 1}
    assert record_of({**row, "operation": "x", "extra": "{}"}) == {"timestamp": 12.0, "module": "llm",
                                                                   "operation": "x", "model": "m", "success": False,
                                                                   "duration": 2.0}
