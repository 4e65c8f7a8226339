"""Backups already read in full and found whole: later scans trust them.

Every line of a scan is checked (does it parse, does it carry a finite ``timestamp``?) so
that damaged lines are counted and reported instead of being miscounted. A rotated
backup never changes once it has settled, so once a full scan found all of its lines
whole, that answer holds for as long as the file is the same file: identified by
device, inode, size and modification time (nanoseconds). A later scan then reads it
like a plain table, without the checks — about 5 % fewer instructions for the part
of a scan it makes up (``bench/query_bench.py --instructions``) — and a file that changed in any way
no longer matches and is checked again.

The identities live in ``.query_verified.json`` beside the logs (hidden, so neither a
family nor cleaned), pruned to the files still there. Saving is best effort: a folder
the reader may not write to only means the checks are made every time.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

from .._statefile import load_state, save_state
from ..schema import QUERY_VERIFIED_FILE

__all__ = ["VerifiedFiles", "identity"]


def identity(st: os.stat_result) -> str:
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


class VerifiedFiles:
    """The identities of the backups in ``log_dir`` known to hold only whole records."""

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        self.folder = Path(log_dir)
        self.path = self.folder / QUERY_VERIFIED_FILE
        saved = load_state(self.path).get("clean")
        self._known: set[str] = {k for k in saved if isinstance(k, str)} if isinstance(saved, list) else set()

    def __contains__(self, key: object) -> bool:
        return key in self._known

    def add(self, keys: Iterable[str]) -> None:
        """Remember ``keys`` (and forget files no longer in the folder); never raises."""
        new = set(keys) - self._known
        if not new:
            return
        with contextlib.suppress(OSError, ValueError):
            present = set()
            for entry in os.scandir(self.folder):
                if not entry.name.startswith(".") and entry.is_file(follow_symlinks=False):
                    present.add(identity(entry.stat(follow_symlinks=False)))
            saved = load_state(self.path).get("clean")  # another process may have added some meanwhile
            others = {k for k in saved if isinstance(k, str)} if isinstance(saved, list) else set()
            self._known = (self._known | others | new) & present
            save_state(self.path, {"clean": sorted(self._known)})
