"""Printing wide tables (``hosts``, ``top``, ``accounting``, ``showback``): on a terminal, rich fits them to
its width; into a pipe or a file, every column keeps its full width, so nothing is cut off with an ellipsis."""

from __future__ import annotations

from typing import Any

from nebctl.cli.app import AppContext

# Wide enough for any of these tables; rich does not pad a table to the console's width.
PIPE_WIDTH = 1000


def print_table(app: AppContext, table: Any) -> None:
    console = app.console
    if console.is_terminal:
        console.print(table)
        return
    from rich.console import Console

    Console(file=console.file, width=PIPE_WIDTH, color_system=None).print(table)


_UNITS = (("Ei", 1 << 60), ("Pi", 1 << 50), ("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10))


def human_bytes(value: float | None) -> str:
    """A size for people, in binary units to one decimal (``1.5Gi``, ``512Mi``, ``100``); ``-`` for None."""
    if value is None:
        return "-"
    sign = "-" if value < 0 else ""
    value = abs(value)
    for suffix, size in _UNITS:
        if value >= size:
            text = f"{value / size:.1f}".removesuffix(".0")
            return f"{sign}{text}{suffix}"
    return f"{sign}{value:.0f}"
