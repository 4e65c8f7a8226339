#!/usr/bin/env python3
"""Three questions asked of 1 GB of logs, by this project and by its peers, in one run.

The logs come from ``../shared/bench/gen_logs.py`` (30 days, 50 MiB rotation; kept in
``bench/data/`` between runs). Each (question, contender) runs in a fresh process that
first reads the files it needs once, untimed — this machine evicts idle file pages after
about a minute, so every figure is a warm-cache figure — then times the question. Peak
memory is the process's peak RSS (interpreter and imports included).

    Q1  LLM calls by model over everything: count, errors, avg/p50/p95/p99 latency, tokens
    Q2  the same over the last hour
    Q3  failures per operation over every family

    ours     LogParser.query (threads=1 and threads=2): the query plan computed by DuckDB over a
             snapshot of the files chosen by time (bisection for windows), every line checked
             so damaged ones are counted and located
    ours+copies  the same, reading the columnar (Parquet) copies of the settled backups
             (``monitoring cache build``; built once, before the timings) and the JSON of the
             live files
    orjson   a plain loop: orjson.loads per line, dict accumulation, sorted lists for percentiles
    duckdb   read_json with named columns, threads=1 and threads=2
    grep     grep '"success": false' | grep -o operation | sort | uniq -c   (Q3 only)

Seconds are the median over rounds (each round runs every contender once, in turn) with the
range beside it: this machine is shared, and a single run can be off by a third. "vs duckdb"
compares ours with DuckDB at the same number of threads.

Answers are checked: counts and sums against the generator's manifest, percentiles against
DuckDB's quantile_cont (exact: 1e-9 relative).

After the table, the copies' own figures: their size against the JSON's, the cost of building
them against one DuckDB scan of the same files (one thread each), the build's peak RSS, and
the dashboard over the whole 30 days rendered server side with and without copies.

    python bench/query_bench.py [--size-mb 1024] [--rounds 5]
    python bench/query_bench.py --instructions      # ours vs DuckDB by instructions executed (valgrind)
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
GENERATOR = ROOT.parent / "shared" / "bench" / "gen_logs.py"
QUERIES = ("Q1", "Q2", "Q3")
CONTENDERS = ("ours t=1", "ours t=2", "ours+copies t=1", "ours+copies t=2", "orjson", "duckdb t=1", "duckdb t=2",
              "grep")
PCTS = (0.5, 0.95, 0.99)


def warm(files: list[str]) -> None:
    """Read the files once into one small reused buffer: reading them in large chunks would leave
    the freed chunks in this process's heap (glibc keeps them) and add them to every peak RSS."""
    buffer = bytearray(1 << 20)
    for name in files:
        with open(name, "rb", buffering=0) as handle:
            while handle.readinto(buffer):
                pass


def family(folder: str, name: str) -> list[str]:
    return sorted(glob.glob(os.path.join(folder, f"{name}_metrics.log*")))


def run_ours(folder: str, query: str, threads: int, since: float, copies: bool = False) -> dict:
    from infrastructure.monitoring.query import LogParser

    parser = LogParser(folder, threads=threads, columnar=copies)
    if query == "Q3":
        rows = parser.query(where=["success=false"], group_by="operation", aggs=["count"]).rows
        return {r["operation"]: r["count"] for r in rows}
    rows = parser.query("llm", operation="llm_call", since=since if query == "Q2" else None, group_by="model",
                        aggs=["count", "errors", "avg:response_time", "p50:response_time", "p95:response_time",
                              "p99:response_time", "sum:total_tokens"]).rows
    return {r["model"]: [r["count"], r["errors"], r["avg_response_time"], r["p50_response_time"],
                         r["p95_response_time"], r["p99_response_time"], r["sum_total_tokens"]] for r in rows}


def run_orjson(folder: str, query: str, since: float) -> dict:
    import orjson

    if query == "Q3":
        counts: dict[str, int] = {}
        for name in glob.glob(os.path.join(folder, "*_metrics.log*")):
            with open(name, "rb") as handle:
                for line in handle:
                    r = orjson.loads(line)
                    if r.get("success") is False:
                        counts[r["operation"]] = counts.get(r["operation"], 0) + 1
        return counts
    groups: dict[str, list] = {}
    for name in family(folder, "llm"):
        with open(name, "rb") as handle:
            for line in handle:
                r = orjson.loads(line)
                if r.get("operation") != "llm_call" or (query == "Q2" and r["timestamp"] < since):
                    continue
                g = groups.setdefault(r["model"], [0, 0, [], 0])
                g[0] += 1
                g[1] += not r["success"]
                g[2].append(r["response_time"])
                g[3] += r["total_tokens"]
    out = {}
    for model, (n, errors, times, tokens) in groups.items():
        times.sort()
        out[model] = [n, errors, sum(times) / n, *(_pct(times, q) for q in PCTS), tokens]
    return out


