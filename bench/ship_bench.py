"""Shipping a log folder to ClickHouse, and asking the cluster instead of the files.

    .venv/bin/python bench/ship_bench.py [--size-mb 200] [--rounds 3] [--query-mb 1024] [--query-rounds 5]

Generates a realistic multi-family folder with the shared deterministic generator
(``gen_logs.py``: five families, size-rotated, 30 days) into ``bench/data/`` (never
committed), starts a local ``clickhouse-server`` (Debian's 18.16, the legacy layout),
and ships the whole folder ``--rounds`` times, each into a fresh database, with the
configured defaults (10k rows / 4 MB batches). It prints, as medians with their range:

* rows per second (wall clock, the server on the same two cores) and the shipper's own
  CPU per row (``process_time``: what one host core spends), hence rows per CPU-second;
* the server's CPU per row, for the cluster's sizing;
* the compression on the server against the raw JSON lines (``system.parts``), for
  the legacy layout and — with ``chdb`` installed — for the current one (codecs,
  ``LowCardinality``), with the gzip of the same files for comparison, and the largest
  columns;
* the three benchmark questions of ``query_bench.py`` (Q1 LLM calls by model over
  everything, Q2 the same over the last hour, Q3 failures per operation over every
  family) over ``--query-mb`` of logs (``bench/data/gen-1024mb``, shared with
  ``query_bench.py``), shipped once into the same server: answered by the cluster
  (``ClickHouseParser``, the same calls as ``LogParser.query``, the server on the same
  two cores) against the local engines on the files (ours and DuckDB at one and two
  threads, each in a fresh process with the files read once before, as ``query_bench.py``
  runs them). Every answer is checked against the generator's manifest (counts, errors,
  tokens exactly) and the percentiles against DuckDB's (1e-9 relative).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

sys.path.insert(0, str(ROOT / "bench"))

import query_bench  # noqa: E402
from tests.clickhouse_server import ClickHouseServer, clickhouse_binary  # noqa: E402

from infrastructure.monitoring.fleet import SHIP_LOCK_FILE, SHIP_STATE_FILE  # noqa: E402
from infrastructure.monitoring.fleet.clickhouse import ClickHouseClient, ClickHouseError  # noqa: E402
from infrastructure.monitoring.fleet.reader import ClickHouseParser  # noqa: E402
from infrastructure.monitoring.fleet.settings import ClickHouseSettings  # noqa: E402
from infrastructure.monitoring.fleet.shipper import ClickHouseShipper  # noqa: E402

GENERATOR_CANDIDATES = (ROOT.parent / "shared" / "bench" / "gen_logs.py", Path("/work/shared/bench/gen_logs.py"))


def generate(size_mb: float) -> Path:
    folder = ROOT / "bench" / "data" / f"ship-{size_mb:g}mb"
    if (folder / "manifest.json").exists():
        return folder
    generator = next((p for p in GENERATOR_CANDIDATES if p.exists()), None)
    if generator is None:
        sys.exit("gen_logs.py not found (expected in shared/bench/ beside the repository)")
    print(f"generating {size_mb:g} MB of logs into {folder} ...", file=sys.stderr)
    subprocess.run([sys.executable, str(generator), "--size-mb", str(size_mb), "--out", str(folder),
                    "--rotate-mb", "20"], check=True)
    return folder


def reset(folder: Path) -> None:
    for name in (SHIP_STATE_FILE, SHIP_LOCK_FILE):
        (folder / name).unlink(missing_ok=True)


def raw_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if "_metrics.log" in p.name and not p.name.endswith(".gz"))


def gzip_bytes(folder: Path) -> int:
    total = 0
    for path in folder.iterdir():
        if "_metrics.log" in path.name:
            with path.open("rb") as handle:
                total += len(gzip.compress(handle.read(), compresslevel=6))
    return total


def ship_round(server: ClickHouseServer, folder: Path, database: str) -> dict[str, float]:
    reset(folder)
    server.query(f"DROP DATABASE IF EXISTS {database}")
    server_proc = psutil.Process(server.proc.pid) if server.proc else None
    server_cpu = sum(server_proc.cpu_times()[:2]) if server_proc else 0.0
    settings = ClickHouseSettings(url=server.url, database=database)
    with ClickHouseShipper(settings, folder) as shipper:
        result = shipper.ship_once()
    if result is None or result.failed:
        sys.exit(f"shipping failed: {result}")
    server_cpu = (sum(server_proc.cpu_times()[:2]) - server_cpu) if server_proc else float("nan")
    return {"rows": result.rows, "seconds": result.seconds, "cpu": result.cpu_seconds, "server_cpu": server_cpu,
            "batches": result.batches}


def parts(query: Any, database: str, table: str) -> tuple[int, int, list[tuple[str, int, int]]]:
    compressed, uncompressed = (int(x) for x in query(
        f"SELECT sum(data_compressed_bytes), sum(data_uncompressed_bytes) FROM system.parts "
        f"WHERE database = '{database}' AND table = '{table}' AND active").split())
    columns = []
    for line in query(f"SELECT name, data_compressed_bytes, data_uncompressed_bytes FROM system.columns "
                      f"WHERE database = '{database}' AND table = '{table}' ORDER BY data_compressed_bytes DESC "
                      "LIMIT 6").splitlines():
        name, c, u = line.split("\t")
        columns.append((name, int(c), int(u)))
    return compressed, uncompressed, columns


class ChdbClient(ClickHouseClient):
    """The client answered by an embedded current ClickHouse (``chdb``): the current layout, and the
    current dialect's queries."""

    def __init__(self, session: Any) -> None:
        super().__init__("http://chdb.invalid:8123")
        self.session = session

    def _run(self, sql: str, fmt: str = "TabSeparated", settings: Any = None) -> bytes:
        if settings:
            sql += " SETTINGS " + ", ".join(f"{k} = {v}" for k, v in settings.items())
        try:
            return bytes(self.session.query(sql, fmt).bytes())
        except RuntimeError as exc:
            raise ClickHouseError(str(exc)) from None

    def query(self, sql: str, *, settings: Any = None, query_id: str | None = None) -> bytes:  # noqa: ARG002
        head, _, fmt = sql.rpartition("\nFORMAT ")
        return self._run(head, fmt, settings) if head else self._run(sql, settings=settings)

    def lines(self, sql: str, *, settings: Any = None) -> Any:
        head, _, fmt = sql.rpartition("\nFORMAT ")
        yield from self._run(head, fmt, settings).splitlines()

    def insert(self, statement: str, body: bytes, *, settings: Any = None,
               query_id: str | None = None) -> None:  # noqa: ARG002 - one embedded process, no query ids
        head, _, fmt = statement.partition(" FORMAT ")
        given = ", ".join(f"{k} = {v}" for k, v in (settings or {}).items())
        self._run(f"{head} SETTINGS {given} FORMAT {fmt}\n{body.decode()}")

    def version(self) -> str:
        return self._run("SELECT version()").decode().strip()


