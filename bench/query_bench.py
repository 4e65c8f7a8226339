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

    ours     LogParser.query (threads=1 and threads=2; DuckDB under the hood for large scans,
             Python with bisection for small windows; skipped lines still counted). Backups a
             scan found whole are trusted by later scans (.query_verified.json): "ours first"
             is the first scan of the folder, every line checked (one thread)
    orjson   a plain loop: orjson.loads per line, dict accumulation, sorted lists for percentiles
    duckdb   read_json with named columns, threads=1 and threads=2
    grep     grep '"success": false' | grep -o operation | sort | uniq -c   (Q3 only)

Seconds are the median over rounds (each round runs every contender once, in turn) with the
range beside it: this machine is shared, and a single run can be off by a third. "vs duckdb"
compares ours with DuckDB at the same number of threads.

Answers are checked: counts and sums against the generator's manifest, percentiles against
DuckDB's quantile_cont (1 % at most).

    python bench/query_bench.py [--size-mb 1024] [--rounds 5]
    python bench/query_bench.py --instructions      # ours vs DuckDB by instructions executed (valgrind)
"""

from __future__ import annotations

import argparse
import contextlib
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
CONTENDERS = ("ours first", "ours t=1", "ours t=2", "orjson", "duckdb t=1", "duckdb t=2", "grep")
VERIFIED = ".query_verified.json"
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


def run_ours(folder: str, query: str, threads: int, since: float) -> dict:
    from infrastructure.monitoring.query import LogParser

    parser = LogParser(folder, threads=threads)
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
    if contender == "ours first":  # no backup known whole yet: every line checked (the first scan of a folder)
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(folder, VERIFIED))
    if contender.startswith(("ours", "duckdb", "none")):  # imports are not part of the question
        import duckdb  # noqa: F401

        from infrastructure.monitoring.query import LogParser  # noqa: F401
    started = time.perf_counter()
    if contender.startswith("ours"):
        answer = run_ours(folder, query, 1 if contender == "ours first" else int(contender[-1]), since)
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
                if abs(got[i] - duck[model][i]) > 0.01 * abs(duck[model][i]):
                    return "pct off"
    return "ok"


def instructions(folder: Path, since: float) -> None:
    """Ours and DuckDB at one thread, compared by the instructions they execute (callgrind), which
    no other load on the machine changes: timings here wander by a third from run to run.

    On a subset (each family's live file and newest backup, hard links in ``bench/data/``) since
    valgrind runs programs about 50 times slower. "ours first" is the first scan of the subset
    (every line checked); "ours" a later one, trusting the backups the first found whole. Each figure is the count
    of a run minus that of a run which does everything but the question (start, imports, warm-up)."""
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
    print(f"{'query':<6}{'ours first':>14}{'ours':>14}{'duckdb':>14}{'first / duckdb':>16}{'ours / duckdb':>15}")
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    for query in ("Q1", "Q3"):
        counts = {}
        for contender in ("none", "ours first", "ours t=1", "duckdb t=1"):
            done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
                                   __file__, "--child", str(subset), query, contender, repr(since)],
                                  capture_output=True, text=True, check=True, env=env)
            counts[contender] = int(re.search(r"Collected : (\d+)", done.stderr).group(1))
        first, ours, duck = (counts[c] - counts["none"] for c in ("ours first", "ours t=1", "duckdb t=1"))
        print(f"{query:<6}{first / 1e6:>12,.0f} M{ours / 1e6:>12,.0f} M{duck / 1e6:>12,.0f} M"
              f"{first / duck:>15.3f}x{ours / duck:>14.3f}x")


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
    print(f"{'query':<6}{'contender':<12}{'seconds':>9}{'range':>14}{'vs ours t=1':>13}{'vs duckdb':>11}"
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
            threads = 1 if contender == "ours first" else contender[-1]
            peer = f"duckdb t={threads}" if contender.startswith("ours") else None
            versus = f"{seconds / statistics.median(r['seconds'] for r in results[peer]):>10.2f}x" if peer else " " * 11
            print(f"{query:<6}{contender:<12}{seconds:>9.3f}{spread:>14}{seconds / base:>12.2f}x{versus}"
                  f"{rss:>8.0f} MB  {verdict}")


if __name__ == "__main__":
    main()
