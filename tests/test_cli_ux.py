"""The command line as a person meets it: wrong folders and field names are said, exit codes mean one
thing each, tables fit the terminal, numbers stay whole. In-process through click's ``CliRunner``,
plus a few runs of the installed script and of ``python -m infrastructure.monitoring``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from infrastructure.monitoring import _display
from infrastructure.monitoring.cli import main

from .conftest import append_records

TOOLS = ["web_search", "python_exec", "file_read"]
MODELS = ["claude-3-5-sonnet-20241022", "gpt-4o-mini-2024-07-18", "gemini-1.5-pro-002"]


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six hours of a realistic workload (long model names, six-digit token sums), written once by the
    demo in a process of its own, plus traces and a profile."""
    folder = tmp_path_factory.mktemp("ux") / "logs"
    done = subprocess.run([sys.executable, "-m", "infrastructure.monitoring", "demo", "--history", "6h",
                           "--seconds", "0.2", "--log-dir", str(folder)], capture_output=True, text=True,
                          timeout=120, check=False, cwd=folder.parent)
    assert done.returncode == 0, done.stderr
    now = __import__("time").time()
    append_records(folder / "llm_metrics.log", [
        {"timestamp": now - 60 + i, "metric_type": "timer", "operation": "llm_call", "model": MODELS[i % 3],
         "provider": "x", "response_time": 1.5, "prompt_tokens": 123_456, "completion_tokens": 654_321,
         "total_tokens": 777_777, "success": True, "module": "llm"} for i in range(9)])
    return folder


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """``run(*args, columns=100)``: the command in-process, from an empty working directory."""
    monkeypatch.chdir(tmp_path)

    def invoke(*args: str, columns: int = 100, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(main, list(args), env={"COLUMNS": str(columns), **(env or {})},
                                  catch_exceptions=False)

    return invoke


# --------------------------------------------------------------------------- the wrong place


READERS = [["report"], ["query"], ["status"], ["tail"], ["export", "--format", "json", "--output", "-"],
           ["dashboard", "--output", "d.html"], ["traces"], ["profiles"], ["alerts"]]


@pytest.mark.parametrize("command", READERS, ids=lambda c: c[0])
def test_a_folder_that_does_not_exist_is_an_error_saying_where_and_why(run: Any, tmp_path: Path,
                                                                      command: list[str]) -> None:
    """Every command that reads the logs exits 2 naming the folder, what chose it and how to change it."""
    given = run(*command, "--log-dir", "/does/not/exist")
    assert given.exit_code == 2
    assert "the log folder /does/not/exist does not exist (chosen by --log-dir)" in given.output
    assert "MONITORING_LOG_DIR" in given.output
    default = run(*command)
    assert default.exit_code == 2
    assert (f"the log folder {tmp_path}/logs does not exist (chosen by the default (logs), relative to the "
            f"working directory {tmp_path})") in default.output
    from_env = run(*command, env={"MONITORING_LOG_DIR": str(tmp_path / "elsewhere")})
    assert from_env.exit_code == 2
    assert "chosen by the environment variable MONITORING_LOG_DIR" in from_env.output


def test_a_folder_named_in_the_config_file_says_so(run: Any, tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("logging: {log_dir: gone}\n")
    done = run("report", "--config", "m.yaml")
    assert done.exit_code == 2
    assert f"the log folder {tmp_path}/gone does not exist (chosen by logging.log_dir in m.yaml" in done.output


def test_a_module_with_no_files_lists_the_modules_found(run: Any, history: Path) -> None:
    done = run("query", "--module", "nope", "--log-dir", str(history))
    assert done.exit_code == 2
    assert "no log files for module 'nope'" in done.output
    assert "llm" in done.output


# --------------------------------------------------------------------------- fields that occur nowhere


@pytest.mark.parametrize(("args", "field", "near"), [
    (["--where", "modle=gpt-4o"], "modle", "model"),
    (["--group-by", "modle"], "modle", "model"),
    (["--agg", "p95:respone_time"], "respone_time", "response_time"),
    (["--where", "sucess=false"], "sucess", "success"),
])
def test_a_field_that_occurs_nowhere_is_reported_on_stderr(run: Any, history: Path, args: list[str], field: str,
                                                          near: str) -> None:
    """A warning names the field and the nearest one that occurs; stdout stays valid JSON; exit 0."""
    done = CliRunner().invoke(main, ["query", "--module", "llm", "--log-dir", str(history), "--format", "json",
                                     *args], catch_exceptions=False)
    assert done.exit_code == 0
    json.loads(done.stdout)
    assert re.search(rf"warning: field '{field}' occurs in none of the [\d,]+ records scanned; "
                     rf"did you mean '{near}'\?", done.stderr), done.stderr


def test_double_equals_is_equality(run: Any, history: Path) -> None:
    """``success==false`` means what ``success=false`` means (it used to match nothing)."""
    def failures(where: str) -> int:
        done = run("query", "--module", "llm", "--operation", "llm_call", "--where", where, "--format", "json",
                   "--log-dir", str(history))
        assert done.exit_code == 0, done.output
        return int(json.loads(done.stdout)[0]["count"])

    assert failures("success==false") == failures("success=false") > 0


def test_the_python_api_reports_unknown_fields_too(history: Path, caplog: pytest.LogCaptureFixture) -> None:
    from infrastructure.monitoring.query import LogParser

    with caplog.at_level("WARNING"):
        result = LogParser(history).query("llm", group_by="modle")
    assert result.unknown_fields == {"modle": "model"}
    assert "field 'modle' occurs in none of the" in caplog.text


# --------------------------------------------------------------------------- exit codes


def test_exit_codes_mean_one_thing_each(run: Any, history: Path, tmp_path: Path) -> None:
    """0 success; 1 bad news (an alert firing, an objective breached); 2 the question could not be asked."""
    assert run("report", "--log-dir", str(history)).exit_code == 0
    assert run("query", "--no-such-flag").exit_code == 2
    assert run("query", "--log-dir", str(history), "--last", "1h", "--since", "5").exit_code == 2
    nothing = run("alerts", "--check", "--log-dir", str(history))
    assert nothing.exit_code == 2
    assert "no alert rules" in nothing.output
    (tmp_path / "bad.yaml").write_text("logging: {strict: maybe}\n")
    assert run("report", "--config", "bad.yaml", "--log-dir", str(history)).exit_code == 2
    (tmp_path / "rules.yaml").write_text(
        "alerts: {rules: [{name: calls, module: llm, expr: 'count > 1', window: 7h}]}\n"
        "slos: [{name: quick, module: llm, objective: latency, threshold: 0.01, target: 0.999, "
        "period: 7d}]\n")
    assert run("alerts", "--check", "--config", "rules.yaml", "--log-dir", str(history)).exit_code == 1
    slo = run("slo", "--check", "--config", "rules.yaml", "--log-dir", str(history))
    assert slo.exit_code == 1, slo.output
    assert "breached" in slo.output
    assert run("slo", "--config", "rules.yaml", "--log-dir", str(history)).exit_code == 0
    assert "Exit status: 0 success; 1 bad news" in run("--help").output


def test_messages_name_the_flags(run: Any, history: Path) -> None:
    both = run("query", "--log-dir", str(history), "--last", "1h", "--since", "5")
    assert "give either --last or --since, not both" in both.output
    when = run("query", "--log-dir", str(history), "--since", "yesterday")
    assert "--since: cannot read time 'yesterday'" in when.output
    order = run("query", "--log-dir", str(history), "--order-by", "nope")
    assert "--order-by 'nope' is neither a group-by field nor an aggregate" in order.output


# --------------------------------------------------------------------------- tables that fit


NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?%?")


@pytest.mark.parametrize("columns", [80, 100, 120])
@pytest.mark.parametrize("command", [
    ["report", "--hours", "7"],
    ["query", "--module", "llm", "--operation", "llm_call", "--group-by", "provider", "--group-by", "model",
     "--agg", "count", "--agg", "sum:total_tokens", "--agg", "sum:prompt_tokens", "--agg", "sum:completion_tokens",
     "--agg", "p95:response_time", "--agg", "error_rate", "--agg", "avg:time_to_first_token"],
    ["status"],
    ["traces", "--limit", "3"],
], ids=lambda c: c[0] if isinstance(c, list) else str(c))
def test_tables_fit_the_terminal_and_numbers_stay_whole(run: Any, history: Path, columns: int,
                                                       command: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """No line wider than the terminal, every token sum printed whole (``777,777``), no header broken
    inside a word, long model names whole or shortened with an ellipsis."""
    titles: list[str] = []  # every column header the tables were given, whole
    real_header = _display.header

    def spy(column: str) -> str:
        titles.append(real_header(column))
        return titles[-1]

    monkeypatch.setattr(_display, "header", spy)
    done = run(*command, "--log-dir", str(history), columns=columns)
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= columns
    if command[0] in ("report", "query"):
        assert "2,333,331" in done.stdout  # a seven-digit token sum (3 x 777,777), whole
        for name in MODELS:
            assert name in done.stdout or any(name.startswith(cell[:-1]) for line in lines
                                                 for cell in line.split() if cell.endswith("…"))
        assert not re.search(r"\d,\s*\n", done.stdout)  # no number broken at a line end
        assert not re.search(r"\b\d+\.0(?![\d%]| ?[KMG]iB| B\b)", done.stdout)  # integers print as integers
    header_words = {"latency", "tokens", "records", "count"}
    for line in lines:
        for word in line.split():
            assert not (len(word) > 2 and any(w.startswith(word) and w != word for w in header_words)
                        and line.strip() == word), line
    # The header lines of each table (above its ─ rule, below its capitalised title or a blank line)
    # hold only whole words of the column headers: a header wraps between words, never inside one.
    whole_words = {word for title in titles for word in title.split()}
    rules = [i for i, line in enumerate(lines) if line.startswith("─")]
    assert bool(rules) == (command[0] != "traces"), done.stdout
    for rule in rules:
        top = rule
        while top > 0 and lines[top - 1].strip() and not lines[top - 1][:1].isupper():
            top -= 1
            for word in lines[top].split():
                assert word in whole_words, f"header word {word!r} is not a whole header word: {lines[top]!r}"
        assert top < rule, f"no header above the rule: {lines[rule]!r}"


def test_demo_output_fits_and_ends_with_next_steps(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "infrastructure.monitoring", "demo", "--seconds", "0.5"],
                          capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
                          env={**os.environ, "COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    assert max(len(line) for line in done.stdout.splitlines()) <= 80
    assert done.stdout.rstrip().splitlines()[-4].startswith("  monitoring report")
    assert "monitoring serve" in done.stdout


def test_json_gives_integers_for_whole_sums(run: Any, history: Path) -> None:
    done = run("query", "--module", "llm", "--agg", "sum:total_tokens", "--agg", "max:prompt_tokens", "--format",
               "json", "--log-dir", str(history))
    row = json.loads(done.stdout)[0]
    assert isinstance(row["sum_total_tokens"], int)
    assert isinstance(row["max_prompt_tokens"], int)


def test_sparklines_beside_the_numbers_when_asked(run: Any, history: Path) -> None:
    piped = run("query", "--module", "tool", "--group-by", "tool_name", "--bucket", "30m", "--log-dir", str(history))
    assert not re.search("[▁▂▃▄▅▆▇█]", piped.stdout)  # piped: off unless asked
    shown = run("query", "--module", "tool", "--group-by", "tool_name", "--bucket", "30m", "--sparklines",
                "--log-dir", str(history))
    assert re.search("[▁▂▃▄▅▆▇█]{6,}", shown.stdout), shown.stdout
    report = run("report", "--hours", "7", "--sparklines", "--log-dir", str(history))
    assert re.search(r"gpt-4o\S*\s+[ ▁▂▃▄▅▆▇█]{10,}", report.stdout), report.stdout
    as_json = run("query", "--module", "tool", "--bucket", "30m", "--sparklines", "--format", "json",
                  "--log-dir", str(history))
    json.loads(as_json.stdout)


# --------------------------------------------------------------------------- small sharp edges


def test_export_to_standard_output(run: Any, history: Path, tmp_path: Path) -> None:
    done = run("export", "--format", "json", "--output", "-", "--hours", "7", "--log-dir", str(history))
    assert done.exit_code == 0
    assert "llm" in json.loads(done.stdout)["sections"]
    assert not (tmp_path / "-").exists()


def test_status_shows_sizes_and_skipped_lines_apart(run: Any, history: Path) -> None:
    with open(history / "tool_metrics.log", "ab") as handle:
        handle.write(b"not a record\n")
    done = run("status", "--log-dir", str(history), columns=120)
    assert done.exit_code == 0
    header = next(line for line in done.stdout.splitlines() if line.startswith("module"))
    tool = next(line for line in done.stdout.splitlines() if line.startswith("tool "))
    cells = dict(zip(re.split(r"\s{2,}", header.strip()), re.split(r"\s{2,}", tool.strip()), strict=True))
    assert re.fullmatch(r"[\d.]+ (KiB|MiB)", cells["size"])
    assert cells["skipped"] == "1"


def test_python_dash_m_offers_every_command() -> None:
    listed = subprocess.run([sys.executable, "-m", "infrastructure.monitoring", "--help"], capture_output=True,
                            text=True, timeout=60, check=False)
    assert listed.returncode == 0
    for command in main.commands:
        assert command in listed.stdout
    slo = subprocess.run([sys.executable, "-m", "infrastructure.monitoring.cli", "slo", "--help"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert slo.returncode == 0, slo.stderr


def test_the_demo_history_gives_every_view_something(run: Any, history: Path) -> None:
    """``demo --history`` leaves traces, a profile and a firing alert behind."""
    traces = run("traces", "--log-dir", str(history))
    assert "handle_request" in traces.stdout
    assert "no profiles" not in run("profiles", "--log-dir", str(history)).stdout
    alerts = run("alerts", "--log-dir", str(history), columns=120)
    assert "firing" in alerts.stdout
    assert "model_error_rate" in alerts.stdout
