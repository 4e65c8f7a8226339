"""The follower of log families lives in ``query/tailer.py``; this name is kept for the exporters."""

from __future__ import annotations

from ..query.tailer import Chunk, Tailer

__all__ = ["Chunk", "Tailer"]
