"""Hostile and broken input: it fails fast, with a clear message, and in bounded time and memory."""

from __future__ import annotations

import os
import resource
import time
import tracemalloc
from pathlib import Path

import pytest

from nebctl.schemas.loading import Limits, ManifestError, load_paths, load_text

BILLION_LAUGHS = """\
apiVersion: nebctl/v1
kind: VirtualMachine
metadata: {name: bomb}
spec:
  memory: 1Gi
  lifecycle:
    ignoreChanges: &a9 [&a8 [&a7 [&a6 [&a5 [&a4 [&a3 [&a2 [&a1 [&a0 [
      "lol","lol","lol","lol","lol","lol","lol","lol","lol"],
      *a0,*a0,*a0,*a0,*a0,*a0,*a0,*a0],*a1,*a1,*a1,*a1,*a1,*a1,*a1,*a1],*a2,*a2,*a2,*a2,*a2,*a2,*a2,*a2],
      *a3,*a3,*a3,*a3,*a3,*a3,*a3,*a3],*a4,*a4,*a4,*a4,*a4,*a4,*a4,*a4],*a5,*a5,*a5,*a5,*a5,*a5,*a5,*a5],
      *a6,*a6,*a6,*a6,*a6,*a6,*a6,*a6],*a7,*a7,*a7,*a7,*a7,*a7,*a7,*a7],*a8,*a8,*a8,*a8,*a8,*a8,*a8,*a8]
"""


def messages(text: str, *, limits: Limits | None = None) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        load_text(text, "h.yaml", limits=limits or Limits())
    return [str(d) for d in caught.value.diagnostics]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def test_alias_bomb_is_refused_in_under_a_second_of_cpu_with_bounded_memory() -> None:
    started_cpu, started_process = cpu_seconds(), time.process_time()
    found = messages(BILLION_LAUGHS)
    assert cpu_seconds() - started_cpu < 1.0
    assert time.process_time() - started_process < 1.0
    # Memory is measured on a second run: tracing every allocation slows the first one down.
    tracemalloc.start()
    try:
        assert messages(BILLION_LAUGHS) == found
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024**2
    assert found == [
        "h.yaml:7:40: document expands to more than 200000 nodes through aliases (an alias bomb?); refusing it"
    ]


def test_a_moderate_alias_use_is_fine_and_a_low_limit_refuses_it() -> None:
    text = (
        "apiVersion: nebctl/v1\nkind: Hook\nmetadata: {name: h, labels: &l {a: b}, annotations: *l}\n"
        "spec: {on: [vm.failed], command: [/bin/true]}\n"
    )
    assert len(load_text(text)) == 1
    assert "expands to more than 10 nodes" in messages(text, limits=Limits(max_nodes=10))[0]


def test_recursive_alias_is_refused() -> None:
    assert messages("a: &x [*x]\n") == ["h.yaml:1:4: recursive alias: a node contains itself"]


def test_deep_nesting_is_refused() -> None:
    assert messages("a: " + "[" * 100 + "]" * 100 + "\n") == [
        "h.yaml:1:68: invalid YAML: nesting deeper than 64 levels"
    ]


def test_deep_flow_nesting_is_cut_off_before_it_gets_expensive() -> None:
    started = time.process_time()
    found = messages("[" * 500_000 + "]" * 500_000 + "\n")
    assert time.process_time() - started < 1.0
    assert found == ["h.yaml:1:65: invalid YAML: nesting deeper than 64 levels"]


def test_deep_block_nesting_is_refused() -> None:
    text = "".join("  " * level + f"k{level}:\n" for level in range(2000)) + "  " * 2000 + "v\n"
    found = messages(text)
    # Block nesting is cheap to scan; ruamel's recursive composer gives up first, and that is reported.
    assert found == ["h.yaml:1:1: invalid YAML: nesting too deep to read"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: !!python/object/apply:os.system [ls]\n", "h.yaml:1:4: YAML tag '!!python/object/apply:os.system'"),
        ("a: !!python/name:os.system ''\n", "h.yaml:1:4: YAML tag '!!python/name:os.system'"),
        ("a: !custom {x: 1}\n", "h.yaml:1:4: YAML tag '!custom' is not allowed"),
        ("a: !!binary aGVsbG8=\n", "h.yaml:1:4: YAML tag '!!binary' is not allowed"),
        ("a: !!set {x, y}\n", "h.yaml:1:4: YAML tag '!!set' is not allowed"),
        ("!!omap [a: 1]\n", "h.yaml:1:1: YAML tag '!!omap' is not allowed"),
        ("? [a, b]\n: c\n", "h.yaml:1:3: mapping keys must be plain strings"),
    ],
)
def test_tags_that_construct_objects_are_refused(text: str, expected: str) -> None:
    found = messages(text)
    assert len(found) == 1
    assert found[0].startswith(expected)