def _pct(ordered: list[float], q: float) -> float:
    h = q * (len(ordered) - 1)
    lo = int(h)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (h - lo) * (ordered[hi] - ordered[lo])


def run_duckdb(folder: str, query: str, threads: int, since: float) -> dict:
    import duckdb

    con = duckdb.connect(config={"threads": threads})
    con.execute("SET enable_progress_bar = false")
    if query == "Q3":
        files = glob.glob(os.path.join(folder, "*_metrics.log*"))
        rows = con.execute(
            f"SELECT operation, count(*) FROM read_json({files!r}, columns={{'operation': 'VARCHAR', "
            "'success': 'BOOLEAN'}, format='newline_delimited') WHERE success = false GROUP BY operation").fetchall()
        return dict(rows)
    files = family(folder, "llm")
    where = f"AND timestamp >= {since!r}" if query == "Q2" else ""
    rows = con.execute(
        f"SELECT model, count(*), count(*) FILTER (WHERE NOT success), avg(response_time), "
        f"quantile_cont(response_time, [{', '.join(map(str, PCTS))}]), sum(total_tokens) "
        f"FROM read_json({files!r}, columns={{'timestamp': 'DOUBLE', 'operation': 'VARCHAR', 'model': 'VARCHAR', "
        "'success': 'BOOLEAN', 'response_time': 'DOUBLE', 'total_tokens': 'BIGINT'}, format='newline_delimited') "
        f"WHERE operation = 'llm_call' {where} GROUP BY model").fetchall()
    return {m: [n, e, avg, *q, int(t)] for m, n, e, avg, q, t in rows}


def run_grep(folder: str) -> dict:
    files = " ".join(sorted(glob.glob(os.path.join(folder, "*_metrics.log*"))))
    out = subprocess.run(f"grep -h '\"success\": false' {files} | grep -o '\"operation\": \"[a-z_]*\"' | sort | "
                         "uniq -c", shell=True, capture_output=True, text=True, check=True).stdout
    counts = {}
    for line in out.splitlines():
        n, op = line.strip().split(" ", 1)
        counts[json.loads("{" + op + "}")["operation"]] = int(n)
    return counts


def child(folder: str, query: str, contender: str, since: float) -> None:
    needed = glob.glob(os.path.join(folder, "*_metrics.log*")) if query == "Q3" else family(folder, "llm")
    warm(needed)
    if contender.startswith(("ours", "duckdb", "none")):  # imports are not part of the question
        import duckdb  # noqa: F401

        from infrastructure.monitoring.query import LogParser  # noqa: F401
    started = time.perf_counter()
    if contender.startswith("ours"):
        answer = run_ours(folder, query, int(contender[-1]), since, copies="copies" in contender)
    elif contender == "orjson":
        answer = run_orjson(folder, query, since)
    elif contender.startswith("duckdb"):
        answer = run_duckdb(folder, query, int(contender[-1]), since)
    elif contender == "none":  # the instruction count of everything but the question
        answer = {}
    else:
        answer = run_grep(folder)
    elapsed = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": elapsed, "rss_mb": rss, "answer": answer}))


def check(query: str, answer: dict, truth: dict, duck: dict | None) -> str:
    if query == "Q3":
        return "ok" if answer == truth["failures_per_operation"] else "WRONG"
    want = truth["llm_call"]["full" if query == "Q1" else "last_hour"]
    for model, stats in want.items():
        got = answer.get(model)
        if got is None or got[0] != stats["count"] or got[1] != stats["errors"] or got[6] != stats["tokens"]:
            return "WRONG"
        if duck is not None:
            for i in (3, 4, 5):
                if abs(got[i] - duck[model][i]) > 1e-9 * abs(duck[model][i]):
                    return "pct off"
    return "ok"


