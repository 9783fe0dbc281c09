"""Bounds that keep hostile input cheap to reject, with the diagnostic of a file that is too large.

Passed in by the callers of ``schemas.loading`` (``DEFAULT_LIMITS`` otherwise) and checked by the file reader
and by both YAML readers.
"""

from __future__ import annotations

from dataclasses import dataclass

from nebctl.schemas.diagnostics import Diagnostic, SourceLocation


@dataclass(frozen=True)
class Limits:
    """Bounds that keep hostile input cheap to reject (the defaults are far above any real manifest set)."""

    max_file_bytes: int = 4 * 1024**2
    # Nodes per file after alias expansion: a billion-laughs document is refused before anything is expanded.
    max_nodes: int = 200_000
    max_depth: int = 64
    # Problems reported before the reading stops, per file and in all: a file of 100,000 broken documents is
    # reported by its first problems in a fraction of a second, not by 200,000 lines after a minute of CPU.
    max_problems_per_file: int = 100
    max_problems: int = 1000

    def exceeds_file_size(self, text: str) -> bool:
        """Whether text (not read from a file, or read from one) has more bytes than a file may have."""
        return len(text.encode("utf-8", errors="surrogatepass")) > self.max_file_bytes

    def file_too_large(self, filename: str) -> Diagnostic:
        """The diagnostic of a file with more than ``max_file_bytes`` bytes."""
        return Diagnostic(
            SourceLocation(filename, 1, 1),
            None,
            f"file is larger than {self.max_file_bytes} bytes; split it into several files",
        )


DEFAULT_LIMITS = Limits()
