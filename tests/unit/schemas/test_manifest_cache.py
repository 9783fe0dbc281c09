"""The cache of checked manifest files (``schemas.caching``) changes no result: whatever the files hold, valid
or not, edited in any order, ``load_paths_cached`` gives what the uncached loader ``load_paths`` gives (the same
documents, in the same order, at the same locations; or the same diagnostics). Entries that are corrupt, that
another version of nebctl wrote, or that a file rewritten within the same second would match by date, are
never trusted."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nebctl.core.keys import Kind, ResourceKey
from nebctl.core.memos import IdentityMemo
from nebctl.schemas import caching, loading, validation
from nebctl.schemas.loading import ManifestError, ManifestSet, load_paths
from nebctl.schemas.models import VirtualMachine
from tests.support.small_sets import INFRA, vm


def outcome(load: Any) -> tuple[str, Any]:
    """What a load gives, in a form two loads can be compared by: the set in full, or the diagnostics' text."""
    try:
        loaded: ManifestSet = load()
    except ManifestError as error:
        return ("error", ([str(d) for d in error.diagnostics], error.complete))
    return ("set", (list(loaded.documents.items()), list(loaded.locations.items()), loaded.files))


def both(paths: list[Path], cache: Path) -> tuple[tuple[str, Any], tuple[str, Any]]:
    return outcome(lambda: load_paths(paths)), outcome(lambda: caching.load_paths_cached(paths, cache))


# Edits of a small manifest directory: each one a function of (directory, a number) that rewrites files.
def _set_vcpu(directory: Path, n: int) -> None:
    (directory / f"vm{n % 3}.yaml").write_text(vm(f"vm{n % 3}", vcpu=1 + n % 8))


def _bad_vcpu(directory: Path, n: int) -> None:
    (directory / f"vm{n % 3}.yaml").write_text(vm(f"vm{n % 3}", vcpu="many"))


def _dangling(directory: Path, n: int) -> None:
    (directory / f"vm{n % 3}.yaml").write_text(vm(f"vm{n % 3}", network="nett"))


def _duplicate(directory: Path, n: int) -> None:
    (directory / f"vm{n % 3}.yaml").write_text(vm(f"vm{(n + 1) % 3}"))


def _remove(directory: Path, n: int) -> None:
    (directory / f"vm{n % 3}.yaml").unlink(missing_ok=True)


def _restore(directory: Path, n: int) -> None:
    (directory / f"vm{n % 3}.yaml").write_text(vm(f"vm{n % 3}"))


def _two_documents(directory: Path, n: int) -> None:
    (directory / f"vm{n % 3}.yaml").write_text(vm(f"vm{n % 3}") + "---\n" + vm(f"extra{n}"))


def _comment(directory: Path, n: int) -> None:
    # The same documents one line lower: their locations move, so a cached file must not keep the old ones.
    path = directory / f"vm{n % 3}.yaml"
    if path.exists():
        path.write_text("# moved\n" + path.read_text())


def _anchors(directory: Path, n: int) -> None:
    # An anchor and an alias: a file the positioned reader reads.
    text = vm(f"vm{n % 3}").replace("memory: 1Gi", "memory: &m 1Gi\n  labels: {}") + "# *m\n"
    (directory / f"vm{n % 3}.yaml").write_text(text)


def _broken_yaml(directory: Path, n: int) -> None:
    (directory / f"vm{n % 3}.yaml").write_text(vm(f"vm{n % 3}") + "spec: [\n")


def _swap(directory: Path, n: int) -> None:
    first, second = directory / f"vm{n % 3}.yaml", directory / f"vm{(n + 1) % 3}.yaml"
    if first.exists() and second.exists():
        a, b = first.read_text(), second.read_text()
        first.write_text(b)
        second.write_text(a)


# Edits that keep each file's documents but move what the checks across documents read of them (or what a
# document's own checks find): a set that passed and is then edited so must be checked as the loader checks it.
ADDRESSES = ["10.0.0.5", "10.0.0.6", "10.0.0.1", "10.0.1.5", "10.0.0.255"]  # the last three: gateway, outside, range