def current_layout(folder: Path) -> tuple[int, int, list[tuple[str, int, int]]] | None:
    try:
        from chdb import session as chdb_session
    except ImportError:
        return None
    scratch = tempfile.mkdtemp(prefix="ship-bench-chdb-")
    session = chdb_session.Session(scratch)
    try:
        reset(folder)
        with ClickHouseShipper(ClickHouseSettings(database="bench"), folder, client=ChdbClient(session)) as shipper:
            result = shipper.ship_once()
        if result is None or result.failed:
            print(f"chdb shipping failed: {result}", file=sys.stderr)
            return None
        # wide parts, so that system.columns has the size of each column (compact parts share one file)
        session.query("ALTER TABLE bench.monitoring_records MODIFY SETTING min_bytes_for_wide_part = 0, "
                      "min_rows_for_wide_part = 0")
        session.query("OPTIMIZE TABLE bench.monitoring_records FINAL")

        def query(sql: str) -> str:
            return str(session.query(sql, "TabSeparated"))

        return parts(query, "bench", "monitoring_records")
    finally:
        session.close()
        shutil.rmtree(scratch, ignore_errors=True)
        reset(folder)


LOCAL = ("ours t=1", "ours t=2", "duckdb t=1", "duckdb t=2")
Q1_AGGS = ["count", "errors", "avg:response_time", "p50:response_time", "p95:response_time", "p99:response_time",
           "sum:total_tokens"]


def cluster_answer(parser: ClickHouseParser, query: str, since: float) -> dict[str, Any]:
    """The question as ``query_bench.run_ours`` asks it of the files, asked of the table."""
    if query == "Q3":
        rows = parser.query(where=["success=false"], group_by="operation", aggs=["count"]).rows
        return {r["operation"]: r["count"] for r in rows}
    rows = parser.query("llm", operation="llm_call", since=since if query == "Q2" else None, group_by="model",
                        aggs=Q1_AGGS).rows
    return {r["model"]: [r["count"], r["errors"], r["avg_response_time"], r["p50_response_time"],
                         r["p95_response_time"], r["p99_response_time"], r["sum_total_tokens"]] for r in rows}


