"""Every relative link in the project's markdown resolves: the file exists, and an ``#anchor`` into a
markdown file names one of its headings (GitHub's anchors: lowercase, punctuation dropped, spaces
to hyphens, repeats numbered ``-1``, ``-2``, …)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

PAGES = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def prose(text: str) -> str:
    """The text without fenced code blocks: what is in them is code, not links or headings."""
    return FENCE.sub("", text)


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: the link text of inline links, lowercase, every character
    but letters, digits, '_', '-' and spaces dropped, spaces turned into hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a markdown page, repeats numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(prose(page.read_text())):
        base = anchor(heading)
        n = seen.get(base, 0)
        found.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return found


def links(page: Path) -> list[str]:
    """The targets of the page's inline links, outside code."""
    return LINK.findall(INLINE_CODE.sub("", prose(page.read_text())))


def test_the_anchor_rules_are_githubs():
    assert anchor("Python API (notebooks)") == "python-api-notebooks"
    assert (
        anchor("§2 Poisoning strategies and poison rates")
        == "2-poisoning-strategies-and-poison-rates"
    )
    assert anchor("Presets (`search_spaces/`)") == "presets-search_spaces"
    assert anchor("On a cluster, and when things fail") == "on-a-cluster-and-when-things-fail"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert page.exists()
    broken = []
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: …
            continue
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {file}")
        elif fragment and file.suffix == ".md" and fragment not in anchors(file):
            broken.append(f"{target}: no heading '#{fragment}' in {file.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_every_docs_page_is_linked_from_the_readme_or_another_page():
    targets = set()
    for page in PAGES:
        for target in links(page):
            path = target.partition("#")[0]
            if path and not re.match(r"[a-z][a-z0-9+.-]*:", path):
                targets.add((page.parent / path).resolve())
    orphans = [p.name for p in PAGES if p.parent.name == "docs" and p.resolve() not in targets]
    assert not orphans, orphans
