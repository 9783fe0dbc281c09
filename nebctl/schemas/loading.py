"""Reading manifest files into validated models, with every error located at its file, line and column.

The loader is the front door of every command that takes ``-f`` (``validate``, ``diff``, ``apply``, ``serve``)
and of the service's API (posted manifests go through ``load_text``). It reads YAML with ruamel.yaml's safe
composer, builds plain data itself from the node graph (so it can keep each node's position, refuse tags that
construct objects, and measure alias expansion *before* expanding anything), validates every document with its
kind's pydantic model, turns pydantic's errors into messages users can act on, then runs the cross-document
checks of ``schemas.validation``. All errors of a run are collected and raised together as ``ManifestError``.

That reader is pure Python and keeps a position for every value, which only diagnostics need: ``load_paths`` and
``load_text`` first read each file with libyaml's parser (C, through PyYAML's event API), resolve and construct
its scalars with the same ruamel.yaml resolver and constructor (YAML 1.2, so the values are the same), and validate
them. Only a file that goes beyond plain mappings, lists and scalars (tags, anchors, merge keys, directives...),
or that has any problem, is read again with the positioned reader; and when the set has a cross-document problem,
every file is, so that every diagnostic is exactly the positioned reader's (tests/unit/schemas/test_fast_loading.py
checks that both readers give the same values).

Everything here is a pure function of its inputs (paths are read, nothing else is touched); limits are passed
in as ``Limits`` with safe defaults.
"""

from __future__ import annotations

import difflib
import io
import os
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic
from pydantic import BaseModel
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.scanner import Scanner, ScannerError

from nebctl.schemas.keys import DEFAULT_NAMESPACE, KIND_ALIASES, NAME_PATTERN, Kind, ResourceKey
from nebctl.schemas.models import API_VERSION, HOOK_EVENT_PATTERN, MODEL_BY_KIND, AnyManifest

DataPath = tuple[str | int, ...]
"""A path into a document's data: mapping keys and list indexes, such as ``("spec", "disks", 0, "size")``."""

YAML_SUFFIXES = (".yaml", ".yml")


# --- Public value types -----------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class SourceLocation:
    """A position in a manifest file; ``line`` and ``column`` count from 1, as editors do."""

    file: str
    line: int
    column: int

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
    """The manifests are invalid; ``diagnostics`` holds every problem found, in file order."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))


@dataclass(frozen=True)
class Limits:
    """Bounds that keep hostile input cheap to reject (the defaults are far above any real manifest set)."""

    max_file_bytes: int = 4 * 1024**2
    # Nodes per file after alias expansion: a billion-laughs document is refused before anything is expanded.
    max_nodes: int = 200_000
    max_depth: int = 64


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class LoadedDocument:
    """One valid document with the positions of its fields, for cross-document checks and error messages."""

    key: ResourceKey
    manifest: AnyManifest
    location: SourceLocation
    positions: Mapping[DataPath, SourceLocation] = field(repr=False, compare=False)
    key_positions: Mapping[DataPath, SourceLocation] = field(repr=False, compare=False)

    @property
    def subject(self) -> str:
        return subject_of(self.key.kind.value, self.key.namespace, self.key.name)

    def locate(self, *path: str | int) -> SourceLocation:
        """The position of the value at ``path``, or of its nearest enclosing value when it is absent."""
        for end in range(len(path), 0, -1):
            found = self.positions.get(path[:end])
            if found is not None:
                return found
        return self.location


@dataclass(frozen=True)
class ManifestSet:
    """A valid set of manifests: every document by key, in load order, and where each one was found."""

    documents: dict[ResourceKey, AnyManifest]
    locations: dict[ResourceKey, SourceLocation]
    files: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.documents)

    def of_kind(self, kind: Kind) -> list[AnyManifest]:
        """The documents of one kind, in load order."""
        return [manifest for key, manifest in self.documents.items() if key.kind is kind]

    def counts(self) -> dict[Kind, int]:
        """How many documents of each kind, in ``Kind`` order, kinds without documents left out."""
        found = {kind: sum(1 for key in self.documents if key.kind is kind) for kind in Kind}
        return {kind: count for kind, count in found.items() if count}


def subject_of(kind: str, namespace: str | None, name: str | None) -> str:
    """How diagnostics name a resource: ``Kind/name``, with ``namespace/`` in front outside the default one."""
    prefix = f"{namespace}/" if namespace and namespace != DEFAULT_NAMESPACE else ""
    return f"{prefix}{kind}/{name}" if name else f"{prefix}{kind}"


# --- Entry points -----------------------------------------------------------------------------------------


def load_paths(paths: Sequence[str | os.PathLike[str]], *, limits: Limits = DEFAULT_LIMITS) -> ManifestSet:
    """Load files and directories (recursively, ``*.yaml``/``*.yml``, sorted) into a validated ``ManifestSet``.

    Raises ``ManifestError`` with every problem found, in the files and across them.
    """
    files, diagnostics = expand_paths(paths)
    if not diagnostics:
        texts: list[tuple[str, str]] = []
        for file in files:
            text, problem = _read_file(file, limits)
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
        text, problem = _read_file(file, limits)
        if problem is not None:
            diagnostics.append(problem)
            continue
        assert text is not None
        found, problems = parse_text(text, file, limits=limits)
        documents.extend(found)
        diagnostics.extend(problems)
    return documents, diagnostics, tuple(files)


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


def _finish(documents: list[LoadedDocument], diagnostics: list[Diagnostic], files: tuple[str, ...]) -> ManifestSet:
    # Imported here: validation imports this module's types.
    from nebctl.schemas.validation import validate_documents

    diagnostics = diagnostics + validate_documents(documents)
    if diagnostics:
        raise ManifestError(diagnostics)
    return ManifestSet(
        documents={doc.key: doc.manifest for doc in documents},
        locations={doc.key: doc.location for doc in documents},
        files=files,
    )


# --- Reading bytes ----------------------------------------------------------------------------------------


def _read_file(path: str, limits: Limits) -> tuple[str | None, Diagnostic | None]:
    start = SourceLocation(path, 1, 1)
    try:
        with open(path, "rb") as stream:
            # Read one byte past the limit: a file's size on disk can change, the bytes read cannot lie.
            data = stream.read(limits.max_file_bytes + 1)
    except OSError as error:
        return None, Diagnostic(None, None, f"{path}: cannot read: {error.strerror or error}")
    if len(data) > limits.max_file_bytes:
        return None, Diagnostic(
            start, None, f"file is larger than {limits.max_file_bytes} bytes; split it into several files"
        )
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


# --- YAML to data with positions --------------------------------------------------------------------------

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_TAG + name for name in ("null", "bool", "int", "float", "str")}


class _DocumentError(Exception):
    """A problem that stops the reading of one document (or the rest of a file)."""

    def __init__(self, location: SourceLocation | None, message: str) -> None:
        super().__init__(message)
        self.location = location
        self.message = message


@dataclass
class _Document:
    """A document's plain data and the positions of its values and mapping keys."""

    data: Any
    location: SourceLocation
    positions: dict[DataPath, SourceLocation]
    key_positions: dict[DataPath, SourceLocation]
    # For one-line scalars: how far the text starts after the value's position (1 past an opening quote), so
    # an error at an offset in the text (a placement expression's) can point at its exact column.
    text_offsets: dict[DataPath, int] = field(default_factory=dict)


