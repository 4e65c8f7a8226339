"""Checkpoints: their monitor one import away (the design's module integration).

    from src.infrastructure.checkpoint import get_checkpoint_monitor   # or infrastructure.checkpoint once installed

    monitor = get_checkpoint_monitor()
    monitor.record_checkpoint_save(duration=0.5, size=1024, success=True)
    monitor.record_checkpoint_load(duration=0.3, size=1024, success=True)

``get_checkpoint_monitor()`` is the process-wide factory's ``create_monitor("checkpoint")``:
lines go to ``checkpoint_metrics.log`` in the configured log folder. Importing this package
opens no file, starts no thread and loads neither the factory nor its container.
"""

from __future__ import annotations

from ..monitoring import get_checkpoint_monitor

__all__ = ["get_checkpoint_monitor"]
