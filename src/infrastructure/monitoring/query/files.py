"""Which files hold a family, in what time order, and where a time window starts in them.

A family is ``<name>.log`` (the live file) plus ``.1`` (newest backup) … ``.N`` and their
``.gz`` forms. Records are appended in time order, so file ``.k`` holds records older
than those of ``.k-1``: the first record of each file bounds the last record of the next
older one. That is all the reader needs to skip whole files outside a window, and,
inside a plain file, to find the window's first line by bisection instead of reading.

Writers in several processes stamp a record just before writing it, so neighbouring
lines may be out of order by a little: every time bound is widened by ``DISORDER``
seconds when choosing files and offsets, and records are then filtered exactly.

A query works on a *snapshot*: each chosen file is opened (a descriptor keeps its
contents reachable through later renames and deletions) and its size noted, and only
the bytes up to the last newline before that size are read. A rotation or a cleanup
during the query can therefore neither hide a record nor show it twice.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from .._family import family_files, family_name, shared_lock

__all__ = [
    "DISORDER", "FamilyFile", "Segment", "Snapshot", "discover", "family_name", "gzip_content_size", "last_line_end",
]

DISORDER: Final = 60.0
"""Seconds by which records of one family may be out of order on disk."""
_PEEK: Final = 64 * 1024
_IN_FLIGHT_SECONDS: Final = 5.0
_TS_RE: Final = re.compile(rb'"timestamp"\s*:\s*(-?[0-9][0-9.eE+-]*)')


@dataclass(slots=True)
class FamilyFile:
    path: Path
    base: str
    index: int
    """0 for the live file, k for ``.k`` / ``.k.gz``."""
    gz: bool
    size: int
    mtime: float

    @property
    def name(self) -> str:
        return self.path.name


def discover(log_dir: str | os.PathLike[str], module: str | None = None) -> dict[str, list[FamilyFile]]:
    """Every family in ``log_dir`` (hidden files aside), oldest file first, by module.

    A ``.N`` beside a ``.N.gz`` (a compression interrupted half way) is read once: the
    plain file wins, as in the cleaner. A file renamed in the configuration counts as its
    module's (``_family.read_aliases``); should a module have files under two names (it was
    renamed), they are read oldest first by modification time.
    """
    try:
        members = family_files(log_dir, module)
    except FileNotFoundError:
        return {}
    found: dict[str, list[FamilyFile]] = {}
    for m in members:
        found.setdefault(m.module, []).append(FamilyFile(m.path, m.base, m.index, m.gz, m.stat.st_size,
                                                         m.stat.st_mtime))
    return {fam: _oldest_first(files) for fam, files in sorted(found.items())}


def _oldest_first(files: list[FamilyFile]) -> list[FamilyFile]:
    if len({f.base for f in files}) == 1:
        return sorted(files, key=lambda f: -f.index)
    return sorted(files, key=lambda f: (f.mtime, -f.index))


@dataclass(slots=True)
class Segment:
    """Bytes ``[start, end)`` of one opened file (``end`` on a line boundary), to be read."""

    file: FamilyFile
    handle: IO[bytes]
    start: int
    end: int
    first_line: int | None
    """Line number of ``start`` (1-based) when known; ``None`` after a seek."""
    torn: int = 0
    """Bytes after ``end`` that a dead writer left without a newline (reported, never parsed)."""
    size: int = 0
    """The file's size when the query opened it."""
    damaged: bool = False
    """Set while reading when a compressed file turns out truncated or corrupt."""

    @property
    def whole(self) -> bool:
        """Is this all of a file that can no longer change? (A backup rotated a moment ago may
        still receive a line from a writer that has not noticed the rotation yet.)"""
        if self.start or self.torn:
            return False
        if self.file.gz:
            return True
        settled = time.time() - self.file.mtime > _IN_FLIGHT_SECONDS
        return self.file.index > 0 and self.end == self.size and settled