class _Builder:
    """Turns a composed node graph into plain data, refusing anything unsafe or too large."""

    def __init__(self, yaml: YAML, filename: str, limits: Limits) -> None:
        self.yaml = yaml
        self.filename = filename
        self.limits = limits

    def at(self, node: Node) -> SourceLocation:
        return SourceLocation(self.filename, node.start_mark.line + 1, node.start_mark.column + 1)

    def expanded_size(self, root: Node) -> int:
        """Nodes the document has once aliases are expanded, computed on the shared graph (never expanding)."""
        sizes: dict[int, int] = {}
        active: set[int] = set()

        def size(node: Node, depth: int) -> int:
            known = sizes.get(id(node))
            if known is not None:
                return known
            if depth > self.limits.max_depth:
                raise _DocumentError(self.at(node), f"nesting deeper than {self.limits.max_depth} levels")
            if id(node) in active:
                raise _DocumentError(self.at(node), "recursive alias: a node contains itself")
            active.add(id(node))
            total = 1
            if isinstance(node, SequenceNode):
                total += sum(size(child, depth + 1) for child in node.value)
            elif isinstance(node, MappingNode):
                total += sum(size(k, depth + 1) + size(v, depth + 1) for k, v in node.value)
            active.discard(id(node))
            if total > self.limits.max_nodes:
                # Refused at the smallest node that crosses the limit: where the aliases multiply.
                raise _DocumentError(
                    self.at(node),
                    f"document expands to more than {self.limits.max_nodes} nodes through aliases "
                    "(an alias bomb?); refusing it",
                )
            sizes[id(node)] = total
            return total

        return size(root, 0)

    def build(self, root: Node) -> _Document:
        self.expanded_size(root)
        document = _Document(None, self.at(root), {}, {})
        document.data = self.value(root, (), document)
        return document

    def value(self, node: Node, path: DataPath, document: _Document) -> Any:
        document.positions.setdefault(path, self.at(node))
        if isinstance(node, ScalarNode):
            if node.style in (None, '"', "'") and node.start_mark.line == node.end_mark.line:
                document.text_offsets.setdefault(path, 0 if node.style is None else 1)
            return self.scalar(node)
        if isinstance(node, SequenceNode):
            self.check_tag(node, _TAG + "seq")
            return [self.value(child, (*path, index), document) for index, child in enumerate(node.value)]
        if isinstance(node, MappingNode):
            self.check_tag(node, _TAG + "map")
            result: dict[str, Any] = {}
            first_seen: dict[str, SourceLocation] = {}
            for key_node, value_node in self.merged_pairs(node):
                key = self.key(key_node)
                if key in first_seen:
                    first = first_seen[key]
                    raise _DocumentError(
                        self.at(key_node), f"duplicate key '{key}' (first at line {first.line}, column {first.column})"
                    )
                first_seen[key] = self.at(key_node)
                child = (*path, key)
                document.key_positions[child] = self.at(key_node)
                # A mapping or list is located at its key: its own start is the first key on the next line.
                if not isinstance(value_node, ScalarNode):
                    document.positions[child] = self.at(key_node)
                result[key] = self.value(value_node, child, document)
            return result
        raise _DocumentError(self.at(node), "unsupported YAML node")

    def merged_pairs(self, node: MappingNode) -> list[tuple[Node, Node]]:
        """The mapping's pairs with YAML merge keys (``<<: *defaults``) applied: explicit keys win."""
        own = [(k, v) for k, v in node.value if k.tag != _TAG + "merge"]
        merges = [v for k, v in node.value if k.tag == _TAG + "merge"]
        if not merges:
            return own
        explicit = {k.value for k, _ in own if isinstance(k, ScalarNode)}
        inherited: list[tuple[Node, Node]] = []
        for merge in merges:
            sources = merge.value if isinstance(merge, SequenceNode) else [merge]
            for source in sources:
                if not isinstance(source, MappingNode):
                    raise _DocumentError(self.at(source), "a merge key ('<<') takes a mapping or a list of mappings")
                for key_node, value_node in self.merged_pairs(source):
                    name = key_node.value if isinstance(key_node, ScalarNode) else None
                    if name not in explicit:
                        explicit.add(name)
                        inherited.append((key_node, value_node))
        return own + inherited

    def key(self, node: Node) -> str:
        if not isinstance(node, ScalarNode):
            raise _DocumentError(self.at(node), "mapping keys must be plain strings, not lists or mappings")
        self.check_tag(node, *_SCALAR_TAGS)
        # Keys are names of fields, labels or variables: always text, as written (``80:`` is the key "80").
        return str(node.value)

    def scalar(self, node: ScalarNode) -> Any:
        if node.tag == _TAG + "timestamp":
            # No field is a date; a date-like value is text (an annotation, say), exactly as written.
            return str(node.value)
        self.check_tag(node, *_SCALAR_TAGS)
        try:
            return self.yaml.constructor.construct_object(node, deep=True)
        except (ValueError, YAMLError) as error:
            # The first clause says what is wrong; Python's advice on raising its limits is not for users.
            reason = str(error).split(";")[0]
            raise _DocumentError(self.at(node), f"invalid {str(node.tag).removeprefix(_TAG)} value: {reason}") from None

    def check_tag(self, node: Node, *allowed: str) -> None:
        if node.tag not in allowed:
            raise _DocumentError(
                self.at(node),
                f"YAML tag '{_short_tag(str(node.tag))}' is not allowed: manifests hold plain strings, numbers, "
                "booleans, lists and mappings",
            )


