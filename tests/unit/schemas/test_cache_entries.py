"""Cache entries are kept for one version of nebctl only (``schemas.caching.Entries``): the manifest cache, the kept
plans, traces and observations. Another version never finds them, so the first entry a version writes deletes
those of every other version, and those an older layout kept at the top of the directory; nothing else there is
touched."""

from __future__ import annotations

from pathlib import Path

from nebctl.controller.kept_observations import ObservationKeeper
from nebctl.controller.kept_plans import KeptPlans
from nebctl.controller.kept_traces import KeptTraces
from nebctl.schemas import caching
from nebctl.schemas.caching import Entries
from tests.support.small_sets import INFRA, vm

OLD_LAYOUT_ENTRY = "ab" * 32  # a key: 64 hexadecimal digits


def write_manifest(directory: Path) -> Path:
    directory.mkdir()
    (directory / "infra.yaml").write_text(INFRA)
    (directory / "vm.yaml").write_text(vm("vm"))
    return directory


def test_the_first_write_of_a_version_deletes_the_other_versions_entries(tmp_path: Path) -> None:
    old = Entries(tmp_path, b"version 1", version=b"version 1")
    old.put(old.key(b"trace"), {"held": "by version 1"})
    assert old.get(old.key(b"trace")) == {"held": "by version 1"}
    (tmp_path / OLD_LAYOUT_ENTRY).write_bytes(b"an entry of the layout before versions had their own directory")
    (tmp_path / "notes.txt").write_text("not an entry")

    new = Entries(tmp_path, b"version 2", version=b"version 2")
    assert new.get(new.key(b"trace")) is None  # never the other version's
    assert old.get(old.key(b"trace")) == {"held": "by version 1"}  # reading deletes nothing
    new.put(new.key(b"trace"), {"held": "by version 2"})

    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([new.directory.name, "notes.txt"])
    assert [path.name for path in new.directory.iterdir()] == [new.key(b"trace")]
    assert new.get(new.key(b"trace")) == {"held": "by version 2"}
    assert old.get(old.key(b"trace")) is None


def test_entries_of_the_same_version_stay_side_by_side(tmp_path: Path) -> None:
    first = Entries(tmp_path, b"version 1", version=b"version 1")
    first.put(first.key(b"stack a"), "a")
    second = Entries(tmp_path, b"version 1", version=b"version 1")  # another process of the same version
    second.put(second.key(b"stack b"), "b")
    assert (second.get(second.key(b"stack a")), second.get(second.key(b"stack b"))) == ("a", "b")


def test_entries_valid_for_other_settings_of_the_same_version_stay(tmp_path: Path) -> None:
    strict = Entries(tmp_path, b"version 1, strict limits", version=b"version 1")
    strict.put(strict.key(b"file"), "checked under strict limits")
    loose = Entries(tmp_path, b"version 1, loose limits", version=b"version 1")
    assert loose.get(loose.key(b"file")) is None  # keyed by the settings too
    loose.put(loose.key(b"file"), "checked under loose limits")
    assert strict.get(strict.key(b"file")) == "checked under strict limits"


def test_the_manifest_cache_and_the_kept_plans_traces_and_observations_are_kept_per_version(tmp_path: Path) -> None:
    caching.load_paths_cached([write_manifest(tmp_path / "set")], tmp_path / "cache")
    (manifests,) = (tmp_path / "cache" / "manifests").iterdir()
    (tmp_path / "cache" / "manifests" / "0123456789abcdef").mkdir()
    (tmp_path / "set" / "vm.yaml").write_text(vm("vm", vcpu=2))
    caching.load_paths_cached([tmp_path / "set"], tmp_path / "cache")
    assert [path.name for path in (tmp_path / "cache" / "manifests").iterdir()] == [manifests.name]
    keepers = {
        "plans": KeptPlans(tmp_path / "plans", database="db", stack="s")._entries,
        "traces": KeptTraces(tmp_path / "traces", database="db")._entries,
        "observations": ObservationKeeper(tmp_path / "observations", database="db")._entries,
    }
    for name, entries in keepers.items():
        assert entries is not None
        assert entries.directory.parent == tmp_path / name
        (tmp_path / name / "0123456789abcdef").mkdir(parents=True)  # what another version left
        entries.put(entries.key(b"x"), 1)
        assert [path.name for path in (tmp_path / name).iterdir()] == [entries.directory.name]
