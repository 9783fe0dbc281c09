"""Problems found in manifests, each located at a file, line and column, and the wording their messages share.

Every stage of loading reports ``Diagnostic`` values: the file reader and both YAML readers
(``schemas.reading``), the per-document checks (``schemas.checking``, ``schemas.model_errors``) and the
cross-document checks (``schemas.validation``); ``schemas.loading`` raises them together as ``ManifestError``.
``str()`` of a diagnostic is the line ``nebctl validate`` prints: ``FILE:LINE:COL: Kind/name: message``.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from nebctl.core.keys import DEFAULT_NAMESPACE

DataPath = tuple[str | int, ...]
"""A path into a document's data: mapping keys and list indexes, such as ``("spec", "disks", 0, "size")``."""


class _Mark(Protocol):
    """A YAML parser's position (ruamel.yaml's and libyaml's marks alike): line and column count from 0."""

    @property
    def line(self) -> int: ...

    @property
    def column(self) -> int: ...


@dataclass(frozen=True, order=True)
class SourceLocation:
    """A position in a manifest file; ``line`` and ``column`` count from 1, as editors do."""

    file: str
    line: int
    column: int

    @classmethod
    def of_mark(cls, file: str, mark: _Mark) -> SourceLocation:
        """Where a YAML parser's mark points."""
        return cls(file, mark.line + 1, mark.column + 1)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in the manifests. ``str()`` gives ``FILE:LINE:COL: Kind/name: message``."""

    location: SourceLocation | None
    subject: str | None
    message: str

    def __str__(self) -> str:
        parts = [str(self.location)] if self.location is not None else []
        if self.subject:
            parts.append(self.subject)
        parts.append(self.message)
        return ": ".join(parts)


class ManifestError(Exception):
    """The manifests are invalid; ``diagnostics`` holds every problem found, in file order. ``complete`` is
    False when the reading stopped at a limit on problems (the last diagnostic says what was not checked)."""

    def __init__(self, diagnostics: Iterable[Diagnostic], *, complete: bool = True) -> None:
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)
        self.complete = complete
        super().__init__("\n".join(str(d) for d in self.diagnostics))


def in_file_order(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """The diagnostics of one file by line and column; those without a location first."""
    return sorted(diagnostics, key=lambda d: (d.location.line, d.location.column) if d.location else (0, 0))


def nearest_location(
    positions: Mapping[DataPath, SourceLocation], path: DataPath, fallback: SourceLocation
) -> SourceLocation:
    """The position of the value at ``path``, or of its nearest enclosing value when it is absent."""
    for end in range(len(path), -1, -1):
        found = positions.get(path[:end])
        if found is not None:
            return found
    return fallback


def subject_of(kind: str, namespace: str | None, name: str | None) -> str:
    """How diagnostics name a resource: ``Kind/name``, with ``namespace/`` in front outside the default one."""
    prefix = f"{namespace}/" if namespace and namespace != DEFAULT_NAMESPACE else ""
    # Valid names and kinds are ASCII; an invalid one prints escaped, so that a look-alike letter shows.
    return escape_non_ascii(f"{prefix}{kind}/{name}" if name else f"{prefix}{kind}")


def escape_non_ascii(text: str) -> str:
    """``text`` with every non-ASCII character as a Python escape: a Cyrillic 'e' in 'web' prints as ``w\\u0435b``."""
    return text.encode("ascii", errors="backslashreplace").decode("ascii")


def non_ascii_note(what: str, value: object) -> str | None:
    """A sentence naming the first non-ASCII character of ``value`` (a look-alike letter, often), or None."""
    if not isinstance(value, str) or value.isascii():
        return None
    character = next(c for c in value if not c.isascii())
    name = unicodedata.name(character, "unnamed character")
    return f"the {what} contains a non-ASCII character, U+{ord(character):04X} ({name})"


def closest_match(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to ``word`` (case-insensitively), if one is close enough to be a likely typo."""
    by_folded = {candidate.lower(): candidate for candidate in candidates}
    matches = difflib.get_close_matches(word.lower(), list(by_folded), n=1, cutoff=0.6)
    return by_folded[matches[0]] if matches else None


def format_path(path: Sequence[str | int]) -> str:
    """``("spec", "disks", 0, "size")`` as users write it: ``spec.disks[0].size``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def show_value(value: object, *, ascii_only: bool = False) -> str:
    """A value as users wrote it, quoted when it is text, shortened when long; with ``ascii_only``, non-ASCII
    characters are escaped (for names and kinds, where a look-alike letter must show)."""
    if isinstance(value, str):
        quote = ascii if ascii_only else repr
        text = quote(value) if len(value) <= 60 else quote(value[:57] + "...")
    elif isinstance(value, dict):
        text = "a mapping"
    elif isinstance(value, list):
        text = "a list"
    elif value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value)
    return text