class _FlowDepthLimitedScanner(Scanner):
    """ruamel's scanner, refusing flow collections (``[[[...``) nested deeper than ``max_flow_depth``.

    The scanner's work per token grows with the flow depth, so deep nesting costs quadratic time: it is cut off
    at the bracket that goes too deep, before it gets expensive.
    """

    max_flow_depth = 64

    def fetch_flow_collection_start(self, token_class: Any, to_push: str) -> None:
        if len(self.flow_context) >= self.max_flow_depth:
            raise ScannerError(
                problem=f"nesting deeper than {self.max_flow_depth} levels", problem_mark=self.reader.get_mark()
            )
        super().fetch_flow_collection_start(token_class, to_push)


def _text_location(text: str, offset: int, filename: str) -> SourceLocation:
    line_start = text.rfind("\n", 0, offset) + 1
    return SourceLocation(filename, text.count("\n", 0, offset) + 1, offset - line_start + 1)


def _short_tag(tag: str) -> str:
    return "!!" + tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag


def _yaml_error(error: MarkedYAMLError, filename: str) -> Diagnostic:
    mark = error.problem_mark or error.context_mark
    location = SourceLocation(filename, mark.line + 1, mark.column + 1) if mark is not None else None
    problem = error.problem or str(error)
    if error.context and error.context_mark is not None and error.context_mark is not mark:
        problem = f"{problem} ({error.context} at line {error.context_mark.line + 1})"
    return Diagnostic(location, None, f"invalid YAML: {problem}")


