"""The manifest files that paths name, and their text: directories walked, links and encodings checked.

``schemas.loading`` reads every file through here before either YAML reader sees it. A problem (a missing
path, a broken link, a binary file, text that is not UTF-8, a file too large) is returned as a ``Diagnostic``,
never raised, so that one run reports the problems of every file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from nebctl.schemas.diagnostics import Diagnostic, SourceLocation
from nebctl.schemas.reading.limits import Limits

YAML_SUFFIXES = (".yaml", ".yml")


def expand_paths(paths: Sequence[str | os.PathLike[str]]) -> tuple[list[str], list[Diagnostic]]:
    """The manifest files that ``paths`` name: files as given, directories walked in sorted order.

    Hidden directories (``.git``...) are skipped and symbolic links to directories are not followed, so a
    link loop cannot make the walk endless. A file named twice is read once.
    """
    files: list[str] = []
    seen: set[str] = set()
    diagnostics: list[Diagnostic] = []

    def add(path: str) -> None:
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            files.append(path)

    for raw in paths:
        path = os.fspath(raw)
        if os.path.isdir(path):
            found = sorted(
                os.path.join(root, name)
                for root, dirs, names in os.walk(path)
                if not _hidden_below(root, path)
                for name in names
                if name.endswith(YAML_SUFFIXES) and not name.startswith(".")
            )
            if not found:
                diagnostics.append(Diagnostic(None, None, f"{path}: directory has no *.yaml or *.yml files"))
            for file in found:
                if os.path.isfile(file):
                    add(file)
                elif os.path.exists(file):
                    # A FIFO, a device (a link to /dev/zero...), a socket or a directory named *.yaml: opening
                    # one could block or never end, so it is not read at all.
                    diagnostics.append(Diagnostic(None, None, f"{file}: not a regular file"))
                else:
                    diagnostics.append(Diagnostic(None, None, f"{file}: broken symbolic link"))
        elif os.path.isfile(path):
            add(path)
        elif os.path.lexists(path) and not os.path.exists(path):
            diagnostics.append(Diagnostic(None, None, f"{path}: broken symbolic link"))
        elif os.path.exists(path):
            diagnostics.append(Diagnostic(None, None, f"{path}: not a regular file or directory"))
        else:
            diagnostics.append(Diagnostic(None, None, f"{path}: no such file or directory"))
    return files, diagnostics


def _hidden_below(root: str, top: str) -> bool:
    relative = os.path.relpath(root, top)
    return relative != "." and any(part.startswith(".") for part in Path(relative).parts)


def read_file(path: str, limits: Limits) -> tuple[str | None, Diagnostic | None]:
    """A file's text, or the problem that keeps it from being read."""
    try:
        with open(path, "rb") as stream:
            # Read one byte past the limit: a file's size on disk can change, the bytes read cannot lie.
            data = stream.read(limits.max_file_bytes + 1)
    except OSError as error:
        return None, Diagnostic(None, None, f"{path}: cannot read: {error.strerror or error}")
    if len(data) > limits.max_file_bytes:
        return None, limits.file_too_large(path)
    return decode(data, path)


def decode(data: bytes, path: str) -> tuple[str | None, Diagnostic | None]:
    """Bytes to text: UTF-8 (a byte-order mark is dropped); binary data and other encodings are refused."""
    if b"\x00" in data:
        offset = data.index(b"\x00")
        return None, Diagnostic(_offset_location(data, offset, path), None, "binary file (NUL byte): not YAML")
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as error:
        where = _offset_location(data, error.start, path)
        return None, Diagnostic(where, None, f"not UTF-8 text (byte 0x{data[error.start]:02x}); save it as UTF-8")


def _offset_location(data: bytes, offset: int, path: str) -> SourceLocation:
    line_start = data.rfind(b"\n", 0, offset) + 1
    column = len(data[line_start:offset].decode("utf-8", errors="replace")) + 1
    return SourceLocation(path, data.count(b"\n", 0, offset) + 1, column)
