"""What each command prints: reports, query results, cleanups, sessions, alerts, status.

Plain text through ``click.echo`` (so it goes where click sends it), tables from
``_display.render_table`` (never wider than the terminal). Skipped lines and warnings go
to stderr, so ``--format json|csv`` keeps stdout clean.
"""

from __future__ import annotations

import csv
import json
import sys
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import click

from ._display import render_table, sparkline, terminal_width, when
from ._parsers import format_size

__all__ = [
    "NEXT_STEPS", "print_alerts", "print_cleanup", "print_files", "print_profiles", "print_query", "print_report",
    "print_session", "print_skipped", "print_slos", "print_status", "print_traces", "say", "window_text",
]

NEXT_STEPS = (
    "Next, try:",
    "  monitoring report                     usage per model, tool and task",
    "  monitoring query --module llm --group-by model --agg p95:response_time",
    "  monitoring dashboard --output d.html  one HTML page, works offline",
    "  monitoring serve                      live dashboard, /metrics on port 9464",
)


def say(text: str = "", *, err: bool = False) -> None:
    """A line of prose, wrapped to the terminal (a path longer than a line is cut where it must be)."""
    width = terminal_width()
    lines = textwrap.wrap(text, width, subsequent_indent="  ", break_on_hyphens=False) if len(text) > width else [text]
    for line in lines:
        click.echo(line, err=err)


def print_files(folder: Path, before: dict[str, int]) -> None:
    """The live files of ``folder`` with their size and what this run added (``before``: sizes then)."""
    rows = []
    for path in sorted(folder.glob("*.log")):
        size = path.stat().st_size
        rows.append({"file": path.name, "size_bytes": size, "added_bytes": max(0, size - before.get(path.name, 0))})
    _echo_table(f"Files in {folder}", ["file", "size_bytes", "added_bytes"], rows, keys=["file"])


def window_text(since: float | None, until: float | None) -> str:
    def iso(t: float | None) -> str:
        return "the beginning" if t is None else when(t) + "Z"

    return f"{iso(since)} to {iso(until) if until is not None else 'now'}"


def _echo_table(title: str | None, columns: Sequence[str], rows: list[dict[str, Any]], *,
                keys: Iterable[str] = (), caption: str | None = None) -> None:
    click.echo(render_table(title, columns, rows, keys=keys, width=terminal_width(), caption=caption))


def print_skipped(skipped: Any) -> None:
    if not skipped:
        return
    click.echo(f"warning: {skipped.summary()}", err=True)
    for s in skipped.samples[:5]:
        click.echo(f"  {s.file}:{s.line or '?'} {s.reason}: {s.excerpt[:80]}", err=True)


# --------------------------------------------------------------------------- report and query


def print_report(report: Any, *, trends: dict[str, dict[tuple[Any, ...], list[float | None]]] | None = None) -> None:
    """Every section of ``report``; with ``trends`` (section -> row keys -> counts per time slice)
    a sparkline column beside each row."""
    say(f"Report for {window_text(report.since, report.until)} ({report.seconds:.2f}s)")
    if not report.sections:
        say("no records in this window")
    for section in report.sections:
        keys = section.keys
        columns, rows = list(section.columns), section.rows
        trend = (trends or {}).get(section.name)
        if trend:
            rows = [{**r, "trend": sparkline(trend.get(tuple(r.get(k) for k in keys), []))} for r in rows]
            columns.insert(len(keys), "trend")
        click.echo()
        _echo_table(section.title, columns, rows, keys=keys)
    print_skipped(report.skipped)


