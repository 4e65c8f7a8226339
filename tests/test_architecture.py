"""The map of rooms and one-way arrows holds, read from the source itself (``tests/architecture.py``)."""

from __future__ import annotations

import pytest

from . import architecture

GRAPH = architecture.build()
WRITE_PATH = ("implementations", "lightweight_monitor", "base_monitor", "logger_writer", "_sink", "_render",
              "processors", "_family", "context", "schema", "interfaces")
"""Rooms below the factory: nothing here may reach up to it or to the container."""


def test_no_circle_of_imports_longer_than_two_modules() -> None:
    """A circle of imports hides an upward arrow; two modules that use each other are the most allowed."""
    long_circles = [[architecture.short(m) for m in circle] for circle in GRAPH.circles() if len(circle) > 2]
    assert long_circles == []


@pytest.mark.parametrize("room", WRITE_PATH)
def test_the_write_path_never_imports_the_factory_or_the_container(room: str) -> None:
    """Not at the top of a module, not inside a function: the process default lives beside the writer."""
    upward = [(architecture.short(i.source), i.line, architecture.short(i.target)) for i in GRAPH.imports
              if architecture.short(i.source).split(".")[0] == room
              and architecture.short(i.target) in ("factory", "di_config")]
    assert upward == []


def test_every_import_inside_a_function_says_why() -> None:
    """An import inside a function defers an optional or heavy dependency, and a comment says which."""
    silent = [f"{architecture.short(i.source)}:{i.line} {i.target}"
              for i in [*GRAPH.imports, *GRAPH.deferred_external] if i.deferred and not i.commented]
    assert silent == []


def test_the_architecture_page_shows_the_rooms_as_they_are() -> None:
    """``docs/architecture.md`` carries the generated map; ``python tests/architecture.py --write`` refreshes it."""
    text = architecture.DOC.read_text(encoding="utf-8")
    start, end = text.index(architecture.BEGIN), text.index(architecture.END) + len(architecture.END)
    assert text[start:end] == architecture.render(GRAPH)
