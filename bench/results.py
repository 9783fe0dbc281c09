"""bench/RESULTS.md, shared by the benchmarks: each one owns a section, starting at its ``## `` heading and
running to the next one (or to the next ``<!-- ... -->`` marker line, which belongs to what follows: bench/apply.py
and bench/plan.py delimit their sections with such markers), and rewrites only that section."""

from __future__ import annotations

import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
PREAMBLE = "# Benchmark results\n\nEach benchmark owns one section.\n\n"


def write_section(heading: str, section: str, path: Path = RESULTS) -> None:
    """Replace the section that starts with ``heading`` by ``section`` (which starts with it), or append it."""
    text = path.read_text() if path.exists() else PREAMBLE
    pattern = re.compile(re.escape(heading) + r".*?(?=^## |^<!-- |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    path.write_text(text.rstrip() + "\n")


def write_block(name: str, block: str, path: Path = RESULTS) -> None:
    """Replace what lies between the lines ``<!-- NAME: begin -->`` and ``<!-- NAME: end -->`` by ``block``: the
    figures a benchmark writes inside a section whose prose people write."""
    begin, end = f"<!-- {name}: begin -->", f"<!-- {name}: end -->"
    text = path.read_text()
    start, stop = text.index(begin) + len(begin), text.index(end)
    path.write_text(text[:start] + "\n" + block.strip() + "\n" + text[stop:])
