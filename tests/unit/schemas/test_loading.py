"""The loader's behaviour on valid input: documents, positions, directories, YAML features, round trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from nebctl.core.keys import Kind, ResourceKey
from nebctl.schemas.dumping import dump_text
from nebctl.schemas.loading import (
    Diagnostic,
    ManifestError,
    SourceLocation,
    load_paths,
    load_text,
    parse_text,
)
from nebctl.schemas.models import Host, VirtualMachine
from tests.conftest import REPO_ROOT

VM_TEXT = """\
# a comment
apiVersion: nebctl/v1
kind: VirtualMachine
metadata:
  name: web-1
  namespace: team-a
spec:
  memory: 2Gi
  disks:
    - size: 5Gi
    - size: 6Gi
"""


def test_diagnostic_text_has_the_documented_shape() -> None:
    where = SourceLocation("m.yaml", 3, 7)
    assert str(Diagnostic(where, "VirtualMachine/web-1", "boom")) == "m.yaml:3:7: VirtualMachine/web-1: boom"
    assert str(Diagnostic(where, None, "boom")) == "m.yaml:3:7: boom"
    assert str(Diagnostic(None, None, "x.yaml: no such file")) == "x.yaml: no such file"
    assert str(ManifestError([Diagnostic(None, None, "a"), Diagnostic(None, None, "b")])) == "a\nb"


def test_positions_of_values_keys_and_list_items() -> None:
    documents, problems = parse_text(VM_TEXT, "m.yaml")
    assert problems == []
    (document,) = documents
    assert document.key == ResourceKey.of(Kind.VIRTUAL_MACHINE, "web-1", "team-a")
    assert document.subject == "team-a/VirtualMachine/web-1"
    assert document.location == SourceLocation("m.yaml", 2, 1)
    assert document.locate("spec", "memory") == SourceLocation("m.yaml", 8, 11)
    assert document.locate("spec", "disks") == SourceLocation("m.yaml", 9, 3)
    assert document.locate("spec", "disks", 1) == SourceLocation("m.yaml", 11, 7)
    assert document.locate("spec", "disks", 1, "size") == SourceLocation("m.yaml", 11, 13)
    # Absent paths fall back to the closest enclosing value.
    assert document.locate("spec", "nics", 0) == SourceLocation("m.yaml", 7, 1)
    assert document.key_positions[("spec", "memory")] == SourceLocation("m.yaml", 8, 3)


def test_several_documents_with_empty_ones_between() -> None:
    text = "---\n" + VM_TEXT + "---\n---\n# nothing\n---\n" + VM_TEXT.replace("web-1", "web-2")
    loaded = load_text(text, "m.yaml")
    assert [key.name for key in loaded.documents] == ["web-1", "web-2"]
    assert loaded.locations[ResourceKey.of(Kind.VIRTUAL_MACHINE, "web-2", "team-a")].line == 18
    assert loaded.files == ("m.yaml",)
    assert loaded.counts() == {Kind.VIRTUAL_MACHINE: 2}
    assert [vm.metadata.name for vm in loaded.of_kind(Kind.VIRTUAL_MACHINE)] == ["web-1", "web-2"]


def test_merge_keys_and_anchors_are_supported() -> None:
    text = """\
apiVersion: nebctl/v1
kind: VirtualMachine
metadata: {name: a}
spec:
  <<: &small {vcpu: 3, memory: 1Gi}
  memory: 2Gi
  placement:
    <<: [{policy: load}, *small]
"""
    # Anchors belong to one document; merged keys do not override explicit ones.
    with pytest.raises(ManifestError) as caught:
        load_text(text)
    assert [str(d) for d in caught.value.diagnostics] == [
        "<text>:5:15: VirtualMachine/a: unknown field 'vcpu'; expected one of: host, requirements, rank, policy,"
        " burst, instanceType",
        "<text>:5:24: VirtualMachine/a: unknown field 'memory'; expected one of: host, requirements, rank, policy,"
        " burst, instanceType",
    ]
    (vm,) = load_text(text.replace(", *small]", "]")).of_kind(Kind.VIRTUAL_MACHINE)
    assert isinstance(vm, VirtualMachine)
    assert (vm.spec.vcpu, vm.spec.memory, vm.spec.placement.policy) == (3, 2 * 1024**3, "load")


def test_yaml_scalars_resolve_as_yaml_1_2() -> None:
    text = (
        "apiVersion: nebctl/v1\nkind: Host\nmetadata:\n  name: h\n  annotations: {since: 2024-01-01, on: 'yes'}\n"
        "spec: {uri: 'sim://h', enabled: false, overcommit: {cpu: 0x4}}\n"
    )
    (host,) = load_text(text).documents.values()
    assert isinstance(host, Host)
    assert host.metadata.annotations == {"since": "2024-01-01", "on": "yes"}
    assert host.spec.overcommit.cpu == 4


def test_directories_are_read_recursively_in_sorted_order(tmp_path: Path) -> None:
    def write(relative: str, name: str) -> None:
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"apiVersion: nebctl/v1\nkind: Datastore\nmetadata: {{name: {name}}}\nspec: {{path: /d}}\n")

    write("b.yaml", "b")
    write("a/z.yml", "z")
    write("a/c.yaml", "c")
    write(".hidden/x.yaml", "x")
    write("notes.txt", "t")
    write(".editor.yaml", "e")
    loaded = load_paths([tmp_path, tmp_path / "b.yaml"])
    assert [key.name for key in loaded.documents] == ["c", "z", "b"]
    assert loaded.files == tuple(str(tmp_path / p) for p in ("a/c.yaml", "a/z.yml", "b.yaml"))
    # A file named explicitly is read whatever its name.
    assert len(load_paths([tmp_path / "notes.txt"])) == 1


def test_examples_load_and_survive_a_dump_and_reload(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO_ROOT)
    loaded = load_paths(["manifests/examples"])
    assert loaded.counts()[Kind.VIRTUAL_MACHINE] >= 6
    assert loaded.counts()[Kind.HOST] >= 3
    again = load_text(dump_text(loaded.documents.values(), reveal_secrets=True))
    assert again.documents == loaded.documents
    # Without reveal_secrets, secrets are masked in the dump.
    masked = dump_text(loaded.documents.values())
    assert "#cloud-config" not in masked and "**********" in masked
