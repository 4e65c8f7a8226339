"""The file-family protocol: what writers, the cleaner, readers and shippers agree on.

A family is one module's files: the live file (``llm_metrics.log``), its numbered backups
(``.1`` newest … ``.N`` oldest, any of them possibly gzipped: ``.3.gz``) and a hidden
control file (``.llm_metrics.log.lock``). The control file is 64 bytes every writer
``mmap``-s: a magic number, the rotation *generation* (bumped by whoever renames the live
file, so writers reopen before their next line), the next time-based rollover and the
time of the last rotation. Its ``flock`` is the family lock: held exclusively by a
rotation or by the cleaner while they rename or delete, shared by a reader while it lists
and opens the files (so no ``.1`` can become ``.2`` between the two).

A family's module is its file's name (``llm_metrics.log`` and ``llm.log`` are ``llm``'s),
unless the writer was told another name (``modules.llm.file: models.log``): it then leaves
the module's name in a hidden ``.models.log.module`` beside the file, so a reader started
without that configuration still finds ``llm`` there.

Every side imports these names from here and nowhere else, so they cannot disagree.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "ALIAS_SUFFIX", "CTL_MAGIC", "CTL_SIZE", "LOCK_SUFFIX", "OFF_GEN", "OFF_MAGIC", "OFF_ROLL", "OFF_ROTATED",
    "Member", "bump_generation", "family_files", "family_lock", "family_member", "family_name", "last_rotation",
    "lock_path_for", "parse_backup_name", "read_aliases", "rotated_name", "shared_lock", "shift_backups", "write_alias",
]

LOCK_SUFFIX: Final = ".lock"
ALIAS_SUFFIX: Final = ".module"
CTL_SIZE: Final = 64
CTL_MAGIC: Final = 0x4D4F4E4C4F473031  # "MONLOG01"
OFF_MAGIC, OFF_GEN, OFF_ROLL, OFF_ROTATED = 0, 8, 24, 32
"""Byte offsets in the control file: magic (u64), generation (u64), next rollover (f64), last rotation (f64)."""


def rotated_name(base: str, index: int) -> str:
    """``llm_metrics.log``, 3 -> ``llm_metrics.log.3`` (1 is the newest backup)."""
    return f"{base}.{index}"


def lock_path_for(log_path: str) -> str:
    """The family's lock and control file, hidden so ``logs/*.log.*`` never matches it.

    Every process writing the family maps this file: it carries the rotation
    generation, the approximate size of the live file and the next time-based
    rollover, and its ``flock`` serialises rotations across processes.
    """
    head, _, tail = log_path.rpartition("/")
    return f"{head}/.{tail}{LOCK_SUFFIX}" if head else f".{tail}{LOCK_SUFFIX}"


def parse_backup_name(name: str) -> tuple[str, int, bool] | None:
    """``llm_metrics.log.3.gz`` -> ``("llm_metrics.log", 3, True)``; ``None`` if not a backup name."""
    stem, dot, last = name.rpartition(".")
    gz = False
    if dot and last == "gz":
        gz = True
        stem, dot, last = stem.rpartition(".")
    if dot and stem and last.isdigit() and last[0] != "0":
        return stem, int(last), gz
    return None


def family_name(base: str) -> str:
    """``llm_metrics.log`` -> ``llm``; any other ``x.log`` -> ``x`` (the name alone: see ``read_aliases``)."""
    stem = base[:-4] if base.endswith(".log") else base
    return stem[: -len("_metrics")] if stem.endswith("_metrics") else stem


def write_alias(log_path: str, module: str) -> None:
    """Leave ``module`` beside ``log_path`` when the file's name does not say it (writers call this
    when they first open a family; a failure only means readers name the family by its file)."""
    folder, base = os.path.split(log_path)
    if family_name(base) == module:
        return
    path = os.path.join(folder, f".{base}{ALIAS_SUFFIX}")
    with contextlib.suppress(OSError), open(path, encoding="utf-8") as handle:
        if handle.read() == module:
            return
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(module)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def read_aliases(folder: str | os.PathLike[str], hidden_names: Iterator[str] | list[str]) -> dict[str, str]:
    """``{base: module}`` for every family in ``folder`` whose writer left its module's name
    (``hidden_names``: the folder's hidden entries, already listed by the caller)."""
    found: dict[str, str] = {}
    for name in hidden_names:
        if not name.endswith(ALIAS_SUFFIX) or len(name) <= len(ALIAS_SUFFIX) + 1:
            continue
        with contextlib.suppress(OSError, UnicodeDecodeError):
            with open(os.path.join(folder, name), encoding="utf-8") as handle:
                module = handle.read(256).strip()
            if module and "/" not in module and not module.startswith("."):
                found[name[1:-len(ALIAS_SUFFIX)]] = module
    return found


def family_member(name: str) -> tuple[str, int, bool] | None:
    """Any file of a family as ``(base, index, gz)``: a backup, the live ``.log`` (index 0) or a
    live file gzipped by hand (``.log.gz``); ``None`` for a hidden file or any other name (a
    ``notes.txt.1`` is no family's backup: every live file ends in ``.log``)."""
    if name.startswith("."):
        return None
    parsed = parse_backup_name(name)
    if parsed is not None:
        return parsed if parsed[0].endswith(".log") else None
    if name.endswith(".log"):
        return name, 0, False
    if name.endswith(".log.gz"):
        return name[:-3], 0, True
    return None


@dataclass(frozen=True, slots=True)
class Member:
    """One file of a family in a log folder, as listed (its status taken then)."""

    path: Path
    base: str
    index: int
    """0 for the live file, k for ``.k`` / ``.k.gz``."""
    gz: bool
    module: str
    """The family's module: the writer's alias (``read_aliases``) or the file's name (``family_name``)."""
    stat: os.stat_result


def family_files(folder: str | os.PathLike[str], module: str | None = None) -> list[Member]:
    """Every family file in ``folder`` (hidden files aside), or the files of ``module`` only, by base
    then index (newest first within a family). A ``.N`` beside a ``.N.gz`` (a compression interrupted
    half way) is listed once: the plain file wins, as in the cleaner. Readers group the list by
    module; the copies, named after their source file, go by base."""
    entries = list(os.scandir(folder))
    aliases = read_aliases(folder, [e.name for e in entries if e.name.startswith(".")])
    found: dict[tuple[str, int], Member] = {}
    for entry in entries:
        member = family_member(entry.name)
        if member is None or not entry.is_file(follow_symlinks=False):
            continue
        base, index, gz = member
        fam = aliases.get(base) or family_name(base)
        if module is not None and fam != module:
            continue  # another module's file: not even its status is taken
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if (base, index) in found and not found[(base, index)].gz:
            continue  # the plain twin wins
        found[(base, index)] = Member(Path(entry.path), base, index, gz, fam, st)
    return [found[k] for k in sorted(found)]


def shift_backups(folder_fd: int, base: str, backup_count: int) -> None:
    """Every backup of ``base`` moves up one (``.2`` -> ``.3``, ``.2.gz`` -> ``.3.gz``); those
    reaching ``backup_count`` are deleted. Caller holds the family lock.

    One listing finds them, so gaps left by the cleaner are handled and a large
    ``backup_count`` costs nothing extra. Names are resolved against ``folder_fd``, so a
    folder swapped for a symlink meanwhile cannot redirect a rename or a delete.
    """
    found: list[tuple[int, str]] = []
    with os.scandir(folder_fd) as entries:
        for entry in entries:
            parsed = parse_backup_name(entry.name)
            if parsed is not None and parsed[0] == base:
                found.append((parsed[1], ".gz" if parsed[2] else ""))
    for index, suffix in sorted(found, reverse=True):
        src = rotated_name(base, index) + suffix
        try:
            if index >= backup_count:
                os.unlink(src, dir_fd=folder_fd)
            else:
                os.rename(src, rotated_name(base, index + 1) + suffix, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
        except FileNotFoundError:
            pass


@contextlib.contextmanager
def family_lock(folder_fd: int, base: str) -> Iterator[int | None]:
    """Hold the rotation lock of the family ``base`` (in ``folder_fd``) while renaming or
    deleting its files, so no writer rotates underneath. Yields the control descriptor,
    or ``None`` when no writer of this package ever used the family (nothing to exclude)."""
    name = os.path.basename(lock_path_for(base))
    try:
        fd = os.open(name, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder_fd)
    except FileNotFoundError:
        yield None
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)  # closing the last descriptor releases the flock


def bump_generation(control_fd: int) -> None:
    """Tell every writer of the family to reopen the live file before its next line
    (after the live file was renamed by someone other than a writer)."""
    head = os.pread(control_fd, CTL_SIZE, 0)
    if len(head) < CTL_SIZE:
        return  # never initialised: no writer has mapped it, nobody to tell
    magic, gen = struct.unpack_from("=QQ", head, 0)
    if magic == CTL_MAGIC:
        os.pwrite(control_fd, struct.pack("=Q", gen + 1), OFF_GEN)
        os.pwrite(control_fd, struct.pack("=d", time.time()), OFF_ROTATED)


def last_rotation(control_fd: int) -> float:
    """When the family last rotated (0.0 if unknown). Right after a rotation a writer that has
    not yet noticed it may still append a line to the renamed file: the cleaner leaves such a
    family's backups alone for a moment."""
    head = os.pread(control_fd, CTL_SIZE, 0)
    if len(head) < CTL_SIZE or struct.unpack_from("=Q", head, OFF_MAGIC)[0] != CTL_MAGIC:
        return 0.0
    return float(struct.unpack_from("=d", head, OFF_ROTATED)[0])


@contextlib.contextmanager
def shared_lock(log_dir: str | os.PathLike[str], base: str) -> Iterator[None]:
    """The family lock, shared (readers never exclude each other): held while listing and opening
    the files. A family no writer of this package uses, or a control file this user may not
    open, is read unlocked."""
    try:
        fd = os.open(Path(log_dir) / lock_path_for(base), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)
