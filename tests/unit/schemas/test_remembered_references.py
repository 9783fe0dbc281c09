"""The checks across documents remember the references of the manifests they last checked (a service checks its
whole set again after each edit, with the same objects for its unchanged files): that changes no result. A
document replaced by an edit is read again, a manifest checked under another key is not taken for the one
remembered, and a set checked again with the very same objects gives the same diagnostics."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from nebctl.schemas import validation
from nebctl.schemas.caching import load_paths_cached
from nebctl.schemas.checking import LoadedDocument
from nebctl.schemas.loading import ManifestError, read_paths
from tests.support.small_sets import INFRA, vm


def documents(directory: Path) -> list[LoadedDocument]:
    found, problems, _ = read_paths([directory])
    assert not problems
    return found


def messages(found: list[LoadedDocument]) -> list[str]:
    return [d.message for d in validation.validate_documents(found)]


def test_an_edited_document_is_checked_again_beside_the_remembered_ones(tmp_path: Path) -> None:
    (tmp_path / "infra.yaml").write_text(INFRA)
    (tmp_path / "a.yaml").write_text(vm("a"))
    (tmp_path / "b.yaml").write_text(vm("b"))
    first = documents(tmp_path)
    assert messages(first) == []
    assert messages(first) == []  # the same objects again: all remembered, still valid
    # b now names a network that does not exist; a and the infrastructure are the objects checked before.
    (tmp_path / "b.yaml").write_text(vm("b", network="nett"))
    edited = [d for d in first if d.key.name != "b"] + [d for d in documents(tmp_path) if d.key.name == "b"]
    found = messages(edited)
    assert len(found) == 1 and "nett" in found[0], found
    # And back: the edited object is replaced by a valid one, the others are still remembered.
    assert messages(first) == []


def test_a_remembered_manifest_under_another_key_is_read_again(tmp_path: Path) -> None:
    (tmp_path / "infra.yaml").write_text(INFRA)
    (tmp_path / "a.yaml").write_text(vm("a"))
    first = documents(tmp_path)
    assert messages(first) == []
    # The same manifest object presented under another namespace: its references (the network of that
    # namespace, absent) are those of the key it is checked under, not the ones remembered.
    moved = [dataclasses.replace(d, key=d.key._replace(namespace="other")) if d.key.name == "a" else d for d in first]
    found = messages(moved)
    assert len(found) == 1 and "net" in found[0], found


def test_a_service_loading_after_each_edit_sees_a_dangling_reference(tmp_path: Path) -> None:
    directory, cache = tmp_path / "manifests", tmp_path / "cache"
    directory.mkdir()
    (directory / "infra.yaml").write_text(INFRA)
    for name in ("a", "b", "c"):
        (directory / f"{name}.yaml").write_text(vm(name))
    load_paths_cached([directory], cache, remember=True)
    (directory / "c.yaml").write_text(vm("c", network="nett"))
    try:
        load_paths_cached([directory], cache, remember=True)
    except ManifestError as error:
        assert [d.message for d in error.diagnostics if "nett" in d.message], error.diagnostics
    else:
        raise AssertionError("a dangling network was accepted")