def read_yaml(text: str, filename: str, *, limits: Limits = DEFAULT_LIMITS) -> tuple[list[_Document], list[Diagnostic]]:
    """Parse YAML text into plain documents with positions; empty documents (``---`` alone) are dropped."""
    if len(text.encode("utf-8", errors="surrogatepass")) > limits.max_file_bytes:
        return [], [
            Diagnostic(
                SourceLocation(filename, 1, 1),
                None,
                f"file is larger than {limits.max_file_bytes} bytes; split it into several files",
            )
        ]
    yaml = YAML(typ="safe", pure=True)
    yaml.Scanner = type("Scanner", (_FlowDepthLimitedScanner,), {"max_flow_depth": limits.max_depth})
    builder = _Builder(yaml, filename, limits)
    documents: list[_Document] = []
    diagnostics: list[Diagnostic] = []
    try:
        for root in yaml.compose_all(io.StringIO(text)):
            if root is None or (isinstance(root, ScalarNode) and root.tag == _TAG + "null"):
                continue
            try:
                documents.append(builder.build(root))
            except _DocumentError as error:
                diagnostics.append(Diagnostic(error.location, None, error.message))
    except MarkedYAMLError as error:
        # The parser cannot resynchronise after a syntax error: the documents before it are still checked.
        diagnostics.append(_yaml_error(error, filename))
    except ReaderError as error:
        where = _text_location(text, error.position, filename)
        diagnostics.append(
            Diagnostic(where, None, f"invalid YAML: character U+{error.character:04X} is not allowed ({error.reason})")
        )
    except YAMLError as error:
        diagnostics.append(Diagnostic(SourceLocation(filename, 1, 1), None, f"invalid YAML: {error}"))
    except RecursionError:
        diagnostics.append(Diagnostic(SourceLocation(filename, 1, 1), None, "invalid YAML: nesting too deep to read"))
    if not documents and not diagnostics:
        diagnostics.append(Diagnostic(SourceLocation(filename, 1, 1), None, "no manifest in this file (it is empty)"))
    return documents, diagnostics


# --- The fast path: libyaml's parser, no positions ---------------------------------------------------------

try:
    import yaml.events as _events  # type: ignore[import-untyped]
    from yaml import YAMLError as _LibYAMLError
    from yaml._yaml import CParser as _CParser  # type: ignore[import-untyped]
except ImportError:  # PyYAML without libyaml: every file takes the positioned reader
    _CParser = None

# Characters whose reading differs between YAML 1.1 (libyaml) and 1.2 (ruamel.yaml): NEL, LS and PS are line
# breaks in 1.1 only. Tabs, a byte-order mark inside the text and lone surrogates (text that is not UTF-8) are
# left to the positioned reader too.
_POSITIONED_ONLY = re.compile("[\t\x85\u2028\u2029\ufeff\ud800-\udfff]")


class _PositionedReaderError(Exception):
    """This file needs the positioned reader: it uses more than the fast path reads, or has a problem."""


def _load_fast(texts: Sequence[tuple[str, str]], limits: Limits) -> ManifestSet | None:
    """The manifest set of these (file, text) pairs, or None when it has any problem (the caller then reads it
    with the positioned reader, which reports them). A file that only needs that reader's features is read
    with it here, the others with libyaml."""
    if _CParser is None:
        return None
    scalars = _Scalars()
    documents: list[LoadedDocument] = []
    for filename, text in texts:
        raw_documents = _read_fast(text, filename, limits, scalars)
        if raw_documents is None:
            found, problems = parse_text(text, filename, limits=limits)
            if problems:
                return None
            documents.extend(found)
            continue
        for raw in raw_documents:
            document, problems = _check_document(raw)
            if document is None or problems:
                return None
            documents.append(document)
    from nebctl.schemas.validation import validate_documents

    if validate_documents(documents):
        return None
    return ManifestSet(
        documents={doc.key: doc.manifest for doc in documents},
        locations={doc.key: doc.location for doc in documents},
        files=tuple(filename for filename, _ in texts),
    )


class _Scalars:
    """Scalars and keys as the positioned reader makes them (``_Builder.scalar`` and ``_Builder.key``), with
    the same ruamel.yaml resolver and constructor; cached, since the same text in the same style always gives
    the same value (and manifests repeat most of theirs)."""

    def __init__(self) -> None:
        self.yaml = YAML(typ="safe", pure=True)
        self.values: dict[tuple[str, bool], Any] = {}
        self.tags: dict[tuple[str, bool], str] = {}

    def tag(self, text: str, plain: bool) -> str:
        found = self.tags.get((text, plain))
        if found is None:
            found = self.tags[text, plain] = str(self.yaml.resolver.resolve(ScalarNode, text, (plain, not plain)))
        return found

    def key(self, text: str, plain: bool, mapping: dict[str, Any]) -> str:
        """Keys are their text; a duplicate, a merge key (``<<``) or a key of another type needs the reader."""
        if text in mapping or self.tag(text, plain) not in _SCALAR_TAGS:
            raise _PositionedReaderError
        return text

    def value(self, text: str, plain: bool) -> Any:
        try:
            return self.values[text, plain]
        except KeyError:
            pass
        tag = self.tag(text, plain)
        if tag == _TAG + "timestamp":
            result: Any = text
        elif tag not in _SCALAR_TAGS:
            raise _PositionedReaderError
        else:
            try:
                result = self.yaml.constructor.construct_object(ScalarNode(tag, text), deep=True)
            except (ValueError, YAMLError):
                raise _PositionedReaderError from None
        self.values[text, plain] = result
        return result


_NO_KEY: Any = object()  # in a mapping's frame: no key waits for its value (a list's frame holds None)