def print_query(result: Any, fmt: str, *, max_groups: int, sparklines: bool) -> None:
    columns = [*result.group_by, *result.aggregates]
    if fmt == "json":
        click.echo(json.dumps(result.rows))
    elif fmt == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in result.rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    else:
        caption = (f"{len(result.rows):,} rows, {result.records_matched:,} records, "
                   f"{format_size(result.bytes_read)} read in {result.seconds:.2f}s")
        keys = [k for k in result.group_by if k != "bucket"]
        _echo_table(None, columns, result.rows, keys=[*keys, *(["bucket"] if "bucket" in result.group_by else [])],
                    caption=caption)
        if result.folded_groups:
            click.echo(f"{result.folded_groups:,} smaller groups folded into __other__ (--max-groups {max_groups})")
        if sparklines and "bucket" in result.group_by and result.aggregates:
            _series_lines(result, keys)
    for line in result.warnings():
        click.echo(f"warning: {line}", err=True)
    print_skipped(result.skipped)


def _series_lines(result: Any, keys: list[str]) -> None:
    """One sparkline per series (the group-by keys) of the first aggregate, over the buckets."""
    agg = result.aggregates[0]
    buckets = sorted({r["bucket"] for r in result.rows})
    series: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in result.rows:
        series.setdefault(tuple(r.get(k) for k in keys), {})[r["bucket"]] = r.get(agg)
    rows = []
    for key, values in series.items():
        numbers = [values.get(b) for b in buckets]
        present = [v for v in numbers if isinstance(v, (int, float))]
        rows.append({**dict(zip(keys, key, strict=True)), "trend": sparkline(numbers),
                     f"min_{agg}": min(present, default=None), f"max_{agg}": max(present, default=None)})
    click.echo()
    _echo_table(f"{agg} per bucket, {buckets[0] if buckets else ''} to {buckets[-1] if buckets else ''}",
                [*keys, "trend", f"min_{agg}", f"max_{agg}"], rows, keys=keys)


# --------------------------------------------------------------------------- other commands


def _cleanup_rows(result: Any) -> list[tuple[str, str]]:
    would = result.dry_run
    optional = [
        (result.files_retired, "idle live files retired", str(result.files_retired)),
        (result.files_compressed, "would compress" if would else "compressed",
         f"{result.files_compressed}" + ("" if would else f" (saved {format_size(result.bytes_saved)})")),
        (result.symlinks_skipped, "symlinks left alone", str(result.symlinks_skipped)),
        (result.files_changed, "changed meanwhile (next run)", str(result.files_changed)),
        (result.files_kept_unshipped, "kept: not yet shipped to ClickHouse", str(result.files_kept_unshipped)),
        (result.unshipped_bytes_lost, "never shipped, deleted by the budget", format_size(result.unshipped_bytes_lost)),
    ]
    rows = [("files scanned", str(result.files_scanned)),
            ("would delete" if would else "deleted", f"{result.files_deleted} ({format_size(result.bytes_freed)})"),
            *((label, value) for shown, label, value in optional if shown),
            ("errors", str(result.errors)), ("remaining in matched files", format_size(result.bytes_remaining))]
    if result.free_bytes is not None:
        rows.append(("free disk", format_size(result.free_bytes)))
    rows.append(("duration", f"{result.duration_seconds:.3f}s"))
    return rows


def print_cleanup(result: Any, days: float) -> None:
    if result.skipped:
        click.echo(f"Cleanup of {result.log_dir} skipped: {result.skipped}")
        return
    would = result.dry_run
    click.echo(f"{'Dry run: ' if would else ''}cleanup of {result.log_dir} (retention {days:g} days)")
    rows = _cleanup_rows(result)
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        click.echo(f"  {label:<{width}}  {value}")
    shown = 20
    for label, paths in (("would delete" if would else "deleted", result.deleted),
                         ("would compress" if would else "compressed", result.compressed)):
        for path in paths[:shown]:
            click.echo(f"  {label}: {path}")
        if len(paths) > shown:
            click.echo(f"  ... and {len(paths) - shown} more (see cleaner_metrics.log)")
    for path, reason in result.failures[:shown]:
        click.echo(f"  error: {path}: {reason}")


