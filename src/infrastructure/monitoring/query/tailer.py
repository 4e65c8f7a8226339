"""Follow log families: what was appended since last time, across rotations, compression and restarts.

This is the one follower of the package: ``monitoring tail -f``, the OTLP and ClickHouse
shippers and the live ``/metrics`` counters all read new lines through it.

A file is known by its *identity*: a fingerprint of its first line. Renaming
``llm_metrics.log`` to ``.1`` keeps it, and so does the cleaner gzipping ``.1`` into
``.1.gz`` (a new inode, the same first line): reading resumes where it stopped, in the
uncompressed stream of the ``.gz``. The device and inode seen last, the size and the
modification time are kept beside the offset, so a file that has not changed is skipped
without being opened, and a recycled inode is caught by the fingerprint. Only complete
lines are returned: a line still being written (or torn by a killed writer) stays for
the next poll.

Positions are plain JSON (``{module: {identity: {"offset": …, "dev": …, "ino": …}}}``),
so a caller can keep them in a state file and resume after a restart. A file that has
disappeared is remembered for ``forget_after`` seconds more: long enough to recognise it
if it was only being compressed while the folder was listed.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from .files import FamilyFile, discover, gzip_content_size, last_line_end

__all__ = ["Chunk", "Tailer", "file_identity", "fingerprint", "key_fingerprint"]

_READ: Final = 1 << 20
_HEAD: Final = 256
"""Bytes of the first line that make its fingerprint (the timestamp, pid and host are in them)."""
_MAX_LINE: Final = 4 << 20
_FORGET_AFTER: Final = 3600.0


@dataclass(slots=True)
class Chunk:
    """Complete lines of one file, from byte ``start`` to ``end`` of its (uncompressed) content.

    ``commit`` it once the lines are safely handled; line ``i`` starts at ``start`` plus the
    lengths (newline included) of the lines before it."""

    module: str
    key: str
    """The file's identity (the fingerprint of its first line)."""
    lines: list[bytes]
    start: int
    end: int
    """The offset just past the last line of this chunk."""
    path: Path
    gz: bool


def fingerprint(first_line: bytes) -> str:
    """The identity of a file whose first line is ``first_line`` (newline included or not)."""
    return hashlib.blake2b(first_line[:_HEAD], digest_size=12).hexdigest()


def key_fingerprint(key: str) -> str:
    """The first-line fingerprint of the file a position key names (the key itself, but for files whose
    first lines are equal: ``<fingerprint>~<device>:<inode>``)."""
    return key.split("~", 1)[0]


def file_identity(path: str | os.PathLike[str], *, gz: bool | None = None) -> str | None:
    """The fingerprint of a file's first complete line, or ``None`` when it has none (yet)."""
    target = Path(path)
    compressed = target.name.endswith(".gz") if gz is None else gz
    try:
        with open(target, "rb") as handle:
            reader: Any = gzip.GzipFile(fileobj=handle) if compressed else handle
            first = reader.readline(_MAX_LINE)
    except (OSError, EOFError, zlib.error):
        return None
    return fingerprint(first) if first.endswith(b"\n") else None


