"""Chaos with exact accounting: load, kills, disk and folder faults (see tests/chaos.py).

Default sizes run in CI in well under a minute; ``--reliability-scale N`` multiplies
them (events, kill rounds) for long runs. Each scenario's figures go into the table
printed at the end of the test session, and ``bench/reliability.py`` prints the same
table on its own.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from . import chaos


@pytest.fixture
def scale(request: pytest.FixtureRequest) -> int:
    return int(request.config.getoption("--reliability-scale"))


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Any:
    tallies = request.config.stash.setdefault(chaos.TALLIES, [])  # type: ignore[arg-type]
    return tallies.append


def test_load_many_processes_threads_rotation_cleaner_and_queries(log_dir: Path, scale: int, record: Any) -> None:
    tally = chaos.load(log_dir, processes=8, threads=4, events=100_000 * scale, rotate_bytes=256 * 1024)
    record(tally)
    assert tally.written == 100_000 * scale
    assert (tally.found, tally.lost, tally.duplicated) == (tally.written, 0, 0)
    assert tally.corrupt_lines == 0
    assert tally.app_exceptions == 0
    assert tally.notes["side_errors"] == []
    assert tally.notes["monotonic"], tally.notes  # a query never saw a record vanish or count twice
    assert tally.notes["max_query_count"] <= tally.written  # never a record counted twice mid-run
    assert tally.notes["gz_files"] > 0  # the cleaner compressed rotated files, and they were read back


def test_writers_killed_at_random_moments_lose_nothing_acknowledged(log_dir: Path, scale: int, record: Any) -> None:
    rounds = 200 * scale
    tally = chaos.writer_kills(log_dir, rounds=rounds)
    record(tally)
    assert tally.faults_injected == rounds
    assert (tally.lost, tally.duplicated) == (0, 0)
    assert tally.corrupt_lines <= rounds  # at most the line being written when each kill landed
    assert tally.found == tally.written
    files = list(log_dir.glob("tool_metrics.log*"))
    assert len(files) > 20  # the kills landed among many rotations


def test_cleaner_killed_mid_run_loses_and_leaves_nothing(log_dir: Path, scale: int, record: Any) -> None:
    tally = chaos.cleaner_kills(log_dir, rounds=50 * scale)
    record(tally)
    assert (tally.found, tally.lost, tally.duplicated, tally.corrupt_lines) == (tally.written, 0, 0, 0)
    assert tally.notes["final_errors"] == 0
    assert tally.notes["leftovers"] == []
    assert tally.notes["gz_files"] > 0


def test_state_files_survive_kills(tmp_path: Path, scale: int, record: Any) -> None:
    tally = chaos.state_kills(tmp_path, rounds=200 * scale)
    record(tally)
    assert tally.corrupt_lines == 0  # always whole JSON, never older than what was read before
    assert tally.found == tally.written
    assert not tally.notes["corrupt_kept"]
    assert len(tally.notes["temporaries"]) <= 1  # only the last killed save's, removed by the next save


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small filesystem needs root")
def test_disk_full_then_space_back(tmp_path: Path, record: Any) -> None:
    with chaos.small_filesystem(tmp_path / "fs") as fs:
        if fs is None:
            pytest.skip("mounting a tmpfs is refused here")
        tally, run = chaos.disk_full(fs)
    record(tally)
    assert tally.app_exceptions == 0
    assert tally.lost > 0  # the disk really was full
    assert tally.notes["lost_equals_reported"]  # every record that missed the disk was counted and reported
    assert tally.notes["resumed"]
    assert tally.corrupt_lines <= 1  # at most the one line cut by the full disk, ended so it spoils no other
    assert tally.duplicated == 0
    assert run.reports == 1  # once, not per record
    assert run.median_us < 100  # fast: no retry storm
    assert run.memory_growth < 64 * 1024  # flat: nothing kept per dropped record


def test_log_folder_deleted_under_the_writer(log_dir: Path, record: Any) -> None:
    tally, run = chaos.folder_deleted(log_dir)
    record(tally)
    assert tally.app_exceptions == 0
    assert (tally.found, tally.lost, tally.duplicated) == (tally.written, 0, 0)
    assert run.median_us < 100
    assert run.memory_growth < 64 * 1024


def test_file_descriptors_exhausted(log_dir: Path, record: Any) -> None:
    tally = chaos.fd_exhaustion(log_dir)
    record(tally)
    assert tally.app_exceptions == 0
    assert (tally.found, tally.lost) == (tally.written, 0)  # the writer with an open file kept writing
    assert tally.notes["llm_resumed"]
    assert tally.notes["llm_reported_dropped"] == 2000  # the other counted every record it could not write


def test_a_new_writer_ends_the_fragment_a_killed_writer_left(log_dir: Path) -> None:
    """SIGKILL can cut a write short; the next writer must not glue its first line to the fragment."""
    from infrastructure.monitoring.query import LogParser, SkipReport

    log_dir.mkdir(parents=True)
    (log_dir / "tool_metrics.log").write_bytes(b'{"timestamp": 1, "operation": "tool_call", "seq": 0}\n'
                                               b'{"timestamp": 2, "operation": "tool_ca')
    factory = chaos.make_factory(log_dir)
    factory.create_monitor("tool").record_tool_call("t", 0.1, True, seq=1)
    factory.shutdown()
    skipped = SkipReport()
    seqs = [r.get("seq") for r in LogParser(log_dir).records("tool", skipped=skipped)]
    assert seqs == [0, 1]
    assert skipped.count == 1  # the dead line, alone


@pytest.mark.skipif(os.geteuid() != 0, reason="chattr +i needs root")
def test_log_folder_made_read_only_mid_run(log_dir: Path, record: Any) -> None:
    """Rotation becomes impossible: the writer keeps appending to the current file, loses
    nothing, reports the fault once, and rotates again once the folder is writable."""
    try:
        tally, run = chaos.read_only_mid_run(log_dir)
    except RuntimeError as exc:
        pytest.skip(str(exc))
    record(tally)
    assert tally.app_exceptions == 0
    assert (tally.found, tally.lost, tally.reported, tally.duplicated) == (tally.written, 0, 0, 0)
    assert run.reports == 1
    assert run.p99_us < 1000  # no storm of failing renames: one attempt a second
    assert run.memory_growth < 64 * 1024
    assert tally.notes["resumed"]
