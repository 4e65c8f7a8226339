"""Fleet scale: ship every host's log folder to a ClickHouse table (``monitoring ship``).

The write path does not change: applications append to their local files and never
wait on the network. A shipper per host (or a sidecar per pod) follows the folder and
inserts its lines, in batches, into one table for the whole fleet. See docs/fleet.md.

The same commands then answer from the table (``--clickhouse URL`` / ``--source
clickhouse``): ``reader.py`` (``ClickHouseParser``, ``LogParser``'s interface) runs the
query plan compiled to SQL by ``sql.py``.

This module holds only names; the client (``clickhouse.py``), the table (``schema.py``),
the shipper (``shipper.py``), what it has shipped (``progress.py``, read by the
cleaner and ``monitoring status`` without loading any HTTP code) and the read side are
imported on use.
"""

from __future__ import annotations

from typing import Final

__all__ = ["SHIP_LOCK_FILE", "SHIP_STATE_FILE"]

SHIP_STATE_FILE: Final = ".clickhouse_ship.json"
"""Beside the logs: where each file is shipped up to, replaced atomically after every batch.
While it exists, the cleaner keeps files holding bytes not yet shipped."""
SHIP_LOCK_FILE: Final = ".clickhouse_ship.lock"
"""One shipper per folder at a time (an ``flock``)."""