def _static_address(directory: Path, n: int) -> None:
    (directory / f"vm{n % 3}.yaml").write_text(vm(f"vm{n % 3}", ip=ADDRESSES[n % len(ADDRESSES)]))


def _ordered_after(directory: Path, n: int) -> None:
    # vm0 after vm1 after vm2 after vm0 is a cycle once all three are written; "vmm/x" names no kind.
    target = ["vm/vm1", "vm/vm2", "vm/vm0", "vmm/x", "vm/gone"][n % 5]
    (directory / f"vm{n % 3}.yaml").write_text(vm(f"vm{n % 3}", depends_on=(target,)))


def _ignored(directory: Path, n: int) -> None:
    path = ["vcpu", "memory", "vpcu", "nics[0].network"][n % 4]
    (directory / f"vm{n % 3}.yaml").write_text(vm(f"vm{n % 3}", ignore=(path,)))


def _network(directory: Path, n: int) -> None:
    cidr = ["10.0.0.0/24", "10.0.0.0/16", "10.9.0.0/24"][n % 3]
    (directory / "infra.yaml").write_text(INFRA.replace("cidr: 10.0.0.0/24", f"cidr: {cidr}"))


EDITS = [_set_vcpu, _bad_vcpu, _dangling, _duplicate, _remove, _restore, _two_documents, _comment, _anchors]
EDITS += [_broken_yaml, _swap, _static_address, _ordered_after, _ignored, _network]


def fresh_directory(root: Path) -> Path:
    directory = root / "manifests"
    directory.mkdir()
    (directory / "infra.yaml").write_text(INFRA)
    for index in range(3):
        (directory / f"vm{index}.yaml").write_text(vm(f"vm{index}"))
    return directory


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.sampled_from(EDITS), st.integers(0, 20)), max_size=12))
def test_cached_and_uncached_loads_agree_after_any_edits(tmp_path_factory: pytest.TempPathFactory, edits: Any) -> None:
    root = tmp_path_factory.mktemp("edits")
    directory, cache = fresh_directory(root), root / "cache"
    uncached, cached = both([directory], cache)
    assert cached == uncached
    for edit, number in edits:
        edit(directory, number)
        uncached, cached = both([directory], cache)
        assert cached == uncached, edit.__name__
        # A second load is served from the cache when the set is valid: still the same.
        assert outcome(lambda: caching.load_paths_cached([directory], cache)) == uncached


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.sampled_from(EDITS), st.integers(0, 20)), max_size=12))
def test_loads_that_remember_their_files_agree_with_uncached_loads_after_any_edits(
    tmp_path_factory: pytest.TempPathFactory, edits: Any
) -> None:
    """As a service loads: each load remembering its files in memory, for the next."""
    root = tmp_path_factory.mktemp("edits")
    directory, cache = fresh_directory(root), root / "cache"

    def remembered() -> ManifestSet:
        return caching.load_paths_cached([directory], cache, remember=True)

    assert outcome(remembered) == outcome(lambda: load_paths([directory]))
    for edit, number in edits:
        edit(directory, number)
        assert outcome(remembered) == outcome(lambda: load_paths([directory])), edit.__name__


def test_a_remembered_file_rewritten_with_the_same_size_and_date_is_read_again(tmp_path: Path) -> None:
    directory, cache = fresh_directory(tmp_path), tmp_path / "cache"
    path = directory / "vm0.yaml"
    caching.load_paths_cached([directory], cache, remember=True)
    stat = path.stat()
    path.write_text(vm("vm0", vcpu=7))  # same length as vcpu: 1
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    after = caching.load_paths_cached([directory], cache, remember=True)
    vcpus = {key.name: doc.spec.vcpu for key, doc in after.documents.items() if isinstance(doc, VirtualMachine)}
    assert vcpus == {"vm0": 7, "vm1": 1, "vm2": 1}