class _AtDocument(dict[DataPath, SourceLocation]):
    """The positions of a document read by the fast path: only the document's own. A problem found in it is
    never reported from here (the file is read again with the positioned reader), so any path is there."""

    def __init__(self, location: SourceLocation) -> None:
        super().__init__()
        self.location = location

    def __missing__(self, path: DataPath) -> SourceLocation:
        return self.location


def _read_fast(text: str, filename: str, limits: Limits, scalars: _Scalars) -> list[_Document] | None:
    """A file's documents as plain data, each with its own position only, read with libyaml; None when the file
    needs the positioned reader. Nothing here recurses, and a document is given up as soon as it nests or counts
    close to the limits (the positioned reader then refuses it with its own message): libyaml's parser produces
    one event at a time, so a hostile file costs no more than the events read before it is given up."""
    if len(text.encode("utf-8", errors="surrogatepass")) > limits.max_file_bytes or _POSITIONED_ONLY.search(text):
        return None
    try:
        parser = _CParser(text)
    except UnicodeError:
        return None
    try:
        documents = _documents(parser.get_event, filename, limits, scalars)
    except (_PositionedReaderError, _LibYAMLError, UnicodeError):
        return None
    finally:
        parser.dispose()
    return documents or None  # a file without a manifest is a problem the positioned reader reports


def _documents(next_event: Callable[[], Any], filename: str, limits: Limits, scalars: _Scalars) -> list[_Document]:
    scalar_event, alias_event = _events.ScalarEvent, _events.AliasEvent
    mapping_start, sequence_start = _events.MappingStartEvent, _events.SequenceStartEvent
    max_depth = limits.max_depth - 2  # below both the nesting limit and the scanner's flow-nesting limit
    documents: list[_Document] = []
    nodes = 0
    next_event()  # the stream's start
    while not isinstance(start := next_event(), _events.StreamEndEvent):
        if start.version is not None or start.tags:  # a %YAML or %TAG directive
            raise _PositionedReaderError
        stack: list[list[Any]] = []  # frames: [the list or mapping being filled, its key waiting for a value]
        root: Any = None
        root_event: Any = None
        while True:
            event = next_event()
            kind = type(event)
            if kind is scalar_event:
                if event.anchor is not None or event.tag is not None:
                    raise _PositionedReaderError
                nodes += 1
                plain = bool(event.implicit[0])
                if stack and stack[-1][1] is _NO_KEY:
                    stack[-1][1] = scalars.key(event.value, plain, stack[-1][0])
                    continue
                value = scalars.value(event.value, plain)
            elif kind is mapping_start or kind is sequence_start:
                if event.anchor is not None or event.tag is not None or len(stack) >= max_depth:
                    raise _PositionedReaderError
                if stack and stack[-1][1] is _NO_KEY:
                    raise _PositionedReaderError  # a list or mapping as a key
                nodes += 1
                value = {} if kind is mapping_start else []
            elif kind is alias_event:
                raise _PositionedReaderError
            elif stack:  # the end of a list or mapping
                stack.pop()
                continue
            else:  # the document's end
                break
            if nodes > limits.max_nodes:
                raise _PositionedReaderError
            if stack:
                frame = stack[-1]
                if frame[1] is None:
                    frame[0].append(value)
                else:
                    frame[0][frame[1]] = value
                    frame[1] = _NO_KEY
            else:
                root, root_event = value, event
            if kind is not scalar_event:
                stack.append([value, _NO_KEY if kind is mapping_start else None])
        if root_event is None or (type(root_event) is scalar_event and root is None):
            continue  # an empty document (``---`` alone): dropped, as the positioned reader does
        mark = root_event.start_mark
        location = SourceLocation(filename, mark.line + 1, mark.column + 1)
        documents.append(_Document(root, location, _AtDocument(location), _AtDocument(location)))
    return documents


# --- Documents to models ----------------------------------------------------------------------------------


def parse_text(
    text: str, filename: str = "<text>", *, limits: Limits = DEFAULT_LIMITS
) -> tuple[list[LoadedDocument], list[Diagnostic]]:
    """Check every document of one file on its own; returns the valid ones and the problems of the others."""
    raw_documents, diagnostics = read_yaml(text, filename, limits=limits)
    loaded: list[LoadedDocument] = []
    for raw in raw_documents:
        document, problems = _check_document(raw)
        if document is not None:
            loaded.append(document)
        diagnostics.extend(problems)
    # Reading errors (tags, aliases) and model errors are found in separate passes: show them in file order.
    return loaded, _sorted(diagnostics)


_KIND_NAMES = [kind.value for kind in Kind]
_SCALAR_NAMES = {str: "a string", int: "a number", float: "a number", bool: "a boolean"}


