"""The fast YAML reader: libyaml's parser (C, through PyYAML's event API), no positions.

The positioned reader (``reading.positioned``) is pure Python and keeps a position for every value, which only
diagnostics need. ``schemas.loading`` reads each file with this one first: it resolves and constructs scalars
with the same ruamel.yaml resolver and constructor (YAML 1.2, so the values are the same), and gives up with
``None`` on anything beyond plain mappings, lists and scalars (tags, anchors, merge keys, directives...) and
on anything that would be a problem, which the positioned reader then reports.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import ScalarNode

from nebctl.schemas.diagnostics import DataPath, SourceLocation
from nebctl.schemas.reading.limits import Limits
from nebctl.schemas.reading.raw_documents import SCALAR_TAGS, YAML_TAG, RawDocument

try:
    import yaml.events as _events  # type: ignore[import-untyped]
    from yaml import YAMLError as _LibYAMLError
    from yaml._yaml import CParser as _CParser  # type: ignore[import-untyped]
except ImportError:  # PyYAML without libyaml: every file takes the positioned reader
    _CParser = None

LIBYAML_AVAILABLE: bool = _CParser is not None

# Characters whose reading differs between YAML 1.1 (libyaml) and 1.2 (ruamel.yaml): NEL, LS and PS are line
# breaks in 1.1 only. Tabs, a byte-order mark inside the text and lone surrogates (text that is not UTF-8) are
# left to the positioned reader too.
_POSITIONED_ONLY = re.compile("[\t\x85\u2028\u2029\ufeff\ud800-\udfff]")


class _PositionedReaderError(Exception):
    """This file needs the positioned reader: it uses more than the fast path reads, or has a problem."""


class Scalars:
    """Scalars and keys as the positioned reader makes them (``_Builder.scalar`` and ``_Builder.key`` in
    ``reading.positioned``), with the same ruamel.yaml resolver and constructor; cached, since the same text in
    the same style always gives the same value (and manifests repeat most of theirs)."""

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
        if text in mapping or self.tag(text, plain) not in SCALAR_TAGS:
            raise _PositionedReaderError
        return text

    def value(self, text: str, plain: bool) -> Any:
        try:
            return self.values[text, plain]
        except KeyError:
            pass
        tag = self.tag(text, plain)
        if tag == YAML_TAG + "timestamp":
            result: Any = text
        elif tag not in SCALAR_TAGS:
            raise _PositionedReaderError
        else:
            try:
                result = self.yaml.constructor.construct_object(ScalarNode(tag, text), deep=True)
            except (ValueError, YAMLError):
                raise _PositionedReaderError from None
        self.values[text, plain] = result
        return result


def read_fast(text: str, filename: str, limits: Limits, scalars: Scalars) -> list[RawDocument] | None:
    """A file's documents as plain data, each with its own position only, read with libyaml; None when the file
    needs the positioned reader. Nothing here recurses, and a document is given up as soon as it nests or counts
    close to the limits (the positioned reader then refuses it with its own message): libyaml's parser produces
    one event at a time, so a hostile file costs no more than the events read before it is given up."""
    if limits.exceeds_file_size(text) or _POSITIONED_ONLY.search(text):
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


_NO_KEY: Any = object()  # in a mapping's frame: no key waits for its value (a list's frame holds None)


class _AtDocument(dict[DataPath, SourceLocation]):
    """The positions of a document read by the fast path: only the document's own. A problem found in it is
    never reported from here (the file is read again with the positioned reader), so any path is there."""

    def __init__(self, location: SourceLocation) -> None:
        super().__init__()
        self.location = location

    def __missing__(self, path: DataPath) -> SourceLocation:
        return self.location


def _documents(  # noqa: PLR0912, PLR0915 - the event loop of the fast reader, kept in one frame for speed
    next_event: Callable[[], Any], filename: str, limits: Limits, scalars: Scalars
) -> list[RawDocument]:
    scalar_event, alias_event = _events.ScalarEvent, _events.AliasEvent
    mapping_start, sequence_start = _events.MappingStartEvent, _events.SequenceStartEvent
    max_depth = limits.max_depth - 2  # below both the nesting limit and the scanner's flow-nesting limit
    documents: list[RawDocument] = []
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
        location = SourceLocation.of_mark(filename, root_event.start_mark)
        documents.append(RawDocument(root, location, _AtDocument(location), _AtDocument(location)))
    return documents
