"""The positioned YAML reader: ruamel.yaml's safe composer, with plain data built here from the node graph.

Building the data itself (rather than letting ruamel.yaml construct it) lets it keep each value's position,
refuse tags that would construct objects, and measure what aliases expand to *before* expanding anything. It
is pure Python, so ``schemas.loading`` uses it only for files that ``reading.fast`` leaves to it (tags,
anchors, merge keys, directives, tabs...) and for every file of a set that has a problem: each diagnostic is
located by this reader.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.scanner import Scanner, ScannerError

from nebctl.schemas.diagnostics import DataPath, Diagnostic, SourceLocation
from nebctl.schemas.reading.limits import DEFAULT_LIMITS, Limits
from nebctl.schemas.reading.raw_documents import SCALAR_TAGS, YAML_TAG, RawDocument


def read_yaml(
    text: str, filename: str, *, limits: Limits = DEFAULT_LIMITS
) -> tuple[list[RawDocument], list[Diagnostic]]:
    """Parse YAML text into plain documents with positions; empty documents (``---`` alone) are dropped."""
    documents: list[RawDocument] = []
    diagnostics: list[Diagnostic] = []
    for item in iter_yaml(text, filename, limits=limits):
        if isinstance(item, Diagnostic):
            diagnostics.append(item)
        else:
            documents.append(item)
    return documents, diagnostics


def iter_yaml(text: str, filename: str, *, limits: Limits = DEFAULT_LIMITS) -> Iterator[RawDocument | Diagnostic]:
    """``read_yaml`` one document (or problem) at a time, in file order: a caller that has seen enough
    problems stops reading, and the rest of the file is never composed (composing is most of the cost)."""
    start = SourceLocation(filename, 1, 1)
    if limits.exceeds_file_size(text):
        yield limits.file_too_large(filename)
        return
    yaml = YAML(typ="safe", pure=True)
    yaml.Scanner = type("Scanner", (_FlowDepthLimitedScanner,), {"max_flow_depth": limits.max_depth})
    builder = _Builder(yaml, filename, limits)
    found = False
    try:
        for root in yaml.compose_all(io.StringIO(text)):
            if root is None or (isinstance(root, ScalarNode) and root.tag == YAML_TAG + "null"):
                continue
            found = True
            try:
                document = builder.build(root)
            except _DocumentError as error:
                yield Diagnostic(error.location, None, error.message)
            else:
                yield document
    except MarkedYAMLError as error:
        # The parser cannot resynchronise after a syntax error: the documents before it are still checked.
        found = True
        yield _yaml_error(error, filename)
    except ReaderError as error:
        found = True
        where = _text_location(text, error.position, filename)
        yield Diagnostic(
            where, None, f"invalid YAML: character U+{error.character:04X} is not allowed ({error.reason})"
        )
    except YAMLError as error:
        found = True
        yield Diagnostic(start, None, f"invalid YAML: {error}")
    except RecursionError:
        found = True
        yield Diagnostic(start, None, "invalid YAML: nesting too deep to read")
    if not found:
        yield Diagnostic(start, None, "no manifest in this file (it is empty)")


class _DocumentError(Exception):
    """A problem that stops the reading of one document (or the rest of a file)."""

    def __init__(self, location: SourceLocation | None, message: str) -> None:
        super().__init__(message)
        self.location = location
        self.message = message


class _Builder:
    """Turns a composed node graph into plain data, refusing anything unsafe or too large."""

    def __init__(self, yaml: YAML, filename: str, limits: Limits) -> None:
        self.yaml = yaml
        self.filename = filename
        self.limits = limits

    def at(self, node: Node) -> SourceLocation:
        return SourceLocation.of_mark(self.filename, node.start_mark)

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

    def build(self, root: Node) -> RawDocument:
        self.expanded_size(root)
        document = RawDocument(None, self.at(root), {}, {})
        document.data = self.value(root, (), document)
        return document

    def value(self, node: Node, path: DataPath, document: RawDocument) -> Any:
        document.positions.setdefault(path, self.at(node))
        if isinstance(node, ScalarNode):
            if node.style in (None, '"', "'") and node.start_mark.line == node.end_mark.line:
                document.text_offsets.setdefault(path, 0 if node.style is None else 1)
            return self.scalar(node)
        if isinstance(node, SequenceNode):
            self.check_tag(node, YAML_TAG + "seq")
            return [self.value(child, (*path, index), document) for index, child in enumerate(node.value)]
        if isinstance(node, MappingNode):
            self.check_tag(node, YAML_TAG + "map")
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
        own = [(k, v) for k, v in node.value if k.tag != YAML_TAG + "merge"]
        merges = [v for k, v in node.value if k.tag == YAML_TAG + "merge"]
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
        self.check_tag(node, *SCALAR_TAGS)
        # Keys are names of fields, labels or variables: always text, as written (``80:`` is the key "80").
        return str(node.value)

    def scalar(self, node: ScalarNode) -> Any:
        if node.tag == YAML_TAG + "timestamp":
            # No field is a date; a date-like value is text (an annotation, say), exactly as written.
            return str(node.value)
        self.check_tag(node, *SCALAR_TAGS)
        try:
            return self.yaml.constructor.construct_object(node, deep=True)
        except (ValueError, YAMLError) as error:
            # The first clause says what is wrong; Python's advice on raising its limits is not for users.
            reason = str(error).split(";")[0]
            raise _DocumentError(
                self.at(node), f"invalid {str(node.tag).removeprefix(YAML_TAG)} value: {reason}"
            ) from None

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
    return "!!" + tag.removeprefix(YAML_TAG) if tag.startswith(YAML_TAG) else tag


def _yaml_error(error: MarkedYAMLError, filename: str) -> Diagnostic:
    mark = error.problem_mark or error.context_mark
    location = SourceLocation.of_mark(filename, mark) if mark is not None else None
    problem = error.problem or str(error)
    if error.context and error.context_mark is not None and error.context_mark is not mark:
        problem = f"{problem} ({error.context} at line {error.context_mark.line + 1})"
    return Diagnostic(location, None, f"invalid YAML: {problem}")