class Tailer:
    """Yields new lines of some families (all when ``modules`` is empty), oldest file first.

        tailer = Tailer("logs", ["llm"], positions=saved)
        for chunk in tailer.chunks(max_lines=500):
            send(chunk.lines)
            tailer.commit(chunk)
        saved = tailer.positions

    ``start_at="end"`` skips what the files hold at the first poll (a family that appears
    later is read from its beginning). Positions saved by an older version (keyed by
    ``device:inode``) are read and converted.
    """

    def __init__(self, log_dir: str | os.PathLike[str], modules: Sequence[str] = (), *,
                 positions: dict[str, Any] | None = None, start_at: str = "beginning",
                 forget_after: float = _FORGET_AFTER, clock: Callable[[], float] = time.time) -> None:
        self.log_dir = Path(log_dir)
        self.modules = tuple(modules)
        self.positions: dict[str, dict[str, dict[str, Any]]] = {
            m: _convert(files) for m, files in (positions or {}).items() if isinstance(files, dict)}
        self.start_at = start_at
        self.forget_after = forget_after
        self._clock = clock
        self._started = bool(self.positions)

    # ------------------------------------------------------------------ reading

    def chunks(self, max_lines: int = 1000) -> Iterator[Chunk]:
        """New complete lines, oldest file first, at most ``max_lines`` per chunk."""
        found = discover(self.log_dir)
        wanted = self.modules or tuple(found)
        started, self._started = self._started, True
        for module in wanted:
            first_poll = not started and module not in self.positions
            seen = self.positions.setdefault(module, {})
            by_inode = {(e.get("dev"), e.get("ino")): key for key, e in seen.items()}
            present: set[str] = set()
            for f in found.get(module, []):
                yield from self._file(module, f, seen, by_inode, present, first_poll, max_lines)
            self._forget(seen, present)

    def _forget(self, seen: dict[str, dict[str, Any]], present: set[str]) -> None:
        now = self._clock()
        for key in list(seen):
            entry = seen[key]
            if key in present:
                entry.pop("gone", None)
            elif now - entry.setdefault("gone", now) > self.forget_after:
                del seen[key]

    def _file(self, module: str, f: FamilyFile, seen: dict[str, dict[str, Any]],
              by_inode: dict[tuple[Any, Any], str], present: set[str], first_poll: bool,
              max_lines: int) -> Iterator[Chunk]:
        try:
            st = os.stat(f.path)
        except FileNotFoundError:
            return
        known = by_inode.get((st.st_dev, st.st_ino))
        if known is not None and known not in present and _unchanged(seen[known], st, f.gz):
            present.add(known)
            return  # read to its end already and not modified since: not even opened
        try:
            handle = open(f.path, "rb")  # noqa: SIM115 - closed by the with below
        except FileNotFoundError:
            return
        with handle:
            st = os.fstat(handle.fileno())
            reader: Any = gzip.GzipFile(fileobj=handle) if f.gz else handle
            try:
                first = reader.readline(_MAX_LINE)
            except (OSError, EOFError, zlib.error):
                return
            if not first.endswith(b"\n"):
                return  # not even one complete line yet
            key = fingerprint(first)
            if known is not None and key_fingerprint(known) == key and known not in present:
                key = known  # the very file read before (same inode, same first line): its position
            elif key in present:  # two files open with the same line: tell them apart by inode
                key = f"{key}~{st.st_dev}:{st.st_ino}"
            present.add(key)
            entry = seen.get(key)
            if entry is None:
                start = 0
                if first_poll and self.start_at == "end":
                    fd = handle.fileno()
                    start = (gzip_content_size(fd) or 0) if f.gz else last_line_end(fd, st.st_size)
                entry = seen[key] = {"offset": start}
            entry.update(dev=st.st_dev, ino=st.st_ino, size=st.st_size, mtime_ns=st.st_mtime_ns, gz=f.gz)
            offset = int(entry["offset"])
            if offset >= (entry.get("total", math.inf) if f.gz else st.st_size):
                return  # read to its end already
            if f.gz:
                handle.seek(0)
                reader = gzip.GzipFile(fileobj=handle)
            try:
                reader.seek(offset)
                yield from self._lines(module, key, f, entry, reader, offset, max_lines)
            except (OSError, EOFError, zlib.error):
                return  # a damaged archive: what could be read was returned

    @staticmethod
    def _lines(module: str, key: str, f: FamilyFile, entry: dict[str, Any], reader: Any, offset: int,
               max_lines: int) -> Iterator[Chunk]:
        pending = b""
        lines: list[bytes] = []
        start = offset
        while block := reader.read(_READ):
            parts = (pending + block).split(b"\n")
            pending = parts.pop()
            for line in parts:
                lines.append(line)
                offset += len(line) + 1
                if len(lines) >= max_lines:
                    yield Chunk(module, key, lines, start, offset, f.path, f.gz)
                    lines, start = [], offset
        if f.gz:
            entry["total"] = offset  # a compressed file is complete: a torn last line stays unread
        if lines:
            yield Chunk(module, key, lines, start, offset, f.path, f.gz)

    # ------------------------------------------------------------------ positions

    def commit(self, chunk: Chunk) -> None:
        """Record that ``chunk`` is handled: the next poll starts after it."""
        self.advance(chunk.module, chunk.key, chunk.end)

    def advance(self, module: str, key: str, offset: int) -> None:
        """Record that the file ``key`` is handled up to ``offset`` (never moves back)."""
        entry = self.positions.setdefault(module, {}).setdefault(key, {"offset": 0})
        entry["offset"] = max(int(entry.get("offset", 0)), offset)

    def seek(self, module: str, key: str, offset: int) -> None:
        """Read the file ``key`` again from ``offset`` at the next poll (backwards too)."""
        self.positions.setdefault(module, {}).setdefault(key, {})["offset"] = offset

    def locate(self, path: str | os.PathLike[str]) -> tuple[str, str] | None:
        """``(module, key)`` of the file at ``path`` as of the last poll, if it was seen."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        for module, files in self.positions.items():
            for key, entry in files.items():
                if (entry.get("dev"), entry.get("ino")) == (st.st_dev, st.st_ino):
                    return module, key
        return None


def _unchanged(entry: dict[str, Any], st: os.stat_result, gz: bool) -> bool:
    """Has this file been read to its end, and is it the same file, unmodified, as then?"""
    if entry.get("size") != st.st_size or entry.get("mtime_ns") != st.st_mtime_ns or bool(entry.get("gz")) != gz:
        return False
    offset = int(entry.get("offset", 0))
    return offset >= int(entry.get("total", offset + 1)) if gz else offset >= st.st_size


def _convert(files: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Positions as saved: this version's (by identity) or the older one's (``dev:ino`` -> head)."""
    out: dict[str, dict[str, Any]] = {}
    for key, entry in files.items():
        if not isinstance(entry, dict):
            continue
        if "head" in entry and ":" in key and "~" not in key:
            dev, _, ino = key.partition(":")
            new = {"offset": int(entry.get("offset", 0))}
            if dev.isdigit() and ino.isdigit():
                new.update(dev=int(dev), ino=int(ino))
            out[str(entry["head"])] = new
        else:
            out[key] = dict(entry)
    return out