def _check_document(raw: _Document) -> tuple[LoadedDocument | None, list[Diagnostic]]:
    data = raw.data
    if not isinstance(data, dict):
        shape = "a list" if isinstance(data, list) else _SCALAR_NAMES.get(type(data), "a single value")
        message = f"a manifest must be a mapping with apiVersion, kind, metadata and spec, not {shape}"
        return None, [Diagnostic(raw.location, None, message)]

    diagnostics: list[Diagnostic] = []
    positions, keys = raw.positions, raw.key_positions
    metadata = data.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
    name = name if isinstance(name, str) else None
    namespace = namespace if isinstance(namespace, str) else None

    kind_value = data.get("kind")
    kind: Kind | None = None
    if "kind" not in data:
        diagnostics.append(Diagnostic(raw.location, None, f"missing 'kind': expected one of {', '.join(_KIND_NAMES)}"))
    elif kind_value in _KIND_NAMES:
        kind = Kind(kind_value)
    else:
        diagnostics.append(Diagnostic(positions[("kind",)], None, _unknown_kind_message(kind_value)))
    subject = subject_of(kind.value, namespace, name) if kind is not None else None

    api_version = data.get("apiVersion")
    if "apiVersion" not in data:
        diagnostics.append(Diagnostic(raw.location, subject, f"missing 'apiVersion': expected '{API_VERSION}'"))
    elif api_version != API_VERSION:
        diagnostics.append(
            Diagnostic(
                positions[("apiVersion",)],
                subject,
                f"unsupported apiVersion {_show(api_version)}: expected '{API_VERSION}'",
            )
        )
    if kind is None:
        return None, diagnostics

    if kind.cluster_scoped and namespace not in (None, DEFAULT_NAMESPACE):
        diagnostics.append(
            Diagnostic(
                positions[("metadata", "namespace")],
                subject_of(kind.value, None, name),
                f"{kind.value} is cluster-scoped: it has no namespace (remove 'namespace: {namespace}')",
            )
        )
        subject = subject_of(kind.value, None, name)

    model = MODEL_BY_KIND[kind]
    # A wrong apiVersion was reported above; validating with the right one reports every other problem too.
    candidate = {**data, "apiVersion": API_VERSION}
    try:
        manifest = model.model_validate(candidate)
    except pydantic.ValidationError as error:
        diagnostics.extend(_translate_errors(error, model, candidate, subject, raw))
        return None, _sorted(diagnostics)
    if diagnostics:
        return None, _sorted(diagnostics)
    loaded = typing.cast(AnyManifest, manifest)
    key = ResourceKey.of(kind, loaded.metadata.name, loaded.metadata.namespace)
    document = LoadedDocument(
        key=key,
        manifest=loaded,
        location=raw.location,
        positions=types.MappingProxyType(positions),
        key_positions=types.MappingProxyType(keys),
    )
    return document, []