def print_session(summary: dict[str, Any]) -> None:
    env = summary.get("environment") or {}
    duration = summary.get("duration")
    click.echo(f"Session {summary['session_id']}  status: {summary.get('status') or 'running or unknown'}"
               + (f", {duration:.1f}s" if isinstance(duration, (int, float)) else ""))
    if env:
        variables = env.get("environment_variables") or {}
        click.echo("  " + ", ".join(f"{k}={v}" for k, v in env.items() if v is not None
                                    and k != "environment_variables"))
        if variables:
            click.echo("  variables: " + ", ".join(f"{k}={v}" for k, v in variables.items()))
    if summary.get("tasks"):
        click.echo()
        _echo_table("Tasks (figures include subtasks)", ["task", "agent", "status", "duration", "llm_calls",
                                                         "total_tokens", "cost", "tool_calls", "errors"],
                    [_task_row(t) for t in summary["tasks"]], keys=["task", "agent", "status"])
        if summary.get("tasks_omitted"):
            click.echo(f"  ... and {summary['tasks_omitted']:,} more tasks (see --format json)")
        outside = summary.get("outside_tasks") or {}
        if outside.get("llm_calls") or outside.get("tool_calls"):
            click.echo(f"Outside tasks: {outside.get('llm_calls', 0):,} LLM calls, {outside.get('total_tokens', 0):,} "
                       f"tokens, {outside.get('tool_calls', 0):,} tool calls, {outside.get('errors', 0):,} errors")
    changes = summary.get("code_changes")
    if changes:
        click.echo(f"Code changes: {changes['changes']:,} changes, {changes['files_changed']:,} files, "
                   f"+{changes['lines_added']:,} -{changes['lines_removed']:,} lines")
    tables = [("Agents", ["agent_type", "agent_name", "count", "errors", "sum_duration"], "agents",
               ["agent_type", "agent_name"]),
              ("Tools", ["tool_name", "count", "errors", "sum_duration"], "tools", ["tool_name"]),
              ("LLM calls", ["provider", "model", "count", "errors", "sum_prompt_tokens", "sum_completion_tokens",
                             "sum_total_tokens", "sum_cost"], "llm", ["provider", "model"])]
    for title, columns, name, keys in tables:
        if summary.get(name):
            click.echo()
            _echo_table(title, columns, summary[name], keys=keys)
    click.echo(f"LLM calls: {summary['llm_calls']:,}, tokens: {summary['total_tokens']:,}, "
               f"estimated cost: {summary['estimated_cost']:.4f}"
               + (f" (+{summary['unpriced_calls']} unpriced calls)" if summary.get("unpriced_calls") else ""))


def _task_row(task: dict[str, Any]) -> dict[str, Any]:
    """A task as a row of the session's table, indented under its parent; a decorated call
    (``@observe_task_execution``) shows its type and owns no records of its own."""
    name = str(task.get("task_id")) if task.get("kind") == "task" else f"({task.get('task_type')})"
    description = task.get("description")
    label = "  " * int(task.get("depth") or 0) + name + (f" {description}" if description else "")
    return {"task": label, "agent": task.get("agent"), "status": task.get("status") or "running or unknown",
            **{k: task.get(k) for k in ("duration", "llm_calls", "total_tokens", "cost", "tool_calls", "errors")}}


def print_status(state: Any) -> None:
    rows = [{"module": f.module, "files": f.files, "gz": f.compressed_files, "size_bytes": f.bytes,
             "records": f.records, "skipped": f.skipped, "oldest": when(f.oldest), "newest": when(f.newest)}
            for f in state.families]
    _echo_table(f"Log folder {state.log_dir}", ["module", "files", "gz", "size_bytes", "records", "skipped",
                                                  "oldest", "newest"], rows, keys=["module"])
    if state.free_bytes is not None and state.total_bytes:
        click.echo(f"free disk: {format_size(state.free_bytes)} of {format_size(state.total_bytes)} "
                   f"({state.free_bytes / state.total_bytes:.0%})")
    if state.faults:
        _echo_table("Writer faults reported in the logs", ["module", "count", "sum_dropped", "latest_fault"],
                    state.faults, keys=["module"])
    else:
        click.echo("writer faults: none reported")