def time_cluster(parser: ClickHouseParser, rounds: int, since: float,
                 between: Any = None) -> dict[str, list[dict[str, Any]]]:
    """Each question ``rounds`` times (after one untimed round: warm caches, as the files' page cache);
    ``between(query)`` runs after each timing (the local contenders, taking turns with the cluster)."""
    for query in query_bench.QUERIES:
        cluster_answer(parser, query, since)
    timed: dict[str, list[dict[str, Any]]] = {}
    for _ in range(rounds):
        for query in query_bench.QUERIES:
            started = time.perf_counter()
            answer = cluster_answer(parser, query, since)
            timed.setdefault(query, []).append({"seconds": time.perf_counter() - started, "answer": answer})
            if between is not None:
                between(query)
    return timed


def current_cluster(folder: Path, rounds: int, since: float) -> tuple[str, dict[str, list[dict[str, Any]]]] | None:
    """The questions on an embedded current ClickHouse (chdb, in this process) holding the same rows:
    the current dialect (quantilesExactInclusive, LowCardinality, codecs), as production servers run it."""
    try:
        from chdb import session as chdb_session
    except ImportError:
        return None
    scratch = tempfile.mkdtemp(prefix="ship-bench-chdb-")
    session = chdb_session.Session(scratch)
    try:
        client = ChdbClient(session)
        settings = ClickHouseSettings(database="qbench")
        reset(folder)
        with ClickHouseShipper(settings, folder, client=client) as shipper:
            shipped = shipper.ship_once()
        if shipped is None or shipped.failed:
            print(f"chdb shipping failed: {shipped}", file=sys.stderr)
            return None
        session.query("OPTIMIZE TABLE qbench.monitoring_records FINAL")
        parser = ClickHouseParser(settings, client=client)
        return f"chdb {client.version()}", time_cluster(parser, rounds, since)
    finally:
        session.close()
        shutil.rmtree(scratch, ignore_errors=True)
        reset(folder)


