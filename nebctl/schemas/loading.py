"""Reading manifest files into validated models, with every error located at its file, line and column.

The loader is the front door of every command that takes ``-f`` (``validate``, ``diff``, ``apply``, ``serve``)
and of the service's API (posted manifests go through ``load_text``). It finds and reads the files
(``reading.sources``), reads their YAML into plain data (``reading.fast``, ``reading.positioned``), checks every
document against its kind's model (``checking``), then runs the cross-document checks of ``validation``. All
errors of a run are collected and raised together as ``ManifestError``.

Two readers: the positioned one (ruamel.yaml, pure Python) keeps a position for every value, which only
diagnostics need, so ``load_paths`` and ``load_text`` first read each file with the fast one (libyaml's parser).
Only a file that goes beyond plain mappings, lists and scalars (tags, anchors, merge keys, directives...), or that
has any problem, is read again with the positioned reader; and when the set has a cross-document problem, every
file is, so that every diagnostic is exactly the positioned reader's (tests/unit/schemas/test_fast_loading.py
checks that both readers give the same values).

Everything here is a pure function of its inputs (paths are read, nothing else is touched); limits are passed
in as ``Limits`` with safe defaults. Callers import what they use from here; the inverse, ``dump_text``, is in
``schemas.dumping``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from nebctl.core.keys import Kind, ResourceKey
from nebctl.schemas.checking import LoadedDocument, check_document
from nebctl.schemas.diagnostics import Diagnostic, ManifestError, SourceLocation, in_file_order
from nebctl.schemas.models import AnyManifest
from nebctl.schemas.reading import fast
from nebctl.schemas.reading.limits import DEFAULT_LIMITS, Limits
from nebctl.schemas.reading.sources import expand_paths, read_file

__all__ = [
    "DEFAULT_LIMITS",
    "Diagnostic",
    "Limits",
    "LoadedDocument",
    "ManifestError",
    "ManifestSet",
    "SourceLocation",
    "expand_paths",
    "load_paths",
    "load_text",
    "parse_text",
    "read_paths",
]


@dataclass(frozen=True)
class ManifestSet:
    """A valid set of manifests: every document by key, in load order, and where each one was found."""

    documents: dict[ResourceKey, AnyManifest]
    locations: dict[ResourceKey, SourceLocation]
    files: tuple[str, ...]

    @classmethod
    def of(cls, documents: Sequence[LoadedDocument], files: tuple[str, ...]) -> ManifestSet:
        return cls(
            documents={doc.key: doc.manifest for doc in documents},
            locations={doc.key: doc.location for doc in documents},
            files=files,
        )

    def __len__(self) -> int:
        return len(self.documents)

    def of_kind(self, kind: Kind) -> list[AnyManifest]:
        """The documents of one kind, in load order."""
        return [manifest for key, manifest in self.documents.items() if key.kind is kind]

    def counts(self) -> dict[Kind, int]:
        """How many documents of each kind, in ``Kind`` order, kinds without documents left out."""
        found = {kind: sum(1 for key in self.documents if key.kind is kind) for kind in Kind}
        return {kind: count for kind, count in found.items() if count}


def load_paths(paths: Sequence[str | os.PathLike[str]], *, limits: Limits = DEFAULT_LIMITS) -> ManifestSet:
    """Load files and directories (recursively, ``*.yaml``/``*.yml``, sorted) into a validated ``ManifestSet``.

    Raises ``ManifestError`` with every problem found, in the files and across them.
    """
    files, diagnostics = expand_paths(paths)
    if not diagnostics:
        texts: list[tuple[str, str]] = []
        for file in files:
            text, problem = read_file(file, limits)
            if problem is not None or text is None:
                break
            texts.append((file, text))
        else:
            loaded = _load_fast(texts, limits)
            if loaded is not None:
                return loaded
    documents, diagnostics, files_read = read_paths(paths, limits=limits)
    return _finish(documents, diagnostics, files_read)


def load_text(text: str, filename: str = "<text>", *, limits: Limits = DEFAULT_LIMITS) -> ManifestSet:
    """Load manifests from a string (``filename`` is used in diagnostics only); see ``load_paths``."""
    loaded = _load_fast([(filename, text)], limits)
    if loaded is not None:
        return loaded
    documents, diagnostics = parse_text(text, filename, limits=limits)
    return _finish(documents, diagnostics, (filename,))


def read_paths(
    paths: Sequence[str | os.PathLike[str]], *, limits: Limits = DEFAULT_LIMITS
) -> tuple[list[LoadedDocument], list[Diagnostic], tuple[str, ...]]:
    """Read and check every document on its own, without the cross-document checks.

    Returns the valid documents, the diagnostics of the invalid ones, and the files read.
    """
    files, diagnostics = expand_paths(paths)
    documents: list[LoadedDocument] = []
    for file in files:
        text, problem = read_file(file, limits)
        if problem is not None:
            diagnostics.append(problem)
            continue
        assert text is not None
        found, problems = parse_text(text, file, limits=limits)
        documents.extend(found)
        diagnostics.extend(problems)
    return documents, diagnostics, tuple(files)


def parse_text(
    text: str, filename: str = "<text>", *, limits: Limits = DEFAULT_LIMITS
) -> tuple[list[LoadedDocument], list[Diagnostic]]:
    """Check every document of one file on its own; returns the valid ones and the problems of the others."""
    # Imported when a file needs it: a set of plain files is read by the fast reader alone (about 0.3 ms).
    from nebctl.schemas.reading.positioned import read_yaml

    raw_documents, diagnostics = read_yaml(text, filename, limits=limits)
    loaded: list[LoadedDocument] = []
    for raw in raw_documents:
        document, problems = check_document(raw)
        if document is not None:
            loaded.append(document)
        diagnostics.extend(problems)
    # Reading errors (tags, aliases) and model errors are found in separate passes: show them in file order.
    return loaded, in_file_order(diagnostics)


def _load_fast(texts: Sequence[tuple[str, str]], limits: Limits) -> ManifestSet | None:
    """The manifest set of these (file, text) pairs, or None when it has any problem (the caller then reads it
    with the positioned reader, which reports them). A file that only needs that reader's features is read
    with it here, the others with libyaml."""
    if not fast.LIBYAML_AVAILABLE:
        return None
    scalars = fast.Scalars()
    documents: list[LoadedDocument] = []
    for filename, text in texts:
        raw_documents = fast.read_fast(text, filename, limits, scalars)
        if raw_documents is None:
            found, problems = parse_text(text, filename, limits=limits)
            if problems:
                return None
            documents.extend(found)
            continue
        for raw in raw_documents:
            document, problems = check_document(raw)
            if document is None or problems:
                return None
            documents.append(document)
    if _cross_document_problems(documents):
        return None
    return ManifestSet.of(documents, tuple(filename for filename, _ in texts))


def _finish(documents: list[LoadedDocument], diagnostics: list[Diagnostic], files: tuple[str, ...]) -> ManifestSet:
    diagnostics = diagnostics + _cross_document_problems(documents)
    if diagnostics:
        raise ManifestError(diagnostics)
    return ManifestSet.of(documents, files)


def _cross_document_problems(documents: list[LoadedDocument]) -> list[Diagnostic]:
    # Imported on first use: ``import nebctl.schemas.loading`` stays without the cross-document checks (about
    # 1 ms), which are needed only once documents have been read.
    from nebctl.schemas.validation import validate_documents

    return validate_documents(documents)