def print_profiles(records: list[dict[str, Any]]) -> None:
    rows = []
    for r in records:
        if r.get("profiler_error"):
            headline = f"not profiled: {r['profiler_error']}"
        elif r.get("kind") == "cpu":
            tops = r.get("top_functions") or [{}]
            headline = (f"{tops[0].get('function', '-')} ({tops[0].get('share', 0):.0%} of "
                        f"{r.get('samples') or 0} samples)")
        elif r.get("kind") == "function":
            tops = r.get("top_functions") or [{}]
            headline = f"{tops[0].get('function', '-')} ({tops[0].get('cumulative_time', 0):.4f}s cumulative)"
        elif r.get("kind") == "memory":
            headline = (f"peak {format_size(r.get('peak_bytes') or 0)}, "
                        f"retained {format_size(r.get('retained_bytes') or 0)}")
        else:
            headline = (f"read {format_size(r.get('read_chars') or 0)} / wrote {format_size(r.get('write_chars') or 0)}"
                        f" in {r.get('read_count', 0)}+{r.get('write_count', 0)} calls")
        rows.append({"name": r.get("name"), "kind": r.get("kind"), "duration": r.get("duration"),
                     "success": r.get("success"), "summary": headline})
    _echo_table("Profiles", ["name", "kind", "duration", "success", "summary"], rows, keys=["name"])


def print_traces(found: list[Any]) -> None:
    width = terminal_width()
    for trace in found:
        click.echo(f"trace {trace.trace_id}  ({trace.spans} spans)")
        scopes: list[Any] = []  # the scope of the span last shown at each depth
        for depth, node in trace.walk():
            r = node.record
            status = r.get("status", "ok")
            mark = "ERROR " + str(r.get("status_message", "")) if status == "error" else status
            duration = r.get("duration")
            took = f"{duration * 1000:,.3f} ms" if isinstance(duration, (int, float)) else "?"
            scope = (r.get("scope_name"), r.get("scope_version"))
            del scopes[depth:]
            if scope[0] and (not scopes or scopes[-1] != scope):  # the tracer's name where it changes
                mark += f"  ({' '.join(str(part) for part in scope if part)})"
            scopes.append(scope)
            tail = f"  [{r.get('kind', 'internal')}]  {took}  {mark}"
            name = str(r.get("name"))
            room = max(8, width - 2 - 2 * depth - len(tail))
            if len(name) > room:
                name = name[: room - 1] + "…"
            click.echo((f"  {'  ' * depth}{name}{tail}")[:width])


def _alert_rows(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"state": a.get("state") or a.get("event"), "severity": a.get("severity"), "rule": a.get("rule"),
             "labels": " ".join(f"{k}={v}" for k, v in (a.get("labels") or {}).items()) or "-",
             "value": a.get("value"), "since": when(a.get("since")),
             "at": when(a.get("evaluated_at") or a.get("timestamp"))} for a in alerts]


def print_alerts(current: list[dict[str, Any]], recent: list[dict[str, Any]], errors: list[str], hours: float) -> None:
    columns = ["state", "severity", "rule", "labels", "value", "since", "at"]
    if current:
        _echo_table("Current alerts", columns, _alert_rows(current), keys=["state"])
    else:
        click.echo("current alerts: none pending or firing")
    if recent:
        click.echo()
        _echo_table(f"Transitions in the last {hours:g} h (newest first)", columns, _alert_rows(recent), keys=["state"])
    for line in errors:
        click.echo(f"rule error: {line}", err=True)


def print_slos(rows: list[dict[str, Any]]) -> None:
    columns = ["slo", "objective", "target", "period_days", "events", "bad", "measured", "percentile",
               "budget_left", "burn_rate_1h", "status"]
    _echo_table("Service level objectives", [c for c in columns if any(r.get(c) is not None for r in rows)], rows,
                keys=["slo"])