def test_remembered_files_are_not_read_back_from_the_directory_and_only_by_remembering_loads(tmp_path: Path) -> None:
    directory, cache = fresh_directory(tmp_path), tmp_path / "cache"
    expected = outcome(lambda: load_paths([directory]))
    caching.load_paths_cached([directory], cache, remember=True)
    poison(cache)  # entries that would lose the VMs, were they read
    assert outcome(lambda: caching.load_paths_cached([directory], cache, remember=True)) == expected
    # A load that does not remember reads the directory (the poisoned entries, well-formed, are what it finds).
    assert outcome(lambda: caching.load_paths_cached([directory], cache)) != expected


def test_a_loaded_set_is_kept_and_read_back(tmp_path: Path) -> None:
    directory, cache = fresh_directory(tmp_path), tmp_path / "cache"
    first = caching.load_paths_cached([directory], cache)
    # One entry per file, one for the set and one naming the entries of the set these files last made.
    assert len(list((cache / "manifests").glob("*/*"))) == 4 + 2
    again = caching.load_paths_cached([directory], cache)
    assert list(again.documents) == list(first.documents)
    assert [d.spec for d in again.documents.values()] == [d.spec for d in first.documents.values()]


def test_a_set_checked_again_takes_the_references_of_unchanged_files_from_their_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, cache = fresh_directory(tmp_path), tmp_path / "cache"
    caching.load_paths_cached([directory], cache)
    (directory / "vm1.yaml").write_text(vm("vm1", vcpu=4))
    expected = outcome(lambda: load_paths([directory]))
    # As another process: nothing held in memory, so only the entries can spare reading each document again.
    monkeypatch.setattr(validation, "_LAST_REFERENCES", IdentityMemo())
    read: list[str] = []

    def counted(key: Any, manifest: Any) -> Any:
        read.append(key.name)
        return real(key, manifest)

    real = validation.references_of
    monkeypatch.setattr(validation, "references_of", counted)
    monkeypatch.setattr(caching, "references_of", counted)
    assert outcome(lambda: caching.load_paths_cached([directory], cache)) == expected
    assert read == ["vm1"]


def test_references_kept_with_unchanged_files_still_dangle_when_their_target_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, cache = fresh_directory(tmp_path), tmp_path / "cache"
    caching.load_paths_cached([directory], cache)
    # The network is renamed: the three VMs, whose files did not change, now name a network that is not there.
    (directory / "infra.yaml").write_text(INFRA.replace("metadata: {name: net}", "metadata: {name: net2}"))
    expected = outcome(lambda: load_paths([directory]))
    assert expected[0] == "error" and sum("net" in line for line in expected[1][0]) == 3
    monkeypatch.setattr(validation, "_LAST_REFERENCES", IdentityMemo())
    assert outcome(lambda: caching.load_paths_cached([directory], cache)) == expected


def whole_checks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the loader's checks of a whole set across documents (one entry per check)."""
    counted: list[int] = []
    real = loading.cross_document_problems

    def check(documents: Any) -> Any:
        counted.append(len(documents))
        return real(documents)

    monkeypatch.setattr(caching, "cross_document_problems", check)
    return counted


def test_an_edit_that_the_checks_across_documents_do_not_read_is_not_checked_across_the_whole_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, cache = fresh_directory(tmp_path), tmp_path / "cache"
    caching.load_paths_cached([directory], cache)
    checks = whole_checks(monkeypatch)
    (directory / "vm1.yaml").write_text(vm("vm1", vcpu=4, ignore=("memory",)))
    loaded = caching.load_paths_cached([directory], cache)
    assert outcome(lambda: loaded) == outcome(lambda: load_paths([directory]))
    assert checks == []
    # Two files edited at once, one of them back as it was: still each against the last set that passed.
    (directory / "vm1.yaml").write_text(vm("vm1"))
    (directory / "vm2.yaml").write_text(vm("vm2", vcpu=2))
    assert outcome(lambda: caching.load_paths_cached([directory], cache)) == outcome(lambda: load_paths([directory]))
    assert checks == []


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: (d / "vm1.yaml").write_text(vm("vm1", depends_on=("vm/vm2",))),  # a reference more
        lambda d: (d / "vm1.yaml").write_text(vm("vm1", ip="10.0.0.7")),  # a static address
        lambda d: (d / "vm1.yaml").write_text(vm("vm1") + "---\n" + vm("vm3")),  # a document more
        lambda d: (d / "infra.yaml").write_text(INFRA.replace("10.0.0.0/24", "10.0.0.0/16")),  # a network
        lambda d: (d / "vm3.yaml").write_text(vm("vm3")),  # a file more
    ],
    ids=["reference", "address", "document", "network", "file"],
)
def test_an_edit_of_what_the_checks_across_documents_read_checks_the_whole_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit: Any
) -> None:
    directory, cache = fresh_directory(tmp_path), tmp_path / "cache"
    caching.load_paths_cached([directory], cache)
    checks = whole_checks(monkeypatch)
    edit(directory)
    assert outcome(lambda: caching.load_paths_cached([directory], cache)) == outcome(lambda: load_paths([directory]))
    assert len(checks) == 1


