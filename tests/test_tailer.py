"""The package's one follower (``query/tailer.py``): a file is known by its first line, whatever its name,
inode or compression, so reading resumes exactly where it stopped."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from infrastructure.monitoring import FileSink, MetricsLogger
from infrastructure.monitoring.query.storage import follow
from infrastructure.monitoring.query.tailer import Tailer, file_identity


def lines_of(tailer: Tailer) -> list[bytes]:
    out = []
    for chunk in tailer.chunks(max_lines=7):
        out.extend(chunk.lines)
        tailer.commit(chunk)
    return out


def write(path: Path, *lines: str) -> None:
    with path.open("ab") as handle:
        for line in lines:
            handle.write(line.encode() + b"\n")


def test_rename_and_compression_keep_the_position(tmp_path: Path) -> None:
    """A live file renamed to ``.1`` and then gzipped into ``.1.gz`` (a new inode) continues mid-stream."""
    live = tmp_path / "llm_metrics.log"
    write(live, *[f'{{"timestamp": {i}, "n": {i}}}' for i in range(10)])
    tailer = Tailer(tmp_path)
    assert len(lines_of(tailer)) == 10
    write(live, *[f'{{"timestamp": {i}, "n": {i}}}' for i in range(10, 15)])
    live.rename(tmp_path / "llm_metrics.log.1")
    data = (tmp_path / "llm_metrics.log.1").read_bytes()
    (tmp_path / "llm_metrics.log.1.gz").write_bytes(gzip.compress(data))
    (tmp_path / "llm_metrics.log.1").unlink()
    write(live, '{"timestamp": 99, "n": 99}')
    assert lines_of(tailer) == [f'{{"timestamp": {i}, "n": {i}}}'.encode() for i in (10, 11, 12, 13, 14, 99)]
    assert lines_of(tailer) == []


def test_a_recycled_inode_with_another_first_line_is_read_from_the_start(tmp_path: Path) -> None:
    """A position whose file was replaced (same inode, same size, another first line) does not skip it."""
    live = tmp_path / "app_metrics.log"
    write(live, '{"timestamp": 1, "v": "old"}')
    tailer = Tailer(tmp_path)
    assert len(lines_of(tailer)) == 1
    live.write_bytes(b'{"timestamp": 2, "v": "new"}\n')  # same inode, rewritten in place
    os.utime(live, ns=(0, 1))  # and a modification time that differs from the one remembered
    assert lines_of(tailer) == [b'{"timestamp": 2, "v": "new"}']


def test_start_at_end_skips_what_exists_but_not_families_born_later(tmp_path: Path) -> None:
    """``start_at="end"`` ignores the content present at the first poll; a family that appears afterwards
    is read from its first line, and a line being written is never cut."""
    write(tmp_path / "llm_metrics.log", '{"timestamp": 1}', '{"timestamp": 2}')
    with (tmp_path / "llm_metrics.log").open("ab") as handle:
        handle.write(b'{"timestamp": 3')  # a line still being written
    tailer = Tailer(tmp_path, start_at="end")
    assert lines_of(tailer) == []
    with (tmp_path / "llm_metrics.log").open("ab") as handle:
        handle.write(b"}\n")
    write(tmp_path / "tool_metrics.log", '{"timestamp": 4}')
    assert lines_of(tailer) == [b'{"timestamp": 3}', b'{"timestamp": 4}']


def test_positions_of_the_older_format_are_converted(tmp_path: Path) -> None:
    """Positions saved as ``device:inode`` -> head by an earlier version resume where they were."""
    live = tmp_path / "llm_metrics.log"
    write(live, '{"timestamp": 1}', '{"timestamp": 2}')
    st = live.stat()
    head = file_identity(live)
    old = {"llm": {f"{st.st_dev}:{st.st_ino}": {"head": head, "offset": len(b'{"timestamp": 1}\n')}}}
    assert lines_of(Tailer(tmp_path, positions=old)) == [b'{"timestamp": 2}']


def test_a_file_gone_for_long_is_forgotten(tmp_path: Path) -> None:
    """Positions of deleted files are kept for ``forget_after`` seconds, then dropped."""
    now = [1000.0]
    write(tmp_path / "llm_metrics.log.1", '{"timestamp": 1}')
    write(tmp_path / "llm_metrics.log", '{"timestamp": 2}')
    tailer = Tailer(tmp_path, forget_after=60, clock=lambda: now[0])
    lines_of(tailer)
    (tmp_path / "llm_metrics.log.1").unlink()
    lines_of(tailer)
    assert len(tailer.positions["llm"]) == 2
    now[0] += 61
    lines_of(tailer)
    assert len(tailer.positions["llm"]) == 1


def test_two_files_with_the_same_first_line_are_both_read(tmp_path: Path) -> None:
    """Identical first lines (a tool that writes a fixed header) do not make two files one."""
    write(tmp_path / "llm_metrics.log.1", '{"timestamp": 0}', '{"timestamp": 1}')
    write(tmp_path / "llm_metrics.log", '{"timestamp": 0}', '{"timestamp": 2}')
    tailer = Tailer(tmp_path)
    assert sorted(lines_of(tailer)) == sorted([b'{"timestamp": 0}', b'{"timestamp": 1}', b'{"timestamp": 0}',
                                               b'{"timestamp": 2}'])
    assert lines_of(tailer) == []


@pytest.mark.parametrize("last", [0, 3, 50])
def test_follow_shows_the_last_lines_then_stops_without_keep_going(tmp_path: Path, last: int) -> None:
    """``monitoring tail`` without ``-f``: the last N complete lines of the live file, nothing else."""
    writer = MetricsLogger("llm", FileSink(tmp_path / "llm_metrics.log", max_bytes=600, backup_count=20))
    for i in range(20):
        writer.log_event("e", seq=i)
    writer.close()
    shown = list(follow(tmp_path, "llm", lines=last, keep_going=lambda: False))
    live_lines = (tmp_path / "llm_metrics.log").read_bytes().splitlines()
    assert shown == live_lines[-last:] if last else shown == []