def instructions(folder: Path, since: float) -> None:
    """Ours and DuckDB at one thread, compared by the instructions they execute (callgrind), which
    no other load on the machine changes: timings here wander by a third from run to run.

    On a subset (each family's live file and newest backup, hard links in ``bench/data/``) since
    valgrind runs programs about 50 times slower. Each figure is the count of a run minus that of a
    run which does everything but the question (start, imports, warm-up)."""
    if shutil.which("valgrind") is None:
        sys.exit("--instructions needs valgrind (apt-get install valgrind)")
    subset = folder.parent / f"{folder.name}-subset"
    subset.mkdir(exist_ok=True)
    for name in [*glob.glob(str(folder / "*_metrics.log")), *glob.glob(str(folder / "*_metrics.log.1"))]:
        target = subset / os.path.basename(name)
        if not target.exists():
            os.link(name, target)
    size = sum(f.stat().st_size for f in subset.iterdir()) / 2**20
    print(f"instructions executed (callgrind) on {size:,.0f} MiB: each family's live file and newest backup")
    print(f"{'query':<6}{'ours':>14}{'duckdb':>14}{'ours / duckdb':>15}")
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    for query in ("Q1", "Q3"):
        counts = {}
        for contender in ("none", "ours t=1", "duckdb t=1"):
            done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
                                   __file__, "--child", str(subset), query, contender, repr(since)],
                                  capture_output=True, text=True, check=True, env=env)
            counts[contender] = int(re.search(r"Collected : (\d+)", done.stderr).group(1))
        ours, duck = (counts[c] - counts["none"] for c in ("ours t=1", "duckdb t=1"))
        print(f"{query:<6}{ours / 1e6:>12,.0f} M{duck / 1e6:>12,.0f} M{ours / duck:>14.3f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=float, default=1024)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", nargs="*", choices=QUERIES, default=list(QUERIES))
    ap.add_argument("--instructions", action="store_true",
                    help="count CPU instructions under valgrind instead of timing (a subset of the files)")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.child[2], float(args.child[3]))
        return
    folder = ROOT / "bench" / "data" / f"gen-{args.size_mb:g}mb"
    if not (folder / "manifest.json").exists():
        print(f"generating {args.size_mb:g} MiB of logs into {folder} ...", file=sys.stderr)
        subprocess.run([sys.executable, str(GENERATOR), "--size-mb", str(args.size_mb), "--out", str(folder)],
                       check=True)
    truth = json.loads((folder / "manifest.json").read_text())
    since = truth["last_hour_since"]
    if args.instructions:
        instructions(folder, since)
        return
    llm_mb = sum(os.path.getsize(f) for f in family(str(folder), "llm")) / 2**20
    print(f"{truth['total_bytes'] / 2**20:,.0f} MiB of logs ({llm_mb:,.0f} MiB in the llm family), "
          f"{truth['total_events']:,} records; warm cache (files read once before each timing); "
          f"medians of {args.rounds} rounds, fresh process each")
    build_copies(folder)
    print(f"{'query':<6}{'contender':<17}{'seconds':>9}{'range':>14}{'vs ours t=1':>13}{'vs duckdb':>11}"
          f"{'peak RSS':>11}  answer")
    for query in args.only:
        results: dict[str, list[dict]] = {}
        for _ in range(args.rounds):
            for contender in CONTENDERS:
                if contender == "grep" and query != "Q3":
                    continue
                done = subprocess.run([sys.executable, __file__, "--child", str(folder), query, contender,
                                       repr(since)], capture_output=True, text=True, check=True)
                results.setdefault(contender, []).append(json.loads(done.stdout))
        duck = results["duckdb t=1"][0]["answer"]
        base = statistics.median(r["seconds"] for r in results["ours t=1"])
        for contender, runs in results.items():
            seconds = statistics.median(r["seconds"] for r in runs)
            spread = f"{min(r['seconds'] for r in runs):.2f}-{max(r['seconds'] for r in runs):.2f}"
            rss = max(r["rss_mb"] for r in runs)
            verdict = check(query, runs[0]["answer"], truth, duck if query != "Q3" else None)
            peer = f"duckdb t={contender[-1]}" if contender.startswith("ours") else None
            versus = f"{seconds / statistics.median(r['seconds'] for r in results[peer]):>10.2f}x" if peer else " " * 11
            print(f"{query:<6}{contender:<17}{seconds:>9.3f}{spread:>14}{seconds / base:>12.2f}x{versus}"
                  f"{rss:>8.0f} MB  {verdict}")
    copies_report(folder, truth, args.rounds)


def build_copies(folder: Path) -> None:
    """The copies the "+copies" contenders read (built once; a later run finds them built)."""
    from infrastructure.monitoring.query import columnar

    if columnar.status(folder).pending:
        print("building the columnar copies ...", file=sys.stderr)
        columnar.build_pending(folder)