def test_an_edit_whose_document_fails_its_own_checks_is_reported_as_the_loader_reports_it(tmp_path: Path) -> None:
    directory, cache = fresh_directory(tmp_path), tmp_path / "cache"
    caching.load_paths_cached([directory], cache)
    (directory / "vm1.yaml").write_text(vm("vm1", depends_on=("vmm/x",), ignore=("vpcu",)))
    expected = outcome(lambda: load_paths([directory]))
    assert expected[0] == "error" and len(expected[1][0]) == 2
    assert outcome(lambda: caching.load_paths_cached([directory], cache)) == expected


def test_a_set_whose_edited_file_lost_its_last_entry_is_checked_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, cache = fresh_directory(tmp_path), tmp_path / "cache"
    caching.load_paths_cached([directory], cache)
    before = set((cache / "manifests").glob("*/*"))
    (directory / "vm1.yaml").write_text(vm("vm1", vcpu=4))
    caching.load_paths_cached([directory], cache)
    for entry in set((cache / "manifests").glob("*/*")) - before:
        entry.unlink()  # vm1's entry for that text (pruned, say), and the set's marker
    (directory / "vm1.yaml").write_text(vm("vm1", vcpu=5))
    checks = whole_checks(monkeypatch)
    assert outcome(lambda: caching.load_paths_cached([directory], cache)) == outcome(lambda: load_paths([directory]))
    assert checks == [5]


def test_a_set_read_from_the_cache_reads_back_only_the_documents_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, cache = fresh_directory(tmp_path), tmp_path / "cache"
    expected = load_paths([directory])
    caching.load_paths_cached([directory], cache)
    read: list[tuple[ResourceKey, ...]] = []
    real = caching._File.documents

    def counted(entry: caching._File) -> Any:
        if entry._read is None:
            read.append(entry.keys)
        return real(entry)

    monkeypatch.setattr(caching._File, "documents", counted)
    loaded = caching.load_paths_cached([directory], cache)
    assert list(loaded.documents) == list(expected.documents) and read == []  # the keys, without a document
    vm1 = ResourceKey.of(Kind.VIRTUAL_MACHINE, "vm1")
    assert loaded.documents[vm1] == expected.documents[vm1]
    assert loaded.locations[vm1] == expected.locations[vm1]
    assert read == [(vm1,)]  # its file's, once


def test_the_placement_requirements_of_a_cached_set_are_those_of_its_vms(tmp_path: Path) -> None:
    directory, cache = fresh_directory(tmp_path), tmp_path / "cache"
    for name, requirements in (("vm1", "load < 0.5"), ("vm2", "cpu > 2")):
        placed = vm(name).replace("placement: {host: h1}", f"placement: {{requirements: '{requirements}'}}")
        (directory / f"{name}.yaml").write_text(placed)
    expected = {
        document.spec.placement.requirements
        for document in load_paths([directory]).documents.values()
        if isinstance(document, VirtualMachine) and document.spec.placement.requirements
    }
    assert expected == {"load < 0.5", "cpu > 2"}
    for _ in range(2):  # parsed, then read back
        documents = caching.load_paths_cached([directory], cache).documents
        assert isinstance(documents, caching.CachedDocuments) and documents.requirements() == expected


