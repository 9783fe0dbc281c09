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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

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
    "cross_document_problems",
    "expand_paths",
    "file_documents",
    "load_paths",
    "load_text",
    "parse_text",
    "read_paths",
]


@dataclass(frozen=True)
class ManifestSet:
    """A valid set of manifests: every document by key, in load order, and where each one was found. A set loaded
    through the manifest cache (``schemas.caching``) also has a stamp per document: two loads giving a document the
    same stamp read it from the same text, so it is the same document (a kept plan trace compares them)."""

    documents: Mapping[ResourceKey, AnyManifest]
    locations: Mapping[ResourceKey, SourceLocation]
    files: tuple[str, ...]
    stamps: Mapping[ResourceKey, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(
        cls,
        documents: Sequence[LoadedDocument],
        files: tuple[str, ...],
        stamps: Mapping[ResourceKey, str] | None = None,
    ) -> ManifestSet:
        return cls(
            documents={doc.key: doc.manifest for doc in documents},
            locations={doc.key: doc.location for doc in documents},
            files=files,
            stamps=stamps or {},
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
    documents, diagnostics, files_read, complete = _read_paths(paths, limits)
    return _finish(documents, diagnostics, files_read, complete=complete)


def load_text(text: str, filename: str = "<text>", *, limits: Limits = DEFAULT_LIMITS) -> ManifestSet:
    """Load manifests from a string (``filename`` is used in diagnostics only); see ``load_paths``."""
    loaded = _load_fast([(filename, text)], limits)
    if loaded is not None:
        return loaded
    documents, diagnostics, complete = _parse_text(text, filename, limits, limits.max_problems)
    return _finish(documents, diagnostics, (filename,), complete=complete)


def load_texts(texts: Sequence[tuple[str, str]], *, limits: Limits = DEFAULT_LIMITS) -> ManifestSet:
    """Load several (file name, text) pairs as one set, as ``load_paths`` loads files (the API's posted
    manifests); file names are used in diagnostics only."""
    loaded = _load_fast(texts, limits)
    if loaded is not None:
        return loaded
    documents: list[LoadedDocument] = []
    diagnostics: list[Diagnostic] = []
    complete = True
    for filename, text in texts:
        remaining = limits.max_problems - len(diagnostics)
        if remaining <= 0:
            diagnostics.append(Diagnostic(None, None, f"stopped after {len(diagnostics)} problems"))
            return _finish(documents, diagnostics, tuple(f for f, _ in texts), complete=False)
        found, problems, checked = _parse_text(text, filename, limits, remaining)
        documents.extend(found)
        diagnostics.extend(problems)
        complete = complete and checked
    return _finish(documents, diagnostics, tuple(f for f, _ in texts), complete=complete)


def read_paths(
    paths: Sequence[str | os.PathLike[str]], *, limits: Limits = DEFAULT_LIMITS
) -> tuple[list[LoadedDocument], list[Diagnostic], tuple[str, ...]]:
    """Read and check every document on its own, without the cross-document checks.

    Returns the valid documents, the diagnostics of the invalid ones, and the files read. Past
    ``limits.max_problems`` problems, the files left are not read (a last diagnostic says how many).
    """
    documents, diagnostics, files, _ = _read_paths(paths, limits)
    return documents, diagnostics, files


def _read_paths(
    paths: Sequence[str | os.PathLike[str]], limits: Limits
) -> tuple[list[LoadedDocument], list[Diagnostic], tuple[str, ...], bool]:
    """``read_paths``, and whether everything was checked (False once a limit on problems stopped the reading)."""
    files, diagnostics = expand_paths(paths)
    documents: list[LoadedDocument] = []
    complete = True
    for index, file in enumerate(files):
        remaining = limits.max_problems - len(diagnostics)
        if remaining <= 0:
            left = len(files) - index
            diagnostics.append(
                Diagnostic(
                    None,
                    None,
                    f"stopped after {len(diagnostics)} problems: {left} more file{'s' if left != 1 else ''} "
                    "not checked",
                )
            )
            return documents, diagnostics, tuple(files[:index]), False
        text, problem = read_file(file, limits)
        if problem is not None:
            diagnostics.append(problem)
            continue
        assert text is not None
        found, problems, checked = _parse_text(text, file, limits, remaining)
        documents.extend(found)
        diagnostics.extend(problems)
        complete = complete and checked
    return documents, diagnostics, tuple(files), complete


def parse_text(
    text: str, filename: str = "<text>", *, limits: Limits = DEFAULT_LIMITS
) -> tuple[list[LoadedDocument], list[Diagnostic]]:
    """Check every document of one file on its own; returns the valid ones and the problems of the others.

    Past ``limits.max_problems_per_file`` problems the rest of the file is not read; the last diagnostic says so.
    """
    documents, diagnostics, _ = _parse_text(text, filename, limits, limits.max_problems)
    return documents, diagnostics


def _parse_text(
    text: str, filename: str, limits: Limits, allowed: int
) -> tuple[list[LoadedDocument], list[Diagnostic], bool]:
    # Imported when a file needs it: a set of plain files is read by the fast reader alone (about 0.3 ms).
    from nebctl.schemas.reading.positioned import iter_yaml

    cap = max(1, min(limits.max_problems_per_file, allowed))
    loaded: list[LoadedDocument] = []
    diagnostics: list[Diagnostic] = []
    complete = True
    for item in iter_yaml(text, filename, limits=limits):
        if isinstance(item, Diagnostic):
            diagnostics.append(item)
        else:
            document, problems = check_document(item)
            if document is not None:
                loaded.append(document)
            diagnostics.extend(problems)
        if len(diagnostics) >= cap:
            complete = False
            break
    # Reading errors (tags, aliases) and model errors are found in separate passes: show them in file order.
    diagnostics = in_file_order(diagnostics)
    if not complete:
        diagnostics.append(_stopped(text, filename, diagnostics))
    return loaded, diagnostics, complete


def _stopped(text: str, filename: str, diagnostics: Sequence[Diagnostic]) -> Diagnostic:
    """Where the reading of a file with too many problems stopped, and how much of it was left unchecked."""
    last = max((d.location.line for d in diagnostics if d.location is not None), default=1)
    lines = text.count("\n") + (0 if text.endswith("\n") else 1)
    rest = f"lines {last + 1} to {lines} were not checked" if lines > last else "nothing after it was checked"
    return Diagnostic(
        SourceLocation(filename, last, 1),
        None,
        f"stopped reading this file after {len(diagnostics)} problems: {rest}",
    )


def _load_fast(texts: Sequence[tuple[str, str]], limits: Limits) -> ManifestSet | None:
    """The manifest set of these (file, text) pairs, or None when it has any problem (the caller then reads it
    with the positioned reader, which reports them). A file that only needs that reader's features is read
    with it here, the others with libyaml."""
    if not fast.LIBYAML_AVAILABLE:
        return None
    scalars = fast.Scalars()
    documents: list[LoadedDocument] = []
    for filename, text in texts:
        found = file_documents(filename, text, limits, scalars)
        if found is None:
            return None
        documents.extend(found)
    if cross_document_problems(documents):
        return None
    return ManifestSet.of(documents, tuple(filename for filename, _ in texts))


def file_documents(
    filename: str, text: str, limits: Limits, scalars: fast.Scalars | None = None
) -> list[LoadedDocument] | None:
    """The valid documents of one file checked on its own, or None when it has any problem (``load_paths`` then
    reports them). ``scalars`` is the fast reader's cache of values, shared by the files of one set; a file that
    needs the positioned reader is read with it. The cache of ``schemas.caching`` keeps this per file."""
    raw_documents = None
    if fast.LIBYAML_AVAILABLE:
        raw_documents = fast.read_fast(text, filename, limits, scalars or fast.Scalars())
    if raw_documents is None:
        found, problems = parse_text(text, filename, limits=limits)
        return None if problems else found
    documents: list[LoadedDocument] = []
    for raw in raw_documents:
        document, problems = check_document(raw)
        if document is None or problems:
            return None
        documents.append(document)
    return documents


def _finish(
    documents: list[LoadedDocument], diagnostics: list[Diagnostic], files: tuple[str, ...], *, complete: bool = True
) -> ManifestSet:
    if not complete:
        # Part of the set was never read: checks across documents would report references to it as dangling.
        raise ManifestError(diagnostics, complete=False)
    diagnostics = diagnostics + cross_document_problems(documents)
    if diagnostics:
        raise ManifestError(diagnostics)
    return ManifestSet.of(documents, files)


def cross_document_problems(documents: Sequence[LoadedDocument]) -> list[Diagnostic]:
    """The problems across a set of individually valid documents (``schemas.validation``)."""
    # Imported on first use: ``import nebctl.schemas.loading`` stays without the cross-document checks (about
    # 1 ms), which are needed only once documents have been read.
    from nebctl.schemas.validation import validate_documents

    return validate_documents(documents)