def test_file_over_the_size_limit_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# padding\n" * 1000)
    with pytest.raises(ManifestError) as caught:
        load_paths([big], limits=Limits(max_file_bytes=5000))
    assert [str(d) for d in caught.value.diagnostics] == [
        f"{big}:1:1: file is larger than 5000 bytes; split it into several files"
    ]
    assert messages("a: b\n" * 20, limits=Limits(max_file_bytes=50)) == [
        "h.yaml:1:1: file is larger than 50 bytes; split it into several files"
    ]


def test_binary_file_is_refused(tmp_path: Path) -> None:
    binary = tmp_path / "disk.yaml"
    binary.write_bytes(b"QFI\xfb\x00\x00\x00\x03" + bytes(range(256)))
    with pytest.raises(ManifestError) as caught:
        load_paths([binary])
    assert [str(d) for d in caught.value.diagnostics] == [f"{binary}:1:5: binary file (NUL byte): not YAML"]


def test_non_utf8_file_is_refused_at_the_offending_byte(tmp_path: Path) -> None:
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("apiVersion: nebctl/v1\nkind: Hook\nmetadata: {name: caf\u00e9}\n".encode("latin-1"))
    with pytest.raises(ManifestError) as caught:
        load_paths([latin])
    assert [str(d) for d in caught.value.diagnostics] == [f"{latin}:3:21: not UTF-8 text (byte 0xe9); save it as UTF-8"]


def test_utf8_with_byte_order_mark_and_crlf_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    text = "apiVersion: nebctl/v1\r\nkind: Datastore\r\nmetadata: {name: local}\r\nspec: {path: /srv}\r\n"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert len(load_paths([path])) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "h.yaml:1:1: no manifest in this file (it is empty)"),
        ("# only a comment\n", "h.yaml:1:1: no manifest in this file (it is empty)"),
        ("---\n---\n", "h.yaml:1:1: no manifest in this file (it is empty)"),
        ("- a\n- b\n", "h.yaml:1:1: a manifest must be a mapping with apiVersion, kind, metadata and spec, not a list"),
        ("42\n", "h.yaml:1:1: a manifest must be a mapping with apiVersion, kind, metadata and spec, not a number"),
        ("hello\n", "h.yaml:1:1: a manifest must be a mapping with apiVersion, kind, metadata and spec, not a string"),
        ("kind: Hook\n", "h.yaml:1:1: Hook: missing 'apiVersion': expected 'nebctl/v1'"),
        ("apiVersion: nebctl/v1\n", "h.yaml:1:1: missing 'kind': expected one of Host, Datastore"),
        ("a: b\n\tc: d\n", "h.yaml:2:1: invalid YAML:"),
        ("a: \x07\n", "h.yaml:1:4: invalid YAML: character U+0007 is not allowed"),
    ],
)
def test_documents_that_are_not_manifests(text: str, expected: str) -> None:
    found = messages(text)
    assert found[0].startswith(expected), found