def query_section(server: ClickHouseServer, size_mb: float, rounds: int, *, current: bool) -> list[str]:
    """Q1-Q3 from the cluster against the local engines on the same files."""
    folder = ROOT / "bench" / "data" / f"gen-{size_mb:g}mb"
    if not (folder / "manifest.json").exists():
        print(f"generating {size_mb:g} MiB of logs into {folder} ...", file=sys.stderr)
        subprocess.run([sys.executable, str(query_bench.GENERATOR), "--size-mb", str(size_mb), "--out", str(folder)],
                       check=True)
    truth = json.loads((folder / "manifest.json").read_text())
    since = truth["last_hour_since"]
    settings = ClickHouseSettings(url=server.url, database="qbench")
    server.query("DROP DATABASE IF EXISTS qbench")
    reset(folder)
    try:
        with ClickHouseShipper(settings, folder) as shipper:
            shipped = shipper.ship_once()
    finally:
        reset(folder)
    if shipped is None or shipped.failed or shipped.rows != truth["total_events"]:
        sys.exit(f"shipping the query data failed: {shipped}")
    server.query("OPTIMIZE TABLE qbench.monitoring_records FINAL")  # as a table looks once its merges are done
    local: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def files(query: str) -> None:
        for contender in LOCAL:
            done = subprocess.run([sys.executable, str(ROOT / "bench" / "query_bench.py"), "--child", str(folder),
                                   query, contender, repr(since)], capture_output=True, text=True, check=True)
            local.setdefault((query, contender), []).append(json.loads(done.stdout))

    with ClickHouseParser(settings) as parser:
        clusters = {f"cluster, {server.scalar('SELECT version()')}": time_cluster(parser, rounds, since, files)}
    embedded = current_cluster(folder, rounds, since) if current else None
    if embedded is not None:
        clusters[f"cluster, {embedded[0]}"] = embedded[1]
    first = next(iter(clusters))
    dialects = "the server: legacy dialect" + ("; chdb, embedded: current dialect" if embedded else "")
    lines = ["", f"The benchmark questions over {truth['total_bytes'] / 2**20:,.0f} MiB of logs "
             f"({truth['total_events']:,} records; shipped to the server at {shipped.rows / shipped.seconds:,.0f} "
             f"rows/s) from the cluster ({dialects}; on the same two cores) and from the files; medians of "
             f"{rounds} rounds (min-max), warm caches; the ratio is to the first row of each question",
             f"{'query':<6}{'answered by':<32}{'seconds':>9}{'range':>15}{'ratio':>9}  answer"]
    for query in query_bench.QUERIES:
        duck = local[(query, "duckdb t=1")][0]["answer"]
        runs = {**{name: timed[query] for name, timed in clusters.items()},
                **{f"files, {c}": local[(query, c)] for c in LOCAL}}
        base = statistics.median(r["seconds"] for r in clusters[first][query])
        for name, results in runs.items():
            seconds = statistics.median(r["seconds"] for r in results)
            spread = f"{min(r['seconds'] for r in results):.3f}-{max(r['seconds'] for r in results):.3f}"
            verdict = query_bench.check(query, results[0]["answer"], truth, duck if query != "Q3" else None)
            lines.append(f"{query:<6}{name:<32}{seconds:>9.3f}{spread:>15}{seconds / base:>8.1f}x  {verdict}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=200.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--query-mb", type=float, default=1024.0, help="logs for Q1-Q3 (0: skip the questions)")
    parser.add_argument("--query-rounds", type=int, default=5)
    parser.add_argument("--no-current", action="store_true", help="skip the current dialect (chdb) for Q1-Q3")
    args = parser.parse_args()
    folder = generate(args.size_mb)
    manifest = json.loads((folder / "manifest.json").read_text())
    binary = clickhouse_binary()
    if binary is None:
        sys.exit("clickhouse-server is not installed (apt-get install clickhouse-server)")
    scratch = Path(tempfile.mkdtemp(prefix="ship-bench-"))
    server = ClickHouseServer(scratch, binary)
    server.start()
    try:
        version = server.scalar("SELECT version()")
        rounds = [ship_round(server, folder, f"bench{i}") for i in range(args.rounds)]
        server.query("OPTIMIZE TABLE bench0.monitoring_records FINAL")
        legacy = parts(server.query, "bench0", "monitoring_records")
        for i in range(args.rounds):
            server.query(f"DROP DATABASE IF EXISTS bench{i}")
        questions = (query_section(server, args.query_mb, args.query_rounds, current=not args.no_current)
                     if args.query_mb > 0 else [])
    finally:
        server.kill()
        shutil.rmtree(scratch, ignore_errors=True)
        reset(folder)
    rows = rounds[0]["rows"]
    assert rows == manifest["total_events"], (rows, manifest["total_events"])
    raw = raw_bytes(folder)
    gz = gzip_bytes(folder)
    current = current_layout(folder)

    def stat(values: list[float]) -> str:
        med = statistics.median(values)
        return f"{med:,.1f} ({min(values):,.1f}-{max(values):,.1f})"

    rate = [r["rows"] / r["seconds"] for r in rounds]
    cpu_us = [r["cpu"] / r["rows"] * 1e6 for r in rounds]
    per_core = [1e6 / c for c in cpu_us]
    server_us = [r["server_cpu"] / r["rows"] * 1e6 for r in rounds]
    print(f"\nShipping {raw / 1e6:,.0f} MB of JSON lines ({rows:,} records, {len(list(folder.glob('*_metrics.log*')))}"
          f" files, 5 families) to clickhouse-server {version} on 127.0.0.1; {args.rounds} rounds, "
          f"{rounds[0]['batches']} batches each; median (min-max)")
    print(f"{'':38} {'value':>32}")
    print(f"{'rows/s, wall clock (server on the same cores)':38} {stat(rate):>32}")
    print(f"{'shipper CPU per row, µs':38} {stat(cpu_us):>32}")
    print(f"{'rows per shipper CPU-second (one core)':38} {stat(per_core):>32}")
    print(f"{'server CPU per row, µs':38} {stat(server_us):>32}")
    print(f"\n{'storage of the same records':38} {'bytes':>16} {'vs raw JSON':>14}")
    print(f"{'raw JSON lines':38} {raw:>16,} {1.0:>13.1f}x")
    print(f"{'gzip -6 of the files (the cleaner)':38} {gz:>16,} {raw / gz:>13.1f}x")
    layouts = [("ClickHouse, legacy layout (18.16)", legacy)]
    if current is not None:
        layouts.append(("ClickHouse, current layout (chdb)", current))
    for label, (compressed, _uncompressed, _cols) in layouts:
        print(f"{label:38} {compressed:>16,} {raw / compressed:>13.1f}x")
    for label, (compressed, _uncompressed, cols) in layouts:
        print(f"\nlargest columns, {label}: " + ", ".join(
            f"{name} {c / 1e6:.1f} MB ({c / compressed:.0%})" for name, c, _ in cols))
    print(f"\nbytes per record on disk: legacy {legacy[0] / rows:.1f}"
          + (f", current {current[0] / rows:.1f}" if current else "") + f"; raw JSON {raw / rows:.1f}")
    for line in questions:
        print(line)
    print(f"host {os.uname().nodename}, {psutil.cpu_count()} cores, load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}; {time.strftime('%Y-%m-%d %H:%M')}")


if __name__ == "__main__":
    main()
