"""Read what was appended to a log family since last time, across rotations and restarts.

A position is kept per *file*, not per name: ``(device, inode)`` plus a fingerprint of
the file's first line, and the byte offset read up to. When ``llm_metrics.log`` is
renamed to ``.1`` its inode stays, so reading resumes in ``.1`` exactly where it
stopped and then starts the new live file from 0; a recycled inode is caught by the
fingerprint. Only complete lines are returned: a line still being written (or torn
by a killed writer) stays for the next poll.

Positions are plain JSON, so a caller can keep them in a state file and resume after
a restart. ``.gz`` files are read only on a family's very first poll: later, a
``.gz`` is a compressed copy of a file already read (the cleaner compresses files a
day old or more, long after they were read).
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ..query.files import FamilyFile, discover

__all__ = ["Chunk", "Tailer"]

_READ: Final = 1 << 20
_HEAD: Final = 256
_MAX_LINE: Final = 4 << 20


@dataclass(slots=True)
class Chunk:
    """Complete lines of one file; ``commit`` it once they are safely handled."""

    module: str
    key: str
    head: str
    lines: list[bytes]
    end: int
    """The offset just past the last line of this chunk."""


def _fingerprint(first: bytes) -> str:
    return hashlib.blake2b(first, digest_size=12).hexdigest()


class Tailer:
    """Yields new lines of some families (all when ``modules`` is empty).

        tailer = Tailer("logs", ["llm"], positions=saved)
        for chunk in tailer.chunks(max_lines=500):
            send(chunk.lines)
            tailer.commit(chunk)
        saved = tailer.positions
    """

    def __init__(self, log_dir: str | os.PathLike[str], modules: Sequence[str] = (), *,
                 positions: dict[str, Any] | None = None, start_at: str = "beginning") -> None:
        self.log_dir = Path(log_dir)
        self.modules = tuple(modules)
        self.positions: dict[str, dict[str, dict[str, Any]]] = {
            m: dict(files) for m, files in (positions or {}).items() if isinstance(files, dict)}
        self.start_at = start_at

    def _families(self) -> dict[str, list[FamilyFile]]:
        found = discover(self.log_dir)
        return {m: files for m, files in found.items() if not self.modules or m in self.modules}

    def chunks(self, max_lines: int = 1000) -> Iterator[Chunk]:
        """New complete lines, oldest file first, at most ``max_lines`` per chunk."""
        for module, files in self._families().items():
            known = self.positions.get(module)
            first_poll = known is None
            seen = self.positions.setdefault(module, {})
            present: set[str] = set()
            for f in files:
                if f.gz and not first_poll:
                    continue
                yield from self._file(module, f, seen, present, first_poll, max_lines)
            for key in list(seen):
                if key not in present:
                    del seen[key]  # the file is gone (deleted, or compressed into a new inode)

    def _file(self, module: str, f: FamilyFile, seen: dict[str, dict[str, Any]], present: set[str],
              first_poll: bool, max_lines: int) -> Iterator[Chunk]:
        try:
            handle = open(f.path, "rb")  # noqa: SIM115 - closed by the with below
        except FileNotFoundError:
            return
        with handle:
            st = os.fstat(handle.fileno())
            key = f"{st.st_dev}:{st.st_ino}"
            present.add(key)
            reader: Any = gzip.GzipFile(fileobj=handle) if f.gz else handle
            first = reader.readline(_MAX_LINE)
            if not first.endswith(b"\n"):
                return  # not even one complete line yet
            head = _fingerprint(first[:_HEAD])
            pos = seen.get(key)
            if pos is None or pos.get("head") != head:
                start = st.st_size if (first_poll and self.start_at == "end" and not f.gz) else 0
                pos = seen[key] = {"head": head, "offset": start}
            offset = int(pos["offset"])
            if not f.gz and offset >= st.st_size:
                return
            if f.gz:
                handle.seek(0)
                reader = gzip.GzipFile(fileobj=handle)
            reader.seek(offset)
            pending = b""
            lines: list[bytes] = []
            while block := reader.read(_READ):
                parts = (pending + block).split(b"\n")
                pending = parts.pop()
                for line in parts:
                    lines.append(line)
                    offset += len(line) + 1
                    if len(lines) >= max_lines:
                        yield Chunk(module, key, head, lines, offset)
                        lines = []
            if lines:
                yield Chunk(module, key, head, lines, offset)

    def commit(self, chunk: Chunk) -> None:
        pos = self.positions.setdefault(chunk.module, {}).get(chunk.key)
        if pos is None or pos.get("head") != chunk.head:
            self.positions[chunk.module][chunk.key] = {"head": chunk.head, "offset": chunk.end}
        else:
            pos["offset"] = max(int(pos["offset"]), chunk.end)