def build_child(folder: str, name: str, what: str) -> None:
    """One file: a DuckDB scan of its JSON (Q3's columns, one thread), or the build of its copy."""
    import duckdb

    from infrastructure.monitoring.query import columnar
    from infrastructure.monitoring.query.files import discover

    path = os.path.join(folder, name)
    warm([path])
    if what == "scan":
        con = duckdb.connect(config={"threads": 1})
        started = time.perf_counter()
        con.execute(f"SELECT operation, count(*) FROM read_json('{path}', columns={{'timestamp': 'DOUBLE', "
                    "'operation': 'VARCHAR', 'success': 'BOOLEAN'}, format='newline_delimited', "
                    "ignore_errors=true) WHERE success = false GROUP BY operation").fetchall()
        elapsed = time.perf_counter() - started
        size = 0
    else:
        source = next(f for files in discover(folder).values() for f in files if f.name == name)
        scratch = Path(folder) / ".columnar-bench"
        scratch.mkdir(exist_ok=True)
        link = scratch / name
        if not link.exists():
            os.link(path, link)  # the same inode, copied into a folder of its own
        source.path = link
        shutil.rmtree(scratch / ".columnar", ignore_errors=True)
        started = time.perf_counter()
        result = columnar.build_copy(scratch, source)
        elapsed = time.perf_counter() - started
        size = result.copy_bytes
        shutil.rmtree(scratch, ignore_errors=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": elapsed, "rss_mb": rss, "copy_bytes": size}))


def dashboard_child(folder: str, copies: str, now: float) -> None:
    from infrastructure.monitoring.query import columnar
    from infrastructure.monitoring.web.data import dashboard_data

    columnar.set_default_enabled(copies == "copies")
    warm(glob.glob(os.path.join(folder, "*_metrics.log*")))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    dashboard_data(folder, hours=30 * 24, now=now)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
    print(json.dumps({"seconds": elapsed, "cpu": cpu, "rss_mb": after.ru_maxrss / 1024}))


def copies_report(folder: Path, truth: dict, rounds: int) -> None:
    from infrastructure.monitoring.query import columnar

    state = columnar.status(folder)
    covered = state.covered_bytes + state.live_covered_bytes
    print(f"\ncolumnar copies: {state.covered_files} of {state.files} settled files and "
          f"{state.live_covered_bytes / 2**20:,.0f} of {state.live_bytes / 2**20:,.0f} MiB of the live files "
          f"({covered / 2**20:,.0f} MiB of JSON) -> {state.copy_bytes / 2**20:,.1f} MiB of Parquet = "
          f"{state.copy_bytes / covered:.1%} of the JSON they cover")
    names = sorted(Path(p).name for p in glob.glob(str(folder / "*_metrics.log.*")))[:4]
    scans, builds, rss = [], [], []
    for name in names:
        for what, into in (("scan", scans), ("build", builds)):
            runs = [json.loads(subprocess.run([sys.executable, __file__, "--build-child", str(folder), name, what],
                                              capture_output=True, text=True, check=True).stdout)
                    for _ in range(max(1, rounds // 2))]
            into.append(statistics.median(r["seconds"] for r in runs))
            if what == "build":
                rss.append(max(r["rss_mb"] for r in runs))
    print(f"building a copy (one thread, {len(names)} files of ~50 MiB, median of {max(1, rounds // 2)}): "
          f"{sum(builds) / len(names):.3f} s per file vs {sum(scans) / len(names):.3f} s for one DuckDB scan "
          f"of its JSON = {sum(builds) / sum(scans):.2f}x; peak RSS {max(rss):.0f} MB")
    now = truth.get("end_ts") or max(json.loads(line)["timestamp"] for line in
                                     (folder / "llm_metrics.log").read_bytes().splitlines()[-5:])
    for mode in ("json", "copies"):
        runs = [json.loads(subprocess.run([sys.executable, __file__, "--dashboard-child", str(folder), mode,
                                           repr(float(now))], capture_output=True, text=True, check=True).stdout)
                for _ in range(max(1, rounds // 2))]
        print(f"dashboard over 30 days ({mode:>6}): {statistics.median(r['seconds'] for r in runs):.3f} s "
              f"server side ({statistics.median(r['cpu'] for r in runs):.3f} s of CPU), "
              f"peak RSS {max(r['rss_mb'] for r in runs):.0f} MB")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--build-child":
        build_child(*sys.argv[2:5])
    elif len(sys.argv) > 1 and sys.argv[1] == "--dashboard-child":
        dashboard_child(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    else:
        main()