def test_what_placing_each_vm_reads_of_a_cached_set_is_told_without_reading_the_vms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, cache = fresh_directory(tmp_path), tmp_path / "cache"
    sized = vm("vm1").replace("placement: {host: h1}", "placement: {requirements: 'cpu > 2', policy: striping}")
    (directory / "vm1.yaml").write_text(sized)
    # The statement of what is right: the uncached loader's VMs, each read whole.
    expected = {
        key: (document.spec.vcpu, document.spec.memory, sum(disk.size or 0 for disk in document.spec.disks))
        for key, document in load_paths([directory]).documents.items()
        if isinstance(document, VirtualMachine)
    }
    placements = {
        key: document.spec.placement
        for key, document in load_paths([directory]).documents.items()
        if isinstance(document, VirtualMachine)
    }
    fresh = caching.load_paths_cached([directory], cache).documents
    assert isinstance(fresh, caching.CachedDocuments)
    told = fresh.placement_inputs()
    assert {key: inputs[:3] for key, inputs in told.items()} == expected
    assert {key: inputs[3] for key, inputs in told.items()} == placements
    read: list[object] = []
    real = caching._File.documents

    def counted(entry: caching._File) -> list[Any]:
        read.append(entry.keys)
        return real(entry)

    monkeypatch.setattr(caching._File, "documents", counted)
    again = caching.load_paths_cached([directory], cache).documents  # read back from the entries
    assert isinstance(again, caching.CachedDocuments)
    assert again.placement_inputs() == told and read == []


def poison(cache: Path) -> None:
    """Rewrite every file entry with a well-formed one (right header and digest) that holds no documents: a
    loader that trusted it would lose the VMs."""
    for entry in (cache / "manifests").glob("*/*"):
        payload = pickle.dumps(
            caching._File((), pickle.dumps([]), (), pickle.dumps([]), frozenset(), placing=pickle.dumps([]))
        )
        if pickle.loads(caching.unframed(entry.read_bytes()) or b"") is not True:
            entry.write_bytes(caching.framed(payload))


def test_an_entry_whose_digests_are_not_one_per_document_is_ignored(tmp_path: Path) -> None:
    directory, cache = fresh_directory(tmp_path), tmp_path / "cache"
    expected = outcome(lambda: load_paths([directory]))
    caching.load_paths_cached([directory], cache)
    rewritten = 0
    for entry in (cache / "manifests").glob("*/*"):
        kept = pickle.loads(caching.unframed(entry.read_bytes()) or b"")
        if isinstance(kept, caching._File):
            # Well-formed (right header and digest of the payload), but its documents have lost their digests.
            lost = caching._File(
                kept.keys,
                kept.documents_pickled,
                kept.digests[:-1],
                kept.references,
                frozenset(),
                placing=kept.placing,
            )
            payload = pickle.dumps(lost)
            entry.write_bytes(caching.framed(payload))
            rewritten += 1
    assert rewritten == 4
    assert outcome(lambda: caching.load_paths_cached([directory], cache)) == expected


