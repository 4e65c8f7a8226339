"""The README and the docs/ pages stay usable: links resolve, the set-up commands are the ones CI
runs, and the README stays short enough to read in ten minutes.

Links are checked the way GitHub renders them: a relative link must name an existing file
(relative to the page), and a ``#fragment`` must be the slug of a heading of the target page
(lowercased; punctuation other than ``-`` and ``_`` removed; each space a ``-``; a repeated
heading gets ``-1``, ``-2`` …). Links inside code blocks and code spans are not links.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 260

DEMO_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/monitoring demo --history 6h"

PENDING: set[str] = set()
"""Pages linked from the README whose text is still being written. A missing one is let through;
once it exists it is checked like any other page (anchors included). Remove each entry when its
page has landed."""

_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """The page's lines outside fenced code blocks, numbered from 1."""
    out: list[tuple[int, str]] = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        found = _FENCE.match(line)
        if fence is None and found:
            fence = found.group(1)[0]
            continue
        if fence is not None:
            if found and found.group(1)[0] == fence:
                fence = None
            continue
        out.append((number, line))
    return out


def _plain(heading: str) -> str:
    """A heading's text as GitHub renders it: code spans and links reduced to their text."""
    text = _CODE_SPAN.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    return text.replace("**", "").replace("*", "").strip()


def slug(heading: str) -> str:
    """GitHub's anchor for a heading (github-slugger): letters, digits, marks, ``_``, ``-`` and
    spaces kept, everything else dropped, lowercased, each space a ``-``."""
    kept = "".join(
        c for c in _plain(heading).lower()
        if c in " -_" or unicodedata.category(c)[0] in "LNM"
    )
    return kept.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out: set[str] = set()
    for _, line in _prose_lines(page.read_text(encoding="utf-8")):
        found = _HEADING.match(line)
        if not found:
            continue
        base = slug(found.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(page: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link and image of the page's prose."""
    out: list[tuple[int, str]] = []
    for number, line in _prose_lines(page.read_text(encoding="utf-8")):
        for found in _LINK.finditer(_CODE_SPAN.sub("", line)):
            out.append((number, found.group(1)))
    return out


def code_blocks(page: Path) -> list[str]:
    """The contents of the page's fenced code blocks, in order."""
    blocks: list[str] = []
    current: list[str] = []
    fence: str | None = None
    for line in page.read_text(encoding="utf-8").splitlines():
        found = _FENCE.match(line)
        if fence is None:
            if found:
                fence, current = found.group(1)[0], []
        elif found and found.group(1)[0] == fence:
            blocks.append("\n".join(current))
            fence = None
        else:
            current.append(line)
    return blocks


def test_slug_follows_github() -> None:
    assert slug("Use it") == "use-it"
    assert slug("`alerts.rules[]`") == "alertsrules"
    assert slug("`log_cleanup`") == "log_cleanup"
    assert slug("Prometheus `/metrics` (`monitoring serve`)") == "prometheus-metrics-monitoring-serve"
    assert slug("`monitoring export --format prometheus`") == "monitoring-export---format-prometheus"
    assert slug("Scrape cost, and how many hosts per Prometheus") == "scrape-cost-and-how-many-hosts-per-prometheus"
    assert slug("Measured, and a 3-shard sizing for 100 hosts \u00d7 1,000 records/s") == \
        "measured-and-a-3-shard-sizing-for-100-hosts--1000-recordss"
    assert slug("The application's own logs") == "the-applications-own-logs"


def test_headings_in_code_blocks_are_not_anchors(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n```bash\n# not a heading\n```\n\n## Title\n", encoding="utf-8")
    assert anchors(page) == {"title", "title-1"}
    assert links(page) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for number, target in links(page):
        if _SCHEME.match(target) or target.startswith("//"):
            continue  # a web address: not checked here
        path_part, _, fragment = target.partition("#")
        resolved = (page.parent / unquote(path_part)).resolve() if path_part else page
        where = f"{page.relative_to(ROOT)}:{number}: {target}"
        if not resolved.exists():
            try:
                pending = str(resolved.relative_to(ROOT)) in PENDING
            except ValueError:
                pending = False
            if not pending:
                broken.append(f"{where} (no such file)")
            continue
        if fragment and resolved.suffix == ".md" and unquote(fragment) not in anchors(resolved):
            broken.append(f"{where} (no heading with that anchor in {resolved.relative_to(ROOT)})")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_readme_starts_with_the_two_commands_ci_runs() -> None:
    blocks = code_blocks(README)
    assert len(blocks) >= 2
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    last = next(line for line in reversed(ci_lines) if line)
    assert blocks[0].strip() == DEMO_COMMAND
    assert blocks[1].strip() == last
    assert last.endswith(".venv/bin/pytest")


def test_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail to docs/"
