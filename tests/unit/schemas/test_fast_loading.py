"""The loader's two readers agree: libyaml's events (the fast path of ``load_paths`` and ``load_text``) give the
same values, documents and locations as the positioned ruamel.yaml reader, and leave it everything else.

YAML 1.1 (libyaml's grammar, PyYAML's resolver) and 1.2 (ruamel.yaml's) read some scalars differently (``yes``,
``017``, ``1_000``, ``12:30``, dates...): the fast path parses with libyaml but resolves and constructs with
ruamel.yaml's 1.2 resolver and constructor, so that none of those differences reaches a manifest.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from nebctl.schemas import loading
from nebctl.schemas.loading import DEFAULT_LIMITS, Limits, ManifestError, load_paths, load_text
from nebctl.schemas.reading import fast as fast_reader
from nebctl.schemas.reading.positioned import read_yaml
from tests.conftest import REPO_ROOT


def positioned(text: str, filename: str = "t.yaml") -> list[tuple[Any, loading.SourceLocation]]:
    documents, problems = read_yaml(text, filename)
    assert problems == []
    return [(document.data, document.location) for document in documents]


def fast(text: str, filename: str = "t.yaml", limits: Limits = DEFAULT_LIMITS) -> list[tuple[Any, Any]] | None:
    documents = fast_reader.read_fast(text, filename, limits, fast_reader.Scalars())
    return None if documents is None else [(document.data, document.location) for document in documents]


def typed(value: Any) -> Any:
    """A value with the type of every part spelled out: ``1 == 1.0 == True`` must not hide a difference."""
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed(item) for item in value]
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    return (type(value).__name__, value)


def same(text: str) -> None:
    """Both readers read ``text`` (the fast one does not hand it over) into identical values and locations."""
    expected = positioned(text)
    found = fast(text)
    assert found is not None, f"the fast path gave up on {text!r}"
    assert [(typed(data), location) for data, location in found] == [
        (typed(data), location) for data, location in expected
    ]


def test_the_fast_path_is_available() -> None:
    assert fast_reader.LIBYAML_AVAILABLE, "PyYAML with libyaml is a dependency: the fast path needs it"


@pytest.mark.parametrize(
    "directory", sorted(p for p in (REPO_ROOT / "manifests").iterdir() if p.is_dir()), ids=lambda p: p.name
)
def test_the_repository_manifests_load_the_same_both_ways(directory: Path) -> None:
    files, _ = loading.expand_paths([directory])
    for file in files:
        text = Path(file).read_text(encoding="utf-8")
        same(text)
    loaded = load_paths([directory])
    documents, diagnostics, read = loading.read_paths([directory])
    assert diagnostics == []
    assert loaded.documents == {document.key: document.manifest for document in documents}
    assert list(loaded.documents) == [document.key for document in documents]
    assert loaded.locations == {document.key: document.location for document in documents}
    assert loaded.files == read


# Scalars whose meaning differs between YAML 1.1 and 1.2, or between careless readers.
TRICKY_SCALARS = [
    # booleans and nulls: 1.2 has only true/false and null/~/empty
    "yes", "no", "Yes", "NO", "on", "off", "On", "y", "n", "Y", "N",
    "true", "false", "True", "FALSE", "tRUE", "null", "Null", "NULL", "~", "", "nULL",
    # integers: octal, hexadecimal, binary, underscores, signs, sexagesimal (1.1 only)
    "0", "-0", "+12", "017", "0o17", "0O17", "08", "0x1F", "0X1f", "0b101", "1_000", "1__0", "12:30", "1:30:00",
    "190:20:30", "00", "-017", "99999999999999999999999",
    # floats
    "1.5", "1e3", "1E3", "1.5e+3", "-1.5e-3", "1.", ".5", ".inf", "-.Inf", "+.INF", ".nan", ".NaN", "1_000.5",
    "6.8523015e+5", "685.230_15e+03", "190:20:30.15", "1e", "e3", "0.1e1_0",
    # dates and times: text, exactly as written
    "2024-01-01", "2001-12-14t21:59:43.10-05:00", "2001-12-14 21:59:43.10 -5", "2002-12-14", "2024-1-1",
    # things that look special and are text
    "<<x", "0x", "0o", "1-2", "v1.2.3", "10.0.0.1/24", "52:54:00:ab:cd:ef", "16Mi", "2Gi", "labels.zone == 'a'",
    "a # not a comment", "http://x/y?z#w", "-", "--", "x: y",
]  # fmt: skip


@pytest.mark.parametrize("scalar", TRICKY_SCALARS)
def test_plain_scalars_resolve_as_in_yaml_1_2(scalar: str) -> None:
    text = f"plain: {scalar}\nlist: [{scalar}]\n" if scalar not in ("-", "--", "x: y") else f"plain: '{scalar}'\n"
    if scalar == "a # not a comment":
        text = "plain: a # a comment\n"
    if scalar == "x: y":
        text = "plain: 'x: y'\n"
    same(text)


@pytest.mark.parametrize("scalar", TRICKY_SCALARS)
def test_quoted_scalars_are_text(scalar: str) -> None:
    escaped = scalar.replace("'", "''")
    same(f"single: '{escaped}'\ndouble: \"{scalar}\"\nlist: ['{escaped}', \"{scalar}\"]\n")


@pytest.mark.parametrize(
    "text",
    [
        # keys are their text, whatever they would resolve to
        "80: a\nyes: b\ntrue: c\nnull: d\n~: e\n0x1F: f\n1.5: g\n'quoted': h\n\"double\": i\n",
        # block scalars: literal, folded, chomping, explicit indentation
        "a: |\n  line 1\n  line 2\n\nb: >\n  folded\n  text\n\n  paragraph\nc: |-\n  stripped\nd: |+\n  kept\n\n",
        "a: |2\n   indented\n  two\nb: >-\n  x\n   more indented\n  y\n",
        # multi-line plain and quoted scalars
        "a: a plain\n  scalar on\n  three lines\nb: 'single\n  quoted'\nc: \"double\n  quoted\\\n  joined\"\n",
        # escapes in double quotes
        'a: "\\x41\\u00e9\\U0001F600\\n\\t\\\\ \\" \\/ \\0 \\a \\e \\N \\_ \\L \\P"\n',
        # unicode, long text, emptiness
        "a: émoji 😀 ünïcode\nb: " + "x" * 5000 + "\nc:\nd: []\ne: {}\nf: ''\n",
        # flow collections, nested, with trailing commas and explicit keys
        "a: {b: [1, 2, {c: d}], e: [], f: {g: [h, [i]]},}\nb: [x, y,]\n",
        "? explicit\n: value\n? another\n",
        # lists of mappings in block style, compact and indented
        "a:\n- b: 1\n  c: 2\n-   d: 3\n- - nested\n  - list\n",
        # comments everywhere
        "# head\na: 1 # tail\n# between\nb: # before the value\n  c: 2\n",
        # CRLF and CR line endings
        "a: 1\r\nb:\r\n  - x\r\n  - 'y'\r\nc: |\r\n  text\r\n",
        "a: 1\rb:\r  - x\rc: >\r  folded\r  text\r",
    ],
    ids=[
        "keys", "block-scalars", "block-indentation", "multi-line", "escapes", "unicode", "flow", "explicit-keys",
        "block-lists", "comments", "crlf", "cr",
    ],
)  # fmt: skip
def test_values_and_structure_are_the_same(text: str) -> None:
    same(text)


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\n",
        "---\na: 1\n",
        "# comment\n\n---\n# another\na: 1\n---\nb: 2\n...\n---\nc: 3\n",
        "--- {a: 1}\n--- [b]\n---\n",
        "---\n---\n\n---\na: 1\n",
        "   a: 1\n   b: 2\n",
        "--- >\n  text\n",
        "--- 42\n---\nx: y\n",
        "---\n~\n---\nnull\n---\na: b\n",
    ],
)
def test_documents_and_their_locations_are_the_same(text: str) -> None:
    same(text)


@pytest.mark.parametrize(
    "text",
    [
        "a: &x 1\nb: *x\n",  # anchors and aliases
        "a: =\n",  # the 1.2 resolver's !!value, which the positioned reader refuses
        "base: &b {x: 1}\nc:\n  <<: *b\n",  # merge keys
        "a: !!str 1\n",  # tags
        "a: !custom x\n",
        "%YAML 1.1\n---\na: yes\n",  # directives (1.1 would read yes as true)
        "%TAG !e! tag:example.com,2000:\n---\na: 1\n",
        "a:\tb\n",  # tabs
        "a: b\x85c\n",  # NEL, LS, PS: line breaks in YAML 1.1 only
        "a: b\u2028c\n",
        "a: x\ufeffy\n",  # a byte-order mark inside the text
        "a: \udc80\n",  # a lone surrogate (text that came from no UTF-8)
        "a: \x00\n",  # control characters
        "a: \x07\n",
        "a: 1\na: 2\n",  # duplicate keys
        "2024-01-01: date key\n",  # a key of another type
        "[a]: list key\n",
        "? {a: 1}\n: mapping key\n",
        "a: [1, 2\n",  # syntax errors
        "a: b: c\n",
        "a: '\n",
        "",  # no document
        "# only a comment\n",
        "---\n",
        "a: " + "[" * 70 + "]" * 70 + "\n",  # nesting near the limits
    ],
)
def test_everything_else_is_left_to_the_positioned_reader(text: str) -> None:
    assert fast(text) is None


def test_node_and_size_limits_are_left_to_the_positioned_reader() -> None:
    text = "a: [" + ", ".join(["x"] * 50) + "]\n"
    assert fast(text) is not None
    assert fast(text, limits=Limits(max_nodes=40)) is None
    assert fast(text, limits=Limits(max_file_bytes=100)) is None
    deep = "a:\n" + "".join("  " * level + f"k{level}:\n" for level in range(1, 70)) + "  " * 70 + "v\n"
    assert fast(deep) is None


VM = "apiVersion: nebctl/v1\nkind: VirtualMachine\nmetadata: {name: %s}\nspec: {memory: 1Gi%s}\n"


def test_a_set_with_a_problem_is_reported_by_the_positioned_reader(tmp_path: Path) -> None:
    """Whatever the fast path reads first, every diagnostic is the positioned reader's."""
    (tmp_path / "a.yaml").write_text(VM % ("web-1", "") + "---\n" + VM % ("web-2", ", dependsOn: [vm/nope]"))
    (tmp_path / "b.yaml").write_text(VM % ("web-3", ", vcpu: many"))
    with pytest.raises(ManifestError) as caught:
        load_paths([tmp_path])
    documents, diagnostics, files = loading.read_paths([tmp_path])
    with pytest.raises(ManifestError) as expected:
        loading._finish(documents, diagnostics, files)
    assert [str(d) for d in caught.value.diagnostics] == [str(d) for d in expected.value.diagnostics]
    assert [str(d).removeprefix(f"{tmp_path}/") for d in caught.value.diagnostics] == [
        "b.yaml:4:27: VirtualMachine/web-3: spec.vcpu: expected an integer, got 'many'",
        "a.yaml:9:33: VirtualMachine/web-2: dependsOn: VirtualMachine 'nope' not found in namespace 'default'",
    ]


def test_a_file_that_needs_the_positioned_reader_joins_the_others(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(VM % ("web-1", ""))
    (tmp_path / "b.yaml").write_text(
        "apiVersion: nebctl/v1\nkind: VirtualMachine\nmetadata: {name: web-2}\nspec: {memory: &m 2Gi}\n---\n"
        "apiVersion: nebctl/v1\nkind: VirtualMachine\nmetadata: {name: web-3}\nspec: {memory: !!str 1Gi}\n"
    )
    loaded = load_paths([tmp_path])
    assert [key.name for key in loaded.documents] == ["web-1", "web-2", "web-3"]
    assert [location.line for location in loaded.locations.values()] == [1, 1, 6]
    text = (tmp_path / "b.yaml").read_text()
    assert fast(text) is None
    expected = loading._finish(*loading.parse_text(text, "b.yaml"), ("b.yaml",))
    assert load_text(text, "b.yaml").documents == expected.documents
