"""Each document's digest as applied (``schemas.digests``), which a plan's fingerprint is made of: the manifest
cache keeps it with the document and hands it back for exactly the documents of its last load; every other document
gets it computed. Either way it is the digest of the document's canonical JSON, whatever the text looked like."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from nebctl.core.keys import Kind, ResourceKey
from nebctl.schemas import digests
from nebctl.schemas.caching import load_paths_cached
from nebctl.schemas.loading import load_paths
from tests.support.small_sets import INFRA, vm


def _directory(tmp_path: Path, infra: str = INFRA) -> Path:
    directory = tmp_path / "manifests"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "infra.yaml").write_text(infra)
    (directory / "vms.yaml").write_text(vm("web", vcpu=2) + "---\n" + vm("db"))
    return directory


def test_the_digest_is_that_of_the_documents_canonical_json(tmp_path: Path) -> None:
    labelled = INFRA.replace("metadata: {name: net}", "metadata: {name: net, labels: {tier: web}}")
    network = load_paths([_directory(tmp_path, labelled)]).documents[ResourceKey.of(Kind.NETWORK, "net")]
    # The network as applied, written out by hand: every field of its spec with the defaults filled in, keys
    # sorted, no spaces, and its labels under "metadata".
    expected = (
        '{"bridge":null,"cidr":"10.0.0.0/24","dns":[],"gateway":null,"hosts":[],'
        '"metadata":{"labels":{"tier":"web"}},"mode":"nat","mtu":null,"range":null}'
    )
    assert digests.computed_digest(network) == hashlib.sha256(expected.encode()).digest()


def test_the_same_content_in_other_words_has_the_same_digest_and_an_edit_another(tmp_path: Path) -> None:
    plain = load_paths([_directory(tmp_path / "a")]).documents
    # The same host and network, written in block style with the keys in another order and a comment.
    reworded = INFRA.replace(
        'spec: {uri: "sim://h1?cpus=8&memory=16Gi&disk=1Ti"}',
        "spec:\n  uri: 'sim://h1?cpus=8&memory=16Gi&disk=1Ti'  # a",
    ).replace("spec: {mode: nat, cidr: 10.0.0.0/24}", "spec:\n  cidr: 10.0.0.0/24\n  mode: nat")
    other = load_paths([_directory(tmp_path / "b", reworded)]).documents
    assert {key: digests.computed_digest(d) for key, d in plain.items()} == {
        key: digests.computed_digest(d) for key, d in other.items()
    }
    labelled = load_paths(
        [_directory(tmp_path / "c", INFRA.replace("metadata: {name: net}", "metadata: {name: net, labels: {a: b}}"))]
    )
    changed = {
        key
        for key, d in labelled.documents.items()
        if digests.computed_digest(d) != digests.computed_digest(plain[key])
    }
    assert [str(key) for key in changed] == ["network/net"]


def test_the_cache_hands_back_the_digests_of_its_last_load_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, cache = _directory(tmp_path), tmp_path / "cache"
    first = load_paths_cached([directory], cache)  # checked, digests computed and kept in the entries
    expected = {key: digests.computed_digest(d) for key, d in first.documents.items()}
    second = load_paths_cached([directory], cache)  # read back from the entries, digests with them
    assert all(a is not b for a, b in zip(first.documents.values(), second.documents.values(), strict=True))

    def refused(document: object) -> bytes:
        raise AssertionError("computed again")

    monkeypatch.setattr(digests, "computed_digest", refused)
    # The documents of the last load get their kept digests, without computing anything...
    assert {key: digests.document_digest(d) for key, d in second.documents.items()} == expected
    # ...and no other document does, even one equal to them (the first load's) or of the same key.
    for document in first.documents.values():
        with pytest.raises(AssertionError, match="computed again"):
            digests.document_digest(document)