def test_entries_are_read_back_unchecked_only_by_the_version_that_wrote_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, cache = fresh_directory(tmp_path), tmp_path / "cache"
    expected = outcome(lambda: load_paths([directory]))
    monkeypatch.setattr(caching, "_code_digest", lambda: b"an older nebctl")
    caching.load_paths_cached([directory], cache)
    poison(cache)
    # The version that wrote the entries reads them (which shows the poisoned entries are what a hit returns)...
    assert outcome(lambda: caching.load_paths_cached([directory], cache)) != expected
    monkeypatch.undo()
    # ...and this version never finds them.
    assert outcome(lambda: caching.load_paths_cached([directory], cache)) == expected


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # truncated by a crash
        lambda data: data[:-1] + bytes([data[-1] ^ 1]),  # one bit flipped
        lambda data: b"",
        lambda data: b"\x00" * len(data),
        lambda data: data[: caching._HEADER - 4] + bytes(4) + data[caching._HEADER :],  # its CRC zeroed
        lambda data: data[: len(data) // 2] + bytes([data[len(data) // 2] ^ 0x10]) + data[len(data) // 2 + 1 :],
        lambda data: data + b"\x00",  # a byte more than its length says
    ],
    ids=["truncated", "bit-flip", "empty", "zeros", "bad-crc", "bit-flip-inside", "too-long"],
)
def test_corrupt_entries_are_ignored_and_written_again(tmp_path: Path, damage: Any) -> None:
    directory, cache = fresh_directory(tmp_path), tmp_path / "cache"
    expected = outcome(lambda: load_paths([directory]))
    caching.load_paths_cached([directory], cache)
    entries = sorted((cache / "manifests").glob("*/*"))
    originals = {entry: entry.read_bytes() for entry in entries}
    for entry in entries:
        entry.write_bytes(damage(entry.read_bytes()))
    assert outcome(lambda: caching.load_paths_cached([directory], cache)) == expected
    assert {entry: entry.read_bytes() for entry in entries} == originals  # each one written again, whole


def test_an_entry_whose_payload_does_not_load_is_ignored(tmp_path: Path) -> None:
    directory, cache = fresh_directory(tmp_path), tmp_path / "cache"
    expected = outcome(lambda: load_paths([directory]))
    caching.load_paths_cached([directory], cache)
    # A length and CRC that match a payload which is not a pickle at all.
    payload = b"\x80\x05garbage"
    for entry in (cache / "manifests").glob("*/*"):
        entry.write_bytes(caching.framed(payload))
    assert outcome(lambda: caching.load_paths_cached([directory], cache)) == expected


def test_a_file_rewritten_with_the_same_size_and_date_is_read_again(tmp_path: Path) -> None:
    directory, cache = fresh_directory(tmp_path), tmp_path / "cache"
    path = directory / "vm0.yaml"
    before = caching.load_paths_cached([directory], cache)
    stat = path.stat()
    path.write_text(vm("vm0", vcpu=7))  # same length as vcpu: 1
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    after = caching.load_paths_cached([directory], cache)
    vcpus = {key.name: doc.spec.vcpu for key, doc in after.documents.items() if isinstance(doc, VirtualMachine)}
    assert vcpus == {"vm0": 7, "vm1": 1, "vm2": 1}
    assert before.documents != after.documents


def test_a_set_with_problems_gives_the_loaders_diagnostics_and_is_not_kept(tmp_path: Path) -> None:
    directory, cache = fresh_directory(tmp_path), tmp_path / "cache"
    (directory / "vm1.yaml").write_text(vm("vm1", network="nett"))
    with pytest.raises(ManifestError) as raised:
        caching.load_paths_cached([directory], cache)
    assert [str(d) for d in raised.value.diagnostics] == [
        f"{directory / 'vm1.yaml'}:7:20: VirtualMachine/vm1: Network 'nett' not found in namespace 'default',"
        " did you mean 'net'?"
    ]
    # Each file is valid on its own and kept; the set, which is not, has no entry.
    assert len(list((cache / "manifests").glob("*/*"))) == 4


def test_an_unwritable_cache_directory_only_costs_time(tmp_path: Path) -> None:
    directory = fresh_directory(tmp_path)
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the directory would be")
    assert outcome(lambda: caching.load_paths_cached([directory], blocker)) == outcome(lambda: load_paths([directory]))


def test_old_entries_are_pruned_past_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(caching, "MAX_ENTRIES", 6)
    directory, cache = fresh_directory(tmp_path), tmp_path / "cache"
    for vcpu in range(1, 6):
        (directory / "vm0.yaml").write_text(vm("vm0", vcpu=vcpu))
        caching.load_paths_cached([directory], cache)
    assert len(list((cache / "manifests").glob("*/*"))) == 6
    # The entries of the set just loaded are among those kept: loading it again writes nothing.
    kept = sorted(entry.name for entry in (cache / "manifests").glob("*/*"))
    caching.load_paths_cached([directory], cache)
    assert sorted(entry.name for entry in (cache / "manifests").glob("*/*")) == kept