def test_nonexistent_path_is_reported_with_the_others(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(ManifestError) as caught:
        load_paths([missing, empty_dir])
    assert [str(d) for d in caught.value.diagnostics] == [
        f"{missing}: no such file or directory",
        f"{empty_dir}: directory has no *.yaml or *.yml files",
    ]


def test_symlink_loop_and_broken_link_do_not_hang(tmp_path: Path) -> None:
    (tmp_path / "ds.yaml").write_text("apiVersion: nebctl/v1\nkind: Datastore\nmetadata: {name: d}\nspec: {path: /d}\n")
    os.symlink(tmp_path, tmp_path / "loop")
    assert len(load_paths([tmp_path / "ds.yaml", tmp_path / "loop"])) == 1
    os.symlink(tmp_path / "gone.yaml", tmp_path / "broken.yaml")
    with pytest.raises(ManifestError) as caught:
        load_paths([tmp_path / "broken.yaml", tmp_path])
    assert [str(d) for d in caught.value.diagnostics] == [
        f"{tmp_path / 'broken.yaml'}: broken symbolic link",
        f"{tmp_path / 'broken.yaml'}: broken symbolic link",
    ]


def test_huge_integer_is_an_error_not_a_crash() -> None:
    found = messages(
        "apiVersion: nebctl/v1\nkind: VirtualMachine\nmetadata: {name: a}\nspec: {memory: " + "9" * 5000 + "}\n"
    )
    assert found[0].startswith("h.yaml:4:16: invalid int value: Exceeds the limit (4300 digits)")


def test_fifo_and_link_to_a_device_in_a_directory_are_not_regular_files(tmp_path: Path) -> None:
    (tmp_path / "ds.yaml").write_text("apiVersion: nebctl/v1\nkind: Datastore\nmetadata: {name: d}\nspec: {path: /d}\n")
    os.mkfifo(tmp_path / "pipe.yaml")
    os.symlink("/dev/zero", tmp_path / "zero.yaml")
    os.symlink(tmp_path / "gone.yaml", tmp_path / "broken.yaml")
    with pytest.raises(ManifestError) as caught:
        load_paths([tmp_path])
    assert [str(d) for d in caught.value.diagnostics] == [
        f"{tmp_path / 'broken.yaml'}: broken symbolic link",
        f"{tmp_path / 'pipe.yaml'}: not a regular file",
        f"{tmp_path / 'zero.yaml'}: not a regular file",
    ]


def network(name: str, kind: str = "Network") -> str:
    spec = "spec: {mode: isolated, cidr: 10.0.0.0/24}\n"
    return f"apiVersion: nebctl/v1\nkind: {kind}\nmetadata: {{name: '{name}'}}\n{spec}"


def test_look_alike_letters_in_names_and_kinds_are_escaped_and_named() -> None:
    # "w", CYRILLIC SMALL LETTER IE, "b-1": looks like web-1; "Netw", CYRILLIC SMALL LETTER O, "rk".
    assert messages(network("w\u0435b-1")) == [
        "h.yaml:3:18: Network/w\\u0435b-1: metadata.name: invalid name 'w\\u0435b-1': the name contains a non-ASCII "
        "character, U+0435 (CYRILLIC SMALL LETTER IE); use lower-case letters, digits and '-', starting and ending "
        "with a letter or digit"
    ]
    assert messages(network("web-1", kind="Netw\u043erk")) == [
        "h.yaml:2:7: unknown kind 'Netw\\u043erk': the kind contains a non-ASCII character, U+043E (CYRILLIC SMALL "
        "LETTER O); did you mean 'Network'?"
    ]
    for line in messages(network("w\u0435b-1") + "---\n" + network("a", kind="Netw\u043erk")):
        assert line.isascii(), line


def test_a_flood_of_invalid_documents_stops_at_the_limit_and_says_what_was_left() -> None:
    broken = "".join(f"---\n{network(f'N{i}')}" for i in range(500))
    # Past the limit, even a document that would give its own distinctive problem is not read.
    text = broken + "---\napiVersion: nebctl/v1\nkind: Unheard\nmetadata: {name: x}\n"
    found = messages(text, limits=Limits(max_problems_per_file=7))
    lines = text.count("\n")
    assert found == [
        *(
            f"h.yaml:{5 * i + 4}:18: Network/N{i}: metadata.name: invalid name 'N{i}': use lower-case letters, "
            "digits and '-', starting and ending with a letter or digit"
            for i in range(7)
        ),
        f"h.yaml:34:1: stopped reading this file after 7 problems: lines 35 to {lines} were not checked",
    ]


def test_the_total_limit_stops_before_the_files_left(tmp_path: Path) -> None:
    for index in range(5):
        (tmp_path / f"f{index}.yaml").write_text(network(f"N{index}") + "---\n" + network(f"M{index}"))
    with pytest.raises(ManifestError) as caught:
        load_paths([tmp_path], limits=Limits(max_problems_per_file=10, max_problems=3))
    found = [str(d) for d in caught.value.diagnostics]
    assert caught.value.complete is False
    # f0.yaml gives two problems; f1.yaml may give one more, and stops there; f2 to f4 are not read.
    subjects = [line.split(": ")[1] for line in found]
    assert subjects == [
        "Network/N0",
        "Network/M0",
        "Network/N1",
        "stopped reading this file after 1 problems",
        "3 more files not checked",
    ]
    assert found[-1] == "stopped after 4 problems: 3 more files not checked"