@dataclass
class Snapshot:
    """The files of one query, opened once; close it (or use ``with``) when done."""

    segments: list[Segment] = field(default_factory=list)
    _handles: list[IO[bytes]] = field(default_factory=list)

    def close(self) -> None:
        for handle in self._handles:
            with contextlib.suppress(OSError):
                handle.close()
        self._handles.clear()

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def bytes(self) -> int:
        return sum(s.end - s.start for s in self.segments)

    @classmethod
    def open(cls, log_dir: str | os.PathLike[str], modules: list[str], since: float | None = None,
             until: float | None = None) -> Snapshot:
        """Open the files of ``modules`` that may hold records in ``[since, until)``."""
        snap = cls()
        try:
            for module in modules:
                snap._add_family(Path(log_dir), module, since, until)
        except BaseException:
            snap.close()
            raise
        return snap

    def _add_family(self, log_dir: Path, module: str, since: float | None, until: float | None) -> None:
        """List and open one family while holding its rotation lock shared: no writer can shift
        ``.1`` to ``.2`` between the listing and the opening (which would hide a file)."""
        files = discover(log_dir, module).get(module, [])
        if not files:
            return
        with shared_lock(log_dir, files[-1].base):
            files = discover(log_dir, module).get(module, [])
            firsts: list[float | None] = []
            opened: list[tuple[FamilyFile, IO[bytes], int]] = []
            for f in files:
                try:
                    handle: IO[bytes] = open(f.path, "rb")  # noqa: SIM115 - closed by Snapshot.close
                except FileNotFoundError:
                    continue  # removed by a cleaner between listing and opening
                self._handles.append(handle)
                opened.append((f, handle, os.fstat(handle.fileno()).st_size))
        for f, handle, _ in opened:
            firsts.append(_first_timestamp(handle, f.gz))
        for i, (f, handle, size) in enumerate(opened):
            newer_first = next((t for t in firsts[i + 1:] if t is not None), None)
            first = firsts[i]
            if until is not None and first is not None and first >= until + DISORDER:
                continue  # starts after the window
            if since is not None and newer_first is not None and newer_first < since - DISORDER:
                continue  # everything here predates a newer file that predates the window
            segment = _bounded(f, handle, size, since, until)
            if segment is not None:
                self.segments.append(segment)


def _first_timestamp(handle: IO[bytes], gz: bool) -> float | None:
    try:
        if gz:
            handle.seek(0)
            with gzip.GzipFile(fileobj=handle) as unpacked:
                head = unpacked.read(_PEEK)
        else:
            head = os.pread(handle.fileno(), _PEEK, 0)
    except (OSError, EOFError, zlib.error):
        return None
    return _scan_timestamp(head)


def _scan_timestamp(data: bytes) -> float | None:
    """The timestamp of the first complete line of ``data`` that has one."""
    for line in data.split(b"\n")[:-1]:
        ts = line_timestamp(line)
        if ts is not None:
            return ts
    return None


def line_timestamp(line: bytes) -> float | None:
    match = _TS_RE.search(line, 0, 200)
    if match is None:
        return None
    try:
        return float(match.group(1))
    except ValueError:
        return None


def _bounded(f: FamilyFile, handle: IO[bytes], size: int, since: float | None,
             until: float | None) -> Segment | None:
    """The part of one file to read: all of a ``.gz``; for a plain file, from the line where
    ``since`` starts to the line where ``until`` ends (each found by bisection), cut at the
    last newline present when the query started."""
    if f.gz:
        return Segment(f, handle, 0, size, 1, 0, size)
    fd = handle.fileno()
    end = last_line_end(fd, size)
    # A partial last line in a file that changed a moment ago may still be being written: a
    # line that spans two pages becomes visible page by page, in the live file and in a backup
    # a writer has not yet noticed was rotated. Only an older one was left by a dead writer.
    changed = os.fstat(fd).st_mtime
    torn = size - end if time.time() - changed > _IN_FLIGHT_SECONDS else 0
    if end <= 0 and not torn:
        return None
    start, first_line = 0, 1
    first_line_known: int | None = first_line
    if since is not None:
        start = _bisect(fd, end, since - DISORDER)
        if start > 0:
            first_line_known = None
    if until is not None:
        cut = _bisect(fd, end, until + DISORDER)
        if cut < end:
            end, torn = cut, 0
    if start >= end and not torn:
        return None
    return Segment(f, handle, start, end, first_line_known, torn, size)