def _sorted(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    return sorted(diagnostics, key=lambda d: (d.location.line, d.location.column) if d.location else (0, 0))


def _unknown_kind_message(value: object) -> str:
    if not isinstance(value, str):
        return f"'kind' must be a string, one of {', '.join(_KIND_NAMES)}; got {_show(value)}"
    alias = KIND_ALIASES.get(value.strip().lower())
    suggestion = alias.value if alias is not None else closest_match(value, _KIND_NAMES)
    hint = f", did you mean '{suggestion}'?" if suggestion else f": expected one of {', '.join(_KIND_NAMES)}"
    return f"unknown kind '{value}'{hint}"


def closest_match(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to ``word`` (case-insensitively), if one is close enough to be a likely typo."""
    by_folded = {candidate.lower(): candidate for candidate in candidates}
    matches = difflib.get_close_matches(word.lower(), list(by_folded), n=1, cutoff=0.6)
    return by_folded[matches[0]] if matches else None


def _show(value: object) -> str:
    """A value as users wrote it, quoted when it is text, shortened when long."""
    if isinstance(value, str):
        text = repr(value) if len(value) <= 60 else repr(value[:57] + "...")
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


# --- pydantic errors to diagnostics -----------------------------------------------------------------------


@dataclass
class _Error:
    type: str
    path: DataPath  # where in the data the error is
    union_site: DataPath | None  # the path of the union whose branch reported it, if any
    branch: str | None
    field_name: str | None  # the missing field, for 'missing'
    on_key: bool  # the error is about a mapping key (a label's name, say)
    raw: Any  # pydantic's error dict


def _resolve(error: Any, data: Any) -> _Error:
    """Walk pydantic's ``loc`` through the data; parts that are not in the data are union branch tags."""
    loc: tuple[Any, ...] = tuple(error["loc"])
    path: list[str | int] = []
    node = data
    union_site: DataPath | None = None
    branch: str | None = None
    field_name: str | None = None
    on_key = False
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if _has_child(node, part):
            path.append(part)
            node = node[part]
        elif part == "[key]":
            on_key = True
        elif last and error["type"] == "missing":
            field_name = str(part)
        elif union_site is None:
            union_site, branch = tuple(path), str(part)
    return _Error(error["type"], tuple(path), union_site, branch, field_name, on_key, error)


def _has_child(node: Any, part: Any) -> bool:
    if isinstance(node, dict):
        return isinstance(part, str) and part in node
    if isinstance(node, list):
        return isinstance(part, int) and 0 <= part < len(node)
    return False


def _prune_union_branches(errors: list[_Error]) -> list[_Error]:
    """Keep the errors of the union branch the user meant (``source: {marketplace: ...}`` is not a string).

    A branch that only failed on its type is dropped when another branch got further. When every branch
    failed on its type, one error remains, saying which types would do.
    """
    by_site: dict[DataPath, list[_Error]] = {}
    for error in errors:
        if error.union_site is not None:
            by_site.setdefault(error.union_site, []).append(error)
    dropped: set[int] = set()
    for site_errors in by_site.values():
        deep = [e for e in site_errors if not _is_type_error(e)]
        if deep:
            dropped.update(id(e) for e in site_errors if _is_type_error(e))
        else:
            expected = " or ".join(dict.fromkeys(_type_name(e) for e in site_errors))
            first = site_errors[0]
            first.type = "union_type"
            first.raw = {**first.raw, "ctx": {"expected": expected}}
            dropped.update(id(e) for e in site_errors[1:])
    return [error for error in errors if id(error) not in dropped]


def _is_type_error(error: _Error) -> bool:
    return error.type.endswith("_type") or error.type in ("literal_error", "enum")


_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "a boolean",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def _type_name(error: _Error) -> str:
    return _TYPE_NAMES.get(error.type, "another value")


def _translate_errors(
    validation_error: pydantic.ValidationError,
    model: type[BaseModel],
    data: dict[str, Any],
    subject: str | None,
    raw: _Document,
) -> list[Diagnostic]:
    errors = [_resolve(e, data) for e in validation_error.errors(include_url=False)]
    diagnostics: list[Diagnostic] = []
    seen: set[tuple[SourceLocation, str]] = set()
    for error in _prune_union_branches(errors):
        location = _error_location(error, raw)
        message = _message(error, model, data)
        if (location, message) not in seen:
            seen.add((location, message))
            diagnostics.append(Diagnostic(location, subject, message))
    return diagnostics


def _error_location(error: _Error, raw: _Document) -> SourceLocation:
    if error.type == "extra_forbidden" or error.on_key:
        found = raw.key_positions.get(error.path)
        if found is not None:
            return found
    cause = (error.raw.get("ctx") or {}).get("error")
    offset = getattr(cause, "position", None)
    if isinstance(offset, int) and error.path in raw.text_offsets and error.path in raw.positions:
        start = raw.positions[error.path]
        return SourceLocation(start.file, start.line, start.column + raw.text_offsets[error.path] + offset)
    for end in range(len(error.path), -1, -1):
        found = raw.positions.get(error.path[:end])
        if found is not None:
            return found
    return raw.location


def format_path(path: Sequence[str | int]) -> str:
    """``("spec", "disks", 0, "size")`` as users write it: ``spec.disks[0].size``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _message(error: _Error, model: type[BaseModel], data: Any) -> str:
    raw = error.raw
    kind = error.type
    ctx: dict[str, Any] = raw.get("ctx") or {}
    value = raw.get("input")
    where = format_path(error.path[:-1] if error.on_key else error.path)
    field_label = where or "the document"

    if kind == "extra_forbidden":
        name = str(error.path[-1]) if error.path else "?"
        fields = model_fields_at(model, error.path[:-1])
        suggestion = closest_match(name, fields) if fields else None
        if suggestion:
            return f"unknown field '{name}', did you mean '{suggestion}'?"
        listed = f"; expected one of: {', '.join(fields)}" if fields else ""
        return f"unknown field '{name}'{listed}"
    if kind == "missing":
        parent = f" in {format_path(error.path)}" if error.path else ""
        return f"missing required field '{error.field_name}'{parent}"
    if kind in ("value_error", "assertion_error"):
        detail = str(ctx.get("error", raw["msg"]))
        return f"{where}: {detail}" if where else detail
    if kind in ("enum", "literal_error"):
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        suggestion = closest_match(str(value), choices) if isinstance(value, str) else None
        hint = f", did you mean '{suggestion}'?" if suggestion else ""
        return f"{field_label}: invalid value {_show(value)}: expected {ctx.get('expected')}{hint}"
    if kind == "string_pattern_mismatch":
        return _pattern_message(error, field_label, value, str(ctx.get("pattern", "")))
    if kind == "union_type":
        return f"{field_label}: expected {ctx['expected']}, got {_show(value)}"
    if kind in _TYPE_NAMES or kind in _PARSING_NAMES or kind.endswith("_parsing"):
        expected = _TYPE_NAMES.get(kind) or _PARSING_NAMES.get(kind, "another value")
        hint = " (quote it to make it text)" if kind == "string_type" and isinstance(value, int | float) else ""
        return f"{field_label}: expected {expected}, got {_show(value)}{hint}"
    if kind in ("too_short", "too_long"):
        bound = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        relation = "at least" if kind == "too_short" else "at most"
        return (
            f"{field_label}: needs {relation} {bound} item{'s' if bound != 1 else ''}, got {ctx.get('actual_length')}"
        )
    if kind in ("string_too_long", "string_too_short"):
        bound = ctx.get("max_length") if kind == "string_too_long" else ctx.get("min_length")
        relation = "at most" if kind == "string_too_long" else "at least"
        return f"{field_label}: must have {relation} {bound} characters, got {_show(value)}"
    if kind in _COMPARISONS:
        symbol, bound_key = _COMPARISONS[kind]
        return f"{field_label}: must be {symbol} {ctx.get(bound_key)}, got {_show(value)}"
    if kind.startswith(("ip_v4", "ip_any")):
        what = "an IPv4 network such as 10.0.0.0/24" if "network" in kind else "an IPv4 address"
        return f"{field_label}: expected {what}, got {_show(value)}"
    message = str(raw["msg"])
    return f"{field_label}: {message[:1].lower()}{message[1:]}"


_PARSING_NAMES = {
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_parsing": "a number",
    "bool_parsing": "true or false",
}

_COMPARISONS = {
    "greater_than": (">", "gt"),
    "greater_than_equal": (">=", "ge"),
    "less_than": ("<", "lt"),
    "less_than_equal": ("<=", "le"),
}


def _hook_events() -> list[str]:
    heads = ("vm", "image", "network", "securitygroup", "datastore", "host", "apply", "drift")
    tails = [
        "created", "running", "stopped", "suspended", "failed", "deleted", "unknown",
        "migrated", "updated", "error", "started", "finished", "detected",
    ]  # fmt: skip
    return [f"{h}.{t}" for h in heads for t in tails if re.fullmatch(HOOK_EVENT_PATTERN, f"{h}.{t}")]


HOOK_EVENTS: tuple[str, ...] = (*_hook_events(), "*")
"""Every event a hook can be registered for (``*`` is all of them)."""


def _pattern_message(error: _Error, field_label: str, value: object, pattern: str) -> str:
    shown = _show(value)
    if pattern == NAME_PATTERN:
        return (
            f"{field_label}: invalid name {shown}: use lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    if pattern == HOOK_EVENT_PATTERN:
        suggestion = closest_match(str(value), HOOK_EVENTS)
        hint = f", did you mean '{suggestion}'?" if suggestion else f"; expected one of {', '.join(HOOK_EVENTS)}"
        return f"{field_label}: unknown event {shown}{hint}"
    if error.on_key and "env" in error.path:
        return f"{field_label}: invalid variable name {shown}: use letters, digits and '_', not starting with a digit"
    if error.on_key:
        return (
            f"{field_label}: invalid key {shown}: use letters, digits and '-', '_', '.', '/', "
            "starting and ending with a letter or digit"
        )
    if error.path and error.path[-1] == "marketplace":
        return f"{field_label}: invalid marketplace source {shown}: expected MARKETPLACE/APP, such as hub/debian-12"
    if len(error.path) >= 2 and error.path[-2] == "dependsOn":
        return f"{field_label}: invalid reference {shown}: expected KIND/NAME, such as network/lan"
    if error.path and (error.path[-1] == "ports" or (len(error.path) >= 2 and error.path[-2] == "ports")):
        return f"{field_label}: invalid port {shown}: expected a port (22) or a range (8000-8080)"
    if pattern == "^/":
        return f"{field_label}: expected an absolute path (starting with '/'), got {shown}"
    if pattern == "^https?://":
        return f"{field_label}: expected an http:// or https:// URL, got {shown}"
    if error.path and error.path[-1] == "sha256":
        return f"{field_label}: invalid sha256 {shown}: expected 64 lower-case hexadecimal digits"
    return f"{field_label}: invalid value {shown}: must match {pattern}"


def model_fields_at(model: type[BaseModel], path: DataPath) -> list[str]:
    """The field names of the model found at ``path`` below ``model`` (for 'did you mean')."""
    current: Any = model
    for part in path:
        if isinstance(part, int):
            current = item_type(current)
        elif isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            current = current.model_fields[part].annotation
        else:
            return []
        current = model_in(current) or current
    found = model_in(current)
    return list(found.model_fields) if found is not None else []


def model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as ``X | None`` or ``Annotated[X, ...]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated or origin is typing.Union or origin is types.UnionType:
        for argument in typing.get_args(annotation):
            found = model_in(argument)
            if found is not None:
                return found
    return None


def item_type(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return item_type(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        for argument in typing.get_args(annotation):
            item = item_type(argument)
            if item is not None:
                return item
        return None
    if origin is list:
        return typing.get_args(annotation)[0]
    return None


# --- Writing ----------------------------------------------------------------------------------------------


def dump_text(manifests: Iterable[AnyManifest], *, reveal_secrets: bool = False) -> str:
    """Manifests as a multi-document YAML string that ``load_text`` reads back into equal models.

    Secrets print as ``**********`` unless ``reveal_secrets`` is set (which only tests and exports ask for).
    """
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    documents = [
        manifest.model_dump(mode="json", exclude_defaults=True, context={"reveal_secrets": reveal_secrets})
        for manifest in manifests
    ]
    for document in documents:
        # apiVersion and kind are literals with no default: exclude_defaults keeps them, spelled out for clarity.
        document.setdefault("apiVersion", API_VERSION)
    stream = io.StringIO()
    yaml.dump_all(documents, stream)
    return stream.getvalue()