def last_line_end(fd: int, size: int) -> int:
    """Offset just past the last ``\\n`` before ``size`` (a line still being written is not read)."""
    pos = size
    while pos > 0:
        step = min(_PEEK, pos)
        chunk = os.pread(fd, step, pos - step)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            return pos - step + cut + 1
        pos -= step
    return 0


def gzip_content_size(fd: int) -> int | None:
    """The uncompressed size a ``.gz`` declares in its trailer (modulo 4 GiB), without reading it;
    ``None`` when the file is too short to have one or cannot be read."""
    try:
        size = os.fstat(fd).st_size
        if size < 18:
            return None
        trailer = os.pread(fd, 4, size - 4)
    except OSError:
        return None
    return int.from_bytes(trailer, "little") if len(trailer) == 4 else None


def _bisect(fd: int, end: int, target: float) -> int:
    """The start of the first line whose timestamp is >= ``target`` (approximately: lines
    without a timestamp are stepped over), within ``[0, end)``."""
    lo, hi = 0, end
    while hi - lo > _PEEK:
        mid = (lo + hi) // 2
        chunk = os.pread(fd, 4096, mid)
        nl = chunk.find(b"\n")
        if nl < 0 or mid + nl + 1 >= end:
            hi = mid
            continue
        line_start = mid + nl + 1
        ts = _scan_timestamp(os.pread(fd, 4096, line_start))
        if ts is None or ts >= target:
            hi = mid
        else:
            lo = line_start
    # finish linearly inside the last window
    chunk = os.pread(fd, hi - lo + 4096, lo)
    pos = 0
    if lo > 0:
        nl = chunk.find(b"\n")
        if nl < 0:
            return end
        pos = nl + 1
    while lo + pos < end:
        nl = chunk.find(b"\n", pos)
        if nl < 0:
            return min(lo + pos, end)
        ts = line_timestamp(chunk[pos:nl])
        if ts is not None and ts >= target:
            return lo + pos
        pos = nl + 1
    return end


def read_segment(segment: Segment, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """The segment's bytes in chunks that end on a line boundary. In a compressed file that ends
    early, the line the damage cut in two is left out: it is part of the damage, reported once."""
    handle = segment.handle
    if segment.file.gz:
        handle.seek(0)
        with gzip.GzipFile(fileobj=handle) as unpacked:
            for chunk in _aligned(_gz_blocks(unpacked, chunk_size, segment)):
                if not (segment.damaged and not chunk.endswith(b"\n")):
                    yield chunk
        return
    yield from _aligned(_pread_blocks(handle.fileno(), segment.start, segment.end, chunk_size))


def _aligned(blocks: Iterator[bytes]) -> Iterator[bytes]:
    """The blocks' bytes again, cut at line ends (a last partial line comes out on its own)."""
    carry = b""
    for block in blocks:
        data = carry + block
        cut = data.rfind(b"\n") + 1
        if cut:
            yield data[:cut]
        carry = data[cut:]
    if carry:
        yield carry


def _pread_blocks(fd: int, start: int, end: int, size: int) -> Iterator[bytes]:
    pos = start
    while pos < end:
        data = os.pread(fd, min(size, end - pos), pos)
        if not data:
            return
        pos += len(data)
        yield data


def _gz_blocks(stream: Any, size: int, segment: Segment) -> Iterator[bytes]:
    """Decompressed blocks, gathered with ``read1``: a plain ``read`` of a truncated archive raises
    without handing over what it did decompress, so the lines before the damage would be lost."""
    while True:
        parts: list[bytes] = []
        got = 0
        try:
            while got < size:
                part = stream.read1(size - got)
                if not part:
                    break
                parts.append(part)
                got += len(part)
        except (EOFError, zlib.error, OSError):
            segment.damaged = True  # what was readable is kept, and the damage is reported
            if parts:
                yield b"".join(parts)
            return
        if not parts:
            return
        yield b"".join(parts)
